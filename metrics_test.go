package main

import (
	"fmt"
	"math"
	"net/http"
	"regexp"
	"runtime"
	runtimemetrics "runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"
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
				base := strings.TrimSuffix(s.name, suffix)
				if base != s.name && (types[base] == "histogram" || types[base] == "summary" && suffix != "_bucket") {
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
	rec := app.manage("GET", "/metrics", "Authorization", "")
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
		if rec := app.manage("GET", path, "Authorization", ""); rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != `{"status":"ok"}` {
			t.Errorf("%s: %d %s", path, rec.Code, rec.Body)
		}
		// The public listener keeps only /health.
		wantProblem(t, app.do("GET", path, "", "Authorization", ""), http.StatusNotFound)
	}
	wantProblem(t, app.do("GET", "/metrics", "", "Authorization", ""), http.StatusNotFound)
	_, serverCfg := testServer(t)
	proxy := startFaultProxy(t, serverCfg.Addr)
	proxy.setDown(true)
	down := newTestAppOn(t, newTestDatabase(t, proxy.addr()))
	if rec := down.manage("GET", "/health/live"); rec.Code != http.StatusOK {
		t.Errorf("live with the database down: %d", rec.Code)
	}
	wantProblem(t, down.manage("GET", "/health/ready"), http.StatusServiceUnavailable)
	proxy.setDown(false)
	// The first ready check after the outage connects and applies the
	// schema within the probe's 1 s: on a loaded machine that can take
	// longer, so the test waits for readiness rather than timing it.
	eventually(t, 30*time.Second, "ready once the database is back", func() bool {
		return down.manage("GET", "/health/ready").Code == http.StatusOK
	})
	mustExec(t, down, "DROP TABLE auth_tokens, user_external_ids, provisioning_tokens") // schema gone under a running service
	mustExec(t, down, "DROP TABLE users")
	wantProblem(t, down.manage("GET", "/health/ready"), http.StatusServiceUnavailable)
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

func TestMetricsRuntimeAndProcess(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	app.do("GET", userPath(app.adminID), "")
	rec := app.manage("GET", "/metrics", "Authorization", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("got %d", rec.Code)
	}
	scraped := time.Now()
	types, samples := parseExposition(t, rec.Body.String())
	want := map[string]string{
		"go_goroutines": "gauge", "go_threads": "gauge", "go_info": "gauge", "go_gc_duration_seconds": "summary",
		"go_memstats_alloc_bytes": "gauge", "go_memstats_alloc_bytes_total": "counter", "go_memstats_sys_bytes": "gauge",
		"go_memstats_heap_alloc_bytes": "gauge", "go_memstats_heap_inuse_bytes": "gauge", "go_memstats_heap_idle_bytes": "gauge",
		"go_memstats_heap_released_bytes": "gauge", "go_memstats_heap_objects": "gauge", "go_memstats_mallocs_total": "counter",
		"go_memstats_frees_total": "counter", "go_memstats_next_gc_bytes": "gauge", "go_memstats_last_gc_time_seconds": "gauge",
		"go_memstats_gc_sys_bytes": "gauge", "go_memstats_stack_inuse_bytes": "gauge",
		"process_start_time_seconds": "gauge",
	}
	if runtime.GOOS == "linux" { // elsewhere there is no /proc to read them from
		for name, kind := range map[string]string{
			"process_cpu_seconds_total": "counter", "process_resident_memory_bytes": "gauge", "process_virtual_memory_bytes": "gauge",
			"process_open_fds": "gauge", "process_max_fds": "gauge",
		} {
			want[name] = kind
		}
	}
	for name, kind := range want {
		if types[name] != kind {
			t.Errorf("%s: type %q, want %s", name, types[name], kind)
		}
	}
	value := map[string]float64{}
	var quantiles []float64
	for _, s := range samples {
		if s.value < 0 || math.IsNaN(s.value) || math.IsInf(s.value, 0) {
			t.Errorf("%s%v: value %v", s.name, s.labels, s.value)
		}
		switch {
		case s.name == "go_gc_duration_seconds":
			quantiles = append(quantiles, s.value)
		case s.name == "go_info":
			if s.labels["version"] != runtime.Version() || s.value != 1 {
				t.Errorf("go_info%v %v", s.labels, s.value)
			}
		case len(s.labels) == 0:
			value[s.name] = s.value
		}
	}
	if len(quantiles) != 5 {
		t.Errorf("go_gc_duration_seconds: %d quantiles, want 5", len(quantiles))
	}
	for i := 1; i < len(quantiles); i++ {
		if quantiles[i] < quantiles[i-1] {
			t.Errorf("go_gc_duration_seconds quantiles decrease: %v", quantiles)
		}
	}
	atLeast := func(name string, min float64) {
		t.Helper()
		if v, ok := value[name]; !ok || v < min {
			t.Errorf("%s = %v (present %v), want at least %v", name, v, ok, min)
		}
	}
	atLeast("go_goroutines", 1)
	atLeast("go_threads", 1)
	atLeast("go_memstats_alloc_bytes", 1)
	atLeast("go_memstats_heap_objects", 1)
	atLeast("go_memstats_sys_bytes", value["go_memstats_heap_inuse_bytes"])
	atLeast("go_memstats_heap_inuse_bytes", value["go_memstats_heap_alloc_bytes"])
	atLeast("go_memstats_alloc_bytes_total", value["go_memstats_alloc_bytes"])
	atLeast("go_memstats_mallocs_total", value["go_memstats_frees_total"]+1)
	atLeast("go_memstats_next_gc_bytes", 1)
	atLeast("go_memstats_stack_inuse_bytes", 1)
	atLeast("go_memstats_gc_sys_bytes", 1)
	if value["go_memstats_alloc_bytes"] != value["go_memstats_heap_alloc_bytes"] {
		t.Errorf("alloc %v != heap alloc %v", value["go_memstats_alloc_bytes"], value["go_memstats_heap_alloc_bytes"])
	}
	if count := value["go_gc_duration_seconds_count"]; count > 0 {
		if last := value["go_memstats_last_gc_time_seconds"]; last < float64(scraped.Add(-time.Hour).Unix()) || last > float64(scraped.Unix()+1) {
			t.Errorf("last GC at %v, with %v GCs", last, count)
		}
	}
	// The start time comes from /proc in whole seconds of boot time plus
	// ticks: allow a second of rounding, no more.
	start := value["process_start_time_seconds"]
	if now := float64(scraped.UnixNano()) / 1e9; start > now+1 || start < now-3600 {
		t.Errorf("process_start_time_seconds %v, now %v", start, now)
	}
	if runtime.GOOS == "linux" {
		atLeast("process_resident_memory_bytes", 1<<20)
		atLeast("process_virtual_memory_bytes", value["process_resident_memory_bytes"])
		atLeast("process_open_fds", 1)
		atLeast("process_max_fds", value["process_open_fds"])
		atLeast("process_cpu_seconds_total", 0) // in ticks of 10 ms: a young process may read 0
	}
}

// TestRuntimeMetricsNamesSupported catches a Go upgrade that drops a
// runtime/metrics sample the go_memstats_* families are read from.
func TestRuntimeMetricsNamesSupported(t *testing.T) {
	t.Parallel()
	supported := map[string]runtimemetrics.ValueKind{}
	for _, d := range runtimemetrics.All() {
		supported[d.Name] = d.Kind
	}
	for _, name := range runtimeMetricNames {
		if kind, ok := supported[name]; !ok || kind != runtimemetrics.KindUint64 {
			t.Errorf("%s: supported %v, kind %v", name, ok, kind)
		}
	}
}

func TestMetricsProcStatParsing(t *testing.T) {
	t.Parallel()
	// A command name may hold spaces and parentheses.
	stat := []byte("4242 (we ird) (x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 12 0 987 1234567 890 18446744073709551615\n")
	for field, want := range map[int]uint64{4: 1, 14: 250, 15: 50, 20: 12, 22: 987, 23: 1234567, 24: 890} {
		if got, ok := statField(stat, field); !ok || got != want {
			t.Errorf("field %d: %d %v, want %d", field, got, ok, want)
		}
	}
	for _, field := range []int{1, 2, 3, 30} { // the pid and command are not numbers counted here; S is no number; past the end
		if got, ok := statField(stat, field); ok {
			t.Errorf("field %d: %d, want none", field, got)
		}
	}
	limits := []byte("Limit                     Soft Limit           Hard Limit           Units     \n" +
		"Max processes             127368               127368               processes \n" +
		"Max open files            1024                 524288               files     \n")
	if got, ok := softLimit(limits, "Max open files"); !ok || got != 1024 {
		t.Errorf("soft limit %d %v", got, ok)
	}
	if _, ok := softLimit([]byte("Max open files            unlimited            unlimited            files\n"), "Max open files"); ok {
		t.Error("unlimited parsed as a number")
	}
}

// TestMetricsRuntimeScrapeAllocations keeps reading the runtime and the
// process cheap: the buffers are reused, so what allocates is opening the
// /proc files and the names of /proc/self/fd.
func TestMetricsRuntimeScrapeAllocations(t *testing.T) {
	var s runtimeSnapshot
	readRuntime(&s) // the first read allocates the reused buffers
	allocs := testing.AllocsPerRun(20, func() { readRuntime(&s) })
	t.Logf("%v allocations per read, %d open fds", allocs, s.openFDs)
	if limit := 20 + float64(s.openFDs); allocs > limit {
		t.Errorf("%v allocations per read, want at most %v", allocs, limit)
	}
}
