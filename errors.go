package main

import (
	"errors"
	"fmt"
	"time"
)

// The service's whole vocabulary of things that can go wrong, as domain
// errors. None knows an HTTP status: problemFor (problems.go) is the one
// place that turns each into an answer. Request-shape errors (malformed
// JSON, a body too large, a wrong media type) are not here: they exist
// only at the HTTP edge, as *requestError.
var (
	// ErrUnauthenticated: no valid credentials (a missing, malformed,
	// expired or revoked token).
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrWrongCredentials: a sign-in named no active user with that
	// password. It is a kind of ErrUnauthenticated.
	ErrWrongCredentials = fmt.Errorf("%w: wrong username or password", ErrUnauthenticated)
	// ErrNotFound: no user has that id.
	ErrNotFound = errors.New("not found")
	// ErrTokenNotFound: no provisioning token (not revoked) has that id.
	// It is a kind of ErrNotFound.
	ErrTokenNotFound = fmt.Errorf("%w: provisioning token", ErrNotFound)
	// ErrPreconditionFailed: If-Match named another version of the user.
	ErrPreconditionFailed = errors.New("precondition failed")
	// ErrLastAdmin: the change would leave no active admin.
	ErrLastAdmin = errors.New("last active admin")
	// ErrPasswordChanged: the stored password changed while a request that
	// checked the current one ran.
	ErrPasswordChanged = errors.New("password changed concurrently")
	// ErrUnavailable: the database could not answer (down, slow,
	// restarting, schema not yet applied). Clients may retry.
	ErrUnavailable = errors.New("database unavailable")
	// ErrBusy: the password hasher is saturated. Clients may retry.
	ErrBusy = errors.New("password hashing is saturated")

	// ErrBodiesBusy: the bytes of request bodies in flight are at their
	// limit (MAX_BODY_BYTES_IN_FLIGHT): the service is busy, not the
	// database.
	ErrBodiesBusy = errors.New("request bodies in flight at their limit")
	// ErrStarting: start-up is not done: the schema or the bootstrap admin
	// is not in place yet.
	ErrStarting = errors.New("starting")
	// ErrNotReady: the database is not ready to serve requests: unreachable,
	// too slow, or without the schema.
	ErrNotReady = errors.New("not ready")
	// ErrConnectionsFull: the public listener has had no free connection
	// slot for a while: every connection is open and in a request.
	ErrConnectionsFull = errors.New("no free connection slot")
	// ErrTooManyConnections: a client at its cap of open connections,
	// all in a request, opened another.
	ErrTooManyConnections = errors.New("too many connections from this client")

	// ErrKeyReused: an Idempotency-Key came back with another body.
	ErrKeyReused = errors.New("idempotency key reused with another request")
	// ErrKeyInFlight: the first request with an Idempotency-Key still runs.
	ErrKeyInFlight = errors.New("idempotency key in flight")
	// ErrClaimLost: a retry took over this request's claim on its
	// Idempotency-Key, so this request must not record its answer.
	ErrClaimLost = errors.New("idempotency claim lost")

	// ErrCursorPruned: an event feed cursor points before the retention
	// horizon: events after it have been deleted, so following it would
	// skip them.
	ErrCursorPruned = errors.New("event cursor older than the retention horizon")
	// ErrCursorAhead: an event feed cursor points past the head of the
	// feed, a seq not yet handed out: the database was restored from an
	// older backup, say. Following it would skip the events numbered
	// anew up to it.
	ErrCursorAhead = errors.New("event cursor ahead of the feed")

	// ErrOutcomeUnknown: a write's COMMIT was sent and no answer came, and
	// whether it committed could not be found out (store_commit.go).
	ErrOutcomeUnknown = errors.New("the outcome of the write is unknown")
)

// ConflictError says a unique field already belongs to another user.
type ConflictError struct {
	Field string // "username" or "email"
}

func (e *ConflictError) Error() string { return e.Field + " is already taken" }

// SCIMRequestError is a SCIM request the protocol refuses (RFC 7644
// section 3.12): Type is its scimType (invalidFilter, invalidPath,
// invalidValue, mutability, noTarget, invalidSyntax), Detail says what.
type SCIMRequestError struct {
	Type   string
	Detail string
}

func (e *SCIMRequestError) Error() string { return e.Type + ": " + e.Detail }

// FieldError ties a domain error to the field of the request that caused
// it: the role or active flag a last-admin refusal is about, say.
type FieldError struct {
	Field string
	Err   error
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// ForbiddenError refuses an authenticated caller: Reason says why, and
// Field names the field they may not set, if that is the reason.
type ForbiddenError struct {
	Reason string
	Field  string
}

func (e *ForbiddenError) Error() string { return e.Reason }

// RateLimitedError refuses an attempt after too many recent ones: failed
// sign-ins unless Detail says what else.
type RateLimitedError struct {
	RetryAfter time.Duration
	Detail     string
}

func (e *RateLimitedError) Error() string {
	return fmt.Sprintf("rate limited for %s", e.RetryAfter)
}

// DatabaseDownError says the database failed a health check, and Reason
// says why in a few words: "unreachable", "timeout", or the reason of a
// DatabaseSetupError.
type DatabaseDownError struct {
	Reason string
	Err    error
}

func (e *DatabaseDownError) Error() string { return "database " + e.Reason + ": " + e.Err.Error() }
func (e *DatabaseDownError) Unwrap() error { return e.Err }

// DatabaseSetupError says the database refuses the service for a reason
// no retry cures and an operator must fix: Reason is "access denied",
// "missing grant", "tls required", "tls", "tls unsupported by server",
// "unknown database" or "schema missing"; Number is the server's error
// number (0 for a failure on the client's side, such as TLS). It is a
// kind of ErrUnavailable: requests answer it as the database being
// unavailable.
type DatabaseSetupError struct {
	Reason string
	Number uint16
	Err    error
}

func (e *DatabaseSetupError) Error() string   { return "database " + e.Reason + ": " + e.Err.Error() }
func (e *DatabaseSetupError) Unwrap() []error { return []error{ErrUnavailable, e.Err} }

// The refusals of the access rules.
var (
	errAdminsOnly   = &ForbiddenError{Reason: "Only an admin may do this."}
	errNotYours     = &ForbiddenError{Reason: "You may only see and change your own account."}
	errAdminsCreate = &ForbiddenError{Reason: "Only an admin may create users."}
	errNoSelfDelete = &ForbiddenError{Reason: "An admin may not delete their own account."}
	// errOutOfScope refuses a provisioning token on a route outside its
	// scope: a "scim" token calls /scim/v2 and nothing else.
	errOutOfScope = &ForbiddenError{Reason: "A provisioning token may only call the routes of its scope (scim: /scim/v2)."}
	// errSelfBySCIM: an admin's own password or email changes with the
	// current password, through /api/v1/users/me, never through SCIM.
	errSelfBySCIM = &ForbiddenError{Reason: "Change your own password or email through PATCH /api/v1/users/me, with your current password."}
	// errAdminNotProvisioned and errProvisionedAdmin: a provisioning
	// token neither writes an admin's account nor grants the admin role
	// (mayProvision).
	errAdminNotProvisioned = &ForbiddenError{Reason: "A provisioning token may not change or delete an admin: admins are managed through the API by an admin."}
	errProvisionedAdmin    = &ForbiddenError{Reason: "A provisioning token may not grant the admin role: an admin does, through the API.", Field: "role"}
	// errAtUsernameByAdmin: a username with '@' can be mistaken for
	// someone's email at sign-in, so only admins and provisioning set one.
	errAtUsernameByAdmin = &ForbiddenError{Reason: "Only an admin may set a username that contains '@'.", Field: "username"}
	// errOriginNotAllowed refuses a preflight from an origin not in
	// CORS_ALLOWED_ORIGINS.
	errOriginNotAllowed = &ForbiddenError{Reason: "This origin may not call the API from a browser; ask the operator to add it to CORS_ALLOWED_ORIGINS."}
	errRoleByAdmin      = &ForbiddenError{Reason: "Only an admin may change a role.", Field: "role"}
	errActiveByAdmin    = &ForbiddenError{Reason: "Only an admin may activate or deactivate a user.", Field: "is_active"}
	errSignupRole       = &ForbiddenError{Reason: `Signing up creates an account with role "user" only.`, Field: "role"}
	errSignupActiveOnly = &ForbiddenError{Reason: "Signing up creates an active account only.", Field: "is_active"}
)
