package main

import (
	"context"
	"database/sql"
	"errors"
	"math/rand/v2"
	"strings"
	"time"
)

// userColumns are the columns of a user as clients see it, in the order
// userRow scans them; userColumnsU is the same list qualified by the
// alias u, for joins.
const userColumns = "id, username, email, full_name, role, is_active, created_at, updated_at, version"

var userColumnsU = prefixed("u", userColumns)

// prefixed qualifies each column of a comma-separated list with table.
func prefixed(table, columns string) string {
	cols := strings.Split(columns, ", ")
	for i, c := range cols {
		cols[i] = table + "." + c
	}
	return strings.Join(cols, ", ")
}

// userRow is the one scanner of userColumns. Every column may be NULL, as
// it is when a LEFT JOIN finds no user; full_name may be NULL anyway.
type userRow struct {
	id               sql.NullInt64
	username, email  sql.NullString
	fullName, role   sql.NullString
	active           sql.NullBool
	created, updated sql.NullTime
	version          sql.NullInt64
}

// dest returns the scan destinations, in userColumns order.
func (r *userRow) dest() []any {
	return []any{&r.id, &r.username, &r.email, &r.fullName, &r.role, &r.active, &r.created, &r.updated, &r.version}
}

// user returns the scanned user, or false when the row held none.
func (r *userRow) user() (User, bool) {
	if !r.id.Valid {
		return User{}, false
	}
	u := User{ID: r.id.Int64, Username: r.username.String, Email: r.email.String, Role: Role(r.role.String),
		IsActive: r.active.Bool, CreatedAt: r.created.Time, UpdatedAt: r.updated.Time, Version: r.version.Int64}
	if r.fullName.Valid {
		name := r.fullName.String // a copy: r may be scanned into again
		u.FullName = &name
	}
	return u, true
}

// scanUser scans userColumns, then extra, from row.
func scanUser(row rowScanner, extra ...any) (User, error) {
	var r userRow
	if err := row.Scan(append(r.dest(), extra...)...); err != nil {
		return User{}, err
	}
	u, _ := r.user()
	return u, nil
}

// getUser reads one user through q, a pool or a transaction.
func getUser(ctx context.Context, q queryer, id int64) (User, error) {
	u, err := scanUser(q.QueryRowContext(ctx, "SELECT "+userColumns+" FROM users WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, ErrNotFound
	}
	if err != nil {
		return User{}, dbError("get user", err)
	}
	return u, nil
}

// CreateUser inserts u, counts it and records its user.created event by
// actor, in one transaction, and returns the user as stored (read back
// for the server-set columns: MySQL has no INSERT ... RETURNING). With
// key, the 201 (createdAnswer) is recorded under it in the same
// transaction, so the user and the record of its creation exist together
// or not at all (ErrClaimLost if a retry took the key over, and then
// nothing is created). The actor's token is checked again inside the
// transaction (stillSignedIn). A taken username or email is a *ConflictError: the
// unique indexes decide, so concurrent creates of one name cannot both
// succeed.
func (s *Store) CreateUser(ctx context.Context, u NewUser, actor Actor, key *IdempotencyKey) (User, error) {
	if err := mayProvision(actor.Type == ActorProvisioningToken, "", u.Role); err != nil {
		return User{}, err
	}
	var created User
	err := s.inWriteTx(ctx, "create user", func(ctx context.Context, tx *sql.Tx) (writeReceipt, error) {
		// The actor's token, checked again in the transaction: one revoked
		// while the request ran (a provider's, an admin's logout) creates
		// nothing, and its revocation waits for a create it let through.
		if err := stillSignedIn(ctx, tx, actor); err != nil {
			return writeReceipt{}, err
		}
		id, err := s.insertUser(ctx, tx, u, actor)
		if err != nil {
			return writeReceipt{}, err
		}
		if created, err = getUser(ctx, tx, id); err != nil {
			return writeReceipt{}, err
		}
		if err := recordAnswer(ctx, tx, key, createdAnswer(&created)); err != nil {
			return writeReceipt{}, err
		}
		// Any event of the new id is this create's (a zero time).
		return writeReceipt{userID: id, requestID: truncate(actor.RequestID, eventRequestIDMax)}, nil
	})
	if err != nil {
		return User{}, err
	}
	s.eventsCommitted(1)
	return created, nil
}

// insertUser inserts u, counts it and records its creation by actor,
// inside tx, and returns its id.
func (s *Store) insertUser(ctx context.Context, tx *sql.Tx, u NewUser, actor Actor) (int64, error) {
	res, err := tx.ExecContext(ctx,
		"INSERT INTO users (username, email, password_hash, full_name, role, is_active) VALUES (?, ?, ?, ?, ?, ?)",
		u.Username, u.Email, u.PasswordHash, u.FullName, u.Role, u.IsActive)
	if err != nil {
		return 0, dbError("create user", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, dbError("create user: last insert id", err)
	}
	if u.ExternalID != nil && *u.ExternalID != "" {
		if err := setExternalID(ctx, tx, id, *u.ExternalID); err != nil {
			return 0, err
		}
	}
	if err := insertEvents(ctx, tx, actor, time.Time{}, newEvent{Type: EventUserCreated, UserID: id}); err != nil {
		return 0, err
	}
	return id, s.addToUserCount(ctx, tx, 1)
}

// userCountSlots is how many rows the user count is spread over per
// database node: each write picks one at random, so concurrent creates do
// not all queue on one row lock.
const userCountSlots = 8

// countSlot picks the user_counts slot a write adds to: one of this
// node's (countSlotBase), at random.
func (s *Store) countSlot() int {
	return int(s.countSlotBase.Load()) + rand.IntN(userCountSlots)
}

// addToUserCount adds delta to one slot of the user count, inside the
// transaction that inserts or deletes the user. On Galera each node writes
// its own slots (countSlotBase), so counting never makes writes on two
// nodes conflict.
func (s *Store) addToUserCount(ctx context.Context, tx *sql.Tx, delta int) error {
	_, err := tx.ExecContext(ctx, userCountSQL, s.countSlot(), delta, delta)
	if err != nil {
		return dbError("count users", err)
	}
	return nil
}

// callerAndSelfSQL and callerAndUserSQL authenticate a token and read one
// user in a single statement: a row comes back only for a valid token
// (the caller's id and role first), with the user's columns NULL when no
// user has the id. The first reads the caller's own account.
var (
	callerAndSelfSQL = "SELECT t.user_id, t.role, " + userColumnsU +
		" FROM auth_tokens t LEFT JOIN users u ON u.id = t.user_id WHERE " + tokenValidSQL
	callerAndUserSQL = "SELECT t.user_id, t.role, " + userColumnsU +
		" FROM auth_tokens t LEFT JOIN users u ON u.id = ? WHERE " + tokenValidSQL
)

// UserAs authenticates the token and reads the user ref names in one
// round trip. The user is nil when none has the id; the caller must still
// be checked for the right to see it.
func (s *Store) UserAs(ctx context.Context, tokenHash []byte, ref userRef) (*Caller, *User, error) {
	ctx, cancel, err := s.callContext(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer cancel()
	query, args := callerAndSelfSQL, []any{tokenHash}
	if !ref.self {
		query, args = callerAndUserSQL, []any{ref.id, tokenHash}
	}
	row, err := s.queryRow(ctx, s.causal(query), args...)
	if err != nil {
		return nil, nil, dbError("get user", err)
	}
	caller := &Caller{TokenHash: tokenHash}
	var u userRow
	err = row.Scan(append([]any{&caller.ID, &caller.Role}, u.dest()...)...)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, ErrUnauthenticated
	}
	if err != nil {
		return nil, nil, dbError("get user", err)
	}
	if user, ok := u.user(); ok {
		return caller, &user, nil
	}
	return caller, nil, nil
}

// UserWithPasswordHash returns the user and its stored hash, for checks
// that need both (the current password, a password equal to the username).
func (s *Store) UserWithPasswordHash(ctx context.Context, id int64) (User, string, error) {
	ctx, cancel, err := s.callContext(ctx)
	if err != nil {
		return User{}, "", err
	}
	defer cancel()
	var hash string
	u, err := scanUser(s.db.QueryRowContext(ctx, s.causal("SELECT "+userColumns+", password_hash FROM users WHERE id = ?"), id), &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, "", ErrNotFound
	}
	if err != nil {
		return User{}, "", dbError("get user", err)
	}
	return u, hash, nil
}

// BootstrapAdmin creates u, an admin, unless an active admin exists, and
// records it as made by actor (the system). It reports whether it created
// one. Replicas starting together may race: the unique indexes let one
// win, and the others find its admin.
func (s *Store) BootstrapAdmin(ctx context.Context, u NewUser, actor Actor) (bool, error) {
	created := false
	err := s.inTx(ctx, "bootstrap admin", func(ctx context.Context, tx *sql.Tx) error {
		var id int64
		err := tx.QueryRowContext(ctx, "SELECT id FROM users WHERE role = 'admin' AND is_active = TRUE LIMIT 1 FOR UPDATE").Scan(&id)
		if err == nil {
			return nil // an active admin exists
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return dbError("bootstrap admin: find admin", err)
		}
		u.Role, u.IsActive = RoleAdmin, true
		if _, err := s.insertUser(ctx, tx, u, actor); err != nil {
			return err
		}
		created = true
		return nil
	})
	if created && err == nil {
		s.eventsCommitted(1)
	}
	return created && err == nil, err
}

// HasActiveAdmin reports whether any active admin exists: without one,
// nobody can manage users.
func (s *Store) HasActiveAdmin(ctx context.Context) (bool, error) {
	ctx, cancel, err := s.callContext(ctx)
	if err != nil {
		return false, err
	}
	defer cancel()
	var id int64
	err = s.db.QueryRowContext(ctx, "SELECT id FROM users WHERE role = 'admin' AND is_active = TRUE LIMIT 1").Scan(&id)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	case err != nil:
		return false, dbError("find an active admin", err)
	}
	return true, nil
}
