package main

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// patchOps wraps operations in a PatchOp message.
func patchOps(ops ...string) string {
	return `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[` + strings.Join(ops, ",") + `]}`
}

func TestSCIMPatchPaths(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	token, ids := scimFixture(t, app)
	path := "/scim/v2/Users/" + ids["bjensen"]
	patch := func(ops ...string) scimUserJSON {
		t.Helper()
		return scimOK[scimUserJSON](t, app.scim(token, "PATCH", path, patchOps(ops...)), http.StatusOK)
	}
	// RFC 7644 section 3.5.2.1: add without a path, a value object; the
	// nickName is not stored (ignored), the work email replaces the one
	// email (one of another type is refused: TestSCIMAddOtherEmail).
	u := patch(`{"op":"add","value":{"emails":[{"value":"babs@jensen.org","type":"work"}],"nickName":"Babs"}}`)
	if u.Emails[0].Value != "babs@jensen.org" {
		t.Errorf("add: %+v", u)
	}
	u = patch(`{"op":"replace","path":"emails[type eq \"work\"].value","value":"bjensen@example.org"}`,
		`{"op":"REPLACE","path":"urn:ietf:params:scim:schemas:core:2.0:User:name.formatted","value":"Babs Jensen"}`,
		`{"op":"Add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber","value":"42"}`)
	if u.Emails[0].Value != "bjensen@example.org" || u.DisplayName != "Babs Jensen" || u.Name["formatted"] != "Babs Jensen" {
		t.Errorf("replace: %+v", u)
	}
	// Roles are an admin's to give (a provisioning token may not).
	u = scimOK[scimUserJSON](t, app.scim(app.adminToken, "PATCH", path, patchOps(`{"op":"replace","path":"roles[primary eq \"True\"].value","value":"admin"}`)), http.StatusOK)
	if u.Roles[0].Value != "admin" {
		t.Errorf("roles: %+v", u)
	}
	u = scimOK[scimUserJSON](t, app.scim(app.adminToken, "PATCH", path, patchOps(`{"op":"remove","path":"displayName"}`, `{"op":"remove","path":"externalId"}`, `{"op":"remove","path":"roles"}`)), http.StatusOK)
	if u.DisplayName != "" || u.Name != nil || u.ExternalID != "" || u.Roles[0].Value != "user" {
		t.Errorf("remove: %+v", u)
	}
	version := u.Meta.Version
	// A PATCH that changes nothing writes nothing: the same version.
	if u = patch(`{"op":"replace","path":"active","value":true}`); u.Meta.Version != version {
		t.Errorf("no change, new version: %s, %s", u.Meta.Version, version)
	}
	for _, tc := range []struct {
		op, scimType string
	}{
		{`{"op":"replace","path":"emails[type eq \"home\"].value","value":"x@example.com"}`, "noTarget"},
		{`{"op":"remove"}`, "noTarget"},
		{`{"op":"replace","path":"foo","value":1}`, "invalidPath"},
		{`{"op":"replace","path":"emails[type eq]","value":"x@example.com"}`, "invalidPath"},
		{`{"op":"replace","path":"id","value":"1"}`, "mutability"},
		{`{"op":"replace","path":"meta.created","value":"2020-01-01T00:00:00Z"}`, "mutability"},
		{`{"op":"frobnicate","path":"active","value":true}`, "invalidSyntax"},
		{`{"op":"replace","path":"active"}`, "invalidSyntax"},
		{`{"op":"remove","path":"userName"}`, "invalidValue"},
		{`{"op":"replace","path":"active","value":"maybe"}`, "invalidValue"},
		{`{"op":"replace","path":"password","value":"password"}`, "invalidValue"},
		{`{"op":"replace","path":"userName","value":"no spaces allowed"}`, "invalidValue"},
		{`{"op":"replace","path":"roles","value":[{"value":"root"}]}`, "invalidValue"},
		{`{"op":"replace","value":"not an object"}`, "invalidValue"},
	} {
		wantSCIMError(t, app.scim(token, "PATCH", path, patchOps(tc.op)), http.StatusBadRequest, tc.scimType)
	}
	wantSCIMError(t, app.scim(token, "PATCH", path, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[]}`), http.StatusBadRequest, "invalidSyntax")
	if u := scimOK[scimUserJSON](t, app.scim(token, "GET", path, ""), http.StatusOK); u.Meta.Version != version {
		t.Errorf("a refused PATCH wrote: %+v", u)
	}
}

func TestSCIMErrors(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	token, ids := scimFixture(t, app)
	rec := app.do("GET", "/scim/v2/Users", "", "Authorization", "")
	wantSCIMError(t, rec, http.StatusUnauthorized, "")
	if rec.Header().Get("WWW-Authenticate") == "" {
		t.Error("401 without WWW-Authenticate")
	}
	wantSCIMError(t, app.scim(token, "GET", "/scim/v2/Users/999999", ""), http.StatusNotFound, "")
	wantSCIMError(t, app.scim(token, "GET", "/scim/v2/Users/abc", ""), http.StatusNotFound, "")
	wantSCIMError(t, app.scim(token, "GET", "/scim/v2/Groups", ""), http.StatusNotFound, "")
	rec = app.scim(token, "PUT", "/scim/v2/Users", `{}`)
	wantSCIMError(t, rec, http.StatusMethodNotAllowed, "")
	if rec.Header().Get("Allow") == "" {
		t.Error("405 without Allow")
	}
	wantSCIMError(t, app.scim(token, "POST", "/scim/v2/Users", `{"userName":"BJENSEN","emails":[{"value":"new@example.com"}]}`), http.StatusConflict, "uniqueness")
	wantSCIMError(t, app.scim(token, "POST", "/scim/v2/Users", `{"userName":"newname","emails":[{"value":"BJensen@example.com"}]}`), http.StatusConflict, "uniqueness")
	wantSCIMError(t, app.scim(token, "POST", "/scim/v2/Users", `{"userName":"nomail"}`), http.StatusBadRequest, "invalidValue")
	wantSCIMError(t, app.scim(token, "POST", "/scim/v2/Users", `{"emails":[{"value":"a@example.com"}]}`), http.StatusBadRequest, "invalidValue")
	wantSCIMError(t, app.scim(token, "POST", "/scim/v2/Users", `{"userName":`), http.StatusBadRequest, "invalidSyntax")
	wantSCIMError(t, app.scim(token, "POST", "/scim/v2/Users", `{"userName":"x1y"}`, "Content-Type", "text/plain"), http.StatusUnsupportedMediaType, "")
	wantSCIMError(t, app.scim(token, "POST", "/scim/v2/Users", `{"userName":"`+strings.Repeat("a", 20000)+`"}`), http.StatusRequestEntityTooLarge, "")
	path := "/scim/v2/Users/" + ids["bjensen"]
	wantSCIMError(t, app.scim(token, "PATCH", path, patchOps(`{"op":"replace","path":"active","value":false}`), "If-Match", `W/"99"`),
		http.StatusPreconditionFailed, "")
	wantSCIMError(t, app.scim(token, "DELETE", path, "", "If-Match", `"99"`), http.StatusPreconditionFailed, "")
	wantSCIMError(t, app.scim(token, "PATCH", path, patchOps(`{"op":"replace","path":"active","value":false}`), "If-Match", `nonsense`),
		http.StatusBadRequest, "invalidSyntax")
	wantSCIMError(t, app.scim(token, "PUT", path, `{"userName":"Jdoe"}`), http.StatusConflict, "uniqueness")
	u := scimOK[scimUserJSON](t, app.scim(token, "PATCH", path, patchOps(`{"op":"replace","path":"active","value":false}`), "If-Match", `W/"1"`), http.StatusOK)
	if u.Active || u.Meta.Version != `W/"2"` {
		t.Errorf("If-Match W/\"1\": %+v", u)
	}

	// The last-admin rule holds: Jdoe is an admin; demote them, then the
	// root admin cannot be deactivated or deleted.
	scimOK[scimUserJSON](t, app.scim(app.adminToken, "PATCH", "/scim/v2/Users/"+ids["Jdoe"], patchOps(`{"op":"remove","path":"roles"}`)), http.StatusOK)
	root := "/scim/v2/Users/" + strconv.FormatInt(app.adminID, 10)
	wantSCIMError(t, app.scim(app.adminToken, "PATCH", root, patchOps(`{"op":"replace","path":"active","value":false}`)), http.StatusConflict, "")
	// An admin's own password, email or account is not SCIM's to change.
	wantSCIMError(t, app.scim(app.adminToken, "PATCH", root, patchOps(`{"op":"replace","path":"password","value":"Ys7-hb4k-Ne2v"}`)), http.StatusForbidden, "")
	wantSCIMError(t, app.scim(app.adminToken, "DELETE", root, ""), http.StatusForbidden, "")
}

func TestSCIMDiscovery(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	token, _ := app.provisioningToken("discovery")
	cfg := scimOK[map[string]any](t, app.scim(token, "GET", "/scim/v2/ServiceProviderConfig", ""), http.StatusOK)
	if cfg["patch"].(map[string]any)["supported"] != true || cfg["bulk"].(map[string]any)["supported"] != false ||
		cfg["filter"].(map[string]any)["maxResults"] != float64(scimMaxCount) || cfg["sort"].(map[string]any)["supported"] != false {
		t.Errorf("config: %v", cfg)
	}
	types := scimOK[struct {
		TotalResults int
		Resources    []map[string]any
	}](t, app.scim(token, "GET", "/scim/v2/ResourceTypes", ""), http.StatusOK)
	if types.TotalResults != 1 || types.Resources[0]["endpoint"] != "/Users" || types.Resources[0]["schema"] != scimUserSchema {
		t.Errorf("resource types: %+v", types)
	}
	scimOK[map[string]any](t, app.scim(token, "GET", "/scim/v2/ResourceTypes/User", ""), http.StatusOK)
	wantSCIMError(t, app.scim(token, "GET", "/scim/v2/ResourceTypes/Group", ""), http.StatusNotFound, "")
	schemas := scimOK[struct {
		Resources []struct {
			ID         string
			Attributes []struct{ Name string }
		}
	}](t, app.scim(token, "GET", "/scim/v2/Schemas", ""), http.StatusOK)
	var names []string
	for _, a := range schemas.Resources[0].Attributes {
		names = append(names, a.Name)
	}
	if len(schemas.Resources) != 1 || schemas.Resources[0].ID != scimUserSchema || strings.Join(names, ",") != "userName,name,displayName,active,password,emails,roles" {
		t.Errorf("schemas: %+v", schemas)
	}
	scimOK[map[string]any](t, app.scim(token, "GET", "/scim/v2/Schemas/"+scimUserSchema, ""), http.StatusOK)
	wantSCIMError(t, app.scim(token, "GET", "/scim/v2/Schemas/urn:ietf:params:scim:schemas:core:2.0:Group", ""), http.StatusNotFound, "")
}
