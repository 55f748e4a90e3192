package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestWebhookDeliversThroughFailures: a receiver that fails three times,
// then stalls past the timeout once, then recovers gets every event, once
// accepted, in feed order, signed; the attempts are listed.
func TestWebhookDeliversThroughFailures(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, func(n int) int {
		switch {
		case n <= 3:
			return http.StatusInternalServerError
		case n == 4:
			return 0
		}
		return http.StatusNoContent
	})
	app := newWebhookApp(t, testWebhookSettings())
	hook := app.createWebhook(fmt.Sprintf(`{"url":%q,"event_types":["user.created"],"description":"crm"}`, rc.srv.URL+"/hooks"))
	rc.trust(hook.Secret)
	var users []int64
	for i := range 5 {
		u, _ := app.newUser(fmt.Sprintf("hooked%d", i))
		users = append(users, u.ID)
	}
	want := app.userCreatedSeqs(users)
	eventually(t, 60*time.Second, "every event accepted", func() bool { return len(rc.accepted()) >= len(want) })
	calls := rc.snapshot()
	checkInOrder(t, calls, want)
	if got := rc.accepted(); !slices.Equal(got, want) {
		t.Errorf("accepted %v, want each of %v once, in order", got, want)
	}
	if calls[0].msg.Type != "user.created" || calls[0].msg.Data.Type != "user.created" || calls[0].msg.Timestamp == "" {
		t.Errorf("first message: %s", calls[0].body)
	}
	for i := 1; i < 4; i++ {
		if calls[i].id != calls[0].id {
			t.Errorf("retry %d has webhook-id %q, the first %q", i, calls[i].id, calls[0].id)
		}
	}
	// The receiver counts a call accepted before the sender records it.
	eventually(t, 30*time.Second, "every attempt recorded", func() bool { return app.deliveriesOf(hook.ID) >= len(calls) })
	rec := app.do("GET", fmt.Sprintf("/api/v1/webhooks/%d/deliveries", hook.ID), "")
	var list struct {
		Items []struct {
			EventID    *int64  `json:"event_id"`
			Attempt    int     `json:"attempt"`
			StatusCode *int    `json:"status_code"`
			Error      *string `json:"error"`
			Next       *string `json:"next_attempt_at"`
		} `json:"items"`
	}
	json.Unmarshal(rec.Body.Bytes(), &list)
	if rec.Code != http.StatusOK || len(list.Items) < len(want)+4 {
		t.Fatalf("deliveries: %d %s", rec.Code, rec.Body)
	}
	first := list.Items[len(list.Items)-1] // newest first
	if first.Attempt != 1 || first.StatusCode == nil || *first.StatusCode != 500 || first.Next == nil {
		t.Errorf("the first attempt listed: %+v", first)
	}
	if timedOut := list.Items[len(list.Items)-4]; timedOut.StatusCode != nil || timedOut.Error == nil || !strings.Contains(*timedOut.Error, "no answer within") {
		t.Errorf("the fourth attempt: %+v", timedOut)
	}
	got := decodeJSON[webhookCreated](t, app.do("GET", fmt.Sprintf("/api/v1/webhooks/%d", hook.ID), ""))
	if got.State != "ok" || got.Secret != "" || got.LastError != nil {
		t.Errorf("the endpoint after recovering: %+v", got)
	}
}

// TestWebhookEndpoints: create shows the secret once, the reads never;
// PATCH, DELETE and rotation change what they say; bad input is a 400
// naming the field; every change is an event of the feed.
func TestWebhookEndpoints(t *testing.T) {
	t.Parallel()
	app := newTestApp(t, func(c *Config) { c.Webhooks = testWebhookSettings() })
	hook := app.createWebhook(`{"url":"https://hooks.example.com/in"}`)
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(hook.Secret, "whsec_"))
	if !strings.HasPrefix(hook.Secret, "whsec_") || err != nil || len(key) < 24 {
		t.Fatalf("secret %q: %v", hook.Secret, err)
	}
	if !hook.Enabled || hook.State != "ok" || len(hook.EventTypes) != 0 {
		t.Errorf("created: %+v", hook)
	}
	path := fmt.Sprintf("/api/v1/webhooks/%d", hook.ID)
	if got := decodeJSON[webhookCreated](t, app.do("GET", path, "")); got.Secret != "" || got.URL != hook.URL {
		t.Errorf("GET: %+v", got)
	}
	if rec := app.do("GET", "/api/v1/webhooks", ""); rec.Code != http.StatusOK || strings.Contains(rec.Body.String(), "whsec_") {
		t.Errorf("list: %d %s", rec.Code, rec.Body)
	}
	rec := app.do("PATCH", path, `{"enabled":false,"event_types":["user.deleted","webhook.disabled"],"description":"off"}`)
	got := decodeJSON[webhookCreated](t, rec)
	if got.Enabled || got.State != "disabled" || got.DisabledReason == nil || !slices.Equal(got.EventTypes, []string{"user.deleted", "webhook.disabled"}) {
		t.Errorf("PATCH: %+v", got)
	}
	got = decodeJSON[webhookCreated](t, app.do("PATCH", path, `{"enabled":true}`))
	if !got.Enabled || got.DisabledReason != nil {
		t.Errorf("enabled again: %+v", got)
	}
	rotated := decodeJSON[webhookCreated](t, app.do("POST", path+"/secret", ""))
	if rotated.Secret == hook.Secret || !strings.HasPrefix(rotated.Secret, "whsec_") || rotated.PreviousUntil == nil {
		t.Errorf("rotated: %+v", rotated)
	}
	for _, c := range []struct{ body, field string }{
		{`{}`, "url"},
		{`{"url":"ftp://example.com"}`, "url"},
		{`{"url":"http://example.com/x"}`, ""}, // allowed by the test settings
		{`{"url":"https://user:pw@example.com"}`, "url"},
		{`{"url":"https://169.254.169.254/latest"}`, "url"},
		{`{"url":"https://[::1]/"}`, "url"},
		{`{"url":"https://10.1.2.3/"}`, "url"},
		{`{"url":"https://example.com","event_types":["user.exploded"]}`, "event_types"},
		{`{"url":"https://example.com","event_types":["user.created","user.created"]}`, "event_types"},
		{`{"url":"https://example.com","secret":"whsec_mine"}`, "secret"},
		{`{"url":"https://example.com","enabled":false}`, "enabled"},
	} {
		rec := app.do("POST", "/api/v1/webhooks", c.body)
		if c.field == "" {
			if rec.Code != http.StatusCreated {
				t.Errorf("%s: %d %s", c.body, rec.Code, rec.Body)
			}
			continue
		}
		wantProblem(t, rec, http.StatusBadRequest, c.field)
	}
	if rec := app.do("POST", "/api/v1/webhooks", `{"url":"http://example.com/x"}`); rec.Code != http.StatusCreated {
		t.Fatalf("http allowed: %d", rec.Code)
	}
	strict := newTestApp(t) // the defaults: https only
	wantProblem(t, strict.do("POST", "/api/v1/webhooks", `{"url":"http://example.com/x"}`), http.StatusBadRequest, "url")
	_, userToken := app.newUser("nothooker")
	wantProblem(t, app.do("GET", "/api/v1/webhooks", "", "Authorization", "Bearer "+userToken), http.StatusForbidden)
	wantProblem(t, app.do("GET", "/api/v1/webhooks/abc", ""), http.StatusBadRequest, "id")
	if rec := app.do("DELETE", path, ""); rec.Code != http.StatusNoContent {
		t.Fatalf("DELETE: %d", rec.Code)
	}
	for _, c := range []struct{ method, path string }{{"GET", path}, {"DELETE", path}, {"PATCH", path}, {"POST", path + "/secret"},
		{"GET", path + "/deliveries"}, {"POST", path + "/test"}} {
		body := ""
		if c.method == "PATCH" {
			body = "{}"
		}
		wantProblem(t, app.do(c.method, c.path, body), http.StatusNotFound)
	}
	// Each change is an event naming the endpoint, about no user.
	var events []struct {
		Type    string `json:"type"`
		UserID  *int64 `json:"user_id"`
		ActorID *int64 `json:"actor_id"`
		Changes struct {
			WebhookID int64    `json:"webhook_id"`
			Fields    []string `json:"fields"`
		} `json:"changes"`
	}
	eventually(t, 10*time.Second, "the webhook events numbered", func() bool {
		var page struct {
			Items json.RawMessage `json:"items"`
		}
		json.Unmarshal(app.do("GET", "/api/v1/events?per_page=1000", "").Body.Bytes(), &page)
		events = events[:0]
		json.Unmarshal(page.Items, &events)
		n := 0
		for _, e := range events {
			if strings.HasPrefix(e.Type, "webhook.") && e.Changes.WebhookID == hook.ID {
				n++
			}
		}
		return n == 5
	})
	var types []string
	for _, e := range events {
		if strings.HasPrefix(e.Type, "webhook.") && e.Changes.WebhookID == hook.ID {
			types = append(types, e.Type)
			if e.UserID != nil || e.ActorID == nil || *e.ActorID != app.adminID {
				t.Errorf("%s: user %v, actor %v", e.Type, e.UserID, e.ActorID)
			}
		}
	}
	if want := []string{"webhook.created", "webhook.updated", "webhook.updated", "webhook.secret_rotated", "webhook.deleted"}; !slices.Equal(types, want) {
		t.Errorf("events %v, want %v", types, want)
	}
}

// TestDestinationPolicy: internal addresses are refused unless allowed.
func TestDestinationPolicy(t *testing.T) {
	t.Parallel()
	strict := destinationPolicy{}
	for _, c := range []struct {
		addr    string
		refused bool
	}{
		{"127.0.0.1", true}, {"::1", true}, {"10.0.0.1", true}, {"172.16.5.4", true}, {"192.168.1.1", true},
		{"169.254.169.254", true}, {"fe80::1", true}, {"fd00:ec2::254", true}, {"::ffff:127.0.0.1", true},
		{"0.0.0.0", true}, {"100.64.0.1", true}, {"224.0.0.1", true}, {"64:ff9b::a00:1", true},
		{"fec0::1", true},
		{"93.184.215.14", false}, {"2606:2800:21f:cb07:6820:80da:af6b:8b2c", false},
	} {
		if err := strict.check(netip.MustParseAddr(c.addr)); (err != nil) != c.refused {
			t.Errorf("%s: %v, want refused %v", c.addr, err, c.refused)
		}
	}
	allowed := destinationPolicy{allowed: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}}
	if allowed.check(netip.MustParseAddr("10.1.2.3")) != nil || allowed.check(netip.MustParseAddr("10.2.0.1")) == nil {
		t.Error("the allow-list is not applied")
	}
	if (destinationPolicy{allowPrivate: true}).check(netip.MustParseAddr("169.254.169.254")) != nil {
		t.Error("WEBHOOK_ALLOW_PRIVATE does not allow")
	}
}

// TestWebhookRefusesInternalDestinations: a host name that resolves to
// loopback passes when saved, and is refused at the connection: the
// receiver hears nothing, and the attempt says why.
func TestWebhookRefusesInternalDestinations(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, func(int) int { return http.StatusOK })
	set := testWebhookSettings()
	set.AllowedNetworks = nil
	app := newWebhookApp(t, set)
	port := rc.srv.URL[strings.LastIndex(rc.srv.URL, ":"):]
	hook := app.createWebhook(fmt.Sprintf(`{"url":"http://localhost%s/","event_types":["user.created"]}`, port))
	app.newUser("ssrfvictim")
	var got webhookCreated
	eventually(t, 30*time.Second, "a refused attempt", func() bool {
		got = decodeJSON[webhookCreated](t, app.do("GET", fmt.Sprintf("/api/v1/webhooks/%d", hook.ID), ""))
		return got.LastError != nil
	})
	if !strings.Contains(*got.LastError, "destination refused") || !strings.Contains(*got.LastError, "loopback") || got.State != "retrying" {
		t.Errorf("the endpoint: %+v, %q", got, *got.LastError)
	}
	ping := app.do("POST", fmt.Sprintf("/api/v1/webhooks/%d/test", hook.ID), "")
	if ping.Code != http.StatusOK || !strings.Contains(ping.Body.String(), "destination refused") {
		t.Errorf("ping: %d %s", ping.Code, ping.Body)
	}
	if calls := rc.snapshot(); len(calls) != 0 {
		t.Errorf("the receiver got %d calls", len(calls))
	}
}

// TestWebhookSecretRotation: after a rotation, deliveries carry both
// signatures for the overlap, so receivers with either secret verify;
// without an overlap, only the new secret signs.
func TestWebhookSecretRotation(t *testing.T) {
	t.Parallel()
	for _, overlap := range []time.Duration{time.Hour, 0} {
		t.Run(overlap.String(), func(t *testing.T) {
			rc := newReceiver(t, func(int) int { return http.StatusOK })
			set := testWebhookSettings()
			set.SecretOverlap = overlap
			app := newWebhookApp(t, set)
			hook := app.createWebhook(fmt.Sprintf(`{"url":%q,"event_types":["user.created"]}`, rc.srv.URL))
			u1, _ := app.newUser("rotate1" + strconv.Itoa(int(overlap.Hours())))
			eventually(t, 30*time.Second, "the first delivery", func() bool { return len(rc.accepted()) == 1 })
			rotated := decodeJSON[webhookCreated](t, app.do("POST", fmt.Sprintf("/api/v1/webhooks/%d/secret", hook.ID), ""))
			u2, _ := app.newUser("rotate2" + strconv.Itoa(int(overlap.Hours())))
			eventually(t, 30*time.Second, "the second delivery", func() bool { return len(rc.accepted()) == 2 })
			calls := rc.snapshot()
			first, second := calls[0], calls[len(calls)-1]
			if *first.msg.Data.UserID != u1.ID || *second.msg.Data.UserID != u2.ID {
				t.Fatalf("delivered users %v, %v", *first.msg.Data.UserID, *second.msg.Data.UserID)
			}
			if !verifyStandardWebhook(hook.Secret, first.id, first.timestamp, first.signature, first.body) {
				t.Error("the first delivery does not verify with the first secret")
			}
			if !verifyStandardWebhook(rotated.Secret, second.id, second.timestamp, second.signature, second.body) {
				t.Error("the delivery after the rotation does not verify with the new secret")
			}
			oldVerifies := verifyStandardWebhook(hook.Secret, second.id, second.timestamp, second.signature, second.body)
			if oldVerifies != (overlap > 0) || len(strings.Fields(second.signature)) != map[bool]int{true: 2, false: 1}[overlap > 0] {
				t.Errorf("overlap %v: the old secret verifies: %v; signatures %q", overlap, oldVerifies, second.signature)
			}
		})
	}
}

// TestWebhookDisabledAfterSchedule: an endpoint that fails every attempt
// of the schedule is disabled, with its reason and an event.
func TestWebhookDisabledAfterSchedule(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, func(int) int { return http.StatusServiceUnavailable })
	set := testWebhookSettings()
	set.Schedule = []time.Duration{10 * time.Millisecond, 10 * time.Millisecond}
	app := newWebhookApp(t, set)
	hook := app.createWebhook(fmt.Sprintf(`{"url":%q,"event_types":["user.created"]}`, rc.srv.URL))
	app.newUser("alwaysfails")
	var got webhookCreated
	eventually(t, 30*time.Second, "the endpoint disabled", func() bool {
		got = decodeJSON[webhookCreated](t, app.do("GET", fmt.Sprintf("/api/v1/webhooks/%d", hook.ID), ""))
		return !got.Enabled
	})
	if got.State != "disabled" || got.DisabledReason == nil || !strings.Contains(*got.DisabledReason, "failed 3 attempts") ||
		!strings.Contains(*got.DisabledReason, "answered 503") {
		t.Errorf("disabled: %+v %v", got, got.DisabledReason)
	}
	if n := len(rc.snapshot()); n != 3 {
		t.Errorf("%d attempts, want 3: the first and one per wait of the schedule", n)
	}
	eventually(t, 10*time.Second, "the webhook.disabled event", func() bool {
		body := app.do("GET", "/api/v1/events?type=webhook.disabled", "").Body.String()
		return strings.Contains(body, `"actor_type":"system"`) && strings.Contains(body, fmt.Sprintf(`"webhook_id":%d`, hook.ID))
	})
	metrics := app.manage("GET", "/metrics").Body.String()
	for _, want := range []string{
		fmt.Sprintf(`usersvc_webhook_enabled{webhook="%d"} 0`, hook.ID),
		fmt.Sprintf(`usersvc_webhook_deliveries_total{webhook="%d",outcome="failed"} 3`, hook.ID),
		fmt.Sprintf(`usersvc_webhook_oldest_undelivered_seconds{webhook="%d"}`, hook.ID),
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// TestDeadWebhookDelaysNoOther: while one endpoint stalls on its first
// event, another gets every event, and writes answer as ever.
func TestDeadWebhookDelaysNoOther(t *testing.T) {
	t.Parallel()
	dead := newReceiver(t, func(int) int { return 0 })
	alive := newReceiver(t, func(int) int { return http.StatusOK })
	set := testWebhookSettings()
	set.Timeout, set.Lease = 5*time.Minute, 10*time.Minute // the dead one holds its attempt through the test
	app := newWebhookApp(t, set)
	app.createWebhook(fmt.Sprintf(`{"url":%q,"event_types":["user.created"]}`, dead.srv.URL))
	app.createWebhook(fmt.Sprintf(`{"url":%q,"event_types":["user.created"]}`, alive.srv.URL))
	var users []int64
	for i := range 10 {
		u, _ := app.newUser(fmt.Sprintf("isolated%d", i))
		users = append(users, u.ID)
	}
	want := app.userCreatedSeqs(users)
	eventually(t, 60*time.Second, "the live endpoint served", func() bool { return len(alive.accepted()) == len(want) })
	if got := alive.accepted(); !slices.Equal(got, want) {
		t.Errorf("the live endpoint got %v, want %v", got, want)
	}
	if calls := dead.snapshot(); len(calls) != 1 || calls[0].msg.Data.ID != want[0] {
		t.Errorf("the dead endpoint got %d calls, want one, still waiting", len(calls))
	}
}

// TestWebhookPing: the test route sends a signed ping and answers how it
// went; the attempt is listed.
func TestWebhookPing(t *testing.T) {
	t.Parallel()
	rc := newReceiver(t, func(int) int { return http.StatusAccepted })
	app := newTestApp(t, func(c *Config) { c.Webhooks = testWebhookSettings() })
	hook := app.createWebhook(fmt.Sprintf(`{"url":%q}`, rc.srv.URL))
	rc.trust(hook.Secret)
	rec := app.do("POST", fmt.Sprintf("/api/v1/webhooks/%d/test", hook.ID), "")
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"status_code":202`) || !strings.Contains(rec.Body.String(), `"event_id":null`) {
		t.Fatalf("ping: %d %s", rec.Code, rec.Body)
	}
	calls := rc.snapshot()
	if len(calls) != 1 || calls[0].msg.Type != "webhook.ping" || !calls[0].verified || !strings.HasPrefix(calls[0].id, "ping_") {
		t.Errorf("the receiver got %+v", calls)
	}
	if body := app.do("GET", fmt.Sprintf("/api/v1/webhooks/%d/deliveries", hook.ID), "").Body.String(); !strings.Contains(body, `"status_code":202`) {
		t.Errorf("deliveries: %s", body)
	}
}

// TestWebhookFollowsNoRedirect: a redirect is a failed attempt, and its
// target hears nothing.
func TestWebhookFollowsNoRedirect(t *testing.T) {
	t.Parallel()
	target := newReceiver(t, func(int) int { return http.StatusOK })
	redirect := httptest.NewServer(http.RedirectHandler(target.srv.URL, http.StatusTemporaryRedirect))
	t.Cleanup(redirect.Close)
	app := newTestApp(t, func(c *Config) { c.Webhooks = testWebhookSettings() })
	hook := app.createWebhook(fmt.Sprintf(`{"url":%q}`, redirect.URL))
	rec := app.do("POST", fmt.Sprintf("/api/v1/webhooks/%d/test", hook.ID), "")
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"status_code":307`) ||
		!strings.Contains(rec.Body.String(), "redirects are not followed") {
		t.Errorf("ping: %d %s", rec.Code, rec.Body)
	}
	if n := len(target.snapshot()); n != 0 {
		t.Errorf("the redirect's target got %d calls", n)
	}
}
