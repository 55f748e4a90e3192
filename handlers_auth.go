package main

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strings"
)

// tokenResponse is the body of a successful login (RFC 6749 section 5.1).
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
}

// handleLogin exchanges a username (or email) and password for a token.
// A wrong password, an unknown user and an inactive user get the same 401
// after the same bcrypt work, so the answer tells nothing about who exists.
func (s *server) handleLogin(w http.ResponseWriter, r *http.Request) {
	login, password, err := readLogin(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	nameKey, addrKey := loginKeys(r, login)
	if err := s.loginBlocked(nameKey, addrKey); err != nil {
		s.writeError(w, r, err)
		return
	}
	var creds Credentials
	if canonicalLogin(login) { // anything else names no one: the dummy hash answers
		creds, err = s.store.CredentialsFor(r.Context(), login)
		if err != nil && !errors.Is(err, ErrNotFound) {
			s.writeError(w, r, err)
			return
		}
	}
	// creds.PasswordHash is empty for an unknown user: Matches then burns
	// the same time on a dummy hash and answers false.
	ok, err := s.passwords.Matches(r.Context(), creds.PasswordHash, password)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("login: %w", err))
		return
	}
	if ok && creds.IsActive && len(password) <= passwordMaxBytes {
		token, hash := newToken()
		err := s.store.CreateToken(r.Context(), creds.UserID, creds.PasswordHash, hash, s.tokenTTL)
		if err == nil {
			s.respond(w, r, http.StatusOK, tokenResponse{
				AccessToken: token,
				TokenType:   "Bearer",
				ExpiresIn:   int64(math.Ceil(s.tokenTTL.Seconds())),
			})
			return
		}
		if !errors.Is(err, ErrUnauthenticated) {
			s.writeError(w, r, err)
			return
		}
		// The password, the active flag or the user itself changed while
		// bcrypt ran: a failure like any other.
	}
	s.loginFailed(nameKey, addrKey)
	s.writeError(w, r, ErrWrongCredentials)
}

// canonicalLogin reports whether login can name a user: a valid username,
// or a valid email in lower case. The database compares with a collation
// that also equates other spellings ("ÁLICE", fullwidth letters); turning
// those away keeps one rate-limit key per account.
func canonicalLogin(login string) bool {
	if strings.Contains(login, "@") {
		return emailProblem(strings.ToLower(login)) == ""
	}
	return usernameProblem(login) == ""
}

// readLogin reads {"username": ..., "password": ...} from the body.
func readLogin(w http.ResponseWriter, r *http.Request) (login, password string, err error) {
	members, err := readJSONObject(w, r)
	if err != nil {
		return "", "", err
	}
	var errs fieldErrors
	var loginPtr, passwordPtr *string
	for _, m := range members {
		switch m.Name {
		case "username":
			loginPtr = decodeString(m, &errs)
		case "password":
			passwordPtr = decodeString(m, &errs)
		default:
			errs.add(fieldName(m.Name), "is not a known field")
		}
	}
	if loginPtr == nil && !errs.has("username") {
		errs.add("username", "is required (a username or an email)")
	}
	if passwordPtr == nil && !errs.has("password") {
		errs.add("password", "is required")
	}
	if len(errs) > 0 {
		return "", "", badRequest("The sign-in request is not valid.", errs...)
	}
	return strings.TrimSpace(*loginPtr), *passwordPtr, nil
}

// loginKeys are the rate-limit keys of an attempt: the login name, in the
// case the database compares it in, and the client's address.
func loginKeys(r *http.Request, login string) (nameKey, addrKey string) {
	addr, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		addr = r.RemoteAddr
	}
	return strings.ToLower(login), addr
}

// loginBlocked returns a rateLimitedError when the name or the address
// has had too many recent failures.
func (s *server) loginBlocked(nameKey, addrKey string) error {
	wait, blocked := s.loginFailuresByName.blocked(nameKey)
	if addrWait, addrBlocked := s.loginFailuresByAddr.blocked(addrKey); addrBlocked {
		wait, blocked = max(wait, addrWait), true
	}
	if !blocked {
		return nil
	}
	return &RateLimitedError{RetryAfter: wait}
}

func (s *server) loginFailed(nameKey, addrKey string) {
	s.loginFailuresByName.fail(nameKey)
	s.loginFailuresByAddr.fail(addrKey)
}

// handleLogout revokes the token the request came with.
func (s *server) handleLogout(w http.ResponseWriter, r *http.Request) {
	if err := s.store.RevokeToken(r.Context(), callerFrom(r.Context()).TokenHash); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
