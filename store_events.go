package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"strconv"
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
	// numbered wakes the webhook deliveries after a round numbered
	// events; one pending wake-up at most.
	numbered chan struct{}
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

// EventsNumbered wakes whoever waits for events in the feed: the webhook
// deliveries.
func (s *Store) EventsNumbered() <-chan struct{} { return s.events.numbered }

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

// insertEvents inserts events made by actor at the time at (zero: the
// server's clock), unnumbered, inside tx: one statement however many
// there are.
func insertEvents(ctx context.Context, tx *sql.Tx, actor Actor, at time.Time, events ...newEvent) error {
	if len(events) == 0 {
		return nil
	}
	query, args := insertEventsSQL(actor, at, events...)
	if _, err := tx.ExecContext(ctx, query, args...); err != nil {
		return dbError("record event", err)
	}
	return nil
}

// insertEventsSQL is the statement that inserts events (at least one)
// made by actor at the time at, and its arguments. A write that locked a
// row passes the time it read with the lock: with the user and request
// ids, it identifies the write's events (writeReceipt). Others pass zero,
// for the server's clock.
func insertEventsSQL(actor Actor, at time.Time, events ...newEvent) (string, []any) {
	var actorID any // NULL unless a user or a provisioning token acts
	if actor.Type.hasID() {
		actorID = actor.ID
	}
	var when any // NULL: the server's clock
	if !at.IsZero() {
		when = at
	}
	rows := make([]string, len(events))
	args := make([]any, 0, 8*len(events))
	for i, e := range events {
		rows[i] = "(?, COALESCE(?, UTC_TIMESTAMP(6)), ?, ?, ?, ?, ?, ?)"
		var changes any // NULL without changes
		if e.Changes != nil {
			changes = string(e.Changes)
		}
		args = append(args, string(e.Type), when, e.UserID, string(actor.Type), actorID,
			truncate(actor.RequestID, eventRequestIDMax), truncate(actor.ClientAddress, eventClientAddressMax), changes)
	}
	return "INSERT INTO user_events_pending (" + pendingEventColumns + ") VALUES " +
		strings.Join(rows, ", "), args
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
// then never skips). A cheap read first skips the round when there is
// nothing to number.
//
// The round holds up no writer: it runs at READ COMMITTED, where InnoDB
// takes no gap locks, reads the pending rows with FOR UPDATE SKIP LOCKED
// (a row still locked is a writer's uncommitted event: it is numbered in
// a later round, once it commits), and moves and deletes exactly the rows
// it locked, each found by primary key (moveEvents). Its session carries
// server-side limits (sequencerSession), so a replica frozen mid-round
// holds the event_sequencer row for a bounded time.
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
	err = s.Retry(ctx, func() error {
		return s.sequencerRound(ctx, func(ctx context.Context, conn *sql.Conn) error {
			n, err := numberPending(ctx, conn)
			numbered = n
			return err
		})
	})
	if err != nil {
		return 0, err
	}
	if numbered > 0 {
		select {
		case s.events.numbered <- struct{}{}:
		default:
		}
	}
	return numbered, nil
}

// numberPending is the body of a numbering round, inside its transaction:
// lock the sequencer row, lock the committed pending rows, move them with
// their seqs, and advance last_seq.
func numberPending(ctx context.Context, conn *sql.Conn) (int, error) {
	var last int64
	if err := conn.QueryRowContext(ctx, "SELECT last_seq FROM event_sequencer WHERE id = 1 FOR UPDATE").Scan(&last); err != nil {
		return 0, dbError("sequence events: lock", err)
	}
	ids, err := readColumn[int64](ctx, conn, "sequence events: read ids",
		"SELECT id FROM user_events_pending ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED", sequencerBatch)
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	if err := moveEvents(ctx, conn, ids, last); err != nil {
		return 0, err
	}
	if _, err := conn.ExecContext(ctx, "UPDATE event_sequencer SET last_seq = ? WHERE id = 1", last+int64(len(ids))); err != nil {
		return 0, dbError("sequence events: advance", err)
	}
	return len(ids), nil
}

// sequencerSessionLimit is how long, in whole seconds, the server lets a
// sequencer round wait for a lock, or wait for its client between two
// statements (wait_timeout: a frozen or cut-off replica's round is rolled
// back and its lock released after this). It is the store's timeout in
// whole seconds (the unit of both variables), rounded down, at least 1:
// with the next round's tick, the feed moves again within 2 × DB_TIMEOUT
// for any DB_TIMEOUT of 1 s or more (docs/events.md).
func (s *Store) sequencerSessionLimit() int64 {
	return max(1, int64(s.timeout/time.Second))
}

// sequencerRound runs fn in one transaction at READ COMMITTED on a
// connection of its own, with the session limits of a sequencer round
// (sequencerSessionLimit), and gives the connection back with the pool's
// own limits. Any failure discards the connection: its session state is
// then unknown. The same SET statements run on MySQL 8.4 and MariaDB
// 10.11 (wait_timeout and innodb_lock_wait_timeout are session variables
// on both; MariaDB's idle_transaction_timeout would be narrower, but
// MySQL has none). READ COMMITTED needs a binary log, if any, in ROW or
// MIXED format: with STATEMENT, InnoDB refuses the round's writes (error
// 1665; docs/deploy.md).
func (s *Store) sequencerRound(ctx context.Context, fn func(ctx context.Context, conn *sql.Conn) error) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return dbError("sequence events: connect", err)
	}
	defer conn.Close()
	ok := false
	defer func() {
		if !ok {
			rollback(ctx, conn)
			conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	limit := s.sequencerSessionLimit()
	// The pool's own values are kept in user variables (session-scoped,
	// like what they save) and put back after the commit.
	if _, err := conn.ExecContext(ctx, "SET @usersvc_wait = @@SESSION.wait_timeout, @usersvc_lock_wait = @@SESSION.innodb_lock_wait_timeout, "+
		"SESSION wait_timeout = ?, SESSION innodb_lock_wait_timeout = ?; "+
		"SET TRANSACTION ISOLATION LEVEL READ COMMITTED; START TRANSACTION", limit, limit); err != nil {
		return dbError("sequence events: begin", err)
	}
	if err := fn(ctx, conn); err != nil {
		return err
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return dbError("sequence events: commit", err)
	}
	if _, err := conn.ExecContext(ctx, "SET SESSION wait_timeout = @usersvc_wait, SESSION innodb_lock_wait_timeout = @usersvc_lock_wait"); err != nil {
		return dbError("sequence events: restore session", err)
	}
	ok = true
	return nil
}

// batchIDs is the JSON_TABLE that turns a JSON array of ids (one
// argument) into rows, joined first (STRAIGHT_JOIN) so that each pending
// row is then found by primary key. With the ids as an IN list instead,
// both servers read the whole table once a batch covers most of it
// (EXPLAIN: type ALL), and a scan waits for every row a writer still
// holds, even at READ COMMITTED (a DELETE has no semi-consistent read).
// JSON_TABLE exists on MySQL 8.0.4+ and MariaDB 10.6+; MySQL's grammar
// takes a table function wherever a table reference goes, the table
// list of a multi-table DELETE included, but only MariaDB 10.11 runs here
// (EXPLAIN there: batch ALL, then the pending table eq_ref on PRIMARY).
const batchIDs = jsonIDs + " STRAIGHT_JOIN user_events_pending AS p ON p.id = batch.id"

// jsonIDs is the table batch of ids, from a JSON array of them (idsJSON).
const jsonIDs = "JSON_TABLE(?, '$[*]' COLUMNS (id BIGINT UNSIGNED PATH '$')) AS batch"

// moveEvents gives the pending events ids the seqs after last, in id
// order, as it moves them to user_events: one INSERT ... SELECT (window
// functions: MySQL 8.0 and MariaDB 10.2 both have ROW_NUMBER) and one
// DELETE, each reaching the rows by primary key. An event another
// sequencer moved since it was read fails the whole batch.
func moveEvents(ctx context.Context, conn *sql.Conn, ids []int64, last int64) error {
	list := idsJSON(ids)
	_, err := conn.ExecContext(ctx, "INSERT INTO user_events (seq, "+pendingEventColumns+") SELECT ? + ROW_NUMBER() OVER (ORDER BY p.id), "+
		prefixed("p", pendingEventColumns)+" FROM "+batchIDs+" ORDER BY p.id", last, list)
	if err != nil {
		return dbError("sequence events: number", err)
	}
	res, err := conn.ExecContext(ctx, "DELETE p FROM "+batchIDs, list)
	if err != nil {
		return dbError("sequence events: move", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != int64(len(ids)) {
		return errSequenceRace
	}
	return nil
}

// idsJSON is ids as a JSON array, the argument of batchIDs.
func idsJSON(ids []int64) string {
	b := make([]byte, 0, 8*len(ids)+2)
	b = append(b, '[')
	for i, id := range ids {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, id, 10)
	}
	return string(append(b, ']'))
}

// pruneBatch is the most events one pruning transaction deletes.
const pruneBatch = 500

// PruneEvents deletes, in one short transaction, up to pruneBatch of the
// oldest numbered events, as long as they happened before horizon, and
// records the highest seq deleted as pruned_through. It deletes only a
// prefix of the feed, so every seq up to pruned_through is gone and every
// later one is kept: a cursor below pruned_through has missed events
// (410). It returns how many it deleted.
//
// It runs as a sequencer round does (sequencerRound: READ COMMITTED, the
// session limits), since it locks the same event_sequencer row: a replica
// frozen mid-prune must not hold up the numbering any longer than one
// frozen mid-round.
func (s *Store) PruneEvents(ctx context.Context, horizon time.Time) (int, error) {
	ctx, cancel, err := s.callContext(ctx)
	if err != nil {
		return 0, err
	}
	defer cancel()
	deleted := 0
	err = s.Retry(ctx, func() error {
		return s.sequencerRound(ctx, func(ctx context.Context, conn *sql.Conn) error {
			n, err := prunePrefix(ctx, conn, horizon)
			deleted = n
			return err
		})
	})
	if err != nil {
		return 0, err
	}
	s.events.pruned.Add(int64(deleted))
	return deleted, nil
}

// prunePrefix is the body of a pruning round, inside its transaction:
// lock the sequencer row, delete the prunable prefix of the feed by
// primary key, and record how far it reaches.
func prunePrefix(ctx context.Context, conn *sql.Conn, horizon time.Time) (int, error) {
	var through int64
	if err := conn.QueryRowContext(ctx, "SELECT pruned_through FROM event_sequencer WHERE id = 1 FOR UPDATE").Scan(&through); err != nil {
		return 0, dbError("prune events: lock", err)
	}
	ids, last, err := prunablePrefix(ctx, conn, through, horizon)
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	// Each row by primary key (see batchIDs): an IN list can become a
	// scan of the whole feed.
	res, err := conn.ExecContext(ctx, "DELETE e FROM "+jsonIDs+" STRAIGHT_JOIN user_events AS e ON e.id = batch.id", idsJSON(ids))
	if err != nil {
		return 0, dbError("prune events: delete", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != int64(len(ids)) {
		return 0, errors.New("prune events: deleted concurrently")
	}
	if _, err := conn.ExecContext(ctx, "UPDATE event_sequencer SET pruned_through = ? WHERE id = 1", last); err != nil {
		return 0, dbError("prune events: record", err)
	}
	return len(ids), nil
}

// prunablePrefix returns the ids of the events that follow seq through
// in the feed and happened before horizon, up to the first that did not,
// and the seq of the last of them.
func prunablePrefix(ctx context.Context, conn *sql.Conn, through int64, horizon time.Time) ([]int64, int64, error) {
	rows, err := conn.QueryContext(ctx, "SELECT id, seq, occurred_at FROM user_events WHERE seq > ? ORDER BY seq LIMIT ?", through, pruneBatch)
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
