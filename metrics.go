package main

import (
	"bufio"
	"cmp"
	"database/sql"
	"fmt"
	"io"
	"maps"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// durationBuckets are the upper bounds, in seconds, of the request
// duration histogram.
var durationBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// metrics counts what the service does, for /metrics in the Prometheus
// text exposition format (written by hand: no client library).
type metrics struct {
	inFlight atomic.Int64

	mu        sync.Mutex
	requests  map[requestLabels]uint64
	durations map[routeLabels]*histogram
}

// routeLabels identify one duration histogram: the method and the route
// pattern without its method.
type routeLabels struct {
	method, route string
}

// requestLabels identify one request counter.
type requestLabels struct {
	method, route string
	status        int
}

// histogram is a cumulative-on-output histogram: counts holds one count
// per bucket (not yet cumulative) and the overflow past the last bound.
type histogram struct {
	counts []uint64
	sum    float64
	count  uint64
}

func newMetrics() *metrics {
	return &metrics{requests: map[requestLabels]uint64{}, durations: map[routeLabels]*histogram{}}
}

// observe records one finished request. The route label is the mux
// pattern without its method ("GET /api/v1/users/{id}" counts as
// "/api/v1/users/{id}"), which the method label already carries. An
// unmatched request has the route "unmatched", so that attackers probing
// paths cannot grow the label set without bound.
func (m *metrics) observe(method, pattern string, status int, d time.Duration) {
	route := routeOf(pattern)
	if route == "" {
		route = "unmatched"
	}
	if !isStandardMethod(method) {
		method = "other"
	}
	seconds := d.Seconds()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests[requestLabels{method, route, status}]++
	h := m.durations[routeLabels{method, route}]
	if h == nil {
		h = &histogram{counts: make([]uint64, len(durationBuckets)+1)}
		m.durations[routeLabels{method, route}] = h
	}
	i, _ := slices.BinarySearch(durationBuckets, seconds) // the first bound >= seconds
	h.counts[i]++
	h.sum += seconds
	h.count++
}

// routeOf is a mux pattern without its method: "GET /a/{id}" is "/a/{id}"
// and "/a" stays "/a". A pattern's path cannot hold a space, so the first
// space ends the method.
func routeOf(pattern string) string {
	if _, rest, ok := strings.Cut(pattern, " "); ok {
		return strings.TrimLeft(rest, " \t")
	}
	return pattern
}

func isStandardMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return true
	}
	return false
}

// hasherStats are the password hasher's figures at one moment.
type hasherStats struct {
	waiting  int // in the queue or running
	runs     int64
	rejected int64
}

// storeCounters are the store's own counters at one moment.
type storeCounters struct {
	txRetries            int64 // transactions run again after a conflict
	plaintextConnections int64 // connections DB_TLS=preferred opened without TLS
}

// write writes every metric in the text exposition format (version 0.0.4).
func (m *metrics) write(w io.Writer, db sql.DBStats, hasher hasherStats, events eventStats, store storeCounters) error {
	bw := bufio.NewWriter(w)
	e := &expositionWriter{w: bw}

	e.family("usersvc_http_requests_total", "counter", "HTTP requests answered, by method, route pattern and status.")
	m.mu.Lock()
	keys := make([]requestLabels, 0, len(m.requests))
	for k := range m.requests {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b requestLabels) int {
		return strings.Compare(a.route+a.method+strconv.Itoa(a.status), b.route+b.method+strconv.Itoa(b.status))
	})
	for _, k := range keys {
		e.sample("usersvc_http_requests_total", labels("method", k.method, "route", k.route, "status", strconv.Itoa(k.status)), float64(m.requests[k]))
	}
	e.family("usersvc_http_request_duration_seconds", "histogram", "Time to answer HTTP requests, by method and route pattern.")
	routes := slices.SortedFunc(maps.Keys(m.durations), func(a, b routeLabels) int {
		return cmp.Or(strings.Compare(a.route, b.route), strings.Compare(a.method, b.method))
	})
	for _, k := range routes {
		h := m.durations[k]
		var cumulative uint64
		for i, bound := range durationBuckets {
			cumulative += h.counts[i]
			e.sample("usersvc_http_request_duration_seconds_bucket", labels("method", k.method, "route", k.route, "le", formatFloat(bound)), float64(cumulative))
		}
		e.sample("usersvc_http_request_duration_seconds_bucket", labels("method", k.method, "route", k.route, "le", "+Inf"), float64(h.count))
		e.sample("usersvc_http_request_duration_seconds_sum", labels("method", k.method, "route", k.route), h.sum)
		e.sample("usersvc_http_request_duration_seconds_count", labels("method", k.method, "route", k.route), float64(h.count))
	}
	m.mu.Unlock()

	e.gauge("usersvc_http_requests_in_flight", "HTTP requests being answered now.", float64(m.inFlight.Load()))
	e.gauge("usersvc_db_max_open_connections", "Most database connections the pool may open.", float64(db.MaxOpenConnections))
	e.gauge("usersvc_db_open_connections", "Database connections open, in use or idle.", float64(db.OpenConnections))
	e.gauge("usersvc_db_in_use_connections", "Database connections in use.", float64(db.InUse))
	e.gauge("usersvc_db_idle_connections", "Database connections idle.", float64(db.Idle))
	e.counter("usersvc_db_wait_count_total", "Times a request waited for a database connection.", float64(db.WaitCount))
	e.counter("usersvc_db_wait_duration_seconds_total", "Time spent waiting for database connections.", db.WaitDuration.Seconds())
	e.gauge("usersvc_bcrypt_waiting", "Password hashing jobs queued or running.", float64(hasher.waiting))
	e.counter("usersvc_bcrypt_runs_total", "bcrypt computations run.", float64(hasher.runs))
	e.counter("usersvc_bcrypt_rejected_total", "Password hashing jobs refused because the queue was full or the wait too long.", float64(hasher.rejected))
	e.counter("usersvc_events_written_total", "Events of the audit trail written by this process (committed with their change).", float64(events.written))
	e.counter("usersvc_events_pruned_total", "Events deleted by this process's pruner, past EVENTS_RETENTION.", float64(events.pruned))
	e.counter("usersvc_db_transaction_retries_total", "Transactions run again after losing a conflict (a deadlock, or a Galera certification failure).", float64(store.txRetries))
	e.counter("usersvc_db_plaintext_connections_total", "Database connections opened without TLS because the server offered none and DB_TLS=preferred fell back to plaintext.", float64(store.plaintextConnections))
	e.family("usersvc_build_info", "gauge", "The running build: always 1, with the version and Go version as labels.")
	e.sample("usersvc_build_info", labels("version", version, "goversion", runtime.Version()), 1)
	writeRuntimeMetrics(e)
	if e.err != nil {
		return e.err
	}
	return bw.Flush()
}

// expositionWriter writes Prometheus text format lines, keeping the first
// write error.
type expositionWriter struct {
	w   *bufio.Writer
	err error
}

func (e *expositionWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}

// family writes the HELP and TYPE lines of a metric family.
func (e *expositionWriter) family(name, kind, help string) {
	e.printf("# HELP %s %s\n# TYPE %s %s\n", name, escapeHelp(help), name, kind)
}

func (e *expositionWriter) sample(name, labels string, value float64) {
	e.printf("%s%s %s\n", name, labels, formatFloat(value))
}

func (e *expositionWriter) gauge(name, help string, value float64) {
	e.family(name, "gauge", help)
	e.sample(name, "", value)
}

func (e *expositionWriter) counter(name, help string, value float64) {
	e.family(name, "counter", help)
	e.sample(name, "", value)
}

// labels formats name/value pairs as {a="x",b="y"}, escaping values as the
// format requires: backslash, double quote and line feed.
func labels(pairs ...string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i+1 < len(pairs); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(pairs[i])
		b.WriteString(`="`)
		b.WriteString(strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(pairs[i+1]))
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

// escapeHelp escapes a HELP text: backslash and line feed.
func escapeHelp(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}

func formatFloat(v float64) string {
	return strconv.FormatFloat(v, 'g', -1, 64)
}
