package main

import (
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
)

//go:embed schema.sql
var schemaSQL string

// sessionSQLMode is pinned on every connection so MySQL 8 and MariaDB
// behave alike: strict (a bad value is an error, never truncated) and
// without zero dates.
const sessionSQLMode = "'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,ONLY_FULL_GROUP_BY'"

// Store keeps users in MySQL. Every method bounds its database work by
// the store's timeout, on top of the caller's context.
type Store struct {
	db      *sql.DB
	timeout time.Duration
	// statementLimit is how long the server itself lets a bounded SELECT
	// run (see bounded); the timeout, unless a test makes it tiny.
	statementLimit time.Duration

	// applySchema: EnsureSchema runs schema.sql; otherwise it only checks
	// the tables exist (SCHEMA_APPLY=false, for an account without DDL).
	applySchema bool
	// convertOldTables: applying the schema also converts tables left in
	// another collation (migrate only; see convertCollations).
	convertOldTables bool
	schemaApplied    atomic.Bool
	schemaLock       chan struct{} // a mutex that respects contexts

	// trouble is the database setup failure last logged (see setupTrouble).
	trouble setupTrouble

	// statements holds the read statements prepared so far, by their text.
	statements   map[string]*sql.Stmt
	statementsMu sync.Mutex

	events       eventSignals
	webhookStats webhookCounters // deliveries by this process, per endpoint

	// galera is set when the server is a Galera cluster node: reads that
	// decide who may do what then wait for the node to apply what other
	// nodes committed (causal reads).
	galera        atomic.Bool
	countSlotBase atomic.Int32 // the first user_counts slot this node writes
	txRetries     atomic.Int64 // transactions run again after a conflict

	// plaintext counts the pool's connections that DB_TLS=preferred
	// opened without TLS (nil: not watched).
	plaintext *plaintextWatch
}

// maxPreparedStatements bounds the statements a store keeps prepared. The
// list's statements vary with its filters, sort and paging, but only over
// a few hundred shapes, and a handful are used in practice.
const maxPreparedStatements = 128

// prepared returns query prepared on the server, preparing it on first
// use: each call then sends only the arguments (binary protocol) and
// spares the server parsing the text. Past maxPreparedStatements it
// returns nil, and the caller sends the query as text.
//
// Arguments of prepared statements keep one Go type per parameter: ids,
// limits and offsets int64, times time.Time, text string, hashes []byte
// (TestStatementArgumentTypes), and no parameter is used in two roles.
// MySQL and MariaDB differ here. Since MySQL 8.0.22 a parameter's type
// is fixed when the statement is prepared, from its context (the other
// operand of a comparison: BIGINT for "u.id > ?", DATETIME(6) for
// "u.created_at > ?"), and each execution's value is converted to that
// type (manual, "Prepared Statements"); a parameter used both as a number
// and elsewhere could be compared in the wrong type or re-prepared on
// every run. MariaDB takes each parameter's type from the value sent, at
// every execution. The driver sends a time.Time in the binary protocol as
// a string, "YYYY-MM-DD HH:MM:SS.ffffff" in mc.Loc (UTC), typed
// MYSQL_TYPE_STRING (go-sql-driver packets.go, writeExecutePacket), and
// both servers convert it to the DATETIME of the column it is compared
// with: a temporal comparison, not a string one. Statements sent as text
// (InterpolateParams) carry the same value quoted, with the same result.
func (s *Store) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	s.statementsMu.Lock()
	defer s.statementsMu.Unlock()
	if stmt, ok := s.statements[query]; ok {
		return stmt, nil
	}
	if len(s.statements) >= maxPreparedStatements {
		return nil, nil
	}
	stmt, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err) // the caller classifies it
	}
	s.statements[query] = stmt
	return stmt, nil
}

// bounded makes the database itself stop the SELECT query after the
// store's statement limit. Cancelling the request's context only drops the
// connection: the server would go on scanning, say, a deep OFFSET page
// for no one. MySQL reads the MAX_EXECUTION_TIME hint and ignores the
// MariaDB-only comment; MariaDB runs the comment (SET STATEMENT
// max_statement_time) and ignores the hint. Either answers an
// interrupted query with an error that dbError maps to 503: 3024 on
// MySQL (1028, "sort aborted", when the limit strikes inside a filesort),
// 1969 on MariaDB.
func (s *Store) bounded(query string) string {
	rest, ok := strings.CutPrefix(query, "SELECT ")
	if !ok {
		return query
	}
	if s.galera.Load() { // MariaDB: the comment's content, with the causal read
		return fmt.Sprintf("SET STATEMENT max_statement_time=%g, wsrep_sync_wait=1 FOR SELECT %s", s.statementLimit.Seconds(), rest)
	}
	// MAX_EXECUTION_TIME(0) would mean no limit: a limit is at least 1 ms.
	return fmt.Sprintf("/*M!100301 SET STATEMENT max_statement_time=%g FOR */ SELECT /*+ MAX_EXECUTION_TIME(%d) */ %s",
		s.statementLimit.Seconds(), max(1, s.statementLimit.Milliseconds()), rest)
}

// causal makes a read that decides who may do what causal on a Galera
// node: wsrep_sync_wait=1 waits until the node has applied every write set
// the cluster certified before the read began, so a token revoked through
// another node is refused here too, at once. Elsewhere it returns query
// unchanged. (SET STATEMENT is MariaDB's; Galera here is MariaDB Galera.)
//
// The server skips the wait for a statement inside a transaction, so
// query is an autocommitted read, or the START TRANSACTION itself (which
// the wait covers) of a transaction that must read causally.
func (s *Store) causal(query string) string {
	if !s.galera.Load() {
		return query
	}
	return "SET STATEMENT wsrep_sync_wait=1 FOR " + query
}

// detectGalera sets s.galera when the server is a Galera node with
// replication on (MySQL has no wsrep_on variable, and MariaDB without
// Galera says OFF), and then the node's own user_counts slots: Galera
// gives each node its auto_increment_offset (1, 2, 3, ...).
func (s *Store) detectGalera(ctx context.Context) error {
	var name, value string
	err := s.db.QueryRowContext(ctx, "SHOW VARIABLES LIKE 'wsrep_on'").Scan(&name, &value)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return dbError("detect galera", err)
	}
	on := strings.EqualFold(value, "ON")
	s.galera.Store(on)
	if !on {
		return nil
	}
	var offset int
	if err := s.db.QueryRowContext(ctx, "SELECT @@auto_increment_offset").Scan(&offset); err != nil {
		return dbError("detect galera: node offset", err)
	}
	s.countSlotBase.Store(int32((offset - 1) % 32 * userCountSlots)) // slot is a TINYINT UNSIGNED: 32 nodes of 8
	return nil
}

// Galera reports whether the server is a Galera cluster node.
func (s *Store) Galera() bool { return s.galera.Load() }

// TxRetries is how many transactions ran again after a conflict.
func (s *Store) TxRetries() int64 { return s.txRetries.Load() }

// PlaintextConnections is how many connections DB_TLS=preferred opened
// without TLS.
func (s *Store) PlaintextConnections() int64 { return s.plaintext.Count() }

// maxTxAttempts bounds how often a transaction runs when it keeps losing
// conflicts; the last error is then the answer (a 503).
const maxTxAttempts = 6

// retryable reports whether err ended a transaction that may simply run
// again: a deadlock victim, or on Galera the loser of a certification
// conflict, which gets the same error 1213 at COMMIT even without any
// lock wait.
func retryable(err error) bool {
	myErr, ok := errors.AsType[*mysql.MySQLError](err)
	return ok && myErr.Number == errDeadlock
}

// Retry runs fn, and again while it fails with a conflict, at most
// maxTxAttempts times, after a random pause that doubles each time (up to
// 4, 8, 16, 32, 64 ms), so that two writers that collided do not collide
// again in step. fn must be a whole transaction.
func (s *Store) Retry(ctx context.Context, fn func() error) error {
	for attempt := 1; ; attempt++ {
		err := fn()
		if err == nil || !retryable(err) || attempt == maxTxAttempts {
			return err
		}
		s.txRetries.Add(1)
		pause := time.Duration(rand.Int64N(int64(2 * time.Millisecond << attempt)))
		select {
		case <-ctx.Done():
			return err
		case <-time.After(pause):
		}
	}
}

// queryRows runs a read through its prepared statement when it has one.
func (s *Store) queryRows(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	stmt, err := s.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	if stmt == nil {
		return s.db.QueryContext(ctx, query, args...)
	}
	return stmt.QueryContext(ctx, args...)
}

// queryRow is queryRows for a single row.
func (s *Store) queryRow(ctx context.Context, query string, args ...any) (*sql.Row, error) {
	stmt, err := s.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	if stmt == nil {
		return s.db.QueryRowContext(ctx, query, args...), nil
	}
	return stmt.QueryRowContext(ctx, args...), nil
}

// NewStore returns a store on db. The schema is applied on first use.
func NewStore(db *sql.DB, timeout time.Duration) *Store {
	s := &Store{db: db, timeout: timeout, statementLimit: timeout, applySchema: true, schemaLock: make(chan struct{}, 1), statements: map[string]*sql.Stmt{}}
	s.events.nudge = make(chan struct{}, 1)
	s.events.numbered = make(chan struct{}, 1)
	return s
}

// callContext starts a store call that runs outside a transaction: it
// bounds ctx by the store's timeout and makes sure the schema is in place.
func (s *Store) callContext(ctx context.Context) (context.Context, context.CancelFunc, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	if err := s.EnsureSchema(ctx); err != nil {
		cancel()
		return nil, nil, err
	}
	return ctx, cancel, nil
}

// inTx runs fn in a transaction, the one shape every write has: bounded by
// the store's timeout, BeginTx, work, Commit, and a rollback on any error.
func (s *Store) inTx(ctx context.Context, op string, fn func(ctx context.Context, tx *sql.Tx) error) error {
	return s.inWriteTx(ctx, op, func(ctx context.Context, tx *sql.Tx) (writeReceipt, error) {
		return writeReceipt{}, fn(ctx, tx)
	})
}

// inWriteTx is inTx for a write of a user that returns its receipt: when
// the answer to its COMMIT is lost, the receipt tells whether it
// committed (store_commit.go). Without a receipt (no user id), a lost
// answer is a 503.
func (s *Store) inWriteTx(ctx context.Context, op string, fn func(ctx context.Context, tx *sql.Tx) (writeReceipt, error)) error {
	return s.Retry(ctx, func() error { return s.runTx(ctx, op, fn) })
}

// runTx runs fn in one transaction, once.
func (s *Store) runTx(ctx context.Context, op string, fn func(ctx context.Context, tx *sql.Tx) (writeReceipt, error)) error {
	ctx, cancel, err := s.callContext(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return dbError(op+": begin", err)
	}
	defer tx.Rollback()
	receipt, err := fn(ctx, tx)
	if err != nil {
		return err
	}
	if receipt.userID == 0 {
		return dbError(op+": commit", tx.Commit())
	}
	return s.commitTx(ctx, tx, op+": commit", receipt)
}

// Stats returns the connection pool's statistics.
func (s *Store) Stats() sql.DBStats { return s.db.Stats() }

// Ready checks that the database answers and holds the schema.
func (s *Store) Ready(ctx context.Context) error {
	if err := s.EnsureSchema(ctx); err != nil {
		return err
	}
	var one int
	if err := s.db.QueryRowContext(ctx, "SELECT 1 FROM users LIMIT 1").Scan(&one); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return dbError("ready", err)
	}
	return nil
}

// execer is what both *sql.DB and *sql.Tx offer for statements.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// queryer is what both *sql.DB and *sql.Tx offer for single-row reads.
type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// rowsQueryer is what both *sql.DB and *sql.Tx offer for reads of many rows.
type rowsQueryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// readColumn runs a query of one column through q and returns its values;
// op names the read in errors.
func readColumn[T any](ctx context.Context, q rowsQueryer, op, query string, args ...any) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, dbError(op, err)
	}
	defer rows.Close()
	var values []T
	for rows.Next() {
		var v T
		if err := rows.Scan(&v); err != nil {
			return nil, dbError(op, err)
		}
		values = append(values, v)
	}
	if err := rows.Err(); err != nil {
		return nil, dbError(op, err)
	}
	return values, nil
}

// inList is the placeholder list "?, ?, ..." of an IN (...) for values,
// and the values as arguments.
func inList[T any](values []T) (string, []any) {
	args := make([]any, len(values))
	for i, v := range values {
		args[i] = v
	}
	return strings.TrimSuffix(strings.Repeat("?, ", len(values)), ", "), args
}

// rowScanner is a *sql.Row or *sql.Rows.
type rowScanner interface{ Scan(dest ...any) error }
