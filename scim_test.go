package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// scimUserJSON is a SCIM User resource as the service answers it.
type scimUserJSON struct {
	Schemas     []string          `json:"schemas"`
	ID          string            `json:"id"`
	ExternalID  string            `json:"externalId"`
	UserName    string            `json:"userName"`
	DisplayName string            `json:"displayName"`
	Name        map[string]string `json:"name"`
	Active      bool              `json:"active"`
	Emails      []struct {
		Value   string `json:"value"`
		Type    string `json:"type"`
		Primary bool   `json:"primary"`
	} `json:"emails"`
	Roles []struct {
		Value   string `json:"value"`
		Primary bool   `json:"primary"`
	} `json:"roles"`
	Meta struct {
		ResourceType string `json:"resourceType"`
		Created      string `json:"created"`
		LastModified string `json:"lastModified"`
		Location     string `json:"location"`
		Version      string `json:"version"`
	} `json:"meta"`
}

// scimListJSON is a ListResponse of users.
type scimListJSON struct {
	Schemas      []string       `json:"schemas"`
	TotalResults int64          `json:"totalResults"`
	StartIndex   int64          `json:"startIndex"`
	ItemsPerPage int64          `json:"itemsPerPage"`
	Resources    []scimUserJSON `json:"Resources"`
}

// scimErrorJSON is the SCIM error message.
type scimErrorJSON struct {
	Schemas  []string `json:"schemas"`
	Status   string   `json:"status"`
	ScimType string   `json:"scimType"`
	Detail   string   `json:"detail"`
}

// provisioningToken creates a provisioning token of scope scim as the
// admin and returns its secret and id.
func (a *testApp) provisioningToken(name string) (string, int64) {
	a.t.Helper()
	rec := a.do("POST", "/api/v1/tokens", fmt.Sprintf(`{"name":%q,"scope":"scim"}`, name))
	if rec.Code != http.StatusCreated {
		a.t.Fatalf("create token: %d %s", rec.Code, rec.Body)
	}
	created := decodeJSON[provisioningTokenJSON](a.t, rec)
	return created.Token, created.ID
}

// scim sends a SCIM request with token (application/scim+json body).
func (a *testApp) scim(token, method, path, body string, headers ...string) *httptest.ResponseRecorder {
	a.t.Helper()
	h := append([]string{"Authorization", "Bearer " + token}, headers...)
	if body != "" {
		h = append([]string{"Content-Type", scimMediaType}, h...)
	}
	return a.do(method, path, body, h...)
}

// scimOK sends a SCIM request and decodes its answer, which must have
// status want and the SCIM media type.
func scimOK[T any](t *testing.T, rec *httptest.ResponseRecorder, want int) T {
	t.Helper()
	if rec.Code != want {
		t.Fatalf("status %d, want %d: %s", rec.Code, want, rec.Body)
	}
	if ct := rec.Header().Get("Content-Type"); ct != scimMediaType {
		t.Errorf("Content-Type %q", ct)
	}
	var v T
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("decode %T: %v: %s", v, err, rec.Body)
	}
	return v
}

// wantSCIMError checks a SCIM error answer: status, scimType, shape.
func wantSCIMError(t *testing.T, rec *httptest.ResponseRecorder, status int, scimType string) scimErrorJSON {
	t.Helper()
	e := scimOK[scimErrorJSON](t, rec, status)
	if len(e.Schemas) != 1 || e.Schemas[0] != scimErrorSchema || e.Status != strconv.Itoa(status) || e.ScimType != scimType || e.Detail == "" {
		t.Errorf("SCIM error %+v: want status %q, scimType %q", e, strconv.Itoa(status), scimType)
	}
	return e
}

func TestProvisioningTokens(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	token, id := app.provisioningToken("Entra ID")
	if !strings.HasPrefix(token, provisioningTokenPrefix) {
		t.Fatalf("token %q", token)
	}
	list := decodeJSON[struct {
		Items []provisioningTokenJSON `json:"items"`
	}](t, app.do("GET", "/api/v1/tokens", ""))
	if len(list.Items) != 1 || list.Items[0].ID != id || list.Items[0].Token != "" || list.Items[0].Name != "Entra ID" ||
		list.Items[0].CreatedBy == nil || *list.Items[0].CreatedBy != app.adminID || list.Items[0].ExpiresAt != nil {
		t.Errorf("list: %+v", list.Items)
	}
	var stored []byte
	if err := app.db.QueryRow("SELECT token_hash FROM provisioning_tokens WHERE id = ?", id).Scan(&stored); err != nil || strings.Contains(string(stored), token) {
		t.Errorf("stored %x, %v: only a hash is kept", stored, err)
	}

	// In its scope, and only there.
	scimOK[scimListJSON](t, app.scim(token, "GET", "/scim/v2/Users", ""), http.StatusOK)
	for _, path := range []string{"/api/v1/users", "/api/v1/users/me", "/api/v1/events", "/api/v1/tokens"} {
		wantProblem(t, app.do("GET", path, "", "Authorization", "Bearer "+token), http.StatusForbidden)
	}
	wantProblem(t, app.do("POST", "/api/v1/auth/logout", "", "Authorization", "Bearer "+token), http.StatusForbidden)
	_, userToken := app.newUser("plain")
	wantProblem(t, app.do("POST", "/api/v1/tokens", `{"name":"x"}`, "Authorization", "Bearer "+userToken), http.StatusForbidden)
	wantSCIMError(t, app.scim(userToken, "GET", "/scim/v2/Users", ""), http.StatusForbidden, "")
	scimOK[scimListJSON](t, app.scim(app.adminToken, "GET", "/scim/v2/Users", ""), http.StatusOK)
	wantProblem(t, app.do("POST", "/api/v1/tokens", `{"name":"","scope":"admin","expires_at":"2001-01-01T00:00:00Z","x":1}`),
		http.StatusBadRequest, "name", "scope", "expires_at", "x")

	// The sign-in TTL passes (the admin's token expires, and the
	// provisioning token is two days old): the provisioning token works.
	if _, err := app.db.Exec("UPDATE auth_tokens SET expires_at = NOW(6) - INTERVAL 1 SECOND"); err != nil {
		t.Fatal(err)
	}
	if _, err := app.db.Exec("UPDATE provisioning_tokens SET created_at = created_at - INTERVAL 2 DAY"); err != nil {
		t.Fatal(err)
	}
	wantProblem(t, app.do("GET", "/api/v1/users/me", ""), http.StatusUnauthorized)
	scimOK[scimListJSON](t, app.scim(token, "GET", "/scim/v2/Users", ""), http.StatusOK)

	// A restart: a new service on the same database.
	restarted := newTestAppOn(t, app.db)
	scimOK[scimListJSON](t, restarted.scim(token, "GET", "/scim/v2/Users", ""), http.StatusOK)

	// Revoked: refused at once, on every replica.
	admin := restarted.login(testAdminName, testAdminPassword)
	if rec := restarted.do("DELETE", "/api/v1/tokens/"+strconv.FormatInt(id, 10), "", "Authorization", "Bearer "+admin); rec.Code != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", rec.Code, rec.Body)
	}
	for _, a := range []*testApp{app, restarted} {
		wantSCIMError(t, a.scim(token, "GET", "/scim/v2/Users", ""), http.StatusUnauthorized, "")
	}
	wantProblem(t, restarted.do("DELETE", "/api/v1/tokens/"+strconv.FormatInt(id, 10), "", "Authorization", "Bearer "+admin), http.StatusNotFound)
}

func TestProvisioningTokenExpires(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	rec := app.do("POST", "/api/v1/tokens", `{"name":"Okta","expires_at":"2999-01-01T00:00:00Z"}`)
	created := decodeJSON[provisioningTokenJSON](t, rec)
	if rec.Code != http.StatusCreated || created.Scope != scopeSCIM || created.ExpiresAt == nil || rec.Header().Get("Location") != "/api/v1/tokens/"+strconv.FormatInt(created.ID, 10) {
		t.Fatalf("create: %d %+v %v", rec.Code, created, rec.Header())
	}
	scimOK[scimListJSON](t, app.scim(created.Token, "GET", "/scim/v2/Users", ""), http.StatusOK)
	if _, err := app.db.Exec("UPDATE provisioning_tokens SET expires_at = NOW(6) - INTERVAL 1 SECOND"); err != nil {
		t.Fatal(err)
	}
	wantSCIMError(t, app.scim(created.Token, "GET", "/scim/v2/Users", ""), http.StatusUnauthorized, "")
}

// TestUsernamesWithAt: a username may hold '@', and a sign-in by a name
// that is one user's username and another's email reaches the username's
// owner; only an admin (or provisioning) sets such a username.
func TestUsernamesWithAt(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	app.createUser(`{"username":"carol@contoso.com","email":"carol.l@contoso.com","password":"Hq4-vw9t-Lp2x"}`)
	app.createUser(`{"username":"other","email":"carol@contoso.com","password":"Zt8-kc3m-Rw6y"}`)
	if app.login("carol@contoso.com", "Hq4-vw9t-Lp2x") == "" {
		t.Fatal("no token")
	}
	wantProblem(t, app.do("POST", "/api/v1/auth/token", `{"username":"carol@contoso.com","password":"Zt8-kc3m-Rw6y"}`, "Authorization", ""), http.StatusUnauthorized)
	app.login("carol.l@contoso.com", "Hq4-vw9t-Lp2x") // by email, as before
	app.login("other", "Zt8-kc3m-Rw6y")

	_, token := app.newUser("dave")
	wantProblem(t, app.do("PATCH", "/api/v1/users/me", `{"username":"carol.l@contoso.com"}`, "Authorization", "Bearer "+token), http.StatusForbidden, "username")
	withSignup := newTestApp(t, func(c *Config) { c.AllowSignup = true })
	wantProblem(t, withSignup.do("POST", "/api/v1/users", `{"username":"eve@contoso.com","email":"eve@contoso.com","password":"Bn5-rx2q-Jk7d"}`, "Authorization", ""),
		http.StatusForbidden, "username")
}

// TestProvisioningTokenEndsWithItsCreator: a token works only while the
// admin who made it is an active admin: not once they are demoted or
// deactivated, nor once they are deleted (it then lists created_by null).
func TestProvisioningTokenEndsWithItsCreator(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	other := app.createUser(`{"username":"second_admin","email":"second@example.com","password":"Mf3-tz8w-Qh4s","role":"admin"}`)
	session := app.login("second_admin", "Mf3-tz8w-Qh4s")
	rec := app.do("POST", "/api/v1/tokens", `{"name":"by the second admin"}`, "Authorization", "Bearer "+session)
	created := decodeJSON[provisioningTokenJSON](t, rec)
	if rec.Code != http.StatusCreated || created.CreatedBy == nil || *created.CreatedBy != other.ID {
		t.Fatalf("create: %d %+v", rec.Code, created)
	}
	scimOK[scimListJSON](t, app.scim(created.Token, "GET", "/scim/v2/Users", ""), http.StatusOK)
	for _, step := range []struct {
		change string
		works  bool
	}{
		{`{"role":"user"}`, false},
		{`{"role":"admin"}`, true},
		{`{"is_active":false}`, false},
		{`{"is_active":true}`, true},
	} {
		if rec := app.do("PATCH", userPath(other.ID), step.change); rec.Code != http.StatusOK {
			t.Fatalf("%s: %d %s", step.change, rec.Code, rec.Body)
		}
		if rec := app.scim(created.Token, "GET", "/scim/v2/Users", ""); step.works {
			scimOK[scimListJSON](t, rec, http.StatusOK)
		} else {
			wantSCIMError(t, rec, http.StatusUnauthorized, "")
		}
	}
	if rec := app.do("DELETE", "/api/v1/users/"+strconv.FormatInt(other.ID, 10), ""); rec.Code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", rec.Code, rec.Body)
	}
	list := decodeJSON[struct {
		Items []provisioningTokenJSON `json:"items"`
	}](t, app.do("GET", "/api/v1/tokens", ""))
	if len(list.Items) != 1 || list.Items[0].CreatedBy != nil {
		t.Errorf("list: %+v", list.Items)
	}
	wantSCIMError(t, app.scim(created.Token, "GET", "/scim/v2/Users", ""), http.StatusUnauthorized, "")
	wantSCIMError(t, app.scim(created.Token, "POST", "/scim/v2/Users", `{"userName":"late@example.com"}`), http.StatusUnauthorized, "")
}
