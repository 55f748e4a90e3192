package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// eventJSON is an event as the feed returns it.
type eventJSON struct {
	ID            int64           `json:"id"`
	Type          string          `json:"type"`
	Time          string          `json:"time"`
	UserID        int64           `json:"user_id"`
	ActorType     string          `json:"actor_type"`
	ActorID       *int64          `json:"actor_id"`
	RequestID     string          `json:"request_id"`
	ClientAddress string          `json:"client_address"`
	Changes       json.RawMessage `json:"changes"`
}

// eventPageJSON is a page of the feed as the API returns it.
type eventPageJSON struct {
	Items      []eventJSON  `json:"items"`
	NextCursor string       `json:"next_cursor"`
	Pending    *[]eventJSON `json:"pending"` // nil when absent
}

// eventsPage gets one page of path (the feed or a user's) as the admin,
// failing the test on anything but 200.
func (a *testApp) eventsPage(path string, params ...string) eventPageJSON {
	a.t.Helper()
	values := url.Values{}
	for i := 0; i+1 < len(params); i += 2 {
		values.Set(params[i], params[i+1])
	}
	rec := a.do("GET", path+"?"+values.Encode(), "")
	if rec.Code != http.StatusOK {
		a.t.Fatalf("GET %s?%s: %d %s", path, values.Encode(), rec.Code, rec.Body)
	}
	return decodeJSON[eventPageJSON](a.t, rec)
}

// waitSequenced waits until the sequencer has numbered every committed
// event.
func (a *testApp) waitSequenced() {
	a.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var pending int
		if err := a.db.QueryRow(a.store.causal("SELECT COUNT(*) FROM user_events_pending")).Scan(&pending); err != nil {
			a.t.Fatal(err)
		}
		if pending == 0 {
			return
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("%d events still unnumbered after 10 s", pending)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// eventsAfter follows the whole feed (filtered by params) from cursor
// ("" for the start) and returns the events and the last next_cursor.
func (a *testApp) eventsAfter(path, cursor string, params ...string) ([]eventJSON, string) {
	a.t.Helper()
	var all []eventJSON
	for {
		p := append([]string{"per_page", "1000"}, params...)
		if cursor != "" {
			p = append(p, "after", cursor)
		}
		page := a.eventsPage(path, p...)
		all = append(all, page.Items...)
		if page.NextCursor == "" {
			a.t.Fatal("a page without next_cursor")
		}
		cursor = page.NextCursor
		if len(page.Items) == 0 {
			return all, cursor
		}
	}
}

// wantEvent is what a test expects of an event.
type wantEvent struct {
	typ       string
	userID    int64
	actorType string
	actorID   int64 // 0 for null
	changes   string
}

func (w wantEvent) String() string {
	return fmt.Sprintf("%s user %d by %s %d %s", w.typ, w.userID, w.actorType, w.actorID, w.changes)
}

// gotEvent reduces e to what wantEvent compares; changes compacted.
func gotEvent(e eventJSON) wantEvent {
	w := wantEvent{typ: e.Type, userID: e.UserID, actorType: e.ActorType, changes: string(e.Changes)}
	if e.ActorID != nil {
		w.actorID = *e.ActorID
	}
	return w
}

// TestEveryChangeLeavesItsEvents: each route that changes something,
// called through the handler, leaves exactly the events of the rules in
// docs/events.md, with the right actor, request id and client address.
func TestEveryChangeLeavesItsEvents(t *testing.T) {
	t.Parallel()
	app := newTestApp(t, func(c *Config) { c.AllowSignup = true })
	admin := app.adminID

	// The bootstrap admin is the system's doing, and the feed's first event.
	app.waitSequenced()
	first := app.eventsPage("/api/v1/events", "per_page", "1")
	if len(first.Items) != 1 {
		t.Fatalf("feed start: %+v", first)
	}
	if got, want := gotEvent(first.Items[0]), (wantEvent{"user.created", admin, "system", 0, "null"}); got != want {
		t.Errorf("bootstrap: got %v, want %v", got, want)
	}
	if e := first.Items[0]; e.RequestID != "" || e.ClientAddress != "" || e.ID != 1 {
		t.Errorf("bootstrap event: %+v", e)
	}

	bearer := func(token string) []string { return []string{"Authorization", "Bearer " + token} }
	bob, bobToken := app.newUser("bob")
	carol, carolToken := app.newUser("carol")
	dave, daveToken := app.newUser("dave")
	for _, token := range []string{carolToken, daveToken} { // revoked by the promotion and the deactivation below
		defer func() {
			if rec := app.do("POST", "/api/v1/auth/logout", "", bearer(token)...); rec.Code != http.StatusUnauthorized {
				t.Errorf("a revoked token logged out: %d", rec.Code)
			}
		}()
	}
	erin, erinToken := app.newUser("erin")
	frank, _ := app.newUser("frank")
	var createdID int64 // the user the last 201 created
	tests := []struct {
		name    string
		method  string
		path    func() string
		body    string
		headers []string
		status  int
		want    func() []wantEvent
	}{
		{"create by an admin", "POST", func() string { return "/api/v1/users" },
			`{"username":"gina","email":"gina@example.com","password":"user password"}`, nil, 201,
			func() []wantEvent { return []wantEvent{{"user.created", createdID, "user", admin, "null"}} }},
		{"sign-up", "POST", func() string { return "/api/v1/users" },
			`{"username":"hank","email":"hank@example.com","password":"user password"}`, []string{"Authorization", ""}, 201,
			func() []wantEvent { return []wantEvent{{"user.created", createdID, "anonymous", 0, "null"}} }},
		{"PATCH full_name", "PATCH", func() string { return userPath(bob.ID) }, `{"full_name":"Bob B"}`, nil, 200,
			func() []wantEvent {
				return []wantEvent{{"user.updated", bob.ID, "user", admin, `{"fields":["full_name"]}`}}
			}},
		{"username and email, full_name unchanged", "PATCH", func() string { return userPath(bob.ID) },
			`{"username":"bobby","email":"bobby@example.com","full_name":"Bob B"}`, nil, 200,
			func() []wantEvent {
				return []wantEvent{{"user.updated", bob.ID, "user", admin, `{"fields":["username","email"]}`}}
			}},
		{"a write that changes nothing is no event", "PATCH", func() string { return userPath(bob.ID) }, `{"full_name":"Bob B"}`, nil, 200,
			func() []wantEvent { return nil }},
		{"own full_name, by the user", "PATCH", func() string { return "/api/v1/users/me" }, `{"full_name":"B"}`, bearer(bobToken), 200,
			func() []wantEvent {
				return []wantEvent{{"user.updated", bob.ID, "user", bob.ID, `{"fields":["full_name"]}`}}
			}},
		{"promote: role and revocation", "PATCH", func() string { return userPath(carol.ID) }, `{"role":"admin"}`, nil, 200,
			func() []wantEvent {
				return []wantEvent{
					{"user.updated", carol.ID, "user", admin, `{"fields":["role"],"role":{"old":"user","new":"admin"}}`},
					{"user.tokens_revoked", carol.ID, "user", admin, `{"reason":"role_changed"}`},
				}
			}},
		{"deactivate: is_active and revocation", "PATCH", func() string { return userPath(dave.ID) }, `{"is_active":false}`, nil, 200,
			func() []wantEvent {
				return []wantEvent{
					{"user.updated", dave.ID, "user", admin, `{"fields":["is_active"],"is_active":{"old":true,"new":false}}`},
					{"user.tokens_revoked", dave.ID, "user", admin, `{"reason":"deactivated"}`},
				}
			}},
		{"reactivate: no token to revoke", "PATCH", func() string { return userPath(dave.ID) }, `{"is_active":true,"role":"user"}`, nil, 200,
			func() []wantEvent {
				return []wantEvent{{"user.updated", dave.ID, "user", admin, `{"fields":["is_active"],"is_active":{"old":false,"new":true}}`}}
			}},
		{"own password", "PATCH", func() string { return "/api/v1/users/me" },
			`{"password":"fresh passphrase 1","current_password":"user password"}`, bearer(erinToken), 200,
			func() []wantEvent {
				return []wantEvent{
					{"user.password_changed", erin.ID, "user", erin.ID, "null"},
					{"user.tokens_revoked", erin.ID, "user", erin.ID, `{"reason":"password_changed"}`},
				}
			}},
		{"password and full_name by an admin, no tokens left", "PATCH", func() string { return userPath(erin.ID) },
			`{"password":"fresh passphrase 2","full_name":"Erin"}`, nil, 200,
			func() []wantEvent {
				return []wantEvent{
					{"user.password_changed", erin.ID, "user", admin, "null"},
					{"user.updated", erin.ID, "user", admin, `{"fields":["full_name"]}`},
				}
			}},
		{"delete", "DELETE", func() string { return userPath(frank.ID) }, "", nil, 204,
			func() []wantEvent { return []wantEvent{{"user.deleted", frank.ID, "user", admin, "null"}} }},
	}
	for _, tt := range tests {
		app.waitSequenced()
		_, cursor := app.eventsAfter("/api/v1/events", "")
		requestID := "req-" + strings.ReplaceAll(tt.name, " ", "-")
		requestID = requestID[:min(len(requestID), 40)]
		headers := append([]string{"X-Request-ID", requestID}, tt.headers...)
		rec := app.do(tt.method, tt.path(), tt.body, headers...)
		if rec.Code != tt.status {
			t.Fatalf("%s: got %d %s, want %d", tt.name, rec.Code, rec.Body, tt.status)
		}
		if rec.Code == http.StatusCreated {
			createdID = decodeJSON[userJSON](t, rec).ID
		}
		app.waitSequenced()
		events, _ := app.eventsAfter("/api/v1/events", cursor)
		var got []wantEvent
		for _, e := range events {
			got = append(got, gotEvent(e))
			if e.RequestID != requestID || e.ClientAddress != "192.0.2.1" {
				t.Errorf("%s: request id %q, client address %q; want %q, 192.0.2.1", tt.name, e.RequestID, e.ClientAddress, requestID)
			}
		}
		if want := tt.want(); !slices.Equal(got, want) {
			t.Errorf("%s:\n got  %v\n want %v", tt.name, got, want)
		}
	}

	// A logout of a live token is one revocation, by the user.
	_, cursor := app.eventsAfter("/api/v1/events", "")
	ivan, ivanToken := app.newUser("ivan")
	app.waitSequenced()
	_, cursor = app.eventsAfter("/api/v1/events", cursor)
	if rec := app.do("POST", "/api/v1/auth/logout", "", bearer(ivanToken)...); rec.Code != http.StatusNoContent {
		t.Fatalf("logout: %d %s", rec.Code, rec.Body)
	}
	app.waitSequenced()
	events, _ := app.eventsAfter("/api/v1/events", cursor)
	if len(events) != 1 || gotEvent(events[0]) != (wantEvent{"user.tokens_revoked", ivan.ID, "user", ivan.ID, `{"reason":"logout"}`}) {
		t.Errorf("logout: got %+v", events)
	}
}

// TestFailedChangesLeaveNoEvent: a change refused before its transaction
// (4xx) or rolled back inside it (a unique conflict, If-Match, the last
// admin, a lost idempotency claim) records nothing.
func TestFailedChangesLeaveNoEvent(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	bob, bobToken := app.newUser("bob")
	app.waitSequenced()
	before, cursor := app.eventsAfter("/api/v1/events", "")
	var count int
	app.db.QueryRow("SELECT COUNT(*) FROM user_events").Scan(&count)
	if count != len(before) {
		t.Fatalf("the feed has %d events, the table %d", len(before), count)
	}

	failures := []struct {
		name, method, path, body string
		headers                  []string
		status                   int
	}{
		{"invalid create", "POST", "/api/v1/users", `{"username":"x"}`, nil, 400},
		{"duplicate username, in the transaction", "POST", "/api/v1/users", `{"username":"BOB","email":"other@example.com","password":"user password"}`, nil, 409},
		{"duplicate email on update, in the transaction", "PATCH", userPath(bob.ID), `{"email":"root_admin@example.com"}`, nil, 409},
		{"If-Match mismatch, under the lock", "PATCH", userPath(bob.ID), `{"full_name":"x"}`, []string{"If-Match", `"999"`}, 412},
		{"the last admin demoted, under the lock", "PATCH", userPath(app.adminID), `{"role":"user"}`, nil, 409},
		{"role by a user", "PATCH", "/api/v1/users/me", `{"role":"admin"}`, []string{"Authorization", "Bearer " + bobToken}, 403},
		{"wrong current password", "PATCH", "/api/v1/users/me", `{"password":"fresh passphrase","current_password":"wrong one"}`,
			[]string{"Authorization", "Bearer " + bobToken}, 400},
		{"delete of no one", "DELETE", userPath(999999), "", nil, 404},
		{"delete with a stale ETag", "DELETE", userPath(bob.ID), "", []string{"If-Match", `"999"`}, 412},
		{"logout without a token", "POST", "/api/v1/auth/logout", "", []string{"Authorization", ""}, 401},
	}
	for _, f := range failures {
		if rec := app.do(f.method, f.path, f.body, f.headers...); rec.Code != f.status {
			t.Errorf("%s: got %d %s, want %d", f.name, rec.Code, rec.Body, f.status)
		}
	}
	// A create whose idempotency claim a retry took over rolls back.
	_, err := app.store.CreateUser(context.Background(), NewUser{Username: "lost", Email: "lost@example.com", PasswordHash: "x", Role: RoleUser, IsActive: true},
		Actor{Type: ActorUser, ID: app.adminID}, &IdempotencyKey{Scope: uint64(app.adminID), Key: "never-claimed"})
	if err != ErrClaimLost {
		t.Errorf("create under a lost claim: %v", err)
	}

	time.Sleep(2 * sequencerTick) // time for any stray event to be numbered
	app.waitSequenced()
	if after, _ := app.eventsAfter("/api/v1/events", cursor); len(after) != 0 {
		t.Errorf("failed changes left events: %+v", after)
	}
	app.db.QueryRow("SELECT COUNT(*) FROM user_events").Scan(&count)
	if count != len(before) {
		t.Errorf("the table has %d events, want %d", count, len(before))
	}
}

// TestEventFeedNeverSkipsUnderConcurrentWriters: while 8 writers make 30
// changes each, a consumer follows the feed with next_cursor the whole
// time. When the writers are done and the sequencer has caught up, the
// consumer has collected exactly the events of the table, each once, in
// strictly increasing order.
func TestEventFeedNeverSkipsUnderConcurrentWriters(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	checkFeedNeverSkips(t, []*testApp{app}, app)
}

// checkFeedNeverSkips runs writers on the writer apps (replicas of one
// database) while a consumer follows the feed through consumer, and
// checks that it collects exactly the events in the table.
func checkFeedNeverSkips(t *testing.T, writerApps []*testApp, consumer *testApp) {
	t.Helper()
	const writers, changes = 8, 30
	var wg sync.WaitGroup
	done := make(chan struct{})
	for w := range writers {
		app := writerApps[w%len(writerApps)]
		wg.Go(func() {
			var id int64
			for i := range changes {
				var rec *httpResult
				switch {
				case i%3 == 0:
					rec = doResult(app, "POST", "/api/v1/users", fmt.Sprintf(`{"username":"w%d_%d","email":"w%d_%d@example.com","password":"user password"}`, w, i, w, i))
					if rec.code == http.StatusCreated {
						id = rec.id
					}
				case i%3 == 1:
					rec = doResult(app, "PATCH", userPath(id), fmt.Sprintf(`{"full_name":"Writer %d %d","is_active":%t}`, w, i, i%2 == 0))
				default:
					rec = doResult(app, "DELETE", userPath(id), "")
				}
				if rec.code >= 300 {
					t.Errorf("writer %d change %d: %d %s", w, i, rec.code, rec.body)
				}
			}
		})
	}
	collected := make(chan []eventJSON, 1)
	go func() {
		var got []eventJSON
		cursor := ""
		finished := false
		for {
			params := url.Values{"per_page": {"7"}}
			if cursor != "" {
				params.Set("after", cursor)
			}
			rec := consumer.do("GET", "/api/v1/events?"+params.Encode(), "")
			var page eventPageJSON
			if err := json.Unmarshal(rec.Body.Bytes(), &page); rec.Code != http.StatusOK || err != nil {
				t.Errorf("consumer: %d %s", rec.Code, rec.Body)
				collected <- got
				return
			}
			got = append(got, page.Items...)
			cursor = page.NextCursor
			if len(page.Items) == 0 && finished {
				collected <- got
				return
			}
			select {
			case <-done:
				// One more empty page after the sequencer caught up.
				finished = true
			default:
			}
		}
	}()
	wg.Wait()
	consumer.waitSequenced()
	close(done)
	got := <-collected

	var want []int64
	rows, err := consumer.db.Query(consumer.store.causal("SELECT seq FROM user_events ORDER BY seq"))
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var seq int64
		rows.Scan(&seq)
		want = append(want, seq)
	}
	ids := make([]int64, len(got))
	for i, e := range got {
		ids[i] = e.ID
		if i > 0 && ids[i] <= ids[i-1] {
			t.Fatalf("ids not strictly increasing at %d: %d after %d", i, ids[i], ids[i-1])
		}
	}
	if !slices.Equal(ids, want) {
		t.Errorf("the consumer collected %d events, the table holds %d (first difference near %v)", len(ids), len(want), firstDifference(ids, want))
	}
	if len(want) < 1+writers*changes {
		t.Errorf("only %d events for %d changes", len(want), writers*changes)
	}
}

// firstDifference returns the values around the first index where a and b
// differ.
func firstDifference(a, b []int64) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("index %d: %d vs %d", i, a[i], b[i])
		}
	}
	return fmt.Sprintf("lengths %d vs %d", len(a), len(b))
}

// httpResult is what a concurrent writer needs of a response: t.Fatal
// may not be called off the test's goroutine, so doResult does not fail.
type httpResult struct {
	code int
	body string
	id   int64
}

func doResult(app *testApp, method, path, body string) *httpResult {
	rec := app.do(method, path, body)
	r := &httpResult{code: rec.Code, body: rec.Body.String()}
	if rec.Code == http.StatusCreated {
		var u userJSON
		json.Unmarshal(rec.Body.Bytes(), &u)
		r.id = u.ID
	}
	return r
}

// TestSequencersRaceEachOther: two stores on one database, as two
// replicas, each with its sequencer, and two more goroutines numbering in
// a tight loop, while writers write: the seqs are 1..N with no gap, one per
// event, and every event is numbered.
func TestSequencersRaceEachOther(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	other := NewStore(app.db, testTimeout)
	t.Cleanup(startEventWorkers(context.Background(), other, 0, slog.New(slog.NewJSONHandler(app.logs, nil))))
	ctx, cancel := context.WithCancel(context.Background())
	var racers sync.WaitGroup
	raceErrs := make(chan error, 2)
	// The racers get a long timeout: they queue on one row lock by design,
	// and a busy machine must not turn that wait into a failure.
	for range 2 {
		s := NewStore(app.db, 30*time.Second)
		racers.Go(func() {
			for ctx.Err() == nil {
				if _, err := s.SequenceEvents(ctx); err != nil && ctx.Err() == nil {
					raceErrs <- err
					return
				}
			}
		})
	}
	var writers sync.WaitGroup
	for w := range 8 {
		writers.Go(func() {
			for i := range 30 {
				s := []*Store{app.store, other}[i%2]
				nu := NewUser{Username: fmt.Sprintf("r%d_%d", w, i), Email: fmt.Sprintf("r%d_%d@example.com", w, i), PasswordHash: "x", Role: RoleUser, IsActive: true}
				if _, err := s.CreateUser(context.Background(), nu, Actor{Type: ActorAnonymous}, nil); err != nil {
					t.Errorf("create: %v", err)
				}
			}
		})
	}
	writers.Wait()
	app.waitSequenced()
	cancel()
	racers.Wait()
	close(raceErrs)
	for err := range raceErrs {
		t.Errorf("a sequencer failed: %v", err)
	}
	var n, distinct, lo, hi int64
	if err := app.db.QueryRow("SELECT COUNT(*), COUNT(DISTINCT seq), MIN(seq), MAX(seq) FROM user_events").Scan(&n, &distinct, &lo, &hi); err != nil {
		t.Fatal(err)
	}
	if n != 1+8*30 || distinct != n || lo != 1 || hi != n {
		t.Errorf("%d events, %d distinct seqs from %d to %d; want %d, numbered 1 to %d", n, distinct, lo, hi, 1+8*30, 1+8*30)
	}
	var last int64
	app.db.QueryRow("SELECT last_seq FROM event_sequencer WHERE id = 1").Scan(&last)
	if last != n {
		t.Errorf("last_seq %d, want %d", last, n)
	}
}

// TestDeletedUsersHistoryAndFilters: a user's events outlive the user, and
// the filters narrow the feed.
func TestDeletedUsersHistoryAndFilters(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	bob, bobToken := app.newUser("bob")
	app.do("PATCH", "/api/v1/users/me", `{"full_name":"Bob"}`, "Authorization", "Bearer "+bobToken)
	if rec := app.do("DELETE", userPath(bob.ID), ""); rec.Code != http.StatusNoContent {
		t.Fatalf("delete: %d", rec.Code)
	}
	app.waitSequenced()
	events, _ := app.eventsAfter(userPath(bob.ID)+"/events", "")
	var types []string
	for _, e := range events {
		types = append(types, e.Type)
		if e.UserID != bob.ID {
			t.Errorf("an event of user %d in bob's history", e.UserID)
		}
	}
	if want := []string{"user.created", "user.updated", "user.deleted"}; !slices.Equal(types, want) {
		t.Errorf("bob's history: got %v, want %v", types, want)
	}
	byBob, _ := app.eventsAfter("/api/v1/events", "", "actor_id", fmt.Sprint(bob.ID))
	if len(byBob) != 1 || byBob[0].Type != "user.updated" {
		t.Errorf("actor_id filter: %+v", byBob)
	}
	deletions, _ := app.eventsAfter("/api/v1/events", "", "type", "user.deleted", "user_id", fmt.Sprint(bob.ID))
	if len(deletions) != 1 {
		t.Errorf("type and user_id filters: %+v", deletions)
	}
	// An empty page at the head keeps the cursor it was given: the head.
	page := app.eventsPage(userPath(bob.ID)+"/events", "after", eventCursor(events[2].ID))
	if len(page.Items) != 0 || page.NextCursor != eventCursor(events[2].ID) {
		t.Errorf("empty page: %+v", page)
	}
}

// TestEventFeedRefusesBadRequests: parameters are checked strictly, and
// only admins read the feed.
func TestEventFeedRefusesBadRequests(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	_, bobToken := app.newUser("bob")
	bad := []struct {
		path  string
		field string
	}{
		{"/api/v1/events?after=12", "after"},
		{"/api/v1/events?after=" + eventCursor(1) + "x", "after"},
		{"/api/v1/events?after=" + strings.TrimSuffix(eventCursor(1), "E") + "F", "after"}, // non-canonical base64
		{"/api/v1/events?per_page=0", "per_page"},
		{"/api/v1/events?per_page=1001", "per_page"},
		{"/api/v1/events?type=user.renamed", "type"},
		{"/api/v1/events?user_id=-1", "user_id"},
		{"/api/v1/events?actor_id=x", "actor_id"},
		{"/api/v1/events?cursor=abc", "cursor"},
		{"/api/v1/events?per_page=5&per_page=6", "per_page"},
		{"/api/v1/users/2/events?user_id=2", "user_id"},
		{"/api/v1/users/x/events", "id"},
	}
	for _, b := range bad {
		wantProblem(t, app.do("GET", b.path, ""), http.StatusBadRequest, b.field)
	}
	wantProblem(t, app.do("GET", "/api/v1/events", "", "Authorization", ""), http.StatusUnauthorized)
	wantProblem(t, app.do("GET", "/api/v1/events", "", "Authorization", "Bearer "+bobToken), http.StatusForbidden)
	wantProblem(t, app.do("GET", "/api/v1/users/me/events", "", "Authorization", "Bearer "+bobToken), http.StatusForbidden)
}

// TestEventRetention: the pruner deletes the events past the horizon, a
// prefix of the feed, and records it; a cursor below it is a 410, one at
// it or past it goes on, and no cursor starts at the oldest kept.
func TestEventRetention(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	for _, name := range []string{"bob", "carol", "dave", "erin"} {
		app.newUser(name)
	}
	app.waitSequenced()
	all, _ := app.eventsAfter("/api/v1/events", "")
	if len(all) != 5 {
		t.Fatalf("%d events, want 5", len(all))
	}
	// The first three happened 100 days ago, and so did the fifth: the
	// pruner stops at the fourth, deleting a prefix only.
	mustExec(t, app, "UPDATE user_events SET occurred_at = occurred_at - INTERVAL 100 DAY WHERE seq IN (1, 2, 3, 5)")
	if err := pruneAll(context.Background(), app.store, time.Now().Add(-90*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	kept, _ := app.eventsAfter("/api/v1/events", "")
	if len(kept) != 2 || kept[0].ID != 4 || kept[1].ID != 5 {
		t.Fatalf("after pruning: %+v", kept)
	}
	if got := app.store.EventStats().pruned; got != 3 {
		t.Errorf("pruned counter: %d", got)
	}
	p := wantProblem(t, app.do("GET", "/api/v1/events?after="+eventCursor(2), ""), http.StatusGone)
	if !strings.Contains(p.Detail, "retention") || !strings.Contains(p.Detail, "without after") {
		t.Errorf("410 detail: %q", p.Detail)
	}
	wantProblem(t, app.do("GET", userPath(app.adminID)+"/events?after="+eventCursor(0), ""), http.StatusGone)
	if page := app.eventsPage("/api/v1/events", "after", eventCursor(3)); len(page.Items) != 2 {
		t.Errorf("from the horizon: %+v", page)
	}
	// With everything pruned, a start without after begins at the horizon.
	mustExec(t, app, "UPDATE user_events SET occurred_at = occurred_at - INTERVAL 100 DAY WHERE seq = 4")
	if err := pruneAll(context.Background(), app.store, time.Now().Add(-90*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if page := app.eventsPage("/api/v1/events"); len(page.Items) != 0 || page.NextCursor != eventCursor(5) {
		t.Errorf("an empty feed after pruning: %+v", page)
	}
	rec := app.manage("GET", "/metrics")
	if !strings.Contains(rec.Body.String(), "usersvc_events_pruned_total 5\n") || !strings.Contains(rec.Body.String(), "usersvc_events_written_total 5\n") {
		t.Errorf("metrics lack the event counters")
	}
}
