package main

import (
	_ "embed"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// What a valid user is: the fields a client sends, their normalisation
// and validation, every problem named at once, and the password policy
// with its blocklist.

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
// '@' and '+' are allowed so that an identity provider's email-shaped
// names (alice@contoso.com) are usernames too (docs/scim.md says how
// sign-in tells them from emails).
func usernameProblem(s string) string {
	const rule = "must be 3 to 50 characters of ASCII letters, digits, '.', '_', '-', '+' or '@', starting with a letter or digit"
	if len(s) < usernameMinLen || len(s) > usernameMaxLen || !isASCIIAlnum(s[0]) {
		return rule
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isASCIIAlnum(c) && !strings.ContainsRune("._-+@", rune(c)) {
			return rule
		}
	}
	return ""
}

// usernameNeedsAdmin reports whether only an admin (or a provisioning
// token) may set the username: one with '@', which sign-in resolves
// before any email (Store.CredentialsFor), so a user who chose their own
// could stand in front of someone else's email.
func usernameNeedsAdmin(s string) bool { return strings.Contains(s, "@") }

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
