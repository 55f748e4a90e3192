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

// CredentialsFor finds the user who signs in as login, or returns
// ErrNotFound. A login without '@' is a username. One with '@' is a
// username first, and else an email: usernames may hold '@' (identity
// providers send email-shaped names), only admins and provisioning set
// such a username, and so one user's username beats another's email
// (docs/scim.md). Both lookups use their unique index, in one statement.
func (s *Store) CredentialsFor(ctx context.Context, login string) (Credentials, error) {
	ctx, cancel, err := s.callContext(ctx)
	if err != nil {
		return Credentials{}, err
	}
	defer cancel()
	query, args := "SELECT id, is_active, password_hash FROM users WHERE username = ?", []any{login}
	if strings.Contains(login, "@") {
		query = "SELECT id, is_active, password_hash FROM (" +
			"(SELECT id, is_active, password_hash, 0 AS pref FROM users WHERE username = ?) UNION ALL " +
			"(SELECT id, is_active, password_hash, 1 AS pref FROM users WHERE email = ?)) AS found ORDER BY pref LIMIT 1"
		args = []any{login, strings.ToLower(login)}
	}
	var c Credentials
	err = s.db.QueryRowContext(ctx, s.causal(query), args...).Scan(&c.UserID, &c.IsActive, &c.PasswordHash)
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

// provisioningValidSQL selects the provisioning token row p, looked up by
// its hash (the one argument), when it is valid: not revoked, not
// expired, and its creator c still an active admin. A token is an admin's
// right lent to a provider: it goes with the admin's demotion or
// deactivation, and with their deletion (created_by NULL joins no user).
// It is written only here; a locking read of it also locks the creator's
// row, so a demotion waits for a write the token is making.
const provisioningValidSQL = "provisioning_tokens p JOIN users c ON c.id = p.created_by" +
	" WHERE p.token_hash = ? AND p.revoked_at IS NULL AND (p.expires_at IS NULL OR p.expires_at > NOW(6))" +
	" AND c.is_active = TRUE AND c.role = 'admin'"

// maxProvisioningTokensListed bounds the list of provisioning tokens: a
// service has a handful, one per identity provider.
const maxProvisioningTokensListed = 1000

// provisioningColumns are the listed columns of a provisioning token, in
// the order scanProvisioningToken reads them.
const provisioningColumns = "id, name, scope, created_by, created_at, expires_at"

// scanProvisioningToken is the one scanner of provisioningColumns.
func scanProvisioningToken(row rowScanner) (ProvisioningToken, error) {
	var t ProvisioningToken
	var createdBy sql.NullInt64
	var expires sql.NullTime
	if err := row.Scan(&t.ID, &t.Name, &t.Scope, &createdBy, &t.CreatedAt, &expires); err != nil {
		return ProvisioningToken{}, err
	}
	if createdBy.Valid {
		t.CreatedBy = &createdBy.Int64
	}
	if expires.Valid {
		t.ExpiresAt = &expires.Time
	}
	return t, nil
}

// CreateProvisioningToken stores a new provisioning token, of which only
// tokenHash is kept, and returns it as stored.
func (s *Store) CreateProvisioningToken(ctx context.Context, t ProvisioningToken, tokenHash []byte) (ProvisioningToken, error) {
	var created ProvisioningToken
	err := s.inTx(ctx, "create provisioning token", func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx,
			"INSERT INTO provisioning_tokens (token_hash, name, scope, created_by, expires_at) VALUES (?, ?, ?, ?, ?)",
			tokenHash, t.Name, t.Scope, t.CreatedBy, t.ExpiresAt)
		if err != nil {
			return dbError("create provisioning token", err)
		}
		id, err := res.LastInsertId()
		if err != nil {
			return dbError("create provisioning token: last insert id", err)
		}
		created, err = scanProvisioningToken(tx.QueryRowContext(ctx, "SELECT "+provisioningColumns+" FROM provisioning_tokens WHERE id = ?", id))
		return dbError("create provisioning token: read back", err)
	})
	return created, err
}

// ProvisioningTokens lists the tokens not revoked, expired ones included
// (an admin sees what to replace), newest first, at most
// maxProvisioningTokensListed.
func (s *Store) ProvisioningTokens(ctx context.Context) ([]ProvisioningToken, error) {
	ctx, cancel, err := s.callContext(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	rows, err := s.db.QueryContext(ctx, s.causal("SELECT "+provisioningColumns+
		" FROM provisioning_tokens WHERE revoked_at IS NULL ORDER BY id DESC LIMIT ?"), maxProvisioningTokensListed)
	if err != nil {
		return nil, dbError("list provisioning tokens", err)
	}
	defer rows.Close()
	tokens := []ProvisioningToken{}
	for rows.Next() {
		t, err := scanProvisioningToken(rows)
		if err != nil {
			return nil, dbError("list provisioning tokens", err)
		}
		tokens = append(tokens, t)
	}
	return tokens, dbError("list provisioning tokens", rows.Err())
}

// RevokeProvisioningToken revokes the token id at once: every replica
// refuses it from the commit on, and a write it is making holds the
// revocation off until that write ends (stillSignedIn). revoked_at is
// SYSDATE, the time the row lock was granted, so every event the token
// made is older than it. A token unknown or already revoked is
// ErrTokenNotFound.
func (s *Store) RevokeProvisioningToken(ctx context.Context, id int64) error {
	ctx, cancel, err := s.callContext(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	res, err := s.db.ExecContext(ctx, "UPDATE provisioning_tokens SET revoked_at = SYSDATE(6) WHERE id = ? AND revoked_at IS NULL", id)
	if err != nil {
		return dbError("revoke provisioning token", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return ErrTokenNotFound
	}
	return nil
}

// AuthenticateProvisioning returns the caller a valid provisioning token
// with this hash stands for, or ErrUnauthenticated.
func (s *Store) AuthenticateProvisioning(ctx context.Context, tokenHash []byte) (*Caller, error) {
	ctx, cancel, err := s.callContext(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	c := &Caller{TokenHash: tokenHash}
	err = s.db.QueryRowContext(ctx, s.causal("SELECT p.id, p.scope FROM "+provisioningValidSQL), tokenHash).
		Scan(&c.TokenID, &c.Scope)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrUnauthenticated
	}
	if err != nil {
		return nil, dbError("authenticate provisioning token", err)
	}
	return c, nil
}
