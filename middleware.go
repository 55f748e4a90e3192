package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
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

// observeRequests gives each request an id (keeping a sane incoming
// X-Request-ID), echoes it, writes one access log line per request and
// counts it in the metrics.
func observeRequests(logger *slog.Logger, m *metrics, next http.Handler) http.Handler {
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
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id))
		next.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		elapsed := time.Since(start)
		m.observe(r.Method, r.Pattern, rec.status, elapsed)
		logger.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("method", r.Method),
			slog.String("route", r.Pattern),
			slog.String("path", r.URL.Path),
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
				slog.String("path", r.URL.Path),
				slog.String("request_id", requestID(r.Context())),
			)
			if rec.status == 0 {
				writeProblem(w, problemFor(errPanic))
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
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		allowed := allowedMethods(mux, r)
		if len(allowed) == 0 {
			writeProblem(w, problemFor(&requestError{status: http.StatusNotFound, detail: fmt.Sprintf("No route matches %s.", r.URL.Path)}))
			return
		}
		allow := strings.Join(allowed, ", ")
		writeProblem(w, problemFor(&requestError{status: http.StatusMethodNotAllowed,
			detail: fmt.Sprintf("%s does not allow %s; allowed: %s.", r.URL.Path, r.Method, allow),
			header: http.Header{"Allow": {allow}}}))
	})
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
