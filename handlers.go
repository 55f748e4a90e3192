package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
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

	// Failed logins in the last minute, per username and per address.
	loginFailuresByName *failureLimiter
	loginFailuresByAddr *failureLimiter
}

// Login rate limits: failures allowed per window before 429.
const (
	loginFailuresPerName = 5
	loginFailuresPerAddr = 20
	loginFailureWindow   = time.Minute
)

// newServer returns the service's whole HTTP handler: every route with the
// access it requires, wrapped in the middleware every request passes through.
func newServer(logger *slog.Logger, store *Store, passwords *passwordHasher, cfg Config) http.Handler {
	s := &server{
		logger:              logger,
		store:               store,
		passwords:           passwords,
		metrics:             newMetrics(),
		tokenTTL:            cfg.TokenTTL,
		allowSignup:         cfg.AllowSignup,
		loginFailuresByName: newFailureLimiter(loginFailuresPerName, loginFailureWindow),
		loginFailuresByAddr: newFailureLimiter(loginFailuresPerAddr, loginFailureWindow),
	}
	mux := http.NewServeMux()
	for _, rt := range s.routes() {
		mux.HandleFunc(rt.pattern, rt.handler)
	}
	var h http.Handler = problemsForUnmatched(mux)
	h = recoverPanics(logger, h)
	h = observeRequests(logger, s.metrics, h)
	return commonHeaders(h)
}

// route is one pattern of the mux and its handler.
type route struct {
	pattern string
	handler http.HandlerFunc
}

// routes is the whole API at a glance, with the access each route needs.
// openapi.json describes exactly these (TestOpenAPIDescribesEveryRoute).
func (s *server) routes() []route {
	return []route{
		{"GET /health", s.handleHealth},
		{"GET /health/live", s.handleLive},
		{"GET /health/ready", s.handleReady},
		{"GET /metrics", s.handleMetrics},
		{"GET /openapi.json", s.handleOpenAPI},
		{"GET /docs", s.handleDocs},
		{"POST /api/v1/auth/token", s.handleLogin},
		{"POST /api/v1/auth/logout", s.signedIn(s.handleLogout)},
		{"POST /api/v1/users", s.adminOrSignup(s.handleCreateUser)},
		{"POST /api/v1/users/{$}", s.adminOrSignup(s.handleCreateUser)},
		{"GET /api/v1/users", s.handleListUsers},     // admin; checks the token itself
		{"GET /api/v1/users/{$}", s.handleListUsers}, // admin; checks the token itself
		{"GET /api/v1/users/{id}", s.handleGetUser},  // self or admin; checks the token itself
		{"PUT /api/v1/users/{id}", s.selfOrAdmin(s.handleUpdateUser)},
		{"PATCH /api/v1/users/{id}", s.selfOrAdmin(s.handleUpdateUser)},
		{"DELETE /api/v1/users/{id}", s.adminOnly(s.handleDeleteUser)},
	}
}

// healthPingTimeout is how long /health waits for the database.
const healthPingTimeout = time.Second

// handleHealth answers 200 when the database answers a ping within a
// second, and a 503 problem naming the reason otherwise.
func (s *server) handleHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), healthPingTimeout)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		reason := "unreachable"
		if errors.Is(err, context.DeadlineExceeded) {
			reason = "timeout"
		}
		s.logger.WarnContext(ctx, "health check failed", "error", err, "request_id", requestID(ctx))
		w.Header().Set("Retry-After", "1")
		body := struct {
			problem
			Database string `json:"database"`
		}{newProblem(http.StatusServiceUnavailable, "The database is "+reason+"."), reason}
		writeJSONAs(w, body.Status, "application/problem+json", body)
		return
	}
	s.respond(w, r, http.StatusOK, struct {
		Status   string `json:"status"`
		Database string `json:"database"`
		Version  string `json:"version"`
	}{"ok", "ok", version})
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
	ctx, cancel := context.WithTimeout(r.Context(), healthPingTimeout)
	defer cancel()
	if err := s.store.Ready(ctx); err != nil {
		s.logger.WarnContext(ctx, "readiness check failed", "error", err, "request_id", requestID(ctx))
		w.Header().Set("Retry-After", "1")
		writeProblem(w, newProblem(http.StatusServiceUnavailable, "The database is not ready: unreachable, too slow, or without the schema."))
		return
	}
	s.respond(w, r, http.StatusOK, map[string]string{"status": "ok"})
}

// handleMetrics writes the metrics in the Prometheus text format.
func (s *server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	if err := s.metrics.write(w, s.store.Stats(), s.passwords.stats()); err != nil {
		s.logger.WarnContext(r.Context(), "write metrics", "error", err, "request_id", requestID(r.Context()))
	}
}

// handleCreateUser creates a user: any user for an admin, or, for an
// anonymous caller when sign-up is on, an active user with role "user".
// With an Idempotency-Key header, a retry gets the first answer again
// (see handleIdempotentCreate).
func (s *server) handleCreateUser(w http.ResponseWriter, r *http.Request) {
	body, err := readJSONBody(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if r.Header.Get("Idempotency-Key") != "" {
		s.handleIdempotentCreate(w, r, body)
		return
	}
	s.createUser(w, r, body, nil)
}

// createUser creates the user the body describes and answers. With key,
// the 201 is recorded under the idempotency key in the transaction that
// creates the user.
func (s *server) createUser(w http.ResponseWriter, r *http.Request, body []byte, key *idempotencyKey) {
	members, err := parseJSONObject(body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	fields, errs := parseUserFields(members)
	if fields.CurrentPassword != nil {
		errs.add("current_password", "is not a known field")
	}
	if caller := callerFrom(r.Context()); !caller.isAdmin() {
		if err := signupMayNotSet(fields); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	fields.normalize()
	errs = append(errs, fields.validateForCreate(errs)...)
	if len(errs) > 0 {
		s.writeError(w, r, badRequest("The user is not valid.", errs...))
		return
	}
	hash, err := s.passwords.Hash(r.Context(), *fields.Password)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("create user: %w", err))
		return
	}
	nu := NewUser{
		Username:     *fields.Username,
		Email:        *fields.Email,
		PasswordHash: hash,
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
	var created *storedResponse
	user, err := s.store.CreateUser(r.Context(), nu, key, func(u User) *storedResponse {
		created = createdResponse(&u)
		return created
	})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if created == nil {
		created = createdResponse(&user)
	}
	created.write(w)
}

// createdResponse is the 201 answer to a create.
func createdResponse(u *User) *storedResponse {
	return &storedResponse{
		Status:      http.StatusCreated,
		ContentType: "application/json",
		Location:    userPath(u.ID),
		ETag:        etagOf(u),
		Body:        append(appendUserJSON(make([]byte, 0, 256), u), '\n'),
	}
}

// signupMayNotSet refuses a self sign-up that asks for more than an active
// ordinary account.
func signupMayNotSet(f userFields) error {
	if f.Role != nil && Role(*f.Role) != RoleUser {
		return &forbiddenError{detail: `Signing up creates an account with role "user" only.`, field: "role"}
	}
	if f.IsActive != nil && !*f.IsActive {
		return &forbiddenError{detail: "Signing up creates an active account only.", field: "is_active"}
	}
	return nil
}

func userPath(id int64) string { return "/api/v1/users/" + strconv.FormatInt(id, 10) }

// handleGetUser reads one user. It checks the caller's token in the same
// statement that reads the user: one database round trip in all.
func (s *server) handleGetUser(w http.ResponseWriter, r *http.Request) {
	tokenHash, err := requestTokenHash(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	var id int64 // 0: the caller
	if value := r.PathValue("id"); value != "me" {
		if id, err = pathID(r); err != nil {
			s.writeError(w, r, err)
			return
		}
	}
	caller, user, err := s.store.UserAs(r.Context(), tokenHash, id)
	switch {
	case err != nil:
		s.writeError(w, r, err)
	case !caller.isAdmin() && id != 0 && id != caller.ID:
		s.writeError(w, r, errNotYours)
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
// their own username, email, full name and password.
func (s *server) handleUpdateUser(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	members, err := readJSONObject(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if len(members) == 0 {
		s.writeError(w, r, badRequest("The body must contain at least one field to change."))
		return
	}
	fields, errs := parseUserFields(members)
	caller := callerFrom(r.Context())
	if !caller.isAdmin() {
		if fields.Role != nil {
			s.writeError(w, r, &forbiddenError{detail: "Only an admin may change a role.", field: "role"})
			return
		}
		if fields.IsActive != nil {
			s.writeError(w, r, &forbiddenError{detail: "Only an admin may activate or deactivate a user.", field: "is_active"})
			return
		}
	}
	fields.normalize()
	errs = append(errs, fields.validatePresent()...)
	if len(errs) > 0 {
		s.writeError(w, r, badRequest("The changes are not valid.", errs...))
		return
	}
	precondition, err := ifMatch(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	changes, err := s.userChanges(r, id, caller, fields)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	changes.Precondition = precondition
	user, err := s.store.UpdateUser(r.Context(), id, changes)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("ETag", etagOf(&user))
	s.respond(w, r, http.StatusOK, user)
}

// userChanges turns validated fields into the columns to set. A new
// password is checked against the stored username and email, must come
// with the current password when callers change their own, and is hashed.
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
	if f.Password == nil {
		return c, nil
	}
	current, storedHash, err := s.store.UserWithPasswordHash(r.Context(), id)
	if err != nil {
		return UserChanges{}, err
	}
	if msg := passwordProblem(*f.Password, &current.Username, &current.Email); msg != "" {
		return UserChanges{}, badRequest("The changes are not valid.", fieldError{Field: "password", Message: msg})
	}
	if caller != nil && caller.ID == id {
		if err := s.checkCurrentPassword(r, current.Username, storedHash, f.CurrentPassword); err != nil {
			return UserChanges{}, err
		}
		c.ExpectPasswordHash = storedHash
	}
	hash, err := s.passwords.Hash(r.Context(), *f.Password)
	if err != nil {
		return UserChanges{}, fmt.Errorf("update user: %w", err)
	}
	c.PasswordHash = &hash
	return c, nil
}

// checkCurrentPassword verifies the current password sent with a change of
// one's own password. Wrong guesses count against the login limits, so a
// stolen token cannot be used to guess the password faster than a login.
func (s *server) checkCurrentPassword(r *http.Request, username, storedHash string, current *string) error {
	if current == nil {
		return badRequest("Changing your own password requires your current password.",
			fieldError{Field: "current_password", Message: "is required to change your own password"})
	}
	nameKey, addrKey := loginKeys(r, username)
	if err := s.loginBlocked(nameKey, addrKey); err != nil {
		return err
	}
	ok, err := s.passwords.Matches(r.Context(), storedHash, *current)
	if err != nil {
		return fmt.Errorf("check current password: %w", err)
	}
	if !ok {
		s.loginFailed(nameKey, addrKey)
		return badRequest("The current password is not correct.",
			fieldError{Field: "current_password", Message: "is not correct"})
	}
	return nil
}

func (s *server) handleDeleteUser(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if caller := callerFrom(r.Context()); caller != nil && caller.ID == id {
		s.writeError(w, r, &forbiddenError{detail: "An admin may not delete their own account."})
		return
	}
	precondition, err := ifMatch(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.store.DeleteUser(r.Context(), id, precondition); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// pathID parses the {id} path segment: a positive decimal int64, or "me"
// for the caller's own id.
func pathID(r *http.Request) (int64, error) {
	value := r.PathValue("id")
	if caller := callerFrom(r.Context()); value == "me" && caller != nil {
		return caller.ID, nil
	}
	id, ok := parsePositiveInt(value)
	if !ok {
		return 0, badRequest("The user id must be a positive decimal integer, or me.",
			fieldError{Field: "id", Message: "must be a positive decimal integer, or me"})
	}
	return id, nil
}

// handleListUsers lists users, by page or by cursor, filtered and sorted.
// It checks the caller's token in the statement that reads the total.
func (s *server) handleListUsers(w http.ResponseWriter, r *http.Request) {
	tokenHash, err := requestTokenHash(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	q, err := parseListQuery(r.URL.Query())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	caller, page, err := s.store.ListUsersAs(r.Context(), tokenHash, q)
	switch {
	case err != nil:
		s.writeError(w, r, err)
		return
	case !caller.isAdmin():
		s.writeError(w, r, errAdminsOnly)
		return
	}
	if link := page.links(r.URL, q); link != "" {
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

// writeError maps err to its status and writes it as a problem. Errors it
// does not know are logged in full and answered with a bare 500.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var reqErr *requestError
	var conflict *ConflictError
	var forbidden *forbiddenError
	var stateConflict *stateConflictError
	var tooMany *rateLimitedError
	switch {
	case errors.Is(err, ErrUnauthenticated):
		w.Header().Set("WWW-Authenticate", `Bearer realm="usersvc"`)
		writeProblem(w, newProblem(http.StatusUnauthorized, "A valid bearer token is required: get one from POST /api/v1/auth/token."))
	case errors.As(err, &forbidden):
		p := newProblem(http.StatusForbidden, forbidden.detail)
		if forbidden.field != "" {
			p.Errors = fieldErrors{{Field: forbidden.field, Message: "may not be set by you"}}
		}
		writeProblem(w, p)
	case errors.As(err, &stateConflict):
		writeProblem(w, newProblem(http.StatusConflict, stateConflict.detail))
	case errors.As(err, &tooMany):
		w.Header().Set("Retry-After", strconv.Itoa(tooMany.retryAfterSeconds))
		writeProblem(w, newProblem(http.StatusTooManyRequests, "Too many failed sign-in attempts; try again later."))
	case errors.Is(err, ErrBusy):
		w.Header().Set("Retry-After", "1")
		writeProblem(w, newProblem(http.StatusServiceUnavailable, "The service is busy hashing passwords; try again shortly."))
	case errors.As(err, &reqErr):
		p := newProblem(reqErr.status, reqErr.detail)
		p.Errors = reqErr.fields
		writeProblem(w, p)
	case errors.Is(err, ErrPreconditionFailed):
		writeProblem(w, newProblem(http.StatusPreconditionFailed,
			"The user changed since the version named in If-Match: fetch it again, and retry with its ETag."))
	case errors.Is(err, ErrNotFound):
		writeProblem(w, newProblem(http.StatusNotFound, "No user has this id."))
	case errors.As(err, &conflict):
		p := newProblem(http.StatusConflict, fmt.Sprintf("The %s is already taken by another user.", conflict.Field))
		p.Errors = fieldErrors{{Field: conflict.Field, Message: "is already taken"}}
		writeProblem(w, p)
	case errors.Is(err, ErrUnavailable):
		s.logger.WarnContext(r.Context(), "database unavailable", "error", err, "request_id", requestID(r.Context()))
		w.Header().Set("Retry-After", "1")
		writeProblem(w, newProblem(http.StatusServiceUnavailable, "The database is unavailable; try again shortly."))
	default:
		s.logger.ErrorContext(r.Context(), "internal error", "error", err, "request_id", requestID(r.Context()))
		writeProblem(w, newProblem(http.StatusInternalServerError, "An unexpected error occurred; it has been logged."))
	}
}
