package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Truthful outcomes. Every failure of a write falls on one side of its
// COMMIT:
//
//   - before COMMIT was sent (a statement failed, the deadline passed),
//     nothing can commit: the transaction is rolled back, and the answer
//     (a 503, "try again") is true;
//   - the server answered with an error: it did not commit (an error
//     stops a batch of statements where it happens, so a COMMIT sent at
//     the end of the batch did not run, or failed);
//   - COMMIT was sent and no answer came (the connection broke, the
//     deadline passed): it may have committed. The store then finds out,
//     on another connection, from the write's receipt, and answers what
//     happened; where it cannot know, it answers ErrOutcomeUnknown, never
//     "try again".
//
// The locking path and keyed writes send COMMIT alone (commitTx,
// commitConn); the fast path sends it at the end of its writes
// (commitWith), one round trip fewer.

// writeReceipt identifies what a write left in the database: the events it
// recorded for user userID, in request requestID, at the time at (read by
// the write under its row lock; the next writer of that row locks it
// later, so no other write's events have the same time). A zero at (a
// create) matches any time: the new user's id is the write's own.
type writeReceipt struct {
	userID    int64
	requestID string
	at        time.Time
}

// receiptOf is the receipt of a write by actor on user id at time at.
func receiptOf(actor Actor, id int64, at time.Time) writeReceipt {
	return writeReceipt{userID: id, requestID: truncate(actor.RequestID, eventRequestIDMax), at: at}
}

// commitOutcomeUnknown reports whether err, returned by a COMMIT that was
// sent, leaves its outcome unknown: the server gave no answer. A server
// error is an answer (the commit failed); ErrTxDone means database/sql
// had already rolled the transaction back. (It also returns the
// context's error without sending anything when the context ended first;
// the receipt then says "not committed".)
func commitOutcomeUnknown(err error) bool {
	if err == nil || errors.Is(err, sql.ErrTxDone) {
		return false
	}
	_, answered := errors.AsType[*mysql.MySQLError](err)
	return !answered
}

// commitConn sends COMMIT on conn, alone, unless ctx has already ended
// (then nothing is sent, and the caller's rollback holds). The commit
// gets its own deadline, the store's timeout, so a request whose deadline
// falls while the server commits still hears the answer. A lost answer is
// resolved from the receipt (settleCommit).
func (s *Store) commitConn(ctx context.Context, conn *sql.Conn, op string, r writeReceipt) error {
	if err := ctx.Err(); err != nil {
		return dbError(op, err)
	}
	commitCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	_, err := conn.ExecContext(commitCtx, "COMMIT")
	if commitOutcomeUnknown(err) {
		return s.settleCommit(ctx, op, err, r)
	}
	return dbError(op, err)
}

// commitWith sends statements and COMMIT in one round trip on conn,
// inside its transaction. A server error is an answer (the batch stopped
// there: nothing committed); no answer at all is settled from the receipt.
func (s *Store) commitWith(ctx context.Context, conn *sql.Conn, op, statements string, args []any, r writeReceipt) error {
	_, err := conn.ExecContext(ctx, statements+"; COMMIT", args...)
	if commitOutcomeUnknown(err) {
		return s.settleCommit(ctx, op, err, r)
	}
	return dbError(op, err)
}

// commitTx commits tx; a lost answer is resolved from the receipt.
func (s *Store) commitTx(ctx context.Context, tx *sql.Tx, op string, r writeReceipt) error {
	err := tx.Commit()
	if commitOutcomeUnknown(err) {
		return s.settleCommit(ctx, op, err, r)
	}
	return dbError(op, err)
}

// settleCommit finds out whether a write whose COMMIT got no answer (err)
// committed: nil if it did, the database error (a 503) if it did not, and
// ErrOutcomeUnknown when that cannot be known (the database cannot be
// asked, or on Galera, where the write set may still be certifying on the
// node that took it).
func (s *Store) settleCommit(ctx context.Context, op string, err error, r writeReceipt) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.timeout)
	defer cancel()
	committed, checkErr := s.receiptFound(ctx, r)
	switch {
	case checkErr != nil:
		return fmt.Errorf("%s: %w: %w (and checking: %w)", op, ErrOutcomeUnknown, err, checkErr)
	case committed:
		return nil
	case s.galera.Load():
		return fmt.Errorf("%s: %w: %w", op, ErrOutcomeUnknown, err)
	}
	return dbError(op, err)
}

// receiptFound reports whether the write of r committed. It first waits
// for the write's transaction to end, if the server still runs it: that
// transaction holds the lock on the user's row (it locked, changed,
// created or deleted it), which a locking read of the row waits for. Once
// it ends, a new read sees its events, or their absence.
func (s *Store) receiptFound(ctx context.Context, r writeReceipt) (bool, error) {
	var one int
	err := s.db.QueryRowContext(ctx, "SELECT 1 FROM users WHERE id = ? LOCK IN SHARE MODE", r.userID).Scan(&one)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return false, dbError("wait for the write", err)
	}
	query := "SELECT EXISTS (SELECT 1 FROM user_events_pending WHERE %[1]s) OR EXISTS (SELECT 1 FROM user_events WHERE %[1]s)"
	cond, args := "user_id = ? AND request_id = ?", []any{r.userID, r.requestID}
	if !r.at.IsZero() {
		cond, args = cond+" AND occurred_at = ?", append(args, r.at)
	}
	var found bool
	if err := s.db.QueryRowContext(ctx, s.causal(fmt.Sprintf(query, cond)), append(args, args...)...).Scan(&found); err != nil {
		return false, dbError("read the write's receipt", err)
	}
	return found, nil
}
