package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestEventFeedQueryRulesAreTheList: the feed parses its query string by
// the list's rule (requestQuery): a pair it cannot parse, such as
// "user_id=2;", is a 400, never dropped, which would widen the answer to
// everyone's events.
func TestEventFeedQueryRulesAreTheList(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	bob, _ := app.newUser("bob")
	app.newUser("carol")
	app.waitSequenced()
	for _, path := range []string{
		fmt.Sprintf("/api/v1/events?user_id=%d;", bob.ID),
		fmt.Sprintf("/api/v1/events?user_id=%d;actor_id=1", bob.ID),
		"/api/v1/events?type=%zz",
		fmt.Sprintf("/api/v1/users/%d/events?per_page=1;", bob.ID),
		"/api/v1/users?per_page=1;", // the list, for comparison
	} {
		wantProblem(t, app.do("GET", path, ""), http.StatusBadRequest, "query")
	}
	page := app.eventsPage("/api/v1/events", "user_id", fmt.Sprint(bob.ID))
	if len(page.Items) != 1 || page.Items[0].UserID != bob.ID {
		t.Errorf("bob's events: %+v", page.Items)
	}
}

// TestForwardedHopForms: a trusted proxy's X-Forwarded-For entry may
// carry a port, and an IPv6 address may be bracketed; each is the
// client's address, not a reason to fall back to the proxy's.
func TestForwardedHopForms(t *testing.T) {
	t.Parallel()
	proxies := trustedProxies{netip.MustParsePrefix("127.0.0.1/32")}
	for _, tc := range []struct{ header, want string }{
		{"10.9.9.9:1234", "10.9.9.9"},
		{"10.9.9.9", "10.9.9.9"},
		{" 10.9.9.9:1234 ", "10.9.9.9"},
		{"[2001:db8::1]:443", "2001:db8::1"},
		{"[2001:db8::1]", "2001:db8::1"},
		{"2001:db8::1", "2001:db8::1"},
		{"[::ffff:192.0.2.7]:80", "192.0.2.7"},
		{"203.0.113.9, 10.9.9.9:1234", "10.9.9.9"},
		{"10.9.9.9:1234, 127.0.0.1:9", "10.9.9.9"},
		// What does not parse stops at the last trustworthy hop.
		{"[10.9.9.9]", "127.0.0.1"},
		{"10.9.9.9:port", "127.0.0.1"},
		{"[2001:db8::1", "127.0.0.1"},
		{"unknown", "127.0.0.1"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = "127.0.0.1:5000"
		r.Header.Set("X-Forwarded-For", tc.header)
		if got := proxies.clientOf(r); got != tc.want {
			t.Errorf("X-Forwarded-For %q: client %q, want %q", tc.header, got, tc.want)
		}
	}
}

// TestForwardedPortDoesNotLockOutEveryone: behind a proxy that writes
// ip:port, one client's failed sign-ins lock out that client only.
func TestForwardedPortDoesNotLockOutEveryone(t *testing.T) {
	t.Parallel()
	app := newTestApp(t, func(cfg *Config) {
		cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	try := func(forwarded, username, password string) int {
		return app.do("POST", "/api/v1/auth/token", fmt.Sprintf(`{"username":%q,"password":%q}`, username, password),
			"Authorization", "", remoteAddr, "127.0.0.1:5000", "X-Forwarded-For", forwarded).Code
	}
	for i := range loginFailuresPerAddr {
		try(fmt.Sprintf("10.9.9.9:%d", 1000+i), fmt.Sprintf("guess%d", i), "wrong password")
	}
	if code := try("10.9.9.9:4321", testAdminName, testAdminPassword); code != http.StatusTooManyRequests {
		t.Errorf("the guessing client: got %d, want 429", code)
	}
	if code := try("[2001:db8::7]:443", testAdminName, testAdminPassword); code != http.StatusOK {
		t.Errorf("another client of the proxy: got %d, want 200", code)
	}
}

// TestInvisibleCharactersRefusedInNames: a name that shows as another
// ("ad\u200bmin" looks like "admin") is a 400 naming the field, on
// create and on update; the joiners some scripts need, and variation
// selectors, stay.
func TestInvisibleCharactersRefusedInNames(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	bob, _ := app.newUser("bob")
	invisible := map[string]string{
		"zero-width space": "\u200b", "BOM": "\ufeff", "soft hyphen": "\u00ad", "word joiner": "\u2060",
		"tag letter": "\U000E0061", "cancel tag": "\U000E007F", "Hangul filler": "\u3164",
		"combining grapheme joiner": "\u034f", "line separator": "\u2028", "Mongolian vowel separator": "\u180e",
		"invisible times": "\u2062",
	}
	for name, c := range invisible {
		fullName := jsonString("Ad" + c + "min")
		body := fmt.Sprintf(`{"username":"u%s","email":"u%s@example.com","password":"user password","full_name":%s}`,
			randomHex(4), randomHex(4), fullName)
		p := wantProblem(t, app.do("POST", "/api/v1/users", body), http.StatusBadRequest, "full_name")
		if !strings.Contains(p.Errors[0].Message, "invisible") {
			t.Errorf("%s: message %q", name, p.Errors[0].Message)
		}
		wantProblem(t, app.do("PATCH", userPath(bob.ID), `{"full_name":`+fullName+`}`), http.StatusBadRequest, "full_name")
		wantProblem(t, app.do("PATCH", userPath(bob.ID), `{"username":`+jsonString("bo"+c+"b")+`}`), http.StatusBadRequest, "username")
		wantProblem(t, app.do("POST", "/api/v1/users", fmt.Sprintf(`{"username":%s,"email":"x%s@example.com","password":"user password"}`,
			jsonString("ev"+c+"e"), randomHex(4))), http.StatusBadRequest, "username")
	}
	for _, fullName := range []string{"نامه\u200cای", "क्\u200dष", "Snow \u2603\ufe0f", "Zoë Ünal"} {
		if rec := app.do("PATCH", userPath(bob.ID), `{"full_name":`+jsonString(fullName)+`}`); rec.Code != http.StatusOK {
			t.Errorf("full name %q: %d %s", fullName, rec.Code, rec.Body)
		}
	}
	var stored int
	if err := app.db.QueryRow("SELECT COUNT(*) FROM users WHERE full_name LIKE 'Ad%min'").Scan(&stored); err != nil || stored != 0 {
		t.Errorf("names stored with invisible characters: %d (%v)", stored, err)
	}
}

// jsonString is s as a JSON string.
func jsonString(s string) string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// TestPasswordPolicy: whitespace alone, the username or email (or its
// local part) anywhere inside, ignoring case, and a blocklist entry with
// digits or symbols added or taken away are refused; passphrases and
// random strings pass.
func TestPasswordPolicy(t *testing.T) {
	t.Parallel()
	alice, email := "Alice_W", "alice.wong@example.com"
	for _, tc := range []struct {
		password string
		want     string // a word of the message, or "" for none
	}{
		{"        ", "whitespace"},
		{"\t\t \n    ", "whitespace"},
		{"  alice_w  ", "username"},
		{"ALICE_W2024!", "username"},
		{"my alice.wong@example.com", "username or email"},
		{"xx-Alice.Wong-xx", "email"},
		{"iloveyou12", "common"},
		{"Summer2024", "common"},
		{"admin123", "common"},
		{"!!admin!!2024", "common"},
		{"P@ssword1", "common"},
		{"qwer1234!!", "common"},
		{"12345678!", "common"},
		{"password", "common"},
		{"correct horse battery", ""},
		{"user password", ""},
		{"admin password", ""},
		{"Tr0ub4dor&3", ""},
		{"rq7-tz4w", ""},
		{"ab-7720-x9!k", ""},
		{"wonglaws", ""}, // not the local part, nor the username
	} {
		got := passwordProblem(tc.password, &alice, &email)
		if tc.want == "" && got != "" || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("password %q: problem %q, want one about %q", tc.password, got, tc.want)
		}
	}
}

// TestPasswordPolicyOverHTTP: the policy holds on create, sign-up and a
// change of one's own password, as a 400 naming password.
func TestPasswordPolicyOverHTTP(t *testing.T) {
	t.Parallel()
	app := newTestApp(t, func(cfg *Config) { cfg.AllowSignup = true })
	for _, password := range []string{"        ", "iloveyou12", "Summer2024", "admin123", "  mallory  ", "mallory.x@1"} {
		body := fmt.Sprintf(`{"username":"mallory","email":"mallory@example.com","password":%s}`, jsonString(password))
		wantProblem(t, app.do("POST", "/api/v1/users", body), http.StatusBadRequest, "password")
		wantProblem(t, app.do("POST", "/api/v1/users", body, "Authorization", ""), http.StatusBadRequest, "password")
	}
	bob, token := app.newUser("bob")
	for _, password := range []string{"bob bob bob", "bob@example.com!", "Summer2024"} {
		body := fmt.Sprintf(`{"password":%s,"current_password":"user password"}`, jsonString(password))
		wantProblem(t, app.do("PATCH", userPath(bob.ID), body, "Authorization", "Bearer "+token), http.StatusBadRequest, "password")
	}
	body := `{"password":"a long and fine passphrase","current_password":"user password"}`
	if rec := app.do("PATCH", userPath(bob.ID), body, "Authorization", "Bearer "+token); rec.Code != http.StatusOK {
		t.Errorf("a good password: %d %s", rec.Code, rec.Body)
	}
}

// TestAnonymousWritesIndependentOfID: a PUT, PATCH or DELETE with a token
// that is not valid gets the same 401 for a user that exists and for one
// that does not, and is answered before anything reads the user: it does
// not wait for the row's lock, held here by another transaction (before,
// it took the lock itself, and so answered later for an id that exists).
func TestAnonymousWritesIndependentOfID(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	bob, bobToken := app.newUser("bob")
	forged, _ := newToken()
	missing := bob.ID + 1000
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tx, err := app.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "SELECT id FROM users WHERE id = ? FOR UPDATE", bob.ID); err != nil {
		t.Fatal(err)
	}
	requests := []struct{ method, body string }{
		{"PATCH", `{"full_name":"Bob"}`},
		{"PUT", `{"username":"bobby"}`},
		{"PATCH", `{"role":"admin"}`}, // the locking path
		{"DELETE", ""},
	}
	for _, token := range []string{"Bearer " + forged, "Bearer " + bobToken + "x", "Basic Ym9iOmJvYg=="} {
		for _, req := range requests {
			answers := make([]string, 0, 2)
			for _, id := range []int64{bob.ID, missing} {
				done := make(chan *httptest.ResponseRecorder, 1)
				go func() { done <- app.do(req.method, userPath(id), req.body, "Authorization", token) }()
				var rec *httptest.ResponseRecorder
				select {
				case rec = <-done:
				case <-ctx.Done():
					t.Fatalf("%s %s: no answer while the row is locked: the row was read before the token", req.method, userPath(id))
				}
				if rec.Code != http.StatusUnauthorized {
					t.Errorf("%s %s with %.12s: got %d %s, want 401", req.method, userPath(id), token, rec.Code, rec.Body)
				}
				answers = append(answers, fmt.Sprint(rec.Code, rec.Header().Get("WWW-Authenticate"), rec.Body))
			}
			if answers[0] != answers[1] {
				t.Errorf("%s: an existing and a missing id answer differently:\n%s\n%s", req.method, answers[0], answers[1])
			}
		}
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	// The owner's own token still writes, by either path.
	if rec := app.do("PATCH", userPath(bob.ID), `{"full_name":"Bob"}`, "Authorization", "Bearer "+bobToken); rec.Code != http.StatusOK {
		t.Errorf("the owner's PATCH: %d %s", rec.Code, rec.Body)
	}
	if rec := app.do("PATCH", "/api/v1/users/me", `{"full_name":"Bobby"}`, "Authorization", "Bearer "+bobToken); rec.Code != http.StatusOK {
		t.Errorf("the owner's PATCH of me: %d %s", rec.Code, rec.Body)
	}
	if rec := app.do("DELETE", userPath(missing), ""); rec.Code != http.StatusNotFound {
		t.Errorf("the admin's DELETE of a missing id: %d %s", rec.Code, rec.Body)
	}
	if rec := app.do("DELETE", userPath(bob.ID), ""); rec.Code != http.StatusNoContent {
		t.Errorf("the admin's DELETE: %d %s", rec.Code, rec.Body)
	}
}

// TestIdentityChangesLimitedPerUser: a user changes their own username or
// email at most identityChangesPerHour times an hour, probes refused as
// taken (409) included; past that, a 429 with Retry-After, by either
// path, whoever else holds the name. Writes that change neither, an
// admin's changes of the user, and other users are not limited; a keyed
// request refused with 429 runs when retried after the window.
func TestIdentityChangesLimitedPerUser(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	bob, token := app.newUser("bob")
	app.newUser("carol")
	asBob := []string{"Authorization", "Bearer " + token}
	for i := range identityChangesPerHour {
		body, path, want := fmt.Sprintf(`{"username":"bob%d"}`, i), "/api/v1/users/me", http.StatusOK
		switch i % 3 {
		case 1: // a probe of a name that is taken
			body, want = `{"username":"Carol"}`, http.StatusConflict
		case 2: // an email, by id, with the current password
			body, path = fmt.Sprintf(`{"email":"bob%d@example.com","current_password":"user password"}`, i), userPath(bob.ID)
		}
		if rec := app.do("PATCH", path, body, asBob...); rec.Code != want {
			t.Fatalf("change %d, %s: got %d %s, want %d", i+1, body, rec.Code, rec.Body, want)
		}
	}
	for _, body := range []string{`{"username":"root_admin"}`, `{"username":"nobody-has-this"}`,
		`{"email":"carol@example.com","current_password":"user password"}`} {
		rec := app.do("PATCH", "/api/v1/users/me", body, asBob...)
		wantProblem(t, rec, http.StatusTooManyRequests)
		if rec.Header().Get("Retry-After") == "" {
			t.Errorf("%s: 429 without Retry-After", body)
		}
	}
	// A GET-modify-PUT sends both back unchanged (the username in
	// another case is no change either): not counted, not refused.
	me := decodeJSON[userJSON](t, app.do("GET", "/api/v1/users/me", "", asBob...))
	put := app.userBodyWith(bob.ID, map[string]any{"username": strings.ToUpper(me.Username)})
	if rec := app.do("PUT", userPath(bob.ID), put, asBob...); rec.Code != http.StatusOK {
		t.Errorf("an unchanged PUT at the limit: %d %s", rec.Code, rec.Body)
	}
	if rec := app.do("PATCH", userPath(bob.ID), `{"username":"bob-by-admin"}`); rec.Code != http.StatusOK {
		t.Errorf("the admin's change of bob: %d %s", rec.Code, rec.Body)
	}
	_, daveToken := app.newUser("dave")
	if rec := app.do("PATCH", "/api/v1/users/me", `{"username":"dave2"}`, "Authorization", "Bearer "+daveToken); rec.Code != http.StatusOK {
		t.Errorf("another user: %d %s", rec.Code, rec.Body)
	}
	keyed := append([]string{"Idempotency-Key", "rename-" + randomHex(4)}, asBob...)
	wantProblem(t, app.do("PATCH", "/api/v1/users/me", `{"username":"bob-keyed"}`, keyed...), http.StatusTooManyRequests)
	later := time.Now().Add(time.Hour + time.Minute)
	app.server().identityChanges.now = func() time.Time { return later }
	if rec := app.do("PATCH", "/api/v1/users/me", `{"username":"bob-keyed"}`, keyed...); rec.Code != http.StatusOK {
		t.Errorf("the keyed retry an hour later: %d %s", rec.Code, rec.Body)
	}
}
