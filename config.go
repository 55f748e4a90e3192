package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"strings"
	"time"
)

// Config is everything the service reads from its environment.
type Config struct {
	HTTPAddr string
	// ManagementAddr serves /metrics, /health/live and /health/ready,
	// apart from the public API; "" turns that listener off.
	ManagementAddr string

	// CORSAllowedOrigins may call the API from a browser ("*": any).
	CORSAllowedOrigins corsOrigins

	// TrustedProxies are the peers whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// MaxConnections caps the open client connections, and
	// MaxConnectionsPerClient those of one client address (IPv6: /64);
	// IdleTimeout closes idle keep-alive connections.
	MaxConnections          int
	MaxConnectionsPerClient int
	IdleTimeout             time.Duration
	// MaxBodyBytes bounds the body of the routes that take a user;
	// MaxBodyBytesInFlight the memory all request bodies held at once may
	// take.
	MaxBodyBytes         int64
	MaxBodyBytesInFlight int64
	// SignupsPerHour is how many accounts one client address may sign up
	// in an hour.
	SignupsPerHour int

	DBHost            string
	DBPort            int
	DBUser            string
	DBPassword        string
	DBName            string
	DBMaxOpenConns    int
	DBMaxIdleConns    int
	DBConnMaxLifetime time.Duration // 0: connections are never closed for their age
	DBTimeout         time.Duration // limit on every database call and on dialing
	DBTLS             string        // false, preferred, true or skip-verify (dbtls.go)
	DBTLSCA           string        // PEM file of the CAs DB_TLS=true trusts; "": the system's

	BcryptCost    int
	BcryptWorkers int // bcrypt computations at once

	TokenTTL    time.Duration
	AllowSignup bool

	// EventsRetention is how long events are kept; 0 keeps them all.
	EventsRetention time.Duration

	// Webhooks: their delivery, retries and destinations (docs/webhooks.md).
	Webhooks webhookSettings

	// The admin created at start-up when no active admin exists; all three
	// are set, or none.
	AdminUsername string
	AdminEmail    string
	AdminPassword string

	LogLevel slog.Level

	// SchemaApply: serve applies schema.sql at start-up; otherwise it only
	// checks that the tables exist and runs no DDL (see migrate).
	SchemaApply bool
}

// defaultMaxConnectionsPerClient is the default cap on one client's open
// connections: room for a busy client and for a load test's connections,
// an eighth of the default MAX_CONNECTIONS.
const defaultMaxConnectionsPerClient = 128

// loadConfig reads the configuration through getenv. It reports every bad
// variable at once, each named, so an operator fixes them in one go.
func loadConfig(getenv func(string) string) (Config, error) {
	r := envReader{getenv: getenv}
	cfg := Config{
		HTTPAddr:             r.addr("HTTP_ADDR", ":8080"),
		ManagementAddr:       r.optionalAddr("MANAGEMENT_ADDR", "127.0.0.1:9090"),
		TrustedProxies:       r.prefixes("TRUSTED_PROXIES"),
		CORSAllowedOrigins:   r.origins("CORS_ALLOWED_ORIGINS"),
		MaxConnections:       r.intRange("MAX_CONNECTIONS", 1024, 1, 1_000_000),
		IdleTimeout:          r.durationRange("IDLE_TIMEOUT", 30*time.Second, time.Second, time.Hour),
		MaxBodyBytes:         int64(r.intRange("MAX_BODY_BYTES", defaultMaxBodyBytes, 4<<10, 1<<20)),
		MaxBodyBytesInFlight: int64(r.intRange("MAX_BODY_BYTES_IN_FLIGHT", 32<<20, 1<<20, 1<<40)),
		SignupsPerHour:       r.intRange("SIGNUPS_PER_HOUR", 10, 1, 1_000_000),
		DBHost:               r.host("DB_HOST", "127.0.0.1"),
		DBPort:               r.intRange("DB_PORT", 3306, 1, 65535),
		DBUser:               r.str("DB_USER", "root"),
		DBPassword:           r.str("DB_PASSWORD", ""),
		DBName:               r.str("DB_NAME", "users"),
		DBMaxOpenConns:       r.intRange("DB_MAX_OPEN_CONNS", 20, 1, 10000),
		DBConnMaxLifetime:    r.durationOrZero("DB_CONN_MAX_LIFETIME", 3*time.Minute),
		DBTimeout:            r.durationRange("DB_TIMEOUT", 5*time.Second, 100*time.Millisecond, 5*time.Minute),
		DBTLS:                r.oneOf("DB_TLS", dbTLSOff, dbTLSModes),
		DBTLSCA:              r.str("DB_TLS_CA", ""),
		BcryptCost:           r.bcryptCost("BCRYPT_COST", "BCRYPT_COST_UNBOUNDED", 12),
		BcryptWorkers:        r.intRange("BCRYPT_WORKERS", runtime.GOMAXPROCS(0), 1, 1024),
		TokenTTL:             r.durationRange("TOKEN_TTL", time.Hour, time.Minute, 30*24*time.Hour),
		AllowSignup:          r.boolean("ALLOW_SIGNUP", false),
		EventsRetention:      r.durationOrZero("EVENTS_RETENTION", 90*24*time.Hour),
		AdminUsername:        strings.TrimSpace(r.str("ADMIN_USERNAME", "")),
		AdminEmail:           strings.ToLower(strings.TrimSpace(r.str("ADMIN_EMAIL", ""))),
		AdminPassword:        r.str("ADMIN_PASSWORD", ""),
		LogLevel:             r.logLevel("LOG_LEVEL", slog.LevelInfo),
		SchemaApply:          r.boolean("SCHEMA_APPLY", true),
		Webhooks:             readWebhookSettings(&r),
	}
	// Unset, the idle connections follow the open limit: a pool whose
	// idle connections are fewer than its open ones closes and reopens
	// connections under load.
	cfg.DBMaxIdleConns = r.intRange("DB_MAX_IDLE_CONNS", cfg.DBMaxOpenConns, 0, 10000)
	cfg.MaxConnectionsPerClient = r.intRange("MAX_CONNECTIONS_PER_CLIENT", min(defaultMaxConnectionsPerClient, cfg.MaxConnections), 1, 1_000_000)
	if cfg.MaxConnectionsPerClient > cfg.MaxConnections {
		r.fail("MAX_CONNECTIONS_PER_CLIENT", "must not exceed MAX_CONNECTIONS (%d)", cfg.MaxConnections)
	}
	if cfg.DBMaxIdleConns > cfg.DBMaxOpenConns {
		r.fail("DB_MAX_IDLE_CONNS", "must not exceed DB_MAX_OPEN_CONNS (%d)", cfg.DBMaxOpenConns)
	}
	if cfg.DBTLSCA != "" && cfg.DBTLS != dbTLSOn {
		r.fail("DB_TLS_CA", "needs DB_TLS=true (preferred and skip-verify verify nothing)")
	}
	cfg.Webhooks.checkLease(&r, cfg.DBTimeout)
	if span := cfg.Webhooks.retrySpan(); cfg.EventsRetention != 0 && cfg.EventsRetention < span {
		r.fail("EVENTS_RETENTION", "must be 0 or at least %v, the longest WEBHOOK_RETRY_SCHEDULE (its sum, plus jitter) lets an event wait: "+
			"events would be pruned before they are delivered", span)
	}
	checkBootstrapAdmin(&r, cfg)
	if err := errors.Join(r.errs...); err != nil {
		return Config{}, fmt.Errorf("configuration: %w", err)
	}
	return cfg, nil
}

// checkBootstrapAdmin checks that ADMIN_USERNAME and ADMIN_EMAIL are set
// together or not at all (ADMIN_PASSWORD is optional: without it a
// password is generated), and hold a valid user.
func checkBootstrapAdmin(r *envReader, cfg Config) {
	if cfg.AdminUsername == "" && cfg.AdminEmail == "" && cfg.AdminPassword == "" {
		return
	}
	if cfg.AdminUsername == "" || cfg.AdminEmail == "" {
		r.fail("ADMIN_USERNAME and ADMIN_EMAIL", "must be set together (ADMIN_PASSWORD with them, or left unset to generate one)")
		return
	}
	f := userFields{Username: &cfg.AdminUsername, Email: &cfg.AdminEmail}
	if cfg.AdminPassword != "" {
		f.Password = &cfg.AdminPassword
	}
	for _, e := range f.validatePresent() {
		r.fail("ADMIN_"+strings.ToUpper(e.Field), "%s", e.Message)
	}
}

// version is the service's version, set at build time:
//
//	go build -ldflags "-X main.version=1.2.3"
var version = "dev"

// dbSettings are the settings of the store and its pool.
func (c Config) dbSettings() dbSettings {
	return dbSettings{Host: c.DBHost, Port: c.DBPort, User: c.DBUser, Password: c.DBPassword, Name: c.DBName,
		TLS: c.DBTLS, TLSCA: c.DBTLSCA, Timeout: c.DBTimeout,
		MaxOpenConns: c.DBMaxOpenConns, MaxIdleConns: c.DBMaxIdleConns, ConnMaxLifetime: c.DBConnMaxLifetime}
}
