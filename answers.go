package main

import (
	"net/http"
	"strconv"
)

// The answers of writes as values: what a create, an update or a delete
// answers, computed from the user it leaves, and kept as it is under an
// Idempotency-Key (the store records them in the write's own
// transaction; idempotency.go replays them). The user's JSON form is
// json.go's; the statuses are net/http's constants, the only part of it
// used here.

// IdempotencyKey is a key as stored: the caller's scope and the key, and
// once claimed, the claim's random id.
type IdempotencyKey struct {
	Scope uint64 // the caller's user id, or for anonymous callers anonymousScope
	Key   string
	claim []byte
}

// RecordedAnswer is an answer kept under an idempotency key. The store
// keeps and returns it as it is, without reading it.
type RecordedAnswer struct {
	Status      int
	ContentType string
	Location    string
	ETag        string
	Body        []byte
}

// etagOf is the strong entity tag of a user's current version. The
// version is bumped by every update, so the tag changes whenever the user
// does; it tells nothing else.
func etagOf(u *User) string {
	return `"` + strconv.FormatInt(u.Version, 10) + `"`
}

// userPath is the URL path of the user id.
func userPath(id int64) string { return "/api/v1/users/" + strconv.FormatInt(id, 10) }

// createdAnswer is the 201 answer to a create.
func createdAnswer(u *User) RecordedAnswer {
	return RecordedAnswer{
		Status:      http.StatusCreated,
		ContentType: "application/json",
		Location:    userPath(u.ID),
		ETag:        etagOf(u),
		Body:        append(appendUserJSON(make([]byte, 0, 256), u), '\n'),
	}
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
