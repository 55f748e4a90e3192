package main

import (
	"context"
	"errors"
	"net/http"
	"time"
)

// The probes and the metrics: /health, /health/live, /health/ready and
// /metrics.

// healthPingTimeout is how long /health waits for the database.
const healthPingTimeout = time.Second

// handleHealth answers 200 when the database answers within a second with
// the schema in place and start-up is done, and a 503 problem naming the
// reason otherwise (see databaseDown).
func (s *server) handleHealth(w http.ResponseWriter, r *http.Request) {
	if err := s.checkReady(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.respond(w, r, http.StatusOK, struct {
		Status   string `json:"status"`
		Database string `json:"database"`
		Version  string `json:"version"`
	}{"ok", "ok", version})
}

// checkReady is what /health and /health/ready check: the database answers
// within a second with the schema in place (a setup failure logged once
// is logged again as resolved), and start-up is done.
func (s *server) checkReady(r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), healthPingTimeout)
	defer cancel()
	if err := s.store.Ready(ctx); err != nil {
		return databaseDown(err)
	}
	s.store.SetupTroubleResolved(ctx, s.logger)
	if !s.startup.done() {
		return &DatabaseDownError{Reason: "starting", Err: ErrStarting}
	}
	return nil
}

// databaseDown says in a few words why the database failed a health
// check: the reason of a setup failure ("access denied", "schema
// missing"...), "timeout", or "unreachable".
func databaseDown(err error) *DatabaseDownError {
	var setup *DatabaseSetupError
	switch {
	case errors.As(err, &setup):
		return &DatabaseDownError{Reason: setup.Reason, Err: err}
	case errors.Is(err, context.DeadlineExceeded):
		return &DatabaseDownError{Reason: "timeout", Err: err}
	default:
		return &DatabaseDownError{Reason: "unreachable", Err: err}
	}
}

// handleLive answers whether the process is up, without touching the
// database: a failing liveness probe restarts the process, and a database
// outage is no reason to.
func (s *server) handleLive(w http.ResponseWriter, r *http.Request) {
	s.respond(w, r, http.StatusOK, map[string]string{"status": "ok"})
}

// handleReady answers whether requests can be served: the database
// answers within a second, the schema is in place, and the public
// listener has had a free connection slot within connectionsFullFor. A
// failing readiness probe takes the replica out of the load balancer
// until it recovers.
func (s *server) handleReady(w http.ResponseWriter, r *http.Request) {
	err := s.checkReady(r)
	if err == nil && s.connections != nil && s.connections.fullFor() >= connectionsFullFor {
		err = &DatabaseDownError{Reason: "connections full", Err: ErrConnectionsFull}
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.respond(w, r, http.StatusOK, map[string]string{"status": "ok"})
}

// handleMetrics writes the metrics in the Prometheus text format.
func (s *server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	err := s.metrics.write(w, s.store.Stats(), s.passwords.stats(), s.store.EventStats(),
		storeCounters{txRetries: s.store.TxRetries(), plaintextConnections: s.store.PlaintextConnections()})
	if err == nil && s.connections != nil {
		err = s.connections.writeMetrics(w)
	}
	if err != nil {
		s.logger.WarnContext(r.Context(), "write metrics", "error", err, "request_id", requestID(r.Context()))
	}
	if err := s.writeWebhookMetrics(w, r); err != nil {
		s.logger.WarnContext(r.Context(), "write webhook metrics", "error", err, "request_id", requestID(r.Context()))
	}
}
