package main

import "time"

// The access rules, each defined once, as pure functions of the caller and
// the user acted on. The route table (server.routes) names each route's
// rule; the route guard applies it (server.allow), and a statement that
// checks the token itself (the fast write path) is handed the rule as
// data and applies the same function to the caller and row it read.

// access is who may call a route; the route table (server.routes) gives
// every route one.
type access int

const (
	// public: anyone; no token is looked at.
	public access = iota
	// signedIn: any valid token.
	signedIn
	// selfOrAdmin: admins, and users for their own id (or "me"). Any other
	// id is 403 whether it exists or not, so ids cannot be probed.
	selfOrAdmin
	// adminOnly: admins.
	adminOnly
	// adminOrSignup: admins, and anonymous callers when sign-up is on
	// (the handler then limits what they may set).
	adminOrSignup
	// provisioner: admins, and provisioning tokens of scope "scim" (the
	// /scim/v2 routes).
	provisioner
)

// The scopes a provisioning token may have (docs/scim.md).
const scopeSCIM = "scim"

// tokenScopes lists every scope, for validation.
var tokenScopes = []string{scopeSCIM}

// ProvisioningToken is a long-lived token an admin made for an identity
// provider, as listed: never its secret, which only its creation shows.
type ProvisioningToken struct {
	ID        int64
	Name      string
	Scope     string
	CreatedBy *int64 // the admin who made it; nil once that user is gone
	CreatedAt time.Time
	ExpiresAt *time.Time // nil: it never expires
}

// Caller is the authenticated user making a request, or a provisioning
// token: then Scope is its scope, TokenID its id, and ID and Role are
// zero (it is no user, and no admin).
type Caller struct {
	ID        int64
	Role      Role
	TokenHash []byte

	Scope   string
	TokenID int64
}

// isProvisioner reports whether the caller is a provisioning token.
func (c *Caller) isProvisioner() bool { return c != nil && c.Scope != "" }

// isAdmin reports whether the caller is signed in as an admin.
func (c *Caller) isAdmin() bool { return c != nil && c.Role == RoleAdmin }

// permits applies rule to a signed-in caller acting on the user target
// (0 when the route names none): nil, or the refusal. Admins pass every
// rule; selfOrAdmin lets a user through for their own id only, and any
// other id is refused whether it exists or not. A provisioning token
// passes only provisioner, with the scope that rule needs: any other
// route is outside its scope.
func (rule access) permits(caller *Caller, target int64) error {
	switch {
	case rule == public:
		return nil
	case caller.isProvisioner() && rule == provisioner && caller.Scope == scopeSCIM:
		return nil
	case caller.isProvisioner():
		return errOutOfScope
	case rule == signedIn, caller.isAdmin():
		return nil
	case rule == adminOrSignup:
		return errAdminsCreate
	case rule == selfOrAdmin && target == caller.ID:
		return nil
	case rule == selfOrAdmin:
		return errNotYours
	default:
		return errAdminsOnly
	}
}

// mayDelete is the rule of a delete beyond the route's: an admin may not
// delete their own account (the last-admin rule is the store's, since it
// depends on the other rows).
func mayDelete(caller *Caller, target int64) error {
	if target == caller.ID {
		return errNoSelfDelete
	}
	return nil
}

// mayProvision is the rule of a user write by a provisioning token
// (byToken) to a user whose role is current ("" for a user it creates),
// leaving the user with role next: it may not write an admin's account
// (active or not: reactivating one hands out its rights), nor make anyone
// an admin. Admins are managed through the API by an admin (docs/scim.md);
// an admin's own token on /scim/v2 is not held by it. The SCIM handlers
// apply it to the user they read, before any work; the store applies it
// again to the role of the locked row, which a concurrent write may have
// changed since.
func mayProvision(byToken bool, current, next Role) error {
	switch {
	case !byToken:
		return nil
	case current == RoleAdmin:
		return errAdminNotProvisioned
	case next == RoleAdmin:
		return errProvisionedAdmin
	}
	return nil
}

// rolesPermitted lists the roles whose holders rule lets through when the
// route names no user: the rule as data, for a statement that checks the
// token itself and must read nothing for anyone else (the list). It is
// computed from permits, so the rule has one definition.
func (rule access) rolesPermitted() []Role {
	var roles []Role
	for _, role := range []Role{RoleAdmin, RoleUser} {
		if rule.permits(&Caller{ID: -1, Role: role}, 0) == nil { // -1: no user's id
			roles = append(roles, role)
		}
	}
	return roles
}
