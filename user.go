package main

import (
	_ "embed"
	"slices"
	"strings"
	"time"
)

// Role is what a user may do; the schema's ENUM holds the same two values.
type Role string

const (
	RoleAdmin Role = "admin"
	RoleUser  Role = "user"
)

// Limits of the user fields, shared by validation and the schema.
const (
	usernameMinLen    = 3
	usernameMaxLen    = 50
	emailMaxLen       = 254
	emailLocalMaxLen  = 64
	fullNameMaxRunes  = 255
	passwordMinBytes  = 8
	passwordMaxBytes  = 72 // bcrypt ignores every byte after the 72nd
	timestampJSONForm = "2006-01-02T15:04:05.000000Z07:00"
)

// User is a user account as clients see it. It has no password hash field on
// purpose: what is not loaded cannot leak.
type User struct {
	ID        int64
	Username  string
	Email     string
	FullName  *string
	Role      Role
	IsActive  bool
	CreatedAt time.Time
	UpdatedAt time.Time
	Version   int64 // bumped by every update; its ETag
}

// MarshalJSON writes the user with RFC 3339 UTC timestamps that always
// carry six fractional digits, the precision of the DATETIME(6) columns.
func (u User) MarshalJSON() ([]byte, error) {
	return appendUserJSON(make([]byte, 0, 256), &u), nil
}

// SCIMUser is a user with its SCIM externalId ("" for none).
type SCIMUser struct {
	User
	ExternalID string
}

// NewUser is a validated account ready to be inserted.
type NewUser struct {
	Username     string
	Email        string
	PasswordHash string
	FullName     *string
	Role         Role
	IsActive     bool
	ExternalID   *string // a SCIM client's id for the user (docs/scim.md); nil: none
}

// UserChanges are the columns an update sets; nil fields keep their value.
// FullName can be set to NULL, so it has its own presence flag.
type UserChanges struct {
	Username     *string
	Email        *string
	PasswordHash *string
	SetFullName  bool
	FullName     *string
	Role         *Role
	IsActive     *bool
	// ExternalID sets the SCIM externalId; "" removes it.
	ExternalID *string

	// ExpectPasswordHash, when set, makes the update conditional on the
	// stored hash being this one.
	ExpectPasswordHash string

	// IfVersion is the If-Match precondition: the versions the stored
	// user may have for the update to go ahead.
	IfVersion VersionMatch

	// Key, when set, is the Idempotency-Key the request claimed: its
	// answer is recorded under it in the update's own transaction.
	Key *IdempotencyKey
}

// VersionMatch is an If-Match precondition as data. The zero value allows
// any version; with Checked, only the listed versions pass (none, when
// the list is empty: If-Match named no version we ever gave out).
type VersionMatch struct {
	Checked  bool
	Versions []int64
}

// allows reports whether a user at version may be written.
func (m VersionMatch) allows(version int64) bool {
	return !m.Checked || slices.Contains(m.Versions, version)
}

// userRef names the user a request is about: the caller ("me"), or the
// user with an id.
type userRef struct {
	self bool
	id   int64
}

// resolve returns the id ref names, for the given caller.
func (ref userRef) resolve(caller *Caller) int64 {
	if ref.self {
		return caller.ID
	}
	return ref.id
}

// removesAdmin reports whether the changes demote or deactivate a user.
func (c UserChanges) removesAdmin() bool {
	return c.Role != nil && *c.Role != RoleAdmin || c.IsActive != nil && !*c.IsActive
}

// revocationReason says why the changes end the user's sessions, or is
// "" when they do not: a deactivation, another role, or a new password,
// named in that order when several apply.
func (c UserChanges) revocationReason(cur lockedUser) string {
	switch {
	case c.IsActive != nil && !*c.IsActive && cur.isActive:
		return revokedDeactivated
	case c.Role != nil && *c.Role != cur.role:
		return revokedRoleChanged
	case c.PasswordHash != nil:
		return revokedPasswordChanged
	}
	return ""
}

// changesIdentity reports whether username or email (nil: not sent)
// would change u's: a change the unique indexes may refuse as taken, and
// so one that tells whether another account holds the name. A username
// sent in another case is not one: uniqueness ignores case.
func changesIdentity(username, email *string, u User) bool {
	return username != nil && !strings.EqualFold(*username, u.Username) || email != nil && *email != u.Email
}

// effective returns the changes that change a value of cur, the row as
// locked: a field sent as stored is dropped, so it is neither written, nor
// named in an event, nor logged. A password is always kept: a new hash is
// a change, even of the same password.
func (c UserChanges) effective(cur lockedUser) UserChanges {
	if c.Username != nil && *c.Username == cur.username {
		c.Username = nil
	}
	if c.Email != nil && *c.Email == cur.email {
		c.Email = nil
	}
	if c.SetFullName && sameOptional(c.FullName, cur.fullName) {
		c.SetFullName, c.FullName = false, nil
	}
	if c.Role != nil && *c.Role == cur.role {
		c.Role = nil
	}
	if c.IsActive != nil && *c.IsActive == cur.isActive {
		c.IsActive = nil
	}
	if c.ExternalID != nil && *c.ExternalID == cur.externalID {
		c.ExternalID = nil
	}
	return c
}

// fieldNames names the fields the changes set, the password aside, in the
// order a user.updated event lists them.
func (c UserChanges) fieldNames() []string {
	names := []string{}
	for _, f := range []struct {
		name string
		set  bool
	}{
		{"username", c.Username != nil}, {"email", c.Email != nil}, {"full_name", c.SetFullName},
		{"role", c.Role != nil}, {"is_active", c.IsActive != nil}, {"external_id", c.ExternalID != nil},
	} {
		if f.set {
			names = append(names, f.name)
		}
	}
	return names
}

// none reports whether the changes set no column at all: a write of them
// would change nothing, and so is not made.
func (c UserChanges) none() bool {
	return c.PasswordHash == nil && len(c.fieldNames()) == 0
}

// sameOptional reports whether two optional strings are both absent or
// both present and equal.
func sameOptional(a, b *string) bool {
	return a == nil && b == nil || a != nil && b != nil && *a == *b
}

// lockedUser is what the rules of an update or delete need to know of the
// row they lock, and what its events compare the changes with.
type lockedUser struct {
	username, email string
	fullName        *string
	role            Role
	isActive        bool
	passwordHash    string
	externalID      string // "" when it has none
	version         int64
	// lockedAt is the time the lock was granted: the time of the
	// change's events, and part of its receipt.
	lockedAt time.Time
}

// isActiveAdmin reports whether the locked user is an active admin.
func (u lockedUser) isActiveAdmin() bool { return u.role == RoleAdmin && u.isActive }
