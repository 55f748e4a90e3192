package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// requestBudget is how long any request may take while the database
// misbehaves: the store's timeout plus room for a loaded machine.
const requestBudget = testTimeout + 2*time.Second

// outcome is what one request under fault got.
type outcome struct {
	status  int
	elapsed time.Duration
}

// hammer sends creates and reads from several goroutines until stop is
// closed, and returns what each got. Usernames carry prefix and a
// counter, so the test can find every create it attempted.
func hammer(app *testApp, prefix string, workers int, stop <-chan struct{}) []outcome {
	var mu sync.Mutex
	var all []outcome
	var wg sync.WaitGroup
	var n atomic.Int64
	for w := range workers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				var code int
				if w%2 == 0 {
					i := n.Add(1)
					code = app.do("POST", "/api/v1/users", fmt.Sprintf(`{"username":"%s%d","email":"%s%d@example.com","password":"rq7-tz4w"}`, prefix, i, prefix, i)).Code
				} else {
					code = app.do("GET", userPath(app.adminID), "").Code
				}
				mu.Lock()
				all = append(all, outcome{code, time.Since(start)})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return all
}

// checkOutcomes fails the test for a 500, an unexpected status or a
// request that outlived the budget.
func checkOutcomes(t *testing.T, outcomes []outcome, allowed ...int) (unavailable int) {
	t.Helper()
	for _, o := range outcomes {
		if o.elapsed > requestBudget {
			t.Errorf("a request took %v, past the %v budget", o.elapsed, requestBudget)
		}
		switch {
		case o.status == http.StatusServiceUnavailable:
			unavailable++
		case o.status == http.StatusGatewayTimeout:
			// A write whose COMMIT was cut with the database, which
			// then could not be asked: its outcome is unknown, and
			// says so (store_commit.go); checkNoHalfWrites still holds.
			unavailable++
		case !slices.Contains(allowed, o.status):
			t.Errorf("unexpected status %d", o.status)
		}
	}
	return unavailable
}

// checkNoHalfWrites fails unless every user row is whole and the user
// count matches the rows: a create that answered 503 happened completely
// or not at all.
func checkNoHalfWrites(t *testing.T, app *testApp) {
	t.Helper()
	var rows, counted, broken int64
	if err := app.db.QueryRow("SELECT COUNT(*) FROM users").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	app.db.QueryRow("SELECT COALESCE(SUM(n), 0) FROM user_counts").Scan(&counted)
	app.db.QueryRow("SELECT COUNT(*) FROM users WHERE password_hash NOT LIKE '$2a$%' OR email NOT LIKE CONCAT(username, '@example.com')").Scan(&broken)
	if rows != counted || broken != 0 {
		t.Errorf("after the fault: %d rows, count says %d, %d rows not whole", rows, counted, broken)
	}
}

// eventually retries check until it succeeds or d passes.
func eventually(t *testing.T, d time.Duration, what string, check func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !check() {
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within %v", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestDatabaseCutUnderLoad(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	app, proxy, _ := newProxiedApp(t)

	stop := make(chan struct{})
	done := make(chan []outcome)
	go func() { done <- hammer(app, "cut", 8, stop) }()
	time.Sleep(300 * time.Millisecond)
	proxy.setDown(true) // every open connection cut, new ones refused
	time.Sleep(700 * time.Millisecond)
	proxy.setDown(false)
	time.Sleep(300 * time.Millisecond)
	close(stop)
	outcomes := <-done
	if unavailable := checkOutcomes(t, outcomes, http.StatusOK, http.StatusCreated); unavailable == 0 {
		t.Error("no request saw the outage: the fault was not injected")
	}
	eventually(t, 5*time.Second, "recovery", func() bool {
		return app.do("GET", userPath(app.adminID), "").Code == http.StatusOK
	})
	recovered := hammer(app, "after", 4, closeAfter(500*time.Millisecond))
	if n := checkOutcomes(t, recovered, http.StatusOK, http.StatusCreated); n != 0 {
		t.Errorf("%d requests failed after the database came back", n)
	}
	checkNoHalfWrites(t, app)
}

func closeAfter(d time.Duration) chan struct{} {
	c := make(chan struct{})
	time.AfterFunc(d, func() { close(c) })
	return c
}

func TestSlowDatabaseFailsFastAndRecovers(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	app, proxy, db := newProxiedApp(t)

	proxy.setDelay(testTimeout + time.Second) // every packet arrives after the deadline
	outcomes := hammer(app, "slow", 6, closeAfter(time.Second))
	if checkOutcomes(t, outcomes, http.StatusOK, http.StatusCreated) == 0 {
		t.Error("no request saw the delay")
	}
	proxy.setDelay(0)
	eventually(t, requestBudget, "recovery", func() bool {
		return app.do("GET", userPath(app.adminID), "").Code == http.StatusOK
	})
	eventually(t, requestBudget, "the pool to drain", func() bool { return db.Stats().InUse == 0 })
	if stats := db.Stats(); stats.OpenConnections > testConfig().DBMaxOpenConns {
		t.Errorf("pool over its limit: %+v", stats)
	}
	checkNoHalfWrites(t, app)
}

// TestSigtermUnderLoad runs the real binary, keeps requests in flight,
// sends SIGTERM, and checks that every request accepted before the signal
// is answered, that new connections are refused, and that the process
// exits 0 within the shutdown timeout.
func TestSigtermUnderLoad(t *testing.T) {
	skipIfShort(t)
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	t.Parallel()
	_, serverCfg := testServer(t)
	db := newTestDatabase(t, "")
	var dbName string
	db.QueryRow("SELECT DATABASE()").Scan(&dbName)
	bin := filepath.Join(t.TempDir(), "usersvc")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	host, port := splitAddr(t, serverCfg.Addr)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"HTTP_ADDR=127.0.0.1:0", "MANAGEMENT_ADDR=127.0.0.1:0", "DB_HOST="+host, "DB_PORT="+port, "DB_USER="+serverCfg.User,
		"DB_PASSWORD="+serverCfg.Passwd, "DB_NAME="+dbName, "BCRYPT_COST=10", "BCRYPT_WORKERS=2",
		"ENV_FILE="+emptyEnvFile(t), "ADMIN_USERNAME=boss", "ADMIN_EMAIL=boss@example.com", "ADMIN_PASSWORD=passphrase ssob")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	logs := &syncBuffer{}
	copied := make(chan struct{}) // closed when the process's output ends
	go func() {
		io.Copy(logs, stdout)
		close(copied)
	}()
	addr := waitForLogField(t, logs, "listening", "addr")
	base := "http://" + addr
	waitForLogField(t, logs, "bootstrap admin created", "username")
	token := loginOver(t, base, "boss", "passphrase ssob")

	// Requests certainly in flight when the signal comes: each create
	// sends its headers and half its body, and the signal waits until the
	// service counts all of them in flight (the scrape is one more). The
	// rest of each body follows once the listener has closed.
	const slow = 8
	managementAddr := waitForLogField(t, logs, "listening", "management_addr")
	var wg sync.WaitGroup
	codes := make([]int, slow)
	rests := make([]chan struct{}, slow)
	for i := range slow {
		rests[i] = make(chan struct{})
		wg.Go(func() {
			body := fmt.Sprintf(`{"username":"late%d","email":"late%d@example.com","password":"rq7-tz4w"}`, i, i)
			codes[i] = postInTwoParts(addr, token, body, rests[i])
		})
	}
	eventually(t, 10*time.Second, "every create in flight", func() bool {
		return gaugeOver(t, managementAddr, "usersvc_http_requests_in_flight") == slow+1
	})
	signalled := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	eventually(t, 2*time.Second, "the listener to close", func() bool {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	for _, rest := range rests {
		close(rest)
	}
	wg.Wait()
	for i, code := range codes {
		if code != http.StatusCreated {
			t.Errorf("request %d in flight at SIGTERM: got %d, want 201", i, code)
		}
	}
	exited := make(chan error, 1)
	go func() {
		<-copied // Wait closes the pipe: read the last log lines first
		exited <- cmd.Wait()
	}()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit: %v, want status 0", err)
		}
		if took := time.Since(signalled); took > shutdownTimeout {
			t.Errorf("shutdown took %v", took)
		}
	case <-time.After(shutdownTimeout + 2*time.Second):
		t.Fatal("the process did not exit within the shutdown timeout")
	}
	if !strings.Contains(logs.String(), `"msg":"stopped"`) {
		t.Errorf("no clean stop in the log: %s", logs)
	}
}

func loginOver(t *testing.T, base, username, password string) string {
	t.Helper()
	resp, err := http.Post(base+"/api/v1/auth/token", "application/json",
		strings.NewReader(fmt.Sprintf(`{"username":%q,"password":%q}`, username, password)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tok tokenResponse
	if err := json.NewDecoder(resp.Body).Decode(&tok); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("login: %d %v", resp.StatusCode, err)
	}
	return tok.AccessToken
}

// postOver posts JSON with a token over a fresh connection and returns
// the status, or 0 when no answer came.
// postInTwoParts creates a user over a raw connection to addr: the
// headers and the first half of body at once, the rest when rest closes.
// It returns the status, or 0 when the exchange fails.
func postInTwoParts(addr, token, body string, rest <-chan struct{}) int {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return 0
	}
	defer conn.Close()
	half := len(body) / 2
	_, err = fmt.Fprintf(conn, "POST /api/v1/users HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", addr, token, len(body), body[:half])
	if err != nil {
		return 0
	}
	<-rest
	if _, err := io.WriteString(conn, body[half:]); err != nil {
		return 0
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// gaugeOver reads one unlabelled gauge from the /metrics of the
// management listener at addr (-1 when it cannot).
func gaugeOver(t *testing.T, addr, name string) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	text, err := io.ReadAll(resp.Body)
	if err != nil {
		return -1
	}
	_, samples := parseExposition(t, string(text))
	for _, s := range samples {
		if s.name == name && len(s.labels) == 0 {
			return int(s.value)
		}
	}
	return -1
}

func TestDatabaseDownAndBack(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	_, serverCfg := testServer(t)
	proxy := startFaultProxy(t, serverCfg.Addr)
	proxy.setDown(true)
	// A fresh database reached only through the proxy, schema not applied:
	// the service starts with the database down.
	db := newTestDatabase(t, proxy.addr())
	app := newTestAppOn(t, db)
	unknownToken, _ := newToken() // well-formed: checking it needs the database

	rec := app.do("GET", "/health", "")
	p := wantProblem(t, rec, http.StatusServiceUnavailable)
	if p.Database != "unreachable" {
		t.Errorf("health body: %s", rec.Body)
	}
	if rec.Header().Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	auth := []string{"Authorization", "Bearer " + unknownToken}
	wantProblem(t, app.do("POST", "/api/v1/users", `{"username":"down1","email":"down1@example.com","password":"rq7-tz4w"}`, auth...), http.StatusServiceUnavailable)
	wantProblem(t, app.do("GET", "/api/v1/users", "", auth...), http.StatusServiceUnavailable)
	wantProblem(t, app.do("GET", "/api/v1/users/1", "", auth...), http.StatusServiceUnavailable)
	wantProblem(t, app.do("POST", "/api/v1/auth/token", `{"username":"root_admin","password":"admin password"}`), http.StatusServiceUnavailable)

	proxy.setDown(false)
	app.bootstrapAdmin() // applies the schema on first use, then signs in
	first := app.createUser(`{"username":"first","email":"first@example.com","password":"rq7-tz4w"}`)
	if rec := app.do("GET", "/health", ""); rec.Code != http.StatusOK {
		t.Errorf("health after recovery: got %d", rec.Code)
	}

	proxy.setDown(true) // the database drops mid-run
	for _, path := range []string{"/api/v1/users", userPath(first.ID), "/health"} {
		wantProblem(t, app.do("GET", path, ""), http.StatusServiceUnavailable)
	}
	wantProblem(t, app.do("PATCH", userPath(first.ID), `{"full_name":"x"}`), http.StatusServiceUnavailable)
	wantProblem(t, app.do("DELETE", userPath(first.ID), ""), http.StatusServiceUnavailable)
	wantProblem(t, app.do("POST", "/api/v1/users", `{"username":"second","email":"second@example.com","password":"rq7-tz4w"}`), http.StatusServiceUnavailable)

	proxy.setDown(false)
	app.createUser(`{"username":"third","email":"third@example.com","password":"rq7-tz4w"}`)
	if rec := app.do("GET", userPath(first.ID), ""); rec.Code != http.StatusOK {
		t.Errorf("get after recovery: got %d %s", rec.Code, rec.Body)
	}
	if strings.Contains(app.logs.String(), `"status":500`) {
		t.Errorf("a request answered 500: %s", app.logs)
	}
}

func TestSlowDatabaseTimesOut(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	app, proxy, db := newProxiedApp(t)

	proxy.setBlackhole(true) // packets vanish: no answer, no reset
	start := time.Now()
	wantProblem(t, app.do("GET", userPath(app.adminID), ""), http.StatusServiceUnavailable)
	if elapsed := time.Since(start); elapsed > testTimeout+2*time.Second {
		t.Errorf("a black-holed database held the request %v, over the %v timeout", elapsed, testTimeout)
	}
	proxy.setBlackhole(false)
	if rec := app.do("GET", userPath(app.adminID), ""); rec.Code != http.StatusOK {
		t.Errorf("after the database answered again: got %d %s", rec.Code, rec.Body)
	}
	// The event sequencer may hold a connection between requests, and a
	// connection whose transaction was cancelled is released by
	// database/sql's own rollback goroutine, possibly a moment after its
	// user returned: so wait for the pool to drain, as the slow-database
	// test does. A leaked connection never would.
	app.stopWorkers()
	eventually(t, requestBudget, "the pool to drain", func() bool { return db.Stats().InUse == 0 })
}

// skipIfShort skips a fault test under -short: each takes seconds of
// deliberate outages and slow answers.
func skipIfShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("a slow fault test; run without -short")
	}
}
