package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// The sign-in attacks of issue 21 that come from many addresses: a crowd
// keeping the bcrypt pool busy, and guesses on one account from
// addresses that change.

// waitUntil polls cond until it holds, failing the test after a generous
// bound: it waits for a state, it does not measure time.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestHasherServesAQuietSourceFirst: 20 sources keep the one worker busy,
// each asking again as soon as its job ran. A job from a source that has
// not asked goes to the worker next, instead of after the 19 waiting (as
// first-in first-out had it). The worker runs one job per step of the
// test, so the order is the hasher's, not the machine's.
func TestHasherServesAQuietSourceFirst(t *testing.T) {
	t.Parallel()
	h, err := newPasswordHasher(4, 1, 63, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	step := make(chan struct{})
	var mu sync.Mutex
	var order []string
	job := func(source string) func() {
		return func() {
			<-step
			mu.Lock()
			order = append(order, source)
			mu.Unlock()
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	var crowd sync.WaitGroup
	for i := range 20 {
		source := fmt.Sprintf("198.51.100.%d", i+1)
		crowd.Go(func() {
			for ctx.Err() == nil {
				h.do(ctx, job(source), []string{source})
			}
		})
	}
	defer func() { stop(); close(step); crowd.Wait() }()
	busy := func() bool { return h.stats().waiting >= 20 } // one running, 19 waiting
	for range 60 {                                         // three rounds of the crowd
		waitUntil(t, "the crowd", busy)
		step <- struct{}{}
	}
	waitUntil(t, "the crowd", busy)
	mu.Lock()
	before := len(order)
	mu.Unlock()
	quiet := make(chan error, 1)
	go func() { quiet <- h.do(ctx, job("203.0.113.1"), []string{"203.0.113.1"}) }()
	waitUntil(t, "the quiet source's job", func() bool { return h.stats().waiting >= 21 })
	for served := false; !served; {
		select {
		case step <- struct{}{}:
		case err := <-quiet:
			if err != nil {
				t.Fatalf("the quiet source: %v", err)
			}
			served = true
		}
	}
	mu.Lock()
	defer mu.Unlock()
	// Ahead of it: the job running when it came, and one that may have
	// been taken as it was queued.
	if ahead := slices.Index(order, "203.0.113.1") - before; ahead > 2 {
		t.Errorf("the quiet source's job ran after %d jobs of the crowd, want at most 2", ahead)
	}
}

// TestHasherPushesOutTheLatestServed: with the pool full of jobs whose
// sources were just served, a newcomer takes the place of the one served
// last, which is answered busy at once, not after maxWait.
func TestHasherPushesOutTheLatestServed(t *testing.T) {
	t.Parallel()
	h, err := newPasswordHasher(4, 1, 2, time.Minute) // one running, two waiting
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, source := range []string{"a", "b"} { // served in this order
		if err := h.do(context.Background(), func() {}, []string{source}); err != nil {
			t.Fatal(err)
		}
	}
	release := make(chan struct{})
	go h.do(context.Background(), func() { <-release }, []string{"holder"})
	waitUntil(t, "the worker to be held", func() bool { return h.stats().runs == 3 })
	type result struct {
		source string
		err    error
	}
	results := make(chan result, 3)
	submit := func(source string) {
		go func() { results <- result{source, h.do(context.Background(), func() {}, []string{source})} }()
	}
	submit("a")
	waitUntil(t, "a to wait", func() bool { return h.stats().waiting == 2 })
	submit("b")
	waitUntil(t, "b to wait", func() bool { return h.stats().waiting == 3 })
	submit("newcomer")
	first := <-results // while the worker is held
	if first.source != "b" || first.err == nil {
		t.Errorf("with the pool full, first answer: %s %v, want b pushed out as busy", first.source, first.err)
	}
	close(release)
	for range 2 {
		if r := <-results; r.err != nil {
			t.Errorf("%s: %v", r.source, r.err)
		}
	}
}

// TestSignInFloodFromManyAddresses: 64 addresses sign in as fast as they
// can, more than the pool holds; sign-ins from fresh addresses still get
// in, each after at most one bcrypt job per other source (and the one
// running), the fair pool's promise. That count, not a time, is what is
// held here: a test's wall clock measures the machine's load. The issue's
// "within 3 s" is measured by bench/signins.sh, the full 20 s at cost 10
// against the service as deployed.
func TestSignInFloodFromManyAddresses(t *testing.T) {
	t.Parallel()
	const sources = 64
	app := newTestApp(t, func(cfg *Config) { cfg.BcryptWorkers = 1 })
	app.newUser("honest")
	ctx, stop := context.WithCancel(context.Background())
	var flood sync.WaitGroup
	var answers [600]atomic.Int64
	for i := range sources {
		flood.Go(func() {
			addr := fmt.Sprintf("198.18.0.%d:1000", i+1)
			for n := 0; ctx.Err() == nil; n++ { // a new name each time: past the pair's limit
				code := app.do("POST", "/api/v1/auth/token", fmt.Sprintf(`{"username":"nobody%d_%d","password":"wrong password"}`, i, n),
					"Authorization", "", remoteAddr, addr).Code
				answers[code].Add(1)
				if code == http.StatusTooManyRequests {
					time.Sleep(10 * time.Millisecond) // spent its allowance: spare the machine
				}
			}
		})
	}
	defer func() { stop(); flood.Wait() }()
	// The flood is on: the pool has been full, and has served more jobs
	// than it holds, so the first comers (who go first, being first) are
	// not waiting still.
	runs := app.passwords.stats().runs
	waitUntil(t, "the flood to fill the pool", func() bool {
		return answers[http.StatusServiceUnavailable].Load() > 0 && app.passwords.stats().runs > runs+bcryptQueuePerWorker+1
	})
	inTime := 0
	for i := range 10 {
		start, before := time.Now(), app.passwords.stats().runs
		rec := app.do("POST", "/api/v1/auth/token", `{"username":"honest","password":"user password"}`,
			"Authorization", "", remoteAddr, fmt.Sprintf("203.0.113.%d:1000", i+1))
		// Its own job, the one running when it came, one per other source.
		served := app.passwords.stats().runs - before
		if rec.Code == http.StatusOK && served <= sources+2 {
			inTime++
		} else {
			t.Logf("honest sign-in %d: %d after %d bcrypt jobs, %v: %s", i, rec.Code, served, time.Since(start), rec.Body)
		}
	}
	busy := answers[http.StatusServiceUnavailable].Load()
	stop()
	flood.Wait()
	t.Logf("the flood's answers: %d 401, %d 429, %d 503; bcrypt ran %d times", answers[http.StatusUnauthorized].Load(),
		answers[http.StatusTooManyRequests].Load(), busy, app.passwords.stats().runs-runs)
	if inTime < 8 {
		t.Errorf("%d of 10 honest sign-ins got in after at most one job per other source, want at least 8", inTime)
	}
	if busy == 0 {
		t.Error("the flood never filled the pool: the test proves nothing")
	}
}

// TestGuessesOnOneAccountFromManyAddresses: 300 wrong passwords for one
// account from 60 addresses, 5 each (within each address's own limits),
// evaluate no more than the account's hourly limit; the owner, from an
// address where the account signed in before, still gets in, and a
// stranger with the right password does not while the limit holds.
func TestGuessesOnOneAccountFromManyAddresses(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	app.newUser("target")
	signIn := func(addr, password string) int {
		return app.do("POST", "/api/v1/auth/token", fmt.Sprintf(`{"username":"target","password":%q}`, password),
			"Authorization", "", remoteAddr, addr+":4000").Code
	}
	if code := signIn("192.0.2.10", "user password"); code != http.StatusOK {
		t.Fatalf("the owner at home: %d", code)
	}
	runs := app.passwords.stats().runs
	codes := map[int]int{}
	for a := range 60 {
		for g := range 5 {
			codes[signIn(fmt.Sprintf("198.51.100.%d", a+1), fmt.Sprintf("guess %d-%d", a, g))]++
		}
	}
	evaluated := app.passwords.stats().runs - runs
	if evaluated > loginFailuresPerAccount || codes[http.StatusUnauthorized] > loginFailuresPerAccount {
		t.Errorf("300 guesses from 60 addresses: %d evaluated (answers %v), want at most %d", evaluated, codes, loginFailuresPerAccount)
	}
	if code := signIn("192.0.2.10", "user password"); code != http.StatusOK {
		t.Errorf("the owner at home during the attack: got %d, want 200", code)
	}
	if code := signIn("203.0.113.200", "user password"); code != http.StatusTooManyRequests {
		t.Errorf("a stranger with the right password during the attack: got %d, want 429", code)
	}
}

// TestSignInWorkIndependentOfStoredCost: a wrong password costs the same
// bcrypt work whether the stored hash has the configured cost, a lower
// one (kept from an older BCRYPT_COST), or there is no such user; the
// work is counted in key expansions, not timed.
func TestSignInWorkIndependentOfStoredCost(t *testing.T) {
	t.Parallel()
	app := newTestApp(t, func(cfg *Config) { cfg.BcryptCost = 6 })
	app.newUser("current")
	older, _ := app.newUser("older")
	oldHash, err := bcrypt.GenerateFromPassword([]byte("user password"), 4)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.db.Exec("UPDATE users SET password_hash = ? WHERE id = ?", oldHash, older.ID); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"current", "older", "nosuchuser", "older"} {
		before := app.passwords.rounds.Load()
		rec := app.do("POST", "/api/v1/auth/token", fmt.Sprintf(`{"username":%q,"password":"wrong password"}`, name), "Authorization", "")
		if got := app.passwords.rounds.Load() - before; rec.Code != http.StatusUnauthorized || got != 1<<6 {
			t.Errorf("%s: %d after %d key expansions, want 401 after %d", name, rec.Code, got, 1<<6)
		}
	}
}
