package main

import (
	"encoding/json"
	"fmt"
	"strings"
)

// A SCIM user as a state that operations change: PATCH's add, replace
// and remove (RFC 7644 section 3.5.2), and POST and PUT, which replace
// each attribute they carry. The mapping to the user's columns is in
// docs/scim.md.

// scimState is what SCIM can change of a user.
type scimState struct {
	UserName   string
	Email      string
	FullName   *string // as stored; the request's names are resolved into it (resolveName)
	Active     bool
	Role       Role
	ExternalID string  // "" for none
	Password   *string // set by the request; never read back

	// The three sources of the full name a request may write, kept apart
	// so that the order of the members or operations that wrote them does
	// not matter: displayName wins, else name.formatted, else
	// name.givenName and name.familyName joined.
	displayName, formatted, joined nameWrite
}

// nameWrite is a request's write of one source of the full name.
type nameWrite struct {
	set   bool    // the request wrote it
	value *string // nil: removed (or null)
}

// resolveName sets FullName from the sources the request wrote, once,
// after all of its operations: the first of displayName, name.formatted
// and the joined names that has a value (not blank), or none if the
// request only removed or blanked them.
func (st *scimState) resolveName() {
	removed := false
	for _, w := range []nameWrite{st.displayName, st.formatted, st.joined} {
		if w.set && w.value != nil && strings.TrimSpace(*w.value) != "" {
			st.FullName = w.value
			return
		}
		removed = removed || w.set
	}
	if removed {
		st.FullName = nil
	}
}

// scimStateOf is the state of a stored user.
func scimStateOf(u User, externalID string) scimState {
	return scimState{UserName: u.Username, Email: u.Email, FullName: u.FullName, Active: u.IsActive, Role: u.Role, ExternalID: externalID}
}

// scimOp is one operation: op lower-cased, the path as sent ("" for
// none), and the value (nil for none).
type scimOp struct {
	Op    string
	Path  string
	Value json.RawMessage
}

// scimOpMode says what kind of request applies an operation: a PATCH
// refuses to write read-only attributes, a POST or PUT ignores them
// (RFC 7643 section 2.2, readOnly).
type scimOpMode int

const (
	scimPatch scimOpMode = iota
	// scimPatchAdd: a PATCH add, which adds to a multi-valued attribute
	// rather than replacing it (see setEmail).
	scimPatchAdd
	scimReplaceAll
)

// scimPath is a parsed PATCH path: attr[filter].sub.
type scimPath struct {
	Attr   string     // lower-case, without the core schema's URN
	Filter filterNode // nil without brackets
	Sub    string     // lower-case; "" for none
	Ignore bool       // an attribute the service does not store
}

// Attributes the core User schema defines that the service does not
// store: accepted and ignored, as providers send them by default.
var scimIgnoredAttrs = " nickname profileurl title usertype preferredlanguage locale timezone phonenumbers ims photos addresses entitlements x509certificates "

// Attributes a client may not write.
var scimReadOnlyAttrs = " id meta schemas groups "

// scimValueError is an invalidValue error.
func scimValueError(format string, args ...any) error {
	return &SCIMRequestError{Type: "invalidValue", Detail: fmt.Sprintf(format, args...)}
}

// scimPathError is an invalidPath error.
func scimPathError(path string) error {
	return &SCIMRequestError{Type: "invalidPath", Detail: fmt.Sprintf("The path %q names no attribute of the User schema.", truncate(path, 100))}
}

// parseSCIMPath parses a PATCH path or a member name of a value object.
func parseSCIMPath(text string) (scimPath, error) {
	name := text
	if len(name) >= len(scimEnterpriseSchema) && strings.EqualFold(name[:len(scimEnterpriseSchema)], scimEnterpriseSchema) {
		return scimPath{Ignore: true}, nil
	}
	if len(name) > len(scimUserSchema) && strings.EqualFold(name[:len(scimUserSchema)+1], scimUserSchema+":") {
		name = name[len(scimUserSchema)+1:]
	}
	var p scimPath
	if open := strings.IndexByte(name, '['); open >= 0 {
		closing := strings.LastIndexByte(name, ']')
		if closing < open {
			return scimPath{}, scimPathError(text)
		}
		filter, err := parseSCIMFilter(name[open+1 : closing])
		if err != nil {
			return scimPath{}, &SCIMRequestError{Type: "invalidPath", Detail: err.(*SCIMRequestError).Detail}
		}
		p.Filter = filter
		rest := name[closing+1:]
		if rest != "" && (rest[0] != '.' || !isAttrName(strings.ToLower(rest[1:]))) {
			return scimPath{}, scimPathError(text)
		}
		name = name[:open] + rest
	}
	attr, sub, _ := strings.Cut(strings.ToLower(name), ".")
	if !isAttrName(attr) || sub != "" && !isAttrName(sub) {
		return scimPath{}, scimPathError(text)
	}
	p.Attr, p.Sub = attr, sub
	p.Ignore = strings.Contains(scimIgnoredAttrs, " "+attr+" ") ||
		attr == "name" && sub != "" && sub != "formatted"
	return p, nil
}

// apply applies one operation to the state.
func (st *scimState) apply(op scimOp, mode scimOpMode) error {
	switch op.Op {
	case "add", "replace":
		if op.Op == "add" {
			mode = scimPatchAdd
		}
		if op.Path == "" {
			return st.applyObject(op.Value, mode)
		}
		path, err := parseSCIMPath(op.Path)
		if err != nil {
			return err
		}
		return st.set(path, op.Value, mode)
	case "remove":
		if op.Path == "" {
			return &SCIMRequestError{Type: "noTarget", Detail: "A remove operation needs a path."}
		}
		path, err := parseSCIMPath(op.Path)
		if err != nil {
			return err
		}
		return st.remove(path)
	}
	return &SCIMRequestError{Type: "invalidSyntax", Detail: fmt.Sprintf("The op %q is not add, replace or remove.", truncate(op.Op, 32))}
}

// applyObject applies a path-less add or replace: each member of the
// object value is an attribute (or a path) and its new value.
func (st *scimState) applyObject(value json.RawMessage, mode scimOpMode) error {
	members, err := parseJSONObject(value)
	switch {
	case err != nil && mode == scimReplaceAll:
		return err // the body of a POST or PUT: malformed (invalidSyntax)
	case err != nil:
		return scimValueError("An operation without a path needs an object as its value.")
	}
	for _, m := range members {
		if strings.EqualFold(m.Name, scimEnterpriseSchema) {
			continue
		}
		path, err := parseSCIMPath(m.Name)
		if err != nil {
			return err
		}
		if path.Attr == "schemas" && mode == scimReplaceAll {
			continue
		}
		if err := st.set(path, m.Value, mode); err != nil {
			return err
		}
	}
	return nil
}

// set writes value at path.
func (st *scimState) set(p scimPath, value json.RawMessage, mode scimOpMode) error {
	switch {
	case p.Ignore:
		return nil
	case strings.Contains(scimReadOnlyAttrs, " "+p.Attr+" "):
		if mode == scimReplaceAll {
			return nil
		}
		return &SCIMRequestError{Type: "mutability", Detail: fmt.Sprintf("The attribute %q is read-only.", p.Attr)}
	case p.Filter != nil && p.Attr != "emails" && p.Attr != "roles":
		return scimPathError(p.Attr + "[...]")
	}
	switch p.Attr + "." + p.Sub {
	case "username.":
		return setString(&st.UserName, value, "userName")
	case "displayname.":
		st.displayName.set = true
		return setOptional(&st.displayName.value, value, "displayName")
	case "name.formatted":
		st.formatted.set = true
		return setOptional(&st.formatted.value, value, "name.formatted")
	case "name.":
		return st.setName(value)
	case "active.":
		return setActive(&st.Active, value)
	case "externalid.":
		if isNull(value) {
			st.ExternalID = ""
			return nil
		}
		return setString(&st.ExternalID, value, "externalId")
	case "password.":
		var pw string
		if err := setString(&pw, value, "password"); err != nil {
			return err
		}
		st.Password = &pw
		return nil
	case "emails.", "emails.value":
		return st.setEmail(p, value, mode)
	case "roles.", "roles.value":
		return st.setRole(p, value)
	}
	return scimPathError(p.Attr + "." + p.Sub)
}

// remove removes the attribute at path: those the service requires
// cannot be removed.
func (st *scimState) remove(p scimPath) error {
	switch {
	case p.Ignore:
		return nil
	case strings.Contains(scimReadOnlyAttrs, " "+p.Attr+" "):
		return &SCIMRequestError{Type: "mutability", Detail: fmt.Sprintf("The attribute %q is read-only.", p.Attr)}
	}
	switch p.Attr + "." + p.Sub {
	case "displayname.":
		st.displayName = nameWrite{set: true}
	case "name.formatted":
		st.formatted = nameWrite{set: true}
	case "name.":
		st.formatted, st.joined = nameWrite{set: true}, nameWrite{set: true}
	case "externalid.":
		st.ExternalID = ""
	case "roles.", "roles.value":
		if _, err := st.matchRole(p); err != nil {
			return err
		}
		st.Role = RoleUser
	case "username.", "active.", "password.", "emails.", "emails.value":
		return scimValueError("The attribute %q is required and cannot be removed.", p.String())
	default:
		return scimPathError(p.String())
	}
	return nil
}

func (p scimPath) String() string {
	return attrPath{Attr: p.Attr, Sub: p.Sub}.String()
}

// setName writes the sources of the full name a name object holds: its
// formatted member, and its given and family names joined (resolveName
// picks). null removes both.
func (st *scimState) setName(value json.RawMessage) error {
	if isNull(value) {
		st.formatted, st.joined = nameWrite{set: true}, nameWrite{set: true}
		return nil
	}
	var name map[string]any
	if err := json.Unmarshal(value, &name); err != nil {
		return scimValueError("name must be an object.")
	}
	parts := map[string]string{}
	for k, v := range name {
		if s, ok := v.(string); ok {
			parts[strings.ToLower(k)] = strings.TrimSpace(s)
		}
	}
	if formatted := parts["formatted"]; formatted != "" {
		st.formatted = nameWrite{set: true, value: &formatted}
	}
	if joined := strings.TrimSpace(parts["givenname"] + " " + parts["familyname"]); joined != "" {
		st.joined = nameWrite{set: true, value: &joined}
	}
	return nil
}

// setEmail sets the email from emails (an array of values, the primary
// one, else the first, is kept), from a value object, or from the value
// a path such as emails[type eq "work"].value names. The user has one
// email, of type work and primary, the one they sign in with: a PATCH
// add of an email that is neither (a home email added next to it, as a
// provider means it) would replace it, and is refused.
func (st *scimState) setEmail(p scimPath, value json.RawMessage, mode scimOpMode) error {
	if p.Filter != nil {
		ok, err := evalFilter(p.Filter, map[string]any{"value": st.Email, "type": "work", "primary": true})
		if err != nil {
			return err
		}
		if !ok {
			return &SCIMRequestError{Type: "noTarget", Detail: "The filter of the path matches no email: the user has one, of type work, primary."}
		}
	}
	if p.Sub == "value" {
		return setString(&st.Email, value, "emails.value")
	}
	email, entry, err := primaryValue(value, "emails")
	if err != nil {
		return err
	}
	if mode == scimPatchAdd && p.Filter == nil && !isSignInEmail(entry) {
		return scimValueError("Only one email is supported, the work and primary one the user signs in with: " +
			"an added email of another type, not primary, would replace it. Replace the email instead.")
	}
	st.Email = email
	return nil
}

// isSignInEmail reports whether an emails entry (nil for a plain
// string) may stand for the user's one email: primary, of type work, or
// of no type.
func isSignInEmail(entry map[string]any) bool {
	e := lowerKeys(entry)
	kind, typed := e["type"].(string)
	return truthy(e["primary"]) || !typed || strings.EqualFold(kind, "work")
}

// setRole sets the role like setEmail the email: "admin" or "user".
func (st *scimState) setRole(p scimPath, value json.RawMessage) error {
	if _, err := st.matchRole(p); err != nil {
		return err
	}
	if isEmptyArray(value) {
		st.Role = RoleUser // no role: an ordinary user (Entra ID sends "roles": [])
		return nil
	}
	var role string
	var err error
	if p.Sub == "value" {
		err = setString(&role, value, "roles.value")
	} else {
		role, _, err = primaryValue(value, "roles")
	}
	if err != nil {
		return err
	}
	if Role(strings.ToLower(role)) != RoleAdmin && Role(strings.ToLower(role)) != RoleUser {
		return scimValueError(`roles must be "admin" or "user".`)
	}
	st.Role = Role(strings.ToLower(role))
	return nil
}

// matchRole checks the value filter of a roles path against the role.
func (st *scimState) matchRole(p scimPath) (bool, error) {
	if p.Filter == nil {
		return true, nil
	}
	ok, err := evalFilter(p.Filter, map[string]any{"value": string(st.Role), "primary": true})
	if err == nil && !ok {
		err = &SCIMRequestError{Type: "noTarget", Detail: "The filter of the path matches no role: the user has one, primary."}
	}
	return ok, err
}
