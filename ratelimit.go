package main

import (
	"sync"
	"time"
)

// failureLimiter counts failed attempts per key in a sliding window and
// says when a key has had too many. It lives in one process: each replica
// counts the attempts it sees.
type failureLimiter struct {
	limit  int
	window time.Duration
	now    func() time.Time

	mu       sync.Mutex
	failures map[string][]time.Time // the recent failures of each key, oldest first
}

// maxLimiterKeys bounds the memory an attacker spraying usernames or
// addresses can make the limiter hold.
const maxLimiterKeys = 100_000

func newFailureLimiter(limit int, window time.Duration) *failureLimiter {
	return &failureLimiter{limit: limit, window: window, now: time.Now, failures: map[string][]time.Time{}}
}

// blocked reports whether key has reached the limit, and if so how long
// until its oldest failure leaves the window.
func (l *failureLimiter) blocked(key string) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	recent := l.recent(key)
	if len(recent) < l.limit {
		return 0, false
	}
	return recent[0].Add(l.window).Sub(l.now()), true
}

// fail records a failed attempt for key.
func (l *failureLimiter) fail(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.failures) >= maxLimiterKeys {
		l.sweep()
	}
	recent := l.recent(key)
	if len(recent) == l.limit { // keep only what the decision needs
		recent = recent[1:]
	}
	l.failures[key] = append(recent, l.now())
}

// recent drops the failures of key that left the window and returns the rest.
func (l *failureLimiter) recent(key string) []time.Time {
	times := l.failures[key]
	cutoff := l.now().Add(-l.window)
	i := 0
	for i < len(times) && !times[i].After(cutoff) {
		i++
	}
	if i == len(times) {
		delete(l.failures, key)
		return nil
	}
	times = times[i:]
	l.failures[key] = times
	return times
}

// sweep forgets every key whose failures have all left the window, and if
// that frees nothing, forgets everything: under such a spray, counting
// again from zero is better than growing without bound.
func (l *failureLimiter) sweep() {
	for key := range l.failures {
		l.recent(key)
	}
	if len(l.failures) >= maxLimiterKeys {
		clear(l.failures)
	}
}
