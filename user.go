package main

import (
	_ "embed"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
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

// NewUser is a validated account ready to be inserted.
type NewUser struct {
	Username     string
	Email        string
	PasswordHash string
	FullName     *string
	Role         Role
	IsActive     bool
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
		{"role", c.Role != nil}, {"is_active", c.IsActive != nil},
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

// userFields are the fields a client may send to create or update a user,
// as decoded from the body: nil means absent.
type userFields struct {
	Username    *string
	Email       *string
	Password    *string
	HasFullName bool
	FullName    *string // nil with HasFullName: clear it
	Role        *string
	IsActive    *bool

	// CurrentPassword proves who changes their own password or email.
	CurrentPassword *string

	// The read-only members of a user as GET gives it, which a PUT or
	// PATCH may send back: ID must then be the path's id, and the
	// timestamps are ignored (If-Match is the concurrency check).
	ID       *int64
	ReadOnly []string // the read-only members present, by name
}

// fieldError names one problem with one field of a request.
type fieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// fieldErrors collects every problem of a request, so all are reported at once.
type fieldErrors []fieldError

func (e *fieldErrors) add(field, message string) {
	*e = append(*e, fieldError{Field: field, Message: message})
}

func (e fieldErrors) has(field string) bool {
	for _, fe := range e {
		if fe.Field == field {
			return true
		}
	}
	return false
}

// normalize trims the text fields, lowercases the email and turns a
// full_name that is empty after trimming into null. The password is taken
// exactly as sent. Normalizing twice gives the same result as once.
func (f *userFields) normalize() {
	if f.Username != nil {
		*f.Username = strings.TrimSpace(*f.Username)
	}
	if f.Email != nil {
		*f.Email = strings.ToLower(strings.TrimSpace(*f.Email))
	}
	if f.FullName != nil {
		if name := strings.TrimSpace(*f.FullName); name == "" {
			f.FullName = nil
		} else {
			*f.FullName = name
		}
	}
}

// validateForCreate checks normalized fields for a new user: username,
// email and password are required. Fields that already failed to decode
// (listed in decodeErrs) are not reported again as missing.
func (f *userFields) validateForCreate(decodeErrs fieldErrors) fieldErrors {
	var errs fieldErrors
	required := []struct {
		field string
		value *string
	}{{"username", f.Username}, {"email", f.Email}, {"password", f.Password}}
	for _, r := range required {
		if r.value == nil && !decodeErrs.has(r.field) {
			errs.add(r.field, "is required")
		}
	}
	for _, name := range f.ReadOnly {
		if !decodeErrs.has(name) {
			errs.add(name, "is set by the service; leave it out")
		}
	}
	return append(errs, f.validatePresent()...)
}

// fastEligible reports whether the fields can take the fast write path
// (store_fastpath.go): they change username, email or full name, and
// nothing that needs the locking path (a password, with or without the
// current one, a role, the active flag).
func (f *userFields) fastEligible() bool {
	return f.Password == nil && f.CurrentPassword == nil && f.Role == nil && f.IsActive == nil &&
		(f.Username != nil || f.Email != nil || f.HasFullName)
}

// changesSomething reports whether the fields ask for any change: the
// read-only members alone do not.
func (f *userFields) changesSomething() bool {
	return f.Username != nil || f.Email != nil || f.Password != nil || f.HasFullName ||
		f.Role != nil || f.IsActive != nil || f.CurrentPassword != nil
}

// validatePresent checks each field that is present against its rules.
func (f *userFields) validatePresent() fieldErrors {
	var errs fieldErrors
	if f.Username != nil {
		if msg := usernameProblem(*f.Username); msg != "" {
			errs.add("username", msg)
		}
	}
	if f.Email != nil {
		if msg := emailProblem(*f.Email); msg != "" {
			errs.add("email", msg)
		}
	}
	if f.Password != nil {
		if msg := passwordProblem(*f.Password, f.Username, f.Email); msg != "" {
			errs.add("password", msg)
		}
	}
	if f.CurrentPassword != nil && f.Password == nil && f.Email == nil {
		errs.add("current_password", "is only accepted with a new password or email")
	}
	if f.FullName != nil {
		if msg := fullNameProblem(*f.FullName); msg != "" {
			errs.add("full_name", msg)
		}
	}
	if f.Role != nil && Role(*f.Role) != RoleAdmin && Role(*f.Role) != RoleUser {
		errs.add("role", `must be "admin" or "user"`)
	}
	return errs
}

// usernameProblem says what is wrong with a trimmed username, or "".
func usernameProblem(s string) string {
	const rule = "must be 3 to 50 characters of ASCII letters, digits, '.', '_' or '-', starting with a letter or digit"
	if len(s) < usernameMinLen || len(s) > usernameMaxLen || !isASCIIAlnum(s[0]) {
		return rule
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isASCIIAlnum(c) && c != '.' && c != '_' && c != '-' {
			return rule
		}
	}
	return ""
}

// emailProblem says what is wrong with a normalized email, or "". It accepts
// one plain ASCII address, local@domain: a dot-atom local part (RFC 5322,
// without quoted strings or comments) and a domain of at least two
// letter-digit-hyphen labels.
func emailProblem(s string) string {
	const rule = "must be a single plain address like name@example.com"
	if len(s) > emailMaxLen {
		return "must be at most 254 characters"
	}
	local, domain, ok := strings.Cut(s, "@")
	if !ok || !isDotAtom(local) || len(local) > emailLocalMaxLen || !isDomainName(domain) {
		return rule
	}
	return ""
}

// isDotAtom reports whether s is an RFC 5322 dot-atom: atext runs
// separated by single dots.
func isDotAtom(s string) bool {
	if s == "" {
		return false
	}
	for _, atom := range strings.Split(s, ".") {
		if atom == "" {
			return false
		}
		for i := 0; i < len(atom); i++ {
			if !isASCIIAlnum(atom[i]) && !strings.ContainsRune("!#$%&'*+/=?^_`{|}~-", rune(atom[i])) {
				return false
			}
		}
	}
	return true
}

// isDomainName reports whether s is a host name with at least one dot:
// labels of 1 to 63 letters, digits and inner hyphens.
func isDomainName(s string) bool {
	labels := strings.Split(s, ".")
	if len(labels) < 2 || len(s) > 253 {
		return false
	}
	for _, label := range labels {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if !isASCIIAlnum(label[i]) && label[i] != '-' {
				return false
			}
		}
	}
	return true
}

// passwordProblem says what is wrong with a password, or "": its length
// in bytes, and whether it equals the (normalized) username or email that
// go with it, which are nil when unknown.
func passwordProblem(password string, username, email *string) string {
	if n := len(password); n < passwordMinBytes || n > passwordMaxBytes {
		return "must be 8 to 72 bytes long"
	}
	for _, same := range []*string{username, email} {
		if same != nil && strings.EqualFold(password, *same) {
			return "must not be the same as the username or email"
		}
	}
	if commonPassword(password) {
		return "is one of the most common passwords; choose another"
	}
	return ""
}

// fullNameProblem says what is wrong with a trimmed, non-empty full name.
// Bidirectional controls are refused: they can make a name display as
// another (U+202E turns "Eve\u202Enimda" into "Eveadmin"). The joiners
// ZWJ and ZWNJ stay: names in several scripts need them.
func fullNameProblem(s string) string {
	if utf8.RuneCountInString(s) > fullNameMaxRunes {
		return "must be at most 255 characters"
	}
	for _, r := range s {
		switch {
		case unicode.IsControl(r):
			return "must not contain control characters"
		case unicode.Is(unicode.Bidi_Control, r):
			return "must not contain bidirectional control characters"
		}
	}
	return ""
}

func isASCIIAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// fieldName is how an error names a field the client sent: at most 64
// bytes of it, and "" (two quotes) for an empty name, so that every error
// names something.
func fieldName(name string) string {
	if name == "" {
		return `""`
	}
	return truncate(name, 64)
}

// truncate shortens s to at most n bytes without splitting a character.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// lockedUser is what the rules of an update or delete need to know of the
// row they lock, and what its events compare the changes with.
type lockedUser struct {
	username, email string
	fullName        *string
	role            Role
	isActive        bool
	passwordHash    string
	version         int64
	// lockedAt is the time the lock was granted: the time of the
	// change's events, and part of its receipt.
	lockedAt time.Time
}

// isActiveAdmin reports whether the locked user is an active admin.
func (u lockedUser) isActiveAdmin() bool { return u.role == RoleAdmin && u.isActive }

// commonPasswords is the blocklist NIST SP 800-63B section 5.1.1.2 asks
// for: the 10,000 most common passwords (SecLists'
// Passwords/Common-Credentials/10-million-password-list-top-10000.txt,
// MIT licence), one per line.
//
//go:embed common-passwords.txt
var commonPasswordsText string

// commonPasswordSet holds the blocklist's entries that are valid
// passwords otherwise (8 to 72 bytes), lower-cased: a case variant of a
// common password is just as guessable.
var commonPasswordSet = sync.OnceValue(func() map[string]bool {
	set := map[string]bool{}
	for _, line := range strings.Split(commonPasswordsText, "\n") {
		if line = strings.TrimSpace(line); len(line) >= passwordMinBytes && len(line) <= passwordMaxBytes {
			set[strings.ToLower(line)] = true
		}
	}
	return set
})

// commonPassword reports whether password is on the blocklist.
func commonPassword(password string) bool {
	return commonPasswordSet()[strings.ToLower(password)]
}
