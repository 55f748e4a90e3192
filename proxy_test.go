package main

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// faultProxy is a TCP proxy between the service and the database that a
// test can break: down (every open connection is cut and new ones are
// closed at once) or black-holed (bytes are swallowed: no answer, no reset).
type faultProxy struct {
	listener net.Listener
	target   string

	mu        sync.Mutex
	down      bool
	blackhole bool
	delay     time.Duration
	conns     map[net.Conn]struct{}
	// cutOn, when set, is a string of the client's traffic after which
	// the proxy cuts that connection once (cutOnce), and then goes down
	// too when downAfterCut is set.
	cutOn        string
	downAfterCut bool
}

func startFaultProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{listener: ln, target: target, conns: map[net.Conn]struct{}{}}
	go p.acceptLoop()
	t.Cleanup(func() {
		ln.Close()
		p.setDown(true)
	})
	return p
}

func (p *faultProxy) addr() string { return p.listener.Addr().String() }

// newProxiedApp returns an app whose fresh database is reached only
// through a fault proxy, with the admin signed in.
func newProxiedApp(t *testing.T) (*testApp, *faultProxy, *sql.DB) {
	t.Helper()
	_, serverCfg := testServer(t)
	proxy := startFaultProxy(t, serverCfg.Addr)
	db := newTestDatabase(t, proxy.addr())
	app := newTestAppOn(t, db)
	app.bootstrapAdmin()
	return app, proxy, db
}

// setDown cuts every open connection and refuses new ones while down.
func (p *faultProxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	if down {
		for c := range p.conns {
			c.Close()
		}
	}
}

// setDelay holds every chunk of traffic for d before passing it on.
func (p *faultProxy) setDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// setBlackhole makes the proxy swallow traffic in both directions, and
// cuts the connections that were swallowed once it ends.
func (p *faultProxy) setBlackhole(on bool) {
	p.mu.Lock()
	p.blackhole = on
	p.mu.Unlock()
}

func (p *faultProxy) acceptLoop() {
	for {
		client, err := p.listener.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			client.Close()
			continue
		}
		server, err := net.DialTimeout("tcp", p.target, time.Second)
		if err != nil {
			client.Close()
			continue
		}
		if !p.track(client, server) {
			continue
		}
		go p.pipe(client, server, true)
		go p.pipe(server, client, false)
	}
}

// track records a connection's two sides so that setDown can cut them,
// unless the proxy went down while the connection was being set up: then
// it closes them and returns false. (The check and the record are under
// one lock, or a connection accepted just as setDown ran would outlive
// the outage.)
func (p *faultProxy) track(conns ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		for _, c := range conns {
			c.Close()
		}
		return false
	}
	for _, c := range conns {
		p.conns[c] = struct{}{}
	}
	return true
}

// cutOnce arms the proxy: the next chunk the client sends that holds
// pattern reaches the server, and then the client's connection is cut,
// so the server acts on it and its answer is lost. With down, the proxy
// also refuses every connection from then on.
func (p *faultProxy) cutOnce(pattern string, down bool) {
	p.mu.Lock()
	p.cutOn, p.downAfterCut = pattern, down
	p.mu.Unlock()
}

// pipe copies from src to dst until either side closes, dropping the
// bytes while the black hole is on. upstream is the client's direction,
// where cutOnce looks for its pattern.
func (p *faultProxy) pipe(src, dst net.Conn, upstream bool) {
	defer func() {
		src.Close()
		dst.Close()
		p.mu.Lock()
		delete(p.conns, src)
		delete(p.conns, dst)
		p.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			swallow, delay := p.blackhole, p.delay
			cut := upstream && p.cutOn != "" && bytes.Contains(buf[:n], []byte(p.cutOn))
			if cut {
				p.cutOn = ""
			}
			p.mu.Unlock()
			time.Sleep(delay)
			if cut {
				p.cut(src, dst, buf[:n])
				return
			}
			if !swallow {
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

// cut passes chunk, which armed cutOnce, from client to server and ends
// the connection: the client's side first, so that no answer can reach
// it (the server's may come at once), then the server's for writing
// only, after the chunk, so the server reads all of it and acts on it.
// With downAfterCut the proxy goes down before that, every other
// connection cut, so the client finds no way to the database when it
// learns of the loss.
func (p *faultProxy) cut(client, server net.Conn, chunk []byte) {
	p.mu.Lock()
	if p.downAfterCut {
		p.down = true
		for c := range p.conns {
			if c != client && c != server {
				c.Close()
			}
		}
	}
	p.mu.Unlock()
	client.Close()
	server.Write(chunk)
	if tcp, ok := server.(*net.TCPConn); ok {
		tcp.CloseWrite()
	}
}

// send sends r through the app's handler, as the admin unless r says who.
func (a *testApp) send(r *http.Request) *httptest.ResponseRecorder {
	if _, ok := r.Header["Authorization"]; !ok && a.adminToken != "" {
		r.Header.Set("Authorization", "Bearer "+a.adminToken)
	}
	return a.exchange(a.handler, publicListener, r)
}

func splitAddr(t *testing.T, addr string) (host, port string) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return host, port
}

// waitForLogField waits for a JSON log line with the given msg and returns
// its string field.
func waitForLogField(t *testing.T, logs *syncBuffer, msg, field string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(logs.String(), "\n") {
			var entry map[string]any
			if json.Unmarshal([]byte(line), &entry) == nil && entry["msg"] == msg {
				if v, ok := entry[field].(string); ok {
					return v
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no log line %q with %s in: %s", msg, field, logs)
	return ""
}

var _ io.Writer = (*syncBuffer)(nil)
