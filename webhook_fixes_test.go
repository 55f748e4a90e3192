package main

import (
	"fmt"
	"testing"
	"time"
)

// Tests of the review's findings on webhook delivery: each failed before
// its fix.

// deliveriesOf counts the attempts recorded for the endpoint id.
func (a *testApp) deliveriesOf(id int64) int {
	a.t.Helper()
	var n int
	if err := a.db.QueryRow("SELECT COUNT(*) FROM webhook_deliveries WHERE webhook_id = ?", id).Scan(&n); err != nil {
		a.t.Fatal(err)
	}
	return n
}

// TestWebhookDisableDuringAttemptHolds: an admin disables the endpoint
// while an attempt is in flight; the attempt fails and is recorded, and
// the endpoint stays disabled, with the admin's reason.
func TestWebhookDisableDuringAttemptHolds(t *testing.T) {
	stalled := make(chan struct{}, 10)
	release := make(chan struct{})
	rc := newReceiver(t, func(n int) int { return 0 })
	rc.onStall = func(int, string) {
		stalled <- struct{}{}
		<-release
	}
	set := testWebhookSettings()
	set.Timeout = 3 * time.Second
	set.Lease = 10 * time.Second
	set.Schedule = []time.Duration{time.Hour}
	app := newWebhookApp(t, set)
	hook := app.createWebhook(fmt.Sprintf(`{"url":%q,"event_types":["user.created"]}`, rc.srv.URL))
	app.newUser("disablemidattempt")
	<-stalled
	if rec := app.do("PATCH", fmt.Sprintf("/api/v1/webhooks/%d", hook.ID), `{"enabled":false}`); rec.Code != 200 {
		t.Fatalf("disable: %d %s", rec.Code, rec.Body)
	}
	close(release) // the attempt now runs out its timeout and fails
	eventually(t, 30*time.Second, "the failed attempt recorded", func() bool { return app.deliveriesOf(hook.ID) >= 1 })
	got := decodeJSON[webhookCreated](t, app.do("GET", fmt.Sprintf("/api/v1/webhooks/%d", hook.ID), ""))
	if got.Enabled || got.State != "disabled" {
		t.Errorf("after the attempt failed: enabled=%v state=%s, want disabled", got.Enabled, got.State)
	}
	if got.DisabledReason == nil || *got.DisabledReason != "disabled by an admin" {
		t.Errorf("disabled_reason = %v, want the admin's", got.DisabledReason)
	}
}
