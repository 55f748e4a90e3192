package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"
)

// fakeConn is a connection from a given address that records its Close.
type fakeConn struct {
	net.Conn
	remote net.Addr
	closed bool
}

func (c *fakeConn) RemoteAddr() net.Addr { return c.remote }
func (c *fakeConn) Close() error         { c.closed = true; return nil }

// fakeTable is a connTable whose clock moves a millisecond at each reading,
// so that the connections' ages are distinct and in order.
func fakeTable(max, perClient int, proxies ...string) (*connTable, *time.Time) {
	var trusted trustedProxies
	for _, p := range proxies {
		trusted = append(trusted, netip.MustParsePrefix(p))
	}
	t := newConnTable(max, perClient, trusted, 0)
	clock := time.Unix(1_000_000, 0)
	t.now = func() time.Time {
		clock = clock.Add(time.Millisecond)
		return clock
	}
	return t, &clock
}

// dialFake is a new connection from addr ("ip:port") and the table's
// verdict on it.
func dialFake(t *testing.T, table *connTable, addr string) (*trackedConn, *trackedConn, verdict) {
	t.Helper()
	c := table.track(&fakeConn{remote: net.TCPAddrFromAddrPort(netip.MustParseAddrPort(addr))})
	victim, v, _ := table.admit(c)
	return c, victim, v
}

// wantAdmitted dials addr and checks the verdict is admitted, closing
// wantVictim (nil: none).
func wantAdmitted(t *testing.T, table *connTable, addr string, wantVictim *trackedConn) *trackedConn {
	t.Helper()
	c, victim, v := dialFake(t, table, addr)
	if v != admitted || victim != wantVictim {
		t.Fatalf("%s: verdict %d, victim %v; want admitted, victim %v", addr, v, victim, wantVictim)
	}
	return c
}

// TestConnTablePerClientCap: a client at its cap takes the slot of its own
// quiet connection, the one idle the longest; with none quiet it is
// refused; another client is not affected.
func TestConnTablePerClientCap(t *testing.T) {
	t.Parallel()
	table, _ := fakeTable(10, 2)
	a1 := wantAdmitted(t, table, "192.0.2.1:1", nil)
	a2 := wantAdmitted(t, table, "192.0.2.1:2", nil)
	a3 := wantAdmitted(t, table, "192.0.2.1:3", a1) // a1 is quiet the longest
	table.connState(a2, http.StateActive)
	table.connState(a3, http.StateActive)
	if _, victim, v := dialFake(t, table, "192.0.2.1:4"); v != refused || victim != nil {
		t.Fatalf("a client at its cap, all busy: verdict %d, victim %v; want refused", v, victim)
	}
	wantAdmitted(t, table, "192.0.2.2:1", nil)
	table.connState(a3, http.StateIdle)
	wantAdmitted(t, table, "192.0.2.1:5", a3)
	if table.open != 3 || table.quiet != 2 {
		t.Errorf("open %d, quiet %d; want 3 and 2", table.open, table.quiet)
	}
}

// TestConnTableGlobalCap: past the global cap, the quiet connection closed
// is the oldest of the client holding the most; busy connections are never
// taken; with every slot busy a newcomer waits, is woken when one closes,
// and the table counts how long no slot has been free.
func TestConnTableGlobalCap(t *testing.T) {
	t.Parallel()
	table, _ := fakeTable(4, 4)
	b1 := wantAdmitted(t, table, "192.0.2.2:1", nil)
	a1 := wantAdmitted(t, table, "192.0.2.1:1", nil)
	a2 := wantAdmitted(t, table, "192.0.2.1:2", nil)
	a3 := wantAdmitted(t, table, "192.0.2.1:3", nil)
	c1 := wantAdmitted(t, table, "192.0.2.3:1", a1) // A holds three, B one: A's oldest goes
	for _, c := range []*trackedConn{a2, a3, c1} {
		table.connState(c, http.StateActive)
	}
	d1 := wantAdmitted(t, table, "192.0.2.4:1", b1) // A is busy: B's quiet one goes
	table.connState(d1, http.StateActive)
	if got := table.fullFor(); got <= 0 {
		t.Fatalf("every slot busy, fullFor %v; want > 0", got)
	}
	newcomer := table.track(&fakeConn{remote: net.TCPAddrFromAddrPort(netip.MustParseAddrPort("192.0.2.5:1"))})
	victim, v, changed := table.admit(newcomer)
	if v != waiting || victim != nil || changed == nil {
		t.Fatalf("every slot busy: verdict %d, victim %v; want waiting", v, victim)
	}
	a2.Close()
	select {
	case <-changed:
	default:
		t.Fatal("a closed connection did not wake the waiting newcomer")
	}
	if got := table.fullFor(); got != 0 {
		t.Errorf("a slot is free, fullFor %v; want 0", got)
	}
	if victim, v, _ := table.admit(newcomer); v != admitted || victim != nil {
		t.Fatalf("after a close: verdict %d, victim %v; want admitted", v, victim)
	}
	a2.Close() // closed twice: counted once
	if table.open != 4 {
		t.Errorf("open %d; want 4", table.open)
	}
}

// TestConnTableIdleWakesWaiting: a busy connection going idle wakes a
// newcomer waiting, which takes its slot.
func TestConnTableIdleWakesWaiting(t *testing.T) {
	t.Parallel()
	table, _ := fakeTable(1, 1)
	a := wantAdmitted(t, table, "192.0.2.1:1", nil)
	table.connState(a, http.StateActive)
	_, _, changed := table.admit(table.track(&fakeConn{remote: net.TCPAddrFromAddrPort(netip.MustParseAddrPort("192.0.2.2:1"))}))
	table.connState(a, http.StateIdle)
	select {
	case <-changed:
	default:
		t.Fatal("an idle connection did not wake the waiting newcomer")
	}
	wantAdmitted(t, table, "192.0.2.2:2", a)
	if !a.Conn.(*fakeConn).closed && !a.gone {
		t.Error("the idle connection was not taken out of the table")
	}
}

// TestConnTableReceivingIsBusy: a connection that has received a byte of a
// request is busy before the server has read the whole request.
func TestConnTableReceivingIsBusy(t *testing.T) {
	t.Parallel()
	table, _ := fakeTable(1, 1)
	server, client := net.Pipe()
	defer client.Close()
	c := table.track(&remoteConn{Conn: server, remote: net.TCPAddrFromAddrPort(netip.MustParseAddrPort("192.0.2.1:1"))})
	if _, v, _ := table.admit(c); v != admitted {
		t.Fatal("not admitted")
	}
	go client.Write([]byte("G"))
	if _, err := c.Read(make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	if _, victim, v := dialFake(t, table, "192.0.2.2:1"); v != waiting || victim != nil {
		t.Errorf("a connection receiving a request: verdict %d, victim %v; want waiting", v, victim)
	}
	c.Close()
}

// remoteConn is a connection with another remote address.
type remoteConn struct {
	net.Conn
	remote net.Addr
}

func (c *remoteConn) RemoteAddr() net.Addr { return c.remote }

// TestConnTableProxiesAndPrefixes: a trusted proxy has no per-client cap,
// only the global one; IPv6 addresses in one /64 are one client, those of
// another /64 are not.
func TestConnTableProxiesAndPrefixes(t *testing.T) {
	t.Parallel()
	table, _ := fakeTable(3, 1, "10.0.0.0/8")
	p1 := wantAdmitted(t, table, "10.0.0.1:1", nil)
	p2 := wantAdmitted(t, table, "10.0.0.1:2", nil)
	v1 := wantAdmitted(t, table, "[2001:db8:1:2::1]:1", nil)
	v2 := wantAdmitted(t, table, "[2001:db8:1:2:ffff::9]:1", v1) // the same /64, at its cap of 1
	wantAdmitted(t, table, "[2001:db8:1:3::1]:1", p1)            // another /64; the global cap: the proxy holds the most
	if v2.key != "2001:db8:1:2::/64" {
		t.Errorf("key of an IPv6 client: %q", v2.key)
	}
	mapped := wantAdmitted(t, table, "[::ffff:192.0.2.7]:1", p2) // replaces the proxy's second, the oldest among ties
	if mapped.key != "192.0.2.7" {
		t.Errorf("key of an IPv4-mapped client: %q", mapped.key)
	}
}

// TestClientKey: IPv4 by address, IPv6 by /64, anything else as it is.
func TestClientKey(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"192.0.2.1":             "192.0.2.1",
		"::ffff:192.0.2.1":      "192.0.2.1",
		"2001:db8:1:2:3:4:5:6":  "2001:db8:1:2::/64",
		"2001:db8:1:2::1":       "2001:db8:1:2::/64",
		"fe80::1%eth0":          "fe80::/64",
		"not an address":        "not an address",
		"2001:db8:1:3:ffff::ff": "2001:db8:1:3::/64",
	} {
		if got := clientKey(in); got != want {
			t.Errorf("clientKey(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSharedListenerWaitsWhenAllBusy: through a real listener, past the
// cap with every connection receiving a request, a newcomer waits until
// one closes, and then has its slot.
func TestSharedListenerWaitsWhenAllBusy(t *testing.T) {
	t.Parallel()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := shareListener(inner, newConnTable(2, 3, nil, 0))
	defer l.Close()
	accepted := make(chan net.Conn, 4)
	go func() {
		defer close(accepted)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", inner.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	busy := func() net.Conn { // a connection the server has read a byte from
		dial().Write([]byte("G"))
		c := <-accepted
		if _, err := c.Read(make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		return c
	}
	first, second := busy(), busy()
	third := dial()
	select {
	case c := <-accepted:
		t.Fatalf("a connection was accepted past the cap: %v", c.RemoteAddr())
	default:
	}
	first.Close()
	if c := <-accepted; c == nil || c.RemoteAddr().String() != third.LocalAddr().String() {
		t.Fatalf("after a close, accepted %v; want the waiting %v", c, third.LocalAddr())
	}
	second.Close()
	l.Close()
	for range accepted { // the accept loop ends when the listener closes
	}
}

// TestRefusalResponse: a refused connection is answered with a 429
// problem that closes the connection.
func TestRefusalResponse(t *testing.T) {
	t.Parallel()
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(refusalResponse())), nil)
	if err != nil {
		t.Fatal(err)
	}
	var p problem
	err = json.NewDecoder(resp.Body).Decode(&p)
	if err != nil || resp.StatusCode != http.StatusTooManyRequests || !resp.Close || resp.Header.Get("Retry-After") == "" ||
		resp.Header.Get("Content-Type") != "application/problem+json" || p.Status != http.StatusTooManyRequests || p.Detail == "" {
		t.Errorf("refusal: %+v %+v %v", resp, p, err)
	}
}

// TestDripKeepsNoSlotBusy: one byte sent on a keep-alive connection
// between requests makes it busy, out of a newcomer's reach; the rest of
// the request must then come within the table's headerWait, not within
// the server's IdleTimeout, or the connection is closed.
func TestDripKeepsNoSlotBusy(t *testing.T) {
	t.Parallel()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	table := newConnTable(8, 8, nil, 200*time.Millisecond)
	srv := &http.Server{
		Handler:     http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}),
		IdleTimeout: time.Minute,
		ConnState:   table.connState,
	}
	go srv.Serve(shareListener(inner, table))
	t.Cleanup(func() { srv.Close() })

	conn, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, err := io.WriteString(conn, "G"); err != nil { // and nothing more
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(20 * time.Second)) // a third of IdleTimeout
	if _, err := conn.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("a connection that sent one byte after its request: got %v, want it closed (EOF) well before IdleTimeout", err)
	}
}

// TestRefusalArrivesDespiteABody: a client refused at its cap that has
// already sent a large request reads the 429, not a reset: the listener
// half-closes and drains before it closes.
func TestRefusalArrivesDespiteABody(t *testing.T) {
	t.Parallel()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	table := newConnTable(8, 1, nil, time.Minute)
	srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), ConnState: table.connState}
	go srv.Serve(shareListener(inner, table))
	t.Cleanup(func() { srv.Close() })

	holder, err := net.Dial("tcp", inner.Addr().String()) // the client's one slot, kept busy
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	io.WriteString(holder, "GET / HTTP/1.1\r\n")
	waitUntil(t, "the holder to be busy", func() bool {
		table.mu.Lock()
		defer table.mu.Unlock()
		return table.open == 1 && table.quiet == 0
	})
	body := bytes.Repeat([]byte("x"), 200<<10)
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	for i := range 20 {
		resp, err := client.Post("http://"+inner.Addr().String()+"/", "text/plain", bytes.NewReader(body))
		if err != nil {
			t.Errorf("refused POST %d: %v, want the 429", i, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests {
			t.Errorf("refused POST %d: %d, want 429", i, resp.StatusCode)
		}
	}
}
