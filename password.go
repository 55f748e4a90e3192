package main

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// ErrBusy: the password hasher is saturated; answered 503 with Retry-After.
var ErrBusy = errors.New("password hashing is saturated")

// passwordHasher runs bcrypt under a concurrency limit. At most `workers`
// hashes run at once (one per core keeps the CPU busy without thrashing),
// at most `queue` more wait, and none waits longer than maxWait, so a
// flood of logins or creates cannot starve other requests or pile up
// memory: the excess is refused at once with ErrBusy.
type passwordHasher struct {
	cost    int
	workers chan struct{}
	waiting chan struct{}
	maxWait time.Duration

	// dummyHash is compared against when a login names no user, so that
	// answer takes as long as a wrong password.
	dummyHash []byte

	// runs counts bcrypt computations, for tests and metrics.
	runs atomic.Int64
}

func newPasswordHasher(cost, workers, queue int, maxWait time.Duration) (*passwordHasher, error) {
	dummy, err := bcrypt.GenerateFromPassword([]byte("not a password anyone has"), cost)
	if err != nil {
		return nil, fmt.Errorf("password hasher: %w", err)
	}
	return &passwordHasher{
		cost:      cost,
		workers:   make(chan struct{}, workers),
		waiting:   make(chan struct{}, workers+queue),
		maxWait:   maxWait,
		dummyHash: dummy,
	}, nil
}

// do runs f in a worker slot, or returns ErrBusy when none frees up in time.
func (h *passwordHasher) do(ctx context.Context, f func()) error {
	select {
	case h.waiting <- struct{}{}:
		defer func() { <-h.waiting }()
	default:
		return ErrBusy
	}
	timer := time.NewTimer(h.maxWait)
	defer timer.Stop()
	select {
	case h.workers <- struct{}{}:
		defer func() { <-h.workers }()
	case <-timer.C:
		return ErrBusy
	case <-ctx.Done():
		return fmt.Errorf("%w: %w", ErrBusy, ctx.Err())
	}
	h.runs.Add(1)
	f()
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
