package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestLoadConfigDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		HTTPAddr: ":8080", ManagementAddr: "127.0.0.1:9090", MaxConnections: 1024, MaxConnectionsPerClient: 128, IdleTimeout: 30 * time.Second,
		MaxBodyBytes: 16 << 10, MaxBodyBytesInFlight: 32 << 20, SignupsPerHour: 10, DBHost: "127.0.0.1", DBPort: 3306, DBUser: "root", DBName: "users",
		DBMaxOpenConns: 20, DBMaxIdleConns: 20, DBConnMaxLifetime: 3 * time.Minute, DBTimeout: 5 * time.Second, DBTLS: "false",
		BcryptCost: 12, BcryptWorkers: runtime.GOMAXPROCS(0), TokenTTL: time.Hour, LogLevel: slog.LevelInfo,
		EventsRetention: 2160 * time.Hour,
		SchemaApply:     true,
		Webhooks: webhookSettings{Timeout: 10 * time.Second, Lease: 30 * time.Second, SecretOverlap: 24 * time.Hour,
			Schedule: defaultWebhookSchedule, Workers: 16},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got %+v, want %+v", cfg, want)
	}
}

func TestLoadConfigNamesEveryBadVariable(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"HTTP_ADDR":                "8080",
		"DB_PORT":                  "70000",
		"DB_MAX_OPEN_CONNS":        "ten",
		"DB_CONN_MAX_LIFETIME":     "3",
		"DB_TIMEOUT":               "-1s",
		"BCRYPT_COST":              "3",
		"LOG_LEVEL":                "loud",
		"BCRYPT_WORKERS":           "0",
		"TOKEN_TTL":                "forever",
		"ALLOW_SIGNUP":             "maybe",
		"EVENTS_RETENTION":         "-1h",
		"WEBHOOK_TIMEOUT":          "1ms",
		"WEBHOOK_RETRY_SCHEDULE":   "5s,soon",
		"WEBHOOK_ALLOWED_NETWORKS": "intranet",
		"WEBHOOK_ALLOW_HTTP":       "sometimes",
	}
	_, err := loadConfig(func(name string) string { return env[name] })
	if err == nil {
		t.Fatal("no error")
	}
	for name := range env {
		if !strings.Contains(err.Error(), name+" ") {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

// TestLoadConfigWebhookLease: a lease must outlast an attempt.
func TestLoadConfigWebhookLease(t *testing.T) {
	t.Parallel()
	env := map[string]string{"WEBHOOK_TIMEOUT": "30s", "WEBHOOK_LEASE": "30s"}
	_, err := loadConfig(func(name string) string { return env[name] })
	if err == nil || !strings.Contains(err.Error(), "WEBHOOK_LEASE must be longer than WEBHOOK_TIMEOUT") {
		t.Errorf("got %v", err)
	}
	// Longer than the attempt, but not than the attempt and two database
	// calls: a lease renewed before the send could run out before the
	// outcome is recorded.
	env = map[string]string{"WEBHOOK_TIMEOUT": "10s", "WEBHOOK_LEASE": "15s", "DB_TIMEOUT": "5s"}
	if _, err := loadConfig(func(name string) string { return env[name] }); err == nil || !strings.Contains(err.Error(), "DB_TIMEOUT") {
		t.Errorf("lease 15s, timeout 10s, DB_TIMEOUT 5s: got %v, want an error naming DB_TIMEOUT", err)
	}
	env["WEBHOOK_LEASE"] = "21s"
	if _, err := loadConfig(func(name string) string { return env[name] }); err != nil {
		t.Errorf("lease 21s: %v", err)
	}
	env = map[string]string{"WEBHOOK_RETRY_SCHEDULE": "1s, 2m", "WEBHOOK_ALLOWED_NETWORKS": "10.0.0.0/8"}
	cfg, err := loadConfig(func(name string) string { return env[name] })
	if err != nil || !reflect.DeepEqual(cfg.Webhooks.Schedule, []time.Duration{time.Second, 2 * time.Minute}) || len(cfg.Webhooks.AllowedNetworks) != 1 {
		t.Errorf("got %+v, %v", cfg.Webhooks, err)
	}
}

// TestLoadConfigEventsRetention: 0 keeps every event; a duration sets the
// horizon; anything else is refused by name.
func TestLoadConfigEventsRetention(t *testing.T) {
	t.Parallel()
	for value, want := range map[string]time.Duration{"0": 0, "0s": 0, "720h": 720 * time.Hour, "48h": 48 * time.Hour} {
		cfg, err := loadConfig(func(name string) string { return map[string]string{"EVENTS_RETENTION": value}[name] })
		if err != nil || cfg.EventsRetention != want {
			t.Errorf("EVENTS_RETENTION=%s: got %v, %v; want %v", value, cfg.EventsRetention, err, want)
		}
	}
	for _, value := range []string{"90d", "-1s", "forever"} {
		_, err := loadConfig(func(name string) string { return map[string]string{"EVENTS_RETENTION": value}[name] })
		if err == nil || !strings.Contains(err.Error(), "EVENTS_RETENTION ") {
			t.Errorf("EVENTS_RETENTION=%s: got %v, want an error naming it", value, err)
		}
	}
}

func TestLoadConfigIdleAboveOpen(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DB_MAX_OPEN_CONNS": "5", "DB_MAX_IDLE_CONNS": "6"}
	if _, err := loadConfig(func(name string) string { return env[name] }); err == nil || !strings.Contains(err.Error(), "DB_MAX_IDLE_CONNS") {
		t.Errorf("got %v, want an error naming DB_MAX_IDLE_CONNS", err)
	}
}

func TestParseDotenv(t *testing.T) {
	t.Parallel()
	text := "# a comment\r\n" +
		"\n" +
		"PLAIN=value\n" +
		"SPACED = spaced value  \n" +
		"export EXPORTED=yes\n" +
		"EMPTY=\n" +
		"COMMENTED=abc # trailing comment\n" +
		"HASH=abc#def\n" +
		"SINGLE='it is' \n" +
		"SINGLE2='a \\n b # not a comment'\n" +
		"DOUBLE=\"line1\\nline2 \\\"quoted\\\" \\\\ end\" # comment\n" +
		"EQUALS=a=b=c\n"
	got, err := parseDotenv(text)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"PLAIN": "value", "SPACED": "spaced value", "EXPORTED": "yes", "EMPTY": "",
		"COMMENTED": "abc", "HASH": "abc#def", "SINGLE": "it is", "SINGLE2": `a \n b # not a comment`,
		"DOUBLE": "line1\nline2 \"quoted\" \\ end", "EQUALS": "a=b=c",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
}

func TestParseDotenvErrors(t *testing.T) {
	t.Parallel()
	for _, text := range []string{
		"NOEQUALS\n",
		"1BAD=x\n",
		"BAD-NAME=x\n",
		"OPEN='unterminated\n",
		"OPEN=\"unterminated\n",
		"AFTER='x' y\n",
	} {
		if _, err := parseDotenv(text); err == nil || !strings.Contains(err.Error(), "line 1") {
			t.Errorf("%q: got %v, want an error at line 1", text, err)
		}
	}
}

func TestDotenvFileUnderTheEnvironment(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), ".env")
	if err := os.WriteFile(path, []byte("DB_NAME=fromfile\nDB_USER=fileuser\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv, err := withDotenvFile(func(name string) (string, bool) {
		if name == "DB_USER" {
			return "envuser", true
		}
		return "", false
	}, path, true)
	if err != nil {
		t.Fatal(err)
	}
	if got := getenv("DB_NAME"); got != "fromfile" {
		t.Errorf("DB_NAME: got %q, want the file's", got)
	}
	if got := getenv("DB_USER"); got != "envuser" {
		t.Errorf("DB_USER: got %q, want the environment's", got)
	}
	missing := filepath.Join(t.TempDir(), "missing")
	if _, err := withDotenvFile(os.LookupEnv, missing, false); err != nil {
		t.Errorf("a missing .env is not an error: %v", err)
	}
	if _, err := withDotenvFile(os.LookupEnv, missing, true); err == nil {
		t.Error("a missing file that ENV_FILE names is no error")
	}
}

// TestEmptyEnvironmentClearsDotenv: a variable set empty in the
// environment hides the .env file's value.
func TestEmptyEnvironmentClearsDotenv(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), ".env")
	if err := os.WriteFile(path, []byte("DB_PASSWORD=from-file\nDB_USER=fileuser\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"DB_PASSWORD": ""}
	getenv, err := withDotenvFile(func(name string) (string, bool) { v, ok := env[name]; return v, ok }, path, true)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DBPassword != "" || cfg.DBUser != "fileuser" {
		t.Errorf("got DB_PASSWORD %q, DB_USER %q; want empty and the file's", cfg.DBPassword, cfg.DBUser)
	}
}

func TestLoadConfigPoolAndCost(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		check   func(Config) bool
		wantErr string
	}{
		{"idle follows open", map[string]string{"DB_MAX_OPEN_CONNS": "5"}, func(c Config) bool { return c.DBMaxIdleConns == 5 }, ""},
		{"idle set", map[string]string{"DB_MAX_OPEN_CONNS": "5", "DB_MAX_IDLE_CONNS": "2"}, func(c Config) bool { return c.DBMaxIdleConns == 2 }, ""},
		{"idle above open", map[string]string{"DB_MAX_OPEN_CONNS": "5", "DB_MAX_IDLE_CONNS": "6"}, nil, "DB_MAX_IDLE_CONNS"},
		{"per-client connections follow a low cap", map[string]string{"MAX_CONNECTIONS": "16"}, func(c Config) bool { return c.MaxConnectionsPerClient == 16 }, ""},
		{"per-client connections set", map[string]string{"MAX_CONNECTIONS_PER_CLIENT": "8"}, func(c Config) bool { return c.MaxConnectionsPerClient == 8 }, ""},
		{"per-client connections above the cap", map[string]string{"MAX_CONNECTIONS": "16", "MAX_CONNECTIONS_PER_CLIENT": "17"}, nil, "MAX_CONNECTIONS_PER_CLIENT"},
		{"lifetime 0 is no limit", map[string]string{"DB_CONN_MAX_LIFETIME": "0"}, func(c Config) bool { return c.DBConnMaxLifetime == 0 }, ""},
		{"lifetime 0s", map[string]string{"DB_CONN_MAX_LIFETIME": "0s"}, func(c Config) bool { return c.DBConnMaxLifetime == 0 }, ""},
		{"negative lifetime", map[string]string{"DB_CONN_MAX_LIFETIME": "-1m"}, nil, "DB_CONN_MAX_LIFETIME"},
		{"cost 10", map[string]string{"BCRYPT_COST": "10"}, func(c Config) bool { return c.BcryptCost == 10 }, ""},
		{"cost 16", map[string]string{"BCRYPT_COST": "16"}, func(c Config) bool { return c.BcryptCost == 16 }, ""},
		{"cost 9", map[string]string{"BCRYPT_COST": "9"}, nil, "BCRYPT_COST must be from 10 to 16, got 9; set BCRYPT_COST_UNBOUNDED=true"},
		{"cost 31", map[string]string{"BCRYPT_COST": "31"}, nil, "BCRYPT_COST must be from 10 to 16, got 31"},
		{"cost 4 allowed", map[string]string{"BCRYPT_COST": "4", "BCRYPT_COST_UNBOUNDED": "true"}, func(c Config) bool { return c.BcryptCost == 4 }, ""},
		{"cost 31 allowed", map[string]string{"BCRYPT_COST": "31", "BCRYPT_COST_UNBOUNDED": "true"}, func(c Config) bool { return c.BcryptCost == 31 }, ""},
		{"cost 32 never", map[string]string{"BCRYPT_COST": "32", "BCRYPT_COST_UNBOUNDED": "true"}, nil, "BCRYPT_COST must be an integer from 4 to 31"},
		{"cost 3", map[string]string{"BCRYPT_COST": "3"}, nil, "BCRYPT_COST must be an integer from 10 to 16"},
		{"schema check only", map[string]string{"SCHEMA_APPLY": "false"}, func(c Config) bool { return !c.SchemaApply }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadConfig(func(name string) string { return tt.env[name] })
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr == "" && !tt.check(cfg):
				t.Errorf("got %+v", cfg)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("got %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
}

func TestLoadConfigBootstrapAdmin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{"all three", map[string]string{"ADMIN_USERNAME": "boss", "ADMIN_EMAIL": "Boss@Example.com", "ADMIN_PASSWORD": "long enough"}, ""},
		{"no email", map[string]string{"ADMIN_USERNAME": "boss", "ADMIN_PASSWORD": "long enough"}, "ADMIN_USERNAME and ADMIN_EMAIL"},
		{"password alone", map[string]string{"ADMIN_PASSWORD": "long enough"}, "ADMIN_USERNAME and ADMIN_EMAIL"},
		{"no password: one is generated", map[string]string{"ADMIN_USERNAME": "boss", "ADMIN_EMAIL": "Boss@Example.com"}, ""},
		{"bad email", map[string]string{"ADMIN_USERNAME": "boss", "ADMIN_EMAIL": "boss", "ADMIN_PASSWORD": "long enough"}, "ADMIN_EMAIL"},
		{"short password", map[string]string{"ADMIN_USERNAME": "boss", "ADMIN_EMAIL": "b@x.io", "ADMIN_PASSWORD": "short"}, "ADMIN_PASSWORD"},
		{"password is the username", map[string]string{"ADMIN_USERNAME": "bossbossboss", "ADMIN_EMAIL": "b@x.io", "ADMIN_PASSWORD": "BOSSBOSSBOSS"}, "ADMIN_PASSWORD"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadConfig(func(name string) string { return tt.env[name] })
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr == "" && cfg.AdminEmail != "boss@example.com":
				t.Errorf("admin email not normalized: %q", cfg.AdminEmail)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("got %v, want an error naming %s", err, tt.wantErr)
			}
		})
	}
}

// TestLoadConfigRefusesAbsurdValues: durations past their bounds and a
// DB_HOST with a port are refused by name, with the fix; MANAGEMENT_ADDR
// takes off in any case. Before, each was accepted (or OFF refused
// without saying why).
func TestLoadConfigRefusesAbsurdValues(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ name, value, want string }{
		{"TOKEN_TTL", "1000000h", "TOKEN_TTL must be a duration from 1m0s to 720h0m0s"},
		{"TOKEN_TTL", "1s", "TOKEN_TTL must be a duration from 1m0s"},
		{"IDLE_TIMEOUT", "1ns", "IDLE_TIMEOUT must be a duration from 1s to 1h0m0s"},
		{"DB_TIMEOUT", "1ns", "DB_TIMEOUT must be a duration from 100ms to 5m0s"},
		{"DB_HOST", "127.0.0.1:3306", "put the port in DB_PORT (3306)"},
		{"DB_HOST", "[::1]:3307", "put the port in DB_PORT (3307)"},
	} {
		_, err := loadConfig(func(name string) string {
			if name == c.name {
				return c.value
			}
			return ""
		})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s=%s: %v; want %q", c.name, c.value, err, c.want)
		}
	}
	for _, c := range []struct{ name, value string }{{"DB_HOST", "::1"}, {"DB_HOST", "db.example.com"}, {"MANAGEMENT_ADDR", "OFF"}, {"TOKEN_TTL", "720h"}} {
		cfg, err := loadConfig(func(name string) string {
			if name == c.name {
				return c.value
			}
			return ""
		})
		if err != nil {
			t.Errorf("%s=%s: %v", c.name, c.value, err)
		}
		if c.name == "MANAGEMENT_ADDR" && cfg.ManagementAddr != "" {
			t.Errorf("MANAGEMENT_ADDR=OFF left the listener on %q", cfg.ManagementAddr)
		}
	}
}

// TestConfigurationDocNamesEveryVariable: docs/configuration.md names every
// variable loadConfig reads, so the one full list cannot fall behind the
// code.
func TestConfigurationDocNamesEveryVariable(t *testing.T) {
	doc, err := os.ReadFile("docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	asked := map[string]bool{"ENV_FILE": true} // read by run, before loadConfig
	loadConfig(func(name string) string {
		asked[name] = true
		return ""
	})
	if len(asked) < 20 {
		t.Fatalf("loadConfig read only %d variables; the recorder is broken", len(asked))
	}
	for name := range asked {
		if !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("docs/configuration.md does not name %s", name)
		}
	}
}
