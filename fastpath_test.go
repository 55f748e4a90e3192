package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// TestFastUpdateRacesRoleChange: a user's own update (the fast path) and
// an admin's role change of that user (the locking path, which revokes the
// user's tokens) race, again and again. Whichever commits first, the
// revoked token never writes after the revocation: when the user's update
// succeeds, its version is below the role change's.
func TestFastUpdateRacesRoleChange(t *testing.T) {
	t.Parallel()
	raceOwnChangeWithRoleChange(t, "racer", 25, `{"full_name":"Mine"}`)
}

// TestLockingUpdateRacesRoleChange: the same race on the locking path (a
// user's own password change, which needs the lock), where the token was
// checked before the lock was taken: it is checked again under it.
func TestLockingUpdateRacesRoleChange(t *testing.T) {
	t.Parallel()
	raceOwnChangeWithRoleChange(t, "slowracer", 20, `{"password":"brand new password","current_password":"user password"}`)
}

// raceOwnChangeWithRoleChange runs, rounds times on a new user each time,
// the user's PATCH of ownBody with their token against an admin's role
// change of that user, and fails if the user's change was applied after
// the role change revoked their token, or if the token survived.
func raceOwnChangeWithRoleChange(t *testing.T, name string, rounds int, ownBody string) {
	t.Helper()
	app := newTestApp(t)
	for round := range rounds {
		u, token := app.newUser(fmt.Sprintf("%s%d", name, round))
		var wg sync.WaitGroup
		var own, role *httptest.ResponseRecorder
		wg.Go(func() { own = app.do("PATCH", userPath(u.ID), ownBody, as(token)...) })
		wg.Go(func() { role = app.do("PATCH", userPath(u.ID), `{"role":"admin"}`) })
		wg.Wait()
		if role.Code != http.StatusOK {
			t.Fatalf("round %d: role change: %d %s", round, role.Code, role.Body)
		}
		switch own.Code {
		case http.StatusOK:
			if ownVersion, roleVersion := versionOf(own), versionOf(role); ownVersion >= roleVersion {
				t.Fatalf("round %d: the user's change (version %d) came after the role change (version %d) that revoked its token",
					round, ownVersion, roleVersion)
			}
		case http.StatusUnauthorized:
		default:
			t.Fatalf("round %d: the user's change: %d %s", round, own.Code, own.Body)
		}
		if code := app.do("GET", "/api/v1/users/me", "", as(token)...).Code; code != http.StatusUnauthorized {
			t.Fatalf("round %d: the token survived the role change: %d", round, code)
		}
	}
}

// versionOf is the version an answer's ETag names.
func versionOf(rec *httptest.ResponseRecorder) int64 {
	v, _ := strconv.ParseInt(strings.Trim(rec.Header().Get("ETag"), `"`), 10, 64)
	return v
}

// TestFastPathAnswersLikeTheLockingPath: the fast path's refusals are the
// locking path's answers, and a failed fast write leaves the connection
// clean for the next request.
func TestFastPathAnswersLikeTheLockingPath(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	alice, aliceToken := app.newUser("fastalice")
	bob, _ := app.newUser("fastbob")
	tests := []struct {
		name, method, path, body string
		headers                  []string
		want                     int
		fields                   []string
	}{
		{"another's id", "PATCH", userPath(bob.ID), `{"full_name":"x"}`, as(aliceToken), 403, nil},
		{"a missing id as a user", "PATCH", userPath(bob.ID + 100), `{"full_name":"x"}`, as(aliceToken), 403, nil},
		{"a missing id as the admin", "PATCH", userPath(bob.ID + 100), `{"full_name":"x"}`, nil, 404, nil},
		{"a revoked-looking token", "PATCH", userPath(alice.ID), `{"full_name":"x"}`, as("usv_" + strings.Repeat("A", 43)), 401, nil},
		{"a taken username", "PATCH", userPath(alice.ID), `{"username":"FASTBOB"}`, nil, 409, []string{"username"}},
		{"a stale If-Match", "PATCH", userPath(alice.ID), `{"full_name":"x"}`, []string{"If-Match", `"999"`}, 412, nil},
		{"own email without the current password", "PATCH", "/api/v1/users/me", `{"email":"new@example.com"}`, as(aliceToken), 400, []string{"current_password"}},
		{"delete another as a user", "DELETE", userPath(bob.ID), "", as(aliceToken), 403, nil},
		{"delete a missing id", "DELETE", userPath(bob.ID + 100), "", nil, 404, nil},
		{"delete with a stale If-Match", "DELETE", userPath(bob.ID), "", []string{"If-Match", `"999"`}, 412, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := app.do(tt.method, tt.path, tt.body, tt.headers...)
			wantProblem(t, rec, tt.want, tt.fields...)
		})
	}
	if rec := app.do("PATCH", userPath(alice.ID), `{"full_name":"After All That"}`); rec.Code != http.StatusOK {
		t.Errorf("after the refusals: %d %s", rec.Code, rec.Body)
	}
	if rec := app.do("DELETE", userPath(bob.ID), ""); rec.Code != http.StatusNoContent {
		t.Errorf("delete: %d %s", rec.Code, rec.Body)
	}
}
