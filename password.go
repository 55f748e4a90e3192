package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"runtime"
	"sync"
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

	// dummies are the hashes compared against when a login names no user,
	// one per cost, so that answer takes as long as a wrong password:
	// dummyCost is the cost of the stored hash last compared, which after
	// a change of BCRYPT_COST is not yet the configured one.
	dummiesMu sync.Mutex
	dummies   map[int][]byte
	dummyCost atomic.Int64

	// share is how many jobs one source (a client address, an account) may
	// have waiting or running at once, so that no one source can fill the
	// pool and keep everyone else at 503.
	share          int
	sourcesMu      sync.Mutex
	sources        map[string]int
	sourcesChanged chan struct{} // closed and replaced when a job leaves

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

// newPasswordHasher starts workers bcrypt workers at cost, with room for
// queue more jobs waiting at most maxWait each.
func newPasswordHasher(cost, workers, queue int, maxWait time.Duration) (*passwordHasher, error) {
	dummy, err := bcrypt.GenerateFromPassword([]byte("not a password anyone has"), cost)
	if err != nil {
		return nil, fmt.Errorf("password hasher: %w", err)
	}
	h := &passwordHasher{
		cost:    cost,
		jobs:    make(chan hashJob),
		closed:  make(chan struct{}),
		waiting: make(chan struct{}, workers+queue),
		maxWait: maxWait,
		dummies: map[int][]byte{cost: dummy},
		share:   max(2, (workers+queue)/4),
		sources: map[string]int{},

		sourcesChanged: make(chan struct{}),
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

// do runs f on a worker for the given sources, or returns ErrBusy when
// no worker takes it within maxWait: a source that holds its share waits
// for one of its own jobs to end, so its flood queues behind itself and
// leaves the rest of the pool to the others.
func (h *passwordHasher) do(ctx context.Context, f func(), sources []string) error {
	timer := time.NewTimer(h.maxWait) // one wait, for a share and for a worker
	defer timer.Stop()
	err := h.enter(ctx, sources, timer.C)
	if err == nil {
		defer h.leave(sources)
		err = h.tryDo(ctx, f, timer.C)
	}
	if errors.Is(err, ErrBusy) {
		h.rejected.Add(1)
	}
	return err
}

// enter counts a job for each source, waiting until expired while one of
// them holds its share.
func (h *passwordHasher) enter(ctx context.Context, sources []string, expired <-chan time.Time) error {
	for {
		changed, ok := h.tryEnter(sources)
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-expired:
			return ErrBusy
		case <-h.closed:
			return ErrBusy
		case <-ctx.Done():
			return fmt.Errorf("%w: %w", ErrBusy, ctx.Err())
		}
	}
}

// tryEnter counts a job for each source unless one is at its share; then
// it returns the channel closed when a job leaves.
func (h *passwordHasher) tryEnter(sources []string) (<-chan struct{}, bool) {
	h.sourcesMu.Lock()
	defer h.sourcesMu.Unlock()
	for _, source := range sources {
		if h.sources[source] >= h.share {
			return h.sourcesChanged, false
		}
	}
	for _, source := range sources {
		h.sources[source]++
	}
	return nil, true
}

func (h *passwordHasher) leave(sources []string) {
	h.sourcesMu.Lock()
	defer h.sourcesMu.Unlock()
	for _, source := range sources {
		if h.sources[source]--; h.sources[source] <= 0 {
			delete(h.sources, source)
		}
	}
	if len(sources) > 0 {
		close(h.sourcesChanged)
		h.sourcesChanged = make(chan struct{})
	}
}

// tryDo hands f to a worker, or returns ErrBusy when the queue is full or
// no worker takes it before expired.
func (h *passwordHasher) tryDo(ctx context.Context, f func(), expired <-chan time.Time) error {
	select {
	case h.waiting <- struct{}{}:
		defer func() { <-h.waiting }()
	default:
		return ErrBusy
	}
	job := hashJob{run: f, done: make(chan struct{})}
	select {
	case h.jobs <- job:
	case <-expired:
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

// Hash returns the bcrypt hash of a validated password (at most 72
// bytes), computed for the sources that asked (see do).
func (h *passwordHasher) Hash(ctx context.Context, password string, sources ...string) (string, error) {
	var hash []byte
	var err error
	if busy := h.do(ctx, func() { hash, err = bcrypt.GenerateFromPassword([]byte(password), h.cost) }, sources); busy != nil {
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
// matches.
func (h *passwordHasher) Matches(ctx context.Context, hash, password string, sources ...string) (bool, error) {
	target := []byte(hash)
	if hash == "" {
		target = h.dummy()
	} else if cost, err := bcrypt.Cost(target); err == nil {
		h.dummyCost.Store(int64(cost))
	}
	var err error
	if busy := h.do(ctx, func() { err = bcrypt.CompareHashAndPassword(target, []byte(password)) }, sources); busy != nil {
		return false, busy
	}
	return err == nil && hash != "", nil
}

// outdated reports whether hash was made at another cost than the
// configured one, and should be made again at the next sign-in.
func (h *passwordHasher) outdated(hash string) bool {
	cost, err := bcrypt.Cost([]byte(hash))
	return err == nil && cost != h.cost
}

// dummy returns the dummy hash at the cost of the stored hash compared
// last, making it once per cost. Costs are bounded by what is stored
// (bcrypt's own range), so the map stays tiny.
func (h *passwordHasher) dummy() []byte {
	cost := int(h.dummyCost.Load())
	h.dummiesMu.Lock()
	defer h.dummiesMu.Unlock()
	if d, ok := h.dummies[cost]; ok {
		return d
	}
	d, err := bcrypt.GenerateFromPassword([]byte("not a password anyone has"), cost)
	if err != nil {
		return h.dummies[h.cost]
	}
	h.dummies[cost] = d
	return d
}
