package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strings"
)

// Access tokens are opaque: "usv_" and 43 base64url characters (32 random
// bytes). The database keeps only their SHA-256, so nothing stored can be
// replayed; a 256-bit random secret needs no salt or slow hash.
// Provisioning tokens (docs/scim.md) have the same shape with the prefix
// "usvp_", so the prefix alone says which table holds a token.
const (
	tokenPrefix             = "usv_"
	provisioningTokenPrefix = "usvp_"
	tokenRandomSize         = 32
)

// newToken returns a fresh sign-in token and the hash to store for it.
func newToken() (token string, hash []byte) {
	return newTokenWith(tokenPrefix)
}

// newTokenWith returns a fresh token with prefix and its hash.
func newTokenWith(prefix string) (token string, hash []byte) {
	b := make([]byte, tokenRandomSize)
	rand.Read(b) // never fails (crypto/rand documentation)
	token = prefix + base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(token))
	return token, sum[:]
}

// parseToken checks a sign-in token's shape without touching the
// database and returns its hash.
func parseToken(token string) ([]byte, bool) {
	return parseTokenWith(tokenPrefix, token)
}

// parseTokenWith checks the shape of a token with prefix and returns its
// hash.
func parseTokenWith(prefix, token string) ([]byte, bool) {
	if len(token) != len(prefix)+base64.RawURLEncoding.EncodedLen(tokenRandomSize) || !strings.HasPrefix(token, prefix) {
		return nil, false
	}
	if _, err := base64.RawURLEncoding.Strict().DecodeString(token[len(prefix):]); err != nil {
		return nil, false
	}
	sum := sha256.Sum256([]byte(token))
	return sum[:], true
}

// bearerToken extracts the token of an "Authorization: Bearer <token>"
// header (the scheme is case-insensitive, RFC 9110 section 11.1).
func bearerToken(header string) (string, bool) {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimLeft(token, " ")
	return token, token != ""
}

type callerKey struct{}

func withCaller(ctx context.Context, c *Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// callerFrom returns the authenticated caller, or nil for an anonymous
// request.
func callerFrom(ctx context.Context) *Caller {
	c, _ := ctx.Value(callerKey{}).(*Caller)
	return c
}
