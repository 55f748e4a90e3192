package main

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"time"
)

// Webhook endpoints in the database: created, read, changed, deleted,
// their secret rotated, their attempts listed. Every change is an event of
// the audit trail, in its transaction (webhookEvent). The delivery side
// (leases, cursors, attempts) is store_webhook_delivery.go.

// webhookColumns are an endpoint's columns as scanWebhook reads them.
const webhookColumns = "id, url, description, event_types, enabled, disabled_reason, cursor_seq, attempt, next_attempt_at, " +
	"failing_since, last_error, delivered_at, IF(previous_until > UTC_TIMESTAMP(6), previous_until, NULL), created_at, updated_at"

// scanWebhook reads one row of webhookColumns, and extra columns after it.
func scanWebhook(row rowScanner, extra ...any) (Webhook, error) {
	var (
		w                                         Webhook
		types                                     string
		reason, lastError                         sql.NullString
		next, failing, delivered, previousExpires sql.NullTime
	)
	dest := []any{&w.ID, &w.URL, &w.Description, &types, &w.Enabled, &reason, &w.Cursor, &w.Attempt, &next,
		&failing, &lastError, &delivered, &previousExpires, &w.CreatedAt, &w.UpdatedAt}
	if err := row.Scan(append(dest, extra...)...); err != nil {
		return Webhook{}, err
	}
	w.EventTypes = splitEventTypes(types)
	w.DisabledReason, w.LastError = reason.String, lastError.String
	w.NextAttemptAt, w.FailingSince, w.DeliveredAt, w.PreviousUntil = next.Time, failing.Time, delivered.Time, previousExpires.Time
	return w, nil
}

// joinEventTypes is the event_types column of types: comma-separated,
// empty for every type.
func joinEventTypes(types []EventType) string {
	names := make([]string, len(types))
	for i, t := range types {
		names[i] = string(t)
	}
	return strings.Join(names, ",")
}

// splitEventTypes reads an event_types column back.
func splitEventTypes(s string) []EventType {
	if s == "" {
		return []EventType{}
	}
	var types []EventType
	for name := range strings.SplitSeq(s, ",") {
		types = append(types, EventType(name))
	}
	return types
}

// webhookEvent is the audit event of a change to the endpoint id: about
// no user (user_id 0), the endpoint named in changes, with the fields a
// change set or the reason it was disabled.
func webhookEvent(t EventType, id int64, fields []string, reason string) newEvent {
	return newEvent{Type: t, Changes: mustJSON(struct {
		WebhookID int64    `json:"webhook_id"`
		Fields    []string `json:"fields,omitempty"`
		Reason    string   `json:"reason,omitempty"`
	}{id, fields, reason})}
}

// CreateWebhook stores a new endpoint, enabled, whose cursor is the head
// of the feed: it receives the events numbered after its creation
// (those committed just before it and not yet numbered among them).
func (s *Store) CreateWebhook(ctx context.Context, actor Actor, nw NewWebhook) (Webhook, error) {
	var w Webhook
	err := s.inTx(ctx, "create webhook", func(ctx context.Context, tx *sql.Tx) error {
		// A plain read: an INSERT ... SELECT would hold a shared lock on
		// the sequencer's row, and numbering would wait for this commit.
		var head int64
		if err := tx.QueryRowContext(ctx, "SELECT last_seq FROM event_sequencer WHERE id = 1").Scan(&head); err != nil {
			return dbError("create webhook: read the head", err)
		}
		res, err := tx.ExecContext(ctx, "INSERT INTO webhooks (url, description, event_types, enabled, secret, cursor_seq, created_at, updated_at) "+
			"VALUES (?, ?, ?, TRUE, ?, ?, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6))",
			nw.URL, nw.Description, joinEventTypes(nw.EventTypes), nw.Secret, head)
		if err != nil {
			return dbError("create webhook", err)
		}
		id, err := res.LastInsertId()
		if err != nil {
			return dbError("create webhook", err)
		}
		if err := insertEvents(ctx, tx, actor, time.Time{}, webhookEvent(EventWebhookCreated, id, nil, "")); err != nil {
			return err
		}
		w, err = getWebhook(ctx, tx, id, "")
		return err
	})
	if err != nil {
		return Webhook{}, err
	}
	s.eventsCommitted(1)
	return w, nil
}

// getWebhook reads the endpoint id through q, with lock (" FOR UPDATE")
// or without (""): ErrWebhookNotFound when there is none.
func getWebhook(ctx context.Context, q queryer, id int64, lock string) (Webhook, error) {
	w, err := scanWebhook(q.QueryRowContext(ctx, "SELECT "+webhookColumns+" FROM webhooks WHERE id = ?"+lock, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Webhook{}, ErrWebhookNotFound
	}
	if err != nil {
		return Webhook{}, dbError("read webhook", err)
	}
	return w, nil
}

// Webhook reads one endpoint.
func (s *Store) Webhook(ctx context.Context, id int64) (Webhook, error) {
	ctx, cancel, err := s.callContext(ctx)
	if err != nil {
		return Webhook{}, err
	}
	defer cancel()
	return getWebhook(ctx, s.db, id, "")
}

// maxWebhooks bounds the endpoints a list returns: they are made by
// hand, by admins, and a page of them is all there is.
const maxWebhooks = 1000

// Webhooks lists the endpoints, oldest first.
func (s *Store) Webhooks(ctx context.Context) ([]Webhook, error) {
	ctx, cancel, err := s.callContext(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	rows, err := s.db.QueryContext(ctx, "SELECT "+webhookColumns+" FROM webhooks ORDER BY id LIMIT ?", maxWebhooks)
	if err != nil {
		return nil, dbError("list webhooks", err)
	}
	defer rows.Close()
	list := []Webhook{}
	for rows.Next() {
		w, err := scanWebhook(rows)
		if err != nil {
			return nil, dbError("list webhooks", err)
		}
		list = append(list, w)
	}
	if err := rows.Err(); err != nil {
		return nil, dbError("list webhooks", err)
	}
	return list, nil
}

// UpdateWebhook applies c to the endpoint id, with an event naming the
// fields whose value changed (none: no write, no event). Enabling a
// disabled endpoint, or changing its URL or event types, starts its
// retries afresh, from its cursor: the events it missed meanwhile come
// first. Disabling gives the reason.
func (s *Store) UpdateWebhook(ctx context.Context, actor Actor, id int64, c WebhookChanges) (Webhook, error) {
	var w Webhook
	changed := false
	err := s.inTx(ctx, "update webhook", func(ctx context.Context, tx *sql.Tx) error {
		cur, err := getWebhook(ctx, tx, id, " FOR UPDATE")
		if err != nil {
			return err
		}
		fields := webhookChangedFields(cur, c)
		if len(fields) == 0 {
			w = cur
			return nil
		}
		next := cur
		applyWebhookChanges(&next, c)
		reason := any(nil) // enabled: none
		switch {
		case !next.Enabled && cur.Enabled:
			reason = "disabled by an admin"
		case !next.Enabled:
			reason = cur.DisabledReason
		}
		// Retries start afresh when the endpoint is enabled again, or sent
		// elsewhere, or other events: the failures were another story.
		reset := next.Enabled && !cur.Enabled || slices.Contains(fields, "url") || slices.Contains(fields, "event_types")
		_, err = tx.ExecContext(ctx, "UPDATE webhooks SET url = ?, description = ?, event_types = ?, enabled = ?, disabled_reason = ?, "+
			"attempt = IF(?, 0, attempt), next_attempt_at = IF(?, NULL, next_attempt_at), failing_since = IF(?, NULL, failing_since), "+
			"updated_at = UTC_TIMESTAMP(6) WHERE id = ?",
			next.URL, next.Description, joinEventTypes(next.EventTypes), next.Enabled, reason, reset, reset, reset, id)
		if err != nil {
			return dbError("update webhook", err)
		}
		if err := insertEvents(ctx, tx, actor, time.Time{}, webhookEvent(EventWebhookUpdated, id, fields, "")); err != nil {
			return err
		}
		changed = true
		w, err = getWebhook(ctx, tx, id, "")
		return err
	})
	if err != nil {
		return Webhook{}, err
	}
	if changed {
		s.eventsCommitted(1)
	}
	return w, nil
}

// webhookChangedFields names the fields c gives a new value.
func webhookChangedFields(cur Webhook, c WebhookChanges) []string {
	var fields []string
	if c.URL != nil && *c.URL != cur.URL {
		fields = append(fields, "url")
	}
	if c.Description != nil && *c.Description != cur.Description {
		fields = append(fields, "description")
	}
	if c.EventTypes != nil && joinEventTypes(*c.EventTypes) != joinEventTypes(cur.EventTypes) {
		fields = append(fields, "event_types")
	}
	if c.Enabled != nil && *c.Enabled != cur.Enabled {
		fields = append(fields, "enabled")
	}
	return fields
}

// applyWebhookChanges sets the fields c gives on w.
func applyWebhookChanges(w *Webhook, c WebhookChanges) {
	if c.URL != nil {
		w.URL = *c.URL
	}
	if c.Description != nil {
		w.Description = *c.Description
	}
	if c.EventTypes != nil {
		w.EventTypes = *c.EventTypes
	}
	if c.Enabled != nil {
		w.Enabled = *c.Enabled
	}
}

// DeleteWebhook deletes the endpoint id, then its attempts, in batches
// after the endpoint's transaction (there may be many): those a failure
// leaves behind are invisible (the endpoint is gone) and pruned with age.
func (s *Store) DeleteWebhook(ctx context.Context, actor Actor, id int64) error {
	err := s.inTx(ctx, "delete webhook", func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "DELETE FROM webhooks WHERE id = ?", id)
		if err != nil {
			return dbError("delete webhook", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return ErrWebhookNotFound
		}
		return insertEvents(ctx, tx, actor, time.Time{}, webhookEvent(EventWebhookDeleted, id, nil, ""))
	})
	if err != nil {
		return err
	}
	s.eventsCommitted(1)
	s.webhookStats.forget(id)
	// The endpoint is gone: attempts a failure here leaves are not listed
	// any more, and the pruner deletes them with age.
	s.deleteDeliveries(ctx, "delete webhook deliveries", "DELETE FROM webhook_deliveries WHERE webhook_id = ? LIMIT ?", id)
	return nil
}

// RotateWebhookSecret makes secret the endpoint's secret; the one it
// replaces goes on signing beside it for overlap.
func (s *Store) RotateWebhookSecret(ctx context.Context, actor Actor, id int64, secret string, overlap time.Duration) (Webhook, error) {
	var w Webhook
	err := s.inTx(ctx, "rotate webhook secret", func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE webhooks SET previous_secret = secret, previous_until = UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND, "+
			"secret = ?, updated_at = UTC_TIMESTAMP(6) WHERE id = ?", overlap.Microseconds(), secret, id)
		if err != nil {
			return dbError("rotate webhook secret", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return ErrWebhookNotFound
		}
		if err := insertEvents(ctx, tx, actor, time.Time{}, webhookEvent(EventWebhookSecretRotated, id, nil, "")); err != nil {
			return err
		}
		w, err = getWebhook(ctx, tx, id, "")
		return err
	})
	if err != nil {
		return Webhook{}, err
	}
	s.eventsCommitted(1)
	return w, nil
}

// webhookSecrets reads the secrets that sign for the endpoint id now: its
// own, and the one before it while the overlap lasts.
func webhookSecrets(ctx context.Context, q queryer, id int64) ([]string, error) {
	var secret string
	var previous sql.NullString
	err := q.QueryRowContext(ctx, "SELECT secret, IF(previous_until > UTC_TIMESTAMP(6), previous_secret, NULL) FROM webhooks WHERE id = ?", id).
		Scan(&secret, &previous)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrWebhookNotFound
	}
	if err != nil {
		return nil, dbError("read webhook secrets", err)
	}
	if previous.Valid {
		return []string{secret, previous.String}, nil
	}
	return []string{secret}, nil
}

// WebhookForPing reads the endpoint id and its signing secrets.
func (s *Store) WebhookForPing(ctx context.Context, id int64) (Webhook, []string, error) {
	ctx, cancel, err := s.callContext(ctx)
	if err != nil {
		return Webhook{}, nil, err
	}
	defer cancel()
	w, err := getWebhook(ctx, s.db, id, "")
	if err != nil {
		return Webhook{}, nil, err
	}
	secrets, err := webhookSecrets(ctx, s.db, id)
	return w, secrets, err
}

// webhookErrorMax is the most characters an error or reason column holds.
const webhookErrorMax = 512

// webhookErrorText is an error as its column holds it: valid UTF-8 (it
// may quote what a receiver sent) and at most webhookErrorMax bytes, cut
// between characters, since a strict server refuses a split one.
func webhookErrorText(s string) string {
	return truncate(strings.ToValidUTF8(s, "\uFFFD"), webhookErrorMax)
}

// deliveryColumns are an attempt's columns as scanDelivery reads them.
const deliveryColumns = "id, webhook_id, event_seq, attempt, status_code, error, latency_us, attempted_at, next_attempt_at"

// maxDeliveriesListed is how many attempts a list shows, the latest.
const maxDeliveriesListed = 100

// WebhookDeliveries lists the latest attempts of the endpoint id, newest
// first.
func (s *Store) WebhookDeliveries(ctx context.Context, id int64) ([]WebhookDelivery, error) {
	ctx, cancel, err := s.callContext(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	if _, err := getWebhook(ctx, s.db, id, ""); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx, "SELECT "+deliveryColumns+" FROM webhook_deliveries WHERE webhook_id = ? ORDER BY id DESC LIMIT ?", id, maxDeliveriesListed)
	if err != nil {
		return nil, dbError("list webhook deliveries", err)
	}
	defer rows.Close()
	list := []WebhookDelivery{}
	for rows.Next() {
		var (
			d         WebhookDelivery
			seq, code sql.NullInt64
			msg       sql.NullString
			latencyUS int64
			next      sql.NullTime
		)
		if err := rows.Scan(&d.ID, &d.WebhookID, &seq, &d.Attempt, &code, &msg, &latencyUS, &d.At, &next); err != nil {
			return nil, dbError("list webhook deliveries", err)
		}
		d.EventSeq, d.StatusCode, d.Error = seq.Int64, int(code.Int64), msg.String
		d.Latency, d.NextAttemptAt = time.Duration(latencyUS)*time.Microsecond, next.Time
		list = append(list, d)
	}
	if err := rows.Err(); err != nil {
		return nil, dbError("list webhook deliveries", err)
	}
	return list, nil
}

// insertDelivery records the attempt d, its next attempt due after
// retryIn (0: none), and returns its id.
func insertDelivery(ctx context.Context, q execer, d WebhookDelivery, retryIn time.Duration) (int64, error) {
	var seq, code, msg, next any
	if d.EventSeq != 0 {
		seq = d.EventSeq
	}
	if d.StatusCode != 0 {
		code = d.StatusCode
	}
	if d.Error != "" {
		msg = webhookErrorText(d.Error)
	}
	if retryIn > 0 {
		next = retryIn.Microseconds()
	}
	res, err := q.ExecContext(ctx, "INSERT INTO webhook_deliveries (webhook_id, event_seq, attempt, status_code, error, latency_us, attempted_at, next_attempt_at) "+
		"VALUES (?, ?, ?, ?, ?, ?, ?, UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND)",
		d.WebhookID, seq, d.Attempt, code, msg, d.Latency.Microseconds(), d.At.UTC(), next)
	if err != nil {
		return 0, dbError("record webhook delivery", err)
	}
	id, err := res.LastInsertId()
	return id, dbError("record webhook delivery", err)
}

// RecordPing records a test ping's attempt and returns its id.
func (s *Store) RecordPing(ctx context.Context, d WebhookDelivery) (int64, error) {
	ctx, cancel, err := s.callContext(ctx)
	if err != nil {
		return 0, err
	}
	defer cancel()
	return insertDelivery(ctx, s.db, d, 0)
}
