package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"testing"
)

// The request sequences of the providers' own documentation, replayed
// with a provisioning token: Microsoft Entra ID's ("Tutorial: Develop
// and plan provisioning for a SCIM endpoint", its request examples) and
// Okta's ("SCIM 2.0 protocol reference").

// scimFind looks a userName up as both providers do first.
func (a *testApp) scimFind(token, userName string) scimListJSON {
	a.t.Helper()
	rec := a.scim(token, "GET", "/scim/v2/Users?"+url.Values{"filter": {fmt.Sprintf("userName eq %q", userName)},
		"startIndex": {"1"}, "count": {"100"}}.Encode(), "")
	if rec.Code != http.StatusOK {
		a.t.Fatalf("find %s: %d %s", userName, rec.Code, rec.Body)
	}
	var list scimListJSON
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil {
		a.t.Fatal(err)
	}
	return list
}

// wantEventsBy checks the user's events: their types in order, each by
// the provisioning token id.
func (a *testApp) wantEventsBy(userID, tokenID int64, types ...string) {
	a.t.Helper()
	a.waitSequenced()
	events := a.eventsPage("/api/v1/users/"+strconv.FormatInt(userID, 10)+"/events", "per_page", "100").Items
	if len(events) != len(types) {
		a.t.Fatalf("events %+v, want %v", events, types)
	}
	for i, e := range events {
		if e.Type != types[i] || e.ActorType != "provisioner" || e.ActorID == nil || *e.ActorID != tokenID {
			a.t.Errorf("event %d: %+v, want %s by token %d", i, e, types[i], tokenID)
		}
	}
}

func TestSCIMEntraIDSequence(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	token, tokenID := app.provisioningToken("Microsoft Entra ID")
	const userName = "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1"
	if found := app.scimFind(token, userName); found.TotalResults != 0 || len(found.Resources) != 0 {
		t.Fatalf("before create: %+v", found)
	}
	created := scimOK[scimUserJSON](t, app.scim(token, "POST", "/scim/v2/Users", `{
		"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
		"externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
		"userName": "`+userName+`",
		"active": true,
		"emails": [{"primary": true, "type": "work", "value": "Test_User_fd0ea19b-0777-472c-9f96-4f70d2226f2e@testuser.com"}],
		"meta": {"resourceType": "User"},
		"name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
		"roles": [],
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "701984", "department": "Tour Operations"}
	}`), http.StatusCreated)
	if created.UserName != userName || created.ExternalID != "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef" || !created.Active ||
		created.DisplayName != "givenName familyName" || created.Emails[0].Value != "test_user_fd0ea19b-0777-472c-9f96-4f70d2226f2e@testuser.com" ||
		created.Roles[0].Value != "user" || created.Meta.ResourceType != "User" || created.Meta.Version != `W/"1"` ||
		created.Meta.Location != "http://example.com/scim/v2/Users/"+created.ID {
		t.Errorf("created: %+v", created)
	}
	id, _ := strconv.ParseInt(created.ID, 10, 64)
	// Created without a password: the user exists and cannot sign in.
	wantProblem(t, app.do("POST", "/api/v1/auth/token", `{"username":"`+userName+`","password":"anything at all"}`, "Authorization", ""), http.StatusUnauthorized)

	if got := scimOK[scimUserJSON](t, app.scim(token, "GET", "/scim/v2/Users/"+created.ID, ""), http.StatusOK); got.UserName != userName {
		t.Errorf("get: %+v", got)
	}
	if found := app.scimFind(token, userName); found.TotalResults != 1 || found.Resources[0].ID != created.ID {
		t.Errorf("find: %+v", found)
	}
	if found := app.scimFind(token, "non-existent user"); found.TotalResults != 0 {
		t.Errorf("zero results: %+v", found)
	}
	patched := scimOK[scimUserJSON](t, app.scim(token, "PATCH", "/scim/v2/Users/"+created.ID, `{
		"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
		"Operations": [
			{"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@microsoft.com"},
			{"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"}
		]}`), http.StatusOK)
	if patched.Emails[0].Value != "updatedemail@microsoft.com" || patched.Meta.Version != `W/"2"` {
		t.Errorf("patched: %+v", patched)
	}
	const newName = "5b50642d-79fc-4410-9e90-4c077cdd1a59@testuser.com"
	patched = scimOK[scimUserJSON](t, app.scim(token, "PATCH", "/scim/v2/Users/"+created.ID,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"userName","value":"`+newName+`"}]}`), http.StatusOK)
	if patched.UserName != newName {
		t.Errorf("renamed: %+v", patched)
	}

	// A password set by the admin; the user signs in by the new userName.
	app.scim(app.adminToken, "PATCH", "/scim/v2/Users/"+created.ID, `{"Operations":[{"op":"add","path":"password","value":"Wd6-pq2n-Xc9r"}]}`)
	session := app.login(newName, "Wd6-pq2n-Xc9r")
	// Disable (Entra ID sends "False" as a string), then enable.
	disabled := scimOK[scimUserJSON](t, app.scim(token, "PATCH", "/scim/v2/Users/"+created.ID,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","path":"active","value":"False"}]}`), http.StatusOK)
	if disabled.Active {
		t.Error("still active")
	}
	wantProblem(t, app.do("GET", "/api/v1/users/me", "", "Authorization", "Bearer "+session), http.StatusUnauthorized)
	enabled := scimOK[scimUserJSON](t, app.scim(token, "PATCH", "/scim/v2/Users/"+created.ID,
		`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"Replace","value":{"active":"True"}}]}`), http.StatusOK)
	if !enabled.Active {
		t.Error("not active again")
	}
	if rec := app.scim(token, "DELETE", "/scim/v2/Users/"+created.ID, ""); rec.Code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", rec.Code, rec.Body)
	}
	wantSCIMError(t, app.scim(token, "GET", "/scim/v2/Users/"+created.ID, ""), http.StatusNotFound, "")

	app.waitSequenced()
	events := app.eventsPage("/api/v1/users/"+created.ID+"/events", "per_page", "100").Items
	want := []struct {
		typ, actor string
	}{{"user.created", "provisioner"}, {"user.updated", "provisioner"}, {"user.updated", "provisioner"},
		{"user.password_changed", "user"}, {"user.updated", "provisioner"}, {"user.tokens_revoked", "provisioner"},
		{"user.updated", "provisioner"}, {"user.deleted", "provisioner"}}
	if len(events) != len(want) {
		t.Fatalf("events %+v", events)
	}
	for i, e := range events {
		wantID := tokenID
		if want[i].actor == "user" {
			wantID = app.adminID
		}
		if e.Type != want[i].typ || e.ActorType != want[i].actor || e.ActorID == nil || *e.ActorID != wantID || e.UserID != id {
			t.Errorf("event %d: %+v, want %s by %s %d", i, e, want[i].typ, want[i].actor, wantID)
		}
	}
}

func TestSCIMOktaSequence(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	token, tokenID := app.provisioningToken("Okta")
	if found := app.scimFind(token, "test.user@okta.local"); found.TotalResults != 0 {
		t.Fatalf("before create: %+v", found)
	}
	created := scimOK[scimUserJSON](t, app.scim(token, "POST", "/scim/v2/Users", `{
		"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
		"userName": "test.user@okta.local",
		"name": {"givenName": "Test", "familyName": "User"},
		"emails": [{"primary": true, "value": "test.user@okta.local", "type": "work"}],
		"displayName": "Test User",
		"locale": "en-US",
		"externalId": "00ujl29u0le5T6Aj10h7",
		"groups": [],
		"password": "1mz050nq",
		"active": true
	}`, "Content-Type", "application/json"), http.StatusCreated)
	if created.UserName != "test.user@okta.local" || created.DisplayName != "Test User" || created.ExternalID != "00ujl29u0le5T6Aj10h7" {
		t.Errorf("created: %+v", created)
	}
	session := app.login("test.user@okta.local", "1mz050nq")
	id, _ := strconv.ParseInt(created.ID, 10, 64)
	if got := scimOK[scimUserJSON](t, app.scim(token, "GET", "/scim/v2/Users/"+created.ID, ""), http.StatusOK); got.ID != created.ID {
		t.Errorf("get: %+v", got)
	}
	if found := app.scimFind(token, "TEST.USER@okta.local"); found.TotalResults != 1 {
		t.Errorf("userName compares without regard to case: %+v", found)
	}
	replaced := scimOK[scimUserJSON](t, app.scim(token, "PUT", "/scim/v2/Users/"+created.ID, `{
		"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
		"id": "`+created.ID+`",
		"userName": "test.user@okta.local",
		"name": {"givenName": "Another", "familyName": "User"},
		"emails": [{"primary": true, "value": "test.user@okta.local", "type": "work"}],
		"displayName": "Another User",
		"locale": "en-US",
		"groups": [],
		"password": "1mz050nq",
		"active": true,
		"meta": {"resourceType": "User"}
	}`, "If-Match", created.Meta.Version), http.StatusOK)
	if replaced.DisplayName != "Another User" || replaced.ExternalID != "00ujl29u0le5T6Aj10h7" || replaced.Meta.Version != `W/"2"` {
		t.Errorf("replaced: %+v", replaced)
	}
	// The same password sent back is no change: the session lives on.
	if rec := app.do("GET", "/api/v1/users/me", "", "Authorization", "Bearer "+session); rec.Code != http.StatusOK {
		t.Errorf("session after PUT: %d", rec.Code)
	}
	for _, active := range []bool{false, true} {
		got := scimOK[scimUserJSON](t, app.scim(token, "PATCH", "/scim/v2/Users/"+created.ID, fmt.Sprintf(
			`{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":%t}}]}`, active)), http.StatusOK)
		if got.Active != active {
			t.Errorf("active %t: %+v", active, got)
		}
	}
	wantProblem(t, app.do("GET", "/api/v1/users/me", "", "Authorization", "Bearer "+session), http.StatusUnauthorized)
	if rec := app.scim(token, "DELETE", "/scim/v2/Users/"+created.ID, ""); rec.Code != http.StatusNoContent {
		t.Fatalf("delete: %d %s", rec.Code, rec.Body)
	}
	app.wantEventsBy(id, tokenID, "user.created", "user.updated", "user.updated", "user.tokens_revoked", "user.updated", "user.deleted")
}

// TestSCIMRevocationStopsWritesInFlight: writers PATCH (or POST) with a
// token while an admin revokes it; every one of them is then refused, and
// no event the token made is later than its revocation.
func TestSCIMRevocationStopsWritesInFlight(t *testing.T) {
	t.Parallel()
	for _, method := range []string{"PATCH", "POST"} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			testRevocationStopsWrites(t, method)
		})
	}
}

// testRevocationStopsWrites races writers that send method (PATCH: a
// displayName, POST: a new user) against the token's revocation.
func testRevocationStopsWrites(t *testing.T, method string) {
	app := newTestApp(t)
	token, tokenID := app.provisioningToken("racing")
	const writers = 4
	ids := make([]string, writers)
	for i := range ids {
		ids[i] = scimOK[scimUserJSON](t, app.scim(token, "POST", "/scim/v2/Users",
			fmt.Sprintf(`{"userName":"racer%d","emails":[{"value":"racer%d@example.com"}]}`, i, i)), http.StatusCreated).ID
	}
	started := make(chan struct{}, writers)
	results := make(chan error, writers)
	for i := range writers {
		go func() {
			for n := 0; n < 10_000; n++ {
				rec, want := app.scim(token, "PATCH", "/scim/v2/Users/"+ids[i], patchOps(fmt.Sprintf(`{"op":"replace","path":"displayName","value":"n%d"}`, n))), http.StatusOK
				if method == "POST" {
					rec, want = app.scim(token, "POST", "/scim/v2/Users", fmt.Sprintf(`{"userName":"racer%d-%d@example.com"}`, i, n)), http.StatusCreated
				}
				switch {
				case rec.Code == http.StatusUnauthorized:
					results <- nil
					return
				case rec.Code != want:
					results <- fmt.Errorf("writer %d: %d %s", i, rec.Code, rec.Body)
					return
				case n == 2:
					started <- struct{}{}
				}
			}
			results <- fmt.Errorf("writer %d was never refused", i)
		}()
	}
	for range writers {
		<-started
	}
	if rec := app.do("DELETE", "/api/v1/tokens/"+strconv.FormatInt(tokenID, 10), ""); rec.Code != http.StatusNoContent {
		t.Fatalf("revoke: %d %s", rec.Code, rec.Body)
	}
	for range writers {
		if err := <-results; err != nil {
			t.Error(err)
		}
	}
	app.waitSequenced()
	var late int
	if err := app.db.QueryRow(`SELECT COUNT(*) FROM user_events e JOIN provisioning_tokens p ON p.id = e.actor_id
		WHERE e.actor_type = 'provisioner' AND e.occurred_at > p.revoked_at`).Scan(&late); err != nil {
		t.Fatal(err)
	}
	if late != 0 {
		t.Errorf("%d events made by the token after its revocation", late)
	}
}
