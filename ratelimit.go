package main

import (
	"cmp"
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

// sweep makes room in a limiter that holds maxLimiterKeys keys. It
// forgets every key whose attempts have all left the window; if that
// leaves more than three quarters of the bound, it forgets the keys with
// the fewest attempts down to three quarters, so the next sweep waits for
// a quarter of the bound in new keys and its cost is shared among them.
// Keys at their limit are never forgotten: a spray of other keys must not
// lift a block (an account's bound above all). Only attempts fill them, so
// the memory they take grows no faster than the attempts that are let
// through.
func (l *attemptLimiter) sweep() {
	for key := range l.attempts {
		l.recent(key)
	}
	target := maxLimiterKeys * 3 / 4
	excess := len(l.attempts) - target
	if excess <= 0 {
		return
	}
	type keyCount struct {
		key string
		n   int
	}
	var open []keyCount
	for key, times := range l.attempts {
		if len(times) < l.limit {
			open = append(open, keyCount{key, len(times)})
		}
	}
	slices.SortFunc(open, func(a, b keyCount) int { return cmp.Compare(a.n, b.n) })
	for _, kc := range open[:min(excess, len(open))] {
		delete(l.attempts, kc.key)
	}
}

// Login limits. A failed sign-in (or a wrong current password sent with a
// change of one's own password or email) counts against the account and
// address pair, the address, and the account, per minute for the first
// two and per hour for the account. The pair is locked quickly; the
// account after guesses from any number of addresses add up to
// loginFailuresPerAccount in an hour, and none is then evaluated, except
// from an address the account signed in from before (knownAddresses):
// those have an hourly allowance of their own, so the owner still gets
// in while strangers' guesses on the account are stopped. Attempts that
// do not fail (a success, or one turned away because the hasher is
// busy) are limited per address too, so a valid account cannot be used
// to flood the hasher. Each replica counts on its own.
const (
	loginFailuresPerPair         = 5
	loginFailuresPerAddr         = 20
	loginOthersPerAddr           = 60
	loginWindow                  = time.Minute
	loginFailuresPerAccount      = 60 // an hour, from addresses the account never signed in from
	loginFailuresPerAccountKnown = 20 // an hour, from the addresses it did
	loginAccountWindow           = time.Hour
)

// loginLimits are the limits every sign-in passes.
type loginLimits struct {
	pair    *attemptLimiter // failures of one account from one address
	address *attemptLimiter // failures from one address
	account *attemptLimiter // failures on one account from addresses it never signed in from
	known   *attemptLimiter // failures on one account from addresses it signed in from
	others  *attemptLimiter // attempts from one address that did not fail
	homes   *knownAddresses // where each account signed in
}

func newLoginLimits() *loginLimits {
	return &loginLimits{
		pair:    newAttemptLimiter(loginFailuresPerPair, loginWindow),
		address: newAttemptLimiter(loginFailuresPerAddr, loginWindow),
		account: newAttemptLimiter(loginFailuresPerAccount, loginAccountWindow),
		known:   newAttemptLimiter(loginFailuresPerAccountKnown, loginAccountWindow),
		others:  newAttemptLimiter(loginOthersPerAddr, loginWindow),
		homes:   newKnownAddresses(),
	}
}

// loginAttempt is a sign-in in progress, counted as a failure in advance.
type loginAttempt struct {
	limits   *loginLimits
	account  string
	address  string
	reserved []reservation
	// knownAddress: the account signed in from this address before, and
	// the attempt counts against the allowance of such addresses.
	knownAddress bool
	// accountLocked: strangers' guesses on the account reached its limit.
	accountLocked bool
}

// begin reserves an attempt by address on account (a key that names the
// account once it is known, or the name tried otherwise), or returns a
// *RateLimitedError with how long to wait.
func (l *loginLimits) begin(account, address string) (*loginAttempt, error) {
	if wait, blocked := l.others.blocked(address); blocked {
		return nil, &RateLimitedError{RetryAfter: wait}
	}
	a := &loginAttempt{limits: l, account: account, address: address, knownAddress: l.homes.has(account, address)}
	_, a.accountLocked = l.account.blocked(account)
	accountLimiter := l.account
	if a.knownAddress {
		accountLimiter = l.known
	}
	for _, lk := range []struct {
		limiter *attemptLimiter
		key     string
	}{{l.pair, account + "\x00" + address}, {l.address, address}, {accountLimiter, account}} {
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

// succeeded takes the failure back, counts the attempt among the
// address's others, and remembers the address as one the account signs
// in from.
func (a *loginAttempt) succeeded() {
	a.abandoned()
	a.limits.homes.remember(a.account, a.address)
}

// abandoned takes the failure back for an attempt that could not be
// decided (busy hasher, database trouble), and counts it among the
// address's others: retrying in a loop is limited too.
func (a *loginAttempt) abandoned() {
	a.cancel()
	a.limits.others.add(a.address)
}

func (a *loginAttempt) cancel() {
	for _, res := range a.reserved {
		res.cancel()
	}
	a.reserved = nil
}

// Addresses an account signed in from are remembered for
// knownAddressTTL since the last success there, at most
// knownAddressesPerAccount of them per account (the oldest makes way),
// for at most maxKnownAccounts accounts (a random one makes way): a
// bounded memory, held per replica and lost at a restart.
const (
	knownAddressTTL          = 30 * 24 * time.Hour
	knownAddressesPerAccount = 4
	maxKnownAccounts         = 100_000
)

// knownAddresses remembers, per account, the addresses (as the limits key
// them) where it signed in successfully.
type knownAddresses struct {
	now       func() time.Time
	mu        sync.Mutex
	byAccount map[string][]knownAddress // most recent success last
}

type knownAddress struct {
	address string
	seen    time.Time
}

func newKnownAddresses() *knownAddresses {
	return &knownAddresses{now: time.Now, byAccount: map[string][]knownAddress{}}
}

// has reports whether account signed in from address within the TTL.
func (k *knownAddresses) has(account, address string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	cutoff := k.now().Add(-knownAddressTTL)
	for _, known := range k.byAccount[account] {
		if known.address == address && known.seen.After(cutoff) {
			return true
		}
	}
	return false
}

// remember records a success of account from address.
func (k *knownAddresses) remember(account, address string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.now()
	list := slices.DeleteFunc(k.byAccount[account], func(known knownAddress) bool {
		return known.address == address || !known.seen.After(now.Add(-knownAddressTTL))
	})
	if len(list) >= knownAddressesPerAccount {
		list = slices.Delete(list, 0, len(list)-knownAddressesPerAccount+1)
	}
	if _, ok := k.byAccount[account]; !ok && len(k.byAccount) >= maxKnownAccounts {
		k.makeRoom(now)
	}
	k.byAccount[account] = append(list, knownAddress{address: address, seen: now})
}

// makeRoom forgets the accounts whose addresses all expired, then
// accounts chosen at random until a tenth of the room is free.
func (k *knownAddresses) makeRoom(now time.Time) {
	cutoff := now.Add(-knownAddressTTL)
	for account, list := range k.byAccount {
		if !list[len(list)-1].seen.After(cutoff) {
			delete(k.byAccount, account)
		}
	}
	for account := range k.byAccount {
		if len(k.byAccount) < maxKnownAccounts*9/10 {
			return
		}
		delete(k.byAccount, account)
	}
}
