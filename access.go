package main

import (
	"context"
	"net/http"
)

// tokenCheck is when a route's token is checked.
type tokenCheck int

const (
	// noToken: the route is public.
	noToken tokenCheck = iota
	// tokenFirst: guard looks the token up and applies the access rule
	// before the handler runs.
	tokenFirst
	// tokenInQuery: the handler checks the token in the same statement
	// that reads its data (one round trip), then applies the route's rule
	// to the caller that statement found, with server.authorize.
	tokenInQuery
)

type accessKey struct{}

// guard wraps a route's handler with its access rule. For tokenFirst it
// authenticates and authorizes before the handler runs, and passes the
// caller on in the request's context; for tokenInQuery it passes the rule
// on, for the handler's authorize.
func (s *server) guard(rt route) http.HandlerFunc {
	switch rt.check {
	case tokenInQuery:
		return func(w http.ResponseWriter, r *http.Request) {
			rt.handler(w, r.WithContext(context.WithValue(r.Context(), accessKey{}, rt.access)))
		}
	case tokenFirst:
		return func(w http.ResponseWriter, r *http.Request) {
			r, _, err := s.signInAs(r, rt.access)
			if err != nil {
				s.writeError(w, r, err)
				return
			}
			rt.handler(w, r)
		}
	default:
		return rt.handler
	}
}

// authorize applies the route's access rule to the caller that a
// tokenInQuery handler's statement found.
func (s *server) authorize(r *http.Request, caller *Caller) error {
	return s.allow(routeRule(r), caller, r)
}

// routeRule is the access rule guard passed on to a tokenInQuery handler;
// a route registered without one is admins only.
func routeRule(r *http.Request) access {
	if rule, ok := r.Context().Value(accessKey{}).(access); ok {
		return rule
	}
	return adminOnly
}

// signIn authenticates the request's caller and applies the route's access
// rule, for the locking path of a tokenInQuery route.
func (s *server) signIn(r *http.Request) (*http.Request, *Caller, error) {
	return s.signInAs(r, routeRule(r))
}

// signInAs authenticates the request's caller (nil when anonymous) and
// applies rule; the request it returns carries the caller.
func (s *server) signInAs(r *http.Request, rule access) (*http.Request, *Caller, error) {
	caller, err := s.authenticate(r)
	if err == nil {
		err = s.allow(rule, caller, r)
	}
	if err != nil {
		return r, nil, err
	}
	if caller != nil {
		r = r.WithContext(withCaller(r.Context(), caller))
	}
	return r, caller, nil
}

// allow applies rule to the request's caller (nil when anonymous): nil
// lets it through. Anonymous callers are decided here; a signed-in one by
// access.permits, with the user the path names.
func (s *server) allow(rule access, caller *Caller, r *http.Request) error {
	switch {
	case rule == public:
		return nil
	case caller == nil && rule == adminOrSignup && s.allowSignup && !s.startup.done():
		return ErrStarting // the bootstrap admin's name is not taken yet
	case caller == nil && rule == adminOrSignup && s.allowSignup:
		return nil
	case caller == nil:
		return ErrUnauthenticated
	}
	var target int64
	if rule == selfOrAdmin && !caller.isAdmin() {
		ref, err := pathUser(r)
		if err != nil {
			return err
		}
		target = ref.resolve(caller)
	}
	return rule.permits(caller, target)
}

// authenticate finds the caller from the Authorization header: nil
// without one, ErrUnauthenticated with a malformed, expired or revoked
// one. A provisioning token (its prefix says so) is looked up in its own
// table, and the caller it gives is the token, with its scope.
func (s *server) authenticate(r *http.Request) (*Caller, error) {
	header := r.Header.Get("Authorization")
	if header == "" {
		return nil, nil
	}
	if hash, ok := provisioningTokenHash(header); ok {
		return s.store.AuthenticateProvisioning(r.Context(), hash)
	}
	hash, err := requestTokenHash(r)
	if err != nil {
		return nil, err
	}
	return s.store.Authenticate(r.Context(), hash)
}

// requestTokenHash returns the hash of the request's bearer sign-in
// token, or ErrUnauthenticated when there is none or it is malformed. It
// does not touch the database. A provisioning token is refused as the
// route's rule refuses one (permits): these callers check sign-in tokens
// only, on routes outside any provisioning scope.
func requestTokenHash(r *http.Request) ([]byte, error) {
	header := r.Header.Get("Authorization")
	if _, ok := provisioningTokenHash(header); ok {
		if err := routeRule(r).permits(&Caller{Scope: scopeSCIM}, 0); err != nil {
			return nil, err
		}
		return nil, ErrUnauthenticated
	}
	token, ok := bearerToken(header)
	if !ok {
		return nil, ErrUnauthenticated
	}
	hash, ok := parseToken(token)
	if !ok {
		return nil, ErrUnauthenticated
	}
	return hash, nil
}

// provisioningTokenHash returns the hash of the provisioning token an
// Authorization header carries, if it carries one.
func provisioningTokenHash(header string) ([]byte, bool) {
	token, ok := bearerToken(header)
	if !ok {
		return nil, false
	}
	return parseTokenWith(provisioningTokenPrefix, token)
}
