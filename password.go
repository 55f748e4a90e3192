package main

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// passwordHasher runs bcrypt on a fixed pool of `workers` goroutines, each
// on an OS thread of its own whose scheduling priority is lowered
// (bcryptNice): while requests want the CPU, the kernel gives it to them
// first, and bcrypt gets the rest. (serve adds one GOMAXPROCS slot per
// worker, so busy workers never hold the slots requests need.)
//
// The pool is shared fairly between the sources that ask (a client
// address, an account). A source has at most one job waiting for a
// worker; its further jobs wait for that one to be taken, holding no
// place. Waiting jobs are served source by source, the source served
// least recently first, so a job waits behind at most one job of each
// other source, and a source that asks rarely goes ahead of the ones
// that keep the pool busy. At most `capacity` jobs wait or run: past it,
// a newcomer pushes out the waiting job whose source was served most
// recently, or is refused at once when it would be that job itself. No
// job waits longer than maxWait. Refusals are ErrBusy.
type passwordHasher struct {
	cost     int
	maxWait  time.Duration
	capacity int           // jobs waiting or running at once
	closed   chan struct{} // closed by Close
	ready    chan struct{} // a token for each job made to wait; a worker takes one per job

	mu       sync.Mutex
	queue    []*hashJob             // the jobs waiting for a worker, at most one per source
	sources  map[string]*hashSource // the sources waiting or served lately (see forget)
	changed  chan struct{}          // closed and replaced when a job leaves the queue
	running  int
	arrivals int64 // jobs queued so far: the order of arrival
	served   int64 // jobs taken by a worker so far: the clock of the sources' turns
	sweepAt  int   // the number of sources at which forget next looks

	// dummyHash is a hash at the configured cost that no password is
	// known to match: the dummies of every cost are made from it (dummyAt)
	// and compared against when a login names no user (at dummyCost, the
	// cost of the stored hash compared last, so unknown names cost what
	// known ones do) and to pad a comparison with a hash of a lower cost.
	dummyHash []byte
	dummyCost atomic.Int64

	// runs counts the jobs workers ran, rejected the ones refused with
	// ErrBusy, and rounds the bcrypt work done, in key expansions (2^cost
	// per hash or comparison): for tests and metrics.
	runs     atomic.Int64
	rejected atomic.Int64
	rounds   atomic.Int64
}

func (h *passwordHasher) stats() hasherStats {
	h.mu.Lock()
	waiting := len(h.queue) + h.running
	h.mu.Unlock()
	return hasherStats{waiting: waiting, runs: h.runs.Load(), rejected: h.rejected.Load()}
}

// newPasswordHasher starts workers bcrypt workers at cost, with room for
// queue more jobs waiting at most maxWait each.
func newPasswordHasher(cost, workers, queue int, maxWait time.Duration) (*passwordHasher, error) {
	dummy, err := bcrypt.GenerateFromPassword([]byte("not a password anyone has"), cost)
	if err != nil {
		return nil, fmt.Errorf("password hasher: %w", err)
	}
	h := &passwordHasher{
		cost:      cost,
		maxWait:   maxWait,
		capacity:  workers + queue,
		closed:    make(chan struct{}),
		ready:     make(chan struct{}, workers+queue),
		sources:   map[string]*hashSource{},
		changed:   make(chan struct{}),
		sweepAt:   4 * (hasherRecall + workers + queue),
		dummyHash: dummy,
	}
	h.dummyCost.Store(int64(cost))
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
		case <-h.ready:
		case <-h.closed:
			return
		}
		if job := h.take(); job != nil {
			job.run()
			close(job.done)
			h.finished()
		}
	}
}

// Close stops the workers; later calls answer ErrBusy.
func (h *passwordHasher) Close() { close(h.closed) }

// Hash returns the bcrypt hash of a validated password (at most 72
// bytes), computed for the sources that asked (see do).
func (h *passwordHasher) Hash(ctx context.Context, password string, sources ...string) (string, error) {
	var hash []byte
	var err error
	if busy := h.do(ctx, func() { hash, err = h.generate([]byte(password), h.cost) }, sources); busy != nil {
		return "", busy
	}
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(hash), nil
}

// Matches reports whether password is the one hashed in hash, computed
// for the sources that asked (see do). An empty hash (no such user) is
// compared against a dummy hash of the cost stored hashes have, and never
// matches. A hash of a lower cost than the configured one is followed by
// dummy comparisons that make up the difference (see pad), so the answer
// takes as long as for a hash of the configured cost.
func (h *passwordHasher) Matches(ctx context.Context, hash, password string, sources ...string) (bool, error) {
	target := []byte(hash)
	if hash == "" {
		target = h.dummy()
	} else if cost, err := bcrypt.Cost(target); err == nil {
		h.dummyCost.Store(int64(cost))
	}
	var err error
	if busy := h.do(ctx, func() {
		err = h.compare(target, []byte(password))
		h.pad(target, []byte(password))
	}, sources); busy != nil {
		return false, busy
	}
	return err == nil && hash != "", nil
}

// pad spends the bcrypt work a comparison with target fell short of one
// at the configured cost: 2^c + (2^c + 2^(c+1) + ... + 2^(cost-1)) is
// 2^cost, so comparing with one dummy hash of each cost from target's up
// to the configured one does it. Without it, a hash kept from a lower
// BCRYPT_COST would answer faster and tell who has not signed in since.
func (h *passwordHasher) pad(target, password []byte) {
	from, err := bcrypt.Cost(target)
	if err != nil {
		from = bcrypt.MinCost
	}
	for cost := from; cost < h.cost; cost++ {
		h.compare(h.dummyAt(cost), password)
	}
}

// generate and compare are bcrypt's, counting the work done.
func (h *passwordHasher) generate(password []byte, cost int) ([]byte, error) {
	h.rounds.Add(1 << cost)
	return bcrypt.GenerateFromPassword(password, cost)
}

func (h *passwordHasher) compare(target, password []byte) error {
	if cost, err := bcrypt.Cost(target); err == nil {
		h.rounds.Add(1 << cost)
	}
	return bcrypt.CompareHashAndPassword(target, password)
}

// outdated reports whether hash was made at another cost than the
// configured one, and should be made again at the next sign-in.
func (h *passwordHasher) outdated(hash string) bool {
	cost, err := bcrypt.Cost([]byte(hash))
	return err == nil && cost != h.cost
}

// dummy returns the dummy hash at the cost of the stored hash compared
// last.
func (h *passwordHasher) dummy() []byte { return h.dummyAt(int(h.dummyCost.Load())) }

// dummyAt returns a dummy hash of the given cost (bcrypt's range). A
// dummy need not be the hash of anything: comparing with it does the
// work of its cost and fails. So it is the configured cost's dummy with
// its cost field ("$2a$NN$...") rewritten, made without any work.
func (h *passwordHasher) dummyAt(cost int) []byte {
	d := bytes.Clone(h.dummyHash)
	d[4], d[5] = byte('0'+cost/10), byte('0'+cost%10)
	return d
}
