package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"
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

// TestWebhookFailureCutMidCharacter: a receiver's status line of long
// non-ASCII text makes an error longer than the column, cut where a
// character is split; the failure is still recorded, with its next
// attempt, so the endpoint is not retried at every tick.
func TestWebhookFailureCutMidCharacter(t *testing.T) {
	url, calls := rawReceiver(t, "HTTP/1.1 xy"+strings.Repeat("é", 400)+"\r\n\r\n")
	set := testWebhookSettings()
	set.Schedule = []time.Duration{time.Hour}
	app := newWebhookApp(t, set)
	hook := app.createWebhook(fmt.Sprintf(`{"url":%q}`, url))
	app.newUser("cutmidcharacter")
	eventually(t, 30*time.Second, "the failed attempt recorded", func() bool { return app.deliveriesOf(hook.ID) >= 1 })
	got := decodeJSON[webhookCreated](t, app.do("GET", fmt.Sprintf("/api/v1/webhooks/%d", hook.ID), ""))
	if got.State != "retrying" || got.FailedAttempts != 1 || got.LastError == nil || !utf8.ValidString(*got.LastError) {
		t.Errorf("state=%s failed_attempts=%d last_error=%v, want retrying after 1 with the error", got.State, got.FailedAttempts, got.LastError)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("%d calls, want 1: the next attempt is an hour away", n)
	}
}

// TestWebhookPrunedEventsRecorded: the event an endpoint retries is
// pruned before it is delivered; the endpoint does not skip it in silence
// carrying its failures over, but records the gap (its last error and a
// webhook.events_pruned event) and starts its retries afresh.
func TestWebhookPrunedEventsRecorded(t *testing.T) {
	rc := newReceiver(t, func(n int) int { return http.StatusInternalServerError })
	set := testWebhookSettings()
	set.Schedule = []time.Duration{time.Hour}
	app := newWebhookApp(t, set)
	hook := app.createWebhook(fmt.Sprintf(`{"url":%q,"event_types":["user.created"]}`, rc.srv.URL))
	app.newUser("prunedbeforedelivery")
	eventually(t, 30*time.Second, "the failed attempt recorded", func() bool { return app.deliveriesOf(hook.ID) >= 1 })
	app.waitNumbered()
	if _, err := app.store.PruneEvents(context.Background(), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	// The retry comes due now rather than in an hour.
	if _, err := app.db.Exec("UPDATE webhooks SET next_attempt_at = NULL WHERE id = ?", hook.ID); err != nil {
		t.Fatal(err)
	}
	var got webhookCreated
	eventually(t, 30*time.Second, "the endpoint past the pruned event", func() bool {
		got = decodeJSON[webhookCreated](t, app.do("GET", fmt.Sprintf("/api/v1/webhooks/%d", hook.ID), ""))
		return got.State == "ok"
	})
	if got.FailedAttempts != 0 || got.LastError == nil || !strings.Contains(*got.LastError, "pruned") {
		t.Errorf("failed_attempts=%d last_error=%v, want 0 and the pruned events named", got.FailedAttempts, got.LastError)
	}
	var events int
	eventually(t, 30*time.Second, "a webhook.events_pruned event", func() bool {
		app.db.QueryRow("SELECT COUNT(*) FROM user_events WHERE type = 'webhook.events_pruned' AND JSON_VALUE(changes, '$.webhook_id') = ?", hook.ID).Scan(&events)
		return events == 1
	})
	if n := len(rc.snapshot()); n != 1 {
		t.Errorf("%d calls, want 1: the pruned event cannot be sent again", n)
	}
}

// TestLoadConfigRetentionOutlastsRetries: events kept for less time than
// the retries of one can take are refused, naming both variables.
func TestLoadConfigRetentionOutlastsRetries(t *testing.T) {
	t.Parallel()
	env := map[string]string{"EVENTS_RETENTION": "2h", "WEBHOOK_RETRY_SCHEDULE": "1h,1h"}
	_, err := loadConfig(func(name string) string { return env[name] })
	if err == nil || !strings.Contains(err.Error(), "EVENTS_RETENTION ") || !strings.Contains(err.Error(), "WEBHOOK_RETRY_SCHEDULE") {
		t.Errorf("got %v, want an error naming EVENTS_RETENTION and WEBHOOK_RETRY_SCHEDULE", err)
	}
	env["EVENTS_RETENTION"] = "3h"
	if _, err := loadConfig(func(name string) string { return env[name] }); err != nil {
		t.Errorf("3h against 2h of retries: %v", err)
	}
}

// TestWebhookDeliveriesPrunedToTheEnd: old attempts past one batch are
// all pruned in one round, not a thousand an hour; deleting an endpoint
// deletes its attempts however many, and its counters.
func TestWebhookDeliveriesPrunedToTheEnd(t *testing.T) {
	app := newTestApp(t, func(c *Config) { c.Webhooks = testWebhookSettings() })
	hook := app.createWebhook(`{"url":"http://127.0.0.1:9/"}`)
	old := time.Now().Add(-webhookDeliveryRetention - time.Hour).UTC()
	insert := func(id int64, n int, at time.Time) {
		t.Helper()
		if _, err := app.db.Exec("INSERT INTO webhook_deliveries (webhook_id, attempt, latency_us, attempted_at) "+
			"SELECT ?, 1, 0, ? FROM seq_1_to_"+strconv.Itoa(n), id, at); err != nil {
			t.Fatal(err)
		}
	}
	insert(hook.ID, 2500, old)
	insert(hook.ID, 3, time.Now().UTC())
	n, err := app.store.PruneWebhookDeliveries(context.Background())
	if err != nil || n != 2500 || app.deliveriesOf(hook.ID) != 3 {
		t.Errorf("pruned %d (%v), %d left; want 2500 and 3", n, err, app.deliveriesOf(hook.ID))
	}
	insert(hook.ID, 2500, time.Now().UTC())
	app.store.webhookStats.failed(hook.ID)
	if rec := app.do("DELETE", fmt.Sprintf("/api/v1/webhooks/%d", hook.ID), ""); rec.Code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", rec.Code, rec.Body)
	}
	if left := app.deliveriesOf(hook.ID); left != 0 {
		t.Errorf("%d attempts left of the deleted endpoint", left)
	}
	if _, ok := app.store.WebhookCounts()[hook.ID]; ok {
		t.Errorf("the deleted endpoint's counters are still there")
	}
}

// TestWebhookLeaseSharesSlots: with one slot, an endpoint with a long
// backlog gives its lease up after webhookLeaseSends attempts, and an
// endpoint that waits gets its turn before the backlog is drained.
func TestWebhookLeaseSharesSlots(t *testing.T) {
	reached, proceed := make(chan struct{}), make(chan struct{})
	backlogged := newReceiver(t, func(n int) int {
		if n == 50 {
			close(reached)
			<-proceed
		}
		return http.StatusOK
	})
	backlogAtTurn := make(chan int, 1)
	waiting := newReceiver(t, func(n int) int {
		if n == 1 {
			backlogAtTurn <- len(backlogged.snapshot())
		}
		return http.StatusOK
	})
	set := testWebhookSettings()
	set.Workers = 1
	set.Timeout, set.Lease = 10*time.Second, 30*time.Second
	app := newWebhookApp(t, set)
	a := app.createWebhook(fmt.Sprintf(`{"url":%q,"event_types":["user.created"]}`, backlogged.srv.URL))
	app.do("PATCH", fmt.Sprintf("/api/v1/webhooks/%d", a.ID), `{"enabled":false}`)
	const backlog = webhookLeaseSends + 50
	for i := range backlog {
		app.createUser(fmt.Sprintf(`{"username":"backlog%d","email":"backlog%d@example.com","password":"user password"}`, i, i))
	}
	app.waitNumbered()
	app.createWebhook(fmt.Sprintf(`{"url":%q,"event_types":["user.created"]}`, waiting.srv.URL))
	app.do("PATCH", fmt.Sprintf("/api/v1/webhooks/%d", a.ID), `{"enabled":true}`)
	<-reached // the backlogged endpoint holds the only slot
	app.createUser(`{"username":"waitsitsturn","email":"waitsitsturn@example.com","password":"user password"}`)
	app.waitNumbered()
	close(proceed)
	select {
	case got := <-backlogAtTurn:
		if got > webhookLeaseSends {
			t.Errorf("the waiting endpoint got its event after %d calls to the backlogged one, want at most %d", got, webhookLeaseSends)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the waiting endpoint never got its event")
	}
	eventually(t, 60*time.Second, "the backlog delivered", func() bool { return len(backlogged.accepted()) == backlog+1 })
}

// rawReceiver is a receiver on 127.0.0.1 that answers every call with
// answer, as raw bytes, and counts the calls.
func rawReceiver(t *testing.T, answer string) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var calls atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			calls.Add(1)
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				c.Read(buf)
				c.Write([]byte(answer))
			}()
		}
	}()
	return "http://" + ln.Addr().String() + "/", &calls
}

// TestWebhookResponseHeaderCapped: a receiver that answers 2xx with a
// header larger than webhookHeaderCap gets a failed attempt, not a
// delivery: an attempt never holds more of its header.
func TestWebhookResponseHeaderCapped(t *testing.T) {
	url, _ := rawReceiver(t, "HTTP/1.1 200 OK\r\nX-Big: "+strings.Repeat("a", 64<<10)+"\r\nContent-Length: 0\r\n\r\n")
	set := testWebhookSettings()
	set.Schedule = []time.Duration{time.Hour}
	app := newWebhookApp(t, set)
	hook := app.createWebhook(fmt.Sprintf(`{"url":%q}`, url))
	app.createUser(`{"username":"bigheader","email":"bigheader@example.com","password":"user password"}`)
	eventually(t, 30*time.Second, "the attempt recorded", func() bool { return app.deliveriesOf(hook.ID) >= 1 })
	got := decodeJSON[webhookCreated](t, app.do("GET", fmt.Sprintf("/api/v1/webhooks/%d", hook.ID), ""))
	if got.State != "retrying" || got.LastError == nil {
		t.Errorf("state=%s last_error=%v, want retrying with the error", got.State, got.LastError)
	}
}

// TestWebhookNewURLRetriesAfresh: an endpoint retrying an event whose URL
// is changed starts its retries afresh: the new URL gets the event at
// once, not after the old URL's wait.
func TestWebhookNewURLRetriesAfresh(t *testing.T) {
	failing := newReceiver(t, func(int) int { return http.StatusServiceUnavailable })
	working := newReceiver(t, func(int) int { return http.StatusOK })
	set := testWebhookSettings()
	set.Schedule = []time.Duration{time.Hour}
	app := newWebhookApp(t, set)
	hook := app.createWebhook(fmt.Sprintf(`{"url":%q,"event_types":["user.created"]}`, failing.srv.URL))
	app.createUser(`{"username":"newurl","email":"newurl@example.com","password":"user password"}`)
	eventually(t, 30*time.Second, "the failed attempt recorded", func() bool { return app.deliveriesOf(hook.ID) >= 1 })
	rec := app.do("PATCH", fmt.Sprintf("/api/v1/webhooks/%d", hook.ID), fmt.Sprintf(`{"url":%q}`, working.srv.URL))
	got := decodeJSON[webhookCreated](t, rec)
	if got.FailedAttempts != 0 || got.State != "ok" || got.NextAttemptAt != nil {
		t.Errorf("after the URL changed: failed_attempts=%d state=%s next_attempt_at=%v, want afresh", got.FailedAttempts, got.State, got.NextAttemptAt)
	}
	eventually(t, 30*time.Second, "the new URL gets the event", func() bool { return len(working.accepted()) == 1 })
}

// TestWebhookPingWithinLimit: with WEBHOOK_TIMEOUT past webhookPingLimit,
// a ping to a receiver that stalls gives up at the limit, so that its
// answer fits in the server's write timeout.
func TestWebhookPingWithinLimit(t *testing.T) {
	rc := newReceiver(t, func(int) int { return 0 })
	set := testWebhookSettings()
	set.Timeout, set.Lease = webhookPingLimit+5*time.Second, time.Minute
	app := newTestApp(t, func(c *Config) { c.Webhooks = set })
	hook := app.createWebhook(fmt.Sprintf(`{"url":%q}`, rc.srv.URL))
	rec := app.do("POST", fmt.Sprintf("/api/v1/webhooks/%d/test", hook.ID), "")
	got := decodeJSON[deliveryJSON](t, rec)
	if want := fmt.Sprintf("no answer within %v", webhookPingLimit); rec.Code != http.StatusOK || got.Error == nil || *got.Error != want {
		t.Errorf("ping: %d %s, want the error %q", rec.Code, rec.Body, want)
	}
}

// TestWebhookHTTPRefusedWhenTurnedOff: an http URL saved while
// WEBHOOK_ALLOW_HTTP was on is refused at delivery once it is off: the
// receiver hears nothing, and the attempt says why.
func TestWebhookHTTPRefusedWhenTurnedOff(t *testing.T) {
	rc := newReceiver(t, func(int) int { return http.StatusOK })
	set := testWebhookSettings()
	set.Schedule = []time.Duration{time.Hour}
	app := newTestApp(t, func(c *Config) { c.Webhooks = set })
	hook := app.createWebhook(fmt.Sprintf(`{"url":%q}`, rc.srv.URL))
	set.AllowHTTP = false // the replica delivering runs with it off
	stop := startWebhookWorkers(context.Background(), app.store, set, slog.New(slog.NewJSONHandler(app.logs, nil)))
	t.Cleanup(stop)
	app.createUser(`{"username":"httpoff","email":"httpoff@example.com","password":"user password"}`)
	eventually(t, 30*time.Second, "the refused attempt recorded", func() bool { return app.deliveriesOf(hook.ID) >= 1 })
	got := decodeJSON[webhookCreated](t, app.do("GET", fmt.Sprintf("/api/v1/webhooks/%d", hook.ID), ""))
	if got.LastError == nil || !strings.Contains(*got.LastError, "WEBHOOK_ALLOW_HTTP") || len(rc.snapshot()) != 0 {
		t.Errorf("last_error=%v, %d calls; want the refusal and none", got.LastError, len(rc.snapshot()))
	}
}
