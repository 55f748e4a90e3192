package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// These tests dial from other loopback addresses (127.0.0.0/8 is all
// loopback on Linux) to play clients at many addresses.

// startService runs the whole program in-process, as main does, with env
// over a test database, and returns the public and management addresses.
// The run ends with the test.
func startService(t *testing.T, env map[string]string) (addr, managementAddr string) {
	t.Helper()
	_, serverCfg := testServer(t)
	db := newTestDatabase(t, "")
	var dbName string
	db.QueryRow("SELECT DATABASE()").Scan(&dbName)
	host, port := splitAddr(t, serverCfg.Addr)
	all := map[string]string{
		"HTTP_ADDR": "127.0.0.1:0", "MANAGEMENT_ADDR": "127.0.0.1:0", "DB_HOST": host, "DB_PORT": port, "DB_USER": serverCfg.User,
		"DB_PASSWORD": serverCfg.Passwd, "DB_NAME": dbName, "BCRYPT_COST": "4", "BCRYPT_COST_UNBOUNDED": "true",
		"ENV_FILE": emptyEnvFile(t),
	}
	for k, v := range env {
		all[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	stdout := &syncBuffer{}
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"usersvc"}, mapEnv(all), stdout) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(shutdownTimeout + 5*time.Second):
			t.Error("run did not return after the context ended")
		}
	})
	addr = waitForLogField(t, stdout, "listening", "addr")
	managementAddr = waitForLogField(t, stdout, "listening", "management_addr")
	waitForStatus(t, "http://"+managementAddr+"/health/ready", http.StatusOK, 30*time.Second)
	return addr, managementAddr
}

// waitForStatus polls url until it answers status, for up to limit.
func waitForStatus(t *testing.T, url string, status int, limit time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(limit)
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == status {
				return
			}
			err = fmt.Errorf("%s: %s", resp.Status, body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never answered %d: %v", url, status, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// raiseFileLimit makes sure the process may open n files.
func raiseFileLimit(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	if lim.Max < n {
		t.Fatalf("the hard limit on open files is %d; this test needs %d", lim.Max, n)
	}
	lim.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
}

// holdIdle opens n keep-alive connections to addr, spread over the
// source addresses from, sends one GET /health on each and keeps them
// open, idle. It returns how many got an answer, and the connections,
// which close with the test.
func holdIdle(t *testing.T, addr string, n int, from []string) (answered int, held []net.Conn) {
	t.Helper()
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	jobs := make(chan string)
	for range 32 {
		wg.Go(func() {
			for src := range jobs {
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
				c, err := d.Dial("tcp", addr)
				if err != nil {
					continue
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				// An answer not come within the deadline leaves the
				// connection waiting, as an attacker's would.
				c.SetDeadline(time.Now().Add(2 * time.Second))
				if answerOnce(c) == nil {
					mu.Lock()
					answered++
					mu.Unlock()
				}
				c.SetDeadline(time.Time{})
			}
		})
	}
	for i := range n {
		jobs <- from[i%len(from)]
	}
	close(jobs)
	wg.Wait()
	return answered, conns
}

// answerOnce sends GET /health on c and reads the whole answer.
func answerOnce(c net.Conn) error {
	if _, err := io.WriteString(c, "GET /health HTTP/1.1\r\nHost: usersvc\r\n\r\n"); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return err
}

// newcomerLatencies asks GET /health n times, each on a new connection
// from 127.0.0.1, and returns how long each took to be answered; a
// request not answered within limit fails the test.
func newcomerLatencies(t *testing.T, addr string, n int, limit time.Duration) []time.Duration {
	t.Helper()
	client := &http.Client{Timeout: limit, Transport: &http.Transport{DisableKeepAlives: true}}
	var took []time.Duration
	for range n {
		start := time.Now()
		resp, err := client.Get("http://" + addr + "/health")
		if err != nil {
			t.Fatalf("a newcomer from another address was not answered within %v: %v", limit, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	return took
}

// TestIdleConnectionFlood is issue 21's first attack: 1,100 idle
// keep-alive connections, from one address and then from ten, and a
// client from another address must still be answered within a second.
// Before, the 1,024 slots were all taken and the newcomer waited for the
// idle timeout (30 s).
func TestIdleConnectionFlood(t *testing.T) {
	const attack = 1100
	raiseFileLimit(t, 4*attack+1024)
	addr, managementAddr := startService(t, nil)
	calm := newcomerLatencies(t, addr, 20, time.Second)
	t.Logf("newcomer with no attack: median %v, max %v", calm[len(calm)/2], calm[len(calm)-1])

	ten := make([]string, 10)
	for i := range ten {
		ten[i] = fmt.Sprintf("127.0.77.%d", i+1)
	}
	for _, from := range [][]string{{"127.0.77.1"}, ten} { // in this order: see closed below
		t.Run(fmt.Sprintf("from %d address(es)", len(from)), func(t *testing.T) {
			answered, held := holdIdle(t, addr, attack, from)
			// The attacker keeps its sockets up, one request on each in
			// turn, while the newcomers come.
			stop := make(chan struct{})
			var refreshing sync.WaitGroup
			refreshing.Go(func() { keepUp(held, stop) })
			took := newcomerLatencies(t, addr, 20, time.Second)
			close(stop)
			refreshing.Wait()
			t.Logf("%d idle connections from %d addresses (%d answered): newcomer median %v, max %v",
				attack, len(from), answered, took[len(took)/2], took[len(took)-1])
			if len(from) > 1 {
				return
			}
			// The first attack: every connection past the per-client cap
			// took the slot of one of the attacker's own.
			closed := connectionMetric(t, managementAddr, "usersvc_connections_closed_for_newcomers_total")
			if closed < attack-defaultMaxConnectionsPerClient {
				t.Errorf("%v idle connections closed for newcomers; want at least %d, the attack past the per-client cap",
					closed, attack-defaultMaxConnectionsPerClient)
			}
		})
	}
}

// keepUp sends one request on each connection in turn, about 35 a second
// as in the issue, until stop is closed.
func keepUp(conns []net.Conn, stop <-chan struct{}) {
	tick := time.NewTicker(time.Second / 35)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		c := conns[i%len(conns)]
		c.SetDeadline(time.Now().Add(time.Second))
		answerOnce(c) // the server may have closed it: that is the point
		c.SetDeadline(time.Time{})
	}
}

// connectionMetric is the value of a metric of the management listener.
func connectionMetric(t *testing.T, managementAddr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + managementAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	text, _ := io.ReadAll(resp.Body)
	_, samples := parseExposition(t, string(text))
	for _, s := range samples {
		if s.name == name {
			return s.value
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}

// TestReadinessWhenConnectionsFull: /health/ready answers 503 "connections
// full" while every slot of the public listener is held by a request, and
// 200 again once they are gone. Before, it stayed 200.
func TestReadinessWhenConnectionsFull(t *testing.T) {
	t.Parallel()
	const slots = 4
	addr, managementAddr := startService(t, map[string]string{"MAX_CONNECTIONS": fmt.Sprint(slots)})
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := range slots {
		// From another address each, so that no per-client cap plays.
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(fmt.Sprintf("127.0.78.%d", i+1))}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
		// A sign-in whose body never comes: the request holds its slot
		// until the read timeout (15 s).
		io.WriteString(c, "POST /api/v1/auth/token HTTP/1.1\r\nHost: usersvc\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
	}
	resp := waitForReason(t, "http://"+managementAddr+"/health/ready", "connections full", readTimeout-2*time.Second)
	if resp.Header.Get("Retry-After") == "" {
		t.Error("no Retry-After on the 503")
	}
	for _, c := range held {
		c.Close()
	}
	held = nil
	waitForStatus(t, "http://"+managementAddr+"/health/ready", http.StatusOK, 10*time.Second)
}

// waitForReason polls url until it answers 503 with reason in its
// database member, for up to limit.
func waitForReason(t *testing.T, url, reason string, limit time.Duration) *http.Response {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(limit)
	var last string
	for time.Now().Before(deadline) {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			last = resp.Status + " " + string(body)
			if resp.StatusCode == http.StatusServiceUnavailable && strings.Contains(string(body), `"database":"`+reason+`"`) {
				return resp
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s never answered 503 %q within %v; last: %s", url, reason, limit, last)
	return nil
}
