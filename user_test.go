package main

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
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

func TestDuplicateKeyField(t *testing.T) {
	t.Parallel()
	tests := []struct{ message, want string }{
		{"Duplicate entry 'alice' for key 'users.users_username_unique'", "username"}, // MySQL 8
		{"Duplicate entry 'alice' for key 'users_username_unique'", "username"},       // MariaDB
		{"Duplicate entry 'o'brien@x.com' for key 'users.users_email_unique'", "email"},
		{"Duplicate entry 'a@b.co' for key 'users_email_unique'", "email"},
		{"Duplicate entry '1' for key 'PRIMARY'", ""},
		{"something else", ""},
	}
	for _, tt := range tests {
		if got := duplicateKeyField(tt.message); got != tt.want {
			t.Errorf("%q: got %q, want %q", tt.message, got, tt.want)
		}
	}
}

func TestDBErrorClassification(t *testing.T) {
	t.Parallel()
	conflict := dbError("op", &mysql.MySQLError{Number: 1062, Message: "Duplicate entry 'a' for key 'users_email_unique'"})
	if c, ok := errors.AsType[*ConflictError](conflict); !ok || c.Field != "email" {
		t.Errorf("1062: got %v", conflict)
	}
	for _, n := range []uint16{1040, 1205, 1213, 1146} {
		if err := dbError("op", &mysql.MySQLError{Number: n}); !errors.Is(err, ErrUnavailable) {
			t.Errorf("%d: got %v, want unavailable", n, err)
		}
	}
	if err := dbError("op", &mysql.MySQLError{Number: 1064, Message: "syntax"}); errors.Is(err, ErrUnavailable) {
		t.Errorf("a syntax error is a bug, not unavailability: %v", err)
	}
	if err := dbError("op", mysql.ErrInvalidConn); !errors.Is(err, ErrUnavailable) {
		t.Errorf("a broken connection: got %v, want unavailable", err)
	}
}

func TestSplitSQL(t *testing.T) {
	t.Parallel()
	got := splitSQL("-- comment\nCREATE TABLE a (\n  x INT\n);\n\nCREATE TABLE b (y INT);\n")
	if len(got) != 2 || !strings.HasPrefix(got[0], "CREATE TABLE a") || strings.HasSuffix(got[1], ";") {
		t.Errorf("got %q", got)
	}
	if stmts := splitSQL(schemaSQL); len(stmts) != 4 {
		t.Errorf("schema.sql: got %d statements", len(stmts))
	}
}
