package main

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// seedListUsers creates users with mixed-case names, equal timestamps in
// places (so id must break ties) and both roles and states, and returns
// them all, the admin included, as stored.
func seedListUsers(t *testing.T, app *testApp) []userJSON {
	t.Helper()
	names := []string{"delta", "Alpha", "charlie", "bravo", "Echo", "foxtrot", "golf", "Hotel", "india", "juliet", "kilo", "Lima", "mike"}
	for i, name := range names {
		role, active := "user", "true"
		if i%4 == 0 {
			role = "admin"
		}
		if i%3 == 0 {
			active = "false"
		}
		app.createUser(fmt.Sprintf(`{"username":%q,"email":"%s.%d@Example.com","password":"rq7-tz4w","role":%q,"is_active":%s}`,
			name, strings.ToLower(name), i, role, active))
	}
	// Ties: four users share created_at, three share updated_at.
	mustExec(t, app, "UPDATE users SET created_at = '2026-01-01 00:00:00' WHERE username IN ('delta','Echo','golf','kilo')")
	mustExec(t, app, "UPDATE users SET updated_at = '2026-02-01 00:00:00.5' WHERE username IN ('Alpha','Hotel','mike')")
	return allUsers(t, app)
}

func mustExec(t *testing.T, app *testApp, stmt string, args ...any) {
	t.Helper()
	if _, err := app.db.Exec(stmt, args...); err != nil {
		t.Fatalf("%s: %v", stmt, err)
	}
}

// allUsers reads every user through the API.
func allUsers(t *testing.T, app *testApp) []userJSON {
	t.Helper()
	rec := app.do("GET", "/api/v1/users?per_page=100", "")
	if rec.Code != http.StatusOK {
		t.Fatalf("list: %d %s", rec.Code, rec.Body)
	}
	return decodeJSON[listJSON](t, rec).Items
}

// sortKey orders users the way the database does for a sort column: case
// folded for names (the collation ignores case), then id.
func sortKey(col string) func(a, b userJSON) int {
	return func(a, b userJSON) int {
		var c int
		switch col {
		case "username":
			c = cmp.Compare(strings.ToLower(a.Username), strings.ToLower(b.Username))
		case "email":
			c = cmp.Compare(a.Email, b.Email)
		case "created_at":
			c = cmp.Compare(a.CreatedAt, b.CreatedAt)
		case "updated_at":
			c = cmp.Compare(a.UpdatedAt, b.UpdatedAt)
		}
		return cmp.Or(c, cmp.Compare(a.ID, b.ID))
	}
}

// walk follows next_cursor from the first page to the end and returns the
// ids in the order served, checking each page's shape on the way.
func walk(t *testing.T, app *testApp, query string) []int64 {
	t.Helper()
	var ids []int64
	path := "/api/v1/users?" + query
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatal("the cursor walk does not end")
		}
		rec := app.do("GET", path, "")
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
		}
		page := decodeJSON[listJSON](t, rec)
		for _, u := range page.Items {
			ids = append(ids, u.ID)
		}
		if pages > 0 && page.Page != nil {
			t.Errorf("a cursor page says page %d, want null", *page.Page)
		}
		if page.NextCursor == nil {
			if strings.Contains(rec.Header().Get("Link"), `rel="next"`) {
				t.Errorf("the last page has a next link: %s", rec.Header().Get("Link"))
			}
			return ids
		}
		values, _ := url.ParseQuery(query)
		values.Set("cursor", *page.NextCursor)
		values.Del("page")
		path = "/api/v1/users?" + values.Encode()
		if link := rec.Header().Get("Link"); !strings.Contains(link, "cursor="+url.QueryEscape(*page.NextCursor)) && pages > 0 {
			t.Errorf("the next link does not use the cursor: %s", link)
		}
	}
}

func TestCursorWalksEverySortWithoutSkipsOrRepeats(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	users := seedListUsers(t, app)
	for _, col := range sortColumns {
		for _, desc := range []bool{false, true} {
			sort := sortParam(col, desc)
			t.Run(sort, func(t *testing.T) {
				want := slices.Clone(users)
				slices.SortFunc(want, sortKey(col))
				if desc {
					slices.Reverse(want)
				}
				var wantIDs []int64
				for _, u := range want {
					wantIDs = append(wantIDs, u.ID)
				}
				if got := walk(t, app, "per_page=3&sort="+sort); !slices.Equal(got, wantIDs) {
					t.Errorf("cursor walk:\n got %v\nwant %v", got, wantIDs)
				}
				// Pages by number give the same order.
				var byPage []int64
				for p := 1; p <= 5; p++ {
					page := decodeJSON[listJSON](t, app.do("GET", fmt.Sprintf("/api/v1/users?per_page=3&sort=%s&page=%d", sort, p), ""))
					for _, u := range page.Items {
						byPage = append(byPage, u.ID)
					}
				}
				if !slices.Equal(byPage, wantIDs) {
					t.Errorf("page walk:\n got %v\nwant %v", byPage, wantIDs)
				}
			})
		}
	}
}

func TestListFilters(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	users := seedListUsers(t, app)
	app.createUser(`{"username":"x_y","email":"under_score@example.org","password":"rq7-tz4w"}`)
	app.createUser(`{"username":"xzy","email":"percent@example.org","password":"rq7-tz4w"}`)
	users = allUsers(t, app)
	ids := func(keep func(u userJSON) bool) []int64 {
		var out []int64
		for _, u := range users {
			if keep(u) {
				out = append(out, u.ID)
			}
		}
		return out
	}
	tests := []struct {
		query string
		want  []int64
	}{
		{"role=admin", ids(func(u userJSON) bool { return u.Role == "admin" })},
		{"role=user", ids(func(u userJSON) bool { return u.Role == "user" })},
		{"is_active=false", ids(func(u userJSON) bool { return !u.IsActive })},
		{"is_active=true&role=admin", ids(func(u userJSON) bool { return u.IsActive && u.Role == "admin" })},
		{"q=AL", ids(func(u userJSON) bool { return strings.HasPrefix(strings.ToLower(u.Username), "al") })},
		{"q=hotel.7%40ex", ids(func(u userJSON) bool { return u.Username == "Hotel" })},
		{"q=x_", ids(func(u userJSON) bool { return u.Username == "x_y" })}, // _ is literal, not a wildcard
		{"q=%25", nil}, // so is %
		{"q=root", []int64{app.adminID}},
		{"created_before=2026-01-01T00:00:00.000001Z", ids(func(u userJSON) bool { return u.CreatedAt <= "2026-01-01T00:00:00.000000Z" })},
		{"created_after=2026-01-01T00:00:00Z", ids(func(u userJSON) bool { return u.CreatedAt > "2026-01-01T00:00:00.000000Z" })},
		{"updated_since=2026-02-01T00:00:00.5Z&created_after=2026-01-01T00:00:00Z", ids(func(u userJSON) bool {
			return u.UpdatedAt >= "2026-02-01T00:00:00.500000Z" && u.CreatedAt > "2026-01-01T00:00:00.000000Z"
		})},
		{"updated_since=2999-01-01T00:00:00%2B02:00", nil},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			rec := app.do("GET", "/api/v1/users?per_page=100&"+tt.query, "")
			if rec.Code != http.StatusOK {
				t.Fatalf("got %d %s", rec.Code, rec.Body)
			}
			page := decodeJSON[listJSON](t, rec)
			var got []int64
			for _, u := range page.Items {
				got = append(got, u.ID)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ids: got %v, want %v", got, tt.want)
			}
			if page.Total != int64(len(tt.want)) || page.TotalIsEstimate {
				t.Errorf("total %d (estimate %v), want %d", page.Total, page.TotalIsEstimate, len(tt.want))
			}
			if got := walk(t, app, "per_page=2&sort=-username&"+tt.query); len(got) != len(tt.want) {
				t.Errorf("cursor walk found %d users, want %d", len(got), len(tt.want))
			}
		})
	}
	t.Run("links keep the filters", func(t *testing.T) {
		rec := app.do("GET", "/api/v1/users?per_page=2&role=user&sort=-email", "")
		if link := rec.Header().Get("Link"); !strings.Contains(link, "</api/v1/users?page=2&per_page=2&role=user&sort=-email>; rel=\"next\"") {
			t.Errorf("Link: %s", link)
		}
	})
}

func TestListQueryProblems(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	app.createUser(`{"username":"one","email":"one@example.com","password":"rq7-tz4w"}`)
	page := decodeJSON[listJSON](t, app.do("GET", "/api/v1/users?per_page=1&sort=username", ""))
	if page.NextCursor == nil {
		t.Fatal("no next_cursor on a page with more to come")
	}
	usernameCursor := url.QueryEscape(*page.NextCursor)
	tests := []struct {
		query      string
		wantFields []string
	}{
		{"sort=name", []string{"sort"}},
		{"sort=--id", []string{"sort"}},
		{"sort=", []string{"sort"}},
		{"sort=id&sort=email", []string{"sort"}},
		{"role=root", []string{"role"}},
		{"role=ADMIN", []string{"role"}},
		{"is_active=yes", []string{"is_active"}},
		{"is_active=1", []string{"is_active"}},
		{"q=", []string{"q"}},
		{"q=%20%20", []string{"q"}},
		{"q=" + strings.Repeat("a", 255), []string{"q"}},
		{"created_after=yesterday", []string{"created_after"}},
		{"created_before=2026-01-01", []string{"created_before"}},
		{"updated_since=2026-01-01T00:00:00", []string{"updated_since"}},
		{"created_after=0000-01-01T00:00:00Z", []string{"created_after"}},                                   // before DATETIME's range
		{"created_before=9999-12-31T23:00:00-05:00", []string{"created_before"}},                            // the year 10000 in UTC
		{"cursor=eyJzIjoiY3JlYXRlZF9hdCIsImsiOiIwMDAwLTAxLTAxVDAwOjAwOjAwWiIsImkiOjF9", []string{"cursor"}}, // created_at cursor in year 0
		{"cursor=garbage!", []string{"cursor"}},
		{"cursor=eyJzIjoibm9wZSIsImkiOjF9", []string{"cursor"}}, // {"s":"nope","i":1}
		{"cursor=" + usernameCursor, []string{"cursor"}},        // made for sort=username
		{"cursor=" + usernameCursor + "&sort=-username", []string{"cursor"}},
		{"cursor=" + usernameCursor + "&sort=username&page=2", []string{"cursor"}},
		{"per_page=0&sort=x&role=y", []string{"per_page", "sort", "role"}},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			wantProblem(t, app.do("GET", "/api/v1/users?"+tt.query, ""), http.StatusBadRequest, tt.wantFields...)
		})
	}
	if rec := app.do("GET", "/api/v1/users?sort=username&cursor="+usernameCursor, ""); rec.Code != http.StatusOK {
		t.Errorf("the cursor with its own sort: got %d %s", rec.Code, rec.Body)
	}
}

func TestFilteredTotalIsCapped(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	const bulk = maxFilteredCount + 5
	// Seed fast, the way bench/ does: one INSERT ... SELECT over a
	// cross join of digits (portable to MySQL and MariaDB).
	digits := "(SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4" +
		" UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)"
	mustExec(t, app, `INSERT INTO users (username, email, password_hash)
		SELECT CONCAT('bulk', n), CONCAT('bulk', n, '@example.com'), 'x' FROM
		(SELECT a.d + 10*b.d + 100*c.d + 1000*d.d + 10000*e.d + 1 AS n
		 FROM `+digits+` a, `+digits+` b, `+digits+` c, `+digits+` d, `+digits+` e) AS nums
		WHERE n <= ?`, bulk)
	mustExec(t, app, "UPDATE user_counts SET n = n + ? WHERE slot = 0", bulk)

	page := decodeJSON[listJSON](t, app.do("GET", "/api/v1/users", ""))
	if page.Total != bulk+1 || page.TotalIsEstimate {
		t.Errorf("unfiltered: total %d estimate %v, want exactly %d", page.Total, page.TotalIsEstimate, bulk+1)
	}
	page = decodeJSON[listJSON](t, app.do("GET", "/api/v1/users?role=user", ""))
	if page.Total != maxFilteredCount || !page.TotalIsEstimate || page.TotalPages != maxFilteredCount/defaultPerPage {
		t.Errorf("filtered past the cap: total %d estimate %v pages %d", page.Total, page.TotalIsEstimate, page.TotalPages)
	}
	page = decodeJSON[listJSON](t, app.do("GET", "/api/v1/users?q=bulk1000", ""))
	if page.Total != 7 || page.TotalIsEstimate { // bulk1000 and bulk10000 to bulk10005
		t.Errorf("q=bulk1000: total %d estimate %v, want exactly 7", page.Total, page.TotalIsEstimate)
	}
}

func TestUserCountStaysExact(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	var created []int64
	for i := range 10 {
		created = append(created, app.createUser(fmt.Sprintf(`{"username":"pre%d","email":"pre%d@example.com","password":"rq7-tz4w"}`, i, i)).ID)
	}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			app.do("POST", "/api/v1/users", fmt.Sprintf(`{"username":"con%d","email":"con%d@example.com","password":"rq7-tz4w"}`, i, i))
		})
	}
	for _, id := range created {
		wg.Go(func() { app.do("DELETE", userPath(id), "") })
		wg.Go(func() { app.do("DELETE", userPath(id), "") }) // the same delete twice: counted once
	}
	wg.Go(func() {
		app.do("POST", "/api/v1/users", `{"username":"con0","email":"dup@example.com","password":"rq7-tz4w"}`)
	})
	wg.Wait()
	var rows int64
	app.db.QueryRow("SELECT COUNT(*) FROM users").Scan(&rows)
	if got := decodeJSON[listJSON](t, app.do("GET", "/api/v1/users", "")).Total; got != rows {
		t.Errorf("total %d, but the table holds %d users", got, rows)
	}
}

func TestUserCountInitFromExistingRows(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	app.createUser(`{"username":"kept","email":"kept@example.com","password":"rq7-tz4w"}`)
	mustExec(t, app, "DELETE FROM user_counts") // as if restored without it
	fresh := newTestAppOn(t, app.db)            // a new process: applies the schema again
	fresh.adminToken = app.adminToken
	if got := decodeJSON[listJSON](t, fresh.do("GET", "/api/v1/users", "")).Total; got != 2 {
		t.Errorf("total after re-initialising the count: %d, want 2", got)
	}
}

func TestCursorTimestampsKeepMicroseconds(t *testing.T) {
	t.Parallel()
	u := User{ID: 7, CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC)}
	c, err := decodeCursor(cursorAfter(&u, "created_at", true), "created_at", true)
	if err != nil || c.ID != 7 || !c.value.(time.Time).Equal(u.CreatedAt) {
		t.Errorf("round trip: %+v %v", c, err)
	}
}

func TestBoundedQueriesRunOnThisServer(t *testing.T) {
	t.Parallel()
	db := newTestDB(t)
	store := NewStore(db, 1500*time.Millisecond)
	query := store.bounded("SELECT COUNT(*) FROM users")
	if want := "/*M!100301 SET STATEMENT max_statement_time=1.5 FOR */ SELECT /*+ MAX_EXECUTION_TIME(1500) */ COUNT(*) FROM users"; query != want {
		t.Errorf("got  %s\nwant %s", query, want)
	}
	var n int
	if err := db.QueryRow(query).Scan(&n); err != nil {
		t.Errorf("the server rejects the bounded query: %v", err)
	}
	// A statement the server must interrupt: a cross join far longer than
	// the limit, answered with an error that maps to 503.
	slow := NewStore(db, 50*time.Millisecond)
	digits := "(SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4" +
		" UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)"
	var tables []string
	for i := range 9 { // 10^9 rows: minutes of work
		tables = append(tables, fmt.Sprintf("%s AS t%d", digits, i))
	}
	start := time.Now()
	err := db.QueryRow(slow.bounded("SELECT COUNT(*) FROM " + strings.Join(tables, ", "))).Scan(&n)
	if err == nil || !errors.Is(dbError("count", err), ErrUnavailable) {
		t.Errorf("a statement past its limit: got %v, want a server interruption mapped to ErrUnavailable", err)
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("the server took %v to stop a statement limited to 50ms", elapsed)
	}
}

// TestStatementArgumentTypes: the list's statements bind ids, limits and
// offsets as integers (database/sql turns a Go int into int64), times as
// time.Time, never a time as a string, and one argument per parameter
// (see Store.prepared on MySQL's typing of parameters at prepare time).
func TestStatementArgumentTypes(t *testing.T) {
	t.Parallel()
	at := time.Date(2024, 5, 6, 7, 8, 9, 123456000, time.UTC)
	role, active := Role("user"), true
	for _, sort := range sortColumns {
		for _, page := range []int64{0, 3} {
			q := listQuery{Page: page, PerPage: 20, Sort: sort, Role: &role, IsActive: &active, Prefix: "a_",
				CreatedAfter: &at, CreatedBefore: &at, UpdatedSince: &at}
			if page == 0 {
				c := cursor{Sort: sort, ID: 42, value: any("name")}
				if sort == "created_at" || sort == "updated_at" {
					c.value = at
				}
				q.Cursor = &c
			}
			stmt, args := q.pageSQL([]byte("hash"), adminOnly.rolesPermitted())
			countStmt, countArgs := q.countSQL()
			for _, s := range []struct {
				stmt string
				args []any
			}{{stmt, args}, {countStmt, countArgs}} {
				if got, want := len(s.args), strings.Count(s.stmt, "?"); got != want {
					t.Errorf("%s: %d arguments for %d parameters", s.stmt, got, want)
				}
				for i, arg := range s.args {
					switch v := arg.(type) {
					case int, int64, bool, []byte, time.Time:
					case string:
						if _, err := time.Parse(time.RFC3339Nano, v); err == nil {
							t.Errorf("sort %s, argument %d: a time sent as the string %q", sort, i, v)
						}
					default:
						t.Errorf("sort %s, argument %d: %T, want an integer, bool, []byte, time.Time or string", sort, i, arg)
					}
				}
			}
		}
	}
}
