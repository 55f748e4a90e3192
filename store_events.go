package main

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"sync/atomic"
	"time"
)

// The audit trail and change feed, and why the feed never skips an event.
//
// Writers insert each event into user_events_pending in the transaction of
// the change it records (insertEvents): one more INSERT into a table with
// no secondary index, nothing serialized, so an event exists if and only
// if its change committed. The sequencer (SequenceEvents, run by every
// replica) then numbers committed events in short transactions that each
// lock and write the one row of event_sequencer, read its last_seq, move
// the next pending events to user_events with the consecutive seqs
// last_seq+1, last_seq+2, ... and store the new last_seq. Consumers page
// user_events by seq ("WHERE seq > ? ORDER BY seq"). The feed's indexes
// are written once per event, in batches, off the writers' path.
//
// Why a consumer that has read up to seq N can never later find an event
// with a seq at or below N:
//
//   - an event gets a seq only after its own transaction committed, since
//     the sequencer can only see committed pending rows, so no event can
//     turn up late with a small number because its writer was slow to
//     commit;
//   - numbering transactions run one at a time (the row lock; on Galera,
//     certification: two that wrote the row concurrently on two nodes
//     conflict, and the loser gets error 1213 and runs again), and each
//     starts from the last_seq the previous one committed, so seqs only
//     grow, batch after batch;
//   - a batch becomes visible at once, at its commit, and a batch commits
//     before the next one starts; a reader's statement sees a snapshot
//     that holds every transaction committed before it. So a reader that
//     sees seq N sees every batch up to N's: every event that will ever
//     have a seq at or below N is already visible to it.
//
// Auto-increment ids play no part in this: on Galera they are neither
// contiguous nor in commit order. They only order the events of one batch.

// eventLimits of the stored text columns; longer values are cut, since a
// strict server would refuse them and the change with them.
const (
	eventRequestIDMax     = 128
	eventClientAddressMax = 64
)

// eventSignals count events for /metrics and wake the sequencer.
type eventSignals struct {
	written atomic.Int64
	pruned  atomic.Int64
	nudge   chan struct{} // one pending wake-up at most
}

// eventStats are the event counters at one moment.
type eventStats struct {
	written, pruned int64
}

// EventStats returns the events written and pruned by this process.
func (s *Store) EventStats() eventStats {
	return eventStats{written: s.events.written.Load(), pruned: s.events.pruned.Load()}
}

// EventsWritten wakes whoever waits for new events: the sequencer.
func (s *Store) EventsWritten() <-chan struct{} { return s.events.nudge }

// eventsCommitted counts n events whose transaction committed and wakes
// the sequencer without waiting for it.
func (s *Store) eventsCommitted(n int) {
	if n == 0 {
		return
	}
	s.events.written.Add(int64(n))
	select {
	case s.events.nudge <- struct{}{}:
	default:
	}
}

// insertEvents inserts events made by actor, unnumbered, inside tx: one
// statement however many there are.
func insertEvents(ctx context.Context, tx *sql.Tx, actor Actor, events ...newEvent) error {
	if len(events) == 0 {
		return nil
	}
	query, args := insertEventsSQL(actor, events...)
	if _, err := tx.ExecContext(ctx, query, args...); err != nil {
		return dbError("record event", err)
	}
	return nil
}

// insertEventsSQL is the statement that inserts events (at least one),
// and its arguments.
func insertEventsSQL(actor Actor, events ...newEvent) (string, []any) {
	var actorID any // NULL unless a user acts
	if actor.Type == ActorUser {
		actorID = actor.ID
	}
	rows := make([]string, len(events))
	args := make([]any, 0, 7*len(events))
	for i, e := range events {
		rows[i] = "(?, UTC_TIMESTAMP(6), ?, ?, ?, ?, ?, ?)"
		var changes any // NULL without changes
		if e.Changes != nil {
			changes = string(e.Changes)
		}
		args = append(args, string(e.Type), e.UserID, string(actor.Type), actorID,
			cut(actor.RequestID, eventRequestIDMax), cut(actor.ClientAddress, eventClientAddressMax), changes)
	}
	return "INSERT INTO user_events_pending (" + pendingEventColumns + ") VALUES " +
		strings.Join(rows, ", "), args
}

// cut shortens s to at most n bytes (the values it gets are ASCII).
func cut(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// sequencerBatch is the most events one numbering transaction takes.
const sequencerBatch = 1000

// errSequenceRace: rows this sequencer meant to number had been numbered
// by another one (possible only where the lock does not hold, and then
// its transaction rolls back).
var errSequenceRace = errors.New("sequence events: numbered concurrently")

// pendingEventColumns are the columns of an event before it is numbered.
const pendingEventColumns = "type, occurred_at, user_id, actor_type, actor_id, request_id, client_address, changes"

// SequenceEvents numbers up to sequencerBatch committed events in one
// transaction, in the order they were recorded, moving them from
// user_events_pending to user_events with their seq, and returns how many
// it numbered (the argument at the top of this file says why the feed
// then never skips). A cheap read first skips the lock when there is
// nothing to number.
func (s *Store) SequenceEvents(ctx context.Context) (int, error) {
	ctx, cancel, err := s.callContext(ctx)
	if err != nil {
		return 0, err
	}
	defer cancel()
	var one int
	err = s.db.QueryRowContext(ctx, "SELECT 1 FROM user_events_pending LIMIT 1").Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, dbError("sequence events: probe", err)
	}
	numbered := 0
	err = s.inTx(ctx, "sequence events", func(ctx context.Context, tx *sql.Tx) error {
		var last int64
		if err := tx.QueryRowContext(ctx, "SELECT last_seq FROM event_sequencer WHERE id = 1 FOR UPDATE").Scan(&last); err != nil {
			return dbError("sequence events: lock", err)
		}
		// A plain (consistent) read, taken under the lock: a locking read
		// would lock the gap new events go into and hold up their writers.
		ids, err := readColumn[int64](ctx, tx, "sequence events: read ids", "SELECT id FROM user_events_pending ORDER BY id LIMIT ?", sequencerBatch)
		if err != nil || len(ids) == 0 {
			return err
		}
		if err := moveEvents(ctx, tx, ids, last); err != nil {
			return err
		}
		last += int64(len(ids))
		if _, err := tx.ExecContext(ctx, "UPDATE event_sequencer SET last_seq = ? WHERE id = 1", last); err != nil {
			return dbError("sequence events: advance", err)
		}
		numbered = len(ids)
		return nil
	})
	if err != nil {
		return 0, err
	}
	return numbered, nil
}

// moveEvents gives the pending events ids the seqs after last, in id
// order, as it moves them to user_events: one INSERT ... SELECT (window
// functions: MySQL 8.0 and MariaDB 10.2 both have ROW_NUMBER) and one
// DELETE, each by primary key, so only those rows are locked. An event
// another sequencer moved since it was read fails the whole batch.
func moveEvents(ctx context.Context, tx *sql.Tx, ids []int64, last int64) error {
	in, idArgs := inList(ids)
	_, err := tx.ExecContext(ctx, "INSERT INTO user_events (seq, "+pendingEventColumns+") SELECT ? + ROW_NUMBER() OVER (ORDER BY id), "+
		pendingEventColumns+" FROM user_events_pending WHERE id IN ("+in+") ORDER BY id", append([]any{last}, idArgs...)...)
	if err != nil {
		return dbError("sequence events: number", err)
	}
	res, err := tx.ExecContext(ctx, "DELETE FROM user_events_pending WHERE id IN ("+in+")", idArgs...)
	if err != nil {
		return dbError("sequence events: move", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != int64(len(ids)) {
		return errSequenceRace
	}
	return nil
}

// pruneBatch is the most events one pruning transaction deletes.
const pruneBatch = 500

// PruneEvents deletes, in one short transaction, up to pruneBatch of the
// oldest numbered events, as long as they happened before horizon, and
// records the highest seq deleted as pruned_through. It deletes only a
// prefix of the feed, so every seq up to pruned_through is gone and every
// later one is kept: a cursor below pruned_through has missed events
// (410). It returns how many it deleted.
func (s *Store) PruneEvents(ctx context.Context, horizon time.Time) (int, error) {
	deleted := 0
	err := s.inTx(ctx, "prune events", func(ctx context.Context, tx *sql.Tx) error {
		var through int64
		if err := tx.QueryRowContext(ctx, "SELECT pruned_through FROM event_sequencer WHERE id = 1 FOR UPDATE").Scan(&through); err != nil {
			return dbError("prune events: lock", err)
		}
		ids, last, err := prunablePrefix(ctx, tx, through, horizon)
		if err != nil || len(ids) == 0 {
			return err
		}
		in, args := inList(ids)
		// By primary key: only these rows are locked, not the gap where
		// new events go.
		res, err := tx.ExecContext(ctx, "DELETE FROM user_events WHERE id IN ("+in+")", args...)
		if err != nil {
			return dbError("prune events: delete", err)
		}
		if n, err := res.RowsAffected(); err != nil || n != int64(len(ids)) {
			return errors.New("prune events: deleted concurrently")
		}
		if _, err := tx.ExecContext(ctx, "UPDATE event_sequencer SET pruned_through = ? WHERE id = 1", last); err != nil {
			return dbError("prune events: record", err)
		}
		deleted = len(ids)
		return nil
	})
	if err != nil {
		return 0, err
	}
	s.events.pruned.Add(int64(deleted))
	return deleted, nil
}

// prunablePrefix returns the ids of the events that follow seq through
// in the feed and happened before horizon, up to the first that did not,
// and the seq of the last of them.
func prunablePrefix(ctx context.Context, tx *sql.Tx, through int64, horizon time.Time) ([]int64, int64, error) {
	rows, err := tx.QueryContext(ctx, "SELECT id, seq, occurred_at FROM user_events WHERE seq > ? ORDER BY seq LIMIT ?", through, pruneBatch)
	if err != nil {
		return nil, 0, dbError("prune events: read", err)
	}
	defer rows.Close()
	var ids []int64
	last := through
	for rows.Next() {
		var id, seq int64
		var at time.Time
		if err := rows.Scan(&id, &seq, &at); err != nil {
			return nil, 0, dbError("prune events: read", err)
		}
		if !at.Before(horizon) {
			break
		}
		ids, last = append(ids, id), seq
	}
	if err := rows.Err(); err != nil {
		return nil, 0, dbError("prune events: read", err)
	}
	// Closing reads the rest of the answer after an early break, and with
	// it an error that ended the transaction (see readForUpdate).
	if err := rows.Close(); err != nil {
		return nil, 0, dbError("prune events: read", err)
	}
	return ids, last, nil
}
