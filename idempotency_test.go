package main

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
)

func TestIdempotentCreate(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	body := `{"username":"once","email":"once@example.com","password":"rq7-tz4w"}`
	key := []string{"Idempotency-Key", "create-once-1"}

	first := app.do("POST", "/api/v1/users", body, key...)
	if first.Code != http.StatusCreated || first.Header().Get("Idempotent-Replayed") != "" {
		t.Fatalf("first: %d %s replayed=%q", first.Code, first.Body, first.Header().Get("Idempotent-Replayed"))
	}
	for range 2 {
		retry := app.do("POST", "/api/v1/users", body, key...)
		if retry.Code != http.StatusCreated || retry.Body.String() != first.Body.String() ||
			retry.Header().Get("Idempotent-Replayed") != "true" ||
			retry.Header().Get("Location") != first.Header().Get("Location") || retry.Header().Get("ETag") != first.Header().Get("ETag") {
			t.Errorf("retry: %d %s %v", retry.Code, retry.Body, retry.Header())
		}
	}
	var n int
	app.db.QueryRow("SELECT COUNT(*) FROM users WHERE username = 'once'").Scan(&n)
	if n != 1 {
		t.Errorf("%d users created, want 1", n)
	}
	wantProblem(t, app.do("POST", "/api/v1/users", strings.Replace(body, "once@", "twice@", 1), key...), http.StatusUnprocessableEntity)

	// Keys belong to their caller: another admin's same key is a new request.
	app.createUser(`{"username":"other_admin","email":"other_admin@example.com","password":"other password","role":"admin"}`)
	other := app.login("other_admin", "other password")
	rec := app.do("POST", "/api/v1/users", `{"username":"theirs","email":"theirs@example.com","password":"rq7-tz4w"}`,
		"Idempotency-Key", "create-once-1", "Authorization", "Bearer "+other)
	if rec.Code != http.StatusCreated || rec.Header().Get("Idempotent-Replayed") != "" {
		t.Errorf("another caller's key: %d %s", rec.Code, rec.Body)
	}
}

func TestIdempotentCreateKeepsErrors(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	key := []string{"Idempotency-Key", "bad-body"}
	first := app.do("POST", "/api/v1/users", `{"username":"x"}`, key...)
	wantProblem(t, first, http.StatusBadRequest, "username", "email", "password")
	retry := app.do("POST", "/api/v1/users", `{"username":"x"}`, key...)
	if retry.Code != http.StatusBadRequest || retry.Body.String() != first.Body.String() || retry.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("retry of a 400: %d %s", retry.Code, retry.Body)
	}
	app.createUser(`{"username":"taken","email":"taken@example.com","password":"rq7-tz4w"}`)
	conflictKey := []string{"Idempotency-Key", "conflict"}
	body := `{"username":"TAKEN","email":"new@example.com","password":"rq7-tz4w"}`
	wantProblem(t, app.do("POST", "/api/v1/users", body, conflictKey...), http.StatusConflict, "username")
	if retry := app.do("POST", "/api/v1/users", body, conflictKey...); retry.Code != http.StatusConflict || retry.Header().Get("Idempotent-Replayed") != "true" {
		t.Errorf("retry of a 409: %d", retry.Code)
	}
	// An empty header is a key that is not valid, not a request without one.
	for _, bad := range []string{"", strings.Repeat("k", 256), "tab\tinside", "naïve"} {
		wantProblem(t, app.do("POST", "/api/v1/users", `{"username":"keyed1","email":"keyed1@example.com","password":"rq7-tz4w"}`, "Idempotency-Key", bad),
			http.StatusBadRequest, "Idempotency-Key")
	}
}

func TestIdempotencyKeyInFlightStaleAndExpired(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	body := `{"username":"flight","email":"flight@example.com","password":"rq7-tz4w"}`
	hash := sha256.Sum256([]byte(body))
	key := IdempotencyKey{Scope: uint64(app.adminID), Key: "in-flight"}
	if stored, err := app.store.ClaimIdempotencyKey(context.Background(), &key, hash[:]); err != nil || stored != nil {
		t.Fatalf("claim: %v %v", stored, err)
	}
	// The first request is still running: a retry must wait, not run.
	wantProblem(t, app.do("POST", "/api/v1/users", body, "Idempotency-Key", "in-flight"), http.StatusConflict)

	// It died (a crash between claim and create): after a minute, a retry runs.
	mustExec(t, app, "UPDATE idempotency_keys SET created_at = NOW(6) - INTERVAL 2 MINUTE WHERE idem_key = 'in-flight'")
	if rec := app.do("POST", "/api/v1/users", body, "Idempotency-Key", "in-flight"); rec.Code != http.StatusCreated || rec.Header().Get("Idempotent-Replayed") != "" {
		t.Errorf("retry after a dead first request: %d %s", rec.Code, rec.Body)
	}
	// Keys expire after 24 hours: then the key is new again.
	mustExec(t, app, "UPDATE idempotency_keys SET expires_at = NOW(6) - INTERVAL 1 SECOND WHERE idem_key = 'in-flight'")
	other := `{"username":"flight2","email":"flight2@example.com","password":"rq7-tz4w"}`
	if rec := app.do("POST", "/api/v1/users", other, "Idempotency-Key", "in-flight"); rec.Code != http.StatusCreated || rec.Header().Get("Idempotent-Replayed") != "" {
		t.Errorf("an expired key with a new body: %d %s", rec.Code, rec.Body)
	}
	// A failure on our side releases the key for a retry.
	released := IdempotencyKey{Scope: uint64(app.adminID), Key: "released"}
	app.store.ClaimIdempotencyKey(context.Background(), &released, hash[:])
	if err := app.store.ReleaseIdempotencyKey(context.Background(), released); err != nil {
		t.Fatal(err)
	}
	again := IdempotencyKey{Scope: uint64(app.adminID), Key: "released"}
	if stored, err := app.store.ClaimIdempotencyKey(context.Background(), &again, hash[:]); err != nil || stored != nil {
		t.Errorf("claim after release: %v %v", stored, err)
	}

	// A first request that outlived its claim (a retry took over) can
	// neither record its answer nor release the key.
	mustExec(t, app, "UPDATE idempotency_keys SET created_at = NOW(6) - INTERVAL 2 MINUTE WHERE idem_key = 'released'")
	takeover := IdempotencyKey{Scope: uint64(app.adminID), Key: "released"}
	if stored, err := app.store.ClaimIdempotencyKey(context.Background(), &takeover, hash[:]); err != nil || stored != nil {
		t.Fatalf("takeover: %v %v", stored, err)
	}
	if err := app.store.CompleteIdempotencyKey(context.Background(), again, RecordedAnswer{Status: 409, ContentType: "application/problem+json", Body: []byte("{}")}); err != ErrClaimLost {
		t.Errorf("the superseded request recorded its answer: %v", err)
	}
	app.store.ReleaseIdempotencyKey(context.Background(), again)
	var status sql.NullInt64
	var rows int
	app.db.QueryRow("SELECT COUNT(*), MAX(status) FROM idempotency_keys WHERE idem_key = 'released'").Scan(&rows, &status)
	if rows != 1 || status.Valid {
		t.Errorf("after the superseded request: %d rows, status %v; want the new claim untouched", rows, status)
	}
}

// TestNoDuplicateCreatesOnRetry: many retries of one create at once make
// exactly one user; every answer is its 201, replayed, or 409 "still
// running".
func TestNoDuplicateCreatesOnRetry(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	for round := range 3 {
		body := fmt.Sprintf(`{"username":"retry%d","email":"retry%d@example.com","password":"rq7-tz4w"}`, round, round)
		key := fmt.Sprintf("retry-round-%d", round)
		const clients = 10
		recs := make([]*struct {
			code     int
			body     string
			replayed string
		}, clients)
		var wg sync.WaitGroup
		for i := range clients {
			wg.Go(func() {
				rec := app.do("POST", "/api/v1/users", body, "Idempotency-Key", key)
				recs[i] = &struct {
					code     int
					body     string
					replayed string
				}{rec.Code, rec.Body.String(), rec.Header().Get("Idempotent-Replayed")}
			})
		}
		wg.Wait()
		var created []string
		for _, r := range recs {
			switch {
			case r.code == http.StatusCreated:
				created = append(created, r.body)
			case r.code != http.StatusConflict:
				t.Errorf("round %d: status %d %s", round, r.code, r.body)
			}
		}
		if len(created) == 0 {
			t.Errorf("round %d: no request answered 201", round)
		}
		for _, b := range created {
			if b != created[0] {
				t.Errorf("round %d: two different 201 bodies", round)
			}
		}
		var n int
		app.db.QueryRow("SELECT COUNT(*) FROM users WHERE username = ?", fmt.Sprintf("retry%d", round)).Scan(&n)
		if n != 1 {
			t.Errorf("round %d: %d users, want exactly 1", round, n)
		}
	}
}
