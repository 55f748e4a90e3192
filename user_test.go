package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestEmailRules(t *testing.T) {
	t.Parallel()
	valid := []string{
		"a@b.co", "first.last@example.com", "o'brien+tag@mail.example.org", "x_y-z@sub-domain.example.io",
		"!#$%&'*+/=?^_`{|}~-@example.com", strings.Repeat("a", 64) + "@example.com", "user@123.example",
	}
	for _, e := range valid {
		if msg := emailProblem(e); msg != "" {
			t.Errorf("%q: got %q, want valid", e, msg)
		}
	}
	invalid := []string{
		"", "@example.com", "a@", "a@b", "a@.com", "a@b..com", "a@b.com.", ".a@b.com", "a.@b.com", "a b@c.com",
		"a@b_c.com", "a@-b.com", "a@b-.com", "a@[127.0.0.1]", "\"a\"@b.com", "a@b.com>", "a@b.com\n",
		"a@" + strings.Repeat("b", 64) + ".com", "a@b.c" + strings.Repeat("o", 250),
	}
	for _, e := range invalid {
		if emailProblem(e) == "" {
			t.Errorf("%q: accepted, want a problem", e)
		}
	}
}

func TestNormalizeIsIdempotent(t *testing.T) {
	t.Parallel()
	f := userFields{Username: ptr("  Bob "), Email: ptr(" BOB@Example.COM\t"), FullName: ptr("  Bob  B "), HasFullName: true}
	f.normalize()
	once := *f.Username + "|" + *f.Email + "|" + *f.FullName
	f.normalize()
	twice := *f.Username + "|" + *f.Email + "|" + *f.FullName
	if once != "Bob|bob@example.com|Bob  B" || once != twice {
		t.Errorf("once %q, twice %q", once, twice)
	}
}

func TestUserJSONHasNoSecretsAndFixedTimestamps(t *testing.T) {
	t.Parallel()
	b, err := json.Marshal(User{ID: 1, Username: "a", Role: RoleUser})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"id":1,"username":"a","email":"","full_name":null,"role":"user","is_active":false,"created_at":"0001-01-01T00:00:00.000000Z","updated_at":"0001-01-01T00:00:00.000000Z"}`
	if string(b) != want {
		t.Errorf("got  %s\nwant %s", b, want)
	}
}
