package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/go-sql-driver/mysql"
)

// MySQL server error numbers the store acts on.
const (
	errDupEntry = 1062
	errDeadlock = 1213 // a deadlock victim, or a Galera certification conflict
)

// unavailableErrors are server errors that mean "try again later" rather
// than a bug in our SQL: the server is overloaded, shutting down, read-only
// during a failover, our account or database is not (yet) set up, or a
// statement was interrupted or timed out.
var unavailableErrors = map[uint16]bool{
	1040: true, // too many connections
	1044: true, // access denied to database
	1045: true, // access denied for user
	1049: true, // unknown database
	1053: true, // server shutdown in progress
	1146: true, // table does not exist: schema not applied yet
	1205: true, // lock wait timeout
	1213: true, // deadlock
	1290: true, // read-only (MySQL --read-only)
	1317: true, // query interrupted
	1836: true, // read-only mode
	1927: true, // connection killed (MariaDB)
	1969: true, // statement timeout (MariaDB max_statement_time)
	3024: true, // statement timeout (MySQL max_execution_time)
}

// dbError classifies an error from the database for the caller: a
// duplicate key becomes a ConflictError, anything that means the database
// is unreachable or busy wraps ErrUnavailable, and everything else (a bug)
// is returned wrapped with op for the log.
func dbError(op string, err error) error {
	if err == nil {
		return nil
	}
	var myErr *mysql.MySQLError
	switch {
	case errors.As(err, &myErr) && myErr.Number == errDupEntry:
		if field := duplicateKeyField(myErr.Message); field != "" {
			return &ConflictError{Field: field}
		}
		return fmt.Errorf("%s: %w", op, err)
	case errors.As(err, &myErr) && unavailableErrors[myErr.Number], !errors.As(err, &myErr) && connectionTrouble(err):
		return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
	default:
		// A server error we did not expect, or a driver error about our
		// own arguments: a bug, answered 500.
		return fmt.Errorf("%s: %w", op, err)
	}
}

// connectionTrouble reports whether err says the database could not be
// reached or did not answer in time: network errors, timeouts, cancelled
// contexts, connections the driver or database/sql gave up on.
func connectionTrouble(err error) bool {
	var netErr net.Error
	return errors.As(err, &netErr) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) ||
		errors.Is(err, driver.ErrBadConn) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, mysql.ErrMalformPkt) ||
		errors.Is(err, mysql.ErrPktSync) || errors.Is(err, mysql.ErrPktSyncMul) || errors.Is(err, mysql.ErrBusyBuffer) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// isDuplicateKey reports whether err is MySQL's duplicate-key error.
func isDuplicateKey(err error) bool {
	myErr, ok := errors.AsType[*mysql.MySQLError](err)
	return ok && myErr.Number == errDupEntry
}

// duplicateKeyField names the field whose unique index rejected a row.
// Error 1062 reads "Duplicate entry 'x' for key 'users.users_email_unique'"
// on MySQL 8 and "... for key 'users_email_unique'" on MariaDB. The key is
// the last quoted word, and the duplicate value before it cannot fool the
// search: it holds no spaces.
func duplicateKeyField(message string) string {
	i := strings.LastIndex(message, "for key '")
	if i < 0 {
		return ""
	}
	key := strings.TrimSuffix(message[i+len("for key '"):], "'")
	key = key[strings.LastIndex(key, ".")+1:]
	switch key {
	case "users_username_unique":
		return "username"
	case "users_email_unique":
		return "email"
	}
	return ""
}
