package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
)

// PUT and PATCH of a user: the body, the rules of who may change what,
// the current password, and the fast and locking paths.

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

// updateRequest is a PUT or PATCH parsed once, for both paths: the user
// the path names, the body's fields (normalized) with the problems of
// decoding them and of their values, and If-Match, each with the error
// that stops it, answered in the order the locking path checks them.
type updateRequest struct {
	ref       userRef
	refErr    error
	bodyErr   error // the body is not a JSON object of the right media type
	fields    userFields
	decodeErr fieldErrors // members unknown, of the wrong type or null
	invalid   fieldErrors // values the rules refuse
	ifVersion VersionMatch
	ifErr     error
	key       *IdempotencyKey
}

// parseUpdate parses r, whose body is members (or bodyErr why it is not
// an object), once.
func parseUpdate(r *http.Request, members []jsonMember, bodyErr error, key *IdempotencyKey) updateRequest {
	u := updateRequest{bodyErr: bodyErr, key: key}
	u.ref, u.refErr = pathUser(r)
	u.ifVersion, u.ifErr = ifMatch(r)
	if bodyErr == nil {
		u.fields, u.decodeErr = parseUserFields(members)
		u.fields.normalize()
		u.invalid = u.fields.validatePresent()
	}
	return u
}

// updateUser checks and applies an update, and returns the user as
// stored after it. A valid change of username, email or full name takes
// the fast path (store_fastpath.go): the token, the caller's right,
// If-Match and the write in two round trips. Everything else, and what
// the fast path cannot decide, takes the locking path, which
// authenticates the caller first, as tokenFirst routes do, and then
// answers the request's first problem. With key, the answer is recorded
// under it by the write.
func (s *server) updateUser(r *http.Request, members []jsonMember, bodyErr error, key *IdempotencyKey) (User, error) {
	u := parseUpdate(r, members, bodyErr, key)
	if user, err := s.updateFast(r, u); !errors.Is(err, errSlowPath) {
		return user, err
	}
	r, caller, err := s.signIn(r)
	if err != nil {
		return User{}, err
	}
	for _, err := range []error{u.bodyErr, u.refErr} {
		if err != nil {
			return User{}, err
		}
	}
	id := u.ref.resolve(caller)
	fields, err := s.checkChanges(r, id, caller, u)
	if err == nil {
		err = u.ifErr
	}
	if err != nil {
		return User{}, err
	}
	limited, err := s.reserveIdentityChange(r, id, caller, fields)
	if err != nil {
		return User{}, err
	}
	changes, err := s.userChanges(r, id, caller, fields)
	if err != nil {
		limited.cancel()
		return User{}, err
	}
	changes.IfVersion, changes.Key = u.ifVersion, key
	user, err := s.applyUpdate(r, id, changes)
	if conflict := (*ConflictError)(nil); err != nil && !errors.As(err, &conflict) {
		limited.cancel() // refused before it could tell anything
	}
	return user, err
}

// identityChangesPerHour bounds the changes of one's own username or
// email per user and hour. Each is a probe: a 409 says that another
// account holds the name. Ten is more than anyone renames themselves.
const identityChangesPerHour = 10

// reserveIdentityChange counts, against the caller's allowance, an update
// of their own account that changes its username or email
// (changesIdentity), or refuses it with a 429 once the allowance is
// spent. Changes of other users (by an admin) are not counted, nor those
// that change nothing: a GET-modify-PUT sends both back as they are.
func (s *server) reserveIdentityChange(r *http.Request, id int64, caller *Caller, f userFields) (reservation, error) {
	if caller.ID != id || f.Username == nil && f.Email == nil {
		return reservation{}, nil
	}
	current, _, err := s.store.UserWithPasswordHash(r.Context(), id)
	if err != nil || !changesIdentity(f.Username, f.Email, current) {
		return reservation{}, err
	}
	limited, wait, ok := s.identityChanges.reserve(accountKey(id))
	if !ok {
		s.security(r, "identity_change.refused", slog.String("reason", "rate limited"), slog.Int64("user_id", id))
		return reservation{}, &RateLimitedError{RetryAfter: wait,
			Detail: fmt.Sprintf("At most %d changes of your own username or email an hour; try again later.", identityChangesPerHour)}
	}
	return limited, nil
}

// applyUpdate writes changes by the locking path, logs what changed
// access, and names the field a conflict is about.
func (s *server) applyUpdate(r *http.Request, id int64, changes UserChanges) (User, error) {
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
func (s *server) updateFast(r *http.Request, u updateRequest) (User, error) {
	tokenHash, err := requestTokenHash(r)
	f := u.fields
	// An id sent for "me" is compared on the locking path, which knows it.
	// A username with '@' needs an admin, which only the locking path
	// knows the caller to be.
	if err != nil || u.bodyErr != nil || u.refErr != nil || u.ifErr != nil || len(u.decodeErr)+len(u.invalid) > 0 ||
		!f.fastEligible() || f.ID != nil && (u.ref.self || *f.ID != u.ref.id) || f.Username != nil && usernameNeedsAdmin(*f.Username) {
		return User{}, errSlowPath
	}
	changes := UserChanges{Username: f.Username, Email: f.Email, SetFullName: f.HasFullName,
		FullName: f.FullName, IfVersion: u.ifVersion, Key: u.key}
	return s.store.UpdateUserFast(r.Context(), tokenHash, u.ref, routeRule(r), changes, s.actor(r))
}

// updateMediaTypes are the bodies PUT and PATCH take: PATCH also as a JSON
// merge patch (RFC 7396), whose meaning is the same here: the members
// present change, and null clears full_name.
var updateMediaTypes = map[string][]string{
	http.MethodPut:   {"application/json"},
	http.MethodPatch: {"application/json", "application/merge-patch+json"},
}

// checkChanges validates an update's body, parsed by parseUpdate. It
// takes back what a GET gave: id must be the path's, created_at and
// updated_at are ignored, and a caller who is not an admin may send role
// and is_active unchanged.
func (s *server) checkChanges(r *http.Request, id int64, caller *Caller, u updateRequest) (userFields, error) {
	fields, errs := u.fields, append(fieldErrors(nil), u.decodeErr...)
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
	if errs = append(errs, u.invalid...); len(errs) > 0 {
		return userFields{}, badRequest("The changes are not valid.", errs...)
	}
	return fields, nil
}

// dropUnchangedAccess lets a caller who is not an admin send back the role
// and active flag they have (a GET-modify-PUT does), and refuses any
// other value: only admins change those. Likewise a username with '@'
// (usernameNeedsAdmin): the one they have (a provisioned
// alice@contoso.com), in any case, is no new claim on anyone's email;
// any other is an admin's to set.
func (s *server) dropUnchangedAccess(r *http.Request, id int64, f *userFields) error {
	atName := f.Username != nil && usernameNeedsAdmin(*f.Username)
	if f.Role == nil && f.IsActive == nil && !atName {
		return nil
	}
	current, _, err := s.store.UserWithPasswordHash(r.Context(), id)
	if err != nil {
		return err
	}
	switch {
	case atName && *f.Username == current.Username:
		f.Username = nil // no change: nothing to write
	case atName && !strings.EqualFold(*f.Username, current.Username):
		return errAtUsernameByAdmin
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
	account, addr := accountKey(id), requestClientKey(r)
	if err := s.logins.addressBlocked(addr); err != nil {
		return err
	}
	attempt, err := s.logins.begin(account, addr)
	if err != nil {
		s.security(r, "current_password.refused", slog.String("reason", "rate limited"), slog.Int64("user_id", id))
		return err
	}
	ok, err := s.passwords.Matches(r.Context(), storedHash, *current, addr)
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
