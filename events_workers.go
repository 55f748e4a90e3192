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
	for {
		if err := sequenceAll(ctx, store); err != nil && ctx.Err() == nil {
			logWorkerError(ctx, logger, "sequence events", err)
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
	for {
		if err := pruneAll(ctx, store, time.Now().Add(-retention)); err != nil && ctx.Err() == nil {
			logWorkerError(ctx, logger, "prune events", err)
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

// logWorkerError logs a failed round of a worker, which tries again on
// its next round: at debug level when the database is away, busy or lost
// a conflict (an outage is logged by the requests that meet it; on Galera
// two sequencers conflict by design), as a warning otherwise.
func logWorkerError(ctx context.Context, logger *slog.Logger, op string, err error) {
	level := slog.LevelWarn
	if errors.Is(err, ErrUnavailable) || errors.Is(err, errSequenceRace) {
		level = slog.LevelDebug
	}
	logger.Log(ctx, level, op+" failed; retrying", "error", err)
}
