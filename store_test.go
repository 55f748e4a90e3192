package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

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

// TestDBErrorClassification is the table of every database error the
// service knows: each number or driver error lands in exactly one class.
func TestDBErrorClassification(t *testing.T) {
	t.Parallel()
	const (
		busy  = "busy"  // ErrUnavailable: 503, try again
		bug   = "bug"   // 500
		setup = "setup" // DatabaseSetupError: 503 with a reason for /health
	)
	num := func(n uint16) error { return fmt.Errorf("driver: %w", &mysql.MySQLError{Number: n, Message: "text"}) }
	tests := []struct {
		name       string
		err        error
		wantClass  string
		wantReason string
	}{
		{"1028 sort aborted (MySQL timeout in a filesort)", num(1028), busy, ""},
		{"1037 out of memory", num(1037), busy, ""},
		{"1038 out of sort memory", num(1038), busy, ""},
		{"1040 too many connections", num(1040), busy, ""},
		{"1041 out of memory", num(1041), busy, ""},
		{"1047 Galera node not ready", num(1047), busy, ""},
		{"1053 shutdown", num(1053), busy, ""},
		{"1158 net read error", num(1158), busy, ""},
		{"1159 net read timeout", num(1159), busy, ""},
		{"1160 net write error", num(1160), busy, ""},
		{"1161 net write timeout", num(1161), busy, ""},
		{"1180 commit failed in the engine", num(1180), busy, ""},
		{"1203 max_user_connections", num(1203), busy, ""},
		{"1205 lock wait timeout", num(1205), busy, ""},
		{"1213 deadlock", num(1213), busy, ""},
		{"1226 resource limit", num(1226), busy, ""},
		{"1290 read-only", num(1290), busy, ""},
		{"1317 interrupted", num(1317), busy, ""},
		{"1461 too many prepared statements", num(1461), busy, ""},
		{"1615 re-prepare", num(1615), busy, ""},
		{"1836 read-only mode", num(1836), busy, ""},
		{"1927 connection killed", num(1927), busy, ""},
		{"1969 MariaDB statement timeout", num(1969), busy, ""},
		{"2013 lost connection", num(2013), busy, ""},
		{"3024 MySQL statement timeout", num(3024), busy, ""},
		{"3101 group replication rollback", num(3101), busy, ""},
		{"4031 idle connection closed", num(4031), busy, ""},
		{"bad connection", driver.ErrBadConn, busy, ""},
		{"invalid connection", mysql.ErrInvalidConn, busy, ""},
		{"EOF", io.EOF, busy, ""},
		{"unexpected EOF", io.ErrUnexpectedEOF, busy, ""},
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, busy, ""},
		{"deadline", context.DeadlineExceeded, busy, ""},
		{"cancelled", context.Canceled, busy, ""},
		{"connection done", sql.ErrConnDone, busy, ""},

		{"1044 no rights on the database", num(1044), setup, reasonDatabaseDenied},
		{"1045 access denied", num(1045), setup, reasonAccessDenied},
		{"1698 access denied (unix_socket account)", num(1698), setup, reasonAccessDenied},
		{"1142 table command denied", num(1142), setup, reasonMissingGrant},
		{"1143 column command denied", num(1143), setup, reasonMissingGrant},
		{"1227 privilege needed", num(1227), setup, reasonMissingGrant},
		{"3159 TLS required", num(3159), setup, reasonTLSRequired},
		{"1049 unknown database", num(1049), setup, reasonUnknownDB},
		{"1146 table missing", num(1146), setup, reasonSchemaMissing},
		{"certificate not trusted", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, setup, reasonTLS},
		{"certificate for another name", fmt.Errorf("dial: %w", x509.HostnameError{Host: "db"}), setup, reasonTLS},
		{"expired certificate", x509.CertificateInvalidError{Reason: x509.Expired}, setup, reasonTLS},
		{"not a TLS server", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, setup, reasonTLS},
		{"server without TLS", mysql.ErrNoTLS, setup, reasonTLSUnsupported},

		{"1064 syntax", num(1064), bug, ""},
		{"1054 unknown column", num(1054), bug, ""},
		{"1267 illegal mix of collations", num(1267), bug, ""},
		{"1366 incorrect value", num(1366), bug, ""},
		{"1062 on another key", &mysql.MySQLError{Number: 1062, Message: "Duplicate entry '1' for key 'PRIMARY'"}, bug, ""},
		{"argument type", errors.New("sql: converting argument $1 type: unsupported type"), bug, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := dbError("op", tt.err)
			var setupErr *DatabaseSetupError
			gotClass, gotReason := bug, ""
			switch {
			case errors.As(err, &setupErr):
				gotClass, gotReason = setup, setupErr.Reason
				if !errors.Is(err, ErrUnavailable) {
					t.Error("a setup failure is not a kind of ErrUnavailable")
				}
				if me, ok := errors.AsType[*mysql.MySQLError](tt.err); ok && setupErr.Number != me.Number {
					t.Errorf("number: got %d, want %d", setupErr.Number, me.Number)
				}
			case errors.Is(err, ErrUnavailable):
				gotClass = busy
			}
			if gotClass != tt.wantClass || gotReason != tt.wantReason {
				t.Errorf("got %s %q, want %s %q (%v)", gotClass, gotReason, tt.wantClass, tt.wantReason, err)
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("the cause is lost: %v", err)
			}
		})
	}
	conflict := dbError("op", &mysql.MySQLError{Number: 1062, Message: "Duplicate entry 'a' for key 'users_email_unique'"})
	if c, ok := errors.AsType[*ConflictError](conflict); !ok || c.Field != "email" {
		t.Errorf("1062: got %v", conflict)
	}
}

func TestSplitSQL(t *testing.T) {
	t.Parallel()
	got := splitSQL("-- comment\nCREATE TABLE a (\n  x INT\n);\n\nCREATE TABLE b (y INT);\n")
	if len(got) != 2 || !strings.HasPrefix(got[0], "CREATE TABLE a") || strings.HasSuffix(got[1], ";") {
		t.Errorf("got %q", got)
	}
	if stmts := splitSQL(schemaSQL); len(stmts) != 11 {
		t.Errorf("schema.sql: got %d statements", len(stmts))
	}
}

// TestSortTimeoutIsUnavailable: a sorted, filtered list that the server
// itself stops answers 503 with Retry-After, not 500. Which number the
// server sends depends on the plan it picks: 1028 ("Sort aborted") when
// the limit strikes inside a filesort (MySQL and MariaDB alike; 1028 was
// a 500 before), 1969 (MariaDB) or 3024 (MySQL) elsewhere.
func TestSortTimeoutIsUnavailable(t *testing.T) {
	t.Parallel()
	app := newTestApp(t)
	// Enough users that every plan takes far longer than a millisecond:
	// the prefix filter (an index merge) then a filesort of 30,000 rows,
	// or the created_at index read backwards past 30,000 newer users that
	// do not match before the first that does.
	// Inserted 5,000 at a time, so no one statement comes near the pool's
	// read timeout on a busy machine.
	for _, prefix := range []string{"sorted", "other"} {
		for from := 0; from < 30; from += 5 {
			if _, err := app.db.Exec(`INSERT INTO users (username, email, password_hash)
				WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
				SELECT CONCAT(?, a.i + 1000 * b.i), CONCAT(?, a.i + 1000 * b.i, '@example.com'), 'x'
				FROM n a CROSS JOIN n b WHERE b.i > ? AND b.i <= ?`, prefix, prefix, from, from+5); err != nil {
				t.Fatal(err)
			}
		}
	}
	app.store.statementLimit = time.Millisecond
	rec := app.do("GET", "/api/v1/users?q=sorted&sort=-created_at&per_page=100", "")
	wantProblem(t, rec, http.StatusServiceUnavailable)
	if rec.Header().Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	// The server stopped the statement: MariaDB says 1969, MySQL 3024 or
	// 1028; not the client's context (the store's timeout is seconds).
	if logs := app.logs.String(); !strings.Contains(logs, "Error 1969") && !strings.Contains(logs, "Error 3024") && !strings.Contains(logs, "Error 1028") {
		t.Errorf("the log does not show the server's statement timeout:\n%s", logs)
	}
}

// TestSchemaCollations: every table and text column of the schema is in
// utf8mb4_unicode_ci, whatever the server's and the database's defaults.
func TestSchemaCollations(t *testing.T) {
	t.Parallel()
	db := newTestDB(t)
	wantOneCollation(t, db)
}

// TestSchemaConvertsOtherCollations: a database made by an older schema,
// which named no collation, is converted by migrate, and only by it.
func TestSchemaConvertsOtherCollations(t *testing.T) {
	t.Parallel()
	db := newTestDatabase(t, "")
	for _, stmt := range []string{
		"CREATE TABLE user_counts (slot TINYINT UNSIGNED NOT NULL, n BIGINT NOT NULL, PRIMARY KEY (slot)) ENGINE = InnoDB DEFAULT CHARSET = latin1",
		`CREATE TABLE idempotency_keys (scope BIGINT UNSIGNED NOT NULL, idem_key VARBINARY(255) NOT NULL,
			request_hash BINARY(32) NOT NULL, claim BINARY(16) NOT NULL, status SMALLINT NULL,
			content_type VARCHAR(64) NULL, location VARCHAR(255) NULL, etag VARCHAR(64) NULL, body MEDIUMBLOB NULL,
			created_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), expires_at DATETIME(6) NOT NULL,
			PRIMARY KEY (scope, idem_key), KEY idempotency_keys_expires (expires_at))
			ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_general_ci`,
	} {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatal(err)
		}
	}
	serving := NewStore(db, testTimeout)
	if err := serving.EnsureSchema(context.Background()); err != nil {
		t.Fatal(err)
	}
	if tables, err := serving.tablesInOtherCollations(context.Background()); err != nil || !slices.Equal(tables, []string{"idempotency_keys", "user_counts"}) {
		t.Errorf("serve converted or missed tables: still to convert %v, %v", tables, err)
	}
	store := NewStore(db, testTimeout)
	store.convertOldTables = true // as migrate does
	if err := store.EnsureSchema(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantOneCollation(t, db)
	if tables, err := store.tablesInOtherCollations(context.Background()); err != nil || len(tables) != 0 {
		t.Errorf("after the conversion: %v, %v", tables, err)
	}
}

// wantOneCollation fails the test on any table or column of db in
// another collation than utf8mb4_unicode_ci.
func wantOneCollation(t *testing.T, db *sql.DB) {
	t.Helper()
	rows, err := db.Query(`SELECT TABLE_NAME, '', TABLE_COLLATION FROM information_schema.TABLES WHERE TABLE_SCHEMA = DATABASE()
		UNION ALL
		SELECT TABLE_NAME, COLUMN_NAME, COLLATION_NAME FROM information_schema.COLUMNS
		WHERE TABLE_SCHEMA = DATABASE() AND COLLATION_NAME IS NOT NULL`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	seen := map[string]bool{}
	for rows.Next() {
		var table, column, collation string
		if err := rows.Scan(&table, &column, &collation); err != nil {
			t.Fatal(err)
		}
		seen[table] = true
		if collation != schemaCollation {
			t.Errorf("%s %s: collation %s, want %s", table, column, collation, schemaCollation)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, table := range schemaTables {
		if !seen[table] {
			t.Errorf("table %s not found", table)
		}
	}
}

// TestEnsureSchemaNamesWhatItDoes: with SCHEMA_APPLY=false a timeout
// while waiting for the schema is logged as checking it, not applying it
// (as it was).
func TestEnsureSchemaNamesWhatItDoes(t *testing.T) {
	t.Parallel()
	store := NewStore(nil, time.Second)
	store.applySchema = false
	store.schemaLock <- struct{}{} // another call holds the lock
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := store.EnsureSchema(ctx)
	if err == nil || !strings.HasPrefix(err.Error(), "check schema") {
		t.Errorf("EnsureSchema with SCHEMA_APPLY=false, cancelled: %v; want it to name check schema", err)
	}
}
