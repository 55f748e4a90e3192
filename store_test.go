package main

import (
	"errors"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
)

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
	if stmts := splitSQL(schemaSQL); len(stmts) != 8 {
		t.Errorf("schema.sql: got %d statements", len(stmts))
	}
}
