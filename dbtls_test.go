package main

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
)

// newPrivateServerApp builds the service exactly as serve does (DB_*
// settings through mysqlConfig and openDB) against a private server, with
// options adjusting the configuration. The database "usersvc" exists on
// the server; nothing is connected yet.
func newPrivateServerApp(t *testing.T, srv *privateServer, options ...func(*Config)) *testApp {
	t.Helper()
	srv.Exec(t, "CREATE DATABASE IF NOT EXISTS usersvc CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
	cfg := testConfig()
	cfg.DBHost, cfg.DBPort = "127.0.0.1", srv.Port
	cfg.DBUser, cfg.DBPassword, cfg.DBName = srv.User, srv.Password, "usersvc"
	for _, option := range options {
		option(&cfg)
	}
	mc, err := mysqlConfig(cfg.dbSettings())
	if err != nil {
		t.Fatal(err)
	}
	mc.Logger = &mysql.NopLogger{} // the tests provoke failed handshakes
	db, err := openDB(mc, cfg.dbSettings(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return newTestAppOn(t, db, options...)
}

// wantHealthy checks that /health answers 200 and returns the session's
// Ssl_cipher, read through the service's own pool.
func wantHealthy(t *testing.T, app *testApp) string {
	t.Helper()
	if rec := app.do("GET", "/health", ""); rec.Code != http.StatusOK {
		t.Fatalf("/health: got %d %s", rec.Code, rec.Body)
	}
	return sslCipher(t, app.db)
}

// wantHealthReason checks that /health (public) and /health/ready (on
// the management listener) answer 503 with the reason in their database
// member.
func wantHealthReason(t *testing.T, app *testApp, reason string) {
	t.Helper()
	for path, rec := range map[string]*httptest.ResponseRecorder{
		"/health":       app.do("GET", "/health", ""),
		"/health/ready": app.manage("GET", "/health/ready"),
	} {
		p := wantProblem(t, rec, http.StatusServiceUnavailable)
		if p.Database != reason {
			t.Errorf("%s: database %q, want %q (%s)", path, p.Database, reason, p.Detail)
		}
	}
}

func dbTLS(mode, ca string) func(*Config) {
	return func(c *Config) { c.DBTLS, c.DBTLSCA = mode, ca }
}

func TestDBTLSAgainstATLSServer(t *testing.T) {
	t.Parallel()
	srv := startPrivateMariaDB(t, privateServerOptions{TLS: true, RequireSecureTransport: true})

	t.Run("true with the server's CA", func(t *testing.T) {
		app := newPrivateServerApp(t, srv, dbTLS(dbTLSOn, srv.CAFile))
		if cipher := wantHealthy(t, app); cipher == "" {
			t.Fatal("DB_TLS=true connected without TLS")
		}
		app.bootstrapAdmin() // a login and a write, through TLS
	})
	t.Run("true with another CA", func(t *testing.T) {
		app := newPrivateServerApp(t, srv, dbTLS(dbTLSOn, srv.WrongCAFile))
		wantHealthReason(t, app, reasonTLS)
		wantProblem(t, app.do("POST", "/api/v1/auth/token", `{"username":"someone","password":"some password"}`, "Authorization", ""),
			http.StatusServiceUnavailable)
		// Three failing checks and a request, one log line.
		if n := strings.Count(app.logs.String(), "database setup problem"); n != 1 {
			t.Errorf("the setup problem is logged %d times, want once:\n%s", n, app.logs)
		}
	})
	t.Run("false under require_secure_transport", func(t *testing.T) {
		// MariaDB before 11.4 refuses with 1045, as for a wrong password;
		// MySQL and MariaDB 11.4 say 3159: "tls required".
		app := newPrivateServerApp(t, srv, dbTLS(dbTLSOff, ""))
		wantHealthReason(t, app, reasonAccessDenied)
		if !strings.Contains(app.logs.String(), `"number":1045`) {
			t.Errorf("the log does not give the number:\n%s", app.logs)
		}
	})
	t.Run("skip-verify", func(t *testing.T) {
		app := newPrivateServerApp(t, srv, dbTLS(dbTLSSkipVerify, ""))
		if cipher := wantHealthy(t, app); cipher == "" {
			t.Fatal("DB_TLS=skip-verify connected without TLS")
		}
	})
	t.Run("preferred", func(t *testing.T) {
		app := newPrivateServerApp(t, srv, dbTLS(dbTLSPreferred, ""))
		if cipher := wantHealthy(t, app); cipher == "" {
			t.Fatal("DB_TLS=preferred did not use the TLS the server offers")
		}
	})
}

func TestDBTLSAgainstAPlainServer(t *testing.T) {
	t.Parallel()
	srv := startPrivateMariaDB(t, privateServerOptions{})

	t.Run("preferred falls back to plain", func(t *testing.T) {
		app := newPrivateServerApp(t, srv, dbTLS(dbTLSPreferred, ""))
		if cipher := wantHealthy(t, app); cipher != "" {
			t.Fatalf("a server without TLS gave cipher %q", cipher)
		}
	})
	t.Run("true refuses a server without TLS", func(t *testing.T) {
		app := newPrivateServerApp(t, srv, dbTLS(dbTLSOn, ""))
		wantHealthReason(t, app, reasonTLSUnsupported)
	})
	t.Run("wrong password", func(t *testing.T) {
		app := newPrivateServerApp(t, srv, func(c *Config) { c.DBPassword = "not the password" })
		wantHealthReason(t, app, reasonAccessDenied)
	})
	t.Run("unknown database", func(t *testing.T) {
		app := newPrivateServerApp(t, srv, func(c *Config) { c.DBName = "nosuchdb_" + strconv.Itoa(srv.Port) })
		wantHealthReason(t, app, reasonUnknownDB)
	})
}

func TestDBTLSConfig(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		env     map[string]string
		wantErr string
	}{
		{map[string]string{"DB_TLS": "yes"}, "DB_TLS must be one of false, preferred, true, skip-verify"},
		{map[string]string{"DB_TLS": "skip-verify", "DB_TLS_CA": "/ca.pem"}, "DB_TLS_CA needs DB_TLS=true"},
		{map[string]string{"DB_TLS": "true", "DB_TLS_CA": "/ca.pem"}, ""},
		{map[string]string{"DB_TLS": "preferred"}, ""},
	} {
		_, err := loadConfig(func(name string) string { return tt.env[name] })
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%v: got %v, want %q", tt.env, err, tt.wantErr)
		}
	}
	if _, err := mysqlConfig(Config{DBTLS: dbTLSOn, DBTLSCA: "/nonexistent/ca.pem"}.dbSettings()); err == nil || !strings.Contains(err.Error(), "DB_TLS_CA") {
		t.Errorf("an unreadable DB_TLS_CA: got %v", err)
	}
	mc, err := mysqlConfig(Config{DBHost: "db.example.com", DBTLS: dbTLSOn}.dbSettings())
	if err != nil || mc.TLS == nil || mc.TLS.InsecureSkipVerify || mc.TLS.ServerName != "db.example.com" || mc.AllowFallbackToPlaintext {
		t.Errorf("DB_TLS=true: got %+v, %v; want verified TLS for db.example.com", mc.TLS, err)
	}
}
