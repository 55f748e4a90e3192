package main

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// Timing of the event workers.
const (
	// sequencerTick is how often the sequencer looks for events besides
	// the nudge of each write of this process: events written by other
	// replicas wait at most this long.
	sequencerTick = 250 * time.Millisecond
	// sequencerSettle is how long the sequencer waits after a nudge, so
	// that under a stream of writes one round (one commit) numbers the
	// events of many, instead of adding a commit to each.
	sequencerSettle = 5 * time.Millisecond
	// pruneEvery is how often the pruner looks for events past the
	// retention horizon, and prunePause the rest between two batches, so
	// pruning a backlog never holds locks or the disk for long.
	pruneEvery = time.Minute
	prunePause = 50 * time.Millisecond
)

// startEventWorkers starts the sequencer, and the pruner unless retention
// is 0, for as long as ctx lasts. stop ends them and waits for them.
func startEventWorkers(ctx context.Context, store *Store, retention time.Duration, logger *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	var workers sync.WaitGroup
	workers.Go(func() { runSequencer(ctx, store, logger) })
	if retention > 0 {
		workers.Go(func() { runPruner(ctx, store, retention, logger) })
	}
	return func() {
		cancel()
		workers.Wait()
	}
}

// runSequencer numbers committed events (Store.SequenceEvents) whenever
// this process writes some, and every sequencerTick for those of other
// replicas, until ctx ends.
func runSequencer(ctx context.Context, store *Store, logger *slog.Logger) {
	tick := time.NewTicker(sequencerTick)
	defer tick.Stop()
	log := workerLog{logger: logger, op: "sequence events"}
	for {
		if err := sequenceAll(ctx, store); err != nil {
			log.failed(ctx, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-store.EventsWritten():
			select {
			case <-ctx.Done():
				return
			case <-time.After(sequencerSettle):
			}
		case <-tick.C:
		}
	}
}

// sequenceAll numbers batches of events until one is not full.
func sequenceAll(ctx context.Context, store *Store) error {
	for {
		n, err := store.SequenceEvents(ctx)
		if err != nil || n < sequencerBatch {
			return err
		}
	}
}

// runPruner deletes events older than retention every pruneEvery, until
// ctx ends.
func runPruner(ctx context.Context, store *Store, retention time.Duration, logger *slog.Logger) {
	log := workerLog{logger: logger, op: "prune events"}
	for {
		if err := pruneAll(ctx, store, time.Now().Add(-retention)); err != nil {
			log.failed(ctx, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pruneEvery):
		}
	}
}

// pruneAll deletes the events that happened before horizon, batch after
// batch, resting prunePause between two.
func pruneAll(ctx context.Context, store *Store, horizon time.Time) error {
	for {
		n, err := store.PruneEvents(ctx, horizon)
		if err != nil || n < pruneBatch {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(prunePause):
		}
	}
}

// workerWarnEvery is the least time between two warnings of one worker:
// a database that is down fails a round every sequencerTick.
const workerWarnEvery = 10 * time.Second

// workerLog logs a worker's failed rounds, which it tries again on its
// next round: as a warning (a sequencer that cannot number leaves the feed
// behind the writes), at most one every workerWarnEvery, the others at
// debug level. A round that lost a race with another replica's sequencer
// (errSequenceRace) is not a failure: that one numbered the events.
type workerLog struct {
	logger   *slog.Logger
	op       string
	lastWarn time.Time
	skipped  int
}

// failed logs the error that ended a round.
func (l *workerLog) failed(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	if errors.Is(err, errSequenceRace) || time.Since(l.lastWarn) < workerWarnEvery {
		l.skipped++
		l.logger.DebugContext(ctx, l.op+" failed; retrying", "error", err)
		return
	}
	l.logger.WarnContext(ctx, l.op+" failed; retrying", "error", err, "failures_since_last_warning", l.skipped)
	l.lastWarn, l.skipped = time.Now(), 0
}
