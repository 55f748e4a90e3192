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
	"strings"

	"github.com/go-sql-driver/mysql"
)

// MySQL server error numbers the store acts on.
const (
	errDupEntry = 1062
	errDeadlock = 1213 // a deadlock victim, or a Galera certification conflict
)

// The reasons a DatabaseSetupError gives: what an operator must fix.
// /health and /health/ready answer them in their "database" member.
const (
	reasonAccessDenied   = "access denied"
	reasonDatabaseDenied = "no access to database"
	reasonMissingGrant   = "missing grant"
	reasonTLSRequired    = "tls required"
	reasonTLS            = "tls"
	reasonTLSUnsupported = "tls unsupported by server"
	reasonUnknownDB      = "unknown database"
	reasonSchemaMissing  = "schema missing"
)

// setupErrors are the server errors that no retry will cure: the account,
// its grants, the transport or the schema are not as the service needs.
// Each is a DatabaseSetupError, answered 503 and logged once.
var setupErrors = map[uint16]string{
	1044: reasonDatabaseDenied, // no rights on DB_NAME, or (the same answer) no such database
	1045: reasonAccessDenied,   // wrong user or password; MariaDB before 11.4 also sends it under require_secure_transport
	1698: reasonAccessDenied,   // MariaDB: the account authenticates another way (unix_socket)
	1142: reasonMissingGrant,   // a statement denied on a table (CREATE by a DML-only user)
	1143: reasonMissingGrant,   // a column denied
	1227: reasonMissingGrant,   // a statement needs a privilege the account lacks
	3159: reasonTLSRequired,    // require_secure_transport: MySQL, and MariaDB from 11.4 (SQLSTATE 08004 there)
	1049: reasonUnknownDB,      // DB_NAME does not exist
	1146: reasonSchemaMissing,  // a table does not exist: migrate has not run
}

// busyErrors are server errors that mean "try again later": the server is
// overloaded, restarting, failing over, not yet part of its cluster, or a
// statement was interrupted, timed out or lost a lock race. They are
// ErrUnavailable, answered 503 with Retry-After.
var busyErrors = map[uint16]bool{
	1028: true, // sort aborted: MySQL's answer to max_execution_time inside a filesort
	1037: true, // out of memory
	1038: true, // out of sort memory
	1040: true, // too many connections
	1041: true, // out of memory
	1047: true, // Galera: the node is not ready ("WSREP has not yet prepared node")
	1053: true, // server shutdown in progress
	1158: true, // error reading communication packets
	1159: true, // timeout reading communication packets
	1160: true, // error writing communication packets
	1161: true, // timeout writing communication packets
	1180: true, // the storage engine failed the commit: the transaction is rolled back
	1203: true, // the account's max_user_connections reached
	1205: true, // lock wait timeout
	1213: true, // deadlock, or (Galera) a certification failure at commit
	1226: true, // the account exceeded a resource limit (queries per hour...)
	1290: true, // read-only (MySQL --read-only, a replica or a failover in progress)
	1317: true, // query interrupted (KILL QUERY, shutdown)
	1461: true, // max_prepared_stmt_count reached
	1615: true, // prepared statement needs to be re-prepared (DDL ran under it)
	1836: true, // read-only mode
	1927: true, // connection killed (MariaDB)
	1969: true, // statement timeout (MariaDB max_statement_time)
	2013: true, // lost connection during query (a client-library number some proxies send)
	3024: true, // statement timeout (MySQL max_execution_time)
	3101: true, // group replication rolled the transaction back (MySQL)
	4031: true, // the server closed an idle connection (MySQL 8.0.24+)
}

// dbError classifies an error from the database for the caller, the one
// classifier every store call goes through:
//   - a duplicate key becomes a ConflictError naming the field;
//   - a failure an operator must fix (credentials, grants, TLS, a missing
//     database or schema) becomes a *DatabaseSetupError with its reason;
//   - anything that means the database is unreachable, slow or busy wraps
//     ErrUnavailable;
//   - everything else (a syntax error, an unknown column: a bug) is
//     returned wrapped with op, and answered 500.
func dbError(op string, err error) error {
	if err == nil {
		return nil
	}
	if myErr, ok := errors.AsType[*mysql.MySQLError](err); ok {
		if myErr.Number == errDupEntry {
			if field := duplicateKeyField(myErr.Message); field != "" {
				return &ConflictError{Field: field}
			}
			return fmt.Errorf("%s: %w", op, err)
		}
		if reason, ok := setupErrors[myErr.Number]; ok {
			return &DatabaseSetupError{Reason: reason, Number: myErr.Number, Err: fmt.Errorf("%s: %w", op, err)}
		}
		if busyErrors[myErr.Number] {
			return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
		}
		// A server error we did not expect: a bug, answered 500.
		return fmt.Errorf("%s: %w", op, err)
	}
	if reason := tlsFailure(err); reason != "" {
		return &DatabaseSetupError{Reason: reason, Err: fmt.Errorf("%s: %w", op, err)}
	}
	if connectionTrouble(err) {
		return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
	}
	// A driver error about our own arguments: a bug.
	return fmt.Errorf("%s: %w", op, err)
}

// tlsFailure names what went wrong with TLS to the database, or "" when
// err is no TLS failure: the server's certificate was not trusted or not
// for DB_HOST, the handshake failed, or DB_TLS=true asked a server that
// has no TLS.
func tlsFailure(err error) string {
	if errors.Is(err, mysql.ErrNoTLS) {
		return reasonTLSUnsupported
	}
	var (
		verify     *tls.CertificateVerificationError
		header     tls.RecordHeaderError
		unknownCA  x509.UnknownAuthorityError
		hostname   x509.HostnameError
		invalid    x509.CertificateInvalidError
		systemRoot x509.SystemRootsError
	)
	if errors.As(err, &verify) || errors.As(err, &header) ||
		errors.As(err, &unknownCA) || errors.As(err, &hostname) || errors.As(err, &invalid) || errors.As(err, &systemRoot) {
		return reasonTLS
	}
	return ""
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
