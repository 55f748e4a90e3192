package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"testing"
	"time"
)

// TestWebhookSamples records deliveries the service signs, for a
// third-party verifier: with WEBHOOK_SAMPLES naming a file, it delivers
// events before and after a rotation, and a ping, and writes each as a
// JSON line with the secrets that must verify it and some that must not
// (tools/webhookcheck, run by .ci/run, checks them with the Standard
// Webhooks reference library). Without WEBHOOK_SAMPLES it is skipped.
func TestWebhookSamples(t *testing.T) {
	path := os.Getenv("WEBHOOK_SAMPLES")
	if path == "" {
		t.Skip("WEBHOOK_SAMPLES names no file: tools/webhookcheck/run.sh sets it")
	}
	rc := newReceiver(t, func(int) int { return http.StatusOK })
	app := newWebhookApp(t, testWebhookSettings())
	hook := app.createWebhook(fmt.Sprintf(`{"url":%q}`, rc.srv.URL))
	stranger := newWebhookSecret()
	app.newUser("sampled1")
	app.newUser("sampled2")
	eventually(t, 30*time.Second, "two deliveries", func() bool { return len(rc.accepted()) >= 2 })
	rotated := decodeJSON[webhookCreated](t, app.do("POST", fmt.Sprintf("/api/v1/webhooks/%d/secret", hook.ID), ""))
	before := len(rc.snapshot())
	app.newUser("sampled3")
	eventually(t, 30*time.Second, "deliveries after the rotation", func() bool { return len(rc.accepted()) >= 5 })
	if rec := app.do("POST", fmt.Sprintf("/api/v1/webhooks/%d/test", hook.ID), ""); rec.Code != http.StatusOK {
		t.Fatalf("ping: %d %s", rec.Code, rec.Body)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	enc := json.NewEncoder(f)
	for i, c := range rc.snapshot() {
		sample := map[string]any{
			"name":    fmt.Sprintf("call %d (%s %s)", i+1, c.msg.Type, c.id),
			"headers": map[string]string{"webhook-id": c.id, "webhook-timestamp": c.timestamp, "webhook-signature": c.signature},
			"body":    string(c.body),
		}
		if i < before {
			sample["verify_with"], sample["refuse_with"] = []string{hook.Secret}, []string{rotated.Secret, stranger}
		} else {
			sample["verify_with"], sample["refuse_with"] = []string{hook.Secret, rotated.Secret}, []string{stranger}
		}
		if err := enc.Encode(sample); err != nil {
			t.Fatal(err)
		}
	}
}
