package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// The fixes of the SCIM review: who a provisioning token may act on, how
// long it lives, and the edges of the mapping and the filters.

// TestProvisionerCannotTouchAdmins: a provisioning token neither writes
// an admin's account (password, role, active, delete) nor grants the
// admin role; an admin's own token on /scim/v2 still does both.
func TestProvisionerCannotTouchAdmins(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	token, _ := app.provisioningToken("idp")
	second := app.createUser(`{"username":"second_admin","email":"second@example.com","password":"Mf3-tz8w-Qh4s","role":"admin"}`)
	asleep := app.createUser(`{"username":"asleep_admin","email":"asleep@example.com","password":"Mf3-tz8w-Qh4s","role":"admin","is_active":false}`)
	root := "/scim/v2/Users/" + strconv.FormatInt(app.adminID, 10)
	for _, tc := range []struct{ method, path, body string }{
		{"PATCH", root, patchOps(`{"op":"replace","path":"password","value":"pwned-by-idp-123"}`)},
		{"PATCH", root, patchOps(`{"op":"replace","path":"displayName","value":"Root"}`)},
		{"PATCH", root, patchOps(`{"op":"remove","path":"roles"}`)},
		{"PUT", root, `{"userName":"` + testAdminName + `","active":true}`},
		{"DELETE", scimUserPath(second.ID), ""},
		{"PATCH", scimUserPath(second.ID), patchOps(`{"op":"replace","path":"active","value":"False"}`)},
		{"PATCH", scimUserPath(asleep.ID), patchOps(`{"op":"replace","path":"active","value":true}`)},
		{"POST", "/scim/v2/Users", `{"userName":"evil@x.example","password":"evil password 1","roles":[{"value":"admin"}]}`},
	} {
		wantSCIMError(t, app.scim(token, tc.method, tc.path, tc.body), http.StatusForbidden, "")
	}
	app.login(testAdminName, testAdminPassword) // the password stands
	app.newUser("bob")
	bobPath := scimUserPath(app.userID("bob"))
	wantSCIMError(t, app.scim(token, "PATCH", bobPath, patchOps(`{"op":"add","path":"roles","value":[{"value":"admin"}]}`)), http.StatusForbidden, "")
	wantSCIMError(t, app.scim(token, "PUT", bobPath, `{"userName":"bob","roles":[{"value":"admin","primary":true}]}`), http.StatusForbidden, "")
	var n int
	if err := app.db.QueryRow("SELECT COUNT(*) FROM users WHERE role = 'admin' OR username = 'evil@x.example'").Scan(&n); err != nil || n != 3 {
		t.Errorf("admins and evil: %d, %v; want the 3 admins", n, err)
	}

	// The store checks the role of the locked row, whatever the handler
	// read before: a user made an admin meanwhile is out of reach too.
	hash, _ := provisioningTokenHash("Bearer " + token)
	caller, err := app.store.AuthenticateProvisioning(context.Background(), hash)
	if err != nil {
		t.Fatal(err)
	}
	actor := Actor{Type: ActorProvisioningToken, ID: caller.TokenID, tokenHash: hash}
	_, _, err = app.store.UpdateUser(context.Background(), second.ID, UserChanges{FullName: ptr("x"), SetFullName: true}, actor)
	if !errors.Is(err, errAdminNotProvisioned) {
		t.Errorf("store update of an admin: %v", err)
	}
	if err := app.store.DeleteUser(context.Background(), second.ID, VersionMatch{}, actor, nil); !errors.Is(err, errAdminNotProvisioned) {
		t.Errorf("store delete of an admin: %v", err)
	}
	if _, err := app.store.CreateUser(context.Background(), NewUser{Username: "x1", Email: "x1@example.com", Role: RoleAdmin, IsActive: true}, actor, nil); !errors.Is(err, errProvisionedAdmin) {
		t.Errorf("store create of an admin: %v", err)
	}

	// An admin's own token keeps full rights.
	u := scimOK[scimUserJSON](t, app.scim(app.adminToken, "PATCH", bobPath, patchOps(`{"op":"add","path":"roles","value":[{"value":"admin"}]}`)), http.StatusOK)
	if u.Roles[0].Value != "admin" {
		t.Errorf("admin grants admin: %+v", u)
	}
	if rec := app.scim(app.adminToken, "DELETE", scimUserPath(second.ID), ""); rec.Code != http.StatusNoContent {
		t.Errorf("admin deletes an admin: %d %s", rec.Code, rec.Body)
	}
}

// scimUserPath is the SCIM path of the user id.
func scimUserPath(id int64) string { return fmt.Sprintf("/scim/v2/Users/%d", id) }

// TestCreateRefusedOnceRevoked: a create whose token was revoked after
// the request authenticated it creates nothing, for a provisioning token
// and for an admin's sign-in token alike.
func TestCreateRefusedOnceRevoked(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	ctx := context.Background()
	token, id := app.provisioningToken("idp")
	hash, _ := provisioningTokenHash("Bearer " + token)
	caller, err := app.store.AuthenticateProvisioning(ctx, hash)
	if err != nil {
		t.Fatal(err)
	}
	if err := app.store.RevokeProvisioningToken(ctx, id); err != nil {
		t.Fatal(err)
	}
	provider := Actor{Type: ActorProvisioningToken, ID: caller.TokenID, tokenHash: hash}
	if _, err := app.store.CreateUser(ctx, NewUser{Username: "after", Email: "after@example.com", Role: RoleUser, IsActive: true}, provider, nil); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("create by a revoked provisioning token: %v", err)
	}

	session := app.login(testAdminName, testAdminPassword)
	adminHash, _ := parseToken(session)
	if rec := app.do("POST", "/api/v1/auth/logout", "", "Authorization", "Bearer "+session); rec.Code != http.StatusNoContent {
		t.Fatalf("logout: %d %s", rec.Code, rec.Body)
	}
	admin := Actor{Type: ActorUser, ID: app.adminID, tokenHash: adminHash}
	if _, err := app.store.CreateUser(ctx, NewUser{Username: "after2", Email: "after2@example.com", Role: RoleUser, IsActive: true}, admin, nil); !errors.Is(err, ErrUnauthenticated) {
		t.Errorf("create by a logged-out admin: %v", err)
	}
	var n int
	if err := app.db.QueryRow("SELECT COUNT(*) FROM users WHERE username LIKE 'after%'").Scan(&n); err != nil || n != 0 {
		t.Errorf("%d users created after revocation (%v)", n, err)
	}
}

// TestProvisionedUserPutsBackTheirBody: a user whose username holds '@'
// (provisioned) may send it back unchanged, or in another case, as a
// GET-modify-PUT does; a new one with '@' is still an admin's to set.
func TestProvisionedUserPutsBackTheirBody(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	token, _ := app.provisioningToken("idp")
	scimOK[scimUserJSON](t, app.scim(token, "POST", "/scim/v2/Users", `{"userName":"alice@contoso.com","password":"Wd6-pq2n-Xc9r"}`), http.StatusCreated)
	session := "Bearer " + app.login("alice@contoso.com", "Wd6-pq2n-Xc9r")
	id := app.userID("alice@contoso.com")
	body := app.userBodyWith(id, map[string]any{"full_name": "Alice A"})
	if rec := app.do("PUT", "/api/v1/users/me", body, "Authorization", session); rec.Code != http.StatusOK {
		t.Fatalf("PUT back: %d %s", rec.Code, rec.Body)
	}
	rec := app.do("PATCH", "/api/v1/users/me", `{"username":"ALICE@contoso.com"}`, "Authorization", session)
	if u := decodeJSON[userJSON](t, rec); rec.Code != http.StatusOK || u.Username != "ALICE@contoso.com" {
		t.Fatalf("case only: %d %s", rec.Code, rec.Body)
	}
	wantProblem(t, app.do("PATCH", "/api/v1/users/me", `{"username":"bob@contoso.com"}`, "Authorization", session), http.StatusForbidden, "username")
}

// TestSCIMDisplayNameWins: displayName wins over name.formatted, which
// wins over the given and family names, whatever the order of the
// members or operations that carry them.
func TestSCIMDisplayNameWins(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	token, _ := app.provisioningToken("idp")
	u := scimOK[scimUserJSON](t, app.scim(token, "POST", "/scim/v2/Users",
		`{"userName":"bob@example.com","displayName":"Bobby Tables","name":{"givenName":"Robert","familyName":"Tables"}}`), http.StatusCreated)
	if u.DisplayName != "Bobby Tables" {
		t.Errorf("create, displayName first: %q", u.DisplayName)
	}
	path := "/scim/v2/Users/" + u.ID
	for _, tc := range []struct {
		ops  []string
		want string
	}{
		{[]string{`{"op":"replace","path":"displayName","value":"Disp"}`, `{"op":"replace","path":"name","value":{"formatted":"Form"}}`}, "Disp"},
		{[]string{`{"op":"replace","path":"name.formatted","value":"Form"}`, `{"op":"replace","path":"displayName","value":"Disp2"}`}, "Disp2"},
		{[]string{`{"op":"replace","value":{"displayName":"Disp3","name":{"givenName":"Given","familyName":"Family"}}}`}, "Disp3"},
		{[]string{`{"op":"replace","value":{"name":{"givenName":"Given","familyName":"Family","formatted":"Form2"}}}`}, "Form2"},
		{[]string{`{"op":"remove","path":"displayName"}`, `{"op":"replace","path":"name","value":{"givenName":"Given","familyName":"Family"}}`}, "Given Family"},
		{[]string{`{"op":"remove","path":"name"}`}, ""},
	} {
		got := scimOK[scimUserJSON](t, app.scim(token, "PATCH", path, patchOps(tc.ops...)), http.StatusOK)
		if got.DisplayName != tc.want {
			t.Errorf("%v: displayName %q, want %q", tc.ops, got.DisplayName, tc.want)
		}
	}
}

// TestSCIMAddOtherEmail: a PATCH add of an email that is neither work nor
// primary is refused, as it would replace the one the user signs in
// with; a work or primary one, or a replace, sets it.
func TestSCIMAddOtherEmail(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	token, _ := app.provisioningToken("idp")
	u := scimOK[scimUserJSON](t, app.scim(token, "POST", "/scim/v2/Users", `{"userName":"bob@example.com"}`), http.StatusCreated)
	path := "/scim/v2/Users/" + u.ID
	for _, op := range []string{
		`{"op":"add","path":"emails","value":[{"value":"home@example.com","type":"home"}]}`,
		`{"op":"Add","value":{"emails":[{"value":"home@example.com","type":"home","primary":false}]}}`,
	} {
		wantSCIMError(t, app.scim(token, "PATCH", path, patchOps(op)), http.StatusBadRequest, "invalidValue")
	}
	for _, tc := range []struct{ op, want string }{
		{`{"op":"add","path":"emails","value":[{"value":"home@example.com","type":"home","primary":true}]}`, "home@example.com"},
		{`{"op":"add","path":"emails","value":[{"value":"work@example.com","type":"work"}]}`, "work@example.com"},
		{`{"op":"replace","path":"emails","value":[{"value":"other@example.com","type":"other"}]}`, "other@example.com"},
	} {
		got := scimOK[scimUserJSON](t, app.scim(token, "PATCH", path, patchOps(tc.op)), http.StatusOK)
		if got.Emails[0].Value != tc.want {
			t.Errorf("%s: email %q", tc.op, got.Emails[0].Value)
		}
	}
}

// TestSCIMFilterKinds: an id ordered against something that is no id,
// and a string attribute compared to a number, are invalid filters; an
// id eq or ne a string that is no id matches none or every user.
func TestSCIMFilterKinds(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	token, ids := scimFixture(t, app)
	for _, f := range []string{`id gt "abc"`, `id lt "01"`, `id ge ""`, `emails.type eq 1`, `emails[type eq true]`, `emails.primary eq "x" and emails.type sw 2`} {
		wantSCIMError(t, app.scim(token, "GET", "/scim/v2/Users?filter="+url.QueryEscape(f), ""), http.StatusBadRequest, "invalidFilter")
	}
	for _, tc := range []struct {
		filter string
		want   int64
	}{{`id eq "x"`, 0}, {`id eq "01"`, 0}, {`id ne "x"`, 4}, {`emails.type eq "WORK"`, 4}, {`id gt "1"`, 3}} {
		page := scimPage(t, app, token, url.Values{"filter": {tc.filter}})
		if page.TotalResults != tc.want {
			t.Errorf("%s: %d results, want %d", tc.filter, page.TotalResults, tc.want)
		}
	}
	wantSCIMError(t, app.scim(token, "PATCH", "/scim/v2/Users/"+ids["bjensen"], patchOps(`{"op":"replace","path":"emails[type eq 1].value","value":"b@example.com"}`)),
		http.StatusBadRequest, "invalidPath")
}

// TestSCIMFilterTrailingSpace: eq compares without regard to case, but
// trailing spaces matter, though the collations pad with them.
func TestSCIMFilterTrailingSpace(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	token, _ := scimFixture(t, app)
	for _, tc := range []struct {
		filter string
		want   int64
	}{
		{`userName eq "BJENSEN"`, 1}, {`userName eq "bjensen "`, 0}, {`userName ne "bjensen "`, 4},
		{`emails.value eq "bjensen@example.com "`, 0}, {`displayName eq "John Doe "`, 0}, {`displayName eq "john doe"`, 1},
		{`externalId eq "jd "`, 0}, {`externalId eq "jd"`, 1},
	} {
		page := scimPage(t, app, token, url.Values{"filter": {tc.filter}})
		if page.TotalResults != tc.want {
			t.Errorf("%s: %d results, want %d", tc.filter, page.TotalResults, tc.want)
		}
	}
}

// TestSCIMForwardedProtoFromTrustedProxies: meta.location is https for
// X-Forwarded-Proto: https from a trusted proxy only.
func TestSCIMForwardedProtoFromTrustedProxies(t *testing.T) {
	t.Parallel()
	app := newTestApp(t, func(cfg *Config) {
		cfg.TrustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	})
	token, _ := app.provisioningToken("idp")
	path := "/scim/v2/Users/" + strconv.FormatInt(app.adminID, 10)
	for _, tc := range []struct{ peer, scheme string }{{"10.1.2.3:4000", "https"}, {"192.0.2.7:4000", "http"}} {
		u := scimOK[scimUserJSON](t, app.scim(token, "GET", path, "", "X-Forwarded-Proto", "https", remoteAddr, tc.peer), http.StatusOK)
		if !strings.HasPrefix(u.Meta.Location, tc.scheme+"://") {
			t.Errorf("from %s: location %q, want %s", tc.peer, u.Meta.Location, tc.scheme)
		}
	}
}

// TestSCIMProjectionURNs: attributes and excludedAttributes take names
// qualified by the core schema's URN, and accept and ignore extension
// attributes, which the service does not store.
func TestSCIMProjectionURNs(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	token, _ := app.provisioningToken("idp")
	path := "/scim/v2/Users/" + strconv.FormatInt(app.adminID, 10) + "?"
	manager := scimEnterpriseSchema + ":manager"
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"attributes=" + url.QueryEscape(manager+",userName"), []string{"id", "schemas", "userName"}},
		{"attributes=" + url.QueryEscape(scimUserSchema+":userName"), []string{"id", "schemas", "userName"}},
		{"attributes=" + url.QueryEscape(manager), []string{"id", "schemas"}},
		{"excludedAttributes=" + url.QueryEscape(manager+",meta,emails,roles"), []string{"active", "id", "schemas", "userName"}},
	} {
		rec := app.scim(token, "GET", path+tc.query, "")
		got := scimOK[map[string]any](t, rec, http.StatusOK)
		names := make([]string, 0, len(got))
		for name := range got {
			names = append(names, name)
		}
		slices.Sort(names)
		if !slices.Equal(names, tc.want) {
			t.Errorf("%s: %v, want %v", tc.query, names, tc.want)
		}
	}
	e := wantSCIMError(t, app.scim(token, "GET", path+"attributes=userName.a.b", ""), http.StatusBadRequest, "invalidValue")
	if strings.Contains(e.Detail, "filter") {
		t.Errorf("detail %q speaks of a filter", e.Detail)
	}
}
