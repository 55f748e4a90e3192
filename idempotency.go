package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"strconv"
)

// Idempotency keys make POST /api/v1/users, and PUT, PATCH and DELETE of
// a user, safe to retry. The first request with a key runs; its answer is
// kept in the database (so every replica sees it) for idempotencyTTL, and
// a retry with the same key and the same request gets that answer again,
// marked Idempotent-Replayed: true, without changing anything. The same
// key with another request is a 422; a retry while the first request
// still runs is a 409. This file is the HTTP face of it: reading the
// header, the handlers' keyed flows (createIdempotently, writeKeyed) and
// writing answers; the storage is store_idempotency.go.

// maxIdempotencyKey is the longest key accepted, in bytes.
const maxIdempotencyKey = 255

// requestIdempotencyKey reads the Idempotency-Key header: 1 to 255
// printable ASCII characters, scoped to the caller.
func requestIdempotencyKey(r *http.Request) (IdempotencyKey, error) {
	key := r.Header.Get("Idempotency-Key")
	valid := len(key) >= 1 && len(key) <= maxIdempotencyKey
	for i := 0; i < len(key) && valid; i++ {
		valid = key[i] >= 0x20 && key[i] <= 0x7e
	}
	if !valid {
		return IdempotencyKey{}, badRequest("Idempotency-Key must be 1 to 255 printable ASCII characters.",
			fieldError{Field: "Idempotency-Key", Message: "must be 1 to 255 printable ASCII characters"})
	}
	scope := anonymousScope(requestClientKey(r))
	if caller := callerFrom(r.Context()); caller != nil {
		scope = uint64(caller.ID)
	}
	return IdempotencyKey{Scope: scope, Key: key}, nil
}

// anonymousScope is the key scope of anonymous callers from one client
// address: the top bit set, which no user id has, and 63 bits of a hash
// of the address. Callers from different addresses cannot see or squat
// each other's keys.
func anonymousScope(addr string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(addr))
	return h.Sum64() | 1<<63
}

// writeRecorded sends an answer kept as a value.
func writeRecorded(w http.ResponseWriter, a RecordedAnswer) {
	h := w.Header()
	if a.Location != "" {
		h.Set("Location", a.Location)
	}
	if a.ETag != "" {
		h.Set("ETag", a.ETag)
	}
	if a.ContentType != "" { // none on a 204
		h.Set("Content-Type", a.ContentType)
		h.Set("Content-Length", strconv.Itoa(len(a.Body)))
	}
	w.WriteHeader(a.Status)
	w.Write(a.Body)
}

// recordedProblem is a problem answer as it is kept under a key.
func recordedProblem(a problemAnswer) (RecordedAnswer, error) {
	body, err := marshalJSON(a.problem)
	if err != nil {
		return RecordedAnswer{}, err
	}
	return RecordedAnswer{Status: a.Status, ContentType: "application/problem+json", Body: append(body, '\n')}, nil
}

// createIdempotently runs a create under the request's Idempotency-Key:
// the first request with a key runs and its answer is recorded, so that
// a retry with the same body gets that answer again (see
// store_idempotency.go). Answers of 5xx are not recorded: nothing
// happened, and a retry runs the create again.
func (s *server) createIdempotently(w http.ResponseWriter, r *http.Request, body []byte) {
	key, err := requestIdempotencyKey(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var hashed *NewUser
	if callerFrom(r.Context()) == nil {
		// An anonymous caller pays for the row a key takes with the hash
		// of a valid user, before the row is stored.
		nu, err := s.newUserFrom(r, body)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		hashed = &nu
	}
	hash := sha256.Sum256(body)
	if !s.claimKey(w, r, &key, hash[:]) {
		return
	}
	var created RecordedAnswer
	if hashed != nil {
		created, err = s.insertUser(r, *hashed, &key)
	} else {
		created, err = s.createUser(r, body, &key)
	}
	s.finishKeyed(w, r, key, created, err)
}

// writeKeyed runs a PUT, PATCH or DELETE under the request's
// Idempotency-Key, with the contract of create (createIdempotently): the
// caller is authenticated first (the key is theirs), the first request
// with the key runs, and write records its answer under the key in the
// change's own transaction, so that a retry with the same request gets
// that answer again, once applied, whatever happened to the first
// answer. The same key with another request (method, path, If-Match or
// body) is a 422.
func (s *server) writeKeyed(w http.ResponseWriter, r *http.Request, body []byte, write func(*http.Request, *IdempotencyKey) (RecordedAnswer, error)) {
	r, _, err := s.signIn(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	key, err := requestIdempotencyKey(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if !s.claimKey(w, r, &key, keyedRequestHash(r, body)) {
		return
	}
	answer, err := write(r, &key)
	s.finishKeyed(w, r, key, answer, err)
}

// keyedRequestHash identifies a keyed write's request: its method, path,
// If-Match and body, so a key sent again with any of them changed is
// another request (422), not a retry.
func keyedRequestHash(r *http.Request, body []byte) []byte {
	h := sha256.New()
	fmt.Fprintf(h, "%s %s\n%s\n", r.Method, r.URL.EscapedPath(), r.Header.Get("If-Match"))
	h.Write(body)
	return h.Sum(nil)
}

// finishKeyed answers a request that claimed key: the answer its write
// recorded, or the error, whose fate under the key depends on its kind. A
// 4xx is recorded (a retry gets the same refusal); a 5xx or a 429
// releases the key (a retry runs again: a write that did commit had
// recorded its answer, which the release leaves in place); a lost claim
// belongs to the
// retry that took it over.
func (s *server) finishKeyed(w http.ResponseWriter, r *http.Request, key IdempotencyKey, answer RecordedAnswer, err error) {
	if err == nil {
		writeRecorded(w, answer) // recorded with the change, in the same transaction
		return
	}
	refusal := problemFor(err)
	s.logAnswer(r, refusal.Status, err)
	// The key's fate must not depend on a client that hung up.
	ctx := context.WithoutCancel(r.Context())
	switch {
	case errors.Is(err, ErrClaimLost):
		// A retry holds the key now: it records its own answer.
	case refusal.Status >= 500 || refusal.Status == http.StatusTooManyRequests:
		// Nothing was done, and a retry after Retry-After must run.
		if err := s.store.ReleaseIdempotencyKey(ctx, key); err != nil {
			s.logger.WarnContext(ctx, "release idempotency key", "error", err, "request_id", requestID(ctx))
		}
	default:
		recorded, encodeErr := recordedProblem(refusal)
		if encodeErr == nil {
			encodeErr = s.store.CompleteIdempotencyKey(ctx, key, recorded)
		}
		if encodeErr != nil {
			s.logger.WarnContext(ctx, "record idempotency key", "error", encodeErr, "request_id", requestID(ctx))
		}
	}
	writeProblem(w, refusal)
}

// claimKey claims key for the request whose hash is given, and reports
// whether the request is to run; otherwise it has answered: the recorded
// answer of an earlier request with the key, or why the key cannot be
// claimed.
func (s *server) claimKey(w http.ResponseWriter, r *http.Request, key *IdempotencyKey, hash []byte) bool {
	recorded, err := s.store.ClaimIdempotencyKey(r.Context(), key, hash)
	if err != nil {
		s.writeError(w, r, err)
		return false
	}
	if recorded != nil {
		w.Header().Set("Idempotent-Replayed", "true")
		writeRecorded(w, *recorded)
		return false
	}
	return true
}
