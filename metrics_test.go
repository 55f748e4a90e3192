package main

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// promSample is one parsed sample line.
type promSample struct {
	name   string
	labels map[string]string
	value  float64
}

var (
	metricNameRe = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelNameRe  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// parseExposition parses the Prometheus text format strictly enough to
// catch what a scraper would reject: HELP and TYPE before a family's
// samples, known types, valid names, escaped label values, float values,
// no duplicate series.
func parseExposition(t *testing.T, text string) (map[string]string, []promSample) {
	t.Helper()
	types := map[string]string{}
	helps := map[string]bool{}
	seen := map[string]bool{}
	var samples []promSample
	if !strings.HasSuffix(text, "\n") {
		t.Error("the exposition does not end with a line feed")
	}
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		switch {
		case strings.HasPrefix(line, "# HELP "):
			name, _, _ := strings.Cut(strings.TrimPrefix(line, "# HELP "), " ")
			helps[name] = true
		case strings.HasPrefix(line, "# TYPE "):
			fields := strings.Fields(strings.TrimPrefix(line, "# TYPE "))
			if len(fields) != 2 || !metricNameRe.MatchString(fields[0]) {
				t.Errorf("line %d: bad TYPE line %q", i+1, line)
				continue
			}
			switch fields[1] {
			case "counter", "gauge", "histogram", "summary", "untyped":
			default:
				t.Errorf("line %d: unknown type %q", i+1, fields[1])
			}
			if !helps[fields[0]] {
				t.Errorf("line %d: TYPE of %s before its HELP", i+1, fields[0])
			}
			types[fields[0]] = fields[1]
		case strings.HasPrefix(line, "#") || line == "":
			t.Errorf("line %d: unexpected line %q", i+1, line)
		default:
			s := parseSampleLine(t, i+1, line)
			family := s.name
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if base := strings.TrimSuffix(s.name, suffix); base != s.name && types[base] == "histogram" {
					family = base
				}
			}
			if types[family] == "" {
				t.Errorf("line %d: sample of %s before its TYPE", i+1, s.name)
			}
			key := line[:strings.LastIndex(line, " ")]
			if seen[key] {
				t.Errorf("line %d: duplicate series %s", i+1, key)
			}
			seen[key] = true
			samples = append(samples, s)
		}
	}
	return types, samples
}

func parseSampleLine(t *testing.T, n int, line string) promSample {
	t.Helper()
	s := promSample{labels: map[string]string{}}
	rest := line
	if i := strings.IndexAny(rest, "{ "); i >= 0 {
		s.name, rest = rest[:i], rest[i:]
	}
	if !metricNameRe.MatchString(s.name) {
		t.Errorf("line %d: bad metric name in %q", n, line)
	}
	if strings.HasPrefix(rest, "{") {
		rest = rest[1:]
		for !strings.HasPrefix(rest, "}") {
			name, after, ok := strings.Cut(rest, `="`)
			if !ok || !labelNameRe.MatchString(name) {
				t.Errorf("line %d: bad label in %q", n, line)
				return s
			}
			var value strings.Builder
			i := 0
			for ; i < len(after) && after[i] != '"'; i++ {
				if after[i] == '\\' && i+1 < len(after) {
					i++
					switch after[i] {
					case 'n':
						value.WriteByte('\n')
					case '\\', '"':
						value.WriteByte(after[i])
					default:
						t.Errorf("line %d: bad escape \\%c", n, after[i])
					}
					continue
				}
				if after[i] == '\n' {
					t.Errorf("line %d: raw line feed in a label value", n)
				}
				value.WriteByte(after[i])
			}
			s.labels[name] = value.String()
			rest = strings.TrimPrefix(after[i+1:], ",")
		}
		rest = rest[1:]
	}
	v, err := strconv.ParseFloat(strings.TrimPrefix(rest, " "), 64)
	if err != nil && strings.TrimSpace(rest) != "+Inf" {
		t.Errorf("line %d: bad value in %q", n, line)
	}
	s.value = v
	return s
}

func TestMetricsExposition(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	app.do("GET", userPath(app.adminID), "")
	app.do("GET", "/api/v1/users/999999", "")
	app.do("GET", "/nope/"+strings.Repeat("x", 10), "")
	app.do("BREW", "/health", "")
	rec := app.do("GET", "/metrics", "", "Authorization", "")
	if rec.Code != http.StatusOK || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("got %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	types, samples := parseExposition(t, rec.Body.String())
	for name, kind := range map[string]string{
		"usersvc_http_requests_total": "counter", "usersvc_http_request_duration_seconds": "histogram",
		"usersvc_http_requests_in_flight": "gauge", "usersvc_db_open_connections": "gauge",
		"usersvc_db_in_use_connections": "gauge", "usersvc_db_idle_connections": "gauge",
		"usersvc_db_wait_count_total": "counter", "usersvc_db_wait_duration_seconds_total": "counter",
		"usersvc_bcrypt_waiting": "gauge", "usersvc_bcrypt_runs_total": "counter", "usersvc_build_info": "gauge",
	} {
		if types[name] != kind {
			t.Errorf("%s: type %q, want %s", name, types[name], kind)
		}
	}
	find := func(name string, want map[string]string) *promSample {
		for i, s := range samples {
			match := s.name == name
			for k, v := range want {
				match = match && s.labels[k] == v
			}
			if match {
				return &samples[i]
			}
		}
		return nil
	}
	if s := find("usersvc_http_requests_total", map[string]string{"method": "GET", "route": "/api/v1/users/{id}", "status": "404"}); s == nil || s.value != 1 {
		t.Errorf("the 404 read is not counted: %+v", s)
	}
	if s := find("usersvc_http_requests_total", map[string]string{"method": "other", "route": "unmatched", "status": "405"}); s == nil {
		t.Error("an unknown method is not counted as other/unmatched")
	}
	if s := find("usersvc_build_info", map[string]string{"version": version}); s == nil || s.value != 1 {
		t.Error("no build info")
	}
	// The route label is the pattern alone: the method is its own label.
	for _, s := range samples {
		if route, ok := s.labels["route"]; ok && route != "unmatched" && !strings.HasPrefix(route, "/") {
			t.Errorf("%s: route %q is not a bare pattern", s.name, route)
		}
	}
	// Histograms: cumulative buckets ending in +Inf equal to _count.
	route := "/api/v1/users/{id}"
	var last float64
	for _, bound := range durationBuckets {
		s := find("usersvc_http_request_duration_seconds_bucket", map[string]string{"method": "GET", "route": route, "le": formatFloat(bound)})
		if s == nil || s.value < last {
			t.Fatalf("bucket le=%v: %+v after %v", bound, s, last)
		}
		last = s.value
	}
	inf := find("usersvc_http_request_duration_seconds_bucket", map[string]string{"method": "GET", "route": route, "le": "+Inf"})
	count := find("usersvc_http_request_duration_seconds_count", map[string]string{"method": "GET", "route": route})
	sum := find("usersvc_http_request_duration_seconds_sum", map[string]string{"method": "GET", "route": route})
	if inf == nil || count == nil || sum == nil || inf.value != count.value || count.value != 2 || inf.value < last || sum.value <= 0 {
		t.Errorf("histogram end: +Inf %+v, count %+v, sum %+v", inf, count, sum)
	}
}

func TestMetricLabelEscaping(t *testing.T) {
	t.Parallel()
	got := labels("route", "a\"b\\c\nd", "le", "+Inf")
	if want := `{route="a\"b\\c\nd",le="+Inf"}`; got != want {
		t.Errorf("got %s, want %s", got, want)
	}
	_, samples := parseExposition(t, fmt.Sprintf("# HELP x_total help\n# TYPE x_total counter\nx_total%s 3\n", got))
	if len(samples) != 1 || samples[0].labels["route"] != "a\"b\\c\nd" {
		t.Errorf("round trip: %+v", samples)
	}
}

func TestHealthLiveAndReady(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	for _, path := range []string{"/health/live", "/health/ready"} {
		if rec := app.do("GET", path, "", "Authorization", ""); rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != `{"status":"ok"}` {
			t.Errorf("%s: %d %s", path, rec.Code, rec.Body)
		}
	}
	_, serverCfg := testServer(t)
	proxy := startFaultProxy(t, serverCfg.Addr)
	proxy.setDown(true)
	down := newTestAppOn(t, newTestDatabase(t, proxy.addr()))
	if rec := down.do("GET", "/health/live", ""); rec.Code != http.StatusOK {
		t.Errorf("live with the database down: %d", rec.Code)
	}
	wantProblem(t, down.do("GET", "/health/ready", ""), http.StatusServiceUnavailable)
	proxy.setDown(false)
	if rec := down.do("GET", "/health/ready", ""); rec.Code != http.StatusOK {
		t.Errorf("ready once the database is back: %d %s", rec.Code, rec.Body)
	}
	mustExec(t, down, "DROP TABLE auth_tokens") // schema gone under a running service
	mustExec(t, down, "DROP TABLE users")
	wantProblem(t, down.do("GET", "/health/ready", ""), http.StatusServiceUnavailable)
}

func TestRouteOf(t *testing.T) {
	t.Parallel()
	for pattern, want := range map[string]string{
		"GET /api/v1/users/{id}": "/api/v1/users/{id}",
		"POST  /api/v1/users":    "/api/v1/users",
		"/health":                "/health",
		"GET example.com/x":      "example.com/x",
		"":                       "",
	} {
		if got := routeOf(pattern); got != want {
			t.Errorf("routeOf(%q) = %q, want %q", pattern, got, want)
		}
	}
}
