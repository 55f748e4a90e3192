package main

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// passwordHasher runs bcrypt under a concurrency limit. A fixed pool of
// `workers` goroutines does every hash, each on an OS thread of its own
// whose scheduling priority is lowered (bcryptNice): while requests want the
// CPU, the kernel gives it to them first, and bcrypt gets the rest, all
// of it when the machine is otherwise idle. (serve adds one GOMAXPROCS
// slot per worker, so busy workers never hold the slots requests need.)
// At most `queue` more requests wait, none longer than maxWait, so a
// flood of logins or creates cannot starve other requests or pile up
// memory: the excess is refused at once with ErrBusy.
type passwordHasher struct {
	cost    int
	jobs    chan hashJob
	closed  chan struct{}
	waiting chan struct{}
	maxWait time.Duration

	// dummyHash is compared against when a login names no user, so that
	// answer takes as long as a wrong password.
	dummyHash []byte

	// runs counts bcrypt computations, rejected the jobs refused with
	// ErrBusy, for tests and metrics.
	runs     atomic.Int64
	rejected atomic.Int64
}

func (h *passwordHasher) stats() hasherStats {
	return hasherStats{waiting: len(h.waiting), runs: h.runs.Load(), rejected: h.rejected.Load()}
}

// hashJob is one bcrypt computation handed to a worker.
type hashJob struct {
	run  func()
	done chan struct{}
}

func newPasswordHasher(cost, workers, queue int, maxWait time.Duration) (*passwordHasher, error) {
	dummy, err := bcrypt.GenerateFromPassword([]byte("not a password anyone has"), cost)
	if err != nil {
		return nil, fmt.Errorf("password hasher: %w", err)
	}
	h := &passwordHasher{
		cost:      cost,
		jobs:      make(chan hashJob),
		closed:    make(chan struct{}),
		waiting:   make(chan struct{}, workers+queue),
		maxWait:   maxWait,
		dummyHash: dummy,
	}
	for range workers {
		go h.work()
	}
	return h, nil
}

// work runs jobs on a low-priority OS thread until Close.
func (h *passwordHasher) work() {
	runtime.LockOSThread() // never unlocked: the thread keeps its priority to itself
	lowerThreadPriority()  // best effort: without it, bcrypt just competes as equal
	for {
		select {
		case job := <-h.jobs:
			job.run()
			close(job.done)
		case <-h.closed:
			return
		}
	}
}

// Close stops the workers; later calls answer ErrBusy.
func (h *passwordHasher) Close() { close(h.closed) }

// do runs f on a worker, or returns ErrBusy when none takes it in time.
func (h *passwordHasher) do(ctx context.Context, f func()) error {
	err := h.tryDo(ctx, f)
	if errors.Is(err, ErrBusy) {
		h.rejected.Add(1)
	}
	return err
}

func (h *passwordHasher) tryDo(ctx context.Context, f func()) error {
	select {
	case h.waiting <- struct{}{}:
		defer func() { <-h.waiting }()
	default:
		return ErrBusy
	}
	timer := time.NewTimer(h.maxWait)
	defer timer.Stop()
	job := hashJob{run: f, done: make(chan struct{})}
	select {
	case h.jobs <- job:
	case <-timer.C:
		return ErrBusy
	case <-h.closed:
		return ErrBusy
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrBusy, ctx.Err())
	}
	h.runs.Add(1)
	<-job.done
	return nil
}

// Hash returns the bcrypt hash of a validated password (at most 72 bytes).
func (h *passwordHasher) Hash(ctx context.Context, password string) (string, error) {
	var hash []byte
	var err error
	if busy := h.do(ctx, func() { hash, err = bcrypt.GenerateFromPassword([]byte(password), h.cost) }); busy != nil {
		return "", busy
	}
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(hash), nil
}

// Matches reports whether password is the one hashed in hash. An empty
// hash (no such user) is compared against the dummy hash and never matches.
func (h *passwordHasher) Matches(ctx context.Context, hash, password string) (bool, error) {
	target := []byte(hash)
	if hash == "" {
		target = h.dummyHash
	}
	var err error
	if busy := h.do(ctx, func() { err = bcrypt.CompareHashAndPassword(target, []byte(password)) }); busy != nil {
		return false, busy
	}
	return err == nil && hash != "", nil
}
