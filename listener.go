package main

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// The public listener shares its connections fairly: at most
// MAX_CONNECTIONS open, at most MAX_CONNECTIONS_PER_CLIENT of one client
// (keyed by clientKey; trusted proxies are exempt), and a newcomer who
// finds no room gets the slot of an idle connection, taken from the client
// holding the most. A connection in the middle of a request is never
// closed for a newcomer. docs/security.md gives the numbers.

// connectionsFullFor is how long the public listener may have no free
// slot before /health/ready answers 503 ("connections full").
const connectionsFullFor = 3 * time.Second

// refusalWriteTimeout bounds the write of the answer to a refused
// connection, so that the accept loop never waits on a client.
const refusalWriteTimeout = 100 * time.Millisecond

// A refused connection lingers up to refusalLinger (fairListener.refuse):
// closed with the client's request still unread, the kernel would send a
// reset, which can reach the client before the answer and hide it. At
// most maxLingeringRefusals linger at once, each reading at most
// refusalDrainBytes; past that a refusal is answered and closed at once,
// reset or not, so a flood of refused connections holds little.
const (
	refusalLinger        = time.Second
	maxLingeringRefusals = 64
	refusalDrainBytes    = 256 << 10
)

// verdict is what becomes of a new connection.
type verdict int

const (
	admitted verdict = iota // it has a slot
	refused                 // its client is at its cap with no idle connection
	waiting                 // every slot is busy: wait for one to come free
)

// connTable counts the public listener's open connections by client and
// knows which are quiet: idle between requests, or new, with no byte of a
// request read since. Only quiet connections are closed for a newcomer.
type connTable struct {
	max, perClient int
	proxies        trustedProxies
	now            func() time.Time
	headerWait     time.Duration // a request's time to arrive after its first byte

	mu        sync.Mutex
	open      int
	quiet     int
	clients   map[string]map[*trackedConn]struct{}
	fullSince time.Time     // since when open == max with none quiet; zero: a slot is free
	changed   chan struct{} // closed when a slot may have come free; nil: nobody waits
	closed    int64         // quiet connections closed for a newcomer
	refused   int64         // newcomers refused at their client's cap
}

// newConnTable is a table of at most max connections, perClient of one
// client; the connections of proxies are held to max only. headerWait is
// how long a request may take to arrive once its first byte has (the
// server's ReadHeaderTimeout).
func newConnTable(max, perClient int, proxies trustedProxies, headerWait time.Duration) *connTable {
	return &connTable{max: max, perClient: perClient, proxies: proxies, now: time.Now, headerWait: headerWait,
		clients: map[string]map[*trackedConn]struct{}{}}
}

// trackedConn is a connection of the table; it leaves the table when
// closed.
type trackedConn struct {
	net.Conn
	table  *connTable
	key    string
	exempt bool        // a trusted proxy: no per-client cap
	quiet  atomic.Bool // written under table.mu; read without it by Read
	since  time.Time   // when it became quiet (table.mu)
	gone   bool        // out of the table (table.mu)
}

// track wraps a new connection; it is quiet until a byte is read from it.
func (t *connTable) track(conn net.Conn) *trackedConn {
	c := &trackedConn{Conn: conn, table: t, key: conn.RemoteAddr().String()}
	if addrPort, err := netip.ParseAddrPort(c.key); err == nil {
		addr := addrPort.Addr().Unmap()
		c.key, c.exempt = clientKey(addr.String()), t.proxies.contains(addr)
	}
	return c
}

// admit finds c a slot: a free one, or the one of a quiet connection,
// which it returns (out of the table already) for the caller to close.
// A client at its cap may only take the slot of a quiet connection of its
// own, and is refused without one; past the global cap, the quiet
// connection is taken from the client holding the most. With no quiet
// connection anywhere the verdict is waiting, and changed is closed when
// that may have changed.
func (t *connTable) admit(c *trackedConn) (victim *trackedConn, v verdict, changed <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	defer t.noteFull()
	switch own := t.clients[c.key]; {
	case !c.exempt && len(own) >= t.perClient:
		if victim = oldestQuiet(own); victim == nil {
			t.refused++
			return nil, refused, nil
		}
	case t.open >= t.max:
		if victim = t.quietOfBusiest(); victim == nil {
			if t.changed == nil {
				t.changed = make(chan struct{})
			}
			return nil, waiting, t.changed
		}
	}
	if victim != nil {
		t.remove(victim)
		t.closed++
	}
	t.add(c)
	return victim, admitted, nil
}

// add puts c in the table, quiet; t.mu is held.
func (t *connTable) add(c *trackedConn) {
	own := t.clients[c.key]
	if own == nil {
		own = map[*trackedConn]struct{}{}
		t.clients[c.key] = own
	}
	own[c] = struct{}{}
	t.open++
	c.quiet.Store(true)
	c.since = t.now()
	t.quiet++
}

// quietOfBusiest is the longest quiet connection of the client holding
// the most connections that has a quiet one; nil if none is quiet.
func (t *connTable) quietOfBusiest() *trackedConn {
	var best *trackedConn
	bestCount := 0
	for _, conns := range t.clients {
		if len(conns) < bestCount {
			continue
		}
		if q := oldestQuiet(conns); q != nil {
			if len(conns) > bestCount || q.since.Before(best.since) {
				best, bestCount = q, len(conns)
			}
		}
	}
	return best
}

// oldestQuiet is the connection of conns quiet the longest; nil when
// none is quiet.
func oldestQuiet(conns map[*trackedConn]struct{}) (best *trackedConn) {
	for c := range conns {
		if c.quiet.Load() && (best == nil || c.since.Before(best.since)) {
			best = c
		}
	}
	return best
}

// remove takes c out of the table; t.mu is held.
func (t *connTable) remove(c *trackedConn) {
	c.gone = true
	own := t.clients[c.key]
	delete(own, c)
	if len(own) == 0 {
		delete(t.clients, c.key)
	}
	t.open--
	if c.quiet.Load() {
		t.quiet--
	}
}

// release takes a closed connection out of the table: its slot is free.
func (t *connTable) release(c *trackedConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !c.gone {
		t.remove(c)
		t.wake()
		t.noteFull()
	}
}

// setQuiet records that c went idle (quiet) or started a request.
func (t *connTable) setQuiet(c *trackedConn, quiet bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c.gone || c.quiet.Load() == quiet {
		return
	}
	c.quiet.Store(quiet)
	if quiet {
		t.quiet++
		c.since = t.now()
		t.wake() // a waiting newcomer may take its slot
	} else {
		t.quiet--
	}
	t.noteFull()
}

// wake tells a newcomer waiting, if any, that a slot may be free; t.mu
// is held.
func (t *connTable) wake() {
	if t.changed != nil {
		close(t.changed)
		t.changed = nil
	}
}

// noteFull records since when no slot is free; t.mu is held.
func (t *connTable) noteFull() {
	switch full := t.open >= t.max && t.quiet == 0; {
	case !full:
		t.fullSince = time.Time{}
	case t.fullSince.IsZero():
		t.fullSince = t.now()
	}
}

// fullFor is how long no slot has been free: every connection open and
// in a request. It is 0 while a slot is free.
func (t *connTable) fullFor() time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fullSince.IsZero() {
		return 0
	}
	return t.now().Sub(t.fullSince)
}

// writeMetrics writes the table's figures in the text exposition format.
func (t *connTable) writeMetrics(w io.Writer) error {
	t.mu.Lock()
	open, quiet, closed, refused := t.open, t.quiet, t.closed, t.refused
	t.mu.Unlock()
	bw := bufio.NewWriter(w)
	e := &expositionWriter{w: bw}
	e.gauge("usersvc_connections_open", "Connections open on the public listener.", float64(open))
	e.gauge("usersvc_connections_idle", "Connections of the public listener idle, or new with nothing received yet.", float64(quiet))
	e.counter("usersvc_connections_closed_for_newcomers_total", "Idle connections closed to give their slot to a newcomer.", float64(closed))
	e.counter("usersvc_connections_refused_total", "New connections refused (429) because their client was at MAX_CONNECTIONS_PER_CLIENT, all busy.", float64(refused))
	if e.err != nil {
		return e.err
	}
	return bw.Flush()
}

// connState follows the public server's connections (http.Server's
// ConnState hook): idle ones are quiet, active ones not, closed ones leave.
func (t *connTable) connState(conn net.Conn, state http.ConnState) {
	c, ok := conn.(*trackedConn)
	if !ok {
		return
	}
	switch state {
	case http.StateActive, http.StateHijacked:
		t.setQuiet(c, false)
	case http.StateIdle:
		t.setQuiet(c, true)
	case http.StateClosed:
		t.release(c)
	}
}

// Read makes a quiet connection busy as soon as a byte of a request
// arrives: a request being received is never closed for a newcomer. The
// rest of the request must then come within headerWait: between two
// requests net/http waits for a few bytes under IDLE_TIMEOUT alone, and
// one byte sent now and then would otherwise keep a slot busy, out of
// every newcomer's reach, for that long. net/http sets its own deadlines
// again once those bytes are in.
func (c *trackedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && c.quiet.Load() {
		c.table.setQuiet(c, false)
		if c.table.headerWait > 0 {
			c.Conn.SetReadDeadline(time.Now().Add(c.table.headerWait)) // the wall clock, whatever t.now is
		}
	}
	return n, err
}

// CloseWrite half-closes the connection when it can (a TCP one), as
// net/http does after an error answer so that the client reads it
// before the close.
func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Close closes the connection and frees its slot.
func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.table.release(c)
	return err
}

// fairListener accepts connections into a connTable.
type fairListener struct {
	net.Listener
	table   *connTable
	refusal []byte        // the answer to a refused connection
	linger  chan struct{} // a slot per refused connection lingering
	done    chan struct{}
	once    sync.Once
}

// shareListener shares l's connections by the rules of table.
func shareListener(l net.Listener, table *connTable) net.Listener {
	return &fairListener{Listener: l, table: table, refusal: refusalResponse(),
		linger: make(chan struct{}, maxLingeringRefusals), done: make(chan struct{})}
}

// Accept returns the next connection that finds a slot. While every slot
// is busy it waits, holding the newcomer, until one comes free.
func (l *fairListener) Accept() (net.Conn, error) {
	for {
		conn, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		c := l.table.track(conn)
		ok, err := l.admit(c)
		if err != nil {
			return nil, err
		}
		if ok {
			return c, nil
		}
	}
}

// admit finds c a slot, closing the quiet connection it takes, or refuses
// c with a 429 answer. It fails when the listener is closed meanwhile.
func (l *fairListener) admit(c *trackedConn) (bool, error) {
	for {
		victim, v, changed := l.table.admit(c)
		if victim != nil {
			victim.Conn.Close()
		}
		switch v {
		case admitted:
			return true, nil
		case refused:
			l.refuse(c.Conn)
			return false, nil
		}
		select {
		case <-changed:
		case <-l.done:
			c.Conn.Close()
			return false, net.ErrClosed
		}
	}
}

// refuse answers conn with the refusal and closes it. When a lingering
// slot is free it waits for the request to begin (HTTP clients take an
// answer sent before their request as a broken connection), answers,
// half-closes and reads the rest of the request away, all within
// refusalLinger, so that the answer arrives instead of a reset. Without a
// slot it answers at once and closes.
func (l *fairListener) refuse(conn net.Conn) {
	select {
	case l.linger <- struct{}{}:
	default:
		conn.SetWriteDeadline(time.Now().Add(refusalWriteTimeout))
		conn.Write(l.refusal)
		conn.Close()
		return
	}
	go func() {
		defer func() { <-l.linger }()
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(refusalLinger))
		if _, err := conn.Read(make([]byte, 4<<10)); err != nil {
			return
		}
		if _, err := conn.Write(l.refusal); err != nil {
			return
		}
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		io.CopyN(io.Discard, conn, refusalDrainBytes)
	}()
}

// Close stops accepting, and wakes an Accept waiting for a slot.
func (l *fairListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// refusalResponse is the HTTP answer to a connection refused because its
// client is at its cap: the problem of ErrTooManyConnections.
func refusalResponse() []byte {
	a := problemFor(ErrTooManyConnections)
	body, err := marshalJSON(a.problem)
	if err != nil {
		panic(err) // a problem holds only strings and ints: it always encodes
	}
	resp := &http.Response{StatusCode: a.Status, ProtoMajor: 1, ProtoMinor: 1, Header: a.Header.Clone(),
		Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)), Close: true}
	resp.Header.Set("Content-Type", "application/problem+json")
	var buf bytes.Buffer
	resp.Write(&buf) // writing to a buffer never fails
	return buf.Bytes()
}
