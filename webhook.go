package main

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	mathrand "math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// Webhooks: endpoints that receive the change feed, pushed, signed as
// Standard Webhooks sign (docs/webhooks.md). This file holds what they
// are and the pure rules: the secret, the signature, the retry schedule.

// Webhook is an endpoint as its admins see it, with its delivery state.
type Webhook struct {
	ID          int64
	URL         string
	Description string
	// EventTypes the endpoint receives; empty: every type.
	EventTypes     []EventType
	Enabled        bool
	DisabledReason string
	CreatedAt      time.Time
	UpdatedAt      time.Time

	// Cursor is the last feed seq delivered, or passed over as not of
	// the endpoint's types.
	Cursor int64
	// Attempt counts the failed attempts at the event after Cursor; the
	// next is due at NextAttemptAt (zero: now). FailingSince is the first
	// of them.
	Attempt       int
	NextAttemptAt time.Time
	FailingSince  time.Time
	LastError     string
	DeliveredAt   time.Time // the last accepted delivery
	// PreviousUntil is when the secret before the last rotation stops
	// signing (zero: no such secret).
	PreviousUntil time.Time
}

// wants reports whether the endpoint receives events of type t.
func (w *Webhook) wants(t EventType) bool {
	if len(w.EventTypes) == 0 {
		return true
	}
	for _, want := range w.EventTypes {
		if want == t {
			return true
		}
	}
	return false
}

// state is the endpoint's state in a word: disabled, failing (retrying
// an event) or ok.
func (w *Webhook) state() string {
	switch {
	case !w.Enabled:
		return "disabled"
	case w.Attempt > 0:
		return "retrying"
	default:
		return "ok"
	}
}

// NewWebhook is an endpoint about to be created, its URL checked.
type NewWebhook struct {
	URL         string
	Description string
	EventTypes  []EventType
	Secret      string
}

// WebhookChanges are the fields a PATCH sets; nil: unchanged.
type WebhookChanges struct {
	URL         *string
	Description *string
	EventTypes  *[]EventType
	Enabled     *bool
}

// WebhookDelivery is one attempt to deliver an event (EventSeq 0: a
// ping) to an endpoint.
type WebhookDelivery struct {
	ID            int64
	WebhookID     int64
	EventSeq      int64
	Attempt       int
	StatusCode    int    // 0: no answer
	Error         string // why it failed, without an answer or with a non-2xx one
	Latency       time.Duration
	At            time.Time
	NextAttemptAt time.Time // zero: none (delivered, or the endpoint disabled)
}

// ok reports whether the attempt was accepted: a 2xx.
func (d *WebhookDelivery) ok() bool { return d.StatusCode >= 200 && d.StatusCode < 300 }

// ErrWebhookNotFound: no webhook endpoint has that id.
var ErrWebhookNotFound = errors.New("webhook not found")

// errLeaseLost: this replica no longer holds the endpoint's lease
// (another took it after it ran out): it must deliver no more.
var errLeaseLost = errors.New("webhook lease lost")

// webhookSecretPrefix starts every secret, as Standard Webhooks has it.
const webhookSecretPrefix = "whsec_"

// webhookSecretBytes is the random bytes of a secret (the standard asks
// for 24 to 64).
const webhookSecretBytes = 32

// newWebhookSecret is a fresh secret: whsec_ and base64 of random bytes.
func newWebhookSecret() string {
	b := make([]byte, webhookSecretBytes)
	rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return webhookSecretPrefix + base64.StdEncoding.EncodeToString(b)
}

// webhookSignatures is the webhook-signature header of a message: "v1,"
// and the base64 HMAC-SHA256 of "id.timestamp.body" keyed with each
// secret's decoded bytes, space-separated (a receiver accepts any one
// that verifies). A secret that does not decode signs nothing.
func webhookSignatures(secrets []string, msgID string, timestamp int64, body []byte) string {
	signed := make([]byte, 0, len(msgID)+len(body)+24)
	signed = append(append(signed, msgID...), '.')
	signed = append(strconv.AppendInt(signed, timestamp, 10), '.')
	signed = append(signed, body...)
	var sigs []string
	for _, secret := range secrets {
		key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, webhookSecretPrefix))
		if err != nil {
			continue
		}
		mac := hmac.New(sha256.New, key)
		mac.Write(signed)
		sigs = append(sigs, "v1,"+base64.StdEncoding.EncodeToString(mac.Sum(nil)))
	}
	return strings.Join(sigs, " ")
}

// defaultWebhookSchedule is the wait before each retry of an event that
// failed, the first retry first: Standard Webhooks' example schedule,
// about 28 hours in all. The attempt after the last wait failing
// disables the endpoint.
var defaultWebhookSchedule = []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute,
	2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}

// webhookJitter is the spread of a retry's wait, each way: 20% of it, so
// that endpoints failing together do not retry in step.
const webhookJitter = 0.2

// retryAfter is the wait before the next attempt once failures attempts
// in a row have failed, and false when the schedule is spent: the
// endpoint is then disabled.
func retryAfter(schedule []time.Duration, failures int) (time.Duration, bool) {
	if failures < 1 || failures > len(schedule) {
		return 0, false
	}
	d := schedule[failures-1]
	spread := float64(d) * webhookJitter
	return d + time.Duration(spread*(2*mathrand.Float64()-1)), true
}
