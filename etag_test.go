package main

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
)

func TestETagAndIfNoneMatch(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	u := app.createUser(`{"username":"etta","email":"etta@example.com","password":"rq7-tz4w"}`)
	rec := app.do("GET", userPath(u.ID), "")
	etag := rec.Header().Get("ETag")
	if etag == "" || etag[0] != '"' {
		t.Fatalf("ETag: %q", etag)
	}
	tests := []struct {
		ifNoneMatch string
		want        int
	}{
		{etag, http.StatusNotModified},
		{"W/" + etag, http.StatusNotModified},
		{`"nope", ` + etag, http.StatusNotModified},
		{"*", http.StatusNotModified},
		{`"nope"`, http.StatusOK},
		{"garbage", http.StatusOK},
	}
	for _, tt := range tests {
		rec := app.do("GET", userPath(u.ID), "", "If-None-Match", tt.ifNoneMatch)
		if rec.Code != tt.want {
			t.Errorf("If-None-Match %s: got %d, want %d", tt.ifNoneMatch, rec.Code, tt.want)
		}
		if rec.Code == http.StatusNotModified && (rec.Body.Len() != 0 || rec.Header().Get("ETag") != etag) {
			t.Errorf("304 with body %q or ETag %q", rec.Body, rec.Header().Get("ETag"))
		}
	}
	// Every change moves the tag, including one the representation does not
	// show. (A role sent as stored is no change: unchanged_test.go.)
	seen := map[string]bool{etag: true}
	for _, body := range []string{`{"full_name":"Etta"}`, `{"password":"another password"}`, `{"role":"admin"}`} {
		rec := app.do("PATCH", userPath(u.ID), body)
		next := rec.Header().Get("ETag")
		if rec.Code != http.StatusOK || seen[next] {
			t.Errorf("PATCH %s: %d, ETag %q seen before", body, rec.Code, next)
		}
		seen[next] = true
		if got := app.do("GET", userPath(u.ID), "").Header().Get("ETag"); got != next {
			t.Errorf("GET after PATCH: ETag %q, want %q", got, next)
		}
	}
	if rec := app.do("POST", "/api/v1/users", `{"username":"ettb","email":"ettb@example.com","password":"rq7-tz4w"}`); rec.Header().Get("ETag") == "" {
		t.Error("201 without ETag")
	}
}

func TestIfMatch(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	u := app.createUser(`{"username":"ivy","email":"ivy@example.com","password":"rq7-tz4w","full_name":"Ivy"}`)
	current := app.do("GET", userPath(u.ID), "").Header().Get("ETag")
	stale := `"0"`

	for _, method := range []string{"PUT", "PATCH"} {
		wantProblem(t, app.do(method, userPath(u.ID), `{"full_name":"Lost"}`, "If-Match", stale), http.StatusPreconditionFailed)
		wantProblem(t, app.do(method, userPath(u.ID), `{"full_name":"Lost"}`, "If-Match", "W/"+current), http.StatusPreconditionFailed)
		wantProblem(t, app.do(method, userPath(u.ID), `{"full_name":"Lost"}`, "If-Match", "not-a-tag"), http.StatusBadRequest)
	}
	wantProblem(t, app.do("DELETE", userPath(u.ID), "", "If-Match", stale), http.StatusPreconditionFailed)
	if got := decodeJSON[userJSON](t, app.do("GET", userPath(u.ID), "")); *got.FullName != "Ivy" {
		t.Fatalf("a refused write happened: %+v", got)
	}

	rec := app.do("PATCH", userPath(u.ID), `{"full_name":"Ivy Two"}`, "If-Match", `"x", `+current)
	if rec.Code != http.StatusOK {
		t.Fatalf("PATCH with the current ETag: %d %s", rec.Code, rec.Body)
	}
	next := rec.Header().Get("ETag")
	wantProblem(t, app.do("DELETE", userPath(u.ID), "", "If-Match", current), http.StatusPreconditionFailed)
	if rec := app.do("DELETE", userPath(u.ID), "", "If-Match", next); rec.Code != http.StatusNoContent {
		t.Errorf("DELETE with the current ETag: %d", rec.Code)
	}
	wantProblem(t, app.do("PATCH", userPath(u.ID), `{"full_name":"x"}`, "If-Match", "*"), http.StatusNotFound)
}

// TestNoLostUpdates: clients that read the same version and then write
// with If-Match all at once: exactly one write wins, the others get 412.
func TestNoLostUpdates(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	u := app.createUser(`{"username":"race","email":"race@example.com","password":"rq7-tz4w"}`)
	etag := app.do("GET", userPath(u.ID), "").Header().Get("ETag")
	const writers = 12
	codes := make([]int, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			codes[i] = app.do("PATCH", userPath(u.ID), fmt.Sprintf(`{"full_name":"writer %d"}`, i), "If-Match", etag).Code
		})
	}
	wg.Wait()
	if counts := tally(codes); counts[http.StatusOK] != 1 || counts[http.StatusPreconditionFailed] != writers-1 {
		t.Errorf("statuses %v: want one 200 and %d 412s", codes, writers-1)
	}
	var version int64
	app.db.QueryRow("SELECT version FROM users WHERE id = ?", u.ID).Scan(&version)
	if version != 2 {
		t.Errorf("version %d after one winning write, want 2", version)
	}
}
