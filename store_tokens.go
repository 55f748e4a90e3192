package main

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"
)

// tokenValidSQL is the condition that makes the token row t, looked up by
// its hash (the one argument), valid. It is written only here.
const tokenValidSQL = "t.token_hash = ? AND t.expires_at > NOW(6)"

// Credentials are what a login checks.
type Credentials struct {
	UserID       int64
	IsActive     bool
	PasswordHash string
}

// CredentialsFor finds a user by username, or by email when login holds an
// '@' (usernames cannot), and returns ErrNotFound when none matches.
func (s *Store) CredentialsFor(ctx context.Context, login string) (Credentials, error) {
	ctx, cancel, err := s.callContext(ctx)
	if err != nil {
		return Credentials{}, err
	}
	defer cancel()
	column := "username"
	if strings.Contains(login, "@") {
		column, login = "email", strings.ToLower(login)
	}
	var c Credentials
	err = s.db.QueryRowContext(ctx, s.causal("SELECT id, is_active, password_hash FROM users WHERE "+column+" = ?"), login).
		Scan(&c.UserID, &c.IsActive, &c.PasswordHash)
	if errors.Is(err, sql.ErrNoRows) {
		return Credentials{}, ErrNotFound
	}
	if err != nil {
		return Credentials{}, dbError("find credentials", err)
	}
	return c, nil
}

// CreateToken stores the hash of a new token for the user, valid for ttl,
// with the user's role, and drops the user's expired tokens. It reads the
// user's row with a shared lock, so a concurrent password, role or active
// change either comes first (and no token is issued for the old password,
// or the token gets the new role) or comes after and deletes the token: a
// token row never outlives the state it was issued for. It returns
// ErrUnauthenticated for a user who is gone, inactive, or whose password
// is no longer the one (passwordHash) the login checked.
func (s *Store) CreateToken(ctx context.Context, userID int64, passwordHash string, tokenHash []byte, ttl time.Duration) error {
	return s.inTx(ctx, "create token", func(ctx context.Context, tx *sql.Tx) error {
		var role Role
		err := tx.QueryRowContext(ctx,
			"SELECT role FROM users WHERE id = ? AND is_active = TRUE AND password_hash = ? LOCK IN SHARE MODE",
			userID, passwordHash).Scan(&role)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrUnauthenticated
		}
		if err != nil {
			return dbError("create token: read user", err)
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM auth_tokens WHERE user_id = ? AND expires_at <= NOW(6)", userID); err != nil {
			return dbError("create token: purge expired", err)
		}
		_, err = tx.ExecContext(ctx,
			"INSERT INTO auth_tokens (token_hash, user_id, role, expires_at) VALUES (?, ?, ?, NOW(6) + INTERVAL ? MICROSECOND)",
			tokenHash, userID, role, ttl.Microseconds())
		if err != nil {
			return dbError("create token", err)
		}
		return nil
	})
}

// Authenticate returns the user holding the unexpired token with this
// hash, or ErrUnauthenticated. (Only active users hold tokens.)
func (s *Store) Authenticate(ctx context.Context, tokenHash []byte) (*Caller, error) {
	ctx, cancel, err := s.callContext(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	c := &Caller{TokenHash: tokenHash}
	err = s.db.QueryRowContext(ctx, s.causal("SELECT t.user_id, t.role FROM auth_tokens t WHERE "+tokenValidSQL), tokenHash).
		Scan(&c.ID, &c.Role)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrUnauthenticated
	}
	if err != nil {
		return nil, dbError("authenticate", err)
	}
	return c, nil
}

// RevokeToken deletes one token of the user userID, a logout, and records
// it as a user.tokens_revoked event by actor. A token already gone (a
// concurrent logout) is no change and leaves no event.
func (s *Store) RevokeToken(ctx context.Context, userID int64, tokenHash []byte, actor Actor) error {
	revoked := false
	err := s.inTx(ctx, "revoke token", func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM auth_tokens WHERE token_hash = ?", tokenHash)
		if err != nil {
			return dbError("revoke token", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return nil
		}
		revoked = true
		return insertEvents(ctx, tx, actor, time.Time{}, revocationEvent(userID, revokedLogout))
	})
	if err == nil && revoked {
		s.eventsCommitted(1)
	}
	return err
}

// UpgradePasswordHash replaces the user's hash by newHash, a hash of the
// same password at another cost, if the stored hash is still oldHash.
//
// The rule (docs/events.md): an upgrade of the hash is not a change of the
// account's data, neither of its password nor of anything a client sees.
// It rewrites password_hash alone: no token is revoked, no event is
// recorded, version (the ETag) stays, and so does updated_at, which the
// statement sets to itself, since its ON UPDATE clause would otherwise
// move it with any other column.
func (s *Store) UpgradePasswordHash(ctx context.Context, id int64, oldHash, newHash string) error {
	ctx, cancel, err := s.callContext(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	_, err = s.db.ExecContext(ctx,
		"UPDATE users SET password_hash = ?, updated_at = updated_at WHERE id = ? AND password_hash = ?", newHash, id, oldHash)
	return dbError("upgrade password hash", err)
}
