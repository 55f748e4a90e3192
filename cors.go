package main

import (
	"net/http"
	"slices"
	"strings"
)

// CORS (the Fetch standard's CORS protocol) for browser apps on other
// origins. Tokens travel in the Authorization header, never in cookies,
// so no credentials mode is needed: Access-Control-Allow-Credentials is
// never sent, and "*" may stand for every origin.
const (
	corsAllowMethods  = "GET, POST, PUT, PATCH, DELETE"
	corsAllowHeaders  = "Authorization, Content-Type, If-Match, If-None-Match, Idempotency-Key, X-Request-ID"
	corsExposeHeaders = "ETag, Location, Link, Retry-After, X-Request-ID, Idempotent-Replayed, WWW-Authenticate"
	corsMaxAge        = "600"
)

// corsOrigins are the allowed origins; "*" allows every one.
type corsOrigins []string

func (o corsOrigins) allows(origin string) bool {
	return slices.Contains(o, "*") || slices.Contains(o, origin)
}

// allowOrigin is the Access-Control-Allow-Origin value for origin.
func (o corsOrigins) allowOrigin(origin string) string {
	if slices.Contains(o, "*") {
		return "*"
	}
	return origin
}

// cors answers preflight requests (OPTIONS with Origin and
// Access-Control-Request-Method): 204 with what may be sent for an
// allowed origin, a 403 problem for any other. On other requests from an
// allowed origin it adds the headers that let the page read the answer.
// Requests without Origin (curl, services) pass untouched.
func (s *server) cors(origins corsOrigins, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		if preflight {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
		}
		allowed := origins.allows(origin)
		switch {
		case preflight && !allowed:
			s.writeError(w, r, errOriginNotAllowed)
		case preflight:
			h.Set("Access-Control-Allow-Origin", origins.allowOrigin(origin))
			h.Set("Access-Control-Allow-Methods", corsAllowMethods)
			h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
			h.Set("Access-Control-Max-Age", corsMaxAge)
			w.WriteHeader(http.StatusNoContent)
		case allowed:
			h.Set("Access-Control-Allow-Origin", origins.allowOrigin(origin))
			h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
			next.ServeHTTP(w, r)
		default:
			next.ServeHTTP(w, r) // no CORS headers: the browser keeps the answer from the page
		}
	})
}

// parseOrigins reads CORS_ALLOWED_ORIGINS: "*", or origins such as
// https://app.example.com, comma-separated. It returns the bad entries.
func parseOrigins(value string) (corsOrigins, []string) {
	var origins corsOrigins
	var bad []string
	for _, item := range strings.Split(value, ",") {
		item = strings.TrimSpace(item)
		switch {
		case item == "":
		case item == "*", validOrigin(item):
			origins = append(origins, item)
		default:
			bad = append(bad, item)
		}
	}
	return origins, bad
}

// validOrigin reports whether s is an origin as browsers send it:
// scheme://host[:port], with no path, and lower case.
func validOrigin(s string) bool {
	scheme, rest, ok := strings.Cut(s, "://")
	return ok && (scheme == "http" || scheme == "https") && rest != "" &&
		!strings.ContainsAny(rest, "/?#@ ") && s == strings.ToLower(s)
}
