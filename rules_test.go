package main

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// TestAccessRules: each rule as permits defines it, and as the list
// statement gets it, as data (rolesPermitted), derived from permits.
func TestAccessRules(t *testing.T) {
	t.Parallel()
	admin, user := &Caller{ID: 1, Role: RoleAdmin}, &Caller{ID: 2, Role: RoleUser}
	for _, c := range []struct {
		rule          access
		caller        *Caller
		target        int64
		want          error
		rolesToReadAt []Role
	}{
		{signedIn, user, 0, nil, []Role{RoleAdmin, RoleUser}},
		{adminOnly, admin, 2, nil, []Role{RoleAdmin}},
		{adminOnly, user, 2, errAdminsOnly, []Role{RoleAdmin}},
		{selfOrAdmin, user, 2, nil, []Role{RoleAdmin}},
		{selfOrAdmin, user, 1, errNotYours, []Role{RoleAdmin}},
		{selfOrAdmin, admin, 2, nil, []Role{RoleAdmin}},
		{adminOrSignup, user, 0, errAdminsCreate, []Role{RoleAdmin}},
	} {
		if got := c.rule.permits(c.caller, c.target); got != c.want {
			t.Errorf("rule %d, caller %+v, target %d: %v; want %v", c.rule, *c.caller, c.target, got, c.want)
		}
		if got := c.rule.rolesPermitted(); !slices.Equal(got, c.rolesToReadAt) {
			t.Errorf("rule %d: roles %v; want %v", c.rule, got, c.rolesToReadAt)
		}
	}
	if err := mayDelete(admin, admin.ID); err != errNoSelfDelete {
		t.Errorf("an admin deleting themselves: %v", err)
	}
}

// TestBodyBudgetFullIsLoggedAsSuch: a full body budget is a 503 logged as
// what it is, not as the database being unavailable (as it was).
func TestBodyBudgetFullIsLoggedAsSuch(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	rec := httptest.NewRecorder()
	app.srv.writeError(rec, httptest.NewRequest("POST", "/api/v1/users", nil), ErrBodiesBusy)
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("status %d; want 503", rec.Code)
	}
	logs := app.logs.String()
	if strings.Contains(logs, "database unavailable") || !strings.Contains(logs, `"msg":"request bodies at their limit"`) {
		t.Errorf("logged:\n%s", logs)
	}
}

// TestSecurityLogLevels: a failed sign-in is a warning, a successful one
// a record at info. Before, both were warnings.
func TestSecurityLogLevels(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	app.newUser("levels")
	app.do("POST", "/api/v1/auth/token", `{"username":"levels","password":"wrong password"}`, "Authorization", "")
	for _, line := range strings.Split(app.logs.String(), "\n") {
		switch {
		case strings.Contains(line, `"event":"login.succeeded"`) && !strings.Contains(line, `"level":"INFO"`):
			t.Errorf("a successful sign-in not at info: %s", line)
		case strings.Contains(line, `"event":"login.failed"`) && !strings.Contains(line, `"level":"WARN"`):
			t.Errorf("a failed sign-in not a warning: %s", line)
		}
	}
	if !strings.Contains(app.logs.String(), `"event":"login.succeeded"`) || !strings.Contains(app.logs.String(), `"event":"login.failed"`) {
		t.Errorf("the sign-ins were not logged:\n%s", app.logs)
	}
}
