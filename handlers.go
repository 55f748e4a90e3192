package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// server holds what the handlers need.
type server struct {
	logger     *slog.Logger
	store      *Store
	bcryptCost int
}

// newServer returns the service's whole HTTP handler: every route, wrapped
// in the middleware every request passes through.
func newServer(logger *slog.Logger, store *Store, bcryptCost int) http.Handler {
	s := &server{logger: logger, store: store, bcryptCost: bcryptCost}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", s.handleHealth)
	mux.HandleFunc("POST /api/v1/users", s.handleCreateUser)
	mux.HandleFunc("POST /api/v1/users/{$}", s.handleCreateUser)
	mux.HandleFunc("GET /api/v1/users", s.handleListUsers)
	mux.HandleFunc("GET /api/v1/users/{$}", s.handleListUsers)
	mux.HandleFunc("GET /api/v1/users/{id}", s.handleGetUser)
	mux.HandleFunc("PUT /api/v1/users/{id}", s.handleUpdateUser)
	mux.HandleFunc("PATCH /api/v1/users/{id}", s.handleUpdateUser)
	mux.HandleFunc("DELETE /api/v1/users/{id}", s.handleDeleteUser)

	var h http.Handler = problemsForUnmatched(mux)
	h = recoverPanics(logger, h)
	h = logRequests(logger, h)
	return commonHeaders(h)
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
	}{"ok", "ok"})
}

func (s *server) handleCreateUser(w http.ResponseWriter, r *http.Request) {
	members, err := readJSONObject(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	fields, errs := parseUserFields(members)
	fields.normalize()
	errs = append(errs, fields.validateForCreate(errs)...)
	if len(errs) > 0 {
		s.writeError(w, r, badRequest("The user is not valid.", errs...))
		return
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(*fields.Password), s.bcryptCost)
	if err != nil {
		s.writeError(w, r, fmt.Errorf("create user: hash password: %w", err))
		return
	}
	nu := NewUser{
		Username:     *fields.Username,
		Email:        *fields.Email,
		PasswordHash: string(hash),
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
	user, err := s.store.CreateUser(r.Context(), nu)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Location", userPath(user.ID))
	s.respond(w, r, http.StatusCreated, user)
}

func userPath(id int64) string { return "/api/v1/users/" + strconv.FormatInt(id, 10) }

func (s *server) handleGetUser(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	user, err := s.store.User(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.respond(w, r, http.StatusOK, user)
}

// handleUpdateUser serves PUT and PATCH alike: a partial update of the
// fields present in the body.
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
	fields, errs := parseUserFields(members)
	if len(members) == 0 {
		s.writeError(w, r, badRequest("The body must contain at least one field to change."))
		return
	}
	fields.normalize()
	errs = append(errs, fields.validatePresent()...)
	if len(errs) > 0 {
		s.writeError(w, r, badRequest("The changes are not valid.", errs...))
		return
	}
	changes, err := s.userChanges(fields)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	user, err := s.store.UpdateUser(r.Context(), id, changes)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.respond(w, r, http.StatusOK, user)
}

// userChanges turns validated fields into the columns to set, hashing a
// new password.
func (s *server) userChanges(f userFields) (UserChanges, error) {
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
	if f.Password != nil {
		hash, err := bcrypt.GenerateFromPassword([]byte(*f.Password), s.bcryptCost)
		if err != nil {
			return UserChanges{}, fmt.Errorf("update user: hash password: %w", err)
		}
		h := string(hash)
		c.PasswordHash = &h
	}
	return c, nil
}

func (s *server) handleDeleteUser(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.store.DeleteUser(r.Context(), id); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// pathID parses the {id} path segment: a positive decimal int64.
func pathID(r *http.Request) (int64, error) {
	id, ok := parsePositiveInt(r.PathValue("id"))
	if !ok {
		return 0, badRequest("The user id must be a positive decimal integer.",
			fieldError{Field: "id", Message: "must be a positive decimal integer"})
	}
	return id, nil
}

// Pagination limits of the list endpoint.
const (
	defaultPerPage = 20
	maxPerPage     = 100
)

// listPage is one page of the user list.
type listPage struct {
	Items      []User `json:"items"`
	Page       int64  `json:"page"`
	PerPage    int64  `json:"per_page"`
	Total      int64  `json:"total"`
	TotalPages int64  `json:"total_pages"`
}

func (s *server) handleListUsers(w http.ResponseWriter, r *http.Request) {
	page, perPage, err := parsePagination(r.URL.Query())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	users, total, err := s.store.ListUsers(r.Context(), perPage, (page-1)*perPage)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	totalPages := (total + perPage - 1) / perPage
	if link := paginationLinks(r.URL.Path, page, perPage, totalPages); link != "" {
		w.Header().Set("Link", link)
	}
	s.respond(w, r, http.StatusOK, listPage{
		Items: users, Page: page, PerPage: perPage, Total: total, TotalPages: totalPages,
	})
}

// parsePagination reads page and per_page, reporting every problem at
// once. Unknown or repeated parameters are errors too: a misspelt
// "per_pag" must not silently give the default.
func parsePagination(query url.Values) (page, perPage int64, err error) {
	var errs fieldErrors
	for _, name := range slices.Sorted(maps.Keys(query)) {
		if name != "page" && name != "per_page" && len(errs) < maxUnknownFieldsReported {
			errs.add(truncate(name, 64), "is not a known query parameter")
		}
	}
	page = queryInt(query, "page", 1, math.MaxInt64, "must be a positive integer", &errs)
	perPage = queryInt(query, "per_page", defaultPerPage, maxPerPage, "must be an integer from 1 to 100", &errs)
	if len(errs) == 0 && page-1 > math.MaxInt64/perPage { // the offset would overflow
		errs.add("page", "is too large")
	}
	if len(errs) > 0 {
		return 0, 0, badRequest("The query parameters are not valid.", errs...)
	}
	return page, perPage, nil
}

// queryInt reads the positive integer parameter name, at most hi, or
// returns fallback when it is absent.
func queryInt(query url.Values, name string, fallback, hi int64, rule string, errs *fieldErrors) int64 {
	values, present := query[name]
	if !present {
		return fallback
	}
	if len(values) != 1 {
		errs.add(name, "must be given once")
		return fallback
	}
	n, ok := parsePositiveInt(values[0])
	if !ok || n > hi {
		errs.add(name, rule)
		return fallback
	}
	return n
}

// paginationLinks builds an RFC 8288 Link header with the first, prev,
// next and last pages that exist. An empty list still has a first and a
// last page: page 1.
func paginationLinks(path string, page, perPage, totalPages int64) string {
	lastPage := max(totalPages, 1)
	link := func(p int64, rel string) string {
		return fmt.Sprintf(`<%s?page=%d&per_page=%d>; rel="%s"`, path, p, perPage, rel)
	}
	links := []string{link(1, "first")}
	if page > 1 {
		links = append(links, link(min(page-1, lastPage), "prev"))
	}
	if page < totalPages {
		links = append(links, link(page+1, "next"))
	}
	links = append(links, link(lastPage, "last"))
	return strings.Join(links, ", ")
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
	switch {
	case errors.As(err, &reqErr):
		p := newProblem(reqErr.status, reqErr.detail)
		p.Errors = reqErr.fields
		writeProblem(w, p)
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
