package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
)

// The sequencer off the writers' path (store_events.go): a round held
// open, as by a frozen replica, stops no writer; a writer stuck in its
// transaction stops no numbering; and the server itself ends a frozen
// round, so another replica's sequencer goes on.

// holdRound runs one sequencer round of store exactly as the sequencer
// does (sequencerRound and numberPending), and keeps its transaction open,
// sending nothing, until release is closed. held is closed once the round
// has locked and moved its rows. It returns the round's error.
func holdRound(store *Store, held, release chan struct{}) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return store.sequencerRound(ctx, func(ctx context.Context, conn *sql.Conn) error {
		n, err := numberPending(ctx, conn)
		if err == nil && n == 0 {
			err = errors.New("nothing to number")
		}
		close(held)
		<-release
		return err
	})
}

// patchFullNames sends n PATCHes of user id's full_name, one after the
// other, and returns how many answered 200 and the slowest answer.
func patchFullNames(app *testApp, id int64, n int, prefix string) (ok int, slowest time.Duration) {
	for i := range n {
		start := time.Now()
		rec := app.do("PATCH", fmt.Sprintf("/api/v1/users/%d", id), fmt.Sprintf(`{"full_name":"%s %d"}`, prefix, i))
		slowest = max(slowest, time.Since(start))
		if rec.Code == http.StatusOK {
			ok++
		} else {
			app.t.Logf("PATCH %d: %d %s", i, rec.Code, rec.Body)
		}
	}
	return ok, slowest
}

// feedHead is the last seq numbered.
func feedHead(t *testing.T, db *sql.DB) int64 {
	t.Helper()
	var last int64
	if err := db.QueryRow("SELECT last_seq FROM event_sequencer WHERE id = 1").Scan(&last); err != nil {
		t.Fatal(err)
	}
	return last
}

// checkFeedWhole checks that the feed holds seqs 1..N with no gap and no
// duplicate, N = last_seq, and nothing is left unnumbered.
func checkFeedWhole(t *testing.T, app *testApp) {
	t.Helper()
	app.waitSequenced()
	var n, distinct, hi sql.NullInt64
	if err := app.db.QueryRow("SELECT COUNT(*), COUNT(DISTINCT seq), MAX(seq) FROM user_events").Scan(&n, &distinct, &hi); err != nil {
		t.Fatal(err)
	}
	if last := feedHead(t, app.db); n.Int64 != distinct.Int64 || hi.Int64 != n.Int64 || last != n.Int64 {
		t.Errorf("%d events, %d distinct seqs, highest %d, last_seq %d: want 1..N with no gap", n.Int64, distinct.Int64, hi.Int64, last)
	}
}

// TestHeldSequencerRoundStopsNoWriter: while a sequencer round that has
// moved every pending event holds its transaction open (a replica frozen
// mid-round), writes go through at once. Before, the round's scans locked
// the gap every writer's event INSERT goes into, and no write passed.
func TestHeldSequencerRoundStopsNoWriter(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	app.stopWorkers()
	u, _ := app.newUser("held_round")
	held, release := make(chan struct{}), make(chan struct{})
	roundErr := make(chan error, 1)
	go func() { roundErr <- holdRound(app.store, held, release) }()
	<-held
	ok, slowest := patchFullNames(app, u.ID, 5, "during")
	close(release)
	if err := <-roundErr; err != nil {
		t.Fatalf("the held round: %v", err)
	}
	if ok != 5 {
		t.Errorf("%d of 5 writes succeeded while a round was held; want all (slowest %v)", ok, slowest)
	}
	if _, err := app.store.SequenceEvents(context.Background()); err != nil {
		t.Fatal(err)
	}
	checkFeedWhole(t, app)
}

// TestStuckWriterStopsNoNumbering: a writer holding one uncommitted event
// (stuck mid-transaction) does not stop the numbering of events committed
// after it; its own event is numbered once it commits, after them. Before,
// the round's DELETE scanned the pending table and waited for its row.
func TestStuckWriterStopsNoNumbering(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	app.stopWorkers()
	u, _ := app.newUser("stuck_writer")
	if _, err := app.store.SequenceEvents(context.Background()); err != nil {
		t.Fatal(err)
	}
	stuck, err := app.db.BeginTx(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Rollback()
	if err := insertEvents(context.Background(), stuck, Actor{Type: ActorSystem}, time.Time{}, newEvent{Type: EventUserUpdated, UserID: u.ID}); err != nil {
		t.Fatal(err)
	}
	if ok, _ := patchFullNames(app, u.ID, 3, "after"); ok != 3 {
		t.Fatalf("%d of 3 writes succeeded beside a stuck writer", ok)
	}
	before := feedHead(t, app.db)
	n, err := app.store.SequenceEvents(context.Background())
	if err != nil || n != 3 {
		t.Fatalf("numbered %d events (%v) beside a stuck writer; want the 3 committed after it", n, err)
	}
	if err := stuck.Commit(); err != nil {
		t.Fatal(err)
	}
	if n, err := app.store.SequenceEvents(context.Background()); err != nil || n != 1 {
		t.Fatalf("numbered %d events (%v) once the stuck writer committed; want its 1", n, err)
	}
	var seq int64
	if err := app.db.QueryRow("SELECT seq FROM user_events WHERE actor_type = 'system' AND type = 'user.updated'").Scan(&seq); err != nil {
		t.Fatal(err)
	}
	if seq != before+4 {
		t.Errorf("the stuck writer's event got seq %d; want %d, after the three committed before it", seq, before+4)
	}
	checkFeedWhole(t, app)
}

// TestFrozenSequencerRoundIsReleased: a replica frozen in the middle of a
// round (it sends nothing more) loses the round after the server's limit
// (sequencerSessionLimit), and another replica's sequencer numbers the
// events written meanwhile; the frozen round, when it wakes, fails and
// numbers nothing. Before, nothing ended such a session for 8 hours.
func TestFrozenSequencerRoundIsReleased(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	app.stopWorkers()
	u, _ := app.newUser("frozen_round")
	frozen := NewStore(app.db, time.Second) // a 1 s limit on its round
	held, release := make(chan struct{}), make(chan struct{})
	roundErr := make(chan error, 1)
	go func() { roundErr <- holdRound(frozen, held, release) }()
	<-held
	defer func() {
		close(release)
		if err := <-roundErr; err == nil {
			t.Error("the frozen round committed after the server ended its session")
		}
		checkFeedWhole(t, app)
	}()
	if ok, _ := patchFullNames(app, u.ID, 3, "while frozen"); ok != 3 {
		t.Fatalf("%d of 3 writes succeeded beside a frozen round", ok)
	}
	// The healthy replica's sequencer, as serve runs it. Its own lock
	// waits end after its limit too, so it may take a few rounds.
	healthy := NewStore(app.db, testTimeout)
	t.Cleanup(startEventWorkers(context.Background(), healthy, 0, app.srv.logger))
	deadline := time.Now().Add(20 * time.Second)
	for {
		var pending int
		if err := app.db.QueryRow("SELECT COUNT(*) FROM user_events_pending").Scan(&pending); err != nil {
			t.Fatal(err)
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d events still unnumbered 20 s after a replica froze mid-round", pending)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSequencerSessionLimits: a round's session waits for its client and
// for locks no longer than its limit, and the connection goes back to the
// pool with the pool's own limits.
func TestSequencerSessionLimits(t *testing.T) {
	t.Parallel()
	db := newTestDB(t)
	store := NewStore(db, 2500*time.Millisecond)
	var wait, lockWait int64
	var isolation string
	err := store.sequencerRound(context.Background(), func(ctx context.Context, conn *sql.Conn) error {
		if _, err := numberPending(ctx, conn); err != nil { // makes the transaction show in INNODB_TRX
			return err
		}
		return conn.QueryRowContext(ctx, "SELECT @@SESSION.wait_timeout, @@SESSION.innodb_lock_wait_timeout, trx_isolation_level"+
			" FROM information_schema.INNODB_TRX WHERE trx_mysql_thread_id = CONNECTION_ID()").
			Scan(&wait, &lockWait, &isolation)
	})
	if err != nil {
		t.Fatal(err)
	}
	if wait != 2 || lockWait != 2 || isolation != "READ COMMITTED" {
		t.Errorf("round session: wait_timeout %d, innodb_lock_wait_timeout %d, %s; want 2, 2, READ COMMITTED", wait, lockWait, isolation)
	}
	var poolWait int64
	if err := db.QueryRow("SELECT @@SESSION.wait_timeout").Scan(&poolWait); err != nil {
		t.Fatal(err)
	}
	if want := poolWaitTimeout(testTimeout); poolWait != want {
		t.Errorf("pool session wait_timeout %d, want %d", poolWait, want)
	}
}

// TestSequencerFailuresWarn: a failed round is a warning (the feed falls
// behind), one per workerWarnEvery; a lost race is not. Before, a
// database timeout was logged at debug level only.
func TestSequencerFailuresWarn(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	log := workerLog{logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), op: "sequence events"}
	ctx := context.Background()
	timeout := dbError("sequence events: lock", context.DeadlineExceeded)
	log.failed(ctx, timeout)
	log.failed(ctx, timeout)
	log.failed(ctx, errSequenceRace)
	got := strings.Count(logs.String(), `"level":"WARN"`)
	if got != 1 || strings.Count(logs.String(), `"level":"DEBUG"`) != 2 {
		t.Errorf("logged %d warnings; want the first failure only:\n%s", got, logs)
	}
	if !errors.Is(timeout, ErrUnavailable) {
		t.Fatalf("%v is not ErrUnavailable: the test does not test the timeout case", timeout)
	}
}
