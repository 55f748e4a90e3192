package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// TestProblemFor holds the one map from errors to answers: every kind of
// error, wrapped as callers wrap it, gets its status, detail, field
// errors and headers.
func TestProblemFor(t *testing.T) {
	t.Parallel()
	wrap := func(err error) error { return fmt.Errorf("update user: %w", err) }
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantDetail string
		wantFields []string
		wantHeader map[string]string
	}{
		{"no token", ErrUnauthenticated, 401, "A valid bearer token is required: get one from POST /api/v1/auth/token.", nil,
			map[string]string{"WWW-Authenticate": `Bearer realm="usersvc"`}},
		{"wrong password", ErrWrongCredentials, 401, "The username or password is not correct.", nil,
			map[string]string{"WWW-Authenticate": `Bearer realm="usersvc"`}},
		{"forbidden", errAdminsOnly, 403, "Only an admin may do this.", nil, nil},
		{"forbidden field", wrap(errRoleByAdmin), 403, "Only an admin may change a role.", []string{"role"}, nil},
		{"not found", wrap(ErrNotFound), 404, "No user has this id.", nil, nil},
		{"conflict", wrap(&ConflictError{Field: "email"}), 409, "The email is already taken by another user.", []string{"email"}, nil},
		{"last admin", wrap(ErrLastAdmin), 409, "This is the last active admin: it cannot be deleted, deactivated or demoted. Make another user an active admin first.", []string{"body"}, nil},
		{"last admin by demotion", &FieldError{Field: "role", Err: wrap(ErrLastAdmin)}, 409, "This is the last active admin: it cannot be deleted, deactivated or demoted. Make another user an active admin first.", []string{"role"}, nil},
		{"password changed", ErrPasswordChanged, 409, "The password changed while this request ran; try again.", []string{"body"}, nil},
		{"precondition", ErrPreconditionFailed, 412, "The user changed since the version named in If-Match: fetch it again, and retry with its ETag.", nil, nil},
		{"key reused", ErrKeyReused, 422, "This Idempotency-Key was used with a different request body; use a new key for a new request.", nil, nil},
		{"key in flight", ErrKeyInFlight, 409, detailKeyInFlight, []string{"Idempotency-Key"}, nil},
		{"claim lost", ErrClaimLost, 409, detailKeyInFlight, []string{"Idempotency-Key"}, nil},
		{"cursor pruned", wrap(ErrCursorPruned), 410, detailCursorPruned, []string{"after"}, nil},
		{"cursor ahead", wrap(ErrCursorAhead), 400, detailCursorAhead, []string{"after"}, nil},
		{"rate limited", &RateLimitedError{RetryAfter: 1500 * time.Millisecond}, 429, "Too many failed sign-in attempts; try again later.", nil,
			map[string]string{"Retry-After": "2"}},
		{"rate limited, nearly over", &RateLimitedError{RetryAfter: time.Millisecond}, 429, "Too many failed sign-in attempts; try again later.", nil,
			map[string]string{"Retry-After": "1"}},
		{"busy hasher", wrap(ErrBusy), 503, "The service is busy hashing passwords; try again shortly.", nil, map[string]string{"Retry-After": "1"}},
		{"database unavailable", wrap(fmt.Errorf("%w: timeout", ErrUnavailable)), 503, "The database is unavailable; try again shortly.", nil,
			map[string]string{"Retry-After": "1"}},
		{"health", &DatabaseDownError{Reason: "timeout", Err: ErrUnavailable}, 503, "The database check failed: timeout.", nil, map[string]string{"Retry-After": "1"}},
		{"health, setup", databaseDown(&DatabaseSetupError{Reason: reasonMissingGrant, Number: 1142, Err: errors.New("x")}), 503,
			"The database check failed: missing grant.", nil, map[string]string{"Retry-After": "1"}},
		{"database setup", wrap(&DatabaseSetupError{Reason: reasonAccessDenied, Number: 1045, Err: errors.New("Access denied for user 'u'")}), 503,
			"The database is unavailable; try again shortly.", nil, map[string]string{"Retry-After": "1"}},
		{"sort aborted", dbError("list users", &mysql.MySQLError{Number: 1028, Message: "Sort aborted"}), 503,
			"The database is unavailable; try again shortly.", nil, map[string]string{"Retry-After": "1"}},
		{"tls failure", dbError("ping", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}), 503,
			"The database is unavailable; try again shortly.", nil, map[string]string{"Retry-After": "1"}},
		{"unknown column", dbError("get user", &mysql.MySQLError{Number: 1054, Message: "Unknown column 'x'"}), 500, detailInternal, nil, nil},
		{"not ready", fmt.Errorf("%w: %w", ErrNotReady, ErrUnavailable), 503, "The database is not ready: unreachable, too slow, or without the schema.", nil,
			map[string]string{"Retry-After": "1"}},
		{"bad request", badRequest("The user is not valid.", fieldError{Field: "email", Message: "is required"}), 400, "The user is not valid.", []string{"email"}, nil},
		{"bad body", badRequest("The request body is empty; it must be a JSON object."), 400, "The request body is empty; it must be a JSON object.", []string{"body"}, nil},
		{"method not allowed", &requestError{status: 405, detail: "no", header: http.Header{"Allow": {"GET, HEAD"}}}, 405, "no", nil,
			map[string]string{"Allow": "GET, HEAD"}},
		{"a bug", errors.New("sql: syntax error near secret_column"), 500, detailInternal, nil, nil},
		{"a panic", errPanic, 500, detailInternal, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := problemFor(tt.err)
			if got.Status != tt.wantStatus || got.Detail != tt.wantDetail || got.Title != http.StatusText(tt.wantStatus) || got.Type != "about:blank" {
				t.Errorf("got %d %q (%q, %q), want %d %q", got.Status, got.Detail, got.Title, got.Type, tt.wantStatus, tt.wantDetail)
			}
			var fields []string
			for _, fe := range got.Errors {
				fields = append(fields, fe.Field)
			}
			if !slices.Equal(fields, tt.wantFields) {
				t.Errorf("fields: got %v, want %v", fields, tt.wantFields)
			}
			if len(got.Header) != len(tt.wantHeader) {
				t.Errorf("headers: got %v, want %v", got.Header, tt.wantHeader)
			}
			for name, want := range tt.wantHeader {
				if v := got.Header.Get(name); v != want {
					t.Errorf("%s: got %q, want %q", name, v, want)
				}
			}
		})
	}
}

// TestProblemForHealthNamesTheReason: /health's 503 says why in a member
// of its own.
func TestProblemForHealthNamesTheReason(t *testing.T) {
	t.Parallel()
	if got := problemFor(&DatabaseDownError{Reason: "unreachable", Err: ErrUnavailable}); got.Database != "unreachable" {
		t.Errorf("database member: got %q", got.Database)
	}
	if got := problemFor(databaseDown(&DatabaseSetupError{Reason: reasonSchemaMissing, Number: 1146, Err: errors.New("x")})); got.Database != "schema missing" {
		t.Errorf("database member of a setup failure: got %q", got.Database)
	}
	if got := problemFor(ErrUnavailable); got.Database != "" {
		t.Errorf("database member outside /health: %q", got.Database)
	}
}
