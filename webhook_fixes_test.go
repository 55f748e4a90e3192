package main

import (
	"fmt"
	"net"
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
				buf := make([]byte, 4096)
				c.Read(buf)
				c.Write([]byte("HTTP/1.1 xy" + strings.Repeat("é", 400) + "\r\n\r\n"))
				c.Close()
			}()
		}
	}()
	set := testWebhookSettings()
	set.Schedule = []time.Duration{time.Hour}
	app := newWebhookApp(t, set)
	hook := app.createWebhook(fmt.Sprintf(`{"url":"http://%s/"}`, ln.Addr()))
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
