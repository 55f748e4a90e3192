package main

import (
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The provisioning tokens an admin makes for identity providers
// (docs/scim.md): create (the secret shown once), list, revoke.

// tokenMaxBodyBytes bounds a token's create body: a name and a date.
const tokenMaxBodyBytes = 4 << 10

// provisioningTokenNameMax is the longest name, in characters (the
// column's size).
const provisioningTokenNameMax = 100

// provisioningTokenJSON is a token as the API shows it; Token, the
// secret, only in the answer to its creation.
type provisioningTokenJSON struct {
	ID        int64   `json:"id"`
	Name      string  `json:"name"`
	Scope     string  `json:"scope"`
	CreatedBy *int64  `json:"created_by"`
	CreatedAt string  `json:"created_at"`
	ExpiresAt *string `json:"expires_at"`
	Token     string  `json:"token,omitempty"`
}

// tokenJSON is t as the API shows it, with secret when not "".
func tokenJSON(t ProvisioningToken, secret string) provisioningTokenJSON {
	j := provisioningTokenJSON{ID: t.ID, Name: t.Name, Scope: t.Scope, CreatedBy: t.CreatedBy,
		CreatedAt: t.CreatedAt.UTC().Format(timestampJSONForm), Token: secret}
	if t.ExpiresAt != nil {
		at := t.ExpiresAt.UTC().Format(timestampJSONForm)
		j.ExpiresAt = &at
	}
	return j
}

// handleCreateToken creates a provisioning token and answers it with its
// secret, which is never shown again: only its hash is stored.
func (s *server) handleCreateToken(w http.ResponseWriter, r *http.Request) {
	t, err := parseTokenRequest(w, r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	t.CreatedBy = &callerFrom(r.Context()).ID
	secret, hash := newTokenWith(provisioningTokenPrefix)
	created, err := s.store.CreateProvisioningToken(r.Context(), t, hash)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	s.security(r, "provisioning_token.created", slog.Int64("token_id", created.ID), slog.String("scope", created.Scope))
	w.Header().Set("Location", "/api/v1/tokens/"+strconv.FormatInt(created.ID, 10))
	w.Header().Set("Cache-Control", "no-store")
	s.respond(w, r, http.StatusCreated, tokenJSON(created, secret))
}

// parseTokenRequest reads {"name", "scope", "expires_at"}: a name of 1
// to 100 characters, a known scope (default "scim"), and an optional
// expiry in the future.
func parseTokenRequest(w http.ResponseWriter, r *http.Request) (ProvisioningToken, error) {
	members, err := readJSONObject(w, r)
	if err != nil {
		return ProvisioningToken{}, err
	}
	t := ProvisioningToken{Scope: scopeSCIM}
	var errs fieldErrors
	var name *string
	for _, m := range members {
		switch m.Name {
		case "name":
			name = decodeString(m, &errs)
		case "scope":
			if scope := decodeString(m, &errs); scope != nil && !slices.Contains(tokenScopes, *scope) {
				errs.add("scope", `must be one of: `+strings.Join(tokenScopes, ", "))
			} else if scope != nil {
				t.Scope = *scope
			}
		case "expires_at":
			if m.isNull() {
				continue
			}
			t.ExpiresAt = decodeExpiry(m, &errs)
		default:
			errs.add(fieldName(m.Name), "is not a known field")
		}
	}
	if name != nil {
		t.Name = strings.TrimSpace(*name)
		if n := utf8.RuneCountInString(t.Name); n == 0 || n > provisioningTokenNameMax || fullNameProblem(t.Name) != "" {
			errs.add("name", "must be 1 to 100 characters, without control characters")
		}
	} else if !errs.has("name") {
		errs.add("name", "is required")
	}
	if len(errs) > 0 {
		return ProvisioningToken{}, badRequest("The token request is not valid.", errs...)
	}
	return t, nil
}

// decodeExpiry decodes an RFC 3339 time in the future, within the range
// the DATETIME column stores.
func decodeExpiry(m jsonMember, errs *fieldErrors) *time.Time {
	text := decodeString(m, errs)
	if text == nil {
		return nil
	}
	at, err := time.Parse(time.RFC3339Nano, *text)
	if err != nil || !storableTime(at) || !at.After(time.Now()) {
		errs.add(m.Name, "must be an RFC 3339 time in the future, before the year 10000")
		return nil
	}
	at = at.UTC()
	return &at
}

// handleListTokens lists the provisioning tokens not revoked, without
// their secrets.
func (s *server) handleListTokens(w http.ResponseWriter, r *http.Request) {
	tokens, err := s.store.ProvisioningTokens(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	items := make([]provisioningTokenJSON, len(tokens))
	for i, t := range tokens {
		items[i] = tokenJSON(t, "")
	}
	s.respond(w, r, http.StatusOK, struct {
		Items []provisioningTokenJSON `json:"items"`
	}{items})
}

// handleRevokeToken revokes a provisioning token: it is refused from now
// on, everywhere.
func (s *server) handleRevokeToken(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r, "token")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.store.RevokeProvisioningToken(r.Context(), id); err != nil {
		s.writeError(w, r, err)
		return
	}
	s.security(r, "provisioning_token.revoked", slog.Int64("token_id", id))
	w.WriteHeader(http.StatusNoContent)
}
