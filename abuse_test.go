package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"runtime"
	runtimemetrics "runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The attacks of issue 10, one test each: every one of them worked before.

// TestNonAdminListReadsNoUsers: the page statement, run with an ordinary
// user's token, is refused by the server once it has read the token row,
// whatever the filters, sort and page, so a non-admin's list costs a
// token check and tells nothing about which users match.
func TestNonAdminListReadsNoUsers(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	_, userToken := app.newUser("mallory")
	userHash, _ := parseToken(userToken)
	adminHash, _ := parseToken(app.adminToken)
	heavy := []string{
		"sort=-email&page=100&per_page=100",
		"q=root&role=admin",
		"q=nobody&is_active=false&sort=updated_at",
		"created_after=2000-01-01T00:00:00Z&sort=-created_at&page=50",
	}
	for _, raw := range heavy {
		values, _ := url.ParseQuery(raw)
		q, err := parseListQuery(values)
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		if got := explainExtra(t, app, q, userHash); !strings.Contains(got, "Impossible WHERE") {
			t.Errorf("%s as a user: the plan reads rows: %s", raw, got)
		}
		if got := explainExtra(t, app, q, adminHash); strings.Contains(got, "Impossible WHERE") {
			t.Errorf("%s as the admin: nothing would be read: %s", raw, got)
		}
		wantProblem(t, app.do("GET", "/api/v1/users?"+raw, "", as(userToken)...), http.StatusForbidden)
	}
}

// explainExtra returns the Extra column of every row of EXPLAIN for the
// list's page statement with the given token.
func explainExtra(t *testing.T, app *testApp, q listQuery, tokenHash []byte) string {
	t.Helper()
	stmt, args := q.pageSQL(tokenHash, adminOnly.rolesPermitted())
	rows, err := app.db.Query("EXPLAIN "+stmt, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var extras []string
	for rows.Next() {
		values := make([]any, len(cols))
		for i := range values {
			values[i] = new(any)
		}
		if err := rows.Scan(values...); err != nil {
			t.Fatal(err)
		}
		for i, c := range cols {
			if v := *values[i].(*any); c == "Extra" && v != nil {
				extras = append(extras, fmt.Sprintf("%s", v))
			}
		}
	}
	return strings.Join(extras, "; ")
}

// TestLoginBurstIsHeldToTheLimit: a concurrent burst of guesses for one
// account from one address is held to the pair's limit, correct password
// included.
func TestLoginBurstIsHeldToTheLimit(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	app.newUser("burst")
	runs := app.passwords.runs.Load()
	var wg sync.WaitGroup
	codes := make([]int, 33)
	for i := range codes {
		password := fmt.Sprintf("wrong password %d", i)
		if i == len(codes)-1 {
			password = "user password"
		}
		wg.Go(func() {
			codes[i] = app.do("POST", "/api/v1/auth/token", fmt.Sprintf(`{"username":"burst","password":%q}`, password), as("")...).Code
		})
	}
	wg.Wait()
	failed, succeeded := 0, 0
	for _, code := range codes {
		switch code {
		case http.StatusUnauthorized:
			failed++
		case http.StatusOK:
			succeeded++
		case http.StatusTooManyRequests:
		default:
			t.Errorf("unexpected status %d", code)
		}
	}
	// A success takes its reserved failure back, so the right password
	// in the burst can make room for one more guess, never more.
	if failed > loginFailuresPerPair {
		t.Errorf("%d wrong passwords were tried, want at most %d", failed, loginFailuresPerPair)
	}
	if got := app.passwords.runs.Load() - runs; got > int64(failed+succeeded) {
		t.Errorf("bcrypt ran %d times for %d answered attempts", got, failed+succeeded)
	}
}

// TestOwnerSignsInWhileTheAccountIsHammered: guesses from many addresses
// lock the account for them, and for any address it never signed in
// from, not for its owner at an address where it signed in before.
func TestOwnerSignsInWhileTheAccountIsHammered(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	app.newUser("victim")
	guess := func(addr string, password string) int {
		return app.do("POST", "/api/v1/auth/token", fmt.Sprintf(`{"username":"victim","password":%q}`, password),
			"Authorization", "", remoteAddr, addr+":4000").Code
	}
	if code := guess("203.0.113.77", "user password"); code != http.StatusOK {
		t.Fatalf("the owner at home: %d", code)
	}
	attackers := loginFailuresPerAccount/(loginFailuresPerPair-1) + 1
	for a := range attackers {
		for range loginFailuresPerPair - 1 {
			guess(fmt.Sprintf("198.51.100.%d", a+1), "not the password")
		}
	}
	if _, locked := app.server().logins.account.blocked(accountKey(app.userID("victim"))); !locked {
		t.Fatal("the account limit was not reached")
	}
	if code := guess("198.51.100.1", "user password"); code != http.StatusTooManyRequests {
		t.Errorf("an attacking address with the right password: got %d, want 429", code)
	}
	if code := guess("203.0.113.78", "user password"); code != http.StatusTooManyRequests {
		t.Errorf("a clean address the account never signed in from: got %d, want 429", code)
	}
	if code := guess("203.0.113.77", "user password"); code != http.StatusOK {
		t.Errorf("the owner at home: got %d, want 200", code)
	}
	if !strings.Contains(app.logs.String(), `"event":"login.failed"`) || strings.Contains(app.logs.String(), "not the password") {
		t.Errorf("security log: want failed logins, never a password")
	}
}

// TestTrustedProxies: behind a trusted proxy each client has its own
// limits; X-Forwarded-For from anyone else is ignored.
func TestTrustedProxies(t *testing.T) {
	t.Parallel()
	app := newTestApp(t, func(cfg *Config) {
		cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	})
	try := func(peer, forwarded, username, password string) int {
		return app.do("POST", "/api/v1/auth/token", fmt.Sprintf(`{"username":%q,"password":%q}`, username, password),
			"Authorization", "", remoteAddr, peer+":5000", "X-Forwarded-For", forwarded).Code
	}
	// One client behind the proxy fails as often as an address may...
	for i := range loginFailuresPerAddr {
		try("10.0.0.1", "203.0.113.5", fmt.Sprintf("guess%d", i), "wrong password")
	}
	if code := try("10.0.0.1", "203.0.113.5", testAdminName, testAdminPassword); code != http.StatusTooManyRequests {
		t.Errorf("the guessing client: got %d, want 429", code)
	}
	// ...and another client of the same proxy is not locked out, even
	// with a forged address left of the real one.
	if code := try("10.0.0.1", "203.0.113.5, 203.0.113.6, 10.0.0.2", testAdminName, testAdminPassword); code != http.StatusOK {
		t.Errorf("another client behind the proxy: got %d, want 200", code)
	}
	// An untrusted peer's X-Forwarded-For counts for nothing.
	for i := range loginFailuresPerAddr {
		try("192.0.2.9", fmt.Sprintf("198.51.100.%d", i+1), fmt.Sprintf("guess%d", i), "wrong password")
	}
	if code := try("192.0.2.9", "198.51.100.200", testAdminName, testAdminPassword); code != http.StatusTooManyRequests {
		t.Errorf("an untrusted peer rotating X-Forwarded-For: got %d, want 429", code)
	}
	if !strings.Contains(app.logs.String(), `"client_address":"203.0.113.6"`) {
		t.Error("the access log lacks the client address")
	}
}

// TestLoginFloodDoesNotStarveOthers: one account signing in as fast as it
// can, from one address, cannot keep another user's sign-in at 503.
func TestLoginFloodDoesNotStarveOthers(t *testing.T) {
	t.Parallel()
	app := newTestApp(t, func(cfg *Config) { cfg.BcryptWorkers = 1 })
	app.newUser("flooder")
	app.newUser("bystander")
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for ctx.Err() == nil {
				app.do("POST", "/api/v1/auth/token", `{"username":"flooder","password":"user password"}`,
					"Authorization", "", remoteAddr, "198.51.100.66:1000")
			}
		})
	}
	time.Sleep(100 * time.Millisecond) // the flood is running
	busy := 0
	for i := range 10 {
		code := app.do("POST", "/api/v1/auth/token", `{"username":"bystander","password":"user password"}`,
			"Authorization", "", remoteAddr, fmt.Sprintf("203.0.113.%d:1000", i+1)).Code
		if code == http.StatusServiceUnavailable {
			busy++
		} else if code != http.StatusOK {
			t.Errorf("bystander: got %d", code)
		}
	}
	stop()
	wg.Wait()
	if busy > 0 {
		t.Errorf("%d of 10 sign-ins were turned away as busy during another account's flood", busy)
	}
}

// TestManyLargeBodiesKeepMemoryBounded: hundreds of connections sending
// large sign-in bodies at once, with and without a declared length, do
// not grow the heap by more than a few MiB.
func TestManyLargeBodiesKeepMemoryBounded(t *testing.T) {
	app := newTestApp(t) // not parallel: it measures this process's heap
	srv := httptest.NewServer(app.handler)
	defer srv.Close()
	runtime.GC()
	base := heapBytes()
	var peak atomic.Uint64
	sampling, stopSampling := context.WithCancel(context.Background())
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for sampling.Err() == nil {
			if h := heapBytes(); h > peak.Load() {
				peak.Store(h)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	large := bytes.Repeat([]byte("a"), 1<<20)
	var wg sync.WaitGroup
	for i := range 300 {
		wg.Go(func() {
			body := io.Reader(bytes.NewReader(large))
			if i%2 == 1 {
				body = io.MultiReader(body) // no declared length: chunked
			}
			resp, err := http.Post(srv.URL+"/api/v1/auth/token", "application/json", body)
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusRequestEntityTooLarge {
					t.Errorf("got %d, want 413", resp.StatusCode)
				}
			}
		})
	}
	wg.Wait()
	stopSampling()
	<-sampled
	if grown := int64(peak.Load()) - int64(base); grown > 48<<20 {
		t.Errorf("the heap grew by %d MiB under 300 large bodies", grown>>20)
	}
}

func heapBytes() uint64 {
	sample := []runtimemetrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	runtimemetrics.Read(sample)
	return sample[0].Value.Uint64()
}

// TestBodyBudget: bodies wait for room in the budget and are refused
// with a 503 when none comes in time.
func TestBodyBudget(t *testing.T) {
	t.Parallel()
	b := newBodyBudget(100)
	ctx := context.Background()
	if !b.acquire(ctx, 60, time.Second) || b.acquire(ctx, 60, 10*time.Millisecond) {
		t.Fatal("the budget let 120 of 100 bytes in")
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		b.release(60)
	}()
	if !b.acquire(ctx, 60, time.Second) {
		t.Error("a body did not get the room given back")
	}
	if got := problemFor(ErrBodiesBusy); got.Status != http.StatusServiceUnavailable || got.Header.Get("Retry-After") == "" {
		t.Errorf("busy bodies: %+v", got)
	}
}

// TestStartupWindow: until the bootstrap admin exists, the health checks
// are 503 and nobody can sign up (and take the admin's name).
func TestStartupWindow(t *testing.T) {
	t.Parallel()
	st := &startup{waitForAdmin: true}
	app := newTestAppWith(t, newTestDB(t), st, func(cfg *Config) { cfg.AllowSignup = true })
	wantProblem(t, app.do("GET", "/health", "", "Authorization", ""), http.StatusServiceUnavailable)
	wantProblem(t, app.manage("GET", "/health/ready"), http.StatusServiceUnavailable)
	signup := `{"username":"root_admin","email":"grab@example.com","password":"user password"}`
	wantProblem(t, app.do("POST", "/api/v1/users", signup, "Authorization", ""), http.StatusServiceUnavailable)
	app.bootstrapAdmin()
	st.adminDone.Store(true)
	if rec := app.do("GET", "/health", "", "Authorization", ""); rec.Code != http.StatusOK {
		t.Errorf("health after start-up: %d %s", rec.Code, rec.Body)
	}
	wantProblem(t, app.do("POST", "/api/v1/users", signup, "Authorization", ""), http.StatusConflict, "username")
}

// TestAnonymousIdempotencyKeys: anonymous keys belong to the client
// address, and only a valid, hashed sign-up stores one.
func TestAnonymousIdempotencyKeys(t *testing.T) {
	t.Parallel()
	app := newTestApp(t, func(cfg *Config) { cfg.AllowSignup = true })
	signup := func(addr, body string) *httptest.ResponseRecorder {
		return app.do("POST", "/api/v1/users", body, "Authorization", "", "Idempotency-Key", "shared-key", remoteAddr, addr+":1")
	}
	keys := func() (n int) {
		app.db.QueryRow("SELECT COUNT(*) FROM idempotency_keys").Scan(&n)
		return n
	}
	wantProblem(t, signup("198.51.100.1", `{"username":"x"}`), http.StatusBadRequest)
	if n := keys(); n != 0 {
		t.Errorf("an invalid anonymous body stored %d keys", n)
	}
	first := signup("198.51.100.1", `{"username":"anon1","email":"anon1@example.com","password":"user password"}`)
	if first.Code != http.StatusCreated {
		t.Fatalf("first sign-up: %d %s", first.Code, first.Body)
	}
	other := signup("198.51.100.2", `{"username":"anon2","email":"anon2@example.com","password":"user password"}`)
	if other.Code != http.StatusCreated || other.Header().Get("Idempotent-Replayed") != "" {
		t.Errorf("another address with the same key: %d %s", other.Code, other.Body)
	}
	replay := signup("198.51.100.1", `{"username":"anon1","email":"anon1@example.com","password":"user password"}`)
	if replay.Code != http.StatusCreated || replay.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("the same address retrying: %d", replay.Code)
	}
}

// TestSignupsAreLimitedPerAddress: one address signs up only so many
// accounts an hour.
func TestSignupsAreLimitedPerAddress(t *testing.T) {
	t.Parallel()
	app := newTestApp(t, func(cfg *Config) { cfg.AllowSignup, cfg.SignupsPerHour = true, 2 })
	signup := func(i int, addr string) int {
		return app.do("POST", "/api/v1/users", fmt.Sprintf(`{"username":"su%d","email":"su%d@example.com","password":"user password"}`, i, i),
			"Authorization", "", remoteAddr, addr+":1").Code
	}
	wantProblem(t, app.do("POST", "/api/v1/users", `{"username":"x"}`, "Authorization", "", remoteAddr, "198.51.100.3:1"), http.StatusBadRequest)
	for i := range 2 {
		if code := signup(i, "198.51.100.3"); code != http.StatusCreated {
			t.Fatalf("sign-up %d: %d", i, code)
		}
	}
	if code := signup(2, "198.51.100.3"); code != http.StatusTooManyRequests {
		t.Errorf("third sign-up from one address: got %d, want 429", code)
	}
	if code := signup(3, "198.51.100.4"); code != http.StatusCreated {
		t.Errorf("another address: got %d", code)
	}
}

// TestLimitsKeyIPv6By64: two IPv6 addresses of one /64 are one client to
// the limits (sign-ups, anonymous idempotency keys); another /64 is
// another client. Before, each address was a client of its own.
func TestLimitsKeyIPv6By64(t *testing.T) {
	t.Parallel()
	app := newTestApp(t, func(cfg *Config) { cfg.AllowSignup, cfg.SignupsPerHour = true, 1 })
	signup := func(i int, addr string, header ...string) *httptest.ResponseRecorder {
		return app.do("POST", "/api/v1/users", fmt.Sprintf(`{"username":"v6u%d","email":"v6u%d@example.com","password":"user password"}`, i, i),
			append([]string{"Authorization", "", remoteAddr, addr}, header...)...)
	}
	if rec := signup(1, "[2001:db8:1:2::1]:1"); rec.Code != http.StatusCreated {
		t.Fatalf("first sign-up: %d %s", rec.Code, rec.Body)
	}
	if rec := signup(2, "[2001:db8:1:2:ffff::2]:1"); rec.Code != http.StatusTooManyRequests {
		t.Errorf("a second sign-up from the same /64: %d, want 429", rec.Code)
	}
	if rec := signup(3, "[2001:db8:1:3::1]:1"); rec.Code != http.StatusCreated {
		t.Errorf("a sign-up from another /64: %d %s", rec.Code, rec.Body)
	}
	// A key is the /64's own: the same /64 gets the answer again, another
	// /64 does not.
	app = newTestApp(t, func(cfg *Config) { cfg.AllowSignup, cfg.SignupsPerHour = true, 10 })
	key := []string{"Idempotency-Key", "v6-key"}
	if rec := signup(4, "[2001:db8:1:4::1]:1", key...); rec.Code != http.StatusCreated {
		t.Fatalf("keyed sign-up: %d %s", rec.Code, rec.Body)
	}
	if rec := signup(4, "[2001:db8:1:4::abcd]:1", key...); rec.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("the same key from the same /64: %d, not replayed", rec.Code)
	}
	if rec := signup(5, "[2001:db8:1:5::1]:1", key...); rec.Code != http.StatusCreated || rec.Header().Get("Idempotent-Replayed") != "" {
		t.Errorf("the same key from another /64: %d %s", rec.Code, rec.Body)
	}
}

// TestWeakAndDeceptiveValues: common passwords and bidi controls in names
// are refused; ZWJ stays.
func TestWeakAndDeceptiveValues(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	for _, password := range []string{"12345678", "Password1", "QWERTYUIOP"} {
		wantProblem(t, app.do("POST", "/api/v1/users", fmt.Sprintf(`{"username":"weak","email":"weak@example.com","password":%q}`, password)),
			http.StatusBadRequest, "password")
	}
	wantProblem(t, app.do("POST", "/api/v1/users", `{"username":"eve","email":"eve@example.com","password":"user password","full_name":"Eve\u202enimda"}`),
		http.StatusBadRequest, "full_name")
	if rec := app.do("POST", "/api/v1/users", `{"username":"zwj","email":"zwj@example.com","password":"user password","full_name":"\u0915\u094d\u200d\u0937"}`); rec.Code != http.StatusCreated {
		t.Errorf("a name with ZWJ: %d %s", rec.Code, rec.Body)
	}
}

// TestLongPathsAreTruncated: a 10,000-byte path is not echoed whole into
// the problem or the log.
func TestLongPathsAreTruncated(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	path := "/" + strings.Repeat("p", 10_000)
	p := wantProblem(t, app.do("GET", path, ""), http.StatusNotFound)
	if len(p.Detail) > maxLoggedPath+100 {
		t.Errorf("the 404 detail is %d bytes", len(p.Detail))
	}
	if strings.Contains(app.logs.String(), strings.Repeat("p", maxLoggedPath+1)) {
		t.Error("the log holds the whole path")
	}
}

// TestHashCostUpgradeAtSignIn: a hash of another cost is replaced at the
// next sign-in, and the password still works.
func TestHashCostUpgradeAtSignIn(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	u, _ := app.newUser("oldcost")
	old, err := newPasswordHasher(5, 1, 1, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	oldHash, _ := old.Hash(context.Background(), "user password")
	if _, err := app.db.Exec("UPDATE users SET password_hash = ? WHERE id = ?", oldHash, u.ID); err != nil {
		t.Fatal(err)
	}
	app.login("oldcost", "user password")
	var stored string
	app.db.QueryRow("SELECT password_hash FROM users WHERE id = ?", u.ID).Scan(&stored)
	if stored == oldHash || app.server().passwords.outdated(stored) {
		t.Errorf("the hash was not upgraded: %s", stored)
	}
	app.login("oldcost", "user password")
}

// TestWrongCurrentPasswordsAreLimited: guessing the current password
// through PUT or PATCH with a stolen token counts against the sign-in
// limits, and ends in the 429 with Retry-After that openapi.json lists.
func TestWrongCurrentPasswordsAreLimited(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	for _, method := range []string{"PATCH", "PUT"} {
		name := "guessed" + strings.ToLower(method)
		_, token := app.newUser(name)
		codes := map[int]int{}
		var last *httptest.ResponseRecorder
		for i := range loginFailuresPerPair + 1 {
			last = app.do(method, "/api/v1/users/me", fmt.Sprintf(`{"password":"a new password %d","current_password":"guess %d"}`, i, i),
				"Authorization", "Bearer "+token)
			codes[last.Code]++
		}
		if codes[http.StatusBadRequest] != loginFailuresPerPair || codes[http.StatusTooManyRequests] != 1 {
			t.Errorf("%s: statuses %v, want %d 400s then a 429", method, codes, loginFailuresPerPair)
		}
		if last.Header().Get("Retry-After") == "" {
			t.Errorf("%s: 429 without Retry-After", method)
		}
	}
}
