package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Lifetimes of idempotency keys.
const (
	idempotencyTTL      = 24 * time.Hour
	idempotencyStaleRun = time.Minute // a first request still "running" after this has died
)

// ClaimIdempotencyKey records that the request with this key and body hash
// starts now, sets key.claim and returns nil, or returns the recorded
// answer of an earlier request with the key. It returns ErrKeyReused for
// another body and ErrKeyInFlight while the earlier request runs. An
// expired key, or one whose first request died mid-way (still running
// after idempotencyStaleRun), is claimed afresh.
func (s *Store) ClaimIdempotencyKey(ctx context.Context, key *IdempotencyKey, hash []byte) (*RecordedAnswer, error) {
	ctx, cancel, err := s.callContext(ctx)
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
			key.Scope, key.Key, hash, claim, idempotencyTTL.Microseconds())
		if err == nil {
			key.claim = claim
			return nil, nil
		}
		if !isDuplicateKey(err) {
			return nil, dbError("claim idempotency key", err)
		}
		recorded, claimed, err := s.existingIdempotencyKey(ctx, *key, hash, claim)
		if claimed {
			key.claim = claim
		}
		if err != nil || claimed || recorded != nil {
			return recorded, err
		}
	}
	return nil, ErrKeyInFlight
}

// existingIdempotencyKey decides about a key that is already stored: its
// answer, a claim (with the given claim id) of one whose first request
// died, or an error. It returns neither when the row is gone, or was
// expired and is now, for the caller to insert again.
func (s *Store) existingIdempotencyKey(ctx context.Context, key IdempotencyKey, hash, claim []byte) (*RecordedAnswer, bool, error) {
	var (
		storedHash                  []byte
		status                      sql.NullInt64
		contentType, location, etag sql.NullString
		body                        []byte
		expired, stale              bool
	)
	err := s.db.QueryRowContext(ctx, s.causal(
		"SELECT request_hash, status, content_type, location, etag, body, expires_at <= NOW(6),"+
			" created_at <= NOW(6) - INTERVAL ? MICROSECOND FROM idempotency_keys WHERE scope = ? AND idem_key = ?"),
		idempotencyStaleRun.Microseconds(), key.Scope, key.Key).
		Scan(&storedHash, &status, &contentType, &location, &etag, &body, &expired, &stale)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, dbError("read idempotency key", err)
	}
	switch {
	case expired:
		_, err := s.db.ExecContext(ctx, "DELETE FROM idempotency_keys WHERE scope = ? AND idem_key = ? AND expires_at <= NOW(6)", key.Scope, key.Key)
		if err != nil {
			return nil, false, dbError("expire idempotency key", err)
		}
		return nil, false, nil // gone: the caller inserts it afresh
	case string(storedHash) != string(hash):
		return nil, false, ErrKeyReused
	case status.Valid:
		return &RecordedAnswer{Status: int(status.Int64), ContentType: contentType.String, Location: location.String,
			ETag: etag.String, Body: body}, false, nil
	case stale:
		// Take the dead request's place, unless another retry just did.
		res, err := s.db.ExecContext(ctx,
			"UPDATE idempotency_keys SET created_at = NOW(6), claim = ? WHERE scope = ? AND idem_key = ? AND status IS NULL AND created_at <= NOW(6) - INTERVAL ? MICROSECOND",
			claim, key.Scope, key.Key, idempotencyStaleRun.Microseconds())
		if err != nil {
			return nil, false, dbError("reclaim idempotency key", err)
		}
		if n, _ := res.RowsAffected(); n == 1 {
			return nil, true, nil
		}
	}
	return nil, false, ErrKeyInFlight
}

// CompleteIdempotencyKey records the answer of the request that claimed key.
func (s *Store) CompleteIdempotencyKey(ctx context.Context, key IdempotencyKey, answer RecordedAnswer) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return completeIdempotencyKey(ctx, s.db, key, answer)
}

// completeIdempotencyKey records the answer under the key, if this
// request still holds its claim; otherwise it returns ErrClaimLost (and a
// write in the same transaction is rolled back).
func completeIdempotencyKey(ctx context.Context, db execer, key IdempotencyKey, answer RecordedAnswer) error {
	res, err := db.ExecContext(ctx, completeKeySQL, completeKeyArgs(key, answer)...)
	if err != nil {
		return dbError("record idempotency key", err)
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return ErrClaimLost
	}
	return nil
}

// recordAnswer records answer under key in the write's transaction tx,
// when the request came with a key (completeIdempotencyKey); without one
// it does nothing.
func recordAnswer(ctx context.Context, tx execer, key *IdempotencyKey, answer RecordedAnswer) error {
	if key == nil {
		return nil
	}
	return completeIdempotencyKey(ctx, tx, *key, answer)
}

// completeKeySQL records an answer under a key whose claim the request
// still holds (ClientFoundRows: one row matched, or none when the claim
// was lost). Its arguments are completeKeyArgs.
const completeKeySQL = "UPDATE idempotency_keys SET status = ?, content_type = ?, location = ?, etag = ?, body = ?" +
	" WHERE scope = ? AND idem_key = ? AND claim = ? AND status IS NULL"

// completeKeyArgs are the arguments of completeKeySQL.
func completeKeyArgs(key IdempotencyKey, answer RecordedAnswer) []any {
	return []any{answer.Status, answer.ContentType, answer.Location, answer.ETag, answer.Body, key.Scope, key.Key, key.claim}
}

// ReleaseIdempotencyKey forgets a claim whose request failed on our side,
// so that a retry runs it again.
func (s *Store) ReleaseIdempotencyKey(ctx context.Context, key IdempotencyKey) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	if _, err := s.db.ExecContext(ctx, "DELETE FROM idempotency_keys WHERE scope = ? AND idem_key = ? AND claim = ? AND status IS NULL",
		key.Scope, key.Key, key.claim); err != nil {
		return fmt.Errorf("release idempotency key: %w", err)
	}
	return nil
}
