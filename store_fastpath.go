package main

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"strconv"
	"strings"
	"time"
)

// The fast write path: an update of username, email or full name, or the
// delete of a user who is not an active admin, in two round trips, with
// every guarantee of the locking path. (Not on Galera: fastTx says why.)
//
//  1. "START TRANSACTION; SELECT ... FOR UPDATE": one round trip that
//     checks the token (scalar subqueries on auth_tokens, share-locked, so
//     one admin's concurrent writes do not queue on their token row but a
//     revocation waits), locks the user's row and reads it, with
//     SYSDATE(6), the time after the lock was granted.
//  2. "UPDATE ...; INSERT INTO user_events ...; COMMIT" (or the DELETE,
//     the count and the event): the write, its audit event and the commit
//     in one round trip (commitWith). The answer is computed from the row
//     read in 1. A request with an Idempotency-Key records its answer as
//     the last write and sends COMMIT alone, once it has checked that
//     write matched its key's row (recordThenCommit).
//
// A server error stops the batch at the statement that failed, so nothing
// committed; a batch without an answer (the connection broke, the
// deadline passed) may have committed, and is settled from the write's
// receipt (store_commit.go): a 503 never belongs to a change applied.
//
// Between the two, Go checks the caller's right, If-Match and the rules;
// a request it cannot decide (no such row, an email change by its owner,
// an active admin's deletion) is rolled back and taken by the locking
// path, which gives the precise answer. Any failure rolls the transaction
// back before the connection goes back to the pool; a connection that
// cannot roll back is discarded. The statements of one round trip are
// sent together (the pool has multiStatements on); their values are
// always arguments, never spliced into the text.

// errSlowPath: the fast path cannot decide the request; take the locking
// path.
var errSlowPath = errors.New("the locking path decides this request")

// fastLock is what the first round trip reads: the caller the token
// names (none for an invalid one), the user's row, and the time.
type fastLock struct {
	caller *Caller
	user   User
	hash   string
	now    time.Time
}

// UpdateUserFast applies changes that touch only username, email and
// full name, as the caller holding tokenHash, to the user ref names, and
// returns the user as stored after it: as read under the lock when the
// changes change nothing (updateFastOnce). It returns ErrUnauthenticated,
// a *ForbiddenError, ErrPreconditionFailed, a *ConflictError, or
// errSlowPath for the locking path to decide.
func (s *Store) UpdateUserFast(ctx context.Context, tokenHash []byte, ref userRef, rule access, changes UserChanges, actor Actor) (User, error) {
	var updated User
	err := s.Retry(ctx, func() error {
		var err error
		updated, err = s.updateFastOnce(ctx, tokenHash, ref, rule, changes, actor)
		return err
	})
	return updated, err
}

// errUnchanged: the changes change nothing of the locked row, so the fast
// path rolls back and answers with the row as read.
var errUnchanged = errors.New("the changes change nothing")

// updateFastOnce is one attempt of UpdateUserFast. Changes that change
// nothing of the row read under the lock (UserChanges.effective), once
// the caller's right and If-Match pass, write nothing: the transaction
// rolls back, and the answer is the user as read.
func (s *Store) updateFastOnce(ctx context.Context, tokenHash []byte, ref userRef, rule access, changes UserChanges, actor Actor) (User, error) {
	var updated User
	err := s.fastTx(ctx, tokenHash, ref, func(lock fastLock) (fastWrite, error) {
		caller, cur, locked := lock.caller, lock.user, lockedOf(lock.user, lock.hash)
		if err := rule.permits(caller, cur.ID); err != nil {
			return fastWrite{}, err
		}
		switch {
		case !changes.IfVersion.allows(cur.Version):
			return fastWrite{}, ErrPreconditionFailed
		case caller.ID == cur.ID && changesIdentity(changes.Username, changes.Email, cur):
			// Its owner's changes of username and email are limited, and of
			// email need the current password.
			return fastWrite{}, errSlowPath
		case changes.effective(locked).none():
			updated = cur
			if changes.Key == nil {
				return fastWrite{}, errUnchanged
			}
			return fastWrite{}.recording(changes.Key, userAnswer(&updated)), nil // the answer, and nothing else
		}
		actor.Type, actor.ID = ActorUser, caller.ID
		events := updateEvents(cur.ID, locked, changes)
		set, args := changes.assignments()
		args = append(args, lock.now, cur.ID)
		eventsSQL, eventArgs := insertEventsSQL(actor, lock.now, events...)
		updated = changes.appliedTo(cur, lock.now)
		write := fastWrite{statements: "UPDATE users SET " + set + ", updated_at = ? WHERE id = ?; " + eventsSQL,
			args: append(args, eventArgs...), events: len(events), receipt: receiptOf(actor, cur.ID, lock.now)}
		return write.recording(changes.Key, userAnswer(&updated)), nil
	})
	if errors.Is(err, errUnchanged) {
		return updated, nil
	}
	return updated, err
}

// DeleteUserFast deletes the user id as the caller holding tokenHash,
// unless the user is an active admin (errSlowPath: the last-admin rule
// takes the locking path), or is the caller.
func (s *Store) DeleteUserFast(ctx context.Context, tokenHash []byte, id int64, rule access, ifVersion VersionMatch, actor Actor, key *IdempotencyKey) error {
	return s.Retry(ctx, func() error {
		return s.fastTx(ctx, tokenHash, userRef{id: id}, func(lock fastLock) (fastWrite, error) {
			caller, cur := lock.caller, lock.user
			if err := cmp.Or(rule.permits(caller, cur.ID), mayDelete(caller, cur.ID)); err != nil {
				return fastWrite{}, err
			}
			switch {
			case !ifVersion.allows(cur.Version):
				return fastWrite{}, ErrPreconditionFailed
			case cur.Role == RoleAdmin && cur.IsActive:
				return fastWrite{}, errSlowPath
			}
			actor.Type, actor.ID = ActorUser, caller.ID
			eventsSQL, eventArgs := insertEventsSQL(actor, lock.now, newEvent{Type: EventUserDeleted, UserID: cur.ID})
			args := []any{cur.ID, s.countSlot(), -1, -1}
			write := fastWrite{statements: "DELETE FROM users WHERE id = ?; " + userCountSQL + "; " + eventsSQL,
				args: append(args, eventArgs...), events: 1, receipt: receiptOf(actor, cur.ID, lock.now)}
			return write.recording(key, deletedAnswer()), nil
		})
	})
}

// fastWrite is what a fast write sends in its second round trip: the
// statements and their arguments, how many events they record, and the
// write's receipt, to find out whether it committed when the answer to
// its COMMIT is lost.
type fastWrite struct {
	statements string
	args       []any
	events     int
	receipt    writeReceipt
	// recordsKey: the last statement records the answer under an
	// Idempotency-Key, and must match its one row (the claim held).
	recordsKey bool
}

// recording is w with, when key is set, the answer recorded under it as
// its last statement.
func (w fastWrite) recording(key *IdempotencyKey, answer RecordedAnswer) fastWrite {
	if key == nil {
		return w
	}
	if w.statements != "" {
		w.statements += "; "
	}
	w.statements += completeKeySQL
	w.args = append(w.args, completeKeyArgs(*key, answer)...)
	w.recordsKey = true
	return w
}

// fastTx runs the round trips: it locks and reads the row ref names with
// the caller of tokenHash, asks decide for the writes, sends them, then
// COMMIT alone (commitConn: a lost answer is settled from the receipt,
// never guessed). Every error before COMMIT leaves the transaction rolled
// back.
func (s *Store) fastTx(ctx context.Context, tokenHash []byte, ref userRef, decide func(fastLock) (fastWrite, error)) error {
	// On a Galera node every write takes the locking path, one statement
	// per round trip. Under certification conflicts the statements sent
	// together here went wrong there, though every error the driver
	// returned was handled: If-Match writers on three nodes holding one
	// ETag could both win (TestClusterIdempotencyAndIfMatch), and commits
	// answered as successes were lost; the locking path, with the same
	// checks, never did (docs/performance.md has the counts).
	if s.galera.Load() {
		return errSlowPath
	}
	ctx, cancel, err := s.callContext(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return dbError("fast write: connect", err)
	}
	defer conn.Close()
	ended := false // committed, or its outcome settled
	defer func() {
		if !ended {
			rollback(ctx, conn)
		}
	}()
	lock, err := s.readForUpdate(ctx, conn, tokenHash, ref)
	if err != nil {
		return err
	}
	write, err := decide(lock)
	if err != nil {
		return err
	}
	if write.recordsKey {
		err = s.recordThenCommit(ctx, conn, write)
	} else {
		err = s.commitWith(ctx, conn, "fast write", write.statements, write.args, write.receipt)
	}
	if err == nil {
		ended = true
		s.eventsCommitted(write.events)
	}
	return err
}

// recordThenCommit sends the writes of a keyed request, checks that the
// last of them recorded the answer under its key (the claim still held),
// and then sends COMMIT.
func (s *Store) recordThenCommit(ctx context.Context, conn *sql.Conn, write fastWrite) error {
	res, err := conn.ExecContext(ctx, write.statements, write.args...)
	if err != nil {
		return dbError("fast write", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return ErrClaimLost // a retry took the key over: it answers, not this request
	}
	return s.commitConn(ctx, conn, "fast write: commit", write.receipt)
}

// fastLockSQL starts the transaction and reads, under the row lock, the
// caller (one scalar subquery: "role id", split in Go, since each lookup
// costs the server as much as the rest of the read) and the user, by id
// or, for "me", by the token's holder.
//
// The user's row is found through the token in both cases: its id is a
// scalar subquery on the token ("SELECT ? ... WHERE token valid"), NULL
// for a token that is not valid, so that the server finds the WHERE
// impossible before it reads or locks any row of users. An anonymous
// request cannot lock a user's row, nor learn from its answer or its
// timing whether the id exists: with an invalid token, every id reads
// nothing, and the locking path answers 401
// (TestAnonymousWritesIndependentOfID).
//
// The token subqueries are locking reads in share mode: a plain read in
// the same statement would see the snapshot taken when the statement
// began, before it waited for the row lock, and so a token that the
// transaction holding that lock revoked (a role change, a deactivation)
// could still write once the lock passes. Share locks between writers of
// one token do not block each other; a revocation waits for them. (MySQL
// takes LOCK IN SHARE MODE, a synonym of FOR SHARE, in subqueries since
// 8.0.22; MariaDB always has.)
const fastLockSQL = "START TRANSACTION; SELECT" +
	" (SELECT CONCAT(t.role, ' ', t.user_id) FROM auth_tokens t WHERE " + tokenValidSQL + " LOCK IN SHARE MODE)," +
	" " + userColumns + ", password_hash, SYSDATE(6) FROM users WHERE id = "

// readForUpdate runs the first round trip. No row (no such user, or a
// token that is not valid) is errSlowPath; a row without a caller (the
// token expired between the two subqueries) is ErrUnauthenticated.
func (s *Store) readForUpdate(ctx context.Context, conn *sql.Conn, tokenHash []byte, ref userRef) (fastLock, error) {
	query, args := fastLockSQL+"(SELECT ? FROM auth_tokens t WHERE "+tokenValidSQL+" LOCK IN SHARE MODE) FOR UPDATE",
		[]any{tokenHash, ref.id, tokenHash}
	if ref.self {
		query = fastLockSQL + "(SELECT t.user_id FROM auth_tokens t WHERE " + tokenValidSQL + " LOCK IN SHARE MODE) FOR UPDATE"
		args = args[:2]
		args[1] = tokenHash
	}
	rows, err := conn.QueryContext(ctx, query, args...)
	if err != nil {
		return fastLock{}, dbError("fast write: lock", err)
	}
	defer rows.Close()
	// The first result is START TRANSACTION's: no rows.
	for !rows.Next() {
		if err := rows.Err(); err != nil {
			return fastLock{}, dbError("fast write: lock", err)
		}
		if !rows.NextResultSet() {
			if err := rows.Err(); err != nil { // the read failed
				return fastLock{}, dbError("fast write: lock", err)
			}
			return fastLock{}, errSlowPath
		}
	}
	var (
		holder sql.NullString // "role id"
		row    userRow
		lock   fastLock
	)
	dest := append([]any{&holder}, row.dest()...)
	if err := rows.Scan(append(dest, &lock.hash, &lock.now)...); err != nil {
		return fastLock{}, dbError("fast write: read", err)
	}
	// The end of the answer may still carry an error that ended the
	// transaction (Galera reports a conflict this way, after the row).
	// Ignored, it would leave the connection outside any transaction, and
	// the writes of the second round trip would each commit on their own,
	// past the checks made on the row read here.
	if err := rows.Close(); err != nil {
		return fastLock{}, dbError("fast write: read", err)
	}
	role, id, _ := strings.Cut(holder.String, " ")
	callerID, err := strconv.ParseInt(id, 10, 64)
	if !holder.Valid || err != nil {
		return fastLock{}, ErrUnauthenticated
	}
	lock.caller = &Caller{ID: callerID, Role: Role(role), TokenHash: tokenHash}
	lock.user, _ = row.user()
	return lock, nil
}

// rollback ends the connection's transaction; a connection on which that
// fails is discarded, never reused with a transaction open.
func rollback(ctx context.Context, conn *sql.Conn) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
		conn.Raw(func(any) error { return driver.ErrBadConn })
	}
}

// lockedOf is the locked view of a user read by the fast path.
func lockedOf(u User, hash string) lockedUser {
	return lockedUser{username: u.Username, email: u.Email, fullName: u.FullName, role: u.Role,
		isActive: u.IsActive, passwordHash: hash, version: u.Version}
}

// appliedTo is u after the changes, written at the time now: what the
// row holds once the update commits.
func (c UserChanges) appliedTo(u User, now time.Time) User {
	if c.Username != nil {
		u.Username = *c.Username
	}
	if c.Email != nil {
		u.Email = *c.Email
	}
	if c.SetFullName {
		u.FullName = c.FullName
	}
	u.Version++
	u.UpdatedAt = now
	return u
}

// userCountSQL adds to one slot of the user count (arguments: slot, and
// the delta twice).
const userCountSQL = "INSERT INTO user_counts (slot, n) VALUES (?, ?) ON DUPLICATE KEY UPDATE n = n + ?"
