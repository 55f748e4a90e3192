package main

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// plaintextWarning is the message of the log line plaintextWatch writes.
const plaintextWarning = "database connection without TLS"

// TestPlaintextFallbackWarnedAndCounted: with DB_TLS=preferred against a
// server without TLS (the test server has none), every connection the
// pool opens is counted, and the first is warned of in the log; more
// within plaintextWarnEvery are not. DB_TLS=false is not watched: plain
// is what the operator asked for.
func TestPlaintextFallbackWarnedAndCounted(t *testing.T) {
	t.Parallel()
	_, serverCfg := testServer(t)
	if cipher := sslCipher(t, newTestDatabase(t, "")); cipher != "" {
		t.Skipf("the test server speaks TLS (%s): nothing falls back", cipher)
	}
	for _, mode := range []string{dbTLSPreferred, dbTLSOff} {
		cfg := testConfig()
		host, port := splitAddr(t, serverCfg.Addr)
		cfg.DBHost, cfg.DBUser, cfg.DBPassword, cfg.DBName, cfg.DBTLS = host, serverCfg.User, serverCfg.Passwd, "", mode
		cfg.DBPort, _ = strconv.Atoi(port)
		mc, err := mysqlConfig(cfg.dbSettings())
		if err != nil {
			t.Fatal(err)
		}
		logs := &syncBuffer{}
		watch := newPlaintextWatch(slog.New(slog.NewJSONHandler(logs, nil)))
		db, err := openDB(mc, cfg.dbSettings(), watch)
		if err != nil {
			t.Fatal(err)
		}
		conns := holdConnections(t, db, 3)
		for _, conn := range conns {
			if cipher := connCipher(t, conn); cipher != "" {
				t.Errorf("%s: a connection with cipher %q", mode, cipher)
			}
			conn.Close()
		}
		db.Close()
		wantCount, wantWarnings := int64(3), 1
		if mode == dbTLSOff {
			wantCount, wantWarnings = 0, 0
		}
		if got := watch.Count(); got != wantCount {
			t.Errorf("DB_TLS=%s: %d plaintext connections counted, want %d", mode, got, wantCount)
		}
		if got := strings.Count(logs.String(), plaintextWarning); got != wantWarnings {
			t.Errorf("DB_TLS=%s: %d warnings, want %d:\n%s", mode, got, wantWarnings, logs)
		}
		if wantWarnings > 0 && (!strings.Contains(logs.String(), `"level":"WARN"`) || !strings.Contains(logs.String(), `"plaintext_connections":1`)) {
			t.Errorf("the warning: %s", logs)
		}
	}
}

// holdConnections opens n connections of db at once (so the pool cannot
// hand one out twice) and returns them.
func holdConnections(t *testing.T, db *sql.DB, n int) []*sql.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conns := make([]*sql.Conn, n)
	for i := range conns {
		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns[i] = conn
	}
	return conns
}

// connCipher is the session's Ssl_cipher: empty without TLS.
func connCipher(t *testing.T, conn *sql.Conn) string {
	t.Helper()
	var name, cipher string
	if err := conn.QueryRowContext(context.Background(), "SHOW SESSION STATUS LIKE 'Ssl_cipher'").Scan(&name, &cipher); err != nil {
		t.Fatal(err)
	}
	return cipher
}

// TestPlaintextWarningAtMostOncePerInterval: the warning repeats only
// after plaintextWarnEvery, with the count so far; the counter counts
// every connection.
func TestPlaintextWarningAtMostOncePerInterval(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	watch := newPlaintextWatch(slog.New(slog.NewJSONHandler(logs, nil)))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	watch.now = func() time.Time { return now }
	for _, step := range []time.Duration{0, time.Second, 30 * time.Second, 28 * time.Second, 2 * time.Second, 0} {
		now = now.Add(step)
		watch.opened()
	}
	// Warned at 0 s (1st) and 61 s (5th).
	if got := strings.Count(logs.String(), plaintextWarning); got != 2 {
		t.Errorf("%d warnings, want 2:\n%s", got, logs)
	}
	if !strings.Contains(logs.String(), `"plaintext_connections":5`) || watch.Count() != 6 {
		t.Errorf("count %d; log:\n%s", watch.Count(), logs)
	}
	var none *plaintextWatch
	if none.Count() != 0 {
		t.Error("a nil watch counts")
	}
}

// TestRunWarnsOfPlaintextDatabase: the service started with
// DB_TLS=preferred against a server without TLS says so in its log, once,
// and in its metrics.
func TestRunWarnsOfPlaintextDatabase(t *testing.T) {
	_, serverCfg := testServer(t)
	db := newTestDatabase(t, "")
	if cipher := sslCipher(t, db); cipher != "" {
		t.Skipf("the test server speaks TLS (%s): nothing falls back", cipher)
	}
	var dbName string
	db.QueryRow("SELECT DATABASE()").Scan(&dbName)
	host, port := splitAddr(t, serverCfg.Addr)
	env := map[string]string{
		"HTTP_ADDR": "127.0.0.1:0", "MANAGEMENT_ADDR": "127.0.0.1:0", "DB_HOST": host, "DB_PORT": port, "DB_USER": serverCfg.User,
		"DB_PASSWORD": serverCfg.Passwd, "DB_NAME": dbName, "DB_TLS": dbTLSPreferred, "ENV_FILE": emptyEnvFile(t),
	}
	ctx, cancel := context.WithCancel(context.Background())
	stdout := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"usersvc"}, mapEnv(env), stdout) }()
	defer func() {
		cancel()
		<-done
	}()
	managementAddr := waitForLogField(t, stdout, "listening", "management_addr")
	waitForLogField(t, stdout, "database schema in place", "msg")
	resp, err := http.Get("http://" + managementAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`(?m)^usersvc_db_plaintext_connections_total (\d+)$`).FindSubmatch(body)
	if m == nil || string(m[1]) == "0" {
		t.Errorf("usersvc_db_plaintext_connections_total: %q", m)
	}
	if got := strings.Count(stdout.String(), plaintextWarning); got != 1 {
		t.Errorf("%d warnings in the log, want 1:\n%s", got, stdout)
	}
}
