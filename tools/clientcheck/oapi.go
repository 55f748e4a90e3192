package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"

	openapi_types "github.com/oapi-codegen/runtime/types"

	"usersvc/tools/clientcheck/gen/oapiapi"
	"usersvc/tools/clientcheck/gen/oapimgmt"
)

// oapiScenario runs the scenario through oapi-codegen's clients.
func oapiScenario(ctx context.Context, t target, wire *wireLog) (int, error) {
	var token string
	httpClient := &http.Client{Transport: wire}
	c, err := oapiapi.NewClientWithResponses(t.api, oapiapi.WithHTTPClient(httpClient),
		oapiapi.WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			return nil
		}))
	if err != nil {
		return 0, err
	}
	m, err := oapimgmt.NewClientWithResponses(t.management, oapimgmt.WithHTTPClient(httpClient))
	if err != nil {
		return 0, err
	}
	steps := 0

	// Sign in as the bootstrap admin.
	login, err := c.CreateTokenWithResponse(ctx, oapiapi.LoginRequest{Username: t.admin, Password: t.password})
	if err != nil || login.JSON200 == nil {
		return steps, unexpected("sign in", login, err)
	}
	token = login.JSON200.AccessToken
	steps++

	// Create a user with only the three required members: the defaults
	// apply (role user, active, no full name).
	name := "oapi_" + randomHex(3)
	created, err := c.CreateUserWithResponse(ctx, &oapiapi.CreateUserParams{},
		oapiapi.CreateUser{Username: name, Email: name + "@example.com", Password: "correct horse battery"})
	if err != nil || created.JSON201 == nil {
		return steps, unexpected("create", created, err)
	}
	if u := created.JSON201; u.Role != oapiapi.UserRoleUser || !u.IsActive || u.FullName != nil || u.Id == nil {
		return steps, fmt.Errorf("create: defaults not applied: %+v", u)
	}
	id := *created.JSON201.Id
	steps++

	// PATCH a full name: the partial body.
	fullName := "Ada Lovelace"
	patched, err := c.UpdateUserWithResponse(ctx, id, &oapiapi.UpdateUserParams{}, oapiapi.UpdateUser{FullName: &fullName})
	if err != nil || patched.JSON200 == nil || patched.JSON200.FullName == nil || *patched.JSON200.FullName != fullName {
		return steps, unexpected("patch", patched, err)
	}
	steps++

	// GET it, change a member, clear the full name, and PUT the same type
	// back, with the ETag as If-Match.
	got, err := c.GetUserWithResponse(ctx, id, &oapiapi.GetUserParams{})
	if err != nil || got.JSON200 == nil {
		return steps, unexpected("get", got, err)
	}
	steps++
	u := *got.JSON200
	u.Email = openapi_types.Email(name + "_new@example.com")
	u.FullName = nil
	etag := got.HTTPResponse.Header.Get("ETag")
	put, err := c.ReplaceUserWithResponse(ctx, id, &oapiapi.ReplaceUserParams{IfMatch: &etag}, u)
	if err != nil || put.JSON200 == nil {
		return steps, unexpected("put", put, err)
	}
	if !wire.sentNull("full_name") {
		return steps, fmt.Errorf("put: full_name was not sent as null: %s", wire.lastSent())
	}
	if r := put.JSON200; r.Email != u.Email || r.FullName != nil || r.Username != name {
		return steps, fmt.Errorf("put: got %+v", r)
	}
	steps++

	// List with page and per_page, as integers.
	page, perPage := 1, 5
	listed, err := c.ListUsersWithResponse(ctx, &oapiapi.ListUsersParams{Page: &page, PerPage: &perPage, Q: &name})
	if err != nil || listed.JSON200 == nil || listed.JSON200.Total != 1 || len(listed.JSON200.Items) != 1 || *listed.JSON200.Items[0].Id != id {
		return steps, unexpected("list", listed, err)
	}
	steps++

	// Its events: the creation and the two updates, numbered or pending.
	perPage = 50
	evs, err := c.ListUserEventsWithResponse(ctx, id, &oapiapi.ListUserEventsParams{PerPage: &perPage})
	if err != nil || evs.JSON200 == nil {
		return steps, unexpected("events", evs, err)
	}
	var types []string
	for _, e := range evs.JSON200.Items {
		types = append(types, string(e.Type))
	}
	if pending := evs.JSON200.Pending; pending != nil {
		for _, e := range *pending {
			types = append(types, string(e.Type))
		}
	}
	if !slices.Contains(types, "user.created") || countOf(types, "user.updated") != 2 {
		return steps, fmt.Errorf("events: %v; want user.created and two user.updated", types)
	}
	steps++

	// Health through the management listener's own client.
	ready, err := m.ReadinessWithResponse(ctx)
	if err != nil || ready.JSON200 == nil || ready.JSON200.Status != "ok" {
		return steps, unexpected("readiness", ready, err)
	}
	live, err := m.LivenessWithResponse(ctx)
	if err != nil || live.JSON200 == nil || live.JSON200.Status != "ok" {
		return steps, unexpected("liveness", live, err)
	}
	steps++

	// Delete it; it is gone.
	deleted, err := c.DeleteUserWithResponse(ctx, id, &oapiapi.DeleteUserParams{})
	if err != nil || deleted.StatusCode() != http.StatusNoContent {
		return steps, unexpected("delete", deleted, err)
	}
	if gone, err := c.GetUserWithResponse(ctx, id, &oapiapi.GetUserParams{}); err != nil || gone.StatusCode() != http.StatusNotFound {
		return steps, unexpected("get after delete", gone, err)
	}
	steps++

	// Sign out; the token no longer works.
	out, err := c.RevokeTokenWithResponse(ctx)
	if err != nil || out.StatusCode() != http.StatusNoContent {
		return steps, unexpected("sign out", out, err)
	}
	if after, err := c.ListUsersWithResponse(ctx, &oapiapi.ListUsersParams{}); err != nil || after.StatusCode() != http.StatusUnauthorized {
		return steps, unexpected("list after sign-out", after, err)
	}
	steps++
	return steps, nil
}
