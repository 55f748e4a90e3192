package main

import (
	_ "embed"
	"fmt"
	"slices"
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
// in bytes, whitespace alone, the (normalized) username or email that go
// with it inside it, and the blocklist (commonPassword). username and
// email are nil when unknown.
func passwordProblem(password string, username, email *string) string {
	if n := len(password); n < passwordMinBytes || n > passwordMaxBytes {
		return "must be 8 to 72 bytes long"
	}
	if strings.TrimSpace(password) == "" {
		return "must not be whitespace only"
	}
	if containsIdentity(password, username, email) {
		return "must not contain the username or email"
	}
	if commonPassword(password) {
		return "is a common password, or one with digits or symbols added or taken away; choose another"
	}
	return ""
}

// minIdentityLen is the shortest username or email local part looked for
// inside a password: shorter ones (an email "jo@...") would refuse
// passwords that merely hold two common letters.
const minIdentityLen = 3

// containsIdentity reports whether password holds, ignoring case and
// surrounding whitespace, the username, the email, or the email's local
// part: "  Alice2024 " is as guessable as "alice".
func containsIdentity(password string, username, email *string) bool {
	lower := strings.ToLower(password)
	var identities []string
	if username != nil {
		identities = append(identities, *username)
	}
	if email != nil {
		local, _, _ := strings.Cut(*email, "@")
		identities = append(identities, *email, local)
	}
	for _, id := range identities {
		id = strings.ToLower(strings.TrimSpace(id))
		if id != "" && (lower == id || len(id) >= minIdentityLen && strings.Contains(lower, id)) {
			return true
		}
	}
	return false
}

// fullNameProblem says what is wrong with a trimmed, non-empty full name.
// Bidirectional controls are refused: they can make a name display as
// another (U+202E turns "Eve\u202Enimda" into "Eveadmin"). So are
// characters that show as nothing (invisibleInName): "ad\u200Bmin" looks
// like "admin". The joiners ZWJ and ZWNJ stay: names in several scripts
// need them.
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
		case invisibleInName(r):
			return fmt.Sprintf("must not contain invisible characters (U+%04X)", r)
		}
	}
	return ""
}

// invisibleInName reports whether r shows as nothing, or as a mere gap,
// and so could make one name look like another: the format characters
// (category Cf: zero-width space, BOM, soft hyphen, word joiner, tag
// characters, ...) but the joiners ZWNJ and ZWJ, the other default
// ignorable code points (Hangul fillers, the combining grapheme joiner,
// ...), and the line and paragraph separators. Variation selectors stay:
// they choose how a visible character is drawn.
func invisibleInName(r rune) bool {
	if r == '\u200C' || r == '\u200D' {
		return false
	}
	return unicode.In(r, unicode.Cf, unicode.Other_Default_Ignorable_Code_Point, unicode.Zl, unicode.Zp)
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

// commonPasswordsText is the blocklist NIST SP 800-63B section 5.1.1.2
// asks for: the 10,000 most common passwords (SecLists'
// Passwords/Common-Credentials/10-million-password-list-top-10000.txt,
// MIT licence), one per line.
//
//go:embed common-passwords.txt
var commonPasswordsText string

// morePasswordsText extends the blocklist to 49,233 common passwords:
// zxcvbn's list (passwords.json of the npm package
// @zxcvbn-ts/language-common 4.1.3, MIT licence: Copyright (c) 2012-2016
// Dan Wheeler and Dropbox, Inc.; Copyright (c) 2021 @zxcvbn-ts), one per
// line. 9,236 of the 10,000 above are in it too.
//
//go:embed common-passwords-zxcvbn.txt
var morePasswordsText string

// minPasswordCore is the shortest core (passwordCore) compared with the
// blocklist's: a shorter one ("ab" of "ab-7720-x9!") is no word.
const minPasswordCore = 4

// commonPasswordSet holds the blocklist's entries, lower-cased (a case
// variant of a common password is just as guessable), with the core of
// each (passwordCore): so every line counts, "summer" and "admin" too,
// though shorter than a password may be.
var commonPasswordSet = sync.OnceValue(func() map[string]bool {
	set := map[string]bool{}
	for _, line := range strings.Split(commonPasswordsText+"\n"+morePasswordsText, "\n") {
		if line = strings.ToLower(strings.TrimSpace(line)); line == "" {
			continue
		}
		if len(line) >= passwordMinBytes && len(line) <= passwordMaxBytes {
			set[line] = true
		}
		if core := passwordCore(line); len(core) >= minPasswordCore {
			set[core] = true
		}
	}
	return set
})

// passwordCore is what is left of a lower-cased password once the digits
// and symbols are taken away: its letters, in order ("summer" of
// "summer2024!", "qwer" of "1q2w3e4r"). A password without letters keeps
// its digits ("123456" of "!123456!"). Guessing tools add and take away
// exactly these around a word, so a password whose core is a blocklist
// entry's core is no harder to guess than the entry.
func passwordCore(lower string) string {
	var letters, digits strings.Builder
	for _, r := range lower {
		switch {
		case unicode.IsLetter(r):
			letters.WriteRune(r)
		case r >= '0' && r <= '9':
			digits.WriteByte(byte(r))
		}
	}
	if letters.Len() > 0 {
		return letters.String()
	}
	return digits.String()
}

// leetLetters are the digits and symbols that stand for letters
// ("p@ssw0rd"), read as those letters between two letters only: around
// a word they are additions ("admin123").
var leetLetters = map[rune]rune{'@': 'a', '4': 'a', '$': 's', '5': 's', '0': 'o', '3': 'e', '1': 'i', '!': 'i', '7': 't'}

// unleet is lower with each leetLetters character between two letters
// replaced by its letter.
func unleet(lower string) string {
	runes := []rune(lower)
	out := slices.Clone(runes)
	for i := 1; i+1 < len(runes); i++ {
		letter, ok := leetLetters[runes[i]]
		if ok && isLetterOrLeet(runes[i-1]) && isLetterOrLeet(runes[i+1]) {
			out[i] = letter
		}
	}
	return string(out)
}

// isLetterOrLeet reports whether r is a letter or may stand for one.
func isLetterOrLeet(r rune) bool {
	_, leet := leetLetters[r]
	return leet || unicode.IsLetter(r)
}

// commonPassword reports whether password is on the blocklist, ignoring
// case, or has the core of an entry (passwordCore), read as it is or
// with its leet letters (unleet).
func commonPassword(password string) bool {
	set, lower := commonPasswordSet(), strings.ToLower(password)
	if set[lower] {
		return true
	}
	for _, core := range []string{passwordCore(lower), passwordCore(unleet(lower))} {
		if len(core) >= minPasswordCore && set[core] {
			return true
		}
	}
	return false
}
