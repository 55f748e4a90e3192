package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// The cluster tests run the service as three replicas, each on its own
// node of a MariaDB Galera cluster (multi-writer: every node takes
// writes), and prove that every guarantee still holds. They are skipped
// unless CLUSTER_NODES names the nodes (cluster/galera.sh up prints it);
// the node-loss test also needs CLUSTER_DSN (HAProxy in front) and runs
// cluster/galera.sh to kill and restart a node.
//
//	eval "$(cluster/galera.sh up)"
//	go test -race -run Cluster -count=1 .

// clusterNodes returns the server-level DSNs of the nodes, or skips.
func clusterNodes(t *testing.T) []*mysql.Config {
	t.Helper()
	value := os.Getenv("CLUSTER_NODES")
	if value == "" {
		t.Skip("CLUSTER_NODES is not set: no Galera cluster (cluster/galera.sh up)")
	}
	var nodes []*mysql.Config
	for _, dsn := range strings.Split(value, ",") {
		cfg, err := mysql.ParseDSN(strings.TrimSpace(dsn))
		if err != nil {
			t.Fatalf("CLUSTER_NODES: %v", err)
		}
		applySessionSettings(cfg, testTimeout)
		nodes = append(nodes, cfg)
	}
	return nodes
}

// clusterDatabase creates a database with the schema on the cluster and
// returns its name; it is dropped when the test ends.
func clusterDatabase(t *testing.T, node *mysql.Config) string {
	t.Helper()
	admin := openClusterPool(t, node, "")
	name := "usersvc_cluster_" + randomHex(6)
	if _, err := admin.Exec("CREATE DATABASE " + name + " CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Exec("DROP DATABASE IF EXISTS " + name) })
	db := openClusterPool(t, node, name)
	if err := NewStore(db, testTimeout).EnsureSchema(context.Background()); err != nil {
		t.Fatalf("apply schema: %v", err)
	}
	return name
}

// openClusterPool opens a pool on one node (or HAProxy), on database name.
func openClusterPool(t *testing.T, node *mysql.Config, name string) *sql.DB {
	t.Helper()
	cfg := node.Clone()
	cfg.DBName = name
	cfg.Logger = &mysql.NopLogger{} // node-loss tests break connections on purpose
	db, err := openDB(cfg, testConfig().dbSettings(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// clusterReplicas starts one replica of the service per node, all on one
// new database, with the bootstrap admin signed in on every replica.
func clusterReplicas(t *testing.T, options ...func(*Config)) []*testApp {
	t.Helper()
	nodes := clusterNodes(t)
	name := clusterDatabase(t, nodes[0])
	var apps []*testApp
	for _, node := range nodes {
		db := openClusterPool(t, node, name)
		waitForSchema(t, db)
		app := newTestAppWith(t, db, nil, options...)
		app.noContract = false
		apps = append(apps, app)
	}
	apps[0].bootstrapAdmin()
	for _, app := range apps[1:] {
		app.adminID, app.adminToken = apps[0].adminID, apps[0].adminToken
	}
	return apps
}

// waitForSchema waits until a node has applied the schema created on
// another one, and its seed of the user count.
func waitForSchema(t *testing.T, db *sql.DB) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if db.QueryRow(causalRead+"SELECT COUNT(*) FROM user_counts").Scan(&n) == nil && n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the schema did not reach every node")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestClusterOneWinnerPerName: concurrent creates of one username (in any
// case) or one email, spread over the replicas: exactly one 201.
func TestClusterOneWinnerPerName(t *testing.T) {
	apps := clusterReplicas(t)
	for _, clash := range []string{"username", "email"} {
		var created atomic.Int32
		var wg sync.WaitGroup
		for i := range 24 {
			app := apps[i%len(apps)]
			wg.Go(func() {
				name, email := fmt.Sprintf("clash%s%d", clash, i), fmt.Sprintf("clash%s%d@example.com", clash, i)
				if clash == "username" {
					name = []string{"Clash", "CLASH", "clash"}[i%3]
				} else {
					email = []string{"same@example.com", "SAME@example.com", "Same@Example.com"}[i%3]
				}
				rec := app.do("POST", "/api/v1/users", fmt.Sprintf(`{"username":%q,"email":%q,"password":"user password"}`, name, email))
				switch rec.Code {
				case http.StatusCreated:
					created.Add(1)
				case http.StatusConflict:
				default:
					t.Errorf("create: %d %s", rec.Code, rec.Body)
				}
			})
		}
		wg.Wait()
		if created.Load() != 1 {
			t.Errorf("%s: %d creates succeeded, want exactly 1", clash, created.Load())
		}
	}
}

// TestClusterNeverZeroAdmins: admins demoted, deactivated and deleted at
// once through different nodes (write skew across nodes) never leave no
// active admin.
func TestClusterNeverZeroAdmins(t *testing.T) {
	apps := clusterReplicas(t)
	for round := range 8 {
		var ids []int64
		for i := range 3 {
			u := apps[0].createUser(fmt.Sprintf(`{"username":"adm%d_%d","email":"adm%d_%d@example.com","password":"user password","role":"admin"}`, round, i, round, i))
			ids = append(ids, u.ID)
		}
		// Wait until every node has the new admins, so each one's check
		// sees them.
		for _, app := range apps {
			for _, id := range ids {
				waitFor(t, func() bool { return app.do("GET", userPath(id), "").Code == http.StatusOK })
			}
		}
		// Every active admin but the bootstrap one is removed at once, one
		// per node, and the bootstrap admin is demoted by a fourth request.
		var wg sync.WaitGroup
		removals := []struct{ method, body string }{
			{"PATCH", `{"role":"user"}`}, {"PATCH", `{"is_active":false}`}, {"DELETE", ""},
		}
		for i, id := range ids {
			app := apps[i%len(apps)]
			wg.Go(func() { app.do(removals[i].method, userPath(id), removals[i].body) })
		}
		wg.Go(func() { apps[1].do("PATCH", userPath(apps[0].adminID), `{"role":"user"}`) })
		wg.Wait()
		// Every request has committed; a causal read on each node sees
		// all of them, so the nodes agree at once. (A plain read on one
		// node may still miss a write set another node certified, and
		// then no node ever settles on that stale count.)
		active := causalCount(t, apps[0].db, "users WHERE role = 'admin' AND is_active = TRUE")
		for i, app := range apps[1:] {
			if n := causalCount(t, app.db, "users WHERE role = 'admin' AND is_active = TRUE"); n != active {
				t.Fatalf("round %d: node %d counts %d active admins, node 1 counts %d", round, i+2, n, active)
			}
		}
		if active == 0 {
			t.Fatalf("round %d: no active admin left", round)
		}
		// Start the next round from the one admin that is left.
		var adminID int64
		apps[0].db.QueryRow("SELECT id FROM users WHERE role = 'admin' AND is_active = TRUE ORDER BY id LIMIT 1").Scan(&adminID)
		if adminID != apps[0].adminID {
			var username string
			apps[0].db.QueryRow("SELECT username FROM users WHERE id = ?", adminID).Scan(&username)
			token := apps[0].login(username, "user password")
			for _, app := range apps {
				app.adminID, app.adminToken = adminID, token
			}
		}
	}
}

// TestClusterExactTotal: after thousands of concurrent creates and deletes
// on every node, the list's unfiltered total is COUNT(*).
func TestClusterExactTotal(t *testing.T) {
	apps := clusterReplicas(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ids []int64
	for w := range 12 {
		app := apps[w%len(apps)]
		wg.Go(func() {
			for i := range 100 {
				rec := app.do("POST", "/api/v1/users", fmt.Sprintf(`{"username":"tot%d_%d","email":"tot%d_%d@example.com","password":"user password"}`, w, i, w, i))
				if rec.Code != http.StatusCreated {
					t.Errorf("create: %d %s", rec.Code, rec.Body)
					continue
				}
				id := decodeJSON[userJSON](t, rec).ID
				if i%2 == 0 { // delete every other one, from another node
					other := apps[(w+1)%len(apps)]
					waitFor(t, func() bool {
						code := other.do("DELETE", userPath(id), "").Code
						return code == http.StatusNoContent
					})
					continue
				}
				mu.Lock()
				ids = append(ids, id)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for _, app := range apps {
		waitFor(t, func() bool {
			var count int64
			app.db.QueryRow("SELECT COUNT(*) FROM users").Scan(&count)
			rec := app.do("GET", "/api/v1/users?per_page=1", "")
			var page struct{ Total int64 }
			json.Unmarshal(rec.Body.Bytes(), &page)
			return rec.Code == http.StatusOK && page.Total == count && count == int64(len(ids))+1
		})
	}
}

// TestClusterIdempotencyAndIfMatch: one Idempotency-Key retried on every
// replica at once creates one user; many If-Match writers holding one
// ETag, on every node: one winner.
func TestClusterIdempotencyAndIfMatch(t *testing.T) {
	apps := clusterReplicas(t)
	body := `{"username":"idem","email":"idem@example.com","password":"user password"}`
	var wg sync.WaitGroup
	codes := make([]int, 9)
	for i := range codes {
		app := apps[i%len(apps)]
		wg.Go(func() { codes[i] = app.do("POST", "/api/v1/users", body, "Idempotency-Key", "cluster-key").Code })
	}
	wg.Wait()
	var users int
	waitFor(t, func() bool {
		apps[0].db.QueryRow("SELECT COUNT(*) FROM users WHERE username = 'idem'").Scan(&users)
		return users == 1
	})
	for _, code := range codes {
		if code != http.StatusCreated && code != http.StatusConflict && code != http.StatusServiceUnavailable {
			t.Errorf("a retry answered %d", code)
		}
	}

	// Rounds, since a lost write shows only now and then: each round,
	// twelve writers on three nodes hold one ETag.
	for round := range 20 {
		ifMatchRound(t, apps, round)
	}
}

// ifMatchRound races twelve If-Match writers holding one ETag of a new
// user, four per node: exactly one wins, and the stored row is its write,
// one version on, not another writer's, nor two writes.
func ifMatchRound(t *testing.T, apps []*testApp, round int) {
	t.Helper()
	target := apps[0].createUser(fmt.Sprintf(`{"username":"etag%d","email":"etag%d@example.com","password":"user password"}`, round, round))
	var etag string
	waitFor(t, func() bool {
		for _, app := range apps {
			rec := app.do("GET", userPath(target.ID), "")
			if rec.Code != http.StatusOK {
				return false
			}
			etag = rec.Header().Get("ETag")
		}
		return true
	})
	var before int64
	if err := apps[0].db.QueryRow(causalRead+"SELECT version FROM users WHERE id = ?", target.ID).Scan(&before); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var won []string
	for i := range 12 {
		app := apps[i%len(apps)]
		wg.Go(func() {
			name := fmt.Sprintf("writer %d", i)
			rec := app.do("PATCH", userPath(target.ID), fmt.Sprintf(`{"full_name":%q}`, name), "If-Match", etag)
			switch rec.Code {
			case http.StatusOK:
				mu.Lock()
				won = append(won, name)
				mu.Unlock()
			case http.StatusPreconditionFailed:
			default:
				t.Errorf("If-Match writer: %d %s", rec.Code, rec.Body)
			}
		})
	}
	wg.Wait()
	var stored string
	var version int64
	if err := apps[0].db.QueryRow(causalRead+"SELECT full_name, version FROM users WHERE id = ?", target.ID).Scan(&stored, &version); err != nil {
		t.Fatal(err)
	}
	if len(won) != 1 || stored != won[0] || version != before+1 {
		t.Fatalf("round %d: writers %q won; stored %q at version %d, want one winner's write at version %d", round, won, stored, version, before+1)
	}
}

// TestClusterRevocationEverywhere: a token revoked through one replica is
// refused by every replica, on every node, in the very next request.
func TestClusterRevocationEverywhere(t *testing.T) {
	apps := clusterReplicas(t)
	u, _ := apps[0].newUser("revoked")
	revocations := []struct {
		name   string
		revoke func(app *testApp, token string)
	}{
		{"logout", func(app *testApp, token string) { app.do("POST", "/api/v1/auth/logout", "", as(token)...) }},
		{"password change", func(app *testApp, token string) {
			app.do("PATCH", userPath(u.ID), `{"password":"user password"}`)
		}},
		{"deactivation", func(app *testApp, token string) {
			app.do("PATCH", userPath(u.ID), `{"is_active":false}`)
			app.do("PATCH", userPath(u.ID), `{"is_active":true}`)
		}},
	}
	for _, rv := range revocations {
		for round := range 10 {
			via := apps[round%len(apps)]
			token := via.login("revoked", "user password")
			rv.revoke(via, token)
			for _, app := range apps {
				// A write first (the fast path's read), then a read: each must
				// refuse the token on its own, not after the other waited.
				if code := app.do("PATCH", "/api/v1/users/me", `{"full_name":"Late"}`, as(token)...).Code; code != http.StatusUnauthorized {
					t.Fatalf("%s through one node: another node let the token write (%d)", rv.name, code)
				}
				if code := app.do("GET", "/api/v1/users/me", "", as(token)...).Code; code != http.StatusUnauthorized {
					t.Fatalf("%s through one node: another node answered %d", rv.name, code)
				}
			}
		}
	}
}

// TestClusterRevocationWhileANodeLags: a token signed out through node 1
// is refused by the replica on node 2 from its own read, even while node
// 2 has not applied the sign-out yet (its applier held back by FLUSH
// TABLES WITH READ LOCK, as a loaded node lags): the write is decided on
// a causal read. A stale read is not always saved by certification: when
// the node applies the sign-out between the read and the commit, the
// write commits, and the revoked token wrote (CI saw that once). So the
// refusal must come without a certification conflict.
func TestClusterRevocationWhileANodeLags(t *testing.T) {
	apps := clusterReplicas(t)
	u, token := apps[0].newUser("lagging")
	waitFor(t, func() bool { return apps[1].do("GET", "/api/v1/users/me", "", as(token)...).Code == http.StatusOK })
	apps[1].stopWorkers() // node 2's store then retries for the PATCH alone

	ctx := context.Background()
	hold, err := apps[1].db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	if _, err := hold.ExecContext(ctx, "FLUSH TABLES WITH READ LOCK"); err != nil {
		t.Fatal(err)
	}
	release := time.AfterFunc(time.Second, func() { hold.ExecContext(ctx, "UNLOCK TABLES") })
	defer release.Stop()
	if code := apps[0].do("POST", "/api/v1/auth/logout", "", as(token)...).Code; code != http.StatusNoContent {
		t.Fatalf("logout: %d", code)
	}
	var stale int
	apps[1].db.QueryRow("SELECT COUNT(*) FROM auth_tokens WHERE user_id = ?", u.ID).Scan(&stale)
	if stale != 1 {
		t.Fatalf("node 2 does not lag (it holds %d tokens of the user): the test proves nothing", stale)
	}
	retries := apps[1].store.TxRetries()
	if code := apps[1].do("PATCH", "/api/v1/users/me", `{"full_name":"Late"}`, as(token)...).Code; code != http.StatusUnauthorized {
		t.Errorf("a node that had not applied the sign-out let the token write (%d)", code)
	}
	if n := apps[1].store.TxRetries() - retries; n != 0 {
		t.Errorf("node 2 read the revoked token as valid, and only a certification conflict (%d retries) refused it", n)
	}
}

// TestClusterEventFeedNeverSkips: writers on every node, a consumer
// following the feed through one replica, and the consumer collects
// exactly the events in the table, though auto-increment ids on Galera
// are neither contiguous nor in commit order.
func TestClusterEventFeedNeverSkips(t *testing.T) {
	apps := clusterReplicas(t)
	checkFeedNeverSkips(t, apps, apps[1])
}

// TestClusterNodeLoss: with writes flowing through HAProxy, a node is
// killed: every create answered 201 is durable, failures are 503 with
// Retry-After, the service serves again without a restart, and the node
// rejoins with the same data as the others.
func TestClusterNodeLoss(t *testing.T) {
	nodes := clusterNodes(t)
	proxyDSN := os.Getenv("CLUSTER_DSN")
	if proxyDSN == "" {
		t.Skip("CLUSTER_DSN is not set")
	}
	proxy, err := mysql.ParseDSN(proxyDSN)
	if err != nil {
		t.Fatal(err)
	}
	applySessionSettings(proxy, testTimeout)
	name := clusterDatabase(t, nodes[0])
	var apps []*testApp
	for range 2 {
		db := openClusterPool(t, proxy, name)
		waitForSchema(t, db)
		apps = append(apps, newTestAppWith(t, db, nil))
	}
	apps[0].bootstrapAdmin()
	apps[1].adminID, apps[1].adminToken = apps[0].adminID, apps[0].adminToken

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() }) // when a check below gives up
	var mu sync.Mutex
	created := map[string]int64{}
	var failures, served atomic.Int32
	for w := range 8 {
		app := apps[w%len(apps)]
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				name := fmt.Sprintf("loss%d_%d", w, i)
				rec := app.do("POST", "/api/v1/users", fmt.Sprintf(`{"username":%q,"email":"%s@example.com","password":"user password","full_name":"Name %s"}`, name, name, name))
				switch {
				case rec.Code == http.StatusCreated:
					served.Add(1)
					mu.Lock()
					created[name] = decodeJSON[userJSON](t, rec).ID
					mu.Unlock()
				case rec.Code == http.StatusServiceUnavailable && rec.Header().Get("Retry-After") != "":
					failures.Add(1)
				default:
					t.Errorf("during node loss: %d %s", rec.Code, rec.Body)
				}
			}
		})
	}
	eventually(t, 30*time.Second, "creates before the loss", func() bool { return served.Load() >= 50 })
	galera(t, "kill", "2")
	// Once the others have dropped node 2 from the cluster, creates must
	// flow again, without a restart: HAProxy's check and the pool's
	// retry take a few seconds, so the bound is generous.
	check := openClusterPool(t, nodes[0], name)
	eventually(t, 30*time.Second, "the cluster to drop node 2", func() bool {
		var variable string
		var size int
		return check.QueryRow("SHOW STATUS LIKE 'wsrep_cluster_size'").Scan(&variable, &size) == nil && size == 2
	})
	before := served.Load()
	eventually(t, 30*time.Second, "the service to serve again after the node was lost", func() bool { return served.Load() >= before+50 })
	stop()
	wg.Wait()
	galera(t, "start", "2")
	t.Logf("%d creates answered 201, %d answered 503 during the switch", len(created), failures.Load())

	// A causal read first: node 1 may not yet have applied the last
	// creates that went through another node; once it has, plain reads
	// on it see them too.
	want := causalCount(t, check, "users")
	for username, id := range created {
		var got string
		if err := check.QueryRow("SELECT full_name FROM users WHERE id = ? AND username = ?", id, username).Scan(&got); err != nil || got != "Name "+username {
			t.Fatalf("user %s (%d), answered 201, is not stored: %q %v", username, id, got, err)
		}
	}
	// A create cut off by the switch may have committed without its
	// answer: 503 promised nothing either way. So the nodes must agree,
	// and hold at least every user answered 201.
	if want < len(created)+1 {
		t.Fatalf("%d users stored, %d answered 201", want, len(created))
	}
	var sums []string
	for _, node := range nodes {
		db := openClusterPool(t, node, name)
		waitFor(t, func() bool {
			var n int
			return db.QueryRow("SELECT COUNT(*) FROM users").Scan(&n) == nil && n == want
		})
		var table string
		var sum sql.NullInt64
		if err := db.QueryRow("CHECKSUM TABLE users").Scan(&table, &sum); err != nil {
			t.Fatal(err)
		}
		sums = append(sums, fmt.Sprint(sum.Int64))
	}
	if sums[0] != sums[1] || sums[1] != sums[2] {
		t.Errorf("the nodes' users tables differ: checksums %v", sums)
	}
}

// galera runs cluster/galera.sh with args.
func galera(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("cluster/galera.sh", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("cluster/galera.sh %v: %v\n%s", args, err, out)
	}
}

// causalRead makes the statement after it wait until the node has applied
// every write set committed in the cluster.
const causalRead = "SET STATEMENT wsrep_sync_wait=1 FOR "

// causalCount counts rows of from (a table and its condition) on one node
// once the node has applied every write set committed in the cluster.
func causalCount(t *testing.T, db *sql.DB, from string) int {
	t.Helper()
	var n int
	if err := db.QueryRow(causalRead + "SELECT COUNT(*) FROM " + from).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", from, err)
	}
	return n
}

// waitFor polls cond for up to 15 s, for what a cluster applies a moment
// after it commits.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("the cluster did not settle in 15 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
