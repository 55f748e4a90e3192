package main

import (
	"hash/fnv"
	"net/http"
	"strconv"
)

// Idempotency keys make POST /api/v1/users safe to retry. The first
// request with a key runs; its answer is kept in the database (so every
// replica sees it) for idempotencyTTL, and a retry with the same key and
// the same body gets that answer again, marked Idempotent-Replayed: true,
// without creating anything. The same key with another body is a 422; a
// retry while the first request still runs is a 409. This file is the
// HTTP face of it: reading the header and writing answers; the handler is
// createIdempotently, the storage store_idempotency.go.

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
	scope := anonymousScope(clientAddress(r))
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

// userAnswer is the 200 of a PUT or PATCH that leaves u as stored, as the
// handler sends it and as it is recorded under an Idempotency-Key.
func userAnswer(u *User) RecordedAnswer {
	return RecordedAnswer{Status: http.StatusOK, ContentType: "application/json", ETag: etagOf(u),
		Body: append(appendUserJSON(make([]byte, 0, 256), u), '\n')}
}

// deletedAnswer is the 204 of a DELETE, as it is recorded under an
// Idempotency-Key.
func deletedAnswer() RecordedAnswer {
	return RecordedAnswer{Status: http.StatusNoContent}
}
