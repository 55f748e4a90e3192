package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Idempotency keys make POST /api/v1/users safe to retry. The first
// request with a key runs; its answer is kept in the database (so every
// replica sees it) for idempotencyTTL, and a retry with the same key and
// the same body gets that answer again, marked Idempotent-Replayed: true,
// without creating anything. The same key with another body is a 422; a
// retry while the first request still runs is a 409.
const (
	idempotencyTTL      = 24 * time.Hour
	maxIdempotencyKey   = 255
	idempotencyStaleRun = time.Minute // a first request still "running" after this has died
)

// idempotencyKey is a key as stored: the caller's scope and the key, and
// once claimed, the claim's random id.
type idempotencyKey struct {
	scope int64 // the caller's user id, 0 for an anonymous sign-up
	key   string
	claim []byte
}

// storedResponse is an answer kept under an idempotency key.
type storedResponse struct {
	Status      int
	ContentType string
	Location    string
	ETag        string
	Body        []byte
}

// write sends the stored answer.
func (sr *storedResponse) write(w http.ResponseWriter) {
	h := w.Header()
	if sr.Location != "" {
		h.Set("Location", sr.Location)
	}
	if sr.ETag != "" {
		h.Set("ETag", sr.ETag)
	}
	h.Set("Content-Type", sr.ContentType)
	h.Set("Content-Length", strconv.Itoa(len(sr.Body)))
	w.WriteHeader(sr.Status)
	w.Write(sr.Body)
}

// Answers about a key that cannot run now.
var (
	errKeyReused = &requestError{status: http.StatusUnprocessableEntity,
		detail: "This Idempotency-Key was used with a different request body; use a new key for a new request."}
	errKeyInFlight = &requestError{status: http.StatusConflict,
		detail: "A request with this Idempotency-Key is still running; retry once it has finished."}
)

// errClaimLost: a retry took this request's claim over; it must not record.
var errClaimLost = errKeyInFlight

// handleIdempotentCreate runs a create under the request's Idempotency-Key.
func (s *server) handleIdempotentCreate(w http.ResponseWriter, r *http.Request, body []byte) {
	key, err := requestIdempotencyKey(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	hash := sha256.Sum256(body)
	stored, err := s.store.ClaimIdempotencyKey(r.Context(), &key, hash[:])
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if stored != nil {
		w.Header().Set("Idempotent-Replayed", "true")
		stored.write(w)
		return
	}
	capture := &capturedResponse{header: http.Header{}}
	s.createUser(capture, r, body, &key)
	// The key's fate must not depend on a client that hung up.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.store.timeout)
	defer cancel()
	switch {
	case capture.status == http.StatusCreated:
		// Recorded with the user, in the same transaction.
	case capture.status >= 500:
		// Nothing happened: let a retry run it again.
		if err := s.store.ReleaseIdempotencyKey(ctx, key); err != nil {
			s.logger.WarnContext(ctx, "release idempotency key", "error", err, "request_id", requestID(ctx))
		}
	default:
		answer := &storedResponse{Status: capture.status, ContentType: capture.header.Get("Content-Type"), Body: capture.body.Bytes()}
		if err := s.store.CompleteIdempotencyKey(ctx, key, answer); err != nil {
			s.logger.WarnContext(ctx, "record idempotency key", "error", err, "request_id", requestID(ctx))
		}
	}
	for name, values := range capture.header {
		w.Header()[name] = values
	}
	w.WriteHeader(capture.status)
	w.Write(capture.body.Bytes())
}

// requestIdempotencyKey reads the Idempotency-Key header: 1 to 255
// printable ASCII characters, scoped to the caller.
func requestIdempotencyKey(r *http.Request) (idempotencyKey, error) {
	key := r.Header.Get("Idempotency-Key")
	valid := len(key) >= 1 && len(key) <= maxIdempotencyKey
	for i := 0; i < len(key) && valid; i++ {
		valid = key[i] >= 0x20 && key[i] <= 0x7e
	}
	if !valid {
		return idempotencyKey{}, badRequest("Idempotency-Key must be 1 to 255 printable ASCII characters.")
	}
	var scope int64
	if caller := callerFrom(r.Context()); caller != nil {
		scope = caller.ID
	}
	return idempotencyKey{scope: scope, key: key}, nil
}

// ClaimIdempotencyKey records that the request with this key and body hash
// starts now, sets key.claim and returns nil, or returns the stored answer
// of an earlier request with the key. It returns errKeyReused for another body and
// errKeyInFlight while the earlier request runs. An expired key, or one
// whose first request died mid-way (still running after
// idempotencyStaleRun), is claimed afresh.
func (s *Store) ClaimIdempotencyKey(ctx context.Context, key *idempotencyKey, hash []byte) (*storedResponse, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	if _, err := s.db.ExecContext(ctx, "DELETE FROM idempotency_keys WHERE expires_at <= NOW(6) LIMIT 100"); err != nil {
		return nil, dbError("purge idempotency keys", err)
	}
	claim := make([]byte, 16)
	rand.Read(claim)
	for range 3 { // the row can vanish between the insert and the read
		_, err := s.db.ExecContext(ctx,
			"INSERT INTO idempotency_keys (scope, idem_key, request_hash, claim, expires_at) VALUES (?, ?, ?, ?, NOW(6) + INTERVAL ? MICROSECOND)",
			key.scope, key.key, hash, claim, idempotencyTTL.Microseconds())
		if err == nil {
			key.claim = claim
			return nil, nil
		}
		if !isDuplicateKey(err) {
			return nil, dbError("claim idempotency key", err)
		}
		stored, claimed, err := s.existingIdempotencyKey(ctx, *key, hash, claim)
		if claimed {
			key.claim = claim
		}
		if err != nil || claimed || stored != nil {
			return stored, err
		}
	}
	return nil, errKeyInFlight
}

// existingIdempotencyKey decides about a key that is already stored: its
// answer, a claim (with the given claim id) of one whose first request
// died, or an error. It returns neither when the row is gone, or was
// expired and is now, for the caller to insert again.
func (s *Store) existingIdempotencyKey(ctx context.Context, key idempotencyKey, hash, claim []byte) (*storedResponse, bool, error) {
	var (
		storedHash                  []byte
		status                      sql.NullInt64
		contentType, location, etag sql.NullString
		body                        []byte
		expired, stale              bool
	)
	err := s.db.QueryRowContext(ctx,
		"SELECT request_hash, status, content_type, location, etag, body, expires_at <= NOW(6),"+
			" created_at <= NOW(6) - INTERVAL ? MICROSECOND FROM idempotency_keys WHERE scope = ? AND idem_key = ?",
		idempotencyStaleRun.Microseconds(), key.scope, key.key).
		Scan(&storedHash, &status, &contentType, &location, &etag, &body, &expired, &stale)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, dbError("read idempotency key", err)
	}
	switch {
	case expired:
		_, err := s.db.ExecContext(ctx, "DELETE FROM idempotency_keys WHERE scope = ? AND idem_key = ? AND expires_at <= NOW(6)", key.scope, key.key)
		if err != nil {
			return nil, false, dbError("expire idempotency key", err)
		}
		return nil, false, nil // gone: the caller inserts it afresh
	case string(storedHash) != string(hash):
		return nil, false, errKeyReused
	case status.Valid:
		return &storedResponse{Status: int(status.Int64), ContentType: contentType.String, Location: location.String,
			ETag: etag.String, Body: body}, false, nil
	case stale:
		// Take the dead request's place, unless another retry just did.
		res, err := s.db.ExecContext(ctx,
			"UPDATE idempotency_keys SET created_at = NOW(6), claim = ? WHERE scope = ? AND idem_key = ? AND status IS NULL AND created_at <= NOW(6) - INTERVAL ? MICROSECOND",
			claim, key.scope, key.key, idempotencyStaleRun.Microseconds())
		if err != nil {
			return nil, false, dbError("reclaim idempotency key", err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return nil, true, nil
		}
	}
	return nil, false, errKeyInFlight
}

// execer is what both *sql.DB and *sql.Tx offer for statements.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// CompleteIdempotencyKey stores the answer of the request that claimed key.
func (s *Store) CompleteIdempotencyKey(ctx context.Context, key idempotencyKey, answer *storedResponse) error {
	return completeIdempotencyKey(ctx, s.db, key, answer)
}

// completeIdempotencyKey records the answer under the key, if this
// request still holds its claim; otherwise it returns errClaimLost (and a
// create in the same transaction is rolled back).
func completeIdempotencyKey(ctx context.Context, db execer, key idempotencyKey, answer *storedResponse) error {
	res, err := db.ExecContext(ctx,
		"UPDATE idempotency_keys SET status = ?, content_type = ?, location = ?, etag = ?, body = ?"+
			" WHERE scope = ? AND idem_key = ? AND claim = ? AND status IS NULL",
		answer.Status, answer.ContentType, answer.Location, answer.ETag, answer.Body, key.scope, key.key, key.claim)
	if err != nil {
		return dbError("record idempotency key", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return errClaimLost
	}
	return nil
}

// ReleaseIdempotencyKey forgets a claim whose request failed on our side,
// so that a retry runs it again.
func (s *Store) ReleaseIdempotencyKey(ctx context.Context, key idempotencyKey) error {
	if _, err := s.db.ExecContext(ctx, "DELETE FROM idempotency_keys WHERE scope = ? AND idem_key = ? AND claim = ? AND status IS NULL",
		key.scope, key.key, key.claim); err != nil {
		return fmt.Errorf("release idempotency key: %w", err)
	}
	return nil
}

// isDuplicateKey reports whether err is MySQL's duplicate-key error.
func isDuplicateKey(err error) bool {
	myErr, ok := errors.AsType[*mysql.MySQLError](err)
	return ok && myErr.Number == errDupEntry
}
