package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"unicode/utf8"
)

// maxBodyBytes bounds every request body.
const maxBodyBytes = 1 << 20

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

// readJSONObject reads the request body, which must be one JSON object of
// at most maxBodyBytes sent as application/json, and returns its members
// in order. A name that appears twice is an error: a proxy reading the
// first and us the last must never disagree on what was sent.
func readJSONObject(w http.ResponseWriter, r *http.Request) ([]jsonMember, error) {
	body, err := readJSONBody(w, r)
	if err != nil {
		return nil, err
	}
	return parseJSONObject(body)
}

// readJSONBody reads the raw request body: sent as application/json, at
// most maxBodyBytes, valid UTF-8.
func readJSONBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if err := checkJSONContentType(r.Header.Get("Content-Type")); err != nil {
		return nil, err
	}
	if r.ContentLength > maxBodyBytes {
		return nil, tooLarge()
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, tooLarge()
		}
		return nil, badRequest("The request body could not be read.")
	}
	if !utf8.Valid(body) {
		return nil, badRequest("The request body is not valid UTF-8.")
	}
	return body, nil
}

func tooLarge() *requestError {
	return &requestError{status: http.StatusRequestEntityTooLarge,
		detail: fmt.Sprintf("The request body must not exceed %d bytes.", maxBodyBytes)}
}

// checkJSONContentType accepts application/json with an optional UTF-8
// charset, the only encoding JSON has (RFC 8259 section 8.1).
func checkJSONContentType(header string) error {
	const want = "The request body must be sent as Content-Type: application/json."
	mediaType, params, err := mime.ParseMediaType(header)
	if err != nil || mediaType != "application/json" {
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
