package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Native fuzz targets. CI runs each for a few seconds on top of the seed
// corpus in testdata/fuzz; locally: go test -run '^$' -fuzz FuzzUserBody -fuzztime 10m

// FuzzUserBody feeds arbitrary bodies through the request decoding and the
// validation of create and update. Every input must either be refused
// with a 4xx that names its fields, or decode to a user that passes
// validation; normalising twice must give what normalising once gave.
func FuzzUserBody(f *testing.F) {
	for _, seed := range []string{
		`{"username":"alice","email":"Alice@Example.com","password":"rq7-tz4w"}`,
		`{"username":" Bob ","email":"bob@example.com","password":"rq7-tz4w","full_name":" Bob \u00e9 ","role":"admin","is_active":false}`,
		`{"full_name":null}`, `{}`, `[]`, `null`, `{"a":1,"a":2}`, `{"username":"x"} {}`,
		`{"username":"\u0000","email":"\ud800@x.io","password":"` + strings.Repeat("€", 25) + `"}`,
		`{"email":"a@b.c` + strings.Repeat("o", 250) + `"}`, `{"password":"tessa@example.com","email":"TESSA@example.com"}`,
		`{"current_password":"x"}`, "{\"username\":\"a\xffb\"}", `{"is_active":"true","role":["admin"]}`,
		`{"username":1e999}`, `{"full_name":"` + strings.Repeat(" ", 300) + `"}`,
	} {
		f.Add([]byte(seed), false)
		f.Add([]byte(seed), true)
	}
	f.Fuzz(func(t *testing.T, body []byte, update bool) {
		req := httptest.NewRequest("POST", "/api/v1/users", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		members, err := readJSONObject(httptest.NewRecorder(), req)
		if err != nil {
			reqErr, ok := err.(*requestError)
			if !ok || reqErr.status < 400 || reqErr.status > 499 || reqErr.detail == "" {
				t.Fatalf("decoding failed without a 4xx: %v", err)
			}
			return
		}
		fields, errs := parseUserFields(members)
		fields.normalize()
		if update {
			errs = append(errs, fields.validatePresent()...)
		} else {
			errs = append(errs, fields.validateForCreate(errs)...)
		}
		for _, e := range errs {
			if e.Field == "" || e.Message == "" {
				t.Fatalf("a field error without field or message: %+v", e)
			}
		}
		if len(errs) > 0 {
			return
		}
		once := snapshot(fields)
		fields.normalize()
		if twice := snapshot(fields); twice != once {
			t.Fatalf("normalising is not idempotent:\n%s\n%s", once, twice)
		}
		if again := fields.validatePresent(); len(again) > 0 {
			t.Fatalf("normalised fields fail validation: %+v", again)
		}
		if fields.Username != nil && usernameProblem(*fields.Username) != "" ||
			fields.Email != nil && (emailProblem(*fields.Email) != "" || *fields.Email != strings.ToLower(*fields.Email)) {
			t.Fatalf("an invalid value passed: %s", once)
		}
	})
}

// snapshot renders fields for comparison.
func snapshot(f userFields) string {
	s := func(p *string) string {
		if p == nil {
			return "<nil>"
		}
		return strconv.Quote(*p)
	}
	return strings.Join([]string{s(f.Username), s(f.Email), s(f.Password), s(f.FullName), s(f.Role), strconv.FormatBool(f.HasFullName)}, "|")
}

// FuzzPathID: the id parser never panics, and what it accepts is exactly
// the canonical decimal form of a positive int64.
func FuzzPathID(f *testing.F) {
	for _, seed := range []string{"1", "0", "-1", "+1", "01", "9223372036854775807", "9223372036854775808", "1e3", " 1", "１", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, ok := parsePositiveInt(s)
		if !ok {
			return
		}
		if n < 1 || strconv.FormatInt(n, 10) != s {
			t.Fatalf("accepted %q as %d", s, n)
		}
		req := httptest.NewRequest("GET", "/", nil)
		req.SetPathValue("id", s)
		if ref, err := pathUser(req); err != nil || ref.self || ref.id != n {
			t.Fatalf("pathUser(%q) = %+v, %v", s, ref, err)
		}
	})
}

// FuzzListQuery: any query string either yields a 400 naming fields, or a
// query within bounds whose SQL builds and whose next cursor reads back.
func FuzzListQuery(f *testing.F) {
	for _, seed := range []string{
		"", "page=2&per_page=100", "per_page=0", "page=9223372036854775807&per_page=100", "sort=-created_at&cursor=x",
		"q=%25_%5C&role=admin&is_active=true", "created_after=2026-01-01T00:00:00Z&updated_since=2026-01-01T00:00:00.rq7-tz4w9%2B02:00",
		"cursor=eyJzIjoiLWVtYWlsIiwiayI6ImFAYi5jbyIsImkiOjV9&sort=-email", "a=1&a=2&page=1&page=2", "%zz",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		values, err := url.ParseQuery(raw)
		if err != nil {
			return // net/http gives such a query to the handler as what it could parse; nothing of ours runs
		}
		q, err := parseListQuery(values)
		if err != nil {
			reqErr, ok := err.(*requestError)
			if !ok || reqErr.status != http.StatusBadRequest || len(reqErr.fields) == 0 {
				t.Fatalf("refused without a 400 naming fields: %v", err)
			}
			return
		}
		if q.PerPage < 1 || q.PerPage > maxPerPage || (q.Cursor == nil) != (q.Page >= 1) {
			t.Fatalf("out of bounds: %+v", q)
		}
		stmt, args := q.pageSQL([]byte("hash"), adminOnly.rolesPermitted())
		if strings.Count(stmt, "?") != len(args) {
			t.Fatalf("%d placeholders for %d arguments in %s", strings.Count(stmt, "?"), len(args), stmt)
		}
		if q.filtered() {
			stmt, args = q.countSQL()
			if strings.Count(stmt, "?") != len(args) {
				t.Fatalf("count: %d placeholders for %d arguments", strings.Count(stmt, "?"), len(args))
			}
		}
		// A user as stored: DATETIME holds only years 1000 to 9999.
		stored := time.Date(2026, 11, 30, 9, 24, 34, 123456000, time.UTC)
		u := User{ID: 42, Username: "x", Email: "x@y.zz", CreatedAt: stored, UpdatedAt: stored}
		if _, err := decodeCursor(cursorAfter(&u, q.Sort, q.Desc), q.Sort, q.Desc); err != nil {
			t.Fatalf("a cursor made for %s does not read back: %v", q.Sort, err)
		}
	})
}

// FuzzDotenv: the .env reader never panics, and what it accepts holds
// only valid variable names.
func FuzzDotenv(f *testing.F) {
	for _, seed := range []string{
		"A=1\nB='two # x'\nexport C=\"3\\n\"\n# c\n", "A", "=1", "A='unterminated", "A=\"x\\", "A=\"a\" b", "\r\n\r\n", "A=1 # c",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		vars, err := parseDotenv(text)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "line ") {
				t.Fatalf("error without a line number: %v", err)
			}
			return
		}
		for name := range vars {
			if !isEnvName(name) {
				t.Fatalf("accepted the name %q", name)
			}
		}
	})
}
