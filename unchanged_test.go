package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// A write that changes nothing is not a change (docs/events.md): these
// tests go through the real handlers on a real database.

// TestPutOfTheGetBodyChangesNothing: a PUT of the body a GET gave, sent
// back unchanged by the user themselves and by an admin, is a 200 with
// the user as stored: the same ETag and updated_at, no event, and no
// security log line for the role and active flag sent back.
func TestPutOfTheGetBodyChangesNothing(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	me, token := app.newUser("sameagain")
	if rec := app.do("PATCH", userPath(me.ID), `{"full_name":"Same Again"}`); rec.Code != http.StatusOK {
		t.Fatalf("set full_name: %d %s", rec.Code, rec.Body)
	}
	for _, who := range []struct {
		name    string
		headers []string
	}{{"self", as(token)}, {"admin", nil}} {
		t.Run(who.name, func(t *testing.T) {
			get := app.do("GET", userPath(me.ID), "", who.headers...)
			if get.Code != http.StatusOK {
				t.Fatalf("GET: %d %s", get.Code, get.Body)
			}
			headers := append([]string{"If-Match", get.Header().Get("ETag")}, who.headers...)
			wantNoChange(t, app, "PUT", userPath(me.ID), get.Body.String(), headers...)
		})
	}
}

// TestPatchOfUnchangedFieldsChangesNothing: a PATCH that sends only
// fields as stored changes nothing, on the fast path (username, email,
// full_name) and on the locking path (role, is_active), as the user and
// as an admin.
func TestPatchOfUnchangedFieldsChangesNothing(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	me, token := app.newUser("patchsame")
	if rec := app.do("PATCH", userPath(me.ID), `{"full_name":"Patch Same"}`); rec.Code != http.StatusOK {
		t.Fatalf("set full_name: %d %s", rec.Code, rec.Body)
	}
	tests := []struct {
		name, path, body string
		headers          []string
	}{
		{"full_name, by an admin (fast path)", userPath(me.ID), `{"full_name":"Patch Same"}`, nil},
		{"full_name, by the user (fast path)", "/api/v1/users/me", `{"full_name":"Patch Same"}`, as(token)},
		{"username and email, by an admin (fast path)", userPath(me.ID), `{"username":"patchsame","email":"patchsame@example.com"}`, nil},
		{"own email as stored, without the current password", "/api/v1/users/me", `{"email":"patchsame@example.com"}`, as(token)},
		{"role, by an admin (locking path)", userPath(me.ID), `{"role":"user"}`, nil},
		{"is_active, by an admin (locking path)", userPath(me.ID), `{"is_active":true}`, nil},
		{"role and is_active, by the user (locking path)", userPath(me.ID), `{"role":"user","is_active":true}`, as(token)},
		{"an admin's own role and flag", userPath(app.adminID), `{"role":"admin","is_active":true}`, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantNoChange(t, app, "PATCH", tt.path, tt.body, tt.headers...)
		})
	}
	t.Run("a new role with the flag unchanged logs the role only", func(t *testing.T) {
		rec := app.do("PATCH", userPath(me.ID), `{"role":"admin","is_active":true}`, "X-Request-ID", "promote-patchsame")
		if rec.Code != http.StatusOK {
			t.Fatalf("promote: %d %s", rec.Code, rec.Body)
		}
		if got := securityLines(t, app, "promote-patchsame"); !slices.Equal(got, []string{"user.role_set"}) {
			t.Errorf("security log lines: got %v, want [user.role_set]", got)
		}
	})
}

// TestUnchangedWritesAreStillChecked: a write that would change nothing is
// still refused for a stale If-Match, for a caller without the right, and
// for an invalid field; and a password is always a change.
func TestUnchangedWritesAreStillChecked(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	alice, _ := app.newUser("checkedalice")
	_, bobToken := app.newUser("checkedbob")
	stale := []string{"If-Match", `"999"`}
	tests := []struct {
		name, body string
		headers    []string
		want       int
		fields     []string
	}{
		{"a stale If-Match (fast path)", `{"username":"checkedalice"}`, stale, 412, nil},
		{"a stale If-Match (locking path)", `{"role":"user"}`, stale, 412, nil},
		{"another's user (fast path)", `{"username":"checkedalice"}`, as(bobToken), 403, nil},
		{"another's user (locking path)", `{"role":"user","is_active":true}`, as(bobToken), 403, nil},
		{"an invalid field beside an unchanged one", `{"username":"checkedalice","email":"not an email"}`, nil, 400, []string{"email"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := app.do("GET", userPath(alice.ID), "").Header().Get("ETag")
			wantProblem(t, app.do("PATCH", userPath(alice.ID), tt.body, tt.headers...), tt.want, tt.fields...)
			if after := app.do("GET", userPath(alice.ID), "").Header().Get("ETag"); after != before {
				t.Errorf("a refused write moved the ETag from %s to %s", before, after)
			}
		})
	}
	t.Run("the same password is a new hash", func(t *testing.T) {
		before := app.do("GET", userPath(alice.ID), "").Header().Get("ETag")
		rec := app.do("PATCH", userPath(alice.ID), `{"password":"user password"}`, "X-Request-ID", "same-password")
		if rec.Code != http.StatusOK || rec.Header().Get("ETag") == before {
			t.Errorf("PATCH of the same password: %d, ETag %s (was %s); want 200 and a new ETag", rec.Code, rec.Header().Get("ETag"), before)
		}
		if got := securityLines(t, app, "same-password"); !slices.Equal(got, []string{"user.password_changed"}) {
			t.Errorf("security log lines: got %v, want [user.password_changed]", got)
		}
	})
}

// TestHashUpgradeAtSignInIsNoChange: a sign-in through a replica with
// another BCRYPT_COST rehashes the password, and that is not a change of
// the account's data: password_hash alone is rewritten, updated_at and
// version (the ETag) stay, and no event is recorded.
func TestHashUpgradeAtSignInIsNoChange(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	u, _ := app.newUser("rehashed")
	replica := newTestAppOn(t, app.db, func(c *Config) { c.BcryptCost = bcrypt.MinCost + 1 })
	before := storedRow(t, app, u.ID)
	app.waitSequenced()
	_, cursor := app.eventsAfter("/api/v1/events", "")
	time.Sleep(2 * time.Millisecond) // let the clock move past updated_at
	replica.login("rehashed", "user password")
	after := storedRow(t, app, u.ID)
	if cost, err := bcrypt.Cost([]byte(after.hash)); err != nil || cost != bcrypt.MinCost+1 || after.hash == before.hash {
		t.Fatalf("the hash was not upgraded to the replica's cost: cost %d, %v", cost, err)
	}
	if after.updatedAt != before.updatedAt || after.version != before.version {
		t.Errorf("the upgrade moved updated_at %s to %s and version %d to %d; want both unchanged",
			before.updatedAt, after.updatedAt, before.version, after.version)
	}
	app.waitSequenced()
	if events, _ := app.eventsAfter("/api/v1/events", cursor); len(events) != 0 {
		t.Errorf("the upgrade recorded events: %+v", events)
	}
	app.login("rehashed", "user password") // and back to the first replica's cost
}

// storedUser is what a test reads of a user's row directly.
type storedUser struct {
	hash, updatedAt string
	version         int64
}

// storedRow reads the user's hash, updated_at and version from the table.
func storedRow(t *testing.T, app *testApp, id int64) storedUser {
	t.Helper()
	var u storedUser
	err := app.db.QueryRow("SELECT password_hash, DATE_FORMAT(updated_at, '%Y-%m-%d %H:%i:%s.%f'), version FROM users WHERE id = ?", id).
		Scan(&u.hash, &u.updatedAt, &u.version)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// noChangeRequests numbers the requests of wantNoChange, for their ids.
var noChangeRequests atomic.Int64

// wantNoChange sends the request and checks that it changed nothing: a 200
// with the user as stored before it and the same ETag, the same user
// stored after it, no event, and no security log line.
func wantNoChange(t *testing.T, app *testApp, method, path, body string, headers ...string) {
	t.Helper()
	id := strings.TrimPrefix(path, "/api/v1/users/")
	if id == "me" {
		id = fmt.Sprint(callerOf(t, app, headers))
	}
	before := app.do("GET", "/api/v1/users/"+id, "")
	app.waitSequenced()
	_, cursor := app.eventsAfter("/api/v1/events", "")
	time.Sleep(2 * time.Millisecond) // let the clock move past updated_at
	requestID := fmt.Sprintf("no-change-%d", noChangeRequests.Add(1))
	rec := app.do(method, path, body, append([]string{"X-Request-ID", requestID}, headers...)...)
	if rec.Code != http.StatusOK {
		t.Fatalf("%s %s: got %d %s, want 200", method, body, rec.Code, rec.Body)
	}
	if got, want := rec.Header().Get("ETag"), before.Header().Get("ETag"); got != want {
		t.Errorf("ETag: got %s, want %s unchanged", got, want)
	}
	if got, want := decodeJSON[userJSON](t, rec), decodeJSON[userJSON](t, before); !sameUserJSON(got, want) {
		t.Errorf("answer:\n got  %s\n want %s (as stored before)", strings.TrimSpace(rec.Body.String()), before.Body)
	}
	after := app.do("GET", "/api/v1/users/"+id, "")
	if after.Header().Get("ETag") != before.Header().Get("ETag") || after.Body.String() != before.Body.String() {
		t.Errorf("stored user moved:\n before %s %s\n after  %s %s", before.Header().Get("ETag"), before.Body,
			after.Header().Get("ETag"), after.Body)
	}
	app.waitSequenced()
	if events, _ := app.eventsAfter("/api/v1/events", cursor); len(events) != 0 {
		t.Errorf("events recorded: %+v", events)
	}
	if lines := securityLines(t, app, requestID); len(lines) != 0 {
		t.Errorf("security log lines: %v", lines)
	}
}

// sameUserJSON reports whether two users as the API returns them are equal.
func sameUserJSON(a, b userJSON) bool {
	same := equalPtr(a.FullName, b.FullName)
	a.FullName, b.FullName = nil, nil
	return same && a == b
}

// callerOf is the id of the user whose token headers send (the admin's
// when they send none).
func callerOf(t *testing.T, app *testApp, headers []string) int64 {
	t.Helper()
	rec := app.do("GET", "/api/v1/users/me", "", headers...)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET me: %d %s", rec.Code, rec.Body)
	}
	return decodeJSON[userJSON](t, rec).ID
}

// securityLines returns the event of each security log line of the
// request with the given id.
func securityLines(t *testing.T, app *testApp, requestID string) []string {
	t.Helper()
	var events []string
	for _, line := range strings.Split(app.logs.String(), "\n") {
		var entry struct {
			Msg       string `json:"msg"`
			Event     string `json:"event"`
			RequestID string `json:"request_id"`
		}
		if line == "" || json.Unmarshal([]byte(line), &entry) != nil {
			continue
		}
		if entry.Msg == "security" && entry.RequestID == requestID {
			events = append(events, entry.Event)
		}
	}
	return events
}
