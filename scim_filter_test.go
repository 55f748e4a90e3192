package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// scimFixture makes three users through SCIM beside the root admin, and
// returns the token and each user's id by userName.
func scimFixture(t *testing.T, app *testApp) (string, map[string]string) {
	t.Helper()
	token, _ := app.provisioningToken("fixture")
	ids := map[string]string{}
	for _, body := range []string{
		`{"userName":"bjensen","emails":[{"value":"bjensen@example.com"}],"displayName":"Barbara Jensen","externalId":"bjensen-ext"}`,
		`{"userName":"jsmith@example.org","externalId":"JS-1","active":false}`,
		`{"userName":"Jdoe","emails":[{"value":"jdoe@example.com","primary":true}],"name":{"formatted":"John Doe"},"externalId":"jd","roles":[{"value":"admin"}]}`,
	} {
		by := token
		if strings.Contains(body, `"admin"`) {
			by = app.adminToken // an admin is made by an admin, never by a provisioning token
		}
		u := scimOK[scimUserJSON](t, app.scim(by, "POST", "/scim/v2/Users", body), http.StatusCreated)
		ids[u.UserName] = u.ID
	}
	return token, ids
}

// scimPage lists users with the query, decoding the page.
func scimPage(t *testing.T, app *testApp, token string, query url.Values) scimListJSON {
	t.Helper()
	return scimOK[scimListJSON](t, app.scim(token, "GET", "/scim/v2/Users?"+query.Encode(), ""), http.StatusOK)
}

func TestSCIMFilters(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	token, ids := scimFixture(t, app)
	for _, tc := range []struct {
		filter string
		want   []string // userNames, in id order
	}{
		{`userName eq "bjensen"`, []string{"bjensen"}},
		{`userName eq "BJENSEN"`, []string{"bjensen"}},
		{`USERNAME Eq "bjensen"`, []string{"bjensen"}},
		{`urn:ietf:params:scim:schemas:core:2.0:User:userName eq "bjensen"`, []string{"bjensen"}},
		{`userName sw "J"`, []string{"jsmith@example.org", "Jdoe"}},
		{`emails co "example.com"`, []string{"root_admin", "bjensen", "Jdoe"}},
		{`emails.value ew ".org"`, []string{"jsmith@example.org"}},
		{`emails[type eq "work" and value co "@example.com"]`, []string{"root_admin", "bjensen", "Jdoe"}},
		{`emails[type eq "home"]`, nil},
		{`externalId eq "JS-1"`, []string{"jsmith@example.org"}},
		{`externalId eq "js-1"`, nil}, // case-exact
		{`externalId pr`, []string{"bjensen", "jsmith@example.org", "Jdoe"}},
		{`not (externalId pr)`, []string{"root_admin"}},
		{`displayName pr and active eq true`, []string{"bjensen", "Jdoe"}},
		{`userName eq "bjensen" or userName eq "Jdoe" and active eq false`, []string{"bjensen"}},
		{`(userName eq "bjensen" or userName eq "Jdoe") and active eq true`, []string{"bjensen", "Jdoe"}},
		{`meta.lastModified gt "2011-05-13T04:42:34Z"`, []string{"root_admin", "bjensen", "jsmith@example.org", "Jdoe"}},
		{`meta.created lt "2011-05-13T04:42:34Z"`, nil},
		{`id eq "` + ids["jsmith@example.org"] + `"`, []string{"jsmith@example.org"}},
		{`id eq "abc"`, nil},
		{`roles eq "admin"`, []string{"root_admin", "Jdoe"}},
		{`displayName ne "Barbara Jensen"`, []string{"root_admin", "jsmith@example.org", "Jdoe"}},
		{`name.formatted co "doe"`, []string{"Jdoe"}},
		{`active eq false`, []string{"jsmith@example.org"}},
		{`displayName eq null`, []string{"root_admin", "jsmith@example.org"}},
		{`userName eq "x\" OR \"1\"=\"1"`, nil},
		{`userName co "%"`, nil}, // LIKE's wildcards match literally
	} {
		t.Run(tc.filter, func(t *testing.T) {
			page := scimPage(t, app, token, url.Values{"filter": {tc.filter}})
			var got []string
			for _, r := range page.Resources {
				got = append(got, r.UserName)
			}
			if !slices.Equal(got, tc.want) || page.TotalResults != int64(len(tc.want)) {
				t.Errorf("got %v (total %d), want %v", got, page.TotalResults, tc.want)
			}
		})
	}
	for _, filter := range []string{
		`title pr`, `name.familyName co "O'Malley"`, // RFC 7644's examples, on attributes not stored
		`userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")`,
		`userName eq`, `userName zz "x"`, `(userName eq "x"`, `userName eq x`, `userName eq "x" and`, `active gt true`,
		`meta.created gt "yesterday"`, `emails[type eq "work"`, `emails[value eq "a" and emails[type eq "b"]]`, `"userName" eq "x"`,
		strings.Repeat(`userName eq "x" or `, 40) + `userName eq "y"`, strings.Repeat("(", 20) + `userName eq "x"` + strings.Repeat(")", 20),
		`userName eq "` + strings.Repeat("a", 3000) + `"`,
	} {
		wantSCIMError(t, app.scim(token, "GET", "/scim/v2/Users?"+url.Values{"filter": {filter}}.Encode(), ""), http.StatusBadRequest, "invalidFilter")
	}
}

func TestSCIMListPagesAndAttributes(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	token, ids := scimFixture(t, app)
	page := scimPage(t, app, token, url.Values{"filter": {`emails co "example.com"`}, "startIndex": {"2"}, "count": {"1"}})
	if page.TotalResults != 3 || page.StartIndex != 2 || page.ItemsPerPage != 1 || page.Resources[0].ID != ids["bjensen"] {
		t.Errorf("page 2 of 1: %+v", page)
	}
	if page := scimPage(t, app, token, url.Values{"count": {"0"}}); page.TotalResults != 4 || len(page.Resources) != 0 {
		t.Errorf("count 0: %+v", page)
	}
	if page := scimPage(t, app, token, url.Values{"count": {"100000"}, "startIndex": {"-5"}}); page.TotalResults != 4 || page.StartIndex != 1 || len(page.Resources) != 4 {
		t.Errorf("count capped, startIndex 1: %+v", page)
	}
	if page := scimPage(t, app, token, url.Values{"startIndex": {"9"}}); page.TotalResults != 4 || len(page.Resources) != 0 {
		t.Errorf("past the end: %+v", page)
	}
	wantSCIMError(t, app.scim(token, "GET", "/scim/v2/Users?count=many", ""), http.StatusBadRequest, "invalidValue")

	rec := app.scim(token, "GET", "/scim/v2/Users/"+ids["bjensen"]+"?attributes=userName,emails.value", "")
	var res map[string]any
	if err := json.Unmarshal(scimOK[json.RawMessage](t, rec, http.StatusOK), &res); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(res); len(res) != 4 || res["userName"] != "bjensen" || !strings.Contains(got, "emails:[map[value:bjensen@example.com]]") {
		t.Errorf("attributes: %v", got)
	}
	rec = app.scim(token, "GET", "/scim/v2/Users?filter=userName+eq+%22bjensen%22&excludedAttributes=meta,emails,name.formatted", "")
	var list struct{ Resources []map[string]any }
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil || len(list.Resources) != 1 {
		t.Fatalf("%v %s", err, rec.Body)
	}
	if r := list.Resources[0]; r["meta"] != nil || r["emails"] != nil || r["name"] != nil || r["id"] == nil || r["displayName"] == nil {
		t.Errorf("excludedAttributes: %v", r)
	}
}

// TestSCIMFilterEqUsesIndexes: an eq on userName, emails or externalId
// reads by index, not by a scan of every user (EXPLAIN of the page
// statement, over 300 users).
func TestSCIMFilterEqUsesIndexes(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	if _, err := app.db.Exec(`INSERT INTO users (username, email, password_hash)
		WITH RECURSIVE s (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 300)
		SELECT CONCAT('u', n), CONCAT('u', n, '@example.com'), '' FROM s`); err != nil {
		t.Fatal(err)
	}
	if _, err := app.db.Exec(`INSERT INTO user_external_ids (user_id, external_id) SELECT id, CONCAT('ext-', id) FROM users`); err != nil {
		t.Fatal(err)
	}
	if _, err := app.db.Exec("ANALYZE TABLE users, user_external_ids"); err != nil {
		t.Fatal(err)
	}
	for _, filter := range []string{`userName eq "u42"`, `emails eq "u42@example.com"`, `externalId eq "ext-42"`, `emails[value eq "u7@example.com"]`} {
		node, err := parseSCIMFilter(filter)
		if err != nil {
			t.Fatal(err)
		}
		where, args, err := compileFilter(node, "")
		if err != nil {
			t.Fatal(err)
		}
		rows, err := app.db.Query("EXPLAIN "+scimPageSQL(where, true), append(args, 100, 0)...)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			values := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range values {
				ptrs[i] = &values[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			row := map[string]string{}
			for i, c := range cols {
				row[c] = fmt.Sprintf("%s", values[i])
			}
			if row["type"] == "ALL" || row["type"] == "index" {
				t.Errorf("%s: reads table %s by %s: %v", filter, row["table"], row["type"], row)
			}
		}
		rows.Close()
	}
}

// FuzzSCIMFilter: any text either fails to parse with invalidFilter, or
// parses and compiles (or is refused with invalidFilter) to a condition
// with exactly one argument per placeholder; and a PATCH path never
// panics. No input crashes.
func FuzzSCIMFilter(f *testing.F) {
	for _, seed := range []string{
		`userName eq "bjensen"`, `name.familyName co "O'Malley"`, `userName sw "J"`, `title pr`,
		`meta.lastModified gt "2011-05-13T04:42:34Z"`, `title pr and userType eq "Employee"`,
		`userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")`,
		`userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")`,
		`emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]`,
		`not(active eq false)`, `id eq 42`, `externalId eq "a\"b"`, `((((userName pr))))`, `emails[type eq "work"].value`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		if _, err := parseSCIMPath(text); err != nil {
			if _, ok := err.(*SCIMRequestError); !ok {
				t.Fatalf("path %q: %T %v", text, err, err)
			}
		}
		node, err := parseSCIMFilter(text)
		if err != nil {
			if e, ok := err.(*SCIMRequestError); !ok || e.Type != "invalidFilter" {
				t.Fatalf("%q: %v", text, err)
			}
			return
		}
		where, args, err := compileFilter(node, "")
		if err != nil {
			if e, ok := err.(*SCIMRequestError); !ok || e.Type != "invalidFilter" {
				t.Fatalf("%q compiles to %v", text, err)
			}
			return
		}
		if strings.Count(where, "?") != len(args) {
			t.Fatalf("%q: %d placeholders, %d arguments: %s", text, strings.Count(where, "?"), len(args), where)
		}
	})
}

// BenchmarkSCIMFindByUserName is the providers' first request for each
// user, over 10,000 users: an eq on the unique index, and the count.
func BenchmarkSCIMFindByUserName(b *testing.B) {
	benchGet(b, newBenchApp(b), "/scim/v2/Users?"+url.Values{"filter": {`userName eq "bench5000"`}}.Encode())
}

// BenchmarkSCIMListFirstPage is a page of 100 SCIM users, unfiltered.
func BenchmarkSCIMListFirstPage(b *testing.B) {
	benchGet(b, newBenchApp(b), "/scim/v2/Users?count=100")
}
