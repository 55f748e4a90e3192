package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"
)

// server holds what the handlers need.
type server struct {
	logger      *slog.Logger
	store       *Store
	passwords   *passwordHasher
	metrics     *metrics
	tokenTTL    time.Duration
	allowSignup bool

	logins  *loginLimits
	signups *attemptLimiter // sign-ups per client address
	startup *startup
	bodies  *bodyBudget

	public, management http.Handler
}

// startup tells whether start-up work that serving depends on is done.
// Until it is, the health checks answer 503 and sign-ups are refused, so
// that no one can take the bootstrap admin's name first.
type startup struct {
	waitForAdmin bool        // a bootstrap admin is configured
	adminDone    atomic.Bool // and exists, or was found not to be needed
}

// done reports whether start-up is complete; a nil startup always is.
func (st *startup) done() bool {
	return st == nil || !st.waitForAdmin || st.adminDone.Load()
}

// newServer returns the service with its two HTTP handlers: public, the
// API, and management (probes and metrics). Each has every route with the
// access it requires, wrapped in the middleware every request passes
// through.
func newServer(logger *slog.Logger, store *Store, passwords *passwordHasher, cfg Config, st *startup) *server {
	s := &server{
		logger:      logger,
		store:       store,
		passwords:   passwords,
		metrics:     newMetrics(),
		tokenTTL:    cfg.TokenTTL,
		allowSignup: cfg.AllowSignup,
		logins:      newLoginLimits(),
		signups:     newAttemptLimiter(cfg.SignupsPerHour, time.Hour),
		startup:     st,
		bodies:      newBodyBudget(cfg.MaxBodyBytesInFlight),
	}
	s.public = s.handler(s.routes(cfg.MaxBodyBytes), cfg, cfg.CORSAllowedOrigins)
	s.management = s.handler(s.managementRoutes(), cfg, nil)
	return s
}

// handler serves routes behind the common middleware, answering CORS for
// origins when there are any.
func (s *server) handler(routes []route, cfg Config, origins corsOrigins) http.Handler {
	mux := http.NewServeMux()
	for _, rt := range routes {
		if rt.maxBody > 0 {
			rt.handler = s.limitBody(rt.maxBody, rt.handler)
		}
		mux.HandleFunc(rt.pattern, s.guard(rt))
	}
	var h http.Handler = problemsForUnmatched(mux)
	if len(origins) > 0 {
		h = s.cors(origins, h)
	}
	h = recoverPanics(s.logger, h)
	h = observeRequests(s.logger, s.metrics, cfg.TrustedProxies, h)
	return commonHeaders(h)
}

// route is one pattern of the mux, who may call it, the largest body it
// reads (0: none), and its handler.
type route struct {
	pattern string
	access  access
	check   tokenCheck
	maxBody int64
	handler http.HandlerFunc
}

// routes is the whole API at a glance, with the access each route needs
// (access.go says what each rule means) and its body limit; userBody is
// the limit of the routes that take a user. openapi.json describes
// exactly these (TestOpenAPIDescribesEveryRoute).
func (s *server) routes(userBody int64) []route {
	const login = loginMaxBodyBytes
	return []route{
		{"GET /health", public, noToken, 0, s.handleHealth},
		{"GET /openapi.json", public, noToken, 0, s.handleOpenAPI},
		{"GET /docs", public, noToken, 0, s.handleDocs},
		{"POST /api/v1/auth/token", public, noToken, login, s.handleLogin},
		{"POST /api/v1/auth/logout", signedIn, tokenFirst, 0, s.handleLogout},
		{"POST /api/v1/users", adminOrSignup, tokenFirst, userBody, s.handleCreateUser},
		{"POST /api/v1/users/{$}", adminOrSignup, tokenFirst, userBody, s.handleCreateUser},
		{"GET /api/v1/users", adminOnly, tokenInQuery, 0, s.handleListUsers},
		{"GET /api/v1/users/{$}", adminOnly, tokenInQuery, 0, s.handleListUsers},
		{"GET /api/v1/users/{id}", selfOrAdmin, tokenInQuery, 0, s.handleGetUser},
		{"PUT /api/v1/users/{id}", selfOrAdmin, tokenInQuery, userBody, s.handleUpdateUser},
		{"PATCH /api/v1/users/{id}", selfOrAdmin, tokenInQuery, userBody, s.handleUpdateUser},
		{"DELETE /api/v1/users/{id}", adminOnly, tokenInQuery, 0, s.handleDeleteUser},
		{"GET /api/v1/users/{id}/events", adminOnly, tokenFirst, 0, s.handleUserEvents},
		{"GET /api/v1/events", adminOnly, tokenFirst, 0, s.handleEvents},
	}
}

// managementRoutes are served on the management listener only: probes
// and metrics for the operator's network, not the public one.
func (s *server) managementRoutes() []route {
	return []route{
		{"GET /health", public, noToken, 0, s.handleHealth},
		{"GET /health/live", public, noToken, 0, s.handleLive},
		{"GET /health/ready", public, noToken, 0, s.handleReady},
		{"GET /metrics", public, noToken, 0, s.handleMetrics},
	}
}

// healthPingTimeout is how long /health waits for the database.
const healthPingTimeout = time.Second

// handleHealth answers 200 when the database answers within a second with
// the schema in place and start-up is done, and a 503 problem naming the
// reason otherwise (see databaseDown).
func (s *server) handleHealth(w http.ResponseWriter, r *http.Request) {
	if err := s.checkReady(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.respond(w, r, http.StatusOK, struct {
		Status   string `json:"status"`
		Database string `json:"database"`
		Version  string `json:"version"`
	}{"ok", "ok", version})
}

// checkReady is what /health and /health/ready check: the database answers
// within a second with the schema in place (a setup failure logged once
// is logged again as resolved), and start-up is done.
func (s *server) checkReady(r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), healthPingTimeout)
	defer cancel()
	if err := s.store.Ready(ctx); err != nil {
		return databaseDown(err)
	}
	s.store.SetupTroubleResolved(ctx, s.logger)
	if !s.startup.done() {
		return &DatabaseDownError{Reason: "starting", Err: ErrStarting}
	}
	return nil
}

// databaseDown says in a few words why the database failed a health
// check: the reason of a setup failure ("access denied", "schema
// missing"...), "timeout", or "unreachable".
func databaseDown(err error) *DatabaseDownError {
	var setup *DatabaseSetupError
	switch {
	case errors.As(err, &setup):
		return &DatabaseDownError{Reason: setup.Reason, Err: err}
	case errors.Is(err, context.DeadlineExceeded):
		return &DatabaseDownError{Reason: "timeout", Err: err}
	default:
		return &DatabaseDownError{Reason: "unreachable", Err: err}
	}
}

// handleLive answers whether the process is up, without touching the
// database: a failing liveness probe restarts the process, and a database
// outage is no reason to.
func (s *server) handleLive(w http.ResponseWriter, r *http.Request) {
	s.respond(w, r, http.StatusOK, map[string]string{"status": "ok"})
}

// handleReady answers whether requests can be served: the database
// answers within a second and the schema is in place. A failing readiness
// probe takes the replica out of the load balancer until it recovers.
func (s *server) handleReady(w http.ResponseWriter, r *http.Request) {
	if err := s.checkReady(r); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.respond(w, r, http.StatusOK, map[string]string{"status": "ok"})
}

// handleMetrics writes the metrics in the Prometheus text format.
func (s *server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	if err := s.metrics.write(w, s.store.Stats(), s.passwords.stats(), s.store.EventStats(), s.store.TxRetries()); err != nil {
		s.logger.WarnContext(r.Context(), "write metrics", "error", err, "request_id", requestID(r.Context()))
	}
}

// handleCreateUser creates a user: any user for an admin, or, for an
// anonymous caller when sign-up is on, an active user with role "user".
// With an Idempotency-Key header, a retry gets the first answer again
// (see createIdempotently).
func (s *server) handleCreateUser(w http.ResponseWriter, r *http.Request) {
	if callerFrom(r.Context()) == nil {
		signup, wait, ok := s.signups.reserve(clientAddress(r))
		if !ok {
			s.writeError(w, r, &RateLimitedError{RetryAfter: wait, Detail: "Too many sign-ups from this address; try again later."})
			return
		}
		r = r.WithContext(context.WithValue(r.Context(), signupKey{}, signup))
	}
	body, err := readJSONBody(w, r)
	if err != nil {
		cancelSignup(r)
		s.writeError(w, r, err)
		return
	}
	// A header sent empty is a key that is not valid (a 400), not a
	// request without one.
	if _, keyed := r.Header["Idempotency-Key"]; keyed {
		s.createIdempotently(w, r, body)
		return
	}
	created, err := s.createUser(r, body, nil)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeRecorded(w, created)
}

// signupKey holds an anonymous create's reservation in the sign-up limit,
// taken back when the body turns out invalid (no hash was computed).
type signupKey struct{}

// cancelSignup takes back the request's sign-up reservation, if any.
func cancelSignup(r *http.Request) {
	if signup, ok := r.Context().Value(signupKey{}).(reservation); ok {
		signup.cancel()
	}
}

// createUser creates the user the body describes and returns the 201
// answer. With key, the answer is recorded under the idempotency key in
// the transaction that creates the user.
func (s *server) createUser(r *http.Request, body []byte, key *IdempotencyKey) (RecordedAnswer, error) {
	nu, err := s.newUserFrom(r, body)
	if err != nil {
		return RecordedAnswer{}, err
	}
	return s.insertUser(r, nu, key)
}

// insertUser inserts a validated user with its hash, recording the 201
// answer under key when there is one.
func (s *server) insertUser(r *http.Request, nu NewUser, key *IdempotencyKey) (RecordedAnswer, error) {
	created, err := s.store.CreateUser(r.Context(), nu, s.actor(r), key)
	if err != nil {
		return RecordedAnswer{}, err
	}
	return createdAnswer(&created), nil
}

// newUserFrom parses and validates a create body and hashes its password.
func (s *server) newUserFrom(r *http.Request, body []byte) (NewUser, error) {
	nu, err := parseNewUser(r, body)
	if err != nil {
		cancelSignup(r)
		return NewUser{}, err
	}
	source := clientAddress(r)
	if caller := callerFrom(r.Context()); caller != nil {
		source = accountKey(caller.ID)
	}
	if nu.PasswordHash, err = s.passwords.Hash(r.Context(), nu.PasswordHash, source); err != nil {
		return NewUser{}, fmt.Errorf("create user: %w", err)
	}
	return nu, nil
}

// parseNewUser parses and validates a create body. The user it returns
// holds the password itself where the hash goes, for newUserFrom to hash.
func parseNewUser(r *http.Request, body []byte) (NewUser, error) {
	members, err := parseJSONObject(body)
	if err != nil {
		return NewUser{}, err
	}
	fields, errs := parseUserFields(members)
	if fields.CurrentPassword != nil {
		errs.add("current_password", "is not a known field")
	}
	if caller := callerFrom(r.Context()); !caller.isAdmin() {
		if err := signupMayNotSet(fields); err != nil {
			return NewUser{}, err
		}
	}
	fields.normalize()
	errs = append(errs, fields.validateForCreate(errs)...)
	if len(errs) > 0 {
		return NewUser{}, badRequest("The user is not valid.", errs...)
	}
	nu := NewUser{
		Username:     *fields.Username,
		Email:        *fields.Email,
		PasswordHash: *fields.Password,
		FullName:     fields.FullName,
		Role:         RoleUser,
		IsActive:     true,
	}
	if fields.Role != nil {
		nu.Role = Role(*fields.Role)
	}
	if fields.IsActive != nil {
		nu.IsActive = *fields.IsActive
	}
	return nu, nil
}

// signupMayNotSet refuses a self sign-up that asks for more than an active
// ordinary account.
func signupMayNotSet(f userFields) error {
	if f.Role != nil && Role(*f.Role) != RoleUser {
		return errSignupRole
	}
	if f.IsActive != nil && !*f.IsActive {
		return errSignupActiveOnly
	}
	return nil
}

// handleGetUser reads one user. It checks the caller's token in the same
// statement that reads the user: one database round trip in all.
func (s *server) handleGetUser(w http.ResponseWriter, r *http.Request) {
	tokenHash, err := requestTokenHash(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ref, err := pathUser(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	caller, user, err := s.store.UserAs(r.Context(), tokenHash, ref)
	if err == nil {
		err = s.authorize(r, caller)
	}
	switch {
	case err != nil:
		s.writeError(w, r, err)
	case user == nil:
		s.writeError(w, r, ErrNotFound)
	default:
		w.Header().Set("ETag", etagOf(user))
		if notModified(r, user) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		writeBody(w, http.StatusOK, "application/json", appendUserJSON(make([]byte, 0, 256), user))
	}
}

// handleUpdateUser serves PUT and PATCH alike: a partial update of the
// fields present in the body. Users other than admins may change only
// their own username, email, full name and password. A write that changes
// nothing (every field sent as stored, no password) is not a change: it is
// checked like any other, then answered with the user as stored and its
// current ETag, and nothing is written.
//
// With an Idempotency-Key header, the answer is recorded in the update's
// own transaction, and a retry with the same key gets it again
// (writeKeyed).
func (s *server) handleUpdateUser(w http.ResponseWriter, r *http.Request) {
	if _, keyed := r.Header["Idempotency-Key"]; keyed {
		body, bodyErr := readJSONBody(w, r, updateMediaTypes[r.Method]...)
		s.writeKeyed(w, r, body, func(r *http.Request, key *IdempotencyKey) (RecordedAnswer, error) {
			var members []jsonMember
			if bodyErr == nil {
				members, bodyErr = parseJSONObject(body)
			}
			user, err := s.updateUser(r, members, bodyErr, key)
			return userAnswer(&user), err
		})
		return
	}
	members, bodyErr := readJSONObject(w, r, updateMediaTypes[r.Method]...)
	user, err := s.updateUser(r, members, bodyErr, nil)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("ETag", etagOf(&user))
	s.respond(w, r, http.StatusOK, user)
}

// updateUser reads, checks and applies an update, and returns the user as
// stored after it. A valid change of username, email or full name takes
// the fast path (store_fastpath.go): the token, the caller's right,
// If-Match and the write in two round trips. Everything else, and what
// the fast path cannot decide, takes the locking path, which
// authenticates the caller first, as tokenFirst routes do. members is
// the body, or bodyErr why it is not one, answered once the caller is
// known. With key, the answer is recorded under it by the write.
func (s *server) updateUser(r *http.Request, members []jsonMember, bodyErr error, key *IdempotencyKey) (User, error) {
	if bodyErr == nil {
		if user, err := s.updateFast(r, members, key); !errors.Is(err, errSlowPath) {
			return user, err
		}
	}
	r, caller, err := s.signIn(r)
	if err != nil {
		return User{}, err
	}
	if bodyErr != nil {
		return User{}, bodyErr
	}
	ref, err := pathUser(r)
	if err != nil {
		return User{}, err
	}
	id := ref.resolve(caller)
	fields, err := s.checkChanges(r, id, caller, members)
	if err != nil {
		return User{}, err
	}
	ifVersion, err := ifMatch(r)
	if err != nil {
		return User{}, err
	}
	changes, err := s.userChanges(r, id, caller, fields)
	if err != nil {
		return User{}, err
	}
	changes.IfVersion, changes.Key = ifVersion, key
	user, made, err := s.store.UpdateUser(r.Context(), id, changes, s.actor(r))
	switch {
	case err == nil:
		s.logSensitiveChanges(r, id, made)
	case errors.Is(err, ErrLastAdmin) && changes.IsActive != nil && !*changes.IsActive:
		err = &FieldError{Field: "is_active", Err: err}
	case errors.Is(err, ErrLastAdmin):
		err = &FieldError{Field: "role", Err: err}
	case errors.Is(err, ErrPasswordChanged):
		err = &FieldError{Field: "current_password", Err: err}
	}
	return user, err
}

// updateFast tries the fast path: only for a valid body that changes
// nothing but username, email and full name. errSlowPath sends the
// request on to the locking path, which answers every other case,
// errors included, the way it always has.
func (s *server) updateFast(r *http.Request, members []jsonMember, key *IdempotencyKey) (User, error) {
	tokenHash, err := requestTokenHash(r)
	if err != nil {
		return User{}, errSlowPath
	}
	ref, err := pathUser(r)
	if err != nil {
		return User{}, errSlowPath
	}
	fields, errs := parseUserFields(members)
	fields.normalize()
	errs = append(errs, fields.validatePresent()...)
	// An id sent for "me" is compared on the locking path, which knows it.
	if len(errs) > 0 || !fields.fastEligible() || fields.ID != nil && (ref.self || *fields.ID != ref.id) {
		return User{}, errSlowPath
	}
	ifVersion, err := ifMatch(r)
	if err != nil {
		return User{}, errSlowPath
	}
	changes := UserChanges{Username: fields.Username, Email: fields.Email, SetFullName: fields.HasFullName,
		FullName: fields.FullName, IfVersion: ifVersion, Key: key}
	return s.store.UpdateUserFast(r.Context(), tokenHash, ref, routeRule(r), changes, s.actor(r))
}

// updateMediaTypes are the bodies PUT and PATCH take: PATCH also as a JSON
// merge patch (RFC 7396), whose meaning is the same here: the members
// present change, and null clears full_name.
var updateMediaTypes = map[string][]string{
	http.MethodPut:   {"application/json"},
	http.MethodPatch: {"application/json", "application/merge-patch+json"},
}

// checkChanges validates an update's body. It takes back what a GET gave:
// id must be the path's, created_at and updated_at are ignored, and a
// caller who is not an admin may send role and is_active unchanged.
func (s *server) checkChanges(r *http.Request, id int64, caller *Caller, members []jsonMember) (userFields, error) {
	fields, errs := parseUserFields(members)
	if fields.ID != nil && *fields.ID != id {
		errs.add("id", fmt.Sprintf("must be the id in the path, %d, when sent", id))
	}
	if len(errs) == 0 && !fields.changesSomething() {
		return userFields{}, badRequest("The body must contain at least one field to change.",
			fieldError{Field: "body", Message: "must contain at least one field to change"})
	}
	if !caller.isAdmin() {
		if err := s.dropUnchangedAccess(r, id, &fields); err != nil {
			return userFields{}, err
		}
	}
	fields.normalize()
	errs = append(errs, fields.validatePresent()...)
	if len(errs) > 0 {
		return userFields{}, badRequest("The changes are not valid.", errs...)
	}
	return fields, nil
}

// dropUnchangedAccess lets a caller who is not an admin send back the role
// and active flag they have (a GET-modify-PUT does), and refuses any
// other value: only admins change those.
func (s *server) dropUnchangedAccess(r *http.Request, id int64, f *userFields) error {
	if f.Role == nil && f.IsActive == nil {
		return nil
	}
	current, _, err := s.store.UserWithPasswordHash(r.Context(), id)
	if err != nil {
		return err
	}
	if f.Role != nil && Role(*f.Role) != current.Role {
		return errRoleByAdmin
	}
	if f.IsActive != nil && *f.IsActive != current.IsActive {
		return errActiveByAdmin
	}
	f.Role, f.IsActive = nil, nil
	return nil
}

// logSensitiveChanges writes a security event for each change made that
// moves access: a new password, role or active flag (each also revokes the
// user's tokens when it changes anything). c holds only what the update
// changed: a role or flag sent back as stored is no change, and is not
// logged; a password always is (a new hash).
func (s *server) logSensitiveChanges(r *http.Request, id int64, c UserChanges) {
	if c.PasswordHash != nil {
		s.security(r, "user.password_changed", slog.Int64("user_id", id))
	}
	if c.Role != nil {
		s.security(r, "user.role_set", slog.Int64("user_id", id), slog.String("role", string(*c.Role)))
	}
	if c.IsActive != nil {
		s.security(r, "user.active_set", slog.Int64("user_id", id), slog.Bool("is_active", *c.IsActive))
	}
}

// userChanges turns validated fields into the columns to set. Callers
// who change their own password or email must send their current
// password; a new password is checked against the stored username and
// email, and hashed.
func (s *server) userChanges(r *http.Request, id int64, caller *Caller, f userFields) (UserChanges, error) {
	c := UserChanges{
		Username:    f.Username,
		Email:       f.Email,
		SetFullName: f.HasFullName,
		FullName:    f.FullName,
		IsActive:    f.IsActive,
	}
	if f.Role != nil {
		role := Role(*f.Role)
		c.Role = &role
	}
	self := caller.ID == id
	if f.Password == nil && (!self || f.Email == nil) {
		return c, nil
	}
	current, storedHash, err := s.store.UserWithPasswordHash(r.Context(), id)
	if err != nil {
		return UserChanges{}, err
	}
	if f.Password != nil {
		if msg := passwordProblem(*f.Password, &current.Username, &current.Email); msg != "" {
			return UserChanges{}, badRequest("The changes are not valid.", fieldError{Field: "password", Message: msg})
		}
	}
	changesEmail := f.Email != nil && *f.Email != current.Email
	if self && (f.Password != nil || changesEmail) {
		what := "password"
		if f.Password == nil {
			what = "email"
		}
		if err := s.checkCurrentPassword(r, current.ID, storedHash, f.CurrentPassword, what); err != nil {
			return UserChanges{}, err
		}
		c.ExpectPasswordHash = storedHash
	}
	if f.Password == nil {
		return c, nil
	}
	hash, err := s.passwords.Hash(r.Context(), *f.Password, accountKey(caller.ID))
	if err != nil {
		return UserChanges{}, fmt.Errorf("update user: %w", err)
	}
	c.PasswordHash = &hash
	return c, nil
}

// checkCurrentPassword verifies the current password sent with a change of
// one's own password or email (what). Wrong guesses count against the
// login limits, so a stolen token cannot be used to guess the password
// faster than a login, nor to take the account over by its email.
func (s *server) checkCurrentPassword(r *http.Request, id int64, storedHash string, current *string, what string) error {
	if current == nil {
		return badRequest("Changing your own "+what+" requires your current password.",
			fieldError{Field: "current_password", Message: "is required to change your own " + what})
	}
	account, addr := accountKey(id), clientAddress(r)
	if err := s.logins.addressBlocked(addr); err != nil {
		return err
	}
	attempt, err := s.logins.begin(account, addr)
	if err != nil {
		s.security(r, "current_password.refused", slog.String("reason", "rate limited"), slog.Int64("user_id", id))
		return err
	}
	ok, err := s.passwords.Matches(r.Context(), storedHash, *current, addr, account)
	if err != nil {
		attempt.abandoned()
		return fmt.Errorf("check current password: %w", err)
	}
	if !ok {
		attempt.failed()
		s.security(r, "current_password.failed", slog.Int64("user_id", id))
		return badRequest("The current password is not correct.",
			fieldError{Field: "current_password", Message: "is not correct"})
	}
	attempt.succeeded()
	return nil
}

// handleDeleteUser deletes a user; admins may not delete themselves.
// With an Idempotency-Key header, a retry gets the first answer again
// (writeKeyed).
func (s *server) handleDeleteUser(w http.ResponseWriter, r *http.Request) {
	if _, keyed := r.Header["Idempotency-Key"]; keyed {
		s.writeKeyed(w, r, nil, func(r *http.Request, key *IdempotencyKey) (RecordedAnswer, error) {
			return deletedAnswer(), s.deleteUser(r, key)
		})
		return
	}
	if err := s.deleteUser(r, nil); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// deleteUser checks and applies a delete, by the fast path when it can
// decide it; with key, the 204 is recorded under it by the write.
func (s *server) deleteUser(r *http.Request, key *IdempotencyKey) error {
	if id, err := s.deleteFast(r, key); !errors.Is(err, errSlowPath) {
		if err == nil {
			s.security(r, "user.deleted", slog.Int64("user_id", id))
		}
		return err
	}
	r, caller, err := s.signIn(r)
	if err != nil {
		return err
	}
	ref, err := pathUser(r)
	if err != nil {
		return err
	}
	id := ref.resolve(caller)
	if err := mayDelete(caller, id); err != nil {
		return err
	}
	ifVersion, err := ifMatch(r)
	if err != nil {
		return err
	}
	if err := s.store.DeleteUser(r.Context(), id, ifVersion, s.actor(r), key); err != nil {
		if errors.Is(err, ErrLastAdmin) {
			return &FieldError{Field: "id", Err: err}
		}
		return err
	}
	s.security(r, "user.deleted", slog.Int64("user_id", id))
	return nil
}

// deleteFast tries the fast path (store_fastpath.go) for a delete by id,
// and returns the id; errSlowPath sends the request on to the locking
// path.
func (s *server) deleteFast(r *http.Request, key *IdempotencyKey) (int64, error) {
	tokenHash, err := requestTokenHash(r)
	if err != nil {
		return 0, errSlowPath
	}
	ref, err := pathUser(r)
	if err != nil || ref.self {
		return 0, errSlowPath
	}
	ifVersion, err := ifMatch(r)
	if err != nil {
		return 0, errSlowPath
	}
	return ref.id, s.store.DeleteUserFast(r.Context(), tokenHash, ref.id, routeRule(r), ifVersion, s.actor(r), key)
}

// pathUser parses the {id} path segment: "me" for the caller, or a
// positive decimal int64.
func pathUser(r *http.Request) (userRef, error) {
	value := r.PathValue("id")
	if value == "me" {
		return userRef{self: true}, nil
	}
	id, ok := parsePositiveInt(value)
	if !ok {
		return userRef{}, badRequest("The user id must be a positive decimal integer, or me.",
			fieldError{Field: "id", Message: "must be a positive decimal integer, or me"})
	}
	return userRef{id: id}, nil
}

// handleListUsers lists users, by page or by cursor, filtered and sorted.
// It checks the caller's token in the statement that reads the page.
func (s *server) handleListUsers(w http.ResponseWriter, r *http.Request) {
	tokenHash, err := requestTokenHash(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	values, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		s.writeError(w, r, badRequest("The query string is malformed: "+truncate(err.Error(), 200)+".",
			fieldError{Field: "query", Message: "must be name=value pairs separated by &, percent-encoded"}))
		return
	}
	q, err := parseListQuery(values)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	caller, page, err := s.store.ListUsersAs(r.Context(), tokenHash, routeRule(r).rolesPermitted(), q)
	if err == nil {
		err = s.authorize(r, caller)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if link := page.links(r.URL.Path, values, q); link != "" {
		w.Header().Set("Link", link)
	}
	writeBody(w, http.StatusOK, "application/json", page.appendJSON(make([]byte, 0, 512+300*len(page.Users)), q))
}

// respond writes v as JSON, turning an encoding failure into a 500.
func (s *server) respond(w http.ResponseWriter, r *http.Request, status int, v any) {
	if err := writeJSON(w, status, v); err != nil {
		s.writeError(w, r, err)
	}
}

// writeError answers err as problemFor maps it. What the client cannot be
// told is logged: the cause of every 5xx, in full.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	answer := problemFor(err)
	s.logAnswer(r, answer.Status, err)
	writeProblem(w, answer)
}

// logAnswer logs an error answered with a 5xx status: an unexpected one
// as an error, a database setup failure once per change of its reason,
// an unavailable database as a warning. Busy hashers and 4xx answers are
// the clients' business and the access log's.
func (s *server) logAnswer(r *http.Request, status int, err error) {
	ctx := r.Context()
	switch {
	case s.store.ReportSetupTrouble(ctx, s.logger, err):
	case status == http.StatusInternalServerError:
		s.logger.ErrorContext(ctx, "internal error", "error", err, "request_id", requestID(ctx))
	case errors.Is(err, ErrBodiesBusy):
		s.logger.WarnContext(ctx, "request bodies at their limit", "request_id", requestID(ctx))
	case status == http.StatusServiceUnavailable && !errors.Is(err, ErrBusy):
		s.logger.WarnContext(ctx, "database unavailable", "error", err, "request_id", requestID(ctx))
	case errors.Is(err, ErrOutcomeUnknown):
		s.logger.ErrorContext(ctx, "write outcome unknown", "error", err, "request_id", requestID(ctx))
	}
}
