package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// Truthful outcomes (store_commit.go): a write whose COMMIT reached the
// server but whose answer was lost answers what happened; a write cut
// before its COMMIT answers 503 and left nothing; and where the outcome
// cannot be found out, the answer says so, with its own problem type.

// eventCount is how many events of type typ ("" for any) user id has,
// numbered or not.
func eventCount(t *testing.T, app *testApp, id int64, typ EventType) int {
	t.Helper()
	var n int
	err := app.db.QueryRow("SELECT (SELECT COUNT(*) FROM user_events WHERE user_id = ? AND ? IN ('', type)) + "+
		"(SELECT COUNT(*) FROM user_events_pending WHERE user_id = ? AND ? IN ('', type))", id, typ, id, typ).Scan(&n)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// storedFullName is user id's full_name and version as stored.
func storedFullName(t *testing.T, app *testApp, id int64) (string, int64) {
	t.Helper()
	var name string
	var version int64
	if err := app.db.QueryRow("SELECT COALESCE(full_name, ''), version FROM users WHERE id = ?", id).Scan(&name, &version); err != nil {
		t.Fatal(err)
	}
	return name, version
}

// TestLostCommitAnswerIsSettled: the proxy lets each write's COMMIT reach
// the server and cuts the connection before the answer comes back. The
// service finds out that the change committed and answers it, on the
// fast path (full_name, a delete) and the locking path (a role): never a
// 503 for a change that was applied. Before, each answered 503.
func TestLostCommitAnswerIsSettled(t *testing.T) {
	t.Parallel()
	app, proxy, _ := newProxiedApp(t)
	app.stopWorkers() // its COMMITs would take the cut
	u, _ := app.newUser("lost_commit")
	other, _ := app.newUser("lost_commit_delete")
	_, before := storedFullName(t, app, u.ID)

	proxy.cutOnce("COMMIT", false)
	rec := app.do("PATCH", fmt.Sprintf("/api/v1/users/%d", u.ID), `{"full_name":"Applied Once"}`)
	if rec.Code != http.StatusOK {
		t.Errorf("fast-path PATCH whose commit answer was lost: %d %s; want 200", rec.Code, rec.Body)
	}
	if name, version := storedFullName(t, app, u.ID); name != "Applied Once" || version != before+1 {
		t.Errorf("stored %q version %d; want the change applied once, version %d", name, version, before+1)
	}

	proxy.cutOnce("COMMIT", false)
	rec = app.do("PATCH", fmt.Sprintf("/api/v1/users/%d", u.ID), `{"role":"admin"}`)
	if rec.Code != http.StatusOK {
		t.Errorf("locking-path PATCH whose commit answer was lost: %d %s; want 200", rec.Code, rec.Body)
	}
	var got userJSON
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err == nil && got.Role != "admin" {
		t.Errorf("answered role %q; want admin", got.Role)
	}

	proxy.cutOnce("COMMIT", false)
	rec = app.do("DELETE", fmt.Sprintf("/api/v1/users/%d", other.ID), "")
	if rec.Code != http.StatusNoContent {
		t.Errorf("DELETE whose commit answer was lost: %d %s; want 204", rec.Code, rec.Body)
	}
	if n := eventCount(t, app, other.ID, EventUserDeleted); n != 1 {
		t.Errorf("%d user.deleted events; want 1", n)
	}
}

// TestWriteCutBeforeCommitIsNotApplied: a write whose connection is cut
// after its UPDATE reached the server but before COMMIT was sent (the
// locking path sends one statement per round trip) answers 503, and
// nothing of it stays: the 503 is true, and a retry applies it.
func TestWriteCutBeforeCommitIsNotApplied(t *testing.T) {
	t.Parallel()
	app, proxy, _ := newProxiedApp(t)
	app.stopWorkers()
	u, _ := app.newUser("cut_before_commit")
	before, version := storedFullName(t, app, u.ID)
	proxy.cutOnce("UPDATE users", false)
	// is_active sent as stored: the same change, on the locking path.
	rec := app.do("PATCH", fmt.Sprintf("/api/v1/users/%d", u.ID), `{"full_name":"Never Applied","is_active":true}`)
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("PATCH cut before its COMMIT: %d %s; want 503", rec.Code, rec.Body)
	}
	// The server rolls the cut transaction back; a locking read waits
	// for that.
	var name string
	if err := app.db.QueryRow("SELECT COALESCE(full_name, '') FROM users WHERE id = ? LOCK IN SHARE MODE", u.ID).Scan(&name); err != nil {
		t.Fatal(err)
	}
	if now, v := storedFullName(t, app, u.ID); now != before || v != version {
		t.Errorf("stored %q version %d after a 503; want %q version %d, unchanged", now, v, before, version)
	}
	if n := eventCount(t, app, u.ID, EventUserUpdated); n != 0 {
		t.Errorf("%d user.updated events after a 503; want none", n)
	}
	if rec := app.do("PATCH", fmt.Sprintf("/api/v1/users/%d", u.ID), `{"full_name":"Applied On Retry","is_active":true}`); rec.Code != http.StatusOK {
		t.Errorf("retry: %d %s", rec.Code, rec.Body)
	}
}

// TestUnknownOutcomeIsSaid: when the answer to COMMIT is lost and the
// database cannot be asked what happened, the answer is a 504 of its own
// problem type, without Retry-After: not a 503 that invites a blind retry.
func TestUnknownOutcomeIsSaid(t *testing.T) {
	t.Parallel()
	app, proxy, _ := newProxiedApp(t)
	app.stopWorkers()
	u, _ := app.newUser("unknown_outcome")
	proxy.cutOnce("COMMIT", true)
	rec := app.do("PATCH", fmt.Sprintf("/api/v1/users/%d", u.ID), `{"full_name":"Maybe Applied"}`)
	proxy.setDown(false)
	if rec.Code != http.StatusGatewayTimeout {
		t.Fatalf("PATCH with its commit answer lost and the database gone: %d %s; want 504", rec.Code, rec.Body)
	}
	var p problem
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil || p.Type != problemOutcomeUnknown {
		t.Errorf("problem type %q (%v); want %q", p.Type, err, problemOutcomeUnknown)
	}
	if rec.Header().Get("Retry-After") != "" {
		t.Errorf("Retry-After %q on an unknown outcome; want none", rec.Header().Get("Retry-After"))
	}
	if !strings.Contains(app.logs.String(), `"msg":"write outcome unknown"`) {
		t.Error("an unknown outcome was not logged")
	}
}
