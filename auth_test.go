package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// as returns the header pair that sends a request with token ("" for none).
func as(token string) []string {
	if token == "" {
		return []string{"Authorization", ""}
	}
	return []string{"Authorization", "Bearer " + token}
}

func TestLogin(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	app.createUser(`{"username":"Lena","email":"Lena@Example.com","password":"passphrase anel"}`)

	rec := app.do("POST", "/api/v1/auth/token", `{"username":"Lena","password":"passphrase anel"}`, as("")...)
	if rec.Code != http.StatusOK {
		t.Fatalf("got %d %s", rec.Code, rec.Body)
	}
	tok := decodeJSON[tokenResponse](t, rec)
	if tok.TokenType != "Bearer" || tok.ExpiresIn != 3600 || !strings.HasPrefix(tok.AccessToken, tokenPrefix) {
		t.Errorf("token response %+v", tok)
	}
	if got := rec.Header().Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control: got %q", got)
	}
	for _, login := range []string{"lena", "LENA@example.COM", " lena@example.com "} {
		if rec := app.do("POST", "/api/v1/auth/token", `{"username":"`+login+`","password":"passphrase anel"}`, as("")...); rec.Code != http.StatusOK {
			t.Errorf("login as %q: got %d", login, rec.Code)
		}
	}
	if rec := app.do("GET", "/api/v1/users/me", "", as(tok.AccessToken)...); rec.Code != http.StatusOK || decodeJSON[userJSON](t, rec).Username != "Lena" {
		t.Errorf("GET /me with the token: %d %s", rec.Code, rec.Body)
	}
	var stored int
	app.db.QueryRow("SELECT COUNT(*) FROM auth_tokens WHERE token_hash = ?", []byte(tok.AccessToken)).Scan(&stored)
	if stored != 0 {
		t.Error("the token is stored in plain text")
	}

	bad := []struct{ name, body string }{
		{"no password", `{"username":"lena"}`},
		{"no username", `{"password":"passphrase anel"}`},
		{"unknown field", `{"username":"lena","password":"passphrase anel","role":"admin"}`},
		{"wrong type", `{"username":"lena","password":rq7-tz4w}`},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			wantProblem(t, app.do("POST", "/api/v1/auth/token", tt.body, as("")...), http.StatusBadRequest)
		})
	}
}

func TestLoginFailuresLookAlike(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	app.createUser(`{"username":"ina","email":"ina@example.com","password":"passphrase ani","is_active":false}`)
	app.createUser(`{"username":"olga","email":"olga@example.com","password":"passphrase aglo"}`)
	attempts := []struct{ name, body string }{
		{"wrong password", `{"username":"olga","password":"not her password"}`},
		{"unknown user", `{"username":"nobody","password":"passphrase aglo"}`},
		{"unknown email", `{"username":"nobody@example.com","password":"passphrase aglo"}`},
		{"inactive user, right password", `{"username":"ina","password":"passphrase ani"}`},
		{"password over 72 bytes", `{"username":"olga","password":"` + strings.Repeat("x", 80) + `"}`},
	}
	var first string
	for _, a := range attempts {
		runs := app.passwords.runs.Load()
		rec := app.do("POST", "/api/v1/auth/token", a.body, as("")...)
		wantProblem(t, rec, http.StatusUnauthorized)
		if rec.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("%s: no WWW-Authenticate", a.name)
		}
		if got := app.passwords.runs.Load() - runs; got != 1 {
			t.Errorf("%s: %d bcrypt runs, want 1 like every other failure", a.name, got)
		}
		if first == "" {
			first = rec.Body.String()
		} else if rec.Body.String() != first {
			t.Errorf("%s: body %s differs from %s", a.name, rec.Body, first)
		}
	}
}

func TestLoginTakesOnlyCanonicalNames(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	app.createUser(`{"username":"alice","email":"alice@example.com","password":"passphrase ecila"}`)
	// The collation would match these to alice; each would get rate-limit
	// allowances of its own.
	for _, login := range []string{"ÁLICE", "ａlice", "álice@example.com", "alicé"} {
		body, _ := json.Marshal(map[string]string{"username": login, "password": "passphrase ecila"})
		wantProblem(t, app.do("POST", "/api/v1/auth/token", string(body), as("")...), http.StatusUnauthorized)
	}
	app.login("ALICE", "passphrase ecila")
	app.login("Alice@Example.com", "passphrase ecila")
}

func TestNoTokenForAPasswordChangedDuringLogin(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	u, _ := app.newUser("paula")
	var oldHash string
	app.db.QueryRow("SELECT password_hash FROM users WHERE id = ?", u.ID).Scan(&oldHash)
	// The login checked the old password; the password changes before the
	// token is stored.
	app.do("PATCH", userPath(u.ID), `{"password":"a brand new password"}`)
	token, hash := newToken()
	if err := app.store.CreateToken(context.Background(), u.ID, oldHash, hash, time.Hour); err != ErrUnauthenticated {
		t.Fatalf("a token for the old password: %v", err)
	}
	wantProblem(t, app.do("GET", "/api/v1/users/me", "", as(token)...), http.StatusUnauthorized)
}

func TestLoginRateLimits(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	app.createUser(`{"username":"pia","email":"pia@example.com","password":"passphrase aip"}`)
	wrong := `{"username":"pia","password":"wrong password"}`
	for i := range loginFailuresPerPair {
		if rec := app.do("POST", "/api/v1/auth/token", wrong, as("")...); rec.Code != http.StatusUnauthorized {
			t.Fatalf("failure %d: got %d", i+1, rec.Code)
		}
	}
	runs := app.passwords.runs.Load()
	for _, body := range []string{wrong, `{"username":"PIA","password":"passphrase aip"}`} {
		rec := app.do("POST", "/api/v1/auth/token", body, as("")...)
		wantProblem(t, rec, http.StatusTooManyRequests)
		if secs, err := strconv.Atoi(rec.Header().Get("Retry-After")); err != nil || secs < 1 || secs > 60 {
			t.Errorf("Retry-After: %q", rec.Header().Get("Retry-After"))
		}
	}
	if got := app.passwords.runs.Load(); got != runs {
		t.Errorf("blocked attempts ran bcrypt %d times", got-runs)
	}
	// Other names from the same address still get in, up to the address limit.
	if rec := app.do("POST", "/api/v1/auth/token", `{"username":"root_admin","password":"admin password"}`, as("")...); rec.Code != http.StatusOK {
		t.Errorf("another user from the same address: got %d", rec.Code)
	}
	for i := loginFailuresPerPair; i < loginFailuresPerAddr; i++ {
		app.do("POST", "/api/v1/auth/token", fmt.Sprintf(`{"username":"guess%d","password":"rq7-tz4w"}`, i), as("")...)
	}
	wantProblem(t, app.do("POST", "/api/v1/auth/token", `{"username":"root_admin","password":"admin password"}`, as("")...), http.StatusTooManyRequests)
}

func TestFailureLimiterWindow(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newAttemptLimiter(2, time.Minute)
	l.now = func() time.Time { return now }
	l.add("k")
	now = now.Add(30 * time.Second)
	l.add("k")
	if wait, blocked := l.blocked("k"); !blocked || wait != 30*time.Second {
		t.Errorf("got %v %v, want blocked for 30s", wait, blocked)
	}
	now = now.Add(31 * time.Second)
	if _, blocked := l.blocked("k"); blocked {
		t.Error("still blocked after the first failure left the window")
	}
}

// TestLimiterSprayLiftsNoBlock: a spray of other keys that fills a
// limiter forgets keys to make room, but never one at its limit (an
// account's hourly bound, the attack's target), and keeps most of the
// others, so sweeps stay rare.
func TestLimiterSprayLiftsNoBlock(t *testing.T) {
	t.Parallel()
	l := newAttemptLimiter(3, time.Hour)
	for range 3 {
		l.add("account:victim")
	}
	sweeps := 0
	for i := range maxLimiterKeys + 10 {
		if len(l.attempts) >= maxLimiterKeys {
			sweeps++
		}
		if _, _, ok := l.reserve("name:spray-" + strconv.Itoa(i)); !ok {
			t.Fatalf("spray key %d refused", i)
		}
	}
	if _, blocked := l.blocked("account:victim"); !blocked {
		t.Error("a spray of other keys lifted the block on the victim")
	}
	if sweeps > 1 {
		t.Errorf("%d sweeps for one bound's worth of new keys, want at most 1", sweeps)
	}
	if n := len(l.attempts); n > maxLimiterKeys || n < maxLimiterKeys/2 {
		t.Errorf("%d keys kept after the spray, want between half the bound and the bound", n)
	}
}

func TestEveryUserRouteNeedsAToken(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	wellFormedUnknown, _ := newToken()
	headers := map[string]string{
		"no header":           "",
		"empty bearer":        "Bearer ",
		"basic scheme":        "Basic cm9vdDpwYXNz",
		"not a token":         "Bearer abc.def.ghi",
		"truncated token":     "Bearer " + app.adminToken[:len(app.adminToken)-1],
		"token with padding":  "Bearer " + app.adminToken[:len(app.adminToken)-1] + "=",
		"well-formed unknown": "Bearer " + wellFormedUnknown,
	}
	routes := []struct{ method, path, body string }{
		{"GET", "/api/v1/users", ""},
		{"GET", "/api/v1/users/", ""},
		{"POST", "/api/v1/users", `{"username":"x12","email":"x12@example.com","password":"rq7-tz4w"}`},
		{"GET", "/api/v1/users/1", ""},
		{"GET", "/api/v1/users/me", ""},
		{"PUT", "/api/v1/users/1", `{"full_name":"x"}`},
		{"PATCH", "/api/v1/users/1", `{"full_name":"x"}`},
		{"DELETE", "/api/v1/users/1", ""},
		{"POST", "/api/v1/auth/logout", ""},
	}
	for name, header := range headers {
		for _, route := range routes {
			t.Run(name+" "+route.method+" "+route.path, func(t *testing.T) {
				rec := app.do(route.method, route.path, route.body, "Authorization", header)
				wantProblem(t, rec, http.StatusUnauthorized)
				if !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("WWW-Authenticate: %q", rec.Header().Get("WWW-Authenticate"))
				}
			})
		}
	}
	if rec := app.do("GET", "/health", "", as("")...); rec.Code != http.StatusOK {
		t.Errorf("/health without a token: got %d", rec.Code)
	}
	if rec := app.do("GET", "/api/v1/users", "", "Authorization", "bearer "+app.adminToken); rec.Code != http.StatusOK {
		t.Errorf("the scheme is case-insensitive: got %d", rec.Code)
	}
}

// TestExpiredToken: a token lives exactly TOKEN_TTL from its creation,
// and is refused from the moment it expires. The expiry is moved with SQL
// rather than waited for, so a busy machine cannot make the test lie.
func TestExpiredToken(t *testing.T) {
	t.Parallel()
	const ttl = 90 * time.Minute
	app := newTestApp(t, func(c *Config) { c.TokenTTL = ttl })
	u, token := app.newUser("quinn")
	if rec := app.do("GET", "/api/v1/users/me", "", as(token)...); rec.Code != http.StatusOK {
		t.Fatalf("fresh token: got %d", rec.Code)
	}
	var lifetime int64
	if err := app.db.QueryRow("SELECT TIMESTAMPDIFF(MICROSECOND, created_at, expires_at) FROM auth_tokens WHERE user_id = ?", u.ID).Scan(&lifetime); err != nil {
		t.Fatal(err)
	}
	if got := time.Duration(lifetime) * time.Microsecond; got != ttl {
		t.Errorf("the token lives %v, want TOKEN_TTL %v", got, ttl)
	}
	if _, err := app.db.Exec("UPDATE auth_tokens SET expires_at = NOW(6) WHERE user_id = ?", u.ID); err != nil {
		t.Fatal(err)
	}
	wantProblem(t, app.do("GET", "/api/v1/users/me", "", as(token)...), http.StatusUnauthorized)
}

func TestTokensDieWhenTheyShould(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	alive := func(token string) bool {
		return app.do("GET", "/api/v1/users/me", "", as(token)...).Code == http.StatusOK
	}
	tests := []struct {
		name string
		kill func(id int64, token string)
	}{
		{"logout", func(_ int64, token string) {
			if rec := app.do("POST", "/api/v1/auth/logout", "", as(token)...); rec.Code != http.StatusNoContent {
				t.Errorf("logout: got %d %s", rec.Code, rec.Body)
			}
		}},
		{"own password change", func(id int64, token string) {
			rec := app.do("PATCH", userPath(id), `{"password":"brand new password","current_password":"user password"}`, as(token)...)
			if rec.Code != http.StatusOK {
				t.Errorf("password change: got %d %s", rec.Code, rec.Body)
			}
		}},
		{"password set by an admin", func(id int64, _ string) { app.do("PATCH", userPath(id), `{"password":"admin set this"}`) }},
		{"deactivation", func(id int64, _ string) { app.do("PATCH", userPath(id), `{"is_active":false}`) }},
		{"role change", func(id int64, _ string) { app.do("PATCH", userPath(id), `{"role":"admin"}`) }},
		{"deletion", func(id int64, _ string) { app.do("DELETE", userPath(id), "") }},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, token := app.newUser(fmt.Sprintf("victim%d", i))
			other := app.login(u.Username, "user password")
			if !alive(token) || !alive(other) {
				t.Fatal("fresh tokens do not work")
			}
			tt.kill(u.ID, token)
			if alive(token) {
				t.Errorf("the token still works after %s", tt.name)
			}
			if tt.name == "logout" && !alive(other) {
				t.Error("logout killed the user's other token too")
			}
			if tt.name != "logout" && alive(other) {
				t.Errorf("another token of the user still works after %s", tt.name)
			}
		})
	}
	t.Run("a full_name change keeps tokens", func(t *testing.T) {
		u, token := app.newUser("keeper")
		app.do("PATCH", userPath(u.ID), `{"full_name":"Still Here"}`)
		if !alive(token) {
			t.Error("a harmless change revoked the token")
		}
	})
}

func TestOrdinaryUserDoors(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	me, token := app.newUser("rita")
	other, _ := app.newUser("sam")
	self := as(token)
	tests := []struct {
		name, method, path, body string
		wantStatus               int
		wantFields               []string
	}{
		{"read self", "GET", userPath(me.ID), "", 200, nil},
		{"read me", "GET", "/api/v1/users/me", "", 200, nil},
		{"read another", "GET", userPath(other.ID), "", 403, nil},
		{"read a missing id", "GET", userPath(other.ID + 100), "", 403, nil},
		{"read the admin", "GET", userPath(app.adminID), "", 403, nil},
		{"list", "GET", "/api/v1/users", "", 403, nil},
		{"create", "POST", "/api/v1/users", `{"username":"new1","email":"new1@example.com","password":"rq7-tz4w"}`, 403, nil},
		{"change another", "PATCH", userPath(other.ID), `{"full_name":"x"}`, 403, nil},
		{"replace another", "PUT", userPath(other.ID), `{"full_name":"x"}`, 403, nil},
		{"change a missing id", "PATCH", userPath(other.ID + 100), `{"full_name":"x"}`, 403, nil},
		{"delete another", "DELETE", userPath(other.ID), "", 403, nil},
		{"delete self", "DELETE", userPath(me.ID), "", 403, nil},
		{"make self admin", "PATCH", userPath(me.ID), `{"role":"admin"}`, 403, []string{"role"}},
		{"send back own role unchanged", "PATCH", "/api/v1/users/me", `{"role":"user","is_active":true}`, 200, nil},
		{"activate self", "PATCH", "/api/v1/users/me", `{"is_active":false,"full_name":"x"}`, 403, []string{"is_active"}},
		{"deactivate self", "PATCH", userPath(me.ID), `{"is_active":false}`, 403, []string{"is_active"}},
		{"set id", "PATCH", userPath(me.ID), `{"id":1}`, 400, []string{"id"}},
		{"set password_hash", "PATCH", userPath(me.ID), `{"password_hash":"$2a$04$x"}`, 400, []string{"password_hash"}},
		{"only created_at: nothing to change", "PATCH", userPath(me.ID), `{"created_at":"2000-01-01T00:00:00Z"}`, 400, []string{"body"}},
		{"created_at not a string", "PATCH", userPath(me.ID), `{"created_at":1,"full_name":"x"}`, 400, []string{"created_at"}},
		{"new password without the current one", "PATCH", userPath(me.ID), `{"password":"another password"}`, 400, []string{"current_password"}},
		{"new password with a wrong current one", "PATCH", userPath(me.ID), `{"password":"another password","current_password":"wrong one"}`, 400, []string{"current_password"}},
		{"current password alone", "PATCH", userPath(me.ID), `{"current_password":"user password"}`, 400, []string{"current_password"}},
		{"password equal to own username", "PATCH", userPath(me.ID), `{"password":"RITA5678","current_password":"user password","username":"rita5678"}`, 400, []string{"password"}},
		{"password equal to stored email", "PATCH", userPath(me.ID), `{"password":"rita@example.com","current_password":"user password"}`, 400, []string{"password"}},
		{"change own email without the current password", "PATCH", "/api/v1/users/me", `{"email":"rita2@example.com"}`, 400, []string{"current_password"}},
		{"change own email with a wrong current password", "PATCH", "/api/v1/users/me", `{"email":"rita2@example.com","current_password":"wrong one"}`, 400, []string{"current_password"}},
		{"change own name and email", "PATCH", "/api/v1/users/me", `{"username":"Rita2","email":"rita2@example.com","full_name":"Rita","current_password":"user password"}`, 200, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := app.do(tt.method, tt.path, tt.body, self...)
			if tt.wantStatus == http.StatusOK {
				if rec.Code != http.StatusOK {
					t.Fatalf("got %d %s", rec.Code, rec.Body)
				}
				return
			}
			wantProblem(t, rec, tt.wantStatus, tt.wantFields...)
		})
	}
	got := decodeJSON[userJSON](t, app.do("GET", userPath(me.ID), ""))
	if got.Role != "user" || !got.IsActive || got.Username != "Rita2" {
		t.Errorf("after all that: %+v", got)
	}
	rec := app.do("PATCH", "/api/v1/users/me", `{"password":"brand new password","current_password":"user password"}`, self...)
	if rec.Code != http.StatusOK {
		t.Fatalf("own password change: got %d %s", rec.Code, rec.Body)
	}
	app.login("Rita2", "brand new password")
}

func TestLastAdminRules(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	me := userPath(app.adminID)
	wantProblem(t, app.do("PATCH", me, `{"role":"user"}`), http.StatusConflict)
	wantProblem(t, app.do("PATCH", me, `{"is_active":false}`), http.StatusConflict)
	wantProblem(t, app.do("DELETE", me, ""), http.StatusForbidden)
	wantProblem(t, app.do("DELETE", "/api/v1/users/me", ""), http.StatusForbidden)
	if err := app.store.DeleteUser(context.Background(), app.adminID, VersionMatch{}, Actor{Type: ActorSystem}, nil); err != ErrLastAdmin {
		t.Errorf("store delete of the last admin: got %v, want ErrLastAdmin", err)
	}
	inactive := app.createUser(`{"username":"sleepy","email":"sleepy@example.com","password":"rq7-tz4w","role":"admin","is_active":false}`)
	wantProblem(t, app.do("PATCH", me, `{"role":"user"}`), http.StatusConflict) // an inactive admin does not count
	if rec := app.do("PATCH", userPath(inactive.ID), `{"role":"user"}`); rec.Code != http.StatusOK {
		t.Errorf("demoting an inactive admin: got %d", rec.Code)
	}

	second := app.createUser(`{"username":"deputy","email":"deputy@example.com","password":"passphrase ytuped","role":"admin"}`)
	if rec := app.do("PATCH", me, `{"full_name":"Still admin","role":"admin"}`); rec.Code != http.StatusOK {
		t.Errorf("keeping one's role: got %d", rec.Code)
	}
	deputyToken := app.login("deputy", "passphrase ytuped")
	if rec := app.do("PATCH", me, `{"role":"user"}`, as(deputyToken)...); rec.Code != http.StatusOK {
		t.Fatalf("demoting one of two admins: got %d %s", rec.Code, rec.Body)
	}
	wantProblem(t, app.do("DELETE", userPath(second.ID), "", as(deputyToken)...), http.StatusForbidden)
	wantProblem(t, app.do("PATCH", userPath(second.ID), `{"is_active":false}`, as(deputyToken)...), http.StatusConflict)
}

func TestConcurrentDemotionsKeepAnAdmin(t *testing.T) {
	t.Parallel()
	for round := range 5 {
		app := newTestApp(t)
		other := app.createUser(fmt.Sprintf(`{"username":"twin%d","email":"twin%d@example.com","password":"twin password","role":"admin"}`, round, round))
		otherToken := app.login(other.Username, "twin password")
		var wg sync.WaitGroup
		codes := make([]int, 2)
		wg.Go(func() { codes[0] = app.do("PATCH", userPath(other.ID), `{"role":"user"}`).Code })
		wg.Go(func() {
			codes[1] = app.do("PATCH", userPath(app.adminID), `{"is_active":false}`, as(otherToken)...).Code
		})
		wg.Wait()
		t.Logf("round %d: %v", round, codes)
		var admins int
		app.db.QueryRow("SELECT COUNT(*) FROM users WHERE role = 'admin' AND is_active").Scan(&admins)
		// Each 200 removed one of the two admins, and nothing else did (a
		// 503 under load changed nothing); at most one may succeed.
		want := 2 - tally(codes)[http.StatusOK]
		if want < 1 || admins != want {
			t.Fatalf("round %d: %d active admins after concurrent demotions %v, want %d (and never 0)", round, admins, codes, max(want, 1))
		}
		for _, code := range codes {
			if code != http.StatusOK && code != http.StatusConflict && code != http.StatusServiceUnavailable && code != http.StatusUnauthorized {
				t.Errorf("round %d: unexpected status %d", round, code)
			}
		}
	}
}

func TestSignup(t *testing.T) {
	t.Parallel()
	closed := newTestApp(t)
	wantProblem(t, closed.do("POST", "/api/v1/users", `{"username":"newbie","email":"newbie@example.com","password":"rq7-tz4w"}`, as("")...), http.StatusUnauthorized)

	open := newTestApp(t, func(c *Config) { c.AllowSignup = true })
	rec := open.do("POST", "/api/v1/users", `{"username":"newbie","email":"newbie@example.com","password":"rq7-tz4w","role":"user","is_active":true}`, as("")...)
	if rec.Code != http.StatusCreated {
		t.Fatalf("sign-up: got %d %s", rec.Code, rec.Body)
	}
	if u := decodeJSON[userJSON](t, rec); u.Role != "user" || !u.IsActive {
		t.Errorf("signed up as %+v", u)
	}
	wantProblem(t, open.do("POST", "/api/v1/users", `{"username":"boss2","email":"boss2@example.com","password":"rq7-tz4w","role":"admin"}`, as("")...), http.StatusForbidden, "role")
	wantProblem(t, open.do("POST", "/api/v1/users", `{"username":"off2","email":"off2@example.com","password":"rq7-tz4w","is_active":false}`, as("")...), http.StatusForbidden, "is_active")
	wantProblem(t, open.do("POST", "/api/v1/users", `{"username":"bad2","email":"bad2@example.com","password":"rq7-tz4w"}`, "Authorization", "Bearer nonsense"), http.StatusUnauthorized)
	_, userToken := open.newUser("member")
	wantProblem(t, open.do("POST", "/api/v1/users", `{"username":"friend","email":"friend@example.com","password":"rq7-tz4w"}`, as(userToken)...), http.StatusForbidden)
	if rec := open.do("POST", "/api/v1/users", `{"username":"boss3","email":"boss3@example.com","password":"rq7-tz4w","role":"admin"}`); rec.Code != http.StatusCreated {
		t.Errorf("an admin creating an admin with sign-up on: got %d", rec.Code)
	}
}

func TestPasswordEqualToUsernameOrEmail(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	wantProblem(t, app.do("POST", "/api/v1/users", `{"username":"tessa123","email":"t@example.com","password":"TESSA123"}`), http.StatusBadRequest, "password")
	wantProblem(t, app.do("POST", "/api/v1/users", `{"username":"tessa","email":"tessa@example.com","password":"Tessa@Example.com"}`), http.StatusBadRequest, "password")
	u := app.createUser(`{"username":"tessa","email":"tessa@example.com","password":"rq7-tz4w"}`)
	wantProblem(t, app.do("PATCH", userPath(u.ID), `{"password":"tessa@example.com"}`), http.StatusBadRequest, "password")
}

func TestBootstrapAdmin(t *testing.T) {
	t.Parallel()
	app := newTestApp(t) // bootstraps root_admin
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	cfg := testConfig()
	cfg.AdminUsername, cfg.AdminEmail, cfg.AdminPassword = "second_boss", "second@example.com", "second password"
	if err := bootstrapAdmin(context.Background(), app.store, app.passwords, cfg, logger); err != nil {
		t.Fatal(err)
	}
	var n int
	app.db.QueryRow("SELECT COUNT(*) FROM users WHERE role = 'admin'").Scan(&n)
	if n != 1 || !strings.Contains(logs.String(), "not needed") {
		t.Errorf("with an active admin: %d admins; log %s", n, logs)
	}

	app.db.Exec("UPDATE users SET is_active = FALSE WHERE id = ?", app.adminID)
	if err := bootstrapAdmin(context.Background(), app.store, app.passwords, cfg, logger); err != nil {
		t.Fatal(err)
	}
	app.db.QueryRow("SELECT COUNT(*) FROM users WHERE role = 'admin' AND is_active").Scan(&n)
	if n != 1 || !strings.Contains(logs.String(), `"msg":"bootstrap admin created"`) {
		t.Errorf("with no active admin: %d active admins; log %s", n, logs)
	}
	if strings.Contains(logs.String(), "second password") {
		t.Error("the log holds the password")
	}
	app.login("second_boss", "second password")
}

func TestBusyHasherAnswers503(t *testing.T) {
	t.Parallel()
	h, err := newPasswordHasher(4, 1, 0, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	started := make(chan struct{})
	go h.do(context.Background(), func() { close(started); <-release }, nil)
	<-started
	if _, err := h.Hash(context.Background(), "rq7-tz4w"); !errors.Is(err, ErrBusy) {
		t.Errorf("with the only worker busy and no queue: got %v, want ErrBusy", err)
	}
	close(release)
}

// TestHasherShareQueuesASourcesBurst: a source past its share of the
// bcrypt pool waits for its own jobs instead of being turned away, so an
// admin's burst of creates all succeed; another source still gets a
// worker meanwhile.
func TestHasherShareQueuesASourcesBurst(t *testing.T) {
	t.Parallel()
	h, err := newPasswordHasher(4, 1, 7, 5*time.Second) // capacity 8: a share of 2
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	var wg sync.WaitGroup
	errs := make([]error, 10)
	for i := range errs {
		wg.Go(func() { _, errs[i] = h.Hash(context.Background(), "a long password", "user:1") })
	}
	_, other := h.Hash(context.Background(), "a long password", "203.0.113.9")
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("job %d of the burst: %v", i, err)
		}
	}
	if other != nil {
		t.Errorf("another source during the burst: %v", other)
	}
}
