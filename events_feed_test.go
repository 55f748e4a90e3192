package main

import (
	"net/http"
	"strings"
	"testing"
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
