package main

import (
	"net/http"
)

// The SCIM discovery resources (RFC 7644 section 4): what this service
// provider supports, exactly: Users only, filters and PATCH, ETags, no
// bulk and no sorting, bearer tokens.

const (
	scimConfigSchema       = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
	scimResourceTypeSchema = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
	scimSchemaSchema       = "urn:ietf:params:scim:schemas:core:2.0:Schema"
)

// handleSCIMConfig answers the ServiceProviderConfig.
func (s *server) handleSCIMConfig(w http.ResponseWriter, r *http.Request) {
	base := s.scimBase(r)
	s.writeSCIM(w, r, http.StatusOK, map[string]any{
		"schemas":          []string{scimConfigSchema},
		"documentationUri": "https://datatracker.ietf.org/doc/html/rfc7644",
		"patch":            map[string]any{"supported": true},
		"bulk":             map[string]any{"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
		"filter":           map[string]any{"supported": true, "maxResults": scimMaxCount},
		"changePassword":   map[string]any{"supported": true},
		"sort":             map[string]any{"supported": false},
		"etag":             map[string]any{"supported": true},
		"authenticationSchemes": []map[string]any{{
			"type": "oauthbearertoken", "name": "Bearer token", "primary": true,
			"description": "A provisioning token of scope scim (POST /api/v1/tokens), or an admin's sign-in token, sent as Authorization: Bearer.",
		}},
		"meta": map[string]any{"resourceType": "ServiceProviderConfig", "location": base + "/ServiceProviderConfig"},
	})
}

// scimUserResourceType is the one resource type.
func scimUserResourceType(base string) map[string]any {
	return map[string]any{
		"schemas": []string{scimResourceTypeSchema}, "id": "User", "name": "User", "endpoint": "/Users",
		"description": "User accounts", "schema": scimUserSchema,
		"meta": map[string]any{"resourceType": "ResourceType", "location": base + "/ResourceTypes/User"},
	}
}

// handleSCIMResourceTypes lists the resource types: User.
func (s *server) handleSCIMResourceTypes(w http.ResponseWriter, r *http.Request) {
	s.writeSCIM(w, r, http.StatusOK, scimList([]map[string]any{scimUserResourceType(s.scimBase(r))}))
}

// handleSCIMResourceType answers one resource type, User, or 404.
func (s *server) handleSCIMResourceType(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("name") != "User" {
		s.writeError(w, r, errNoSuchSCIMResource)
		return
	}
	s.writeSCIM(w, r, http.StatusOK, scimUserResourceType(s.scimBase(r)))
}

// handleSCIMSchemas lists the schemas: the core User schema, as far as
// the service supports it.
func (s *server) handleSCIMSchemas(w http.ResponseWriter, r *http.Request) {
	s.writeSCIM(w, r, http.StatusOK, scimList([]map[string]any{scimUserSchemaResource(s.scimBase(r))}))
}

// handleSCIMSchema answers one schema, the core User one, or 404.
func (s *server) handleSCIMSchema(w http.ResponseWriter, r *http.Request) {
	if r.PathValue("name") != scimUserSchema {
		s.writeError(w, r, errNoSuchSCIMResource)
		return
	}
	s.writeSCIM(w, r, http.StatusOK, scimUserSchemaResource(s.scimBase(r)))
}

// errNoSuchSCIMResource answers a discovery resource that does not exist.
var errNoSuchSCIMResource = &requestError{status: http.StatusNotFound, detail: "No such resource: this service provider has the User resource type and its core schema only."}

// scimList is a ListResponse of every resource at once.
func scimList(resources []map[string]any) map[string]any {
	return map[string]any{"schemas": []string{scimListSchema}, "totalResults": len(resources),
		"startIndex": 1, "itemsPerPage": len(resources), "Resources": resources}
}

// scimAttr describes one attribute of the schema.
func scimAttr(name, typ, mutability, returned, uniqueness string, required, caseExact, multi bool, desc string, subs ...map[string]any) map[string]any {
	a := map[string]any{"name": name, "type": typ, "multiValued": multi, "description": desc, "required": required,
		"caseExact": caseExact, "mutability": mutability, "returned": returned, "uniqueness": uniqueness}
	if len(subs) > 0 {
		a["subAttributes"] = subs
	}
	return a
}

// scimUserSchemaResource is the core User schema with the attributes the
// service stores (docs/scim.md): the others are accepted and ignored.
func scimUserSchemaResource(base string) map[string]any {
	rw, def, none := "readWrite", "default", "none"
	return map[string]any{
		"schemas": []string{scimSchemaSchema}, "id": scimUserSchema, "name": "User", "description": "User Account",
		"attributes": []map[string]any{
			scimAttr("userName", "string", rw, def, "server", true, false, false,
				"The username: 3 to 50 ASCII letters, digits, '.', '_', '-', '+' or '@', unique without regard to case."),
			scimAttr("name", "complex", rw, def, none, false, false, false, "The full name.",
				scimAttr("formatted", "string", rw, def, none, false, false, false, "The full name, as displayName.")),
			scimAttr("displayName", "string", rw, def, none, false, false, false, "The full name, up to 255 characters."),
			scimAttr("active", "boolean", rw, def, none, false, false, false, "false deactivates the user and ends their sessions."),
			scimAttr("password", "string", "writeOnly", "never", none, false, false, false,
				"8 to 72 bytes, not a common password, not the username or email."),
			scimAttr("emails", "complex", rw, def, none, true, false, true, "The one email, of type work, primary; unique.",
				scimAttr("value", "string", rw, def, "server", true, false, false, "The email address."),
				scimAttr("type", "string", "readOnly", def, none, false, false, false, "Always work."),
				scimAttr("primary", "boolean", "readOnly", def, none, false, false, false, "Always true.")),
			scimAttr("roles", "complex", rw, def, none, false, false, true, "The one role: admin or user.",
				scimAttr("value", "string", rw, def, none, false, false, false, "admin or user."),
				scimAttr("primary", "boolean", "readOnly", def, none, false, false, false, "Always true.")),
		},
		"meta": map[string]any{"resourceType": "Schema", "location": base + "/Schemas/" + scimUserSchema},
	}
}
