package main

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
)

// problem is an RFC 9457 problem details body.
type problem struct {
	Type   string      `json:"type"`
	Title  string      `json:"title"`
	Status int         `json:"status"`
	Detail string      `json:"detail"`
	Errors fieldErrors `json:"errors,omitempty"`
	// Database is /health's extension member: why the database failed.
	Database string `json:"database,omitempty"`
}

// newProblem is a problem of the generic "about:blank" type, whose title is
// the status text, as RFC 9457 section 4.2.1 asks.
func newProblem(status int, detail string) problem {
	return problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail}
}

// problemAnswer is everything an error response holds: the problem and
// the headers that go with its status.
type problemAnswer struct {
	problem
	Header http.Header
}

// requestError is a request the HTTP edge refuses for its shape: a body
// that is malformed, too large or of the wrong type, a bad parameter or
// header, a route that does not exist. Only the edge creates one; it
// carries its status, the offending fields, and any headers to send.
type requestError struct {
	status int
	detail string
	fields fieldErrors
	header http.Header
}

func (e *requestError) Error() string { return e.detail }

// badRequest is a 400 naming what is wrong: the fields given, or without
// any, the body as a whole (field "body"), so that every 400 carries
// errors[].
func badRequest(detail string, fields ...fieldError) *requestError {
	if len(fields) == 0 {
		fields = fieldErrors{{Field: "body", Message: detail}}
	}
	return &requestError{status: http.StatusBadRequest, detail: detail, fields: fields}
}

// problemOutcomeUnknown is the type of the answer to a write whose
// outcome is unknown (a tag URI, RFC 4151: a name, not a page to fetch).
const problemOutcomeUnknown = "tag:usersvc,2026:problems/outcome-unknown"

// Details of the answers written in more than one place.
const (
	detailInternal       = "An unexpected error occurred; it has been logged."
	wwwAuthenticate      = `Bearer realm="usersvc"`
	detailKeyInFlight    = "A request with this Idempotency-Key is still running; retry once it has finished."
	detailStarting       = "The service is starting: the schema or the bootstrap admin is not in place yet."
	detailOutcomeUnknown = "The database did not confirm the change, and whether it was applied could not be found out. " +
		"Do not retry blindly: read the user (its ETag says whether the change is there), " +
		"or retry with the same Idempotency-Key, which applies it at most once."
	detailConnectionsFull = "The public listener has had no free connection slot for a few seconds: " +
		"every connection is open and in a request (MAX_CONNECTIONS)."
	detailCursorPruned = "The cursor is older than the retention horizon: events after it have been deleted. Restart from the beginning (without after)."
	detailCursorAhead  = "The cursor is ahead of the feed: the feed has no event that far yet (the database may have been restored from a backup). Restart from a cursor you trust, or from the beginning (without after)."
)

// problemFor maps any error to the answer the client gets. It is the only
// place that knows which status each kind of error has; an error it does
// not know is a 500 whose detail tells nothing of the cause.
func problemFor(err error) problemAnswer {
	var (
		reqErr    *requestError
		conflict  *ConflictError
		forbidden *ForbiddenError
		limited   *RateLimitedError
		down      *DatabaseDownError
		scimErr   *SCIMRequestError
	)
	switch {
	case errors.Is(err, ErrWrongCredentials):
		return answer(http.StatusUnauthorized, "The username or password is not correct.", "WWW-Authenticate", wwwAuthenticate)
	case errors.Is(err, ErrUnauthenticated):
		return answer(http.StatusUnauthorized, "A valid bearer token is required: get one from POST /api/v1/auth/token.",
			"WWW-Authenticate", wwwAuthenticate)
	case errors.As(err, &forbidden):
		a := answer(http.StatusForbidden, forbidden.Reason)
		if forbidden.Field != "" {
			a.Errors = fieldErrors{{Field: forbidden.Field, Message: "may not be set by you"}}
		}
		return a
	case errors.Is(err, ErrLastAdmin):
		return conflictOn(err, "This is the last active admin: it cannot be deleted, deactivated or demoted. Make another user an active admin first.",
			"would leave no active admin")
	case errors.Is(err, ErrPasswordChanged):
		return conflictOn(err, "The password changed while this request ran; try again.", "no longer matches the stored password")
	case errors.As(err, &limited):
		seconds := max(1, int(math.Ceil(limited.RetryAfter.Seconds())))
		detail := limited.Detail
		if detail == "" {
			detail = "Too many failed sign-in attempts; try again later."
		}
		return answer(http.StatusTooManyRequests, detail, "Retry-After", strconv.Itoa(seconds))
	case errors.Is(err, ErrBodiesBusy):
		return answer(http.StatusServiceUnavailable, "The service is receiving too many request bodies at once; try again shortly.", "Retry-After", "1")
	case errors.Is(err, ErrTooManyConnections):
		return answer(http.StatusTooManyRequests, "This address has as many connections open as it may, all in a request; "+
			"send requests on them, or retry once one has closed.", "Retry-After", "1")
	case errors.Is(err, ErrBusy):
		return answer(http.StatusServiceUnavailable, "The service is busy hashing passwords; try again shortly.", "Retry-After", "1")
	case errors.As(err, &reqErr):
		a := answer(reqErr.status, reqErr.detail)
		a.Errors = reqErr.fields
		for name, values := range reqErr.header {
			a.Header[name] = values
		}
		return a
	case errors.As(err, &scimErr):
		return answer(http.StatusBadRequest, scimErr.Detail)
	case errors.Is(err, ErrPreconditionFailed):
		return answer(http.StatusPreconditionFailed, "The user changed since the version named in If-Match: fetch it again, and retry with its ETag.")
	case errors.Is(err, ErrWebhookNotFound):
		return answer(http.StatusNotFound, "No webhook has this id.")
	case errors.Is(err, ErrTokenNotFound):
		return answer(http.StatusNotFound, "No provisioning token has this id, or it was revoked.")
	case errors.Is(err, ErrNotFound):
		return answer(http.StatusNotFound, "No user has this id.")
	case errors.As(err, &conflict):
		a := answer(http.StatusConflict, fmt.Sprintf("The %s is already taken by another user.", conflict.Field))
		a.Errors = fieldErrors{{Field: conflict.Field, Message: "is already taken"}}
		return a
	case errors.Is(err, ErrKeyReused):
		return answer(http.StatusUnprocessableEntity, "This Idempotency-Key was used with a different request body; use a new key for a new request.")
	case errors.Is(err, ErrKeyInFlight), errors.Is(err, ErrClaimLost):
		a := answer(http.StatusConflict, detailKeyInFlight)
		a.Errors = fieldErrors{{Field: "Idempotency-Key", Message: "is in use by a request still running"}}
		return a
	case errors.Is(err, ErrCursorPruned):
		a := answer(http.StatusGone, detailCursorPruned)
		a.Errors = fieldErrors{{Field: "after", Message: "is older than the retention horizon"}}
		return a
	case errors.Is(err, ErrCursorAhead):
		a := answer(http.StatusBadRequest, detailCursorAhead)
		a.Errors = fieldErrors{{Field: "after", Message: "is ahead of the feed"}}
		return a
	case errors.As(err, &down):
		detail := "The database check failed: " + down.Reason + "."
		switch {
		case errors.Is(down.Err, ErrStarting):
			detail = detailStarting
		case errors.Is(down.Err, ErrConnectionsFull):
			detail = detailConnectionsFull
		}
		a := answer(http.StatusServiceUnavailable, detail, "Retry-After", "1")
		a.Database = down.Reason
		return a
	case errors.Is(err, ErrStarting):
		return answer(http.StatusServiceUnavailable, detailStarting, "Retry-After", "1")
	case errors.Is(err, ErrNotReady):
		return answer(http.StatusServiceUnavailable, "The database is not ready: unreachable, too slow, or without the schema.", "Retry-After", "1")
	case errors.Is(err, ErrOutcomeUnknown):
		a := answer(http.StatusGatewayTimeout, detailOutcomeUnknown)
		a.Type, a.Title = problemOutcomeUnknown, "Outcome unknown"
		return a
	case errors.Is(err, ErrUnavailable):
		return answer(http.StatusServiceUnavailable, "The database is unavailable; try again shortly.", "Retry-After", "1")
	default:
		return answer(http.StatusInternalServerError, detailInternal)
	}
}

// conflictOn is a 409 whose errors[] names the field the request changed
// that caused it (a *FieldError around err), or the body.
func conflictOn(err error, detail, message string) problemAnswer {
	a := answer(http.StatusConflict, detail)
	field := "body"
	if fe, ok := errors.AsType[*FieldError](err); ok {
		field = fe.Field
	}
	a.Errors = fieldErrors{{Field: field, Message: message}}
	return a
}

// answer is a problem with the status's title and headers given as
// name, value pairs.
func answer(status int, detail string, headerPairs ...string) problemAnswer {
	a := problemAnswer{problem: newProblem(status, detail), Header: http.Header{}}
	for i := 0; i+1 < len(headerPairs); i += 2 {
		a.Header.Set(headerPairs[i], headerPairs[i+1])
	}
	return a
}

// writeProblem writes the answer to an error as application/problem+json.
func writeProblem(w http.ResponseWriter, a problemAnswer) {
	for name, values := range a.Header {
		w.Header()[name] = values
	}
	body, err := marshalJSON(a.problem)
	if err != nil {
		panic(err) // a problem holds only strings and ints: it always encodes
	}
	writeBody(w, a.Status, "application/problem+json", body)
}
