package main

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strconv"
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
	token, err := s.login(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.respond(w, r, http.StatusOK, token)
}

// login checks the credentials under the login limits and issues a token.
func (s *server) login(w http.ResponseWriter, r *http.Request) (tokenResponse, error) {
	login, password, err := readLogin(w, r)
	if err != nil {
		return tokenResponse{}, err
	}
	addr := requestClientKey(r)
	if err := s.logins.addressBlocked(addr); err != nil {
		s.security(r, "login.refused", slog.String("reason", "address rate limited"))
		return tokenResponse{}, err
	}
	var creds Credentials
	account := "name:" + strings.ToLower(login)
	if canonicalLogin(login) { // anything else names no one: the dummy hash answers
		creds, err = s.store.CredentialsFor(r.Context(), login)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return tokenResponse{}, err
		}
		if err == nil {
			account = accountKey(creds.UserID)
		}
	}
	attempt, err := s.logins.begin(account, addr)
	if err != nil {
		s.security(r, "login.refused", slog.String("reason", "rate limited"), slog.Int64("user_id", creds.UserID))
		return tokenResponse{}, err
	}
	// creds.PasswordHash is empty for an unknown user: Matches then burns
	// the same time on a dummy hash and answers false. The hasher shares
	// its workers between addresses; the account's own limits bound what
	// guesses on it cost.
	ok, err := s.passwords.Matches(r.Context(), creds.PasswordHash, password, addr)
	if err != nil {
		attempt.abandoned()
		return tokenResponse{}, fmt.Errorf("login: %w", err)
	}
	reason := "wrong password"
	switch {
	case creds.UserID == 0:
		reason = "unknown user"
	case ok && !creds.IsActive:
		reason = "inactive user"
	case ok && len(password) <= passwordMaxBytes:
		token, err := s.issueToken(r, creds, password)
		if err == nil {
			attempt.succeeded()
			s.security(r, "login.succeeded", slog.Int64("user_id", creds.UserID))
			return token, nil
		}
		if !errors.Is(err, ErrUnauthenticated) {
			attempt.abandoned()
			return tokenResponse{}, err
		}
		// The password, the active flag or the user itself changed while
		// bcrypt ran: a failure like any other.
		reason = "changed during sign-in"
	}
	attempt.failed()
	s.security(r, "login.failed", slog.String("reason", reason), slog.Int64("user_id", creds.UserID),
		slog.Bool("account_under_attack", attempt.accountLocked), slog.Bool("known_address", attempt.knownAddress))
	return tokenResponse{}, ErrWrongCredentials
}

// issueToken stores a new token for the user whose password just matched,
// and upgrades a hash of another cost than the configured one, now that
// the password is at hand.
func (s *server) issueToken(r *http.Request, creds Credentials, password string) (tokenResponse, error) {
	token, hash := newToken()
	if err := s.store.CreateToken(r.Context(), creds.UserID, creds.PasswordHash, hash, s.tokenTTL); err != nil {
		return tokenResponse{}, err
	}
	if s.passwords.outdated(creds.PasswordHash) {
		s.upgradeHash(r, creds, password)
	}
	return tokenResponse{
		AccessToken: token,
		TokenType:   "Bearer",
		ExpiresIn:   int64(math.Ceil(s.tokenTTL.Seconds())),
	}, nil
}

// upgradeHash rehashes a password at the configured cost. It is best
// effort: a failure leaves the old hash, which still works. It is not a
// change of the account (UpgradePasswordHash): no event, and the user's
// version and updated_at stay.
func (s *server) upgradeHash(r *http.Request, creds Credentials, password string) {
	ctx := r.Context()
	hash, err := s.passwords.Hash(ctx, password, requestClientKey(r))
	if err == nil {
		err = s.store.UpgradePasswordHash(ctx, creds.UserID, creds.PasswordHash, hash)
	}
	if err != nil {
		s.logger.WarnContext(ctx, "upgrade password hash", "error", err, "user_id", creds.UserID, "request_id", requestID(ctx))
	}
}

// accountKey is the rate-limit key of a known account, the same whether
// it was named by username or by email.
func accountKey(id int64) string { return "user:" + strconv.FormatInt(id, 10) }

// security writes a security event to the log: who (the client address,
// and the account when known), what, and why. Never a password, token or
// hash.
func (s *server) security(r *http.Request, event string, attrs ...slog.Attr) {
	ctx := r.Context()
	attrs = append(attrs, slog.String("event", event), slog.String("client_address", clientAddress(r)),
		slog.String("request_id", requestID(ctx)))
	switch caller := callerFrom(ctx); {
	case caller.isProvisioner():
		attrs = append(attrs, slog.Int64("provisioning_token_id", caller.TokenID))
	case caller != nil:
		attrs = append(attrs, slog.Int64("actor_id", caller.ID))
	}
	level := slog.LevelWarn
	if strings.HasSuffix(event, ".succeeded") {
		level = slog.LevelInfo // a record, not a warning: nothing went wrong
	}
	s.logger.LogAttrs(ctx, level, "security", attrs...)
}

// canonicalLogin reports whether login can name a user: a valid username,
// or a valid email in lower case. The database compares with a collation
// that also equates other spellings ("ÁLICE", fullwidth letters); turning
// those away keeps one rate-limit key per account.
func canonicalLogin(login string) bool {
	if strings.Contains(login, "@") && emailProblem(strings.ToLower(login)) == "" {
		return true
	}
	return usernameProblem(login) == "" // a username may hold '@' too

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

// addressBlocked refuses an address that reached a limit of its own,
// before any work is done for it.
func (l *loginLimits) addressBlocked(addr string) error {
	for _, limiter := range []*attemptLimiter{l.others, l.address} {
		if wait, blocked := limiter.blocked(addr); blocked {
			return &RateLimitedError{RetryAfter: wait}
		}
	}
	return nil
}

// handleLogout revokes the token the request came with.
func (s *server) handleLogout(w http.ResponseWriter, r *http.Request) {
	caller := callerFrom(r.Context())
	if err := s.store.RevokeToken(r.Context(), caller.ID, caller.TokenHash, s.actor(r)); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.security(r, "token.revoked", slog.String("reason", "logout"))
	w.WriteHeader(http.StatusNoContent)
}
