package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// A user as a SCIM User resource, and back: the mapping docs/scim.md
// writes down, the projection of attributes, and the writes of POST, PUT
// and PATCH through the same validation and store as the API.

// scimResource is u as a SCIM User resource, its location under base.
func scimResource(u SCIMUser, base string) map[string]any {
	id := strconv.FormatInt(u.ID, 10)
	res := map[string]any{
		"schemas":  []string{scimUserSchema},
		"id":       id,
		"userName": u.Username,
		"active":   u.IsActive,
		"emails":   []map[string]any{{"value": u.Email, "type": "work", "primary": true}},
		"roles":    []map[string]any{{"value": string(u.Role), "primary": true}},
		"meta": map[string]any{
			"resourceType": "User",
			"created":      u.CreatedAt.UTC().Format(timestampJSONForm),
			"lastModified": u.UpdatedAt.UTC().Format(timestampJSONForm),
			"location":     base + "/Users/" + id,
			"version":      scimETag(u.Version),
		},
	}
	if u.FullName != nil {
		res["displayName"] = *u.FullName
		res["name"] = map[string]any{"formatted": *u.FullName}
	}
	if u.ExternalID != "" {
		res["externalId"] = u.ExternalID
	}
	return res
}

// projection is a request's attributes or excludedAttributes (RFC 7644
// section 3.4.2.5): paths in lower case. id and schemas always stay.
// selective: attributes was sent, so only what it names is returned
// (only may be empty when it named extension attributes alone).
type projection struct {
	only, except []attrPath
	selective    bool
}

// parseProjection reads attributes and excludedAttributes.
func parseProjection(r *http.Request) (projection, error) {
	var p projection
	values := r.URL.Query()
	for _, param := range []struct {
		name string
		dst  *[]attrPath
	}{{"attributes", &p.only}, {"excludedAttributes", &p.except}} {
		text := values.Get(param.name)
		if text == "" {
			continue
		}
		p.selective = p.selective || param.name == "attributes"
		for _, name := range strings.Split(text, ",") {
			name = strings.TrimSpace(name)
			if isExtensionAttr(name) {
				continue // the service stores no extension attribute: none to return or drop
			}
			path, err := parseAttrPath(name)
			if err != nil {
				return projection{}, scimValueError("%s: %q is not an attribute name.", param.name, truncate(name, 64))
			}
			*param.dst = append(*param.dst, path)
		}
	}
	return p, nil
}

// isExtensionAttr reports whether name is qualified by a schema URN other
// than the core User schema's (the enterprise extension's, say).
func isExtensionAttr(name string) bool {
	return len(name) > 4 && strings.EqualFold(name[:4], "urn:") &&
		!(len(name) > len(scimUserSchema) && strings.EqualFold(name[:len(scimUserSchema)+1], scimUserSchema+":"))
}

// apply keeps the attributes of res the projection asks for.
func (p projection) apply(res map[string]any) map[string]any {
	if !p.selective && len(p.except) == 0 {
		return res
	}
	out := map[string]any{}
	for name, value := range res {
		key := strings.ToLower(name)
		if key == "id" || key == "schemas" {
			out[name] = value
			continue
		}
		if p.selective {
			value = pick(value, key, p.only, true)
		}
		if value != nil && len(p.except) > 0 {
			value = pick(value, key, p.except, false)
		}
		if value != nil {
			out[name] = value
		}
	}
	return out
}

// pick applies the paths to the attribute key with value: keep selects
// what they name, otherwise it drops it. nil drops the attribute.
func pick(value any, key string, paths []attrPath, keep bool) any {
	var subs []string
	for _, p := range paths {
		if p.Attr != key {
			continue
		}
		if p.Sub == "" {
			if keep {
				return value
			}
			return nil
		}
		subs = append(subs, p.Sub)
	}
	if len(subs) == 0 {
		if keep {
			return nil
		}
		return value
	}
	filter := func(m map[string]any) map[string]any {
		out := map[string]any{}
		for k, v := range m {
			named := false
			for _, sub := range subs {
				named = named || strings.EqualFold(k, sub)
			}
			if named == keep {
				out[k] = v
			}
		}
		return out
	}
	switch v := value.(type) {
	case map[string]any:
		if out := filter(v); len(out) > 0 {
			return out
		}
		return nil // nothing of it is left
	case []map[string]any:
		out := make([]map[string]any, len(v))
		for i, m := range v {
			out[i] = filter(m)
		}
		return out
	}
	if keep {
		return nil
	}
	return value
}

// parsePatchOps reads a PatchOp message: its Operations, each with an op
// (in any case, as Entra ID writes "Replace"), an optional path and a
// value.
func parsePatchOps(body []byte) ([]scimOp, error) {
	members, err := parseJSONObject(body)
	if err != nil {
		return nil, err
	}
	var raw json.RawMessage
	for _, m := range members {
		if strings.EqualFold(m.Name, "Operations") {
			raw = m.Value
		}
	}
	var entries []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &entries); err != nil || len(entries) == 0 {
		return nil, &SCIMRequestError{Type: "invalidSyntax", Detail: "A PATCH needs Operations: a non-empty array of operations."}
	}
	ops := make([]scimOp, len(entries))
	for i, e := range entries {
		for name, value := range e {
			switch strings.ToLower(name) {
			case "op":
				if json.Unmarshal(value, &ops[i].Op) != nil {
					return nil, &SCIMRequestError{Type: "invalidSyntax", Detail: "op must be a string."}
				}
				ops[i].Op = strings.ToLower(ops[i].Op)
			case "path":
				if json.Unmarshal(value, &ops[i].Path) != nil {
					return nil, &SCIMRequestError{Type: "invalidPath", Detail: "path must be a string."}
				}
			case "value":
				ops[i].Value = value
			}
		}
		if ops[i].Op != "remove" && ops[i].Value == nil {
			return nil, &SCIMRequestError{Type: "invalidSyntax", Detail: fmt.Sprintf("Operation %d (%s) needs a value.", i+1, ops[i].Op)}
		}
	}
	return ops, nil
}

// scimNewUser validates the state of a POST as a new user, hashing its
// password. Without emails, an email-shaped userName is the email too.
// Without a password, the user exists and cannot sign in until one is
// set: the empty hash matches no password.
func (s *server) scimNewUser(r *http.Request, st scimState) (NewUser, error) {
	if err := mayProvision(callerFrom(r.Context()).isProvisioner(), "", st.Role); err != nil {
		return NewUser{}, err
	}
	if st.UserName == "" {
		return NewUser{}, scimValueError("userName is required.")
	}
	if strings.TrimSpace(st.Email) == "" && emailProblem(strings.ToLower(strings.TrimSpace(st.UserName))) == "" {
		st.Email = st.UserName
	}
	f, err := scimFields(st, scimStateOf(User{}, ""), true)
	if err != nil {
		return NewUser{}, err
	}
	nu := NewUser{Username: *f.Username, Email: *f.Email, FullName: f.FullName, Role: st.Role, IsActive: st.Active}
	if st.ExternalID != "" {
		nu.ExternalID = &st.ExternalID
	}
	if f.Password != nil {
		if nu.PasswordHash, err = s.passwords.Hash(r.Context(), *f.Password, scimSource(r)); err != nil {
			return NewUser{}, fmt.Errorf("scim create user: %w", err)
		}
	}
	return nu, nil
}

// scimSource is whom a password hash is computed for, in the hasher's
// fair queue: the provisioning token, or the admin.
func scimSource(r *http.Request) string {
	if caller := callerFrom(r.Context()); caller.isProvisioner() {
		return "token:" + strconv.FormatInt(caller.TokenID, 10)
	}
	return accountKey(callerFrom(r.Context()).ID)
}

// scimFields are the fields of st that differ from cur (all of them for
// a create), normalized and validated by the API's own rules. The full
// name is resolved here, once, after all of the request's operations.
func scimFields(st, cur scimState, create bool) (userFields, error) {
	st.resolveName()
	var f userFields
	if create || st.UserName != cur.UserName {
		f.Username = &st.UserName
	}
	if create || !strings.EqualFold(strings.TrimSpace(st.Email), cur.Email) {
		f.Email = &st.Email
	}
	if create || !sameOptional(st.FullName, cur.FullName) {
		f.HasFullName, f.FullName = true, st.FullName
	}
	f.Password = st.Password
	f.normalize()
	var errs fieldErrors
	if create && f.Email != nil && *f.Email == "" {
		errs.add("email", "is required: send emails, or an email-shaped userName")
	} else {
		errs = f.validatePresent()
	}
	if len(st.ExternalID) > 255 {
		errs.add("externalId", "must be at most 255 bytes")
	}
	if f.Password != nil && !errs.has("password") {
		if msg := passwordProblem(*f.Password, &st.UserName, &st.Email); msg != "" {
			errs.add("password", msg)
		}
	}
	if len(errs) > 0 {
		return userFields{}, badRequest("The user is not valid.", errs...)
	}
	return f, nil
}

// scimUpdate reads the user, applies change to its state, and writes
// what changed, pinned to the version it read: a concurrent write makes
// it read and apply again, a few times, so PATCH operations apply to the
// user as it is. If-Match, when sent, must name the version read.
func (s *server) scimUpdate(w http.ResponseWriter, r *http.Request, change func(*scimState) error) {
	id, err := pathSCIMUser(r)
	var ifVersion VersionMatch
	if err == nil {
		ifVersion, err = scimIfMatch(r)
	}
	var updated SCIMUser
	for attempt := 0; err == nil; attempt++ {
		updated, err = s.scimUpdateOnce(r, id, ifVersion, change)
		if !errors.Is(err, errVersionMoved) {
			break
		}
		if attempt == scimUpdateAttempts-1 {
			err = ErrPreconditionFailed
		} else {
			err = nil
		}
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("ETag", scimETag(updated.Version))
	s.writeSCIM(w, r, http.StatusOK, scimResource(updated, s.scimBase(r)))
}

// errVersionMoved: the user changed between the read of an update and
// its write.
var errVersionMoved = errors.New("scim update: the user changed meanwhile")

// scimUpdateOnce is one read, change and write of scimUpdate.
func (s *server) scimUpdateOnce(r *http.Request, id int64, ifVersion VersionMatch, change func(*scimState) error) (SCIMUser, error) {
	cur, hash, err := s.store.SCIMUserWithPasswordHash(r.Context(), id)
	if err != nil {
		return SCIMUser{}, err
	}
	if !ifVersion.allows(cur.Version) {
		return SCIMUser{}, ErrPreconditionFailed
	}
	before := scimStateOf(cur.User, cur.ExternalID)
	st := before
	if err := change(&st); err != nil {
		return SCIMUser{}, err
	}
	if err := mayProvision(callerFrom(r.Context()).isProvisioner(), cur.Role, st.Role); err != nil {
		return SCIMUser{}, err
	}
	changes, err := s.scimChanges(r, st, before, hash)
	if err != nil {
		return SCIMUser{}, err
	}
	if caller := callerFrom(r.Context()); caller.ID == id && (changes.PasswordHash != nil || changes.Email != nil) {
		return SCIMUser{}, errSelfBySCIM
	}
	changes.IfVersion = VersionMatch{Checked: true, Versions: []int64{cur.Version}}
	user, made, err := s.store.UpdateUser(r.Context(), id, changes, s.actor(r))
	switch {
	case errors.Is(err, ErrPreconditionFailed):
		return SCIMUser{}, errVersionMoved
	case err != nil:
		return SCIMUser{}, err
	}
	s.logSensitiveChanges(r, id, made)
	return SCIMUser{User: user, ExternalID: st.ExternalID}, nil
}

// scimChanges turns a changed state into the columns to set. A password
// that is the one stored is no change (PUT sends it back each time), so
// it neither makes a new hash nor ends the user's sessions.
func (s *server) scimChanges(r *http.Request, st, before scimState, hash string) (UserChanges, error) {
	f, err := scimFields(st, before, false)
	if err != nil {
		return UserChanges{}, err
	}
	c := UserChanges{Username: f.Username, Email: f.Email, SetFullName: f.HasFullName, FullName: f.FullName}
	if st.Active != before.Active {
		c.IsActive = &st.Active
	}
	if st.Role != before.Role {
		c.Role = &st.Role
	}
	if st.ExternalID != before.ExternalID {
		c.ExternalID = &st.ExternalID
	}
	if f.Password == nil {
		return c, nil
	}
	if same, err := s.passwords.Matches(r.Context(), hash, *f.Password, scimSource(r)); err != nil || same {
		return c, err
	}
	newHash, err := s.passwords.Hash(r.Context(), *f.Password, scimSource(r))
	if err != nil {
		return UserChanges{}, fmt.Errorf("scim update user: %w", err)
	}
	c.PasswordHash = &newHash
	return c, nil
}
