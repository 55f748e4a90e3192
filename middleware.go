package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path"
	"runtime/debug"
	"slices"
	"strings"
	"time"
)

type requestIDKey struct{}

// requestID returns the id of the request that ctx belongs to.
func requestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// maxRequestIDLen bounds an incoming X-Request-ID.
const maxRequestIDLen = 128

// acceptableRequestID reports whether a client's X-Request-ID is safe to
// keep: short and of visible ASCII, so it cannot forge log lines or headers.
func acceptableRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [12]byte
	rand.Read(b[:]) // never fails (crypto/rand documentation)
	return hex.EncodeToString(b[:])
}

// statusRecorder remembers the status and size of a response.
type statusRecorder struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (s *statusRecorder) WriteHeader(status int) {
	if s.status == 0 {
		s.status = status
	}
	s.ResponseWriter.WriteHeader(status)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	n, err := s.ResponseWriter.Write(b)
	s.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the real writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

type clientAddressKey struct{}

// clientAddress is the address of the client that sent r, as
// observeRequests found it: what the rate limits count and the logs show.
func clientAddress(r *http.Request) string {
	if addr, ok := r.Context().Value(clientAddressKey{}).(string); ok {
		return addr
	}
	return peerAddress(r)
}

// requestClientKey is what the limits count the client of r under:
// clientKey of its address.
func requestClientKey(r *http.Request) string { return clientKey(clientAddress(r)) }

// clientKey is what the limits count a client address under: an IPv4
// address as it is, an IPv6 address by its /64, the block one subscriber
// is usually given whole, so that rotating through it makes no new
// clients. Every limiter keys by it; logs and events keep the full address.
func clientKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		return addr
	}
	if ip = ip.Unmap().WithZone(""); ip.Is4() {
		return ip.String()
	}
	return netip.PrefixFrom(ip, 64).Masked().String()
}

// peerAddress is the address of the connection's other end, without port.
func peerAddress(r *http.Request) string {
	if addrPort, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return addrPort.Addr().Unmap().String()
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// trustedProxies are the peers whose X-Forwarded-For header is believed.
type trustedProxies []netip.Prefix

func (t trustedProxies) contains(addr netip.Addr) bool {
	for _, prefix := range t {
		if prefix.Contains(addr) {
			return true
		}
	}
	return false
}

// sentBy reports whether r's peer is a trusted proxy, whose
// X-Forwarded-* headers are believed.
func (t trustedProxies) sentBy(r *http.Request) bool {
	addr, err := netip.ParseAddr(peerAddress(r))
	return err == nil && t.contains(addr)
}

// clientOf finds the client behind r: the peer, unless the peer is a
// trusted proxy; then the right-most X-Forwarded-For address that is not
// a trusted proxy itself (those left of it could be forged by the client).
// A header that does not parse leaves the last trustworthy hop.
func (t trustedProxies) clientOf(r *http.Request) string {
	peer := peerAddress(r)
	addr, err := netip.ParseAddr(peer)
	if err != nil || !t.contains(addr) {
		return peer
	}
	hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
	for i := len(hops) - 1; i >= 0; i-- {
		hop, ok := parseForwardedHop(hops[i])
		if !ok {
			return addr.String()
		}
		addr = hop
		if !t.contains(addr) {
			return addr.String()
		}
	}
	return addr.String()
}

// parseForwardedHop reads one X-Forwarded-For entry as proxies write
// it: an address ("192.0.2.1", "2001:db8::1"), an address with its port
// ("192.0.2.1:1234", "[2001:db8::1]:443"), or a bracketed IPv6 address
// ("[2001:db8::1]"). The port is dropped: the client is the address.
func parseForwardedHop(hop string) (netip.Addr, bool) {
	hop = strings.TrimSpace(hop)
	if addr, err := netip.ParseAddr(hop); err == nil {
		return addr.Unmap(), true
	}
	if addrPort, err := netip.ParseAddrPort(hop); err == nil {
		return addrPort.Addr().Unmap(), true
	}
	if inner, ok := strings.CutPrefix(hop, "["); ok {
		if inner, ok = strings.CutSuffix(inner, "]"); ok {
			if addr, err := netip.ParseAddr(inner); err == nil && addr.Is6() {
				return addr.Unmap(), true
			}
		}
	}
	return netip.Addr{}, false
}

// maxLoggedPath bounds the path written into log lines and problems.
const maxLoggedPath = 256

// observeRequests gives each request an id (keeping a sane incoming
// X-Request-ID) and its client address, echoes the id, writes one access
// log line per request and counts it in the metrics.
func observeRequests(logger *slog.Logger, m *metrics, proxies trustedProxies, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		m.inFlight.Add(1)
		defer m.inFlight.Add(-1)
		id := r.Header.Get("X-Request-ID")
		if !acceptableRequestID(id) {
			id = newRequestID()
		}
		w.Header().Set("X-Request-ID", id)
		rec := &statusRecorder{ResponseWriter: w}
		// The mux records the matched pattern on the request it is given,
		// so keep that request to read the pattern afterwards.
		client := proxies.clientOf(r)
		ctx := context.WithValue(r.Context(), requestIDKey{}, id)
		r = r.WithContext(context.WithValue(ctx, clientAddressKey{}, client))
		next.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		elapsed := time.Since(start)
		m.observe(r.Method, r.Pattern, rec.status, elapsed)
		logger.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("method", r.Method),
			slog.String("route", r.Pattern),
			slog.String("path", truncate(r.URL.Path, maxLoggedPath)),
			slog.String("client_address", client),
			slog.Int("status", rec.status),
			slog.Int("bytes", rec.bytes),
			slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
			slog.String("request_id", id),
		)
	})
}

// recoverPanics turns a panic in a handler into a logged 500 problem, so
// one bad request never takes the server down.
func recoverPanics(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler { // the handler's way to abort: re-panic as asked
				panic(v)
			}
			logger.LogAttrs(r.Context(), slog.LevelError, "panic serving request",
				slog.String("panic", fmt.Sprint(v)),
				slog.String("stack", string(debug.Stack())),
				slog.String("method", r.Method),
				slog.String("path", truncate(r.URL.Path, maxLoggedPath)),
				slog.String("request_id", requestID(r.Context())),
			)
			if rec.status == 0 {
				writeErrorFor(w, r, errPanic)
			}
		}()
		next.ServeHTTP(rec, r)
	})
}

// errPanic stands for a recovered panic, already logged in full.
var errPanic = errors.New("panic serving request")

// commonHeaders sets the headers every response carries: no MIME
// sniffing, and no caching anywhere, since responses hold tokens and
// personal data.
func commonHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("Cache-Control", "no-store")
		next.ServeHTTP(w, r)
	})
}

// problemsForUnmatched answers requests that match no route (404) or a
// route with another method (405, with the Allow header the mux would
// send) with problems instead of the mux's plain text. Requests the mux
// redirects to a cleaned path go on to the mux.
func problemsForUnmatched(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if clean := cleanPath(r.URL.Path); clean != r.URL.Path {
			// The mux would redirect with an HTML body; a path that is not
			// in canonical form names no route here.
			writeErrorFor(w, r, &requestError{status: http.StatusNotFound,
				detail: fmt.Sprintf("No route matches %s; paths are not cleaned: send %s.",
					truncate(r.URL.Path, maxLoggedPath), truncate(clean, maxLoggedPath))})
			return
		}
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		allowed := allowedMethods(mux, r)
		if len(allowed) == 0 {
			writeErrorFor(w, r, &requestError{status: http.StatusNotFound, detail: fmt.Sprintf("No route matches %s.", truncate(r.URL.Path, maxLoggedPath))})
			return
		}
		allow := strings.Join(allowed, ", ")
		writeErrorFor(w, r, &requestError{status: http.StatusMethodNotAllowed,
			detail: fmt.Sprintf("%s does not allow %s; allowed: %s.", truncate(r.URL.Path, maxLoggedPath), r.Method, allow),
			header: http.Header{"Allow": {allow}}})
	})
}

// cleanPath is the canonical form of p, as the mux computes it: no
// empty, "." or ".." segments, a trailing slash kept.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	clean := path.Clean(p)
	if p[len(p)-1] == '/' && clean != "/" {
		clean += "/"
	}
	return clean
}

// routeMethods are the methods allowedMethods tries.
var routeMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace}

// allowedMethods returns, sorted, the methods for which the mux has a
// route at r's path: empty when the path matches no route at all.
func allowedMethods(mux *http.ServeMux, r *http.Request) []string {
	var allowed []string
	probe := r.Clone(r.Context())
	for _, method := range routeMethods {
		probe.Method = method
		if _, pattern := mux.Handler(probe); pattern != "" {
			allowed = append(allowed, method)
		}
	}
	slices.Sort(allowed)
	return allowed
}
