package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"

	"usersvc/tools/clientcheck/gen/ogenapi"
	"usersvc/tools/clientcheck/gen/ogenmgmt"
)

// bearer is ogen's security source: the token of the last sign-in.
type bearer struct{ token string }

func (b *bearer) BearerAuth(context.Context, ogenapi.OperationName) (ogenapi.BearerAuth, error) {
	return ogenapi.BearerAuth{Token: b.token}, nil
}

// ProvisioningTokenAuth is the SCIM routes' scheme, which the scenario
// does not call: the signed-in admin's token serves there too.
func (b *bearer) ProvisioningTokenAuth(context.Context, ogenapi.OperationName) (ogenapi.ProvisioningTokenAuth, error) {
	return ogenapi.ProvisioningTokenAuth{Token: b.token}, nil
}

// ogenScenario runs the scenario through ogen's clients.
func ogenScenario(ctx context.Context, t target, wire *wireLog) (int, error) {
	auth := &bearer{}
	httpClient := &http.Client{Transport: wire}
	c, err := ogenapi.NewClient(t.api, auth, ogenapi.WithClient(httpClient))
	if err != nil {
		return 0, err
	}
	m, err := ogenmgmt.NewClient(t.management, ogenmgmt.WithClient(httpClient))
	if err != nil {
		return 0, err
	}
	steps := 0

	// Sign in as the bootstrap admin.
	res, err := c.CreateToken(ctx, &ogenapi.LoginRequest{Username: t.admin, Password: t.password})
	token, ok := res.(*ogenapi.TokenResponseHeaders)
	if !ok {
		return steps, unexpected("sign in", res, err)
	}
	auth.token = token.Response.AccessToken
	steps++

	// Create a user with only the three required members: the defaults
	// apply (role user, active, no full name).
	name := "ogen_" + randomHex(3)
	created, err := c.CreateUser(ctx, &ogenapi.CreateUser{Username: name, Email: name + "@example.com", Password: "correct horse battery"}, ogenapi.CreateUserParams{})
	user, ok := created.(*ogenapi.UserHeaders)
	if !ok {
		return steps, unexpected("create", created, err)
	}
	if u := user.Response; u.Role != ogenapi.UserRoleUser || !u.IsActive || !u.FullName.IsNull() {
		return steps, fmt.Errorf("create: defaults not applied: %+v", u)
	}
	id := user.Response.ID
	steps++

	// PATCH a full name: the partial body.
	patch := ogenapi.UpdateUser{FullName: ogenapi.NewOptNilString("Ada Lovelace")}
	patched, err := c.UpdateUser(ctx, (*ogenapi.UpdateUserApplicationJSON)(&patch), ogenapi.UpdateUserParams{ID: id})
	if p, ok := patched.(*ogenapi.ReplaceMeOKHeaders); !ok || p.Response.FullName.Value != "Ada Lovelace" {
		return steps, unexpected("patch", patched, err)
	}
	steps++

	// GET it, change a member, clear the full name, and PUT the same type
	// back, with the ETag as If-Match.
	got, err := c.GetUser(ctx, ogenapi.GetUserParams{ID: id})
	current, ok := got.(*ogenapi.GetMeOKHeaders)
	if !ok {
		return steps, unexpected("get", got, err)
	}
	steps++
	u := current.Response
	u.Email = name + "_new@example.com"
	u.FullName.SetToNull()
	put, err := c.ReplaceUser(ctx, &u, ogenapi.ReplaceUserParams{ID: id, IfMatch: ogenapi.NewOptString(current.ETag)})
	replaced, ok := put.(*ogenapi.ReplaceMeOKHeaders)
	if !ok {
		return steps, unexpected("put", put, err)
	}
	if !wire.sentNull("full_name") {
		return steps, fmt.Errorf("put: full_name was not sent as null: %s", wire.lastSent())
	}
	if r := replaced.Response; r.Email != u.Email || !r.FullName.IsNull() || r.Username != name {
		return steps, fmt.Errorf("put: got %+v", r)
	}
	steps++

	// List with page and per_page, as integers.
	listed, err := c.ListUsers(ctx, ogenapi.ListUsersParams{Page: ogenapi.NewOptInt(1), PerPage: ogenapi.NewOptInt(5), Q: ogenapi.NewOptString(name)})
	page, ok := listed.(*ogenapi.UserPageHeaders)
	if !ok || page.Response.Total != 1 || len(page.Response.Items) != 1 || page.Response.Items[0].ID != id {
		return steps, unexpected("list", listed, err)
	}
	steps++

	// Its events: the creation and the two updates, numbered or pending.
	evs, err := c.ListUserEvents(ctx, ogenapi.ListUserEventsParams{ID: id, PerPage: ogenapi.NewOptInt(50)})
	events, ok := evs.(*ogenapi.UserEventPageHeaders)
	if !ok {
		return steps, unexpected("events", evs, err)
	}
	var types []string
	for _, e := range events.Response.Items {
		types = append(types, string(e.Type))
	}
	for _, e := range events.Response.Pending {
		types = append(types, string(e.Type))
	}
	if !slices.Contains(types, "user.created") || countOf(types, "user.updated") != 2 {
		return steps, fmt.Errorf("events: %v; want user.created and two user.updated", types)
	}
	steps++

	// Health through the management listener's own client.
	ready, err := m.Readiness(ctx)
	if r, ok := ready.(*ogenmgmt.StatusHeaders); !ok || r.Response.Status != "ok" {
		return steps, unexpected("readiness", ready, err)
	}
	live, err := m.Liveness(ctx)
	if r, ok := live.(*ogenmgmt.StatusHeaders); !ok || r.Response.Status != "ok" {
		return steps, unexpected("liveness", live, err)
	}
	steps++

	// Delete it; it is gone.
	deleted, err := c.DeleteUser(ctx, ogenapi.DeleteUserParams{ID: id})
	if _, ok := deleted.(*ogenapi.DeleteUserNoContent); !ok {
		return steps, unexpected("delete", deleted, err)
	}
	if gone, err := c.GetUser(ctx, ogenapi.GetUserParams{ID: id}); !isType[*ogenapi.NotFoundHeaders](gone) {
		return steps, unexpected("get after delete", gone, err)
	}
	steps++

	// Sign out; the token no longer works.
	out, err := c.RevokeToken(ctx)
	if _, ok := out.(*ogenapi.RevokeTokenNoContent); !ok {
		return steps, unexpected("sign out", out, err)
	}
	if after, err := c.ListUsers(ctx, ogenapi.ListUsersParams{}); !isType[*ogenapi.UnauthorizedHeaders](after) {
		return steps, unexpected("list after sign-out", after, err)
	}
	steps++
	return steps, nil
}

func isType[T any](v any) bool {
	_, ok := v.(T)
	return ok
}

func countOf(list []string, s string) int {
	n := 0
	for _, x := range list {
		if x == s {
			n++
		}
	}
	return n
}
