package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
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
	// MaxConnections caps the open client connections; IdleTimeout closes
	// idle keep-alive connections.
	MaxConnections int
	IdleTimeout    time.Duration
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
	}
	// Unset, the idle connections follow the open limit: a pool whose
	// idle connections are fewer than its open ones closes and reopens
	// connections under load.
	cfg.DBMaxIdleConns = r.intRange("DB_MAX_IDLE_CONNS", cfg.DBMaxOpenConns, 0, 10000)
	if cfg.DBMaxIdleConns > cfg.DBMaxOpenConns {
		r.fail("DB_MAX_IDLE_CONNS", "must not exceed DB_MAX_OPEN_CONNS (%d)", cfg.DBMaxOpenConns)
	}
	if cfg.DBTLSCA != "" && cfg.DBTLS != dbTLSOn {
		r.fail("DB_TLS_CA", "needs DB_TLS=true (preferred and skip-verify verify nothing)")
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

// envReader reads typed variables and collects one error per bad variable.
type envReader struct {
	getenv func(string) string
	errs   []error
}

func (r *envReader) fail(name, format string, args ...any) {
	r.errs = append(r.errs, fmt.Errorf("%s %s", name, fmt.Sprintf(format, args...)))
}

func (r *envReader) str(name, fallback string) string {
	if v := r.getenv(name); v != "" {
		return v
	}
	return fallback
}

func (r *envReader) intRange(name string, fallback, lo, hi int) int {
	v := r.getenv(name)
	if v == "" {
		return fallback
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		r.fail(name, "must be an integer from %d to %d, got %q", lo, hi, v)
		return fallback
	}
	return n
}

// durationRange reads a duration from lo to hi: outside, a value is a
// mistake (IDLE_TIMEOUT=1ns closes every connection at once, a
// TOKEN_TTL of a century outlives any revocation policy).
func (r *envReader) durationRange(name string, fallback, lo, hi time.Duration) time.Duration {
	v := r.getenv(name)
	if v == "" {
		return fallback
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < lo || d > hi {
		r.fail(name, "must be a duration from %v to %v, such as %v, got %q", lo, hi, fallback, v)
		return fallback
	}
	return d
}

// host reads a host name or address without a port (the port has a
// variable of its own: DB_PORT). An IPv6 address is taken as it is.
func (r *envReader) host(name, fallback string) string {
	v := r.str(name, fallback)
	if _, err := netip.ParseAddr(v); err == nil {
		return v
	}
	if _, port, err := net.SplitHostPort(v); err == nil {
		r.fail(name, "must be a host name or address without a port; put the port in DB_PORT (%s), got %q", port, v)
		return fallback
	}
	return v
}

func (r *envReader) duration(name string, fallback time.Duration) time.Duration {
	v := r.getenv(name)
	if v == "" {
		return fallback
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		r.fail(name, "must be a positive duration such as 30s or 3m, got %q", v)
		return fallback
	}
	return d
}

// durationOrZero reads a duration that may be 0 (no limit, or the
// feature off: each variable says which) or positive.
func (r *envReader) durationOrZero(name string, fallback time.Duration) time.Duration {
	v := r.getenv(name)
	if v == "" {
		return fallback
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		r.fail(name, "must be 0 (no limit, or off) or a positive duration such as 3m or 720h, got %q", v)
		return fallback
	}
	return d
}

// Bounds of BCRYPT_COST: below 10 a hash falls too quickly to a guessing
// attack, above 16 a sign-in takes seconds of CPU. The override variable
// allows anything bcrypt accepts (4 to 31), for tests and benchmarks.
const (
	bcryptCostMin = 10
	bcryptCostMax = 16
)

// bcryptCost reads the cost, bounded to bcryptCostMin..bcryptCostMax
// unless the override variable is true.
func (r *envReader) bcryptCost(name, override string, fallback int) int {
	if r.boolean(override, false) {
		return r.intRange(name, fallback, bcrypt.MinCost, bcrypt.MaxCost)
	}
	v := r.getenv(name)
	n, err := strconv.Atoi(v)
	if v != "" && err == nil && (n < bcryptCostMin || n > bcryptCostMax) && n >= bcrypt.MinCost && n <= bcrypt.MaxCost {
		r.fail(name, "must be from %d to %d, got %d; set %s=true to allow any cost from %d to %d",
			bcryptCostMin, bcryptCostMax, n, override, bcrypt.MinCost, bcrypt.MaxCost)
		return fallback
	}
	return r.intRange(name, fallback, bcryptCostMin, bcryptCostMax)
}

func (r *envReader) boolean(name string, fallback bool) bool {
	v := r.getenv(name)
	if v == "" {
		return fallback
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		r.fail(name, "must be true or false, got %q", v)
		return fallback
	}
	return b
}

func (r *envReader) oneOf(name, fallback string, allowed []string) string {
	v := r.str(name, fallback)
	if !slices.Contains(allowed, v) {
		r.fail(name, "must be one of %s, got %q", strings.Join(allowed, ", "), v)
		return fallback
	}
	return v
}

func (r *envReader) addr(name, fallback string) string {
	v := r.str(name, fallback)
	if _, port, err := net.SplitHostPort(v); err != nil || port == "" {
		r.fail(name, "must be host:port or :port, got %q", v)
	}
	return v
}

// optionalAddr is addr where "off" (or an empty value in the environment
// over a default) turns the listener off.
func (r *envReader) optionalAddr(name, fallback string) string {
	if v := r.getenv(name); strings.EqualFold(v, "off") {
		return ""
	}
	return r.addr(name, fallback)
}

// origins reads a list of CORS origins.
func (r *envReader) origins(name string) corsOrigins {
	origins, bad := parseOrigins(r.getenv(name))
	for _, item := range bad {
		r.fail(name, "must be * or origins such as https://app.example.com (scheme, host, optional port, lower case), got %q", item)
	}
	return origins
}

// prefixes reads a comma-separated list of CIDR prefixes or single
// addresses.
func (r *envReader) prefixes(name string) []netip.Prefix {
	var list []netip.Prefix
	for _, item := range strings.Split(r.getenv(name), ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		prefix, err := netip.ParsePrefix(item)
		if err != nil {
			addr, addrErr := netip.ParseAddr(item)
			if addrErr != nil {
				r.fail(name, "must be a comma-separated list of CIDR prefixes or addresses, got %q", item)
				continue
			}
			prefix = netip.PrefixFrom(addr, addr.BitLen())
		}
		list = append(list, prefix.Masked())
	}
	return list
}

func (r *envReader) logLevel(name string, fallback slog.Level) slog.Level {
	v := r.getenv(name)
	if v == "" {
		return fallback
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(v)); err != nil {
		r.fail(name, "must be debug, info, warn or error, got %q", v)
		return fallback
	}
	return level
}

// parseDotenv parses the text of a .env file: KEY=VALUE lines, blank lines
// and # comments, an optional "export " prefix, and values that may be
// single-quoted (taken literally) or double-quoted (with \n, \t, \" and \\
// escapes). Unquoted values end at " #" (a trailing comment) and are trimmed.
func parseDotenv(text string) (map[string]string, error) {
	vars := make(map[string]string)
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(strings.TrimSuffix(line, "\r"))
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		line = strings.TrimPrefix(line, "export ")
		key, raw, ok := strings.Cut(line, "=")
		key = strings.TrimSpace(key)
		if !ok || !isEnvName(key) {
			return nil, fmt.Errorf("line %d: want KEY=VALUE", i+1)
		}
		value, err := dotenvValue(strings.TrimSpace(raw))
		if err != nil {
			return nil, fmt.Errorf("line %d: %s: %w", i+1, key, err)
		}
		vars[key] = value
	}
	return vars, nil
}

// dotenvValue unquotes one value of a .env line.
func dotenvValue(raw string) (string, error) {
	if raw == "" {
		return "", nil
	}
	switch quote := raw[0]; quote {
	case '\'', '"':
		end := closingQuote(raw, quote)
		if end < 0 {
			return "", errors.New("unterminated quoted value")
		}
		if rest := strings.TrimSpace(raw[end+1:]); rest != "" && !strings.HasPrefix(rest, "#") {
			return "", errors.New("text after the closing quote")
		}
		if quote == '\'' {
			return raw[1:end], nil
		}
		return unescapeDouble(raw[1:end]), nil
	}
	if i := strings.Index(raw, " #"); i >= 0 {
		raw = raw[:i]
	}
	return strings.TrimSpace(raw), nil
}

// closingQuote returns the index of the quote that closes raw[0], or -1.
// Inside double quotes a backslash escapes the next byte.
func closingQuote(raw string, quote byte) int {
	for i := 1; i < len(raw); i++ {
		switch {
		case quote == '"' && raw[i] == '\\':
			i++
		case raw[i] == quote:
			return i
		}
	}
	return -1
}

func unescapeDouble(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func isEnvName(s string) bool {
	if s == "" || (s[0] >= '0' && s[0] <= '9') {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// withDotenv returns a getenv that prefers the real environment and falls
// back to the variables of a .env file. A variable set in the environment
// wins even when empty, so "DB_PASSWORD= usersvc" clears the file's
// DB_PASSWORD (and an empty value means the variable's default).
func withDotenv(lookupEnv func(string) (string, bool), file map[string]string) func(string) string {
	return func(name string) string {
		if v, ok := lookupEnv(name); ok {
			return v
		}
		return file[name]
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
