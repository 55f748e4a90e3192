package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"
)

// The queue of the bcrypt pool: which job a free worker takes, and which
// are refused (see passwordHasher).

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
