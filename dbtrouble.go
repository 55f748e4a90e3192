package main

import (
	"context"
	"errors"
	"log/slog"
	"sync"
)

// setupTrouble remembers the database setup failure last logged, so that
// a misconfiguration is logged once, when it appears or changes, and not
// on every request, probe and retry. One lives in each Store, shared by
// start-up and the handlers.
type setupTrouble struct {
	mu     sync.Mutex
	reason string
}

// setupHints say what to do about each reason of a DatabaseSetupError.
var setupHints = map[string]string{
	reasonAccessDenied: "check DB_USER and DB_PASSWORD and that the account may connect from this host; " +
		"MariaDB before 11.4 also answers this when it requires TLS (set DB_TLS=true)",
	reasonDatabaseDenied: "the account may not use DB_NAME, or no database has that name (the server answers both alike): " +
		"check DB_NAME's spelling, create the database, or grant the account SELECT, INSERT, UPDATE, DELETE on it (docs/deploy.md)",
	reasonMissingGrant: "the account lacks a privilege: grant it SELECT, INSERT, UPDATE, DELETE on DB_NAME, " +
		"apply the schema with `usersvc migrate` as a privileged account, and serve with SCHEMA_APPLY=false",
	reasonTLSRequired:    "the server requires TLS: set DB_TLS=true (and DB_TLS_CA to its CA)",
	reasonTLS:            "the server's certificate was not accepted: check DB_TLS_CA, and that DB_HOST is a name on the certificate",
	reasonTLSUnsupported: "DB_TLS asks for TLS but the server offers none: configure TLS on the server, or set DB_TLS=false",
	reasonUnknownDB:      "DB_NAME does not exist on the server: create it (docs/deploy.md)",
	reasonSchemaMissing:  "the tables do not exist: run `usersvc migrate` as a privileged account",
}

// report logs err once per change of reason when it is a setup failure,
// and says whether it was one.
func (t *setupTrouble) report(ctx context.Context, logger *slog.Logger, err error) bool {
	var setup *DatabaseSetupError
	if !errors.As(err, &setup) {
		return false
	}
	t.mu.Lock()
	changed := t.reason != setup.Reason
	t.reason = setup.Reason
	t.mu.Unlock()
	if changed {
		logger.ErrorContext(ctx, "database setup problem: "+setup.Reason,
			"reason", setup.Reason, "number", setup.Number, "error", err, "fix", setupHints[setup.Reason])
	}
	return true
}

// resolved notes that the database works again, logging the fact when a
// setup failure had been logged.
func (t *setupTrouble) resolved(ctx context.Context, logger *slog.Logger) {
	t.mu.Lock()
	was := t.reason
	t.reason = ""
	t.mu.Unlock()
	if was != "" {
		logger.InfoContext(ctx, "database setup problem resolved", "was", was)
	}
}

// ReportSetupTrouble logs err once per change of reason when it is a
// database setup failure (see setupTrouble), and says whether it was one.
func (s *Store) ReportSetupTrouble(ctx context.Context, logger *slog.Logger, err error) bool {
	return s.trouble.report(ctx, logger, err)
}

// SetupTroubleResolved notes that the database works again (see
// setupTrouble.resolved).
func (s *Store) SetupTroubleResolved(ctx context.Context, logger *slog.Logger) {
	s.trouble.resolved(ctx, logger)
}
