package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"golang.org/x/crypto/bcrypt"
)

// defaultTestDSNs are the server-level DSNs the tests try, in order, when
// TEST_DB_DSN is unset: the local MariaDB or MySQL as root without a
// password over TCP, then over the socket (a stock MariaDB lets root in
// only there, as the operating system's root).
var defaultTestDSNs = []string{"root@tcp(127.0.0.1:3306)/", "root@unix(/run/mysqld/mysqld.sock)/"}

// testTimeout bounds each database call of the service in tests.
const testTimeout = 3 * time.Second

// noDatabaseOptOut is the variable that lets the database tests be
// skipped, when set to 1, where no server can be reached (as -short
// does); without it such a run fails.
const noDatabaseOptOut = "USERSVC_TEST_NO_DB"

var (
	adminOnce sync.Once
	adminDB   *sql.DB
	adminCfg  *mysql.Config
	adminErr  error

	// skippedForNoDatabase counts the tests skipped for want of a server,
	// reported at the end of the run (TestMain).
	skippedForNoDatabase atomic.Int64
)

// TestMain runs the tests, says how many were skipped for want of a
// database server (a run never looks whole when it was not), and stops
// the private server the run started, if any. A run that cannot remove
// it fails.
func TestMain(m *testing.M) {
	code := m.Run()
	if n := skippedForNoDatabase.Load(); n > 0 {
		fmt.Fprintf(os.Stderr, "usersvc: %d database tests SKIPPED (%s=1 or -short): %v\n", n, noDatabaseOptOut, adminErr)
	}
	if adminDB != nil {
		adminDB.Close()
	}
	if err := stopRunServer(); err != nil {
		fmt.Fprintf(os.Stderr, "usersvc: %v\n", err)
		code = max(code, 1)
	}
	os.Exit(code)
}

// testServer connects once to the server the database tests use, for
// creating and dropping their databases (openTestServer). When there is
// none, the test fails, saying what the server answered and how to fix
// it, unless the run opted out of the database tests (-short, or
// USERSVC_TEST_NO_DB=1): then it is skipped, and counted.
func testServer(t testing.TB) (*sql.DB, *mysql.Config) {
	t.Helper()
	adminOnce.Do(func() { adminDB, adminCfg, adminErr = openTestServer() })
	if adminErr != nil {
		msg := "no server the database tests can use: " + adminErr.Error() + "\n" + testServerFix
		if optedOutOfDatabase() {
			skippedForNoDatabase.Add(1)
			t.Skip(msg)
		}
		t.Fatal(msg)
	}
	return adminDB, adminCfg
}

// optedOutOfDatabase reports whether the run skips the database tests
// when no server answers: on -short or USERSVC_TEST_NO_DB=1, never under
// CI=true.
func optedOutOfDatabase() bool {
	return os.Getenv("CI") != "true" && (testing.Short() || os.Getenv(noDatabaseOptOut) == "1")
}

// openTestServer connects to the server named by TEST_DB_DSN, or to the
// first of defaultTestDSNs that answers. When none does, it starts a
// private MariaDB server for the run (startRunServer), unless the run
// opted out of the database tests or runs under CI=true, which tests the
// server it names.
func openTestServer() (*sql.DB, *mysql.Config, error) {
	dsns := defaultTestDSNs
	if dsn := os.Getenv("TEST_DB_DSN"); dsn != "" {
		dsns = []string{dsn}
	}
	var answers []string
	for _, dsn := range dsns {
		db, cfg, err := connectTestServer(dsn)
		if err == nil {
			return db, cfg, nil
		}
		answers = append(answers, err.Error())
	}
	answer := errors.New(strings.Join(answers, "; "))
	if optedOutOfDatabase() || os.Getenv("CI") == "true" {
		return nil, nil, answer
	}
	return startRunServer(answer)
}

// connectTestServer opens and pings a pool on the server-level dsn.
func connectTestServer(dsn string) (*sql.DB, *mysql.Config, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, nil, fmt.Errorf("TEST_DB_DSN %q: %w", dsn, err)
	}
	return connectTestConfig(cfg)
}

// connectTestConfig opens and pings a pool on the server of cfg, with no
// database selected.
func connectTestConfig(cfg *mysql.Config) (*sql.DB, *mysql.Config, error) {
	cfg.DBName = ""
	applySessionSettings(cfg, testTimeout)
	db, err := openDB(cfg, testConfig().dbSettings(), nil)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("%s (%s): %w", redactDSN(cfg), reasonOf(err), err)
	}
	return db, cfg, nil
}

// reasonOf names what a server's refusal means: access denied, or no
// server at all.
func reasonOf(err error) string {
	if myErr, ok := errors.AsType[*mysql.MySQLError](err); ok {
		if reason, ok := setupErrors[myErr.Number]; ok {
			return "the server answered: " + reason
		}
		return fmt.Sprintf("the server answered with error %d", myErr.Number)
	}
	return "unreachable"
}

// testServerFix says what to do about a test server that did not answer.
const testServerFix = "Fix: set TEST_DB_DSN to a server-level DSN (no database name) of an account with the rights docs/testing.md lists, " +
	"such as TEST_DB_DSN='usersvc_test:password@tcp(127.0.0.1:3306)/'; or start MariaDB or MySQL; " +
	"or install MariaDB's server (mariadbd, mariadb-install-db), and the tests start a private one for the run (not under CI=true); " +
	"or skip the database tests on purpose with -short or " + noDatabaseOptOut + "=1."

// redactDSN is cfg as a DSN without its password, for messages.
func redactDSN(cfg *mysql.Config) string {
	c := cfg.Clone()
	if c.Passwd != "" {
		c.Passwd = "xxx"
	}
	return c.Net + "(" + c.Addr + ") as " + c.User
}

// skipUnlessCI skips the test for want of what msg names, or fails it
// under CI=true, where everything the tests need must be there.
func skipUnlessCI(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// testConfig is the service configuration the tests run with.
// It starts from the defaults, so limits the tests do not name are the
// ones a deployment gets.
func testConfig() Config {
	cfg, err := loadConfig(func(string) string { return "" })
	if err != nil {
		panic(err) // the defaults are valid: TestLoadConfigDefaults
	}
	cfg.DBMaxOpenConns, cfg.DBMaxIdleConns = 10, 10
	cfg.DBConnMaxLifetime = time.Minute
	cfg.DBTimeout = testTimeout
	cfg.BcryptCost = bcrypt.MinCost
	cfg.BcryptWorkers = 4
	cfg.ManagementAddr = ""
	return cfg
}

// newTestDatabase creates an empty database of its own for the test, drops
// it when the test ends, and returns a pool on it reached through addr
// (the server's own address when addr is "").
func newTestDatabase(t testing.TB, addr string) *sql.DB {
	t.Helper()
	admin, serverCfg := testServer(t)
	name := "usersvc_test_" + randomHex(8)
	ctx := context.Background()
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE "+name+" CHARACTER SET utf8mb4"); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	mc := serverCfg.Clone()
	mc.DBName = name
	mc.Logger = &mysql.NopLogger{} // the fault tests break connections on purpose
	if addr != "" {
		mc.Net, mc.Addr = "tcp", addr
	}
	db, err := openDB(mc, testConfig().dbSettings(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// newTestDB returns a fresh database with the schema applied.
func newTestDB(t testing.TB) *sql.DB {
	t.Helper()
	db := newTestDatabase(t, "")
	if err := NewStore(db, testTimeout).EnsureSchema(context.Background()); err != nil {
		t.Fatalf("apply schema: %v", err)
	}
	return db
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// testApp is the real HTTP handler on a test database, with its log kept
// for inspection and an admin's token sent with every request by default.
type testApp struct {
	t          testing.TB
	srv        *server
	handler    http.Handler // the public API
	management http.Handler // probes and metrics
	db         *sql.DB
	store      *Store
	passwords  *passwordHasher
	logs       *syncBuffer

	adminID    int64
	adminToken string

	// stopWorkers stops the event sequencer and pruner, as serve does
	// when it ends, and waits for them.
	stopWorkers func()

	// noContract skips checking responses against openapi.json, for
	// handlers that are not the service's.
	noContract bool
}

// Credentials of the admin every testApp starts with.
const (
	testAdminName     = "root_admin"
	testAdminPassword = "admin password"
)

// newTestApp builds the service exactly as main does, on a fresh database
// holding one admin, whose token app.do sends. Options adjust the config.
func newTestApp(t testing.TB, options ...func(*Config)) *testApp {
	t.Helper()
	app := newTestAppOn(t, newTestDB(t), options...)
	app.bootstrapAdmin()
	return app
}

// newTestAppOn builds the service on db, which may be unreachable, with
// no admin yet.
func newTestAppOn(t testing.TB, db *sql.DB, options ...func(*Config)) *testApp {
	t.Helper()
	return newTestAppWith(t, db, nil, options...)
}

// newTestAppWith is newTestAppOn with the start-up state the handlers
// see (nil: start-up done).
func newTestAppWith(t testing.TB, db *sql.DB, st *startup, options ...func(*Config)) *testApp {
	t.Helper()
	cfg := testConfig()
	for _, option := range options {
		option(&cfg)
	}
	passwords, err := newPasswordHasher(cfg.BcryptCost, cfg.BcryptWorkers, bcryptQueuePerWorker*cfg.BcryptWorkers, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(passwords.Close)
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	store := NewStore(db, testTimeout)
	store.applySchema = cfg.SchemaApply
	stopWorkers := sync.OnceFunc(startEventWorkers(context.Background(), store, cfg.EventsRetention, logger))
	t.Cleanup(stopWorkers)
	s := newServer(logger, store, passwords, cfg, st)
	return &testApp{t: t, srv: s, handler: s.public, management: s.management, db: db, store: store, passwords: passwords, logs: logs,
		stopWorkers: stopWorkers}
}

// bootstrapAdmin creates the test admin the way start-up does, and signs in.
func (a *testApp) bootstrapAdmin() {
	a.t.Helper()
	cfg := testConfig()
	cfg.AdminUsername, cfg.AdminEmail, cfg.AdminPassword = testAdminName, "root_admin@example.com", testAdminPassword
	if err := bootstrapAdmin(context.Background(), a.store, a.passwords, cfg, slog.New(slog.NewJSONHandler(a.logs, nil))); err != nil {
		a.t.Fatalf("bootstrap admin: %v", err)
	}
	a.adminToken = a.login(testAdminName, testAdminPassword)
	if err := a.db.QueryRow("SELECT id FROM users WHERE username = ?", testAdminName).Scan(&a.adminID); err != nil {
		a.t.Fatal(err)
	}
}

// login signs in and returns the token, failing the test on anything but 200.
func (a *testApp) login(username, password string) string {
	a.t.Helper()
	body, _ := json.Marshal(map[string]string{"username": username, "password": password})
	rec := a.do("POST", "/api/v1/auth/token", string(body), "Authorization", "")
	if rec.Code != http.StatusOK {
		a.t.Fatalf("login %s: got %d %s", username, rec.Code, rec.Body)
	}
	return decodeJSON[tokenResponse](a.t, rec).AccessToken
}

// newUser creates an ordinary user through the API and signs them in.
// userBodyWith is user id as GET answers it, with changes made: the
// body a typed client PUTs back (openapi.json's User).
func (a *testApp) userBodyWith(id int64, changes map[string]any) string {
	a.t.Helper()
	rec := a.do("GET", userPath(id), "")
	var user map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &user); rec.Code != http.StatusOK || err != nil {
		a.t.Fatalf("GET %s: %d %s", userPath(id), rec.Code, rec.Body)
	}
	maps.Copy(user, changes)
	body, err := json.Marshal(user)
	if err != nil {
		a.t.Fatalf("user body: %v", err)
	}
	return string(body)
}

func (a *testApp) newUser(username string) (userJSON, string) {
	a.t.Helper()
	u := a.createUser(fmt.Sprintf(`{"username":%q,"email":"%s@example.com","password":"user password"}`, username, strings.ToLower(username)))
	return u, a.login(username, "user password")
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// do sends a request through the app, as the admin. A non-empty body is
// sent as application/json. headers (name, value pairs) override either:
// "Authorization", "" sends the request anonymously.
func (a *testApp) do(method, path, body string, headers ...string) *httptest.ResponseRecorder {
	a.t.Helper()
	return a.serve(a.handler, publicListener, method, path, body, headers...)
}

// server is the service behind the handlers, for tests that look inside.
func (a *testApp) server() *server { return a.srv }

// userID is the id of the user with the given username.
func (a *testApp) userID(username string) int64 {
	a.t.Helper()
	var id int64
	if err := a.db.QueryRow("SELECT id FROM users WHERE username = ?", username).Scan(&id); err != nil {
		a.t.Fatal(err)
	}
	return id
}

// manage is do on the management listener's handler.
func (a *testApp) manage(method, path string, headers ...string) *httptest.ResponseRecorder {
	a.t.Helper()
	return a.serve(a.management, managementListener, method, path, "", headers...)
}

// remoteAddr is a pseudo-header for do: the request's peer address.
const remoteAddr = "Remote-Addr"

// serve sends a request to h, the handler of listener: with a body as
// JSON, with the admin's token unless headers replace it, and checks the
// answer against openapi.json.
func (a *testApp) serve(h http.Handler, listener, method, path, body string, headers ...string) *httptest.ResponseRecorder {
	a.t.Helper()
	var reader io.Reader
	if body != "" {
		reader = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, reader)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if a.adminToken != "" {
		req.Header.Set("Authorization", "Bearer "+a.adminToken)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i] == remoteAddr {
			req.RemoteAddr = headers[i+1]
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	return a.exchange(h, listener, req)
}

// exchange serves req with h, the handler of listener, and checks the
// answer against openapi.json unless the app is not the service.
func (a *testApp) exchange(h http.Handler, listener string, req *http.Request) *httptest.ResponseRecorder {
	a.t.Helper()
	if !a.noContract {
		keepRequestBody(req)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if !a.noContract {
		recordTraffic(a.t, listener, req, rec)
		checkContract(a.t, listener, req, rec)
	}
	return rec
}

// userJSON is a user as the API returns it.
type userJSON struct {
	ID        int64   `json:"id"`
	Username  string  `json:"username"`
	Email     string  `json:"email"`
	FullName  *string `json:"full_name"`
	Role      string  `json:"role"`
	IsActive  bool    `json:"is_active"`
	CreatedAt string  `json:"created_at"`
	UpdatedAt string  `json:"updated_at"`
}

// listJSON is a page of the list as the API returns it.
type listJSON struct {
	Items           []userJSON `json:"items"`
	Page            *int64     `json:"page"`
	PerPage         int64      `json:"per_page"`
	Total           int64      `json:"total"`
	TotalPages      int64      `json:"total_pages"`
	TotalIsEstimate bool       `json:"total_is_estimate"`
	NextCursor      *string    `json:"next_cursor"`
}

// problemJSON is a problem body as the API returns it.
type problemJSON struct {
	Type   string       `json:"type"`
	Title  string       `json:"title"`
	Status int          `json:"status"`
	Detail string       `json:"detail"`
	Errors []fieldError `json:"errors"`
	// Database is the extension member of /health's 503.
	Database string `json:"database"`
}

// createUser creates a user through the API and fails the test unless it
// answers 201.
func (a *testApp) createUser(body string) userJSON {
	a.t.Helper()
	rec := a.do("POST", "/api/v1/users", body)
	if rec.Code != http.StatusCreated {
		a.t.Fatalf("create user: got %d %s, want 201", rec.Code, rec.Body)
	}
	return decodeJSON[userJSON](a.t, rec)
}

// decodeJSON decodes a response body strictly into T.
func decodeJSON[T any](t testing.TB, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %T from %q: %v", v, rec.Body, err)
	}
	return v
}

// wantProblem checks that rec is a problem body with the given status
// and, when fields are given, exactly those fields in its errors.
func wantProblem(t testing.TB, rec *httptest.ResponseRecorder, status int, fields ...string) problemJSON {
	t.Helper()
	if rec.Code != status {
		t.Fatalf("status: got %d, want %d; body %s", rec.Code, status, rec.Body)
	}
	if got := rec.Header().Get("Content-Type"); got != "application/problem+json" {
		t.Errorf("Content-Type: got %q, want application/problem+json", got)
	}
	p := decodeJSON[problemJSON](t, rec)
	if p.Status != status || p.Title != http.StatusText(status) || p.Type == "" || p.Detail == "" {
		t.Errorf("problem body %+v: want status %d, its title, a type and a detail", p, status)
	}
	if len(fields) > 0 {
		var got []string
		for _, e := range p.Errors {
			got = append(got, e.Field)
			if e.Message == "" {
				t.Errorf("error for %s has no message", e.Field)
			}
		}
		slices.Sort(got)
		want := slices.Sorted(slices.Values(fields))
		if !slices.Equal(got, want) {
			t.Errorf("error fields: got %v, want %v (body %s)", got, fields, rec.Body)
		}
	}
	return p
}

// tally counts how many times each status occurs.
func tally(statuses []int) map[int]int {
	counts := map[int]int{}
	for _, s := range statuses {
		counts[s]++
	}
	return counts
}

func ptr[T any](v T) *T { return &v }

func equalPtr[T comparable](a, b *T) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}
