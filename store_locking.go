package main

import (
	"context"
	"database/sql"
	"errors"
	"strings"
)

// The locking write path: an update or a delete that locks the user's
// row, checks the token again under the lock, applies the last-admin rule
// and writes, one statement per round trip (the fast path,
// store_fastpath.go, takes the simple cases in two).

// UpdateUser applies changes to the user with the given id in one
// transaction: it locks the row, checks changes.IfVersion against its
// version (If-Match: the check and the write cannot be split by another
// writer), refuses to leave no active admin, writes and bumps the version,
// revokes all the user's tokens when the password, role or active flag
// changes, and reads the result back. When changes.ExpectPasswordHash is
// set, the update happens only if the stored hash is still that one (the
// current password was checked against it). Bumping the version changes
// the row, so updated_at moves by its ON UPDATE clause on every write.
// The events of the update (updateEvents), by actor, are recorded in the
// same transaction.
//
// It returns the user as stored after it, and the changes it made: those
// that change a value of the locked row (UserChanges.effective). When
// that is none, nothing is written: no version, no updated_at, no event;
// the checks above still apply.
func (s *Store) UpdateUser(ctx context.Context, id int64, changes UserChanges, actor Actor) (User, UserChanges, error) {
	var updated User
	var made UserChanges
	var events []newEvent
	err := s.inWriteTx(ctx, "update user", func(ctx context.Context, tx *sql.Tx) (writeReceipt, error) {
		events = nil
		cur, err := lockUserAs(ctx, tx, id, actor)
		if err != nil {
			return writeReceipt{}, err
		}
		next := cur.role
		if changes.Role != nil {
			next = *changes.Role
		}
		if err := mayProvision(actor.Type == ActorProvisioningToken, cur.role, next); err != nil {
			return writeReceipt{}, err
		}
		if !changes.IfVersion.allows(cur.version) {
			return writeReceipt{}, ErrPreconditionFailed
		}
		if changes.ExpectPasswordHash != "" && cur.passwordHash != changes.ExpectPasswordHash {
			return writeReceipt{}, ErrPasswordChanged
		}
		receipt := receiptOf(actor, id, cur.lockedAt)
		if made = changes.effective(cur); made.none() {
			receipt = writeReceipt{} // nothing written: nothing to settle
		} else if events, err = writeUpdate(ctx, tx, id, cur, made, actor); err != nil {
			return writeReceipt{}, err
		}
		if updated, err = getUser(ctx, tx, id); err != nil {
			return writeReceipt{}, err
		}
		return receipt, recordAnswer(ctx, tx, changes.Key, userAnswer(&updated))
	})
	if err != nil {
		return User{}, UserChanges{}, err
	}
	s.eventsCommitted(len(events))
	return updated, made, nil
}

// writeUpdate writes changes, which change a value of cur, to the locked
// row id inside tx: the last-admin rule, the update, the revocation of the
// user's tokens when it ends their sessions, and the events, by actor,
// which it returns.
func writeUpdate(ctx context.Context, tx *sql.Tx, id int64, cur lockedUser, changes UserChanges, actor Actor) ([]newEvent, error) {
	if cur.isActiveAdmin() && changes.removesAdmin() {
		if err := ensureOtherActiveAdmin(ctx, tx, id); err != nil {
			return nil, err
		}
	}
	set, args := changes.assignments()
	if _, err := tx.ExecContext(ctx, "UPDATE users SET "+set+" WHERE id = ?", append(args, id)...); err != nil {
		return nil, dbError("update user", err)
	}
	if changes.ExternalID != nil {
		if err := setExternalID(ctx, tx, id, *changes.ExternalID); err != nil {
			return nil, err
		}
	}
	events := updateEvents(id, cur, changes)
	if reason := changes.revocationReason(cur); reason != "" {
		revoked, err := tx.ExecContext(ctx, "DELETE FROM auth_tokens WHERE user_id = ?", id)
		if err != nil {
			return nil, dbError("update user: revoke tokens", err)
		}
		if n, err := revoked.RowsAffected(); err == nil && n > 0 {
			events = append(events, revocationEvent(id, reason))
		}
	}
	if err := insertEvents(ctx, tx, actor, cur.lockedAt, events...); err != nil {
		return nil, err
	}
	return events, nil
}

// setExternalID sets the user's SCIM externalId inside tx, or removes it
// when value is "". The user's row is locked (or new): nobody else
// writes it meanwhile. The UPDATE of users that goes with it bumps the
// version, so the ETag moves with the externalId.
func setExternalID(ctx context.Context, tx *sql.Tx, id int64, value string) error {
	query, args := "DELETE FROM user_external_ids WHERE user_id = ?", []any{id}
	if value != "" {
		query = "INSERT INTO user_external_ids (user_id, external_id) VALUES (?, ?) ON DUPLICATE KEY UPDATE external_id = ?"
		args = []any{id, []byte(value), []byte(value)}
	}
	if _, err := tx.ExecContext(ctx, query, args...); err != nil {
		return dbError("set external id", err)
	}
	return nil
}

// lockUserAs locks the user's row (lockUser) for a change by actor, whose
// token it then checks again under that lock (stillSignedIn).
func lockUserAs(ctx context.Context, tx *sql.Tx, id int64, actor Actor) (lockedUser, error) {
	cur, err := lockUser(ctx, tx, id)
	if err != nil {
		return lockedUser{}, err
	}
	return cur, stillSignedIn(ctx, tx, actor)
}

// stillSignedIn checks, under the row lock the transaction holds, that the
// actor's token is still valid: the request authenticated before the
// lock, and a role change or deactivation that held the lock meanwhile
// may have revoked it. A locking read (share mode) sees the latest commit
// and holds a revocation off until this transaction ends. A provisioning
// token is checked in its own table the same way, with its creator's row
// (provisioningValidSQL).
func stillSignedIn(ctx context.Context, tx *sql.Tx, actor Actor) error {
	if actor.tokenHash == nil {
		return nil // the system acts, or an anonymous sign-up: no token
	}
	query := "SELECT 1 FROM auth_tokens t WHERE " + tokenValidSQL + " LOCK IN SHARE MODE"
	if actor.Type == ActorProvisioningToken {
		query = "SELECT 1 FROM " + provisioningValidSQL + " LOCK IN SHARE MODE"
	}
	var one int
	err := tx.QueryRowContext(ctx, query, actor.tokenHash).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrUnauthenticated
	}
	if err != nil {
		return dbError("check token", err)
	}
	return nil
}

// lockUser reads the user's row FOR UPDATE, so no other transaction can
// change it before this one ends, and the time the lock was granted
// (SYSDATE, unlike NOW, is the time it is evaluated, after the wait).
func lockUser(ctx context.Context, tx *sql.Tx, id int64) (lockedUser, error) {
	var u lockedUser
	var fullName sql.NullString
	err := tx.QueryRowContext(ctx,
		"SELECT username, email, full_name, role, is_active, password_hash, version, SYSDATE(6), "+
			"COALESCE((SELECT x.external_id FROM user_external_ids x WHERE x.user_id = users.id), '') FROM users WHERE id = ? FOR UPDATE", id).
		Scan(&u.username, &u.email, &fullName, &u.role, &u.isActive, &u.passwordHash, &u.version, &u.lockedAt, &u.externalID)
	if errors.Is(err, sql.ErrNoRows) {
		return lockedUser{}, ErrNotFound
	}
	if err != nil {
		return lockedUser{}, dbError("lock user", err)
	}
	if fullName.Valid {
		u.fullName = &fullName.String
	}
	return u, nil
}

// ensureOtherActiveAdmin returns ErrLastAdmin unless an active admin other
// than id exists, and locks that admin's row so it cannot be demoted by a
// concurrent transaction until this one ends. Every caller first writes
// the admin guard row, so two removals of admins never run side by side:
// the second waits (or, on Galera, fails certification and runs again)
// and then sees the first's outcome.
func ensureOtherActiveAdmin(ctx context.Context, tx *sql.Tx, id int64) error {
	// Write the guard row first (see schema.sql): concurrent removals of
	// admins then conflict, on one server and across Galera nodes.
	if _, err := tx.ExecContext(ctx,
		"INSERT INTO admin_guard (id, removals) VALUES (1, 1) ON DUPLICATE KEY UPDATE removals = removals + 1"); err != nil {
		return dbError("guard admin removal", err)
	}
	var other int64
	err := tx.QueryRowContext(ctx,
		"SELECT id FROM users WHERE role = 'admin' AND is_active = TRUE AND id <> ? LIMIT 1 FOR UPDATE", id).Scan(&other)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrLastAdmin
	}
	if err != nil {
		return dbError("find another admin", err)
	}
	return nil
}

// assignments returns the SET clause for the changed columns and its
// arguments. Column names are constants here, never client input.
func (c UserChanges) assignments() (string, []any) {
	var cols []string
	var args []any
	add := func(col string, v any) {
		cols = append(cols, col+" = ?")
		args = append(args, v)
	}
	if c.Username != nil {
		add("username", *c.Username)
	}
	if c.Email != nil {
		add("email", *c.Email)
	}
	if c.PasswordHash != nil {
		add("password_hash", *c.PasswordHash)
	}
	if c.SetFullName {
		add("full_name", c.FullName)
	}
	if c.Role != nil {
		add("role", *c.Role)
	}
	if c.IsActive != nil {
		add("is_active", *c.IsActive)
	}
	cols = append(cols, "version = version + 1")
	return strings.Join(cols, ", "), args
}

// DeleteUser deletes the user with the given id, or returns ErrNotFound.
// The last active admin cannot be deleted. The user's tokens go with it
// (ON DELETE CASCADE), without an event of their own: user.deleted, by
// actor, says it all. ifVersion is checked against the user's version
// under the row lock: a mismatch is ErrPreconditionFailed.
func (s *Store) DeleteUser(ctx context.Context, id int64, ifVersion VersionMatch, actor Actor, key *IdempotencyKey) error {
	err := s.inWriteTx(ctx, "delete user", func(ctx context.Context, tx *sql.Tx) (writeReceipt, error) {
		cur, err := lockUserAs(ctx, tx, id, actor)
		if err != nil {
			return writeReceipt{}, err
		}
		if err := mayProvision(actor.Type == ActorProvisioningToken, cur.role, cur.role); err != nil {
			return writeReceipt{}, err
		}
		if !ifVersion.allows(cur.version) {
			return writeReceipt{}, ErrPreconditionFailed
		}
		if cur.isActiveAdmin() {
			if err := ensureOtherActiveAdmin(ctx, tx, id); err != nil {
				return writeReceipt{}, err
			}
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM users WHERE id = ?", id); err != nil {
			return writeReceipt{}, dbError("delete user", err)
		}
		if err := insertEvents(ctx, tx, actor, cur.lockedAt, newEvent{Type: EventUserDeleted, UserID: id}); err != nil {
			return writeReceipt{}, err
		}
		if err := recordAnswer(ctx, tx, key, deletedAnswer()); err != nil {
			return writeReceipt{}, err
		}
		return receiptOf(actor, id, cur.lockedAt), s.addToUserCount(ctx, tx, -1)
	})
	if err == nil {
		s.eventsCommitted(1)
	}
	return err
}
