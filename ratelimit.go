package main

import (
	"slices"
	"sync"
	"time"
)

// attemptLimiter counts attempts per key in a sliding window and refuses a
// key that has reached its limit. An attempt is reserved before the work
// it limits (bcrypt) and cancelled after if it turns out not to count, so
// that a burst of concurrent attempts cannot all pass a check made before
// any of them was recorded. It lives in one process: each replica counts
// the attempts it sees.
type attemptLimiter struct {
	limit  int
	window time.Duration
	now    func() time.Time

	mu       sync.Mutex
	attempts map[string][]time.Time // the recent attempts of each key, oldest first
}

// maxLimiterKeys bounds the memory an attacker spraying usernames or
// addresses can make a limiter hold.
const maxLimiterKeys = 100_000

func newAttemptLimiter(limit int, window time.Duration) *attemptLimiter {
	return &attemptLimiter{limit: limit, window: window, now: time.Now, attempts: map[string][]time.Time{}}
}

// reservation is one attempt counted by a limiter, until cancelled.
type reservation struct {
	limiter *attemptLimiter
	key     string
	at      time.Time
}

// reserve counts an attempt for key, unless key has reached the limit:
// then it returns false and how long until the oldest attempt leaves the
// window.
func (l *attemptLimiter) reserve(key string) (reservation, time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.attempts) >= maxLimiterKeys {
		l.sweep()
	}
	recent := l.recent(key)
	now := l.now()
	if len(recent) >= l.limit {
		return reservation{}, recent[0].Add(l.window).Sub(now), false
	}
	l.attempts[key] = append(recent, now)
	return reservation{limiter: l, key: key, at: now}, 0, true
}

// add counts an attempt for key whatever the limit: something already
// done that later attempts must answer for.
func (l *attemptLimiter) add(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.attempts) >= maxLimiterKeys {
		l.sweep()
	}
	recent := l.recent(key)
	if len(recent) >= l.limit { // keep only what the decision needs
		recent = recent[1:]
	}
	l.attempts[key] = append(recent, l.now())
}

// cancel takes a reserved attempt back.
func (r reservation) cancel() {
	l := r.limiter
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	times := l.attempts[r.key]
	if i := slices.Index(times, r.at); i >= 0 {
		times = slices.Delete(times, i, i+1)
	}
	if len(times) == 0 {
		delete(l.attempts, r.key)
		return
	}
	l.attempts[r.key] = times
}

// blocked reports whether key has reached the limit, and if so how long
// until its oldest attempt leaves the window.
func (l *attemptLimiter) blocked(key string) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	recent := l.recent(key)
	if len(recent) < l.limit {
		return 0, false
	}
	return recent[0].Add(l.window).Sub(l.now()), true
}

// count is how many attempts of key are in the window.
func (l *attemptLimiter) count(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.recent(key))
}

// recent drops the attempts of key that left the window and returns the
// rest.
func (l *attemptLimiter) recent(key string) []time.Time {
	times := l.attempts[key]
	cutoff := l.now().Add(-l.window)
	i := 0
	for i < len(times) && !times[i].After(cutoff) {
		i++
	}
	if i == len(times) {
		delete(l.attempts, key)
		return nil
	}
	times = times[i:]
	l.attempts[key] = times
	return times
}

// sweep forgets every key whose attempts have all left the window, and if
// that frees nothing, forgets everything: under such a spray, counting
// again from zero is better than growing without bound.
func (l *attemptLimiter) sweep() {
	for key := range l.attempts {
		l.recent(key)
	}
	if len(l.attempts) >= maxLimiterKeys {
		clear(l.attempts)
	}
}

// Login limits, per minute. A failed sign-in (or a wrong current password
// sent with a change of one's own password or email) counts against the
// account and address pair, the address, and the account. The pair is
// locked quickly; the account only at a rate that means guessing from
// many addresses, and even then an address with no recent failures may
// still try: the owner, signing in from their usual place, is never
// locked out by someone else's guesses. Attempts that do not fail (a
// success, or one turned away because the hasher is busy) are limited per
// address too, so a valid account cannot be used to flood the hasher.
const (
	loginFailuresPerPair    = 5
	loginFailuresPerAddr    = 20
	loginFailuresPerAccount = 100
	loginOthersPerAddr      = 60
	loginWindow             = time.Minute
)

// loginLimits are the limits every sign-in passes.
type loginLimits struct {
	pair    *attemptLimiter // failures of one account from one address
	address *attemptLimiter // failures from one address
	account *attemptLimiter // failures on one account, from anywhere
	others  *attemptLimiter // attempts from one address that did not fail
}

func newLoginLimits() *loginLimits {
	return &loginLimits{
		pair:    newAttemptLimiter(loginFailuresPerPair, loginWindow),
		address: newAttemptLimiter(loginFailuresPerAddr, loginWindow),
		account: newAttemptLimiter(loginFailuresPerAccount, loginWindow),
		others:  newAttemptLimiter(loginOthersPerAddr, loginWindow),
	}
}

// loginAttempt is a sign-in in progress, counted as a failure in advance.
type loginAttempt struct {
	limits   *loginLimits
	address  string
	reserved []reservation
	// accountLocked: the account is under attack from many addresses; this
	// address was let through because it has no recent failures.
	accountLocked bool
}

// begin reserves an attempt by address on account (a key that names the
// account once it is known, or the name tried otherwise), or returns a
// *RateLimitedError with how long to wait.
func (l *loginLimits) begin(account, address string) (*loginAttempt, error) {
	if wait, blocked := l.others.blocked(address); blocked {
		return nil, &RateLimitedError{RetryAfter: wait}
	}
	a := &loginAttempt{limits: l, address: address}
	accountWait, accountLocked := l.account.blocked(account)
	if accountLocked && l.address.count(address) > 0 {
		return nil, &RateLimitedError{RetryAfter: accountWait}
	}
	a.accountLocked = accountLocked
	limiters := []struct {
		limiter *attemptLimiter
		key     string
	}{{l.pair, account + "\x00" + address}, {l.address, address}}
	if !accountLocked {
		limiters = append(limiters, struct {
			limiter *attemptLimiter
			key     string
		}{l.account, account})
	}
	for _, lk := range limiters {
		res, wait, ok := lk.limiter.reserve(lk.key)
		if !ok {
			a.cancel()
			return nil, &RateLimitedError{RetryAfter: wait}
		}
		a.reserved = append(a.reserved, res)
	}
	return a, nil
}

// failed keeps the attempt counted as a failure.
func (a *loginAttempt) failed() { a.reserved = nil }

// succeeded takes the failure back and counts the attempt among the
// address's others.
func (a *loginAttempt) succeeded() {
	a.cancel()
	a.limits.others.add(a.address)
}

// abandoned takes the failure back for an attempt that could not be
// decided (busy hasher, database trouble), and counts it among the
// address's others: retrying in a loop is limited too.
func (a *loginAttempt) abandoned() { a.succeeded() }

func (a *loginAttempt) cancel() {
	for _, res := range a.reserved {
		res.cancel()
	}
	a.reserved = nil
}
