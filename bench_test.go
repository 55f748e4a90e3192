package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Benchmarks of the hot paths through the real handler and a real
// database, each beside its baseline so the ratio means something on a
// noisy machine:
//
//	go test -run '^$' -bench . -benchtime 3s
//
// BenchmarkRawPointSelect is the ceiling for BenchmarkGetUser: the same
// primary-key select through database/sql at the same parallelism.
// BenchmarkRawUpdateFullName is the baseline of the writes: one UPDATE of
// a random user's full_name, autocommitted, at the same parallelism as
// BenchmarkPatchFullName, BenchmarkCreateUser and BenchmarkDeleteUser.

// benchUsers is how many users the benchmark database holds.
const benchUsers = 10_000

// newBenchApp returns an app on a database seeded with benchUsers users
// (ids 2 to benchUsers+1; the admin is 1).
func newBenchApp(b testing.TB) *testApp {
	b.Helper()
	app := newTestApp(b)
	seedBenchUsers(b, app, "bench", benchUsers)
	return app
}

// seedBenchUsers inserts n users named prefix1, prefix2, ... with one
// INSERT ... SELECT over a table of digits, and counts them.
func seedBenchUsers(b testing.TB, app *testApp, prefix string, n int) {
	b.Helper()
	digits := "(SELECT 0 d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4" +
		" UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)"
	if _, err := app.db.Exec(`INSERT INTO users (username, email, password_hash, full_name)
		SELECT CONCAT(?, n), CONCAT(?, n, '@example.com'), 'x', CONCAT('Bench User ', n) FROM
		(SELECT a.d + 10*b.d + 100*c.d + 1000*d.d + 10000*e.d + 100000*f.d + 1 AS n
		 FROM `+digits+` a, `+digits+` b, `+digits+` c, `+digits+` d, `+digits+` e, `+digits+` f
		 WHERE e.d*10000 + f.d*100000 < ?) AS nums
		WHERE n <= ? ORDER BY n`, prefix, prefix, n, n); err != nil {
		b.Fatal(err)
	}
	if _, err := app.db.Exec("UPDATE user_counts SET n = n + ? WHERE slot = 0", n); err != nil {
		b.Fatal(err)
	}
}

func benchGet(b *testing.B, app *testApp, path string) {
	b.Helper()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest("GET", path, nil)
			req.Header.Set("Authorization", "Bearer "+app.adminToken)
			rec := httptest.NewRecorder()
			app.handler.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Fatalf("GET %s: %d %s", path, rec.Code, rec.Body)
			}
		}
	})
}

// benchPointSelect runs one primary-key select from parallel goroutines.
func benchPointSelect(b *testing.B, row func() *sql.Row) {
	b.Helper()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var u User
		var fullName *string
		for pb.Next() {
			if err := row().Scan(&u.ID, &u.Username, &u.Email, &fullName, &u.Role, &u.IsActive, &u.CreatedAt, &u.UpdatedAt, &u.Version); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkRawPointSelect(b *testing.B) {
	app := newBenchApp(b)
	benchPointSelect(b, func() *sql.Row {
		return app.db.QueryRowContext(context.Background(), "SELECT "+userColumns+" FROM users WHERE id = ?", 5000)
	})
}

func BenchmarkRawPointSelectPrepared(b *testing.B) {
	app := newBenchApp(b)
	stmt, err := app.db.Prepare("SELECT " + userColumns + " FROM users WHERE id = ?")
	if err != nil {
		b.Fatal(err)
	}
	defer stmt.Close()
	benchPointSelect(b, func() *sql.Row { return stmt.QueryRowContext(context.Background(), 5000) })
}

func BenchmarkGetUser(b *testing.B) {
	benchGet(b, newBenchApp(b), "/api/v1/users/5000")
}

func BenchmarkListFirstPage(b *testing.B) {
	benchGet(b, newBenchApp(b), "/api/v1/users?per_page=20")
}

func BenchmarkListDeepPageByCursor(b *testing.B) {
	app := newBenchApp(b)
	deep := User{ID: benchUsers - 100}
	benchGet(b, app, "/api/v1/users?per_page=20&cursor="+cursorAfter(&deep, "id", false))
}

func BenchmarkListDeepPageByNumber(b *testing.B) {
	benchGet(b, newBenchApp(b), fmt.Sprintf("/api/v1/users?per_page=20&page=%d", benchUsers/20-5))
}

// benchWrite runs request(i) from parallel goroutines, i counting up from
// 0 across all of them, and fails on any status but want.
func benchWrite(b *testing.B, app *testApp, want int, request func(i int64) *http.Request) {
	b.Helper()
	var next atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(writeParallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := request(next.Add(1) - 1)
			req.Header.Set("Authorization", "Bearer "+app.adminToken)
			rec := httptest.NewRecorder()
			app.handler.ServeHTTP(rec, req)
			if rec.Code != want {
				b.Fatalf("%s %s: %d %s", req.Method, req.URL, rec.Code, rec.Body)
			}
		}
	})
}

// writeParallelism is how many goroutines per CPU the write benchmarks
// and their raw ceiling run: a commit waits for the log to reach the
// disk, so with one writer per CPU they would measure the disk's latency,
// not the work; with many, commits share flushes (group commit), as under
// real load.
const writeParallelism = 16

func BenchmarkRawUpdateFullName(b *testing.B) {
	app := newBenchApp(b)
	b.ReportAllocs()
	b.SetParallelism(writeParallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := 2 + rand.Int64N(benchUsers)
			if _, err := app.db.ExecContext(context.Background(),
				"UPDATE users SET full_name = ?, version = version + 1 WHERE id = ?", fmt.Sprint("Name ", id), id); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkPatchFullName sets a name no user has yet on each request: a
// name sent as stored is no change, and would measure a rollback instead.
func BenchmarkPatchFullName(b *testing.B) {
	app := newBenchApp(b)
	benchWrite(b, app, http.StatusOK, func(i int64) *http.Request {
		id := 2 + rand.Int64N(benchUsers)
		req := httptest.NewRequest("PATCH", userPath(id), strings.NewReader(fmt.Sprintf(`{"full_name":"Name %d"}`, i)))
		req.Header.Set("Content-Type", "application/json")
		return req
	})
}

// BenchmarkCreateUser creates users through the API; bcrypt runs at the
// tests' minimum cost, so the database work is most of it.
func BenchmarkCreateUser(b *testing.B) {
	app := newBenchApp(b)
	benchWrite(b, app, http.StatusCreated, func(i int64) *http.Request {
		req := httptest.NewRequest("POST", "/api/v1/users",
			strings.NewReader(fmt.Sprintf(`{"username":"new%d","email":"new%d@example.com","password":"bench password"}`, i, i)))
		req.Header.Set("Content-Type", "application/json")
		return req
	})
}

// BenchmarkDeleteUser deletes b.N users seeded for it, in id order.
func BenchmarkDeleteUser(b *testing.B) {
	app := newTestApp(b)
	seedBenchUsers(b, app, "doomed", b.N)
	var first int64
	if err := app.db.QueryRow("SELECT MIN(id) FROM users WHERE username LIKE 'doomed%'").Scan(&first); err != nil {
		b.Fatal(err)
	}
	benchWrite(b, app, http.StatusNoContent, func(i int64) *http.Request {
		return httptest.NewRequest("DELETE", userPath(first+i), nil)
	})
}

// BenchmarkEncodePage compares the hand-written page encoding with
// encoding/json on the same 20 users.
func BenchmarkEncodePage(b *testing.B) {
	name := "Bench User"
	users := make([]User, 20)
	for i := range users {
		users[i] = User{ID: int64(i + 1), Username: fmt.Sprintf("bench%d", i), Email: fmt.Sprintf("bench%d@example.com", i),
			FullName: &name, Role: RoleUser, IsActive: true, CreatedAt: time.Now(), UpdatedAt: time.Now()}
	}
	page := listPage{Users: users, Total: 1000, HasMore: true}
	q := listQuery{Page: 1, PerPage: 20, Sort: "id"}
	b.Run("hand", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 8192)
		for b.Loop() {
			buf = page.appendJSON(buf[:0], q)
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		type userStd struct {
			ID        int64     `json:"id"`
			Username  string    `json:"username"`
			Email     string    `json:"email"`
			FullName  *string   `json:"full_name"`
			Role      Role      `json:"role"`
			IsActive  bool      `json:"is_active"`
			CreatedAt time.Time `json:"created_at"`
			UpdatedAt time.Time `json:"updated_at"`
		}
		std := make([]userStd, len(users))
		for i, u := range users {
			std[i] = userStd{u.ID, u.Username, u.Email, u.FullName, u.Role, u.IsActive, u.CreatedAt, u.UpdatedAt}
		}
		body := struct {
			Items      []userStd `json:"items"`
			Page       int64     `json:"page"`
			PerPage    int64     `json:"per_page"`
			Total      int64     `json:"total"`
			TotalPages int64     `json:"total_pages"`
			Estimate   bool      `json:"total_is_estimate"`
			NextCursor string    `json:"next_cursor"`
		}{std, 1, 20, 1000, 50, false, cursorAfter(&users[19], "id", false)}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(body); err != nil {
				b.Fatal(err)
			}
		}
	})
}
