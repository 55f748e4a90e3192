package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
)

// The webhook endpoints' routes (admins only): create, list, read,
// change, delete, rotate the secret, list the attempts, ping; and their
// metrics. docs/webhooks.md has the contract.

// webhookMaxBody bounds a webhook's JSON body.
const webhookMaxBody = 16 << 10

// maxWebhookDescription is the longest description, in characters.
const maxWebhookDescription = 255

// webhookJSON is an endpoint on the wire; Secret only in the answers
// that make one (create, rotate), shown that once.
type webhookJSON struct {
	ID             int64    `json:"id"`
	URL            string   `json:"url"`
	Description    string   `json:"description"`
	EventTypes     []string `json:"event_types"`
	Enabled        bool     `json:"enabled"`
	State          string   `json:"state"`
	DisabledReason *string  `json:"disabled_reason"`
	LastError      *string  `json:"last_error"`
	FailedAttempts int      `json:"failed_attempts"`
	NextAttemptAt  *string  `json:"next_attempt_at"`
	FailingSince   *string  `json:"failing_since"`
	DeliveredAt    *string  `json:"last_delivered_at"`
	PreviousUntil  *string  `json:"previous_secret_until"`
	CreatedAt      string   `json:"created_at"`
	UpdatedAt      string   `json:"updated_at"`
	Secret         string   `json:"secret,omitempty"`
}

// timestampOrNull is t as a JSON timestamp string, or nil when zero.
func timestampOrNull(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(timestampJSONForm)
	return &s
}

// stringOrNull is s, or nil when empty.
func stringOrNull(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// toJSON is the endpoint as its GET shows it.
func (w *Webhook) toJSON() webhookJSON {
	types := make([]string, len(w.EventTypes))
	for i, t := range w.EventTypes {
		types[i] = string(t)
	}
	return webhookJSON{ID: w.ID, URL: w.URL, Description: w.Description, EventTypes: types, Enabled: w.Enabled, State: w.state(),
		DisabledReason: stringOrNull(w.DisabledReason), LastError: stringOrNull(w.LastError), FailedAttempts: w.Attempt,
		NextAttemptAt: timestampOrNull(w.NextAttemptAt), FailingSince: timestampOrNull(w.FailingSince),
		DeliveredAt: timestampOrNull(w.DeliveredAt), PreviousUntil: timestampOrNull(w.PreviousUntil),
		CreatedAt: w.CreatedAt.UTC().Format(timestampJSONForm), UpdatedAt: w.UpdatedAt.UTC().Format(timestampJSONForm)}
}

// webhookPath is the URL path of the endpoint id.
func webhookPath(id int64) string { return "/api/v1/webhooks/" + strconv.FormatInt(id, 10) }

// parseWebhookBody reads a webhook's JSON body: url, description,
// event_types and (forCreate false) enabled; every problem at once.
func (s *server) parseWebhookBody(w http.ResponseWriter, r *http.Request, forCreate bool) (WebhookChanges, error) {
	members, err := readJSONObject(w, r)
	if err != nil {
		return WebhookChanges{}, err
	}
	var c WebhookChanges
	var errs fieldErrors
	for _, m := range members {
		switch m.Name {
		case "url":
			if c.URL = decodeString(m, &errs); c.URL != nil {
				if msg := checkWebhookURL(*c.URL, s.webhooks.AllowHTTP, s.webhooks.policy()); msg != "" {
					errs.add("url", msg)
				}
			}
		case "description":
			if c.Description = decodeString(m, &errs); c.Description != nil && utf8.RuneCountInString(*c.Description) > maxWebhookDescription {
				errs.add("description", fmt.Sprintf("must be at most %d characters", maxWebhookDescription))
			}
		case "event_types":
			c.EventTypes = decodeEventTypes(m, &errs)
		case "enabled":
			if forCreate {
				errs.add("enabled", "is not a field of a new webhook: it starts enabled")
			} else {
				c.Enabled = decodeBool(m, &errs)
			}
		default:
			if len(errs) < maxUnknownFieldsReported {
				errs.add(fieldName(m.Name), "is not a known field")
			}
		}
	}
	if forCreate && c.URL == nil && !slices.ContainsFunc(errs, func(e fieldError) bool { return e.Field == "url" }) {
		errs.add("url", "is required")
	}
	if len(errs) > 0 {
		return WebhookChanges{}, badRequest("The webhook is not valid.", errs...)
	}
	return c, nil
}

// decodeEventTypes decodes event_types: an array of distinct event
// types; empty means every type.
func decodeEventTypes(m jsonMember, errs *fieldErrors) *[]EventType {
	var names []string
	if m.isNull() || json.Unmarshal(m.Value, &names) != nil {
		errs.add(m.Name, "must be an array of event types")
		return nil
	}
	types := []EventType{}
	for _, name := range names {
		t := EventType(name)
		switch {
		case !slices.Contains(eventTypes, t):
			errs.add(m.Name, fmt.Sprintf("%q is not an event type; the types are %s", truncate(name, 64), joinTypes(eventTypes)))
			return nil
		case slices.Contains(types, t):
			errs.add(m.Name, fmt.Sprintf("names %q twice", name))
			return nil
		}
		types = append(types, t)
	}
	return &types
}

// handleCreateWebhook creates an endpoint: 201 with its secret, shown
// this once.
func (s *server) handleCreateWebhook(w http.ResponseWriter, r *http.Request) {
	c, err := s.parseWebhookBody(w, r, true)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	nw := NewWebhook{URL: *c.URL, Secret: newWebhookSecret(), EventTypes: []EventType{}}
	if c.Description != nil {
		nw.Description = *c.Description
	}
	if c.EventTypes != nil {
		nw.EventTypes = *c.EventTypes
	}
	hook, err := s.store.CreateWebhook(r.Context(), s.actor(r), nw)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	body := hook.toJSON()
	body.Secret = nw.Secret
	w.Header().Set("Location", webhookPath(hook.ID))
	s.respond(w, r, http.StatusCreated, body)
}

// handleListWebhooks lists every endpoint.
func (s *server) handleListWebhooks(w http.ResponseWriter, r *http.Request) {
	hooks, err := s.store.Webhooks(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	items := make([]webhookJSON, len(hooks))
	for i := range hooks {
		items[i] = hooks[i].toJSON()
	}
	s.respond(w, r, http.StatusOK, map[string]any{"items": items})
}

// handleGetWebhook answers one endpoint, with its state and last error.
func (s *server) handleGetWebhook(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "webhook")
	var hook Webhook
	if err == nil {
		hook, err = s.store.Webhook(r.Context(), id)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.respond(w, r, http.StatusOK, hook.toJSON())
}

// handleUpdateWebhook changes the url, description, event types or
// enabled flag of an endpoint.
func (s *server) handleUpdateWebhook(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "webhook")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	c, err := s.parseWebhookBody(w, r, false)
	var hook Webhook
	if err == nil {
		hook, err = s.store.UpdateWebhook(r.Context(), s.actor(r), id, c)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.respond(w, r, http.StatusOK, hook.toJSON())
}

// handleDeleteWebhook deletes an endpoint: 204.
func (s *server) handleDeleteWebhook(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "webhook")
	if err == nil {
		err = s.store.DeleteWebhook(r.Context(), s.actor(r), id)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleRotateWebhookSecret gives an endpoint a new secret, shown this
// once; the old one signs beside it for WEBHOOK_SECRET_OVERLAP.
func (s *server) handleRotateWebhookSecret(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "webhook")
	secret := newWebhookSecret()
	var hook Webhook
	if err == nil {
		hook, err = s.store.RotateWebhookSecret(r.Context(), s.actor(r), id, secret, s.webhooks.SecretOverlap)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	body := hook.toJSON()
	body.Secret = secret
	s.respond(w, r, http.StatusOK, body)
}

// deliveryJSON is an attempt on the wire.
type deliveryJSON struct {
	ID            int64   `json:"id"`
	EventID       *int64  `json:"event_id"`
	Attempt       int     `json:"attempt"`
	StatusCode    *int    `json:"status_code"`
	Error         *string `json:"error"`
	LatencyMS     float64 `json:"latency_ms"`
	At            string  `json:"attempted_at"`
	NextAttemptAt *string `json:"next_attempt_at"`
}

// toJSON is the attempt as the deliveries list shows it.
func (d *WebhookDelivery) toJSON() deliveryJSON {
	j := deliveryJSON{ID: d.ID, Attempt: d.Attempt, Error: stringOrNull(d.Error), LatencyMS: float64(d.Latency.Microseconds()) / 1000,
		At: d.At.UTC().Format(timestampJSONForm), NextAttemptAt: timestampOrNull(d.NextAttemptAt)}
	if d.EventSeq != 0 {
		j.EventID = &d.EventSeq
	}
	if d.StatusCode != 0 {
		j.StatusCode = &d.StatusCode
	}
	return j
}

// handleWebhookDeliveries lists an endpoint's latest attempts, newest
// first.
func (s *server) handleWebhookDeliveries(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "webhook")
	var list []WebhookDelivery
	if err == nil {
		list, err = s.store.WebhookDeliveries(r.Context(), id)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	items := make([]deliveryJSON, len(list))
	for i := range list {
		items[i] = list[i].toJSON()
	}
	s.respond(w, r, http.StatusOK, map[string]any{"items": items})
}

// handleTestWebhook sends the endpoint a ping (type webhook.ping), signed
// like any delivery, now, outside the feed's order, and answers how it
// went; the attempt is listed among the deliveries.
func (s *server) handleTestWebhook(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "webhook")
	var hook Webhook
	var secrets []string
	if err == nil {
		hook, secrets, err = s.store.WebhookForPing(r.Context(), id)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	now := time.Now()
	body := fmt.Appendf(nil, `{"type":"webhook.ping","timestamp":"%s","data":{"webhook_id":%d}}`, now.UTC().Format(timestampJSONForm), id)
	d := s.webhookSender.ping(r.Context(), hook.URL, "ping_"+newRequestID(), body, secrets)
	d.WebhookID, d.Attempt = id, 1
	if d.ID, err = s.store.RecordPing(r.Context(), d); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.respond(w, r, http.StatusOK, d.toJSON())
}

// writeWebhookMetrics writes each endpoint's metrics: attempts by this
// replica, and from the database whether it retries and the age of the
// oldest event past its cursor.
func (s *server) writeWebhookMetrics(w io.Writer, r *http.Request) error {
	backlogs, err := s.store.WebhookBacklogs(r.Context())
	if err != nil {
		return err
	}
	counts := s.store.WebhookCounts()
	e := &expositionWriter{w: bufio.NewWriter(w)}
	e.family("usersvc_webhook_deliveries_total", "counter", "Attempts by this replica to deliver to each webhook, by outcome (delivered: a 2xx).")
	for _, b := range backlogs {
		id := strconv.FormatInt(b.ID, 10)
		e.sample("usersvc_webhook_deliveries_total", labels("webhook", id, "outcome", "delivered"), float64(counts[b.ID].Delivered))
		e.sample("usersvc_webhook_deliveries_total", labels("webhook", id, "outcome", "failed"), float64(counts[b.ID].Failed))
	}
	e.family("usersvc_webhook_retrying", "gauge", "1 while a webhook retries an event that failed, else 0.")
	for _, b := range backlogs {
		e.sample("usersvc_webhook_retrying", labels("webhook", strconv.FormatInt(b.ID, 10)), boolFloat(b.Retrying))
	}
	e.family("usersvc_webhook_enabled", "gauge", "1 while a webhook is enabled, 0 once disabled.")
	for _, b := range backlogs {
		e.sample("usersvc_webhook_enabled", labels("webhook", strconv.FormatInt(b.ID, 10)), boolFloat(b.Enabled))
	}
	e.family("usersvc_webhook_oldest_undelivered_seconds", "gauge", "Age of the oldest event past a webhook's cursor; 0 when it has none.")
	for _, b := range backlogs {
		age := 0.0
		if !b.Oldest.IsZero() {
			age = max(0, time.Since(b.Oldest).Seconds())
		}
		e.sample("usersvc_webhook_oldest_undelivered_seconds", labels("webhook", strconv.FormatInt(b.ID, 10)), age)
	}
	if e.err != nil {
		return e.err
	}
	return e.w.Flush()
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
