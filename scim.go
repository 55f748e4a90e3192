package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
)

// The SCIM 2.0 service provider (RFC 7643, RFC 7644) under /scim/v2:
// the Users resource over the same store, rules and audit trail as the
// API, for identity providers with a provisioning token (docs/scim.md).
// The resource mapping is in scim_user.go, the operations in
// scim_patch.go, the filters in scim_filter.go and store_scim.go, the
// discovery resources in scim_discovery.go.

const (
	scimPrefix      = "/scim/v2"
	scimMediaType   = "application/scim+json"
	scimErrorSchema = "urn:ietf:params:scim:api:messages:2.0:Error"
	scimListSchema  = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
	scimPatchSchema = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	// scimMaxCount is the most users one page lists (count).
	scimMaxCount = 200
	// scimDefaultCount is a page's size without count.
	scimDefaultCount = 100
	// scimUpdateAttempts bounds the re-reads of an update that raced
	// another writer of the same user.
	scimUpdateAttempts = 3
)

// scimBodyTypes are the media types a SCIM request body may have.
var scimBodyTypes = []string{scimMediaType, "application/json"}

// isSCIMPath reports whether path is a SCIM one, answered in SCIM's
// shapes, errors included.
func isSCIMPath(path string) bool {
	return path == scimPrefix || strings.HasPrefix(path, scimPrefix+"/")
}

// writeErrorFor answers err as problemFor maps it: in the SCIM error
// schema on a SCIM path, as problem+json elsewhere.
func writeErrorFor(w http.ResponseWriter, r *http.Request, err error) {
	if !isSCIMPath(r.URL.Path) {
		writeProblem(w, problemFor(err))
		return
	}
	a := problemFor(err)
	for name, values := range a.Header {
		w.Header()[name] = values
	}
	body := map[string]any{"schemas": []string{scimErrorSchema}, "status": strconv.Itoa(a.Status), "detail": scimDetail(a)}
	if t := scimTypeFor(err, a.Status); t != "" {
		body["scimType"] = t
	}
	b, _ := marshalJSON(body) // strings only: it always encodes
	writeBody(w, a.Status, scimMediaType, b)
}

// scimDetail is the problem's detail with the fields it names, as the
// SCIM error has no errors member.
func scimDetail(a problemAnswer) string {
	detail := a.Detail
	for _, fe := range a.Errors {
		if fe.Field != "body" {
			detail += fmt.Sprintf(" %s %s.", scimAttrName(fe.Field), fe.Message)
		}
	}
	return detail
}

// scimAttrName is the SCIM attribute an API field is.
func scimAttrName(field string) string {
	switch field {
	case "username":
		return "userName"
	case "email":
		return "emails.value"
	case "full_name":
		return "displayName"
	case "is_active":
		return "active"
	case "role":
		return "roles"
	}
	return field
}

// scimTypeFor is the scimType of an error answered with status, or "":
// the same domain errors problemFor maps, with SCIM's keyword.
func scimTypeFor(err error, status int) string {
	var scimErr *SCIMRequestError
	var conflict *ConflictError
	var reqErr *requestError
	switch {
	case errors.As(err, &scimErr):
		return scimErr.Type
	case errors.As(err, &conflict):
		return "uniqueness"
	case errors.As(err, &reqErr) && status == http.StatusBadRequest:
		if len(reqErr.fields) == 1 && reqErr.fields[0].Field == "body" {
			return "invalidSyntax"
		}
		return "invalidValue"
	}
	return ""
}

// writeSCIM writes a SCIM resource or message.
func (s *server) writeSCIM(w http.ResponseWriter, r *http.Request, status int, v any) {
	body, err := marshalJSON(v)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeBody(w, status, scimMediaType, body)
}

// scimBase is the absolute URL of /scim/v2 as the client reached it, for
// meta.location: https when the connection is TLS or a trusted proxy
// (TRUSTED_PROXIES) says so; anyone else's X-Forwarded-Proto is ignored.
func (s *server) scimBase(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil || s.proxies.sentBy(r) && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		scheme = "https"
	}
	return scheme + "://" + r.Host + scimPrefix
}

// scimIfMatch reads If-Match as SCIM clients send it: the weak ETag of
// meta.version (W/"3"), or a strong one; each names a version.
func scimIfMatch(r *http.Request) (VersionMatch, error) {
	value := r.Header.Get("If-Match")
	if value == "" {
		return VersionMatch{}, nil
	}
	et, ok := parseEntityTags(value)
	if !ok {
		return VersionMatch{}, &SCIMRequestError{Type: "invalidSyntax", Detail: `If-Match must be * or a list of entity tags such as W/"3".`}
	}
	if et.any {
		return VersionMatch{}, nil
	}
	match := VersionMatch{Checked: true}
	for _, tag := range et.tags {
		if version, ok := scimUserID(strings.Trim(strings.TrimPrefix(tag, "W/"), `"`)); ok {
			match.Versions = append(match.Versions, version)
		}
	}
	return match, nil
}

// scimETag is the weak ETag of a version: meta.version and the ETag
// header.
func scimETag(version int64) string { return `W/"` + strconv.FormatInt(version, 10) + `"` }

// pathSCIMUser parses the {id} of a SCIM user path: an id the service
// never gave out names no user (404), as SCIM ids are opaque strings.
func pathSCIMUser(r *http.Request) (int64, error) {
	id, ok := scimUserID(r.PathValue("id"))
	if !ok {
		return 0, ErrNotFound
	}
	return id, nil
}

// handleSCIMGetUser answers one user.
func (s *server) handleSCIMGetUser(w http.ResponseWriter, r *http.Request) {
	proj, err := parseProjection(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	id, err := pathSCIMUser(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	u, err := s.store.SCIMUser(r.Context(), id)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("ETag", scimETag(u.Version))
	s.writeSCIM(w, r, http.StatusOK, proj.apply(scimResource(u, s.scimBase(r))))
}

// handleSCIMListUsers answers a page of the users a filter selects.
func (s *server) handleSCIMListUsers(w http.ResponseWriter, r *http.Request) {
	q, err := parseSCIMListQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	users, total, err := s.store.SCIMUsers(r.Context(), q.filter, q.startIndex, q.count)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	base := s.scimBase(r)
	resources := make([]map[string]any, len(users))
	for i, u := range users {
		resources[i] = q.proj.apply(scimResource(u, base))
	}
	s.writeSCIM(w, r, http.StatusOK, map[string]any{"schemas": []string{scimListSchema}, "totalResults": total,
		"startIndex": q.startIndex, "itemsPerPage": len(resources), "Resources": resources})
}

// scimListQuery is a parsed list request.
type scimListQuery struct {
	filter            filterNode // nil: every user
	startIndex, count int64
	proj              projection
}

// parseSCIMListQuery reads filter, startIndex, count, attributes and
// excludedAttributes. A startIndex below 1 is 1, a negative count 0, and
// one above scimMaxCount is scimMaxCount (RFC 7644 section 3.4.2.4).
// Other parameters (sortBy, sortOrder) are ignored: sorting is not
// supported, as ServiceProviderConfig says.
func parseSCIMListQuery(r *http.Request) (scimListQuery, error) {
	values := r.URL.Query()
	q := scimListQuery{startIndex: 1, count: scimDefaultCount}
	var err error
	if q.proj, err = parseProjection(r); err != nil {
		return q, err
	}
	for _, p := range []struct {
		name string
		dst  *int64
		min  int64
	}{{"startIndex", &q.startIndex, 1}, {"count", &q.count, 0}} {
		text := values.Get(p.name)
		if text == "" {
			continue
		}
		n, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return q, &SCIMRequestError{Type: "invalidValue", Detail: p.name + " must be an integer."}
		}
		*p.dst = max(n, p.min)
	}
	q.count = min(q.count, scimMaxCount)
	if text := values.Get("filter"); text != "" {
		if q.filter, err = parseSCIMFilter(text); err != nil {
			return q, err
		}
	}
	return q, nil
}

// handleSCIMCreateUser creates a user from a SCIM resource.
func (s *server) handleSCIMCreateUser(w http.ResponseWriter, r *http.Request) {
	body, err := readJSONBody(w, r, scimBodyTypes...)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	st := scimState{Active: true, Role: RoleUser}
	if err := st.applyObject(body, scimReplaceAll); err != nil {
		s.writeError(w, r, err)
		return
	}
	nu, err := s.scimNewUser(r, st)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	created, err := s.store.CreateUser(r.Context(), nu, s.actor(r), nil)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	res := scimResource(SCIMUser{User: created, ExternalID: st.ExternalID}, s.scimBase(r))
	w.Header().Set("Location", res["meta"].(map[string]any)["location"].(string))
	w.Header().Set("ETag", scimETag(created.Version))
	s.writeSCIM(w, r, http.StatusCreated, res)
}

// handleSCIMReplaceUser serves PUT: each attribute the body carries
// replaces the stored one; those it leaves out keep their value.
func (s *server) handleSCIMReplaceUser(w http.ResponseWriter, r *http.Request) {
	body, err := readJSONBody(w, r, scimBodyTypes...)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.scimUpdate(w, r, func(st *scimState) error { return st.applyObject(body, scimReplaceAll) })
}

// handleSCIMPatchUser serves PATCH: the operations, in order.
func (s *server) handleSCIMPatchUser(w http.ResponseWriter, r *http.Request) {
	body, err := readJSONBody(w, r, scimBodyTypes...)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ops, err := parsePatchOps(body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.scimUpdate(w, r, func(st *scimState) error {
		for _, op := range ops {
			if err := st.apply(op, scimPatch); err != nil {
				return err
			}
		}
		return nil
	})
}

// handleSCIMDeleteUser deletes a user, with If-Match when sent.
func (s *server) handleSCIMDeleteUser(w http.ResponseWriter, r *http.Request) {
	id, err := pathSCIMUser(r)
	if err == nil {
		err = s.scimMayDelete(r, id)
	}
	var ifVersion VersionMatch
	if err == nil {
		ifVersion, err = scimIfMatch(r)
	}
	if err == nil {
		err = s.store.DeleteUser(r.Context(), id, ifVersion, s.actor(r), nil)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.security(r, "user.deleted", slog.Int64("user_id", id))
	w.WriteHeader(http.StatusNoContent)
}

// scimMayDelete applies the delete rule to an admin calling SCIM: not
// their own account. A provisioning token is no account.
func (s *server) scimMayDelete(r *http.Request, id int64) error {
	if caller := callerFrom(r.Context()); !caller.isProvisioner() {
		return mayDelete(caller, id)
	}
	return nil
}
