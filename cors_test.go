package main

import (
	"net/http"
	"strings"
	"testing"
)

// TestCORS: a browser preflight from an allowed origin gets 204 with
// what it may send; from another origin it fails; answers to an allowed
// origin expose the headers a client reads.
func TestCORS(t *testing.T) {
	t.Parallel()
	app := newTestApp(t, func(cfg *Config) { cfg.CORSAllowedOrigins = corsOrigins{"https://app.example.com"} })
	preflight := func(origin string) (int, http.Header) {
		rec := app.do("OPTIONS", "/api/v1/users/me", "", "Authorization", "", "Origin", origin,
			"Access-Control-Request-Method", "PATCH", "Access-Control-Request-Headers", "authorization, content-type, if-match")
		return rec.Code, rec.Header()
	}
	code, h := preflight("https://app.example.com")
	if code != http.StatusNoContent || h.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		!strings.Contains(h.Get("Access-Control-Allow-Methods"), "PATCH") ||
		!strings.Contains(h.Get("Access-Control-Allow-Headers"), "If-Match") ||
		!strings.Contains(h.Get("Access-Control-Allow-Headers"), "Idempotency-Key") ||
		h.Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("allowed preflight: %d %v", code, h)
	}
	code, h = preflight("https://evil.example.com")
	if code != http.StatusForbidden || h.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("other origin's preflight: %d %v", code, h)
	}
	rec := app.do("GET", "/api/v1/users/me", "", "Origin", "https://app.example.com")
	if rec.Code != http.StatusOK || rec.Header().Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		!strings.Contains(rec.Header().Get("Access-Control-Expose-Headers"), "ETag") ||
		!strings.Contains(rec.Header().Get("Vary"), "Origin") {
		t.Errorf("actual request: %d %v", rec.Code, rec.Header())
	}
	if rec := app.do("GET", "/api/v1/users/me", "", "Origin", "https://evil.example.com"); rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("another origin got CORS headers: %v", rec.Header())
	}
	// Without CORS_ALLOWED_ORIGINS nothing is allowed.
	plain := newTestApp(t)
	rec = plain.do("OPTIONS", "/api/v1/users", "", "Origin", "https://app.example.com", "Access-Control-Request-Method", "GET")
	if rec.Header().Get("Access-Control-Allow-Origin") != "" || rec.Code < 400 {
		t.Errorf("no origins configured: %d %v", rec.Code, rec.Header())
	}
}

func TestParseOrigins(t *testing.T) {
	t.Parallel()
	origins, bad := parseOrigins(" https://a.example.com, http://localhost:3000 ,*")
	if len(origins) != 3 || len(bad) != 0 {
		t.Errorf("got %v, bad %v", origins, bad)
	}
	if _, bad := parseOrigins("https://a.example.com/path,ftp://x,HTTPS://UPPER.example.com,a.example.com"); len(bad) != 4 {
		t.Errorf("bad entries: %v", bad)
	}
}

// TestNonCanonicalPaths: a path the mux would redirect is a 404 problem
// naming the canonical path, not an HTML redirect.
func TestNonCanonicalPaths(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	for _, path := range []string{"//api/v1/users", "/api/v1/users/../users", "/api/v1//users/1", "/api/./v1/users"} {
		p := wantProblem(t, app.do("GET", path, ""), http.StatusNotFound)
		if !strings.Contains(p.Detail, "send /api/v1/users") {
			t.Errorf("%s: %q", path, p.Detail)
		}
	}
}
