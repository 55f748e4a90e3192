package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Body limits: a sign-in needs a few KiB, a user at most a few more (the
// longest valid user, every character escaped, stays under 16 KiB).
// MAX_BODY_BYTES raises or lowers the user routes' limit.
const (
	loginMaxBodyBytes   = 4 << 10
	defaultMaxBodyBytes = 16 << 10
	bodyBudgetWait      = 2 * time.Second // how long a body may wait for room in the budget
)

// bodyBudget bounds the bytes all request bodies being read and held may
// take at once, so that many large bodies cannot exhaust memory.
type bodyBudget struct {
	mu      sync.Mutex
	free    int64
	changed chan struct{} // closed and replaced whenever bytes come back
}

func newBodyBudget(total int64) *bodyBudget {
	return &bodyBudget{free: total, changed: make(chan struct{})}
}

// acquire takes n bytes from the budget, waiting at most wait for them.
func (b *bodyBudget) acquire(ctx context.Context, n int64, wait time.Duration) bool {
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		b.mu.Lock()
		if b.free >= n {
			b.free -= n
			b.mu.Unlock()
			return true
		}
		changed := b.changed
		b.mu.Unlock()
		select {
		case <-changed:
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

func (b *bodyBudget) release(n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.free += n
	close(b.changed)
	b.changed = make(chan struct{})
}

// limitBody bounds the body of a route's requests by limit and makes room
// for it in the budget before the handler reads it, giving the room back
// when the handler is done. A body declared larger than the limit is a
// 413 at once; a body without a length takes the whole limit.
func (s *server) limitBody(limit int64, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > limit {
			s.writeError(w, r, tooLarge(limit))
			return
		}
		need := limit
		if r.ContentLength >= 0 {
			need = r.ContentLength
		}
		if !s.bodies.acquire(r.Context(), need, bodyBudgetWait) {
			s.writeError(w, r, ErrBodiesBusy)
			return
		}
		defer s.bodies.release(need)
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		next(w, r)
	}
}

// writeJSON writes v as the JSON response body with the given status.
// It encodes first, so an encoding failure can still become a clean 500.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	body, err := marshalJSON(v)
	if err != nil {
		return err
	}
	writeBody(w, status, "application/json", body)
	return nil
}

// marshalJSON encodes a response body.
func marshalJSON(v any) ([]byte, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode response: %w", err)
	}
	return body, nil
}

// writeBody writes a complete response: Content-Type and Content-Length
// first, then the status and the body with a final newline.
func writeBody(w http.ResponseWriter, status int, contentType string, body []byte) {
	body = append(body, '\n')
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	w.Write(body)
}

// jsonMember is one name/value pair of a JSON object, in body order.
type jsonMember struct {
	Name  string
	Value json.RawMessage
}

func (m jsonMember) isNull() bool { return string(m.Value) == "null" }

// readJSONObject reads the request body, which must be one JSON object
// within the route's limit sent as application/json (or one of
// mediaTypes), and returns its members in order. A name that appears twice is an error: a proxy reading the
// first and us the last must never disagree on what was sent.
func readJSONObject(w http.ResponseWriter, r *http.Request, mediaTypes ...string) ([]jsonMember, error) {
	body, err := readJSONBody(w, r, mediaTypes...)
	if err != nil {
		return nil, err
	}
	return parseJSONObject(body)
}

// readJSONBody reads the raw request body: sent as application/json (or
// one of mediaTypes), within the route's limit (see limitBody), valid
// UTF-8.
func readJSONBody(w http.ResponseWriter, r *http.Request, mediaTypes ...string) ([]byte, error) {
	if err := checkJSONContentType(r.Header.Get("Content-Type"), mediaTypes...); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if r.ContentLength > 0 && r.ContentLength <= 1<<20 {
		buf.Grow(int(r.ContentLength) + 1) // one allocation, not a doubling series
	}
	if _, err := buf.ReadFrom(r.Body); err != nil {
		if tooBig, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, tooLarge(tooBig.Limit)
		}
		return nil, badRequest("The request body could not be read.")
	}
	body := buf.Bytes()
	if !utf8.Valid(body) {
		return nil, badRequest("The request body is not valid UTF-8.")
	}
	return body, nil
}

// tooLarge is the 413 for a body over limit bytes.
func tooLarge(limit int64) *requestError {
	return &requestError{status: http.StatusRequestEntityTooLarge,
		detail: fmt.Sprintf("The request body must not exceed %d bytes.", limit)}
}

// checkJSONContentType accepts application/json, or one of mediaTypes
// when given, with an optional UTF-8 charset, the only encoding JSON has
// (RFC 8259 section 8.1).
func checkJSONContentType(header string, mediaTypes ...string) error {
	if len(mediaTypes) == 0 {
		mediaTypes = []string{"application/json"}
	}
	want := "The request body must be sent as Content-Type: " + strings.Join(mediaTypes, " or ") + "."
	mediaType, params, err := mime.ParseMediaType(header)
	if err != nil || !slices.Contains(mediaTypes, mediaType) {
		return &requestError{status: http.StatusUnsupportedMediaType, detail: want}
	}
	for name, value := range params {
		if name != "charset" || !equalFoldASCII(value, "utf-8") {
			return &requestError{status: http.StatusUnsupportedMediaType, detail: want + " The only parameter allowed is charset=utf-8."}
		}
	}
	return nil
}

func equalFoldASCII(a, b string) bool {
	return len(a) == len(b) && bytes.EqualFold([]byte(a), []byte(b))
}

// parseJSONObject splits body into the members of its single top-level
// object.
func parseJSONObject(body []byte) ([]jsonMember, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		if errors.Is(err, io.EOF) {
			return nil, badRequest("The request body is empty; it must be a JSON object.")
		}
		return nil, jsonSyntaxProblem(err, "The request body must be a JSON object.")
	}
	var members []jsonMember
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, jsonSyntaxProblem(err, "")
		}
		name := tok.(string) // inside an object, the decoder only yields string keys
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return nil, jsonSyntaxProblem(err, "")
		}
		if seen[name] {
			return nil, badRequest("The request body names a field more than once.",
				fieldError{Field: fieldName(name), Message: "appears more than once"})
		}
		seen[name] = true
		members = append(members, jsonMember{Name: name, Value: value})
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, jsonSyntaxProblem(err, "")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, badRequest("The request body must hold a single JSON object, with nothing after it.")
	}
	return members, nil
}

// jsonSyntaxProblem turns a decoding error into a 400 that says where the
// JSON went wrong. fallback is used when err is nil (valid JSON of the
// wrong shape).
func jsonSyntaxProblem(err error, fallback string) *requestError {
	if syntaxErr, ok := errors.AsType[*json.SyntaxError](err); ok {
		return badRequest(fmt.Sprintf("The request body is malformed JSON at byte %d.", syntaxErr.Offset))
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return badRequest("The request body ends in the middle of the JSON.")
	}
	if fallback == "" {
		fallback = "The request body is malformed JSON."
	}
	return badRequest(fallback)
}

// pathID parses the {id} path segment of a route whose ids are positive
// decimal integers, naming what the id is of (the webhook, the token) in
// the 400 it answers otherwise.
func pathID(r *http.Request, of string) (int64, error) {
	id, ok := parsePositiveInt(r.PathValue("id"))
	if !ok {
		return 0, badRequest("The "+of+" id in the path must be a positive decimal integer.",
			fieldError{Field: "id", Message: "must be a positive decimal integer"})
	}
	return id, nil
}

// parsePositiveInt parses a decimal integer from 1 to MaxInt64 written in
// digits only, without sign or leading zeros, so each number has exactly
// one spelling.
func parsePositiveInt(s string) (int64, bool) {
	if s == "" || s[0] == '0' {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// requestQuery parses r's query string strictly, for every route that
// takes parameters: a pair that does not parse (a ';' separator, a bad
// percent-escape) is a 400, never dropped, since a dropped filter widens
// the answer ("user_id=2;" would read everyone's events).
func requestQuery(r *http.Request) (url.Values, error) {
	values, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badRequest("The query string is malformed: "+truncate(err.Error(), 200)+".",
			fieldError{Field: "query", Message: "must be name=value pairs separated by &, percent-encoded"})
	}
	return values, nil
}

// queryParams reads a query string's parameters strictly: each at most
// once, and none but the known ones (a misspelt "per_pag" must not
// silently give the default). Problems go to errs, all at once.
type queryParams struct {
	values url.Values
	errs   *fieldErrors
}

// newQueryParams checks values against the known names.
func newQueryParams(values url.Values, known []string, errs *fieldErrors) queryParams {
	for _, name := range slices.Sorted(maps.Keys(values)) {
		if !slices.Contains(known, name) && len(*errs) < maxUnknownFieldsReported {
			errs.add(fieldName(name), "is not a known query parameter")
		}
	}
	return queryParams{values: values, errs: errs}
}

// one returns the parameter's value, and whether it was given once.
func (p queryParams) one(name string) (string, bool) {
	v, present := p.values[name]
	if !present {
		return "", false
	}
	if len(v) != 1 {
		p.errs.add(name, "must be given once")
		return "", false
	}
	return v[0], true
}
