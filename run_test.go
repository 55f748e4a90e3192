package main

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

func TestRunServesAndShutsDown(t *testing.T) {
	_, serverCfg := testServer(t)
	db := newTestDatabase(t, "")
	var dbName string
	db.QueryRow("SELECT DATABASE()").Scan(&dbName)
	host, port := splitAddr(t, serverCfg.Addr)
	env := map[string]string{
		"HTTP_ADDR": "127.0.0.1:0", "MANAGEMENT_ADDR": "127.0.0.1:0", "DB_HOST": host, "DB_PORT": port, "DB_USER": serverCfg.User,
		"DB_PASSWORD": serverCfg.Passwd, "DB_NAME": dbName, "BCRYPT_COST": "4", "BCRYPT_COST_UNBOUNDED": "true",
		"ENV_FILE":       emptyEnvFile(t),
		"ADMIN_USERNAME": "boot", "ADMIN_EMAIL": "boot@example.com", "ADMIN_PASSWORD": "passphrase toob",
	}
	getenv := mapEnv(env)
	ctx, cancel := context.WithCancel(context.Background())
	stdout := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"usersvc"}, getenv, stdout) }()

	addr := waitForLogField(t, stdout, "listening", "addr")
	managementAddr := waitForLogField(t, stdout, "listening", "management_addr")
	env["HTTP_ADDR"] = addr
	var out syncBuffer
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := run(context.Background(), []string{"usersvc", "healthcheck"}, getenv, &out)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("healthcheck never passed: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitForLogField(t, stdout, "bootstrap admin created", "username")
	for _, probe := range []string{"/health/ready", "/metrics"} {
		resp, err := http.Get("http://" + managementAddr + probe)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s on the management listener: %v %v", probe, resp, err)
		}
		resp.Body.Close()
	}
	resp, err := http.Post("http://"+addr+"/api/v1/auth/token", "application/json",
		strings.NewReader(`{"username":"boot","password":"passphrase toob"}`))
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("login through the real server: %v %v", resp, err)
	}
	var token tokenResponse
	json.NewDecoder(resp.Body).Decode(&token)
	resp.Body.Close()
	req, _ := http.NewRequest("POST", "http://"+addr+"/api/v1/users",
		strings.NewReader(`{"username":"runner","email":"runner@example.com","password":"rq7-tz4w"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token.AccessToken)
	resp, err = http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("create through the real server: %v %v", resp, err)
	}
	resp.Body.Close()
	if strings.Contains(stdout.String(), "passphrase toob") {
		t.Error("the log holds the bootstrap password")
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run after shutdown: %v", err)
		}
	case <-time.After(shutdownTimeout + 2*time.Second):
		t.Fatal("run did not return after the context ended")
	}
	if err := run(context.Background(), []string{"usersvc", "healthcheck"}, getenv, &out); err == nil {
		t.Error("healthcheck passed with the server stopped")
	}
	if err := run(context.Background(), []string{"usersvc", "bogus"}, getenv, &out); err == nil {
		t.Error("an unknown command did not fail")
	}
}

// mapEnv is a lookupEnv reading env, for run.
func mapEnv(env map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	}
}

// emptyEnvFile is an ENV_FILE that sets nothing.
func emptyEnvFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "empty.env")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRunHelp(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"help", "-h", "--help"} {
		var out bytes.Buffer
		// No configuration is read: even a broken one does not matter.
		env := mapEnv(map[string]string{"ENV_FILE": "/nonexistent/.env", "DB_PORT": "bad"})
		if err := run(context.Background(), []string{"usersvc", arg}, env, &out); err != nil {
			t.Errorf("%s: %v", arg, err)
		}
		for _, command := range []string{"serve", "migrate", "healthcheck", "version", "help"} {
			if !strings.Contains(out.String(), "usersvc "+command) && !strings.Contains(out.String(), "usersvc ["+command+"]") {
				t.Errorf("%s: the usage does not list %s:\n%s", arg, command, out.String())
			}
		}
	}
}

// TestRunPortInUse: a listen address already taken ends the run with an
// error naming it, and no warning blames the database (before, the
// start-up work, cancelled with serving, logged "database not ready ...
// context canceled").
func TestRunPortInUse(t *testing.T) {
	t.Parallel()
	_, serverCfg := testServer(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	proxy := startFaultProxy(t, serverCfg.Addr)
	proxy.setBlackhole(true) // start-up work is still waiting on the database when serving fails
	host, port := splitAddr(t, proxy.addr())
	env := mapEnv(map[string]string{"HTTP_ADDR": taken.Addr().String(), "MANAGEMENT_ADDR": "off", "DB_HOST": host, "DB_PORT": port,
		"DB_USER": serverCfg.User, "DB_PASSWORD": serverCfg.Passwd, "ENV_FILE": emptyEnvFile(t)})
	stdout := &syncBuffer{}
	err = run(context.Background(), []string{"usersvc"}, env, stdout)
	if err == nil || !strings.Contains(err.Error(), taken.Addr().String()) {
		t.Errorf("run with its port taken: %v", err)
	}
	if strings.Contains(stdout.String(), "database not ready") {
		t.Errorf("the database was blamed for a port in use:\n%s", stdout)
	}
}

// TestRunVersion: version and --version print the version, and need no
// configuration. Before, --version was an unknown command.
func TestRunVersion(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"version", "--version"} {
		var out bytes.Buffer
		env := mapEnv(map[string]string{"ENV_FILE": "/nonexistent/.env", "DB_PORT": "bad"})
		if err := run(context.Background(), []string{"usersvc", arg}, env, &out); err != nil || !strings.HasPrefix(out.String(), "usersvc "+version+" go") {
			t.Errorf("%s: %q, %v", arg, out.String(), err)
		}
	}
}

func TestRunNamedEnvFileMustExist(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	missing := filepath.Join(t.TempDir(), "prod.env")
	err := run(context.Background(), []string{"usersvc", "healthcheck"}, mapEnv(map[string]string{"ENV_FILE": missing}), &out)
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("a missing ENV_FILE: got %v, want an error naming it", err)
	}
}

// The rights of the two accounts of docs/deploy.md's snippet.
const (
	serviceGrants = "SELECT, INSERT, UPDATE, DELETE"
	migrateGrants = "SELECT, INSERT, UPDATE, DELETE, CREATE, ALTER, INDEX, REFERENCES"
)

// newDBUser creates an account on the test server with grants on
// database db only, and drops it when the test ends. It returns the
// account's name and password.
func newDBUser(t *testing.T, db, grants string) (string, string) {
	t.Helper()
	admin, _ := testServer(t)
	user, password := "usersvc_t_"+randomHex(4), "pw-"+randomHex(8)
	// Registered first: a test that fails at the GRANT leaves no user.
	t.Cleanup(func() {
		if _, err := admin.Exec("DROP USER IF EXISTS '" + user + "'@'%'"); err != nil {
			t.Errorf("drop user %s: %v", user, err)
		}
	})
	for _, stmt := range []string{
		"CREATE USER '" + user + "'@'%' IDENTIFIED BY '" + password + "'",
		"GRANT " + grants + " ON " + db + ".* TO '" + user + "'@'%'",
	} {
		if _, err := admin.Exec(stmt); err != nil {
			t.Fatalf("%s: %v", stmt, err)
		}
	}
	return user, password
}

// TestLeastPrivilegeServesAfterMigrate: an account with SELECT, INSERT,
// UPDATE and DELETE only cannot apply the schema (a 503 "missing grant",
// never a 500), serves with SCHEMA_APPLY=false once migrate has run as an
// account with the rights docs/deploy.md grants it, and answers "schema
// missing" until then.
func TestLeastPrivilegeServesAfterMigrate(t *testing.T) {
	_, serverCfg := testServer(t)
	rootDB := newTestDatabase(t, "")
	var dbName string
	if err := rootDB.QueryRow("SELECT DATABASE()").Scan(&dbName); err != nil {
		t.Fatal(err)
	}
	user, password := newDBUser(t, dbName, serviceGrants)
	dml := serverCfg.Clone()
	dml.User, dml.Passwd, dml.DBName = user, password, dbName
	dml.Logger = &mysql.NopLogger{}
	dmlDB, err := openDB(dml, testConfig().dbSettings(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dmlDB.Close() })
	login := `{"username":"nobody_yet","password":"some password"}`

	applying := newTestAppOn(t, dmlDB)
	wantHealthReason(t, applying, reasonMissingGrant)
	wantProblem(t, applying.do("POST", "/api/v1/auth/token", login), http.StatusServiceUnavailable)

	checking := newTestAppOn(t, dmlDB, func(c *Config) { c.SchemaApply = false })
	wantHealthReason(t, checking, reasonSchemaMissing)
	wantProblem(t, checking.do("POST", "/api/v1/auth/token", login), http.StatusServiceUnavailable)
	if n := strings.Count(checking.logs.String(), "database setup problem: schema missing"); n != 1 {
		t.Errorf("schema missing logged %d times, want once:\n%s", n, checking.logs)
	}

	host, port := splitAddr(t, serverCfg.Addr)
	env := map[string]string{
		"ENV_FILE": emptyEnvFile(t), "HTTP_ADDR": "127.0.0.1:0", "DB_HOST": host, "DB_PORT": port, "DB_NAME": dbName,
		"DB_USER": user, "DB_PASSWORD": password, "SCHEMA_APPLY": "false", "MANAGEMENT_ADDR": "off",
	}
	var out bytes.Buffer
	err = run(context.Background(), []string{"usersvc", "migrate"}, mapEnv(env), &out)
	if err == nil || !strings.Contains(err.Error(), "missing grant") {
		t.Errorf("migrate as the DML account: got %v, want a missing grant", err)
	}
	migrateEnv := maps.Clone(env)
	migrateEnv["DB_USER"], migrateEnv["DB_PASSWORD"] = newDBUser(t, dbName, migrateGrants)
	if err := run(context.Background(), []string{"usersvc", "migrate"}, mapEnv(migrateEnv), &out); err != nil {
		t.Fatalf("migrate as the migrate account: %v", err)
	}
	if !strings.Contains(out.String(), "schema in place") {
		t.Errorf("migrate said %q", out.String())
	}

	// The same app heals: the check is not remembered until it passes.
	if rec := checking.manage("GET", "/health/ready"); rec.Code != http.StatusOK {
		t.Fatalf("/health/ready after migrate: %d %s", rec.Code, rec.Body)
	}
	if !strings.Contains(checking.logs.String(), "database setup problem resolved") {
		t.Errorf("the recovery is not logged:\n%s", checking.logs)
	}

	// The whole program serves as the DML account, and says that no
	// admin exists, and how to make one.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"usersvc"}, mapEnv(env), stdout) }()
	waitForLogField(t, stdout, "listening", "addr")
	waitForLogField(t, stdout, "database schema in place", "level")
	waitForLogField(t, stdout, noAdminWarning, "level")
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve as the DML account: %v", err)
	}
	checking.bootstrapAdmin() // a write and a login as the DML account
}
