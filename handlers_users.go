package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
)

// The user routes that read or remove: create, get, delete and the
// list (the update has handlers_update.go).

// handleCreateUser creates a user: any user for an admin, or, for an
// anonymous caller when sign-up is on, an active user with role "user".
// With an Idempotency-Key header, a retry gets the first answer again
// (see createIdempotently).
func (s *server) handleCreateUser(w http.ResponseWriter, r *http.Request) {
	if callerFrom(r.Context()) == nil {
		signup, wait, ok := s.signups.reserve(requestClientKey(r))
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
	source := requestClientKey(r)
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
	if f.Username != nil && usernameNeedsAdmin(*f.Username) {
		return errAtUsernameByAdmin
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

// deleteRequest is a DELETE parsed once, for both paths: the user the
// path names and If-Match, each with the error that stops it.
type deleteRequest struct {
	ref       userRef
	refErr    error
	ifVersion VersionMatch
	ifErr     error
	key       *IdempotencyKey
}

// deleteUser checks and applies a delete, by the fast path when it can
// decide it; with key, the 204 is recorded under it by the write.
func (s *server) deleteUser(r *http.Request, key *IdempotencyKey) error {
	d := deleteRequest{key: key}
	d.ref, d.refErr = pathUser(r)
	d.ifVersion, d.ifErr = ifMatch(r)
	if id, err := s.deleteFast(r, d); !errors.Is(err, errSlowPath) {
		if err == nil {
			s.security(r, "user.deleted", slog.Int64("user_id", id))
		}
		return err
	}
	r, caller, err := s.signIn(r)
	if err != nil {
		return err
	}
	if d.refErr != nil {
		return d.refErr
	}
	id := d.ref.resolve(caller)
	if err := mayDelete(caller, id); err != nil {
		return err
	}
	if d.ifErr != nil {
		return d.ifErr
	}
	if err := s.store.DeleteUser(r.Context(), id, d.ifVersion, s.actor(r), key); err != nil {
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
func (s *server) deleteFast(r *http.Request, d deleteRequest) (int64, error) {
	tokenHash, err := requestTokenHash(r)
	if err != nil || d.refErr != nil || d.ref.self || d.ifErr != nil {
		return 0, errSlowPath
	}
	return d.ref.id, s.store.DeleteUserFast(r.Context(), tokenHash, d.ref.id, routeRule(r), d.ifVersion, s.actor(r), d.key)
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
	values, err := requestQuery(r)
	if err != nil {
		s.writeError(w, r, err)
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
