package main

import (
	"fmt"
	"net/http"
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
	app := newTestApp(t)
	for round := range 25 {
		u, token := app.newUser(fmt.Sprintf("racer%d", round))
		var wg sync.WaitGroup
		var own, role *httpResultWithETag
		wg.Go(func() {
			own = withETag(app.do("PATCH", userPath(u.ID), `{"full_name":"Mine"}`, as(token)...))
		})
		wg.Go(func() {
			role = withETag(app.do("PATCH", userPath(u.ID), `{"role":"admin"}`))
		})
		wg.Wait()
		if role.code != http.StatusOK {
			t.Fatalf("round %d: role change: %d %s", round, role.code, role.body)
		}
		switch own.code {
		case http.StatusOK:
			if own.version >= role.version {
				t.Fatalf("round %d: the user's update (version %d) came after the role change (version %d) that revoked its token",
					round, own.version, role.version)
			}
		case http.StatusUnauthorized:
		default:
			t.Fatalf("round %d: the user's update: %d %s", round, own.code, own.body)
		}
		if code := app.do("GET", "/api/v1/users/me", "", as(token)...).Code; code != http.StatusUnauthorized {
			t.Fatalf("round %d: the token survived the role change: %d", round, code)
		}
	}
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

type httpResultWithETag struct {
	code    int
	body    string
	version int64
}

func withETag(rec interface {
	Result() *http.Response
}) *httpResultWithETag {
	resp := rec.Result()
	defer resp.Body.Close()
	r := &httpResultWithETag{code: resp.StatusCode}
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.Write(buf[:n])
		if err != nil {
			break
		}
	}
	r.body = b.String()
	r.version, _ = strconv.ParseInt(strings.Trim(resp.Header.Get("ETag"), `"`), 10, 64)
	return r
}

// TestLockingUpdateRacesRoleChange: the same race on the locking path (a
// user's own password change, which needs the lock), where the token was
// checked before the lock was taken: it is checked again under it.
func TestLockingUpdateRacesRoleChange(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	for round := range 20 {
		u, token := app.newUser(fmt.Sprintf("slowracer%d", round))
		var wg sync.WaitGroup
		var own, role *httpResultWithETag
		wg.Go(func() {
			own = withETag(app.do("PATCH", userPath(u.ID), `{"password":"brand new password","current_password":"user password"}`, as(token)...))
		})
		wg.Go(func() {
			role = withETag(app.do("PATCH", userPath(u.ID), `{"role":"admin"}`))
		})
		wg.Wait()
		if role.code != http.StatusOK {
			t.Fatalf("round %d: role change: %d %s", round, role.code, role.body)
		}
		if own.code == http.StatusOK && own.version >= role.version {
			t.Fatalf("round %d: the user's change (version %d) came after the role change (version %d) that revoked its token",
				round, own.version, role.version)
		}
		if own.code != http.StatusOK && own.code != http.StatusUnauthorized {
			t.Fatalf("round %d: the user's change: %d %s", round, own.code, own.body)
		}
	}
}
