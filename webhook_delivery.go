package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// Delivering the feed to webhooks (docs/webhooks.md). Every replica runs
// one delivery loop. Each tick it leases endpoints that have events past
// their cursor and are due (LeaseWebhooks: one replica at a time per
// endpoint), up to WEBHOOK_WORKERS at once, and delivers to each in a
// goroutine of its own, so a slow endpoint holds up only itself. That
// goroutine sends the endpoint's events in feed order, one at a time,
// renewing its lease before each: a 2xx moves the cursor past the event;
// anything else records the failure with the time of the next attempt and
// gives the lease up. The cursor moves only after a 2xx, in the database,
// so a replica killed at any point leaves the event to be sent again, by
// whichever replica takes the lease once it runs out.

// webhookSettings are the configuration of webhooks.
type webhookSettings struct {
	Timeout         time.Duration   // an attempt's limit (WEBHOOK_TIMEOUT)
	Lease           time.Duration   // how long a lease lasts unrenewed (WEBHOOK_LEASE)
	SecretOverlap   time.Duration   // how long a rotated-out secret goes on signing
	Schedule        []time.Duration // the waits before each retry
	AllowHTTP       bool
	AllowPrivate    bool
	AllowedNetworks []netip.Prefix
	Workers         int // endpoints delivered to at once by one replica
}

// readWebhookSettings reads the WEBHOOK_ variables.
func readWebhookSettings(r *envReader) webhookSettings {
	set := webhookSettings{
		Timeout:         r.durationRange("WEBHOOK_TIMEOUT", 10*time.Second, 100*time.Millisecond, 5*time.Minute),
		Lease:           r.durationRange("WEBHOOK_LEASE", 30*time.Second, time.Second, time.Hour),
		SecretOverlap:   r.durationRange("WEBHOOK_SECRET_OVERLAP", 24*time.Hour, 0, 30*24*time.Hour),
		Schedule:        r.durationList("WEBHOOK_RETRY_SCHEDULE", defaultWebhookSchedule, time.Millisecond, 48*time.Hour, 30),
		AllowHTTP:       r.boolean("WEBHOOK_ALLOW_HTTP", false),
		AllowPrivate:    r.boolean("WEBHOOK_ALLOW_PRIVATE", false),
		AllowedNetworks: r.prefixes("WEBHOOK_ALLOWED_NETWORKS"),
		Workers:         r.intRange("WEBHOOK_WORKERS", 16, 1, 1024),
	}
	return set
}

// checkLease fails WEBHOOK_LEASE unless a lease outlasts what it must
// cover once renewed: the attempt (WEBHOOK_TIMEOUT) and the two database
// calls around it (DB_TIMEOUT each), recording its outcome among them.
func (set webhookSettings) checkLease(r *envReader, dbTimeout time.Duration) {
	if need := set.Timeout + 2*dbTimeout; set.Lease <= need {
		r.fail("WEBHOOK_LEASE", "must be longer than WEBHOOK_TIMEOUT (%v) plus twice DB_TIMEOUT (%v), %v: a lease must outlast an attempt and its recording",
			set.Timeout, dbTimeout, need)
	}
}

// retrySpan is the longest an event can wait for its last attempt: the
// schedule's waits with their most jitter.
func (set webhookSettings) retrySpan() time.Duration {
	var sum time.Duration
	for _, d := range set.Schedule {
		sum += d
	}
	return sum + time.Duration(float64(sum)*webhookJitter)
}

// policy is where webhooks may connect.
func (set webhookSettings) policy() destinationPolicy {
	return destinationPolicy{allowPrivate: set.AllowPrivate, allowed: set.AllowedNetworks}
}

// Timing of the delivery loop.
const (
	// webhookTick is how often a replica looks for endpoints to deliver
	// to: an event numbered by another replica waits at most this long.
	// Events this replica numbers wake it at once (Store.EventsNumbered),
	// at most once every webhookWakeGap, so a stream of writes costs a
	// few lease reads a second, not one per numbering round.
	webhookTick    = 250 * time.Millisecond
	webhookWakeGap = 20 * time.Millisecond
	// webhookBatch is the events read from the feed at once.
	webhookBatch = 100
	// webhookLeaseSends is the most attempts made on one lease: then it
	// is given up, and the endpoint waits its turn behind those that
	// delivered less lately, so a few endpoints with long backlogs do
	// not keep every slot.
	webhookLeaseSends = 100
	// webhookResponseCap is the most of a response body read (and
	// dropped): enough to end the exchange cleanly, no more.
	webhookResponseCap = 4 << 10
	// webhookHeaderCap is the most of a response's header read: a
	// receiver cannot make an attempt hold more (net/http's default is
	// 10 MB).
	webhookHeaderCap = 16 << 10
	// webhookPingLimit bounds a test ping below WEBHOOK_TIMEOUT when that
	// is longer: the ping is answered within the request, which must end
	// within the server's write timeout (30 s).
	webhookPingLimit = 10 * time.Second
	// webhookPruneEvery is how often old attempts are deleted.
	webhookPruneEvery = time.Hour
)

// webhookSender posts signed messages to webhook endpoints.
type webhookSender struct {
	client    *http.Client
	timeout   time.Duration
	allowHTTP bool // WEBHOOK_ALLOW_HTTP: else an http URL saved before is refused
}

// newWebhookSender is a sender whose every connection is checked against
// the destination policy, that follows no redirect and uses no proxy.
func newWebhookSender(set webhookSettings) *webhookSender {
	dialer := &net.Dialer{Timeout: set.Timeout, Control: set.policy().control}
	transport := &http.Transport{
		Proxy:                  nil, // a proxy would connect for us, past the policy
		DialContext:            dialer.DialContext,
		TLSHandshakeTimeout:    set.Timeout,
		ResponseHeaderTimeout:  set.Timeout,
		MaxResponseHeaderBytes: webhookHeaderCap,
		MaxIdleConnsPerHost:    2,
		IdleConnTimeout:        90 * time.Second,
		ForceAttemptHTTP2:      true,
	}
	return &webhookSender{timeout: set.Timeout, allowHTTP: set.AllowHTTP, client: &http.Client{
		Transport:     transport,
		Timeout:       set.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// send posts body to target as the message msgID, signed with secrets,
// and returns the attempt: its status, or why there was none, and its
// latency. A 2xx is success; a redirect is an answer like any other.
func (s *webhookSender) send(ctx context.Context, target, msgID string, body []byte, secrets []string) WebhookDelivery {
	start := time.Now()
	d := WebhookDelivery{At: start}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		d.Error = "the URL cannot be requested"
		return d
	}
	if req.URL.Scheme != "https" && !s.allowHTTP {
		d.Error = "refused: the URL is not https, and WEBHOOK_ALLOW_HTTP is off"
		return d
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "usersvc-webhooks/"+version)
	req.Header.Set("webhook-id", msgID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(start.Unix(), 10))
	req.Header.Set("webhook-signature", webhookSignatures(secrets, msgID, start.Unix(), body))
	resp, err := s.client.Do(req)
	if err != nil {
		d.Latency, d.Error = time.Since(start), s.describe(err)
		return d
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, webhookResponseCap))
	resp.Body.Close()
	d.Latency, d.StatusCode = time.Since(start), resp.StatusCode
	switch {
	case d.ok():
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		d.Error = fmt.Sprintf("answered %d: redirects are not followed", resp.StatusCode)
	default:
		d.Error = fmt.Sprintf("answered %d", resp.StatusCode)
	}
	return d
}

// ping is send for a test ping: limited to the shorter of the timeout and
// webhookPingLimit.
func (s *webhookSender) ping(ctx context.Context, target, msgID string, body []byte, secrets []string) WebhookDelivery {
	limit := min(s.timeout, webhookPingLimit)
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	d := s.send(ctx, target, msgID, body, secrets)
	if d.StatusCode == 0 && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		d.Error = fmt.Sprintf("no answer within %v", limit)
	}
	return d
}

// describe says why an attempt got no answer, without the URL.
func (s *webhookSender) describe(err error) string {
	var netErr net.Error
	switch {
	case errors.Is(err, errDestinationRefused):
		for e := err; e != nil; e = errors.Unwrap(e) {
			if errors.Unwrap(e) == errDestinationRefused {
				return e.Error()
			}
		}
		return errDestinationRefused.Error()
	case errors.As(err, &netErr) && netErr.Timeout():
		return fmt.Sprintf("no answer within %v", s.timeout)
	}
	if urlErr, ok := errors.AsType[*url.Error](err); ok {
		err = urlErr.Err
	}
	return "no answer: " + err.Error()
}

// webhookMessage is the body of the delivery of e: its type, its time,
// and the event as the feed shows it.
func webhookMessage(e *Event) []byte {
	b := append(make([]byte, 0, 512), `{"type":`...)
	b = appendJSONString(b, string(e.Type))
	b = append(b, `,"timestamp":`...)
	b = appendTimestamp(b, e.Time)
	b = append(b, `,"data":`...)
	b = appendEventJSON(b, e)
	return append(b, '}')
}

// webhookDeliverer is a replica's delivery loop.
type webhookDeliverer struct {
	store  *Store
	sender *webhookSender
	set    webhookSettings
	logger *slog.Logger
	slots  chan struct{} // one per endpoint being delivered to
}

// startWebhookWorkers starts the delivery loop for as long as ctx lasts;
// stop ends it, cancelling the attempts in flight, and waits for it.
func startWebhookWorkers(ctx context.Context, store *Store, set webhookSettings, logger *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	d := &webhookDeliverer{store: store, sender: newWebhookSender(set), set: set, logger: logger, slots: make(chan struct{}, set.Workers)}
	var workers sync.WaitGroup
	workers.Go(func() { d.run(ctx, &workers) })
	workers.Go(func() { d.prune(ctx) })
	return func() {
		cancel()
		workers.Wait()
	}
}

// run leases the endpoints with events to deliver each tick, while slots
// are free, and delivers to each in a goroutine counted by workers.
func (d *webhookDeliverer) run(ctx context.Context, workers *sync.WaitGroup) {
	tick := time.NewTicker(webhookTick)
	defer tick.Stop()
	log := workerLog{logger: d.logger, op: "deliver webhooks"}
	var round time.Time
	for {
		round = time.Now()
		if free := cap(d.slots) - len(d.slots); free > 0 {
			leases, err := d.store.LeaseWebhooks(ctx, free, d.set.Lease)
			if err != nil {
				log.failed(ctx, err)
			}
			for _, l := range leases {
				d.slots <- struct{}{}
				workers.Go(func() {
					defer func() { <-d.slots }()
					d.deliver(ctx, l, &log)
				})
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-d.store.EventsNumbered():
			if gap := webhookWakeGap - time.Since(round); gap > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(gap):
				}
			}
		}
	}
}

// prune deletes old attempts every webhookPruneEvery, in its own
// goroutine: a large backlog of them holds up no delivery.
func (d *webhookDeliverer) prune(ctx context.Context) {
	log := workerLog{logger: d.logger, op: "prune webhook deliveries"}
	for {
		if _, err := d.store.PruneWebhookDeliveries(ctx); err != nil && ctx.Err() == nil {
			log.failed(ctx, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(webhookPruneEvery):
		}
	}
}

// deliver sends the leased endpoint its events, in feed order, until it
// has none left, an attempt fails, the lease is lost, or it made
// webhookLeaseSends attempts; then it gives the lease up.
func (d *webhookDeliverer) deliver(ctx context.Context, l webhookLease, log *workerLog) {
	defer func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.set.Timeout)
		defer cancel()
		d.store.ReleaseWebhookLease(ctx, l)
	}()
	budget := webhookLeaseSends
	for {
		more, err := d.deliverBatch(ctx, l, &budget)
		if err != nil && !errors.Is(err, errLeaseLost) && !errors.Is(err, ErrWebhookNotFound) {
			log.failed(ctx, fmt.Errorf("webhook %d: %w", l.ID, err))
		}
		if err != nil || !more {
			return
		}
	}
}

// deliverBatch sends the next events of the feed past the endpoint's
// cursor that are of its types, while budget lasts (each attempt takes
// one), and moves the cursor past those that are not. It reports whether
// more may follow on this lease.
func (d *webhookDeliverer) deliverBatch(ctx context.Context, l webhookLease, budget *int) (bool, error) {
	w, _, err := d.store.RenewWebhookLease(ctx, l, d.set.Lease)
	if err != nil {
		return false, err
	}
	q := eventQuery{After: &w.Cursor, PerPage: webhookBatch}
	page, err := d.store.ListEvents(ctx, q)
	if err != nil {
		return false, err
	}
	if errors.Is(page.cursorError(q), ErrCursorPruned) {
		// Events past the cursor are gone: say so, and go on from the
		// horizon.
		return true, d.store.WebhookEventsPruned(ctx, l, w.Cursor, page.PrunedThrough)
	}
	for i := range page.Events {
		e := &page.Events[i]
		if !w.wants(e.Type) {
			continue
		}
		if *budget <= 0 {
			return false, nil // the lease's share is spent: the cursor stays at the last one sent
		}
		*budget--
		// Renewed right before the send: the lease then covers the
		// attempt and its recording (checkLease).
		var secrets []string
		if w, secrets, err = d.store.RenewWebhookLease(ctx, l, d.set.Lease); err != nil {
			return false, err
		}
		if ok, err := d.attempt(ctx, l, &w, secrets, e); !ok {
			return false, err
		}
	}
	// Past the events of other types too: up to the head when the page
	// reached it (eventPage.nextCursor).
	next, _ := parseEventCursor(page.nextCursor(q))
	if next > w.Cursor {
		if err := d.store.PassWebhookOver(ctx, l, next); err != nil {
			return false, err
		}
	}
	return page.full(q), nil
}

// attempt sends e once and records the outcome: the cursor moved past e,
// or the failure with its next attempt, or with the schedule spent, the
// endpoint disabled. It reports whether e was accepted.
func (d *webhookDeliverer) attempt(ctx context.Context, l webhookLease, w *Webhook, secrets []string, e *Event) (bool, error) {
	delivery := d.sender.send(ctx, w.URL, strconv.FormatInt(e.Seq, 10), webhookMessage(e), secrets)
	if ctx.Err() != nil {
		return false, nil // shutting down: not the endpoint's failure
	}
	delivery.WebhookID, delivery.EventSeq, delivery.Attempt = w.ID, e.Seq, w.Attempt+1
	if delivery.ok() {
		return true, d.store.WebhookDelivered(ctx, l, delivery)
	}
	retryIn, retry := retryAfter(d.set.Schedule, delivery.Attempt)
	reason := ""
	if !retry {
		since := w.FailingSince
		if since.IsZero() {
			since = delivery.At
		}
		reason = fmt.Sprintf("event %d failed %d attempts since %s; the last: %s",
			e.Seq, delivery.Attempt, since.UTC().Format(time.RFC3339), delivery.Error)
	}
	err := d.store.WebhookFailed(ctx, l, delivery, retryIn, retry, reason)
	if err != nil && !errors.Is(err, errLeaseLost) {
		// Not recorded: still wait before the next attempt.
		wait := retryIn
		if !retry {
			wait = d.set.Schedule[len(d.set.Schedule)-1]
		}
		if perr := d.store.PostponeWebhook(ctx, l, wait); perr != nil {
			err = errors.Join(err, perr)
		}
	}
	return false, err
}
