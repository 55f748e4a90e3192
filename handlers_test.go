package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// timestampPattern is the exact form of every timestamp the API returns.
var timestampPattern = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`)

func TestCreateUser(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	rec := app.do("POST", "/api/v1/users",
		`{"username":"  Alice.L-1_ ","email":" Alice@Example.COM ","password":"correct horse","full_name":"  Alice Liddell  "}`)
	if rec.Code != http.StatusCreated {
		t.Fatalf("got %d %s, want 201", rec.Code, rec.Body)
	}
	var fields map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &fields); err != nil {
		t.Fatal(err)
	}
	keys := slices.Sorted(maps.Keys(fields))
	if want := []string{"created_at", "email", "full_name", "id", "is_active", "role", "updated_at", "username"}; !slices.Equal(keys, want) {
		t.Errorf("keys: got %v, want %v", keys, want)
	}
	got := decodeJSON[userJSON](t, rec)
	if got.Username != "Alice.L-1_" || got.Email != "alice@example.com" || got.FullName == nil ||
		*got.FullName != "Alice Liddell" || got.Role != "user" || !got.IsActive {
		t.Errorf("user: got %+v", got)
	}
	if loc := rec.Header().Get("Location"); loc != fmt.Sprintf("/api/v1/users/%d", got.ID) {
		t.Errorf("Location: got %q", loc)
	}
	if got.CreatedAt != got.UpdatedAt || !timestampPattern.MatchString(got.CreatedAt) {
		t.Errorf("timestamps: created %q, updated %q", got.CreatedAt, got.UpdatedAt)
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type: got %q", ct)
	}

	var hash string
	if err := app.db.QueryRow("SELECT password_hash FROM users WHERE id = ?", got.ID).Scan(&hash); err != nil {
		t.Fatal(err)
	}
	if err := bcrypt.CompareHashAndPassword([]byte(hash), []byte("correct horse")); err != nil {
		t.Errorf("stored hash does not verify the password: %v", err)
	}
	if cost, _ := bcrypt.Cost([]byte(hash)); cost != bcrypt.MinCost {
		t.Errorf("bcrypt cost: got %d, want the configured %d", cost, bcrypt.MinCost)
	}

	fetched := app.do("GET", fmt.Sprintf("/api/v1/users/%d", got.ID), "")
	if fetched.Body.String() != rec.Body.String() {
		t.Errorf("GET differs from the create response:\n%s\n%s", fetched.Body, rec.Body)
	}
	for _, leak := range []string{"correct horse", hash, hash[7:29], "password"} {
		if strings.Contains(rec.Body.String(), leak) || strings.Contains(fetched.Body.String(), leak) {
			t.Errorf("a response contains %q", leak)
		}
		if strings.Contains(app.logs.String(), leak) {
			t.Errorf("the log contains %q", leak)
		}
	}
}

func TestCreateUserDefaultsAndOptionalFields(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	tests := []struct {
		name         string
		body         string
		wantFullName *string
		wantRole     string
		wantActive   bool
	}{
		{"defaults", `{"username":"uu1","email":"u1@example.com","password":"rq7-tz4w"}`, nil, "user", true},
		{"null full_name", `{"username":"uu2","email":"u2@example.com","password":"rq7-tz4w","full_name":null}`, nil, "user", true},
		{"blank full_name is null", `{"username":"uu3","email":"u3@example.com","password":"rq7-tz4w","full_name":" \t "}`, nil, "user", true},
		{"admin, inactive", `{"username":"uu4","email":"u4@example.com","password":"rq7-tz4w","role":"admin","is_active":false}`, nil, "admin", false},
		{"unicode full_name", `{"username":"uu5","email":"u5@example.com","password":"rq7-tz4w","full_name":"Zoë 山田 🚀"}`, ptr("Zoë 山田 🚀"), "user", true},
		{"password of 72 bytes", `{"username":"uu6","email":"u6@example.com","password":"` + strings.Repeat("€", 24) + `"}`, nil, "user", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := app.createUser(tt.body)
			if !equalPtr(got.FullName, tt.wantFullName) || got.Role != tt.wantRole || got.IsActive != tt.wantActive {
				t.Errorf("got %+v, want full_name %v, role %s, active %v", got, tt.wantFullName, tt.wantRole, tt.wantActive)
			}
		})
	}
}

func TestCreateUserValidation(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	const ok = `"username":"bob","email":"bob@example.com","password":"rq7-tz4w"`
	tests := []struct {
		name       string
		body       string
		wantFields []string
	}{
		{"empty object", `{}`, []string{"username", "email", "password"}},
		{"username too short", `{"username":"ab","email":"bob@example.com","password":"rq7-tz4w"}`, []string{"username"}},
		{"username too long", `{"username":"` + strings.Repeat("a", 51) + `","email":"bob@example.com","password":"rq7-tz4w"}`, []string{"username"}},
		{"username starts with a dot", `{"username":".bob","email":"bob@example.com","password":"rq7-tz4w"}`, []string{"username"}},
		{"username starts with underscore", `{"username":"_bob","email":"bob@example.com","password":"rq7-tz4w"}`, []string{"username"}},
		{"username with a space", `{"username":"bob smith","email":"bob@example.com","password":"rq7-tz4w"}`, []string{"username"}},
		{"username not ASCII", `{"username":"bøb","email":"bob@example.com","password":"rq7-tz4w"}`, []string{"username"}},
		{"username with a quote", `{"username":"bob'--","email":"bob@example.com","password":"rq7-tz4w"}`, []string{"username"}},
		{"username blank after trim", `{"username":"   ","email":"bob@example.com","password":"rq7-tz4w"}`, []string{"username"}},
		{"email without at", `{"username":"bob","email":"bob.example.com","password":"rq7-tz4w"}`, []string{"email"}},
		{"email with two ats", `{"username":"bob","email":"bob@x@example.com","password":"rq7-tz4w"}`, []string{"email"}},
		{"email with display name", `{"username":"bob","email":"Bob <bob@example.com>","password":"rq7-tz4w"}`, []string{"email"}},
		{"email in angle brackets", `{"username":"bob","email":"<bob@example.com>","password":"rq7-tz4w"}`, []string{"email"}},
		{"email with comment", `{"username":"bob","email":"bob(work)@example.com","password":"rq7-tz4w"}`, []string{"email"}},
		{"email with quoted local part", `{"username":"bob","email":"\"bob smith\"@example.com","password":"rq7-tz4w"}`, []string{"email"}},
		{"email domain without dot", `{"username":"bob","email":"bob@localhost","password":"rq7-tz4w"}`, []string{"email"}},
		{"email with two addresses", `{"username":"bob","email":"bob@example.com, eve@example.com","password":"rq7-tz4w"}`, []string{"email"}},
		{"email with double dot", `{"username":"bob","email":"bob..x@example.com","password":"rq7-tz4w"}`, []string{"email"}},
		{"email domain label with hyphen edge", `{"username":"bob","email":"bob@-example.com","password":"rq7-tz4w"}`, []string{"email"}},
		{"email too long", `{"username":"bob","email":"` + strings.Repeat("a", 60) + "@" + strings.Repeat("b", 190) + `.com","password":"rq7-tz4w"}`, []string{"email"}},
		{"email local part too long", `{"username":"bob","email":"` + strings.Repeat("a", 65) + `@example.com","password":"rq7-tz4w"}`, []string{"email"}},
		{"email not ASCII", `{"username":"bob","email":"bøb@example.com","password":"rq7-tz4w"}`, []string{"email"}},
		{"password too short", `{"username":"bob","email":"bob@example.com","password":"1234567"}`, []string{"password"}},
		{"password of 73 bytes", `{"username":"bob","email":"bob@example.com","password":"` + strings.Repeat("a", 73) + `"}`, []string{"password"}},
		{"password of 25 euro signs (75 bytes)", `{"username":"bob","email":"bob@example.com","password":"` + strings.Repeat("€", 25) + `"}`, []string{"password"}},
		{"full_name too long", `{` + ok + `,"full_name":"` + strings.Repeat("é", 256) + `"}`, []string{"full_name"}},
		{"full_name with a control character", `{` + ok + `,"full_name":"Bob\u0007"}`, []string{"full_name"}},
		{"full_name with a newline inside", `{` + ok + `,"full_name":"Bob\nSmith"}`, []string{"full_name"}},
		{"role unknown", `{` + ok + `,"role":"root"}`, []string{"role"}},
		{"role in other case", `{` + ok + `,"role":"Admin"}`, []string{"role"}},
		{"is_active as a string", `{` + ok + `,"is_active":"yes"}`, []string{"is_active"}},
		{"is_active null", `{` + ok + `,"is_active":null}`, []string{"is_active"}},
		{"username null", `{"username":null,"email":"bob@example.com","password":"rq7-tz4w"}`, []string{"username"}},
		{"username a number", `{"username":42,"email":"bob@example.com","password":"rq7-tz4w"}`, []string{"username"}},
		{"email an object", `{"username":"bob","email":{"a":1},"password":"rq7-tz4w"}`, []string{"email"}},
		{"password an array", `{"username":"bob","email":"bob@example.com","password":["rq7-tz4w"]}`, []string{"password"}},
		{"id cannot be set", `{` + ok + `,"id":7}`, []string{"id"}},
		{"password_hash cannot be set", `{` + ok + `,"password_hash":"$2a$04$abc"}`, []string{"password_hash"}},
		{"created_at cannot be set", `{` + ok + `,"created_at":"2020-01-01T00:00:00Z"}`, []string{"created_at"}},
		{"empty field name (found by FuzzUserBody)", `{` + ok + `,"":""}`, []string{`""`}},
		{"every problem at once", `{"username":"x","email":"nope","password":"short","full_name":"\u0000","role":"god","is_active":1,"extra":true}`,
			[]string{"is_active", "extra", "username", "email", "password", "full_name", "role"}},
		{"injection stays data", `{"username":"bob","email":"x'); DROP TABLE users; --@example.com","password":"rq7-tz4w"}`, []string{"email"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantProblem(t, app.do("POST", "/api/v1/users", tt.body), http.StatusBadRequest, tt.wantFields...)
		})
	}
	if rec := app.do("GET", "/api/v1/users", ""); !strings.Contains(rec.Body.String(), `"total":1,`) {
		t.Errorf("a rejected create wrote a row: %s", rec.Body)
	}
}

func TestRequestBodyProblems(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	valid := `{"username":"bob","email":"bob@example.com","password":"rq7-tz4w"}`
	tests := []struct {
		name        string
		contentType string
		body        string
		wantStatus  int
	}{
		{"malformed JSON", "application/json", `{"username":"bob",}`, 400},
		{"truncated JSON", "application/json", `{"username":"bob"`, 400},
		{"trailing data", "application/json", valid + `{}`, 400},
		{"trailing garbage", "application/json", valid + ` x`, 400},
		{"array instead of object", "application/json", `[` + valid + `]`, 400},
		{"string instead of object", "application/json", `"bob"`, 400},
		{"null body", "application/json", `null`, 400},
		{"empty body", "application/json", ``, 400},
		{"duplicate field", "application/json", `{"username":"bob","username":"admin","email":"bob@example.com","password":"rq7-tz4w"}`, 400},
		{"invalid UTF-8", "application/json", "{\"username\":\"bob\xff\",\"email\":\"bob@example.com\",\"password\":\"rq7-tz4w\"}", 400},
		{"no content type", "", valid, 415},
		{"text/plain", "text/plain", valid, 415},
		{"form", "application/x-www-form-urlencoded", valid, 415},
		{"latin1 charset", "application/json; charset=latin1", valid, 415},
		{"unknown parameter", "application/json; version=2", valid, 415},
		{"garbled content type", "application/json;;;=", valid, 415},
		{"body over the user limit", "application/json", `{"username":"` + strings.Repeat("a", defaultMaxBodyBytes) + `"}`, 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := func() *http.Request {
				r, _ := http.NewRequest("POST", "/api/v1/users", strings.NewReader(tt.body))
				if tt.contentType != "" {
					r.Header.Set("Content-Type", tt.contentType)
				}
				return r
			}
			wantProblem(t, app.send(req()), tt.wantStatus)
		})
	}
	t.Run("charset utf-8 accepted", func(t *testing.T) {
		rec := app.do("POST", "/api/v1/users", valid, "Content-Type", "application/json; charset=UTF-8")
		if rec.Code != http.StatusCreated {
			t.Fatalf("got %d %s", rec.Code, rec.Body)
		}
	})
	t.Run("sign-in body over its limit", func(t *testing.T) {
		rec := app.do("POST", "/api/v1/auth/token", `{"username":"bob","password":"`+strings.Repeat("p", loginMaxBodyBytes)+`"}`)
		if p := wantProblem(t, rec, http.StatusRequestEntityTooLarge); !strings.Contains(p.Detail, strconv.Itoa(loginMaxBodyBytes)) {
			t.Errorf("detail: %q", p.Detail)
		}
	})
	t.Run("body over the limit with unknown length", func(t *testing.T) {
		body := strings.NewReader(`{"full_name":"` + strings.Repeat("a", defaultMaxBodyBytes) + `"}`)
		r, _ := http.NewRequest("PATCH", "/api/v1/users/1", struct{ *strings.Reader }{body})
		r.ContentLength = -1
		r.Header.Set("Content-Type", "application/json")
		wantProblem(t, app.send(r), http.StatusRequestEntityTooLarge)
	})
}

func TestUniquenessIgnoresCase(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	alice := app.createUser(`{"username":"Alice","email":"Alice@Example.com","password":"rq7-tz4w"}`)
	bob := app.createUser(`{"username":"bob","email":"bob@example.com","password":"rq7-tz4w"}`)

	tests := []struct {
		name, method, path, body string
		wantField                string
	}{
		{"create: username in other case", "POST", "/api/v1/users", `{"username":"alice","email":"new@example.com","password":"rq7-tz4w"}`, "username"},
		{"create: same username", "POST", "/api/v1/users", `{"username":"Alice","email":"new@example.com","password":"rq7-tz4w"}`, "username"},
		{"create: email in other case", "POST", "/api/v1/users", `{"username":"carol","email":"ALICE@example.COM","password":"rq7-tz4w"}`, "email"},
		{"update: another's username in other case", "PATCH", userPath(bob.ID), `{"username":"ALICE"}`, "username"},
		{"update: another's email in other case", "PUT", userPath(bob.ID), `{"email":"alice@EXAMPLE.com"}`, "email"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := wantProblem(t, app.do(tt.method, tt.path, tt.body), http.StatusConflict, tt.wantField)
			if !strings.Contains(p.Detail, tt.wantField) {
				t.Errorf("detail %q does not name %s", p.Detail, tt.wantField)
			}
		})
	}
	t.Run("update to own current values, in other case", func(t *testing.T) {
		rec := app.do("PATCH", userPath(alice.ID), `{"username":"ALICE","email":"alice@example.com"}`)
		if rec.Code != http.StatusOK {
			t.Fatalf("got %d %s, want 200", rec.Code, rec.Body)
		}
		if got := decodeJSON[userJSON](t, rec); got.Username != "ALICE" {
			t.Errorf("username: got %q, want the case given, ALICE", got.Username)
		}
	})
}

func TestConcurrentCreatesOfOneUsername(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	const clients = 20
	statuses := make([]int, clients)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			body := fmt.Sprintf(`{"username":"Racer","email":"racer%d@example.com","password":"rq7-tz4w"}`, i)
			if i%2 == 1 {
				body = strings.Replace(body, "Racer", "racer", 1)
			}
			statuses[i] = app.do("POST", "/api/v1/users", body).Code
		})
	}
	wg.Wait()
	if counts := tally(statuses); counts[http.StatusCreated] != 1 || counts[http.StatusConflict] != clients-1 {
		t.Errorf("statuses %v: want exactly one 201 and %d 409s; the service logged:\n%s", statuses, clients-1, warnings(app))
	}
	var rows int
	app.db.QueryRow("SELECT COUNT(*) FROM users WHERE username = 'racer'").Scan(&rows)
	if rows != 1 {
		t.Errorf("rows: got %d, want 1", rows)
	}
}

func TestGetUser(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	u := app.createUser(`{"username":"gina","email":"gina@example.com","password":"rq7-tz4w"}`)
	if rec := app.do("GET", userPath(u.ID), ""); rec.Code != http.StatusOK || decodeJSON[userJSON](t, rec) != u {
		t.Errorf("GET: got %d %s, want 200 with %+v", rec.Code, rec.Body, u)
	}
	wantProblem(t, app.do("GET", userPath(u.ID+1000), ""), http.StatusNotFound)
	wantProblem(t, app.do("GET", "/api/v1/users/9223372036854775807", ""), http.StatusNotFound)
}

func TestBadIDs(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	ids := []string{"0", "-1", "abc", "1.5", "01", "+1", "1e3", "0x10", "%20%31", "9223372036854775808", "99999999999999999999999", "1%00"}
	for _, id := range ids {
		for _, method := range []string{"GET", "PUT", "PATCH", "DELETE"} {
			t.Run(method+" "+id, func(t *testing.T) {
				body := ""
				if method == "PUT" || method == "PATCH" {
					body = `{"full_name":"x"}`
				}
				wantProblem(t, app.do(method, "/api/v1/users/"+id, body), http.StatusBadRequest, "id")
			})
		}
	}
}

func TestUpdateUser(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	orig := app.createUser(`{"username":"hank","email":"hank@example.com","password":"old password","full_name":"Hank"}`)

	// PATCH takes the members to change, PUT the user as GET gave it with
	// them changed (openapi.json's User); both change only those.
	bodies := map[string]func() string{
		"PATCH": func() string { return `{"full_name":"Hank PATCH"}` },
		"PUT":   func() string { return app.userBodyWith(orig.ID, map[string]any{"full_name": "Hank PUT"}) },
	}
	for _, method := range []string{"PATCH", "PUT"} {
		t.Run(method+" changes what changed", func(t *testing.T) {
			before := decodeJSON[userJSON](t, app.do("GET", userPath(orig.ID), ""))
			time.Sleep(2 * time.Millisecond) // let the clock move past updated_at
			rec := app.do(method, userPath(orig.ID), bodies[method]())
			if rec.Code != http.StatusOK {
				t.Fatalf("got %d %s", rec.Code, rec.Body)
			}
			got := decodeJSON[userJSON](t, rec)
			if *got.FullName != "Hank "+method || got.Username != "hank" || got.Email != "hank@example.com" || got.Role != "user" {
				t.Errorf("got %+v", got)
			}
			if got.CreatedAt != orig.CreatedAt {
				t.Errorf("created_at moved: %s to %s", orig.CreatedAt, got.CreatedAt)
			}
			if !(got.UpdatedAt > before.UpdatedAt) {
				t.Errorf("updated_at did not move forward: %s to %s", before.UpdatedAt, got.UpdatedAt)
			}
		})
	}
	t.Run("every field at once", func(t *testing.T) {
		rec := app.do("PATCH", userPath(orig.ID),
			`{"username":" Henry ","email":" HENRY@Example.com","password":"fresh passphrase","full_name":null,"role":"admin","is_active":false}`)
		if rec.Code != http.StatusOK {
			t.Fatalf("got %d %s", rec.Code, rec.Body)
		}
		got := decodeJSON[userJSON](t, rec)
		want := userJSON{ID: orig.ID, Username: "Henry", Email: "henry@example.com", Role: "admin", IsActive: false,
			CreatedAt: orig.CreatedAt, UpdatedAt: got.UpdatedAt}
		if got != want {
			t.Errorf("got %+v, want %+v", got, want)
		}
		var hash string
		app.db.QueryRow("SELECT password_hash FROM users WHERE id = ?", orig.ID).Scan(&hash)
		if bcrypt.CompareHashAndPassword([]byte(hash), []byte("fresh passphrase")) != nil {
			t.Error("the new password does not verify")
		}
		if bcrypt.CompareHashAndPassword([]byte(hash), []byte("old password")) == nil {
			t.Error("the old password still verifies")
		}
		if strings.Contains(app.logs.String(), "fresh passphrase") || strings.Contains(rec.Body.String(), "password") {
			t.Error("the password leaked into the log or the response")
		}
	})
	t.Run("errors", func(t *testing.T) {
		tests := []struct {
			name, method, path, body string
			wantStatus               int
			wantFields               []string
		}{
			{"empty object", "PATCH", userPath(orig.ID), `{}`, 400, nil},
			{"username null", "PATCH", userPath(orig.ID), `{"username":null}`, 400, []string{"username"}},
			{"email null", "PUT", userPath(orig.ID), `{"email":null}`, 400, []string{"email"}},
			{"password null", "PATCH", userPath(orig.ID), `{"password":null}`, 400, []string{"password"}},
			{"role null", "PATCH", userPath(orig.ID), `{"role":null}`, 400, []string{"role"}},
			{"bad values", "PATCH", userPath(orig.ID), `{"username":"a","email":"b","password":"c","role":"d","is_active":"e","id":1}`, 400,
				[]string{"username", "email", "password", "role", "is_active", "id"}},
			{"password over 72 bytes", "PUT", userPath(orig.ID), `{"password":"` + strings.Repeat("p", 73) + `"}`, 400, []string{"password"}},
			{"unknown id", "PATCH", userPath(orig.ID + 1000), `{"full_name":"x"}`, 404, nil},
			{"not JSON", "PATCH", userPath(orig.ID), `full_name=x`, 400, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				wantProblem(t, app.do(tt.method, tt.path, tt.body), tt.wantStatus, tt.wantFields...)
			})
		}
	})
}

func TestDeleteUser(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	u := app.createUser(`{"username":"ivan","email":"ivan@example.com","password":"rq7-tz4w"}`)
	rec := app.do("DELETE", userPath(u.ID), "")
	if rec.Code != http.StatusNoContent || rec.Body.Len() != 0 {
		t.Errorf("got %d %q, want 204 with no body", rec.Code, rec.Body)
	}
	wantProblem(t, app.do("GET", userPath(u.ID), ""), http.StatusNotFound)
	wantProblem(t, app.do("DELETE", userPath(u.ID), ""), http.StatusNotFound)
	// The name is free again.
	app.createUser(`{"username":"ivan","email":"ivan@example.com","password":"rq7-tz4w"}`)
}

func TestListUsers(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)

	t.Run("only the admin", func(t *testing.T) {
		rec := app.do("GET", "/api/v1/users", "")
		if rec.Code != http.StatusOK {
			t.Fatalf("got %d", rec.Code)
		}
		if body := rec.Body.String(); !strings.HasSuffix(strings.TrimSpace(body), `],"page":1,"per_page":20,"total":1,"total_pages":1,"total_is_estimate":false,"next_cursor":null}`) {
			t.Errorf("body: %s", body)
		}
		if got, want := rec.Header().Get("Link"), `</api/v1/users?page=1&per_page=20>; rel="first", </api/v1/users?page=1&per_page=20>; rel="last"`; got != want {
			t.Errorf("Link:\n got %s\nwant %s", got, want)
		}
	})

	ids := []int64{app.adminID} // seven users: the admin and six more
	for i := range 6 {
		u := app.createUser(fmt.Sprintf(`{"username":"user%d","email":"user%d@example.com","password":"rq7-tz4w"}`, i, i))
		ids = append(ids, u.ID)
	}
	link := func(page, perPage int, rel string) string {
		return fmt.Sprintf(`</api/v1/users?page=%d&per_page=%d>; rel="%s"`, page, perPage, rel)
	}
	tests := []struct {
		name       string
		query      string
		wantIDs    []int64
		wantPage   int64
		wantPer    int64
		wantPages  int64
		wantLinks  []string
		wantPrefix string
	}{
		{"defaults", "", ids, 1, 20, 1, []string{link(1, 20, "first"), link(1, 20, "last")}, ""},
		{"first of partial pages", "?page=1&per_page=3", ids[0:3], 1, 3, 3, []string{link(1, 3, "first"), link(2, 3, "next"), link(3, 3, "last")}, ""},
		{"middle page", "?page=2&per_page=3", ids[3:6], 2, 3, 3, []string{link(1, 3, "first"), link(1, 3, "prev"), link(3, 3, "next"), link(3, 3, "last")}, ""},
		{"partial last page", "?page=3&per_page=3", ids[6:7], 3, 3, 3, []string{link(1, 3, "first"), link(2, 3, "prev"), link(3, 3, "last")}, ""},
		{"exact multiple, last page", "?page=7&per_page=1", ids[6:7], 7, 1, 7, []string{link(1, 1, "first"), link(6, 1, "prev"), link(7, 1, "last")}, ""},
		{"past the end", "?page=5&per_page=3", []int64{}, 5, 3, 3, []string{link(1, 3, "first"), link(3, 3, "prev"), link(3, 3, "last")}, ""},
		{"per_page 100", "?per_page=100", ids, 1, 100, 1, []string{link(1, 100, "first"), link(1, 100, "last")}, ""},
		{"trailing slash", "/", ids, 1, 20, 1, []string{link(1, 20, "first"), link(1, 20, "last")}, "/api/v1/users/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := "/api/v1/users" + tt.query
			rec := app.do("GET", path, "")
			if rec.Code != http.StatusOK {
				t.Fatalf("got %d %s", rec.Code, rec.Body)
			}
			got := decodeJSON[listJSON](t, rec)
			var gotIDs []int64
			for _, u := range got.Items {
				gotIDs = append(gotIDs, u.ID)
			}
			if got.Items == nil || !slices.Equal(gotIDs, tt.wantIDs) {
				t.Errorf("ids: got %v, want %v", gotIDs, tt.wantIDs)
			}
			if got.Page == nil || *got.Page != tt.wantPage || got.PerPage != tt.wantPer || got.Total != 7 || got.TotalPages != tt.wantPages {
				t.Errorf("page %v per_page %d total %d total_pages %d", got.Page, got.PerPage, got.Total, got.TotalPages)
			}
			wantLink := strings.Join(tt.wantLinks, ", ")
			if tt.wantPrefix != "" {
				wantLink = strings.ReplaceAll(wantLink, "/api/v1/users?", tt.wantPrefix+"?")
			}
			if got := rec.Header().Get("Link"); got != wantLink {
				t.Errorf("Link:\n got %s\nwant %s", got, wantLink)
			}
		})
	}

	bad := []struct {
		query      string
		wantFields []string
	}{
		{"?per_page=0", []string{"per_page"}},
		{"?per_page=101", []string{"per_page"}},
		{"?per_page=-5", []string{"per_page"}},
		{"?page=0", []string{"page"}},
		{"?page=-1", []string{"page"}},
		{"?page=abc", []string{"page"}},
		{"?page=1.5", []string{"page"}},
		{"?page=", []string{"page"}},
		{"?page=99999999999999999999", []string{"page"}},
		{"?page=9223372036854775807&per_page=2", []string{"page"}},
		{"?page=1&page=2", []string{"page"}},
		{"?page=10002&per_page=1", []string{"page"}},
		{"?page=102&per_page=100", []string{"page"}},
		{"?role=admin;", []string{"query"}},
		{"?q=%00", []string{"q"}},
		{"?q=al%C2%ADice", []string{"q"}},
		{"?page=0&per_page=0", []string{"page", "per_page"}},
		{"?pag=2", []string{"pag"}},
	}
	for _, tt := range bad {
		t.Run("bad "+tt.query, func(t *testing.T) {
			wantProblem(t, app.do("GET", "/api/v1/users"+tt.query, ""), http.StatusBadRequest, tt.wantFields...)
		})
	}
	for _, deepest := range []string{"?page=10001&per_page=1", "?page=101&per_page=100"} {
		t.Run("deepest page by number "+deepest, func(t *testing.T) {
			rec := app.do("GET", "/api/v1/users"+deepest, "")
			if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"items":[]`) {
				t.Errorf("got %d %s", rec.Code, rec.Body)
			}
		})
	}
}

func TestUnmatchedRoutesAreProblems(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	tests := []struct {
		method, path string
		wantStatus   int
		wantAllow    string
	}{
		{"GET", "/nope", 404, ""},
		{"GET", "/api/v1/users/1/extra", 404, ""},
		{"GET", "/api/v2/users", 404, ""},
		{"DELETE", "/api/v1/users", 405, "GET, HEAD, POST"},
		{"PUT", "/api/v1/users/", 405, "GET, HEAD, POST"},
		{"POST", "/api/v1/users/1", 405, "DELETE, GET, HEAD, PATCH, PUT"},
		{"POST", "/health", 405, "GET, HEAD"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			rec := app.do(tt.method, tt.path, "")
			wantProblem(t, rec, tt.wantStatus)
			if got := rec.Header().Get("Allow"); got != tt.wantAllow {
				t.Errorf("Allow: got %q, want %q", got, tt.wantAllow)
			}
		})
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	rec := app.do("GET", "/health", "")
	if rec.Code != http.StatusOK || strings.TrimSpace(rec.Body.String()) != `{"status":"ok","database":"ok","version":"dev"}` {
		t.Errorf("got %d %s", rec.Code, rec.Body)
	}
}

func TestRequestIDAndCommonHeaders(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	rec := app.do("GET", "/health", "", "X-Request-ID", "abc-123")
	if got := rec.Header().Get("X-Request-ID"); got != "abc-123" {
		t.Errorf("kept X-Request-ID: got %q", got)
	}
	if got := rec.Header().Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("X-Content-Type-Options: got %q", got)
	}
	if !strings.Contains(app.logs.String(), `"request_id":"abc-123"`) || !strings.Contains(app.logs.String(), `"route":"GET /health"`) {
		t.Errorf("access log lacks the request id or route: %s", app.logs)
	}
	for _, bad := range []string{"", strings.Repeat("a", 129), "has space", "new\nline"} {
		rec := app.do("GET", "/health", "", "X-Request-ID", bad)
		if got := rec.Header().Get("X-Request-ID"); got == bad || len(got) != 24 {
			t.Errorf("for incoming %q: got %q, want a fresh id", bad, got)
		}
	}
}

func TestPanicIsAProblemAndServingGoesOn(t *testing.T) {
	t.Parallel()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, nil))
	calls := 0
	h := observeRequests(logger, newMetrics(), nil, recoverPanics(logger, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		if calls == 1 {
			panic("boom")
		}
		w.WriteHeader(http.StatusNoContent)
	})))
	app := &testApp{t: t, handler: h, noContract: true}
	wantProblem(t, app.do("GET", "/x", "", "X-Request-ID", "panic-1"), http.StatusInternalServerError)
	if rec := app.do("GET", "/x", ""); rec.Code != http.StatusNoContent {
		t.Errorf("after the panic: got %d", rec.Code)
	}
	for _, want := range []string{`"panic":"boom"`, `"stack":"goroutine`, `"request_id":"panic-1"`} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s: %s", want, logs)
		}
	}
}

// TestGetModifyPut: what GET gives, PUT takes back, changed: the
// read-only members are accepted (id must match), for an admin and for a
// user on themselves; PATCH also takes a JSON merge patch.
func TestGetModifyPut(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	me, token := app.newUser("roundtrip")
	for _, who := range []struct {
		name    string
		headers []string
	}{{"admin", nil}, {"self", as(token)}} {
		t.Run(who.name, func(t *testing.T) {
			got := app.do("GET", userPath(me.ID), "", who.headers...)
			var user map[string]any
			if err := json.Unmarshal(got.Body.Bytes(), &user); err != nil {
				t.Fatal(err)
			}
			user["full_name"] = "Round Trip " + who.name
			body, _ := json.Marshal(user)
			rec := app.do("PUT", userPath(me.ID), string(body), append(who.headers, "If-Match", got.Header().Get("ETag"))...)
			if rec.Code != http.StatusOK || decodeJSON[userJSON](t, rec).FullName == nil {
				t.Fatalf("PUT of the GET body: %d %s", rec.Code, rec.Body)
			}
			user["id"] = me.ID + 1
			body, _ = json.Marshal(user)
			wantProblem(t, app.do("PUT", userPath(me.ID), string(body), who.headers...), http.StatusBadRequest, "id")
		})
	}
	patch := app.do("PATCH", userPath(me.ID), `{"full_name":null}`, "Content-Type", "application/merge-patch+json")
	if patch.Code != http.StatusOK || decodeJSON[userJSON](t, patch).FullName != nil {
		t.Errorf("merge patch: %d %s", patch.Code, patch.Body)
	}
	wantProblem(t, app.do("PUT", userPath(me.ID), `{"full_name":null}`, "Content-Type", "application/merge-patch+json"),
		http.StatusUnsupportedMediaType)
	wantProblem(t, app.do("POST", "/api/v1/users", `{"id":5,"username":"readonly","email":"ro@example.com","password":"user password"}`),
		http.StatusBadRequest, "id")
}

// warnings returns the warning and error lines of the app's log.
func warnings(app *testApp) string {
	var lines []string
	for _, line := range strings.Split(app.logs.String(), "\n") {
		if strings.Contains(line, `"level":"WARN"`) || strings.Contains(line, `"level":"ERROR"`) {
			lines = append(lines, line)
		}
	}
	return strings.Join(lines, "\n")
}
