package main

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// Idempotency-Key on PUT, PATCH and DELETE (writeKeyed): the contract of
// create. Before, the header was ignored on these routes, and a retry
// applied the change a second time.

// TestIdempotentUpdates: a PATCH (fast path), a PUT and a PATCH on the
// locking path, each sent three times with one key, apply once: one
// version, one set of events, and the same answer three times, the
// retries marked Idempotent-Replayed. The key with another body, method,
// path or If-Match is a 422.
func TestIdempotentUpdates(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	u, _ := app.newUser("keyed_update")
	path := fmt.Sprintf("/api/v1/users/%d", u.ID)
	for _, c := range []struct{ name, method, key, body string }{
		{"fast-path PATCH", "PATCH", "patch-1", `{"full_name":"Once Only"}`},
		{"PUT", "PUT", "put-1", app.userBodyWith(u.ID, map[string]any{"full_name": "Put Once", "email": "keyed_update2@example.com"})},
		{"locking-path PATCH", "PATCH", "patch-2", `{"is_active":false}`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, version := storedFullName(t, app, u.ID)
			events := eventCount(t, app, u.ID, "")
			first := app.do(c.method, path, c.body, "Idempotency-Key", c.key)
			if first.Code != http.StatusOK || first.Header().Get("Idempotent-Replayed") != "" {
				t.Fatalf("first: %d %s", first.Code, first.Body)
			}
			for range 2 {
				retry := app.do(c.method, path, c.body, "Idempotency-Key", c.key)
				if retry.Code != http.StatusOK || retry.Body.String() != first.Body.String() ||
					retry.Header().Get("ETag") != first.Header().Get("ETag") || retry.Header().Get("Idempotent-Replayed") != "true" {
					t.Errorf("retry: %d %s %v; want the first answer again", retry.Code, retry.Body, retry.Header())
				}
			}
			if _, now := storedFullName(t, app, u.ID); now != version+1 {
				t.Errorf("version %d after three sends; want %d, applied once", now, version+1)
			}
			if got := eventCount(t, app, u.ID, "") - events; got < 1 || got > 2 {
				t.Errorf("%d new events; want the one change's", got)
			}
			other := strings.Replace(c.body, "}", `,"username":"someone_else"}`, 1)
			wantProblem(t, app.do(c.method, path, other, "Idempotency-Key", c.key), http.StatusUnprocessableEntity)
		})
	}
	wantProblem(t, app.do("PUT", path, `{"full_name":"Once Only"}`, "Idempotency-Key", "patch-1"), http.StatusUnprocessableEntity)
	wantProblem(t, app.do("PATCH", path, `{"full_name":"Once Only"}`, "Idempotency-Key", "patch-1", "If-Match", `"1"`), http.StatusUnprocessableEntity)
	wantProblem(t, app.do("PATCH", userPath(app.adminID), `{"full_name":"Once Only"}`, "Idempotency-Key", "patch-1"), http.StatusUnprocessableEntity)
}

// TestIdempotentDelete: a DELETE sent again with its key gets its 204
// again, not a 404; a refusal is kept too, and the key of an anonymous
// caller is refused before any work (401).
func TestIdempotentDelete(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	u, token := app.newUser("keyed_delete")
	path := fmt.Sprintf("/api/v1/users/%d", u.ID)
	// Authorized before the key is read: a non-admin's DELETE is a 403
	// that takes no key.
	wantProblem(t, app.do("DELETE", path, "", "Idempotency-Key", "del-1", "Authorization", "Bearer "+token), http.StatusForbidden)
	stale := []string{"Idempotency-Key", "del-stale", "If-Match", `"99"`}
	wantProblem(t, app.do("DELETE", path, "", stale...), http.StatusPreconditionFailed)
	if again := app.do("DELETE", path, "", stale...); again.Code != http.StatusPreconditionFailed || again.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("a refused DELETE sent again: %d %v; want its 412 replayed", again.Code, again.Header())
	}
	for i := range 3 {
		rec := app.do("DELETE", path, "", "Idempotency-Key", "del-1")
		replayed := rec.Header().Get("Idempotent-Replayed") == "true"
		if rec.Code != http.StatusNoContent || replayed != (i > 0) {
			t.Errorf("send %d: %d %s replayed=%v; want 204, replayed after the first", i+1, rec.Code, rec.Body, replayed)
		}
	}
	if n := eventCount(t, app, u.ID, EventUserDeleted); n != 1 {
		t.Errorf("%d user.deleted events; want 1", n)
	}
	wantProblem(t, app.do("DELETE", path, "", "Idempotency-Key", "del-2", "Authorization", ""), http.StatusUnauthorized)
}

// TestRetryAfterUnknownOutcomeAppliesOnce: a keyed PATCH whose COMMIT
// reached the server, while its answer and the database were lost, is
// answered 504 (outcome unknown); the client retries with the same key
// once the database is back and gets the recorded answer: applied once.
func TestRetryAfterUnknownOutcomeAppliesOnce(t *testing.T) {
	t.Parallel()
	app, proxy, _ := newProxiedApp(t)
	app.stopWorkers()
	u, _ := app.newUser("keyed_unknown")
	_, version := storedFullName(t, app, u.ID)
	path := fmt.Sprintf("/api/v1/users/%d", u.ID)
	proxy.cutOnce("COMMIT", true)
	first := app.do("PATCH", path, `{"full_name":"Exactly Once"}`, "Idempotency-Key", "unknown-1")
	proxy.setDown(false)
	if first.Code != http.StatusGatewayTimeout {
		t.Fatalf("first: %d %s; want 504", first.Code, first.Body)
	}
	retry := app.do("PATCH", path, `{"full_name":"Exactly Once"}`, "Idempotency-Key", "unknown-1")
	if retry.Code != http.StatusOK || retry.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("retry: %d %s %v; want the recorded 200", retry.Code, retry.Body, retry.Header())
	}
	if name, now := storedFullName(t, app, u.ID); name != "Exactly Once" || now != version+1 {
		t.Errorf("stored %q version %d; want the change once, version %d", name, now, version+1)
	}
}
