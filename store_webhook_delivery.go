package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"
)

// The delivery side of webhooks in the database: which replica delivers
// to an endpoint (a lease), where it is in the feed (the cursor), and
// what each attempt gave. Each write that moves an endpoint on is made
// only while its lease_token is the one this replica holds: a replica
// that lost the lease (frozen past its end, say) changes nothing, so
// the cursor only ever moves past an event some replica saw accepted.

// webhookLease is an endpoint this replica delivers to, and the token
// that proves it, until the lease runs out.
type webhookLease struct {
	ID    int64
	token []byte
}

// leasable is the condition an endpoint must meet to be leased: enabled,
// its lease free or run out, and its next attempt due.
const leasable = "enabled AND (lease_until IS NULL OR lease_until < UTC_TIMESTAMP(6)) " +
	"AND (next_attempt_at IS NULL OR next_attempt_at <= UTC_TIMESTAMP(6))"

// LeaseWebhooks takes the lease, for the duration lease, of up to limit
// endpoints that have events to deliver and are leasable. The candidates
// are found by a plain read (no lock); each is then taken by an UPDATE
// that checks the condition again, so two replicas never both take one
// (on Galera, the loser of a certification conflict takes none).
func (s *Store) LeaseWebhooks(ctx context.Context, limit int, lease time.Duration) ([]webhookLease, error) {
	ctx, cancel, err := s.callContext(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	ids, err := readColumn[int64](ctx, s.db, "find webhooks to deliver",
		"SELECT id FROM webhooks WHERE "+leasable+" AND cursor_seq < (SELECT last_seq FROM event_sequencer WHERE id = 1) "+
			"ORDER BY delivered_at IS NOT NULL, delivered_at, id LIMIT ?", limit)
	if err != nil {
		return nil, err
	}
	var leases []webhookLease
	for _, id := range ids {
		token := make([]byte, 16)
		rand.Read(token)
		res, err := s.db.ExecContext(ctx, "UPDATE webhooks SET lease_token = ?, lease_until = UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND WHERE id = ? AND "+leasable,
			token, lease.Microseconds(), id)
		if err != nil {
			if retryable(err) {
				continue // another replica's UPDATE won
			}
			return leases, dbError("lease webhook", err)
		}
		if n, err := res.RowsAffected(); err == nil && n == 1 {
			leases = append(leases, webhookLease{ID: id, token: token})
		}
	}
	return leases, nil
}

// RenewWebhookLease extends the lease by lease from now and reads the
// endpoint and the secrets that sign for it: errLeaseLost when the lease
// is no longer this replica's, or the endpoint was disabled or deleted.
func (s *Store) RenewWebhookLease(ctx context.Context, l webhookLease, lease time.Duration) (Webhook, []string, error) {
	ctx, cancel, err := s.callContext(ctx)
	if err != nil {
		return Webhook{}, nil, err
	}
	defer cancel()
	res, err := s.db.ExecContext(ctx, "UPDATE webhooks SET lease_until = UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND WHERE id = ? AND lease_token = ? AND enabled",
		lease.Microseconds(), l.ID, l.token)
	if err != nil {
		return Webhook{}, nil, dbError("renew webhook lease", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return Webhook{}, nil, errLeaseLost
	}
	w, err := getWebhook(ctx, s.db, l.ID, "")
	if err != nil {
		return Webhook{}, nil, err
	}
	secrets, err := webhookSecrets(ctx, s.db, l.ID)
	return w, secrets, err
}

// ReleaseWebhookLease gives the lease up, if this replica still holds it.
func (s *Store) ReleaseWebhookLease(ctx context.Context, l webhookLease) error {
	ctx, cancel, err := s.callContext(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	_, err = s.db.ExecContext(ctx, "UPDATE webhooks SET lease_token = NULL, lease_until = NULL WHERE id = ? AND lease_token = ?", l.ID, l.token)
	return dbError("release webhook lease", err)
}

// PassWebhookOver moves the cursor to seq without a delivery: the events
// up to it are not of the endpoint's types. It is called once every event
// of its types before seq was accepted, so an event being retried is no
// longer one of them (its types changed): the retries start afresh.
func (s *Store) PassWebhookOver(ctx context.Context, l webhookLease, seq int64) error {
	ctx, cancel, err := s.callContext(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	res, err := s.db.ExecContext(ctx, "UPDATE webhooks SET cursor_seq = GREATEST(cursor_seq, ?), attempt = 0, next_attempt_at = NULL, failing_since = NULL "+
		"WHERE id = ? AND lease_token = ?", seq, l.ID, l.token)
	if err != nil {
		return dbError("move webhook cursor", err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return errLeaseLost
	}
	return nil
}

// WebhookEventsPruned records that the events after cursor through
// horizon were pruned (EVENTS_RETENTION) before the endpoint received
// them: the cursor moves to horizon, its retries start afresh, its last
// error and a webhook.events_pruned event say which events it missed.
func (s *Store) WebhookEventsPruned(ctx context.Context, l webhookLease, cursor, horizon int64) error {
	reason := fmt.Sprintf("events %d through %d were pruned (EVENTS_RETENTION) before they were delivered; delivery goes on after them", cursor+1, horizon)
	err := s.inTx(ctx, "record pruned webhook events", func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE webhooks SET cursor_seq = GREATEST(cursor_seq, ?), attempt = 0, next_attempt_at = NULL, "+
			"failing_since = NULL, last_error = ? WHERE id = ? AND lease_token = ?", horizon, reason, l.ID, l.token)
		if err != nil {
			return dbError("record pruned webhook events", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return errLeaseLost
		}
		return insertEvents(ctx, tx, Actor{Type: ActorSystem}, time.Time{}, webhookEvent(EventWebhookEventsPruned, l.ID, nil, reason))
	})
	if err != nil {
		return err
	}
	s.eventsCommitted(1)
	return nil
}

// WebhookDelivered records the accepted attempt d at the event d.EventSeq
// and moves the cursor to it, in one transaction.
func (s *Store) WebhookDelivered(ctx context.Context, l webhookLease, d WebhookDelivery) error {
	err := s.inTx(ctx, "record webhook delivery", func(ctx context.Context, tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, "UPDATE webhooks SET cursor_seq = GREATEST(cursor_seq, ?), attempt = 0, next_attempt_at = NULL, "+
			"failing_since = NULL, last_error = NULL, delivered_at = UTC_TIMESTAMP(6) WHERE id = ? AND lease_token = ?", d.EventSeq, l.ID, l.token)
		if err != nil {
			return dbError("record webhook delivery", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return errLeaseLost
		}
		_, err = insertDelivery(ctx, tx, d, 0)
		return err
	})
	if err == nil {
		s.webhookStats.delivered(l.ID)
	}
	return err
}

// WebhookFailed records the failed attempt d and gives the lease up. With
// retry, the next attempt is due after retryIn; without, the schedule is
// spent and the endpoint is disabled with reason, and an event says so.
// It never enables the endpoint: an admin may have disabled it while the
// attempt ran, and then it stays disabled with the admin's reason (the
// attempt is recorded all the same).
func (s *Store) WebhookFailed(ctx context.Context, l webhookLease, d WebhookDelivery, retryIn time.Duration, retry bool, reason string) error {
	disabled := false
	err := s.inTx(ctx, "record webhook failure", func(ctx context.Context, tx *sql.Tx) error {
		var enabled bool
		err := tx.QueryRowContext(ctx, "SELECT enabled FROM webhooks WHERE id = ? AND lease_token = ? FOR UPDATE", l.ID, l.token).Scan(&enabled)
		if errors.Is(err, sql.ErrNoRows) {
			return errLeaseLost
		}
		if err != nil {
			return dbError("record webhook failure", err)
		}
		var next any
		if retry {
			next = retryIn.Microseconds()
		}
		disabling := enabled && !retry
		disabledReason := any(nil) // enabled: none
		if disabling {
			disabledReason = webhookErrorText(reason)
		}
		// disabled_reason is set before enabled, which it reads: MariaDB
		// assigns left to right.
		_, err = tx.ExecContext(ctx, "UPDATE webhooks SET attempt = attempt + 1, next_attempt_at = UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND, "+
			"failing_since = COALESCE(failing_since, ?), last_error = ?, disabled_reason = IF(enabled, ?, disabled_reason), enabled = enabled AND ?, "+
			"lease_token = NULL, lease_until = NULL WHERE id = ?",
			next, d.At.UTC(), webhookErrorText(d.Error), disabledReason, retry, l.ID)
		if err != nil {
			return dbError("record webhook failure", err)
		}
		if _, err := insertDelivery(ctx, tx, d, max(retryIn, 0)); err != nil {
			return err
		}
		if !disabling {
			return nil
		}
		disabled = true
		return insertEvents(ctx, tx, Actor{Type: ActorSystem}, time.Time{}, webhookEvent(EventWebhookDisabled, l.ID, nil, reason))
	})
	if err != nil {
		return err
	}
	s.webhookStats.failed(l.ID)
	if disabled {
		s.eventsCommitted(1)
	}
	return nil
}

// PostponeWebhook puts the endpoint's next attempt off by wait and gives
// the lease up, recording nothing else: the fallback when a failure could
// not be recorded, so that the endpoint is not retried at every tick.
func (s *Store) PostponeWebhook(ctx context.Context, l webhookLease, wait time.Duration) error {
	ctx, cancel, err := s.callContext(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	_, err = s.db.ExecContext(ctx, "UPDATE webhooks SET next_attempt_at = UTC_TIMESTAMP(6) + INTERVAL ? MICROSECOND, "+
		"lease_token = NULL, lease_until = NULL WHERE id = ? AND lease_token = ?", wait.Microseconds(), l.ID, l.token)
	return dbError("postpone webhook", err)
}

// webhookDeliveryRetention is how long the attempts are kept.
const webhookDeliveryRetention = 7 * 24 * time.Hour

// Deleting attempts: in batches of deliveryDeleteBatch rows, each its own
// statement, resting deliveryDeletePause between two, so neither the
// pruner nor a deleted endpoint's history holds many locks for long.
const (
	deliveryDeleteBatch = 1000
	deliveryDeletePause = 20 * time.Millisecond
)

// PruneWebhookDeliveries deletes the attempts older than
// webhookDeliveryRetention, batch after batch until none is left, and
// returns how many.
func (s *Store) PruneWebhookDeliveries(ctx context.Context) (int64, error) {
	return s.deleteDeliveries(ctx, "prune webhook deliveries",
		"DELETE FROM webhook_deliveries WHERE attempted_at < UTC_TIMESTAMP(6) - INTERVAL ? MICROSECOND LIMIT ?", webhookDeliveryRetention.Microseconds())
}

// deleteDeliveries runs query (a DELETE whose last argument is its LIMIT)
// with args until it deletes fewer than a batch, and returns how many rows
// it deleted.
func (s *Store) deleteDeliveries(ctx context.Context, op, query string, args ...any) (int64, error) {
	var total int64
	for {
		n, err := s.deleteDeliveryBatch(ctx, op, query, args...)
		total += n
		if err != nil || n < deliveryDeleteBatch {
			return total, err
		}
		select {
		case <-ctx.Done():
			return total, ctx.Err()
		case <-time.After(deliveryDeletePause):
		}
	}
}

// deleteDeliveryBatch runs query once, for one batch.
func (s *Store) deleteDeliveryBatch(ctx context.Context, op, query string, args ...any) (int64, error) {
	ctx, cancel, err := s.callContext(ctx)
	if err != nil {
		return 0, err
	}
	defer cancel()
	res, err := s.db.ExecContext(ctx, query, append(args, deliveryDeleteBatch)...)
	if err != nil {
		return 0, dbError(op, err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// webhookCounters count this process's attempts per endpoint, for
// /metrics.
type webhookCounters struct {
	mu   sync.Mutex
	byID map[int64]*webhookCount
}

// webhookCount is one endpoint's attempts by this process.
type webhookCount struct {
	Delivered, Failed int64
}

func (c *webhookCounters) delivered(id int64) { c.add(id, 1, 0) }
func (c *webhookCounters) failed(id int64)    { c.add(id, 0, 1) }

// forget drops the counts of the endpoint id, deleted.
func (c *webhookCounters) forget(id int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.byID, id)
}

func (c *webhookCounters) add(id, delivered, failed int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byID == nil {
		c.byID = map[int64]*webhookCount{}
	}
	n := c.byID[id]
	if n == nil {
		n = &webhookCount{}
		c.byID[id] = n
	}
	n.Delivered += delivered
	n.Failed += failed
}

// WebhookCounts returns this process's attempts per endpoint.
func (s *Store) WebhookCounts() map[int64]webhookCount {
	c := &s.webhookStats
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[int64]webhookCount, len(c.byID))
	for id, n := range c.byID {
		out[id] = *n
	}
	return out
}

// webhookBacklog is an endpoint's state for /metrics: whether it retries
// an event, and since when the oldest event past its cursor waits (zero:
// none waits).
type webhookBacklog struct {
	ID       int64
	Enabled  bool
	Retrying bool
	Oldest   time.Time
}

// WebhookBacklogs reads every endpoint's backlog, in one statement.
func (s *Store) WebhookBacklogs(ctx context.Context) ([]webhookBacklog, error) {
	ctx, cancel, err := s.callContext(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	rows, err := s.db.QueryContext(ctx, "SELECT w.id, w.enabled, w.attempt > 0, "+
		"(SELECT e.occurred_at FROM user_events e WHERE e.seq > w.cursor_seq ORDER BY e.seq LIMIT 1) FROM webhooks w ORDER BY w.id LIMIT ?", maxWebhooks)
	if err != nil {
		return nil, dbError("read webhook backlogs", err)
	}
	defer rows.Close()
	var list []webhookBacklog
	for rows.Next() {
		var b webhookBacklog
		var oldest sql.NullTime
		if err := rows.Scan(&b.ID, &b.Enabled, &b.Retrying, &oldest); err != nil {
			return nil, dbError("read webhook backlogs", err)
		}
		b.Oldest = oldest.Time
		list = append(list, b)
	}
	if err := rows.Err(); err != nil {
		return nil, dbError("read webhook backlogs", err)
	}
	return list, nil
}
