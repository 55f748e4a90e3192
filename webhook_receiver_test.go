package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The webhook tests' receiver, their own Standard Webhooks verifier, and
// the helpers they share.

// receivedCall is one request a test receiver got.
type receivedCall struct {
	id, timestamp, signature string
	body                     []byte
	msg                      struct {
		Type      string `json:"type"`
		Timestamp string `json:"timestamp"`
		Data      struct {
			ID     int64  `json:"id"`
			Type   string `json:"type"`
			UserID *int64 `json:"user_id"`
		} `json:"data"`
	}
	verified bool // by the receiver's secrets, checked as a receiver would
	status   int  // what the receiver answered; 0: it stalled
}

// receiver is a webhook endpoint for tests: script decides what the n-th
// call (from 1) gets: a status, or 0 to stall until the sender gives up.
type receiver struct {
	srv    *httptest.Server
	script func(n int) int
	// onStall, when set, hears of each call stalled, with the caller's
	// address.
	onStall func(n int, remote string)

	mu      sync.Mutex
	secrets []string
	calls   []receivedCall
}

func newReceiver(t *testing.T, script func(n int) int) *receiver {
	t.Helper()
	rc := &receiver{script: script}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	c := receivedCall{id: r.Header.Get("webhook-id"), timestamp: r.Header.Get("webhook-timestamp"),
		signature: r.Header.Get("webhook-signature"), body: body}
	json.Unmarshal(body, &c.msg)
	rc.mu.Lock()
	for _, secret := range rc.secrets {
		c.verified = c.verified || verifyStandardWebhook(secret, c.id, c.timestamp, c.signature, body)
	}
	n := len(rc.calls) + 1
	c.status = rc.script(n)
	rc.calls = append(rc.calls, c)
	rc.mu.Unlock()
	if c.status == 0 {
		if rc.onStall != nil {
			rc.onStall(n, r.RemoteAddr)
		}
		<-r.Context().Done() // stalled past the sender's timeout
		return
	}
	w.WriteHeader(c.status)
}

// trust sets the secrets the receiver verifies with.
func (rc *receiver) trust(secrets ...string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.secrets = secrets
}

func (rc *receiver) snapshot() []receivedCall {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.calls)
}

// accepted are the event ids of the calls answered 2xx, in order.
func (rc *receiver) accepted() []int64 {
	var ids []int64
	for _, c := range rc.snapshot() {
		if c.status >= 200 && c.status < 300 {
			ids = append(ids, c.msg.Data.ID)
		}
	}
	return ids
}

// verifyStandardWebhook checks a signature as the Standard Webhooks
// specification tells a receiver to, written here from the specification
// rather than from the service's code: HMAC-SHA256 of "id.timestamp.body"
// keyed with the base64-decoded secret after whsec_, any v1 signature of
// the space-separated list, and a timestamp within five minutes.
func verifyStandardWebhook(secret, id, timestamp, signatures string, body []byte) bool {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || id == "" {
		return false
	}
	ts, err := strconv.ParseInt(timestamp, 10, 64)
	if err != nil || time.Since(time.Unix(ts, 0)).Abs() > 5*time.Minute {
		return false
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.%s", id, timestamp, body)
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, sig := range strings.Fields(signatures) {
		if version, value, _ := strings.Cut(sig, ","); version == "v1" && hmac.Equal([]byte(value), []byte(want)) {
			return true
		}
	}
	return false
}

// testWebhookSettings deliver fast, to receivers on 127.0.0.1 only (the
// allow-list), over http.
func testWebhookSettings() webhookSettings {
	return webhookSettings{Timeout: time.Second, Lease: 5 * time.Second, SecretOverlap: time.Hour,
		Schedule:  []time.Duration{20 * time.Millisecond, 40 * time.Millisecond, 80 * time.Millisecond, 160 * time.Millisecond},
		AllowHTTP: true, AllowedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, Workers: 4}
}

// newWebhookApp is a test app with set, and its delivery loop running.
func newWebhookApp(t *testing.T, set webhookSettings) *testApp {
	t.Helper()
	app := newTestApp(t, func(c *Config) { c.Webhooks = set })
	stop := startWebhookWorkers(context.Background(), app.store, set, slog.New(slog.NewJSONHandler(app.logs, nil)))
	t.Cleanup(stop)
	app.waitNumbered()
	return app
}

// waitNumbered waits until every event committed so far is numbered: a
// webhook created then starts after them all.
func (a *testApp) waitNumbered() {
	a.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var pending int
		if err := a.db.QueryRow("SELECT COUNT(*) FROM user_events_pending").Scan(&pending); err != nil {
			a.t.Fatal(err)
		}
		if pending == 0 {
			return
		}
		if time.Now().After(deadline) {
			a.t.Fatalf("%d events still not numbered", pending)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// webhookCreated is the answer to a create: the endpoint with its secret.
type webhookCreated = webhookJSON

// createWebhook creates an endpoint, failing the test on anything but 201.
func (a *testApp) createWebhook(body string) webhookCreated {
	a.t.Helper()
	rec := a.do("POST", "/api/v1/webhooks", body)
	if rec.Code != http.StatusCreated {
		a.t.Fatalf("create webhook: %d %s", rec.Code, rec.Body)
	}
	return decodeJSON[webhookCreated](a.t, rec)
}

// userCreatedSeqs are the feed ids of the user.created events of users.
func (a *testApp) userCreatedSeqs(users []int64) []int64 {
	a.t.Helper()
	var seqs []int64
	for _, id := range users {
		var seq int64
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := a.db.QueryRow("SELECT seq FROM user_events WHERE type = 'user.created' AND user_id = ?", id).Scan(&seq)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				a.t.Fatalf("user.created of %d: %v", id, err)
			}
			time.Sleep(20 * time.Millisecond) // not numbered yet
		}
		seqs = append(seqs, seq)
	}
	return seqs
}

// checkInOrder fails unless the calls accepted every one of want, each
// call came only once every wanted event before its own was accepted,
// and every call was signed.
func checkInOrder(t *testing.T, calls []receivedCall, want []int64) {
	t.Helper()
	accepted := map[int64]bool{}
	for i, c := range calls {
		if !c.verified {
			t.Errorf("call %d (event %d): the signature does not verify: %q", i+1, c.msg.Data.ID, c.signature)
		}
		if c.id != strconv.FormatInt(c.msg.Data.ID, 10) {
			t.Errorf("call %d: webhook-id %q for event %d", i+1, c.id, c.msg.Data.ID)
		}
		for _, w := range want {
			if w < c.msg.Data.ID && !accepted[w] {
				t.Errorf("call %d sent event %d before event %d was accepted", i+1, c.msg.Data.ID, w)
			}
		}
		if c.status >= 200 && c.status < 300 {
			accepted[c.msg.Data.ID] = true
		}
	}
	for _, w := range want {
		if !accepted[w] {
			t.Errorf("event %d was never accepted", w)
		}
	}
}
