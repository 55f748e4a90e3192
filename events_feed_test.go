package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestEventCursorAheadOfTheFeed: a cursor past the head of the feed (a
// consumer that kept a cursor across a restore of an older backup) is a
// 400 naming after, never an empty page that would let it skip the
// events the restored feed numbers again. A cursor at the head goes on.
func TestEventCursorAheadOfTheFeed(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	bob, _ := app.newUser("bob")
	app.do("PATCH", userPath(bob.ID), `{"full_name":"Bob"}`)
	app.waitSequenced()
	all, cursor := app.eventsAfter("/api/v1/events", "")
	if len(all) != 3 || cursor != eventCursor(3) {
		t.Fatalf("feed: %d events, cursor %s", len(all), cursor)
	}
	// The restore of a backup taken when the head was 2.
	mustExec(t, app, "DELETE FROM user_events WHERE seq > 2")
	mustExec(t, app, "UPDATE event_sequencer SET last_seq = 2 WHERE id = 1")
	for _, path := range []string{"/api/v1/events", userPath(bob.ID) + "/events"} {
		p := wantProblem(t, app.do("GET", path+"?after="+cursor, ""), http.StatusBadRequest, "after")
		if !strings.Contains(p.Detail, "ahead of the feed") || !strings.Contains(p.Detail, "without after") {
			t.Errorf("%s: 400 detail %q", path, p.Detail)
		}
	}
	if page := app.eventsPage("/api/v1/events", "after", eventCursor(2)); len(page.Items) != 0 || page.NextCursor != eventCursor(2) {
		t.Errorf("at the head: %+v", page)
	}
	// The write numbered after the restore reaches a consumer at the head.
	app.do("PATCH", userPath(bob.ID), `{"full_name":"Bobby"}`)
	app.waitSequenced()
	if events, _ := app.eventsAfter("/api/v1/events", eventCursor(2)); len(events) != 1 || events[0].ID != 3 {
		t.Errorf("after the restore: %+v", events)
	}
}

// TestFilteredCursorAdvancesOverScanned: a consumer whose filter matches
// nothing new still moves its cursor to the head with every page that is
// not full, so the pruner deleting events it would never have seen does
// not make its cursor a 410. A full page still stops at its last event.
func TestFilteredCursorAdvancesOverScanned(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	bob, _ := app.newUser("bob") // event 2
	carol, _ := app.newUser("carol")
	app.waitSequenced()
	bobs := []string{"user_id", fmt.Sprint(bob.ID)}
	page := app.eventsPage("/api/v1/events", bobs...)
	if len(page.Items) != 1 || page.NextCursor != eventCursor(3) {
		t.Errorf("bob's events: %+v; want one, and the cursor at the head, 3", page)
	}
	cursor := page.NextCursor
	for i := range 5 {
		app.do("PATCH", userPath(carol.ID), fmt.Sprintf(`{"full_name":"Carol %d"}`, i))
	}
	app.waitSequenced() // head 8
	if page = app.eventsPage("/api/v1/events", append(bobs, "after", cursor)...); len(page.Items) != 0 || page.NextCursor != eventCursor(8) {
		t.Errorf("an empty filtered page: %+v; want the cursor at the head, 8", page)
	}
	cursor = page.NextCursor
	// A full page is not the head: its cursor is its last event.
	carols := []string{"user_id", fmt.Sprint(carol.ID), "per_page", "2"}
	if page = app.eventsPage("/api/v1/events", carols...); len(page.Items) != 2 || page.NextCursor != eventCursor(page.Items[1].ID) {
		t.Errorf("a full filtered page: %+v", page)
	}
	mustExec(t, app, "UPDATE user_events SET occurred_at = occurred_at - INTERVAL 100 DAY")
	if err := pruneAll(context.Background(), app.store, time.Now().Add(-90*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	app.do("PATCH", userPath(bob.ID), `{"full_name":"Bob"}`)
	app.waitSequenced()
	events, _ := app.eventsAfter("/api/v1/events", cursor, bobs...)
	if len(events) != 1 || events[0].ID != 9 {
		t.Errorf("bob's events after the pruning: %+v", events)
	}
}

// TestUserEventsShowPendingWrites: right after a write, while its events
// wait to be numbered, GET /users/{id}/events lists them in pending (id
// null), without moving next_cursor past them; once numbered they are
// items and pending is empty. A full page, and the feed of all users,
// have no pending.
func TestUserEventsShowPendingWrites(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	bob, _ := app.newUser("bob")
	app.waitSequenced()
	path := userPath(bob.ID) + "/events"
	_, cursor := app.eventsAfter(path, "")
	app.stopWorkers()

	if rec := app.do("PATCH", userPath(bob.ID), `{"full_name":"Bob"}`); rec.Code != http.StatusOK {
		t.Fatalf("PATCH: %d %s", rec.Code, rec.Body)
	}
	page := app.eventsPage(path, "after", cursor)
	if len(page.Items) != 0 || page.Pending == nil || len(*page.Pending) != 1 || page.NextCursor != cursor {
		t.Fatalf("right after the write: %+v; want its event pending, and the cursor where it was", page)
	}
	if got, want := gotEvent((*page.Pending)[0]), (wantEvent{"user.updated", bob.ID, "user", app.adminID, `{"fields":["full_name"]}`}); got != want {
		t.Errorf("pending: got %v, want %v", got, want)
	}
	if raw := pendingIDs(t, app, path+"?after="+cursor); raw != "[null]" {
		t.Errorf("pending ids: %s, want [null]", raw)
	}
	if page := app.eventsPage(path, "per_page", "1"); page.Pending != nil {
		t.Errorf("a full page has pending: %+v", page)
	}
	if page := app.eventsPage("/api/v1/events", "user_id", fmt.Sprint(bob.ID)); page.Pending != nil {
		t.Errorf("the feed of all users has pending: %+v", page)
	}

	if _, err := app.store.SequenceEvents(context.Background()); err != nil {
		t.Fatal(err)
	}
	page = app.eventsPage(path, "after", cursor)
	if len(page.Items) != 1 || page.Items[0].ID == 0 || page.Pending == nil || len(*page.Pending) != 0 {
		t.Fatalf("once numbered: %+v; want it in items, and pending empty", page)
	}
	if page.NextCursor != eventCursor(page.Items[0].ID) {
		t.Errorf("next_cursor %s, want the event's", page.NextCursor)
	}
}

// pendingIDs returns the ids of the pending member of a page, as JSON.
func pendingIDs(t *testing.T, app *testApp, path string) string {
	t.Helper()
	var page struct {
		Pending []struct {
			ID json.RawMessage `json:"id"`
		} `json:"pending"`
	}
	rec := app.do("GET", path, "")
	if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil {
		t.Fatal(err)
	}
	ids := make([]string, len(page.Pending))
	for i, p := range page.Pending {
		ids[i] = string(p.ID)
	}
	return "[" + strings.Join(ids, ",") + "]"
}

// TestUserEventsPendingIsOneSnapshot: while a writer changes a user and
// the sequencer numbers the events, every page of the user's events
// holds each event once, in items or in pending, and never fewer than an
// earlier page: the two are read in one snapshot, so an event moved
// between them can be neither missed nor counted twice.
func TestUserEventsPendingIsOneSnapshot(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	bob, _ := app.newUser("bob")
	const changes = 40
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range changes {
			doResult(app, "PATCH", userPath(bob.ID), fmt.Sprintf(`{"full_name":"Bob %d"}`, i))
		}
	}()
	path := userPath(bob.ID) + "/events"
	seen := 0
	for finished := false; !finished; {
		select {
		case <-done:
			app.waitSequenced()
			finished = true
		default:
		}
		page := app.eventsPage(path, "per_page", "1000")
		if page.Pending == nil {
			t.Fatalf("a page that is not full without pending: %+v", page)
		}
		events := append(page.Items, *page.Pending...)
		times := map[string]bool{}
		for _, e := range events {
			if times[e.Time] {
				t.Fatalf("an event of %s twice in one page: %d items, %d pending", e.Time, len(page.Items), len(*page.Pending))
			}
			times[e.Time] = true
		}
		if len(events) < seen {
			t.Fatalf("%d events after %d: a page missed some (%d items, %d pending)", len(events), seen, len(page.Items), len(*page.Pending))
		}
		seen = len(events)
	}
	if seen != 1+changes {
		t.Errorf("%d events, want %d", seen, 1+changes)
	}
}
