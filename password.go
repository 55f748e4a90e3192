package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"runtime"
	"slices"
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

	// dummies are the hashes compared against when a login names no user
	// (dummyCost: the cost of the stored hash compared last, so unknown
	// names cost what known ones do), and to pad a comparison with a hash
	// of a lower cost up to the configured one.
	dummiesMu sync.Mutex
	dummies   map[int][]byte
	dummyCost atomic.Int64

	// runs counts the jobs workers ran, rejected the ones refused with
	// ErrBusy, and rounds the bcrypt work done, in key expansions (2^cost
	// per hash or comparison): for tests and metrics.
	runs     atomic.Int64
	rejected atomic.Int64
	rounds   atomic.Int64
}

// hashSource is what the hasher knows of one source.
type hashSource struct {
	queued bool  // it has a job in the queue
	turn   int64 // the value of served when its last job was taken
}

// hashJob is one bcrypt computation, waiting for a worker or running.
type hashJob struct {
	run     func()
	sources []string
	turn    int64         // its place in the queue: lower goes first
	arrival int64         // the order of arrival, for equal turns
	taken   chan struct{} // closed when a worker takes it
	dropped chan struct{} // closed when pushed out of the queue
	done    chan struct{} // closed when it has run
}

// before reports whether j goes to a worker before k.
func (j *hashJob) before(k *hashJob) bool {
	return j.turn < k.turn || j.turn == k.turn && j.arrival < k.arrival
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
		cost:     cost,
		maxWait:  maxWait,
		capacity: workers + queue,
		closed:   make(chan struct{}),
		ready:    make(chan struct{}, workers+queue),
		sources:  map[string]*hashSource{},
		changed:  make(chan struct{}),
		sweepAt:  4 * (hasherRecall + workers + queue),
		dummies:  map[int][]byte{cost: dummy},
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

// do runs f on a worker for the given sources, or returns ErrBusy when it
// is refused, pushed out, or not taken within maxWait.
func (h *passwordHasher) do(ctx context.Context, f func(), sources []string) error {
	timer := time.NewTimer(h.maxWait) // one wait, for the source's turn and for a worker
	defer timer.Stop()
	job, err := h.enqueue(ctx, f, sources, timer.C)
	if err == nil {
		err = h.await(ctx, job, timer.C)
	}
	if errors.Is(err, ErrBusy) {
		h.rejected.Add(1)
	}
	return err
}

// enqueue puts a job for f in the queue once none of its sources has one
// there, waiting for that until expired.
func (h *passwordHasher) enqueue(ctx context.Context, f func(), sources []string, expired <-chan time.Time) (*hashJob, error) {
	for {
		job, changed, err := h.tryEnqueue(f, sources)
		if changed == nil {
			return job, err
		}
		select {
		case <-changed:
		case <-expired:
			return nil, ErrBusy
		case <-h.closed:
			return nil, ErrBusy
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrBusy, ctx.Err())
		}
	}
}

// tryEnqueue queues a job for f, or returns the channel closed when the
// queue changes if one of its sources has a job there already, or
// ErrBusy if the pool is full of jobs that go before it.
func (h *passwordHasher) tryEnqueue(f func(), sources []string) (*hashJob, <-chan struct{}, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-h.closed:
		return nil, nil, ErrBusy
	default:
	}
	// A source not served in the last hasherRecall turns counts as served
	// that long ago, so it goes before every source served since.
	turn := h.served - hasherRecall
	for _, name := range sources {
		if s := h.sources[name]; s != nil {
			if s.queued {
				return nil, h.changed, nil
			}
			turn = max(turn, s.turn)
		}
	}
	h.arrivals++
	job := &hashJob{run: f, sources: sources, turn: turn, arrival: h.arrivals,
		taken: make(chan struct{}), dropped: make(chan struct{}), done: make(chan struct{})}
	if len(h.queue)+h.running >= h.capacity {
		last := h.last()
		if last < 0 || !job.before(h.queue[last]) {
			h.charge(sources)
			return nil, nil, ErrBusy
		}
		dropped := h.remove(last)
		h.charge(dropped.sources)
		close(dropped.dropped)
	}
	h.queue = append(h.queue, job)
	h.forget()
	for _, name := range sources {
		s := h.sources[name]
		if s == nil {
			s = &hashSource{turn: turn}
			h.sources[name] = s
		}
		s.queued = true
	}
	select {
	case h.ready <- struct{}{}:
	default: // as many tokens as the queue can hold are waiting already
	}
	return job, nil, nil
}

// await waits for a worker to take and run job, or returns ErrBusy when
// it is pushed out or not taken before expired.
func (h *passwordHasher) await(ctx context.Context, job *hashJob, expired <-chan time.Time) error {
	var err error
	select {
	case <-job.taken:
	case <-job.dropped:
		return ErrBusy
	case <-expired:
		err = ErrBusy
	case <-h.closed:
		err = ErrBusy
	case <-ctx.Done():
		err = fmt.Errorf("%w: %w", ErrBusy, ctx.Err())
	}
	if err != nil && h.withdraw(job) {
		return err
	}
	select { // taken or pushed out meanwhile
	case <-job.taken:
	case <-job.dropped:
		return ErrBusy
	}
	<-job.done
	return nil
}

// withdraw takes job out of the queue, unless a worker took it or it was
// pushed out already.
func (h *passwordHasher) withdraw(job *hashJob) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	i := slices.Index(h.queue, job)
	if i < 0 {
		return false
	}
	h.remove(i)
	h.charge(job.sources)
	return true
}

// take hands the first job of the queue to a worker, or returns nil when
// the queue is empty.
func (h *passwordHasher) take() *hashJob {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.queue) == 0 {
		return nil
	}
	first := 0
	for i, job := range h.queue {
		if job.before(h.queue[first]) {
			first = i
		}
	}
	job := h.remove(first)
	h.served++
	for _, name := range job.sources {
		h.sources[name].turn = h.served
	}
	h.running++
	h.runs.Add(1)
	close(job.taken)
	return job
}

// finished counts a job that has run.
func (h *passwordHasher) finished() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.running--
}

// last is the index of the job in the queue that goes last, or -1.
func (h *passwordHasher) last() int {
	last := -1
	for i, job := range h.queue {
		if last < 0 || h.queue[last].before(job) {
			last = i
		}
	}
	return last
}

// remove takes the job at i out of the queue, and tells the jobs waiting
// for one of its sources to try again.
func (h *passwordHasher) remove(i int) *hashJob {
	job := h.queue[i]
	h.queue = slices.Delete(h.queue, i, i+1)
	for _, name := range job.sources {
		h.sources[name].queued = false
	}
	close(h.changed)
	h.changed = make(chan struct{})
	return job
}

// hasherRecall is how many turns the hasher remembers a source served: a
// source that asks again within them goes after every source that has
// not. It is larger than the number of sources a crowd would use to keep
// the pool busy, so each of them is remembered between its turns and a
// newcomer goes first; a stream of ever new sources (rotating addresses)
// is first-come first-served among itself, and goes ahead of a source
// served recently (see docs/security.md).
const hasherRecall = 1024

// charge counts a busy answer as the turn of the sources that got it: a
// source that keeps asking while the pool is full goes after one that
// has not asked. Past maxHasherSources, sources not yet known are not
// recorded (memory stays bounded whatever the number of addresses).
func (h *passwordHasher) charge(sources []string) {
	h.forget()
	for _, name := range sources {
		s := h.sources[name]
		if s == nil {
			if len(h.sources) >= maxHasherSources {
				continue
			}
			s = &hashSource{}
			h.sources[name] = s
		}
		s.turn = h.served
	}
}

// maxHasherSources bounds the sources the hasher remembers for their
// busy answers alone.
const maxHasherSources = 1 << 16

// forget drops the sources that have no job in the queue and were last
// served (or refused) more than hasherRecall turns ago: they count as new
// again. It looks only when the number of sources has doubled since it
// last looked, so its cost is shared by the sources added meanwhile.
func (h *passwordHasher) forget() {
	if len(h.sources) < h.sweepAt {
		return
	}
	for name, s := range h.sources {
		if !s.queued && s.turn <= h.served-hasherRecall {
			delete(h.sources, name)
		}
	}
	h.sweepAt = max(2*len(h.sources), 4*(hasherRecall+h.capacity))
}

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

// dummyAt returns a dummy hash of the given cost, making it once per
// cost. Costs are bounded by what is stored (bcrypt's own range), so the
// map stays tiny.
func (h *passwordHasher) dummyAt(cost int) []byte {
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
