package main

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Reading typed variables from the environment: each reader checks its
// variable and records one error per bad one, naming it (envReader).

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

// durationList reads comma-separated durations, each from lo to hi, at
// least one and at most maxItems.
func (r *envReader) durationList(name string, fallback []time.Duration, lo, hi time.Duration, maxItems int) []time.Duration {
	v := r.getenv(name)
	if v == "" {
		return fallback
	}
	var list []time.Duration
	for item := range strings.SplitSeq(v, ",") {
		d, err := time.ParseDuration(strings.TrimSpace(item))
		if err != nil || d < lo || d > hi {
			r.fail(name, "must be comma-separated durations, each from %v to %v, got %q", lo, hi, v)
			return fallback
		}
		list = append(list, d)
	}
	if len(list) > maxItems {
		r.fail(name, "must list at most %d durations, got %d", maxItems, len(list))
		return fallback
	}
	return list
}
