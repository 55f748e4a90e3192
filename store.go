package main

import (
	"context"
	"database/sql"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
)

//go:embed schema.sql
var schemaSQL string

// sessionSQLMode is pinned on every connection so MySQL 8 and MariaDB
// behave alike: strict (a bad value is an error, never truncated) and
// without zero dates.
const sessionSQLMode = "'STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION,ONLY_FULL_GROUP_BY'"

// driverLogger sends the driver's own complaints (broken connections and
// the like) to the service's structured log instead of bare stderr lines.
type driverLogger struct{ logger *slog.Logger }

func (d driverLogger) Print(v ...any) {
	d.logger.Warn("mysql driver", "message", strings.TrimSpace(fmt.Sprint(v...)))
}

// mysqlConfig is the driver configuration for cfg.
func mysqlConfig(cfg Config) *mysql.Config {
	mc := mysql.NewConfig()
	mc.Net = "tcp"
	mc.Addr = net.JoinHostPort(cfg.DBHost, strconv.Itoa(cfg.DBPort))
	mc.User = cfg.DBUser
	mc.Passwd = cfg.DBPassword
	mc.DBName = cfg.DBName
	applySessionSettings(mc, cfg.DBTimeout)
	return mc
}

// applySessionSettings sets what every connection of the service needs,
// whatever server it talks to: UTC timestamps, a pinned time zone, SQL mode
// and collation, matched-rows counts, and I/O deadlines so a black-holed
// server cannot hang a connection forever.
func applySessionSettings(mc *mysql.Config, timeout time.Duration) {
	mc.ParseTime = true
	mc.Loc = time.UTC
	mc.Collation = "utf8mb4_unicode_ci"
	mc.ClientFoundRows = true // UPDATE reports matched rows: 0 means not found
	// Queries with arguments go out in one round trip, the arguments
	// escaped into the text by the driver (safe with utf8mb4), instead of
	// prepare + execute + close: measured, a point select takes half the
	// time. The hottest statement is held prepared instead (Store.userAs),
	// which also spares the server parsing it.
	mc.InterpolateParams = true
	mc.Timeout = timeout
	mc.ReadTimeout = 2 * timeout
	mc.WriteTimeout = 2 * timeout
	if mc.Params == nil {
		mc.Params = map[string]string{}
	}
	mc.Params["time_zone"] = "'+00:00'"
	mc.Params["sql_mode"] = sessionSQLMode
}

// openDB opens a pool on mc with the configured limits. It does not
// connect: the service starts even while the database is down.
func openDB(mc *mysql.Config, cfg Config) (*sql.DB, error) {
	connector, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(cfg.DBMaxOpenConns)
	db.SetMaxIdleConns(cfg.DBMaxIdleConns)
	db.SetConnMaxLifetime(cfg.DBConnMaxLifetime)
	return db, nil
}

// Store keeps users in MySQL. Every method bounds its database work by
// the store's timeout, on top of the caller's context.
type Store struct {
	db      *sql.DB
	timeout time.Duration

	schemaApplied atomic.Bool
	schemaLock    chan struct{} // a mutex that respects contexts

	// statements holds the read statements prepared so far, by their text.
	statements   map[string]*sql.Stmt
	statementsMu sync.Mutex
}

// maxPreparedStatements bounds the statements a store keeps prepared. The
// list's statements vary with its filters, sort and paging, but only over
// a few hundred shapes, and a handful are used in practice.
const maxPreparedStatements = 128

// prepared returns query prepared on the server, preparing it on first
// use: each call then sends only the arguments (binary protocol) and
// spares the server parsing the text, which made reads 15-25% faster
// than interpolated text here. Past maxPreparedStatements it returns nil,
// and the caller sends the query as text.
func (s *Store) prepared(ctx context.Context, query string) (*sql.Stmt, error) {
	s.statementsMu.Lock()
	defer s.statementsMu.Unlock()
	if stmt, ok := s.statements[query]; ok {
		return stmt, nil
	}
	if len(s.statements) >= maxPreparedStatements {
		return nil, nil
	}
	stmt, err := s.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err) // the caller classifies it
	}
	s.statements[query] = stmt
	return stmt, nil
}

// bounded makes the database itself stop the SELECT query after the
// store's timeout. Cancelling the request's context only drops the
// connection: the server would go on scanning, say, a deep OFFSET page
// for no one. MySQL reads the MAX_EXECUTION_TIME hint and ignores the
// MariaDB-only comment; MariaDB runs the comment (SET STATEMENT
// max_statement_time) and ignores the hint. Either answers an
// interrupted query with an error that dbError maps to 503.
func (s *Store) bounded(query string) string {
	rest, ok := strings.CutPrefix(query, "SELECT ")
	if !ok {
		return query
	}
	return fmt.Sprintf("/*M!100301 SET STATEMENT max_statement_time=%g FOR */ SELECT /*+ MAX_EXECUTION_TIME(%d) */ %s",
		s.timeout.Seconds(), s.timeout.Milliseconds(), rest)
}

// queryRows runs a read through its prepared statement when it has one.
func (s *Store) queryRows(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	stmt, err := s.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	if stmt == nil {
		return s.db.QueryContext(ctx, query, args...)
	}
	return stmt.QueryContext(ctx, args...)
}

// queryRow is queryRows for a single row.
func (s *Store) queryRow(ctx context.Context, query string, args ...any) (*sql.Row, error) {
	stmt, err := s.prepared(ctx, query)
	if err != nil {
		return nil, err
	}
	if stmt == nil {
		return s.db.QueryRowContext(ctx, query, args...), nil
	}
	return stmt.QueryRowContext(ctx, args...), nil
}

// NewStore returns a store on db. The schema is applied on first use.
func NewStore(db *sql.DB, timeout time.Duration) *Store {
	return &Store{db: db, timeout: timeout, schemaLock: make(chan struct{}, 1), statements: map[string]*sql.Stmt{}}
}

// userColumns are the columns scanned by scanUser, in order.
const userColumns = "id, username, email, full_name, role, is_active, created_at, updated_at, version"

type rowScanner interface{ Scan(dest ...any) error }

func scanUser(row rowScanner) (User, error) {
	var u User
	var fullName sql.NullString
	err := row.Scan(&u.ID, &u.Username, &u.Email, &fullName, &u.Role, &u.IsActive, &u.CreatedAt, &u.UpdatedAt, &u.Version)
	if fullName.Valid {
		u.FullName = &fullName.String
	}
	return u, err
}

// begin prepares a call: it bounds ctx by the store's timeout and makes
// sure the schema is in place.
func (s *Store) begin(ctx context.Context) (context.Context, context.CancelFunc, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	if err := s.EnsureSchema(ctx); err != nil {
		cancel()
		return nil, nil, err
	}
	return ctx, cancel, nil
}

// inTx runs fn in a transaction, the one shape every write has: bounded by
// the store's timeout, BeginTx, work, Commit, and a rollback on any error.
func (s *Store) inTx(ctx context.Context, op string, fn func(ctx context.Context, tx *sql.Tx) error) error {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return dbError(op+": begin", err)
	}
	defer tx.Rollback()
	if err := fn(ctx, tx); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return dbError(op+": commit", err)
	}
	return nil
}

// EnsureSchema applies schema.sql once per process. Until it succeeds,
// every call tries again, so the service heals when the database appears.
func (s *Store) EnsureSchema(ctx context.Context) error {
	if s.schemaApplied.Load() {
		return nil
	}
	select {
	case s.schemaLock <- struct{}{}:
		defer func() { <-s.schemaLock }()
	case <-ctx.Done():
		return dbError("apply schema", ctx.Err())
	}
	if s.schemaApplied.Load() {
		return nil
	}
	for _, stmt := range splitSQL(schemaSQL) {
		if _, err := s.db.ExecContext(ctx, stmt); err != nil {
			return dbError("apply schema", err)
		}
	}
	if err := s.initUserCount(ctx); err != nil {
		return err
	}
	s.schemaApplied.Store(true)
	return nil
}

// initUserCount seeds the user count from the users table when the count
// has no rows (a new database, or users restored without their count).
// The locking read of the empty count table blocks concurrent creates and
// deletes until the seed commits, so none is counted twice or missed.
func (s *Store) initUserCount(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return dbError("init user count: begin", err)
	}
	defer tx.Rollback()
	var slots int
	if err := tx.QueryRowContext(ctx, "SELECT COUNT(*) FROM user_counts FOR UPDATE").Scan(&slots); err != nil {
		return dbError("init user count", err)
	}
	if slots > 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, "INSERT INTO user_counts (slot, n) SELECT 0, COUNT(*) FROM users"); err != nil {
		return dbError("init user count", err)
	}
	if err := tx.Commit(); err != nil {
		return dbError("init user count: commit", err)
	}
	return nil
}

// splitSQL splits a script into statements at semicolons that end a line,
// dropping comment lines. It is enough for schema.sql, which we write.
func splitSQL(script string) []string {
	var stmts []string
	var current strings.Builder
	for _, line := range strings.Split(script, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "--") {
			continue
		}
		current.WriteString(line)
		current.WriteByte('\n')
		if strings.HasSuffix(trimmed, ";") {
			stmts = append(stmts, strings.TrimSuffix(strings.TrimSpace(current.String()), ";"))
			current.Reset()
		}
	}
	if rest := strings.TrimSpace(current.String()); rest != "" {
		stmts = append(stmts, rest)
	}
	return stmts
}

// Stats returns the connection pool's statistics.
func (s *Store) Stats() sql.DBStats { return s.db.Stats() }

// Ready checks that the database answers and holds the schema.
func (s *Store) Ready(ctx context.Context) error {
	if err := s.EnsureSchema(ctx); err != nil {
		return err
	}
	var one int
	if err := s.db.QueryRowContext(ctx, "SELECT 1 FROM users LIMIT 1").Scan(&one); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return dbError("ready", err)
	}
	return nil
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return dbError("ping", err)
	}
	return nil
}

// CreateUser inserts u and returns it as stored. A taken username or email
// is a *ConflictError: the unique indexes decide, so concurrent creates of
// one name cannot both succeed. With an idempotency key, the response
// that answer renders is recorded under the key in the same transaction:
// the user and the record of its creation exist together or not at all.
func (s *Store) CreateUser(ctx context.Context, u NewUser, key *idempotencyKey, answer func(User) *storedResponse) (User, error) {
	var created User
	err := s.inTx(ctx, "create user", func(ctx context.Context, tx *sql.Tx) error {
		id, err := insertUser(ctx, tx, u)
		if err != nil {
			return err
		}
		// Read the row back for the server-set timestamps: MySQL has no
		// INSERT ... RETURNING.
		if created, err = s.getUser(ctx, tx, id); err != nil {
			return err
		}
		if key != nil {
			return completeIdempotencyKey(ctx, tx, *key, answer(created))
		}
		return nil
	})
	return created, err
}

// insertUser inserts u and counts it, inside tx, and returns its id.
func insertUser(ctx context.Context, tx *sql.Tx, u NewUser) (int64, error) {
	res, err := tx.ExecContext(ctx,
		"INSERT INTO users (username, email, password_hash, full_name, role, is_active) VALUES (?, ?, ?, ?, ?, ?)",
		u.Username, u.Email, u.PasswordHash, u.FullName, u.Role, u.IsActive)
	if err != nil {
		return 0, dbError("create user", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, dbError("create user: last insert id", err)
	}
	return id, addToUserCount(ctx, tx, 1)
}

// userCountSlots is how many rows the user count is spread over.
const userCountSlots = 8

// addToUserCount adds delta to one slot of the user count, inside the
// transaction that inserts or deletes the user.
func addToUserCount(ctx context.Context, tx *sql.Tx, delta int) error {
	_, err := tx.ExecContext(ctx,
		"INSERT INTO user_counts (slot, n) VALUES (?, ?) ON DUPLICATE KEY UPDATE n = n + ?",
		rand.IntN(userCountSlots), delta, delta)
	if err != nil {
		return dbError("count users", err)
	}
	return nil
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (s *Store) getUser(ctx context.Context, q queryer, id int64) (User, error) {
	u, err := scanUser(q.QueryRowContext(ctx, "SELECT "+userColumns+" FROM users WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, ErrNotFound
	}
	if err != nil {
		return User{}, dbError("get user", err)
	}
	return u, nil
}

// validTokenSQL is the condition that makes the token row t valid.
const validTokenSQL = " WHERE t.token_hash = ? AND t.expires_at > NOW(6)"

// callerAndUserSQL authenticates a token and reads one user in a single
// statement: a row comes back only for a valid token (the caller's id and
// role first), with the user's columns NULL when no user has the id.
const callerAndUserSQL = "SELECT t.user_id, t.role, " + "u.id, u.username, u.email, u.full_name, u.role, u.is_active, u.created_at, u.updated_at, u.version" +
	" FROM auth_tokens t LEFT JOIN users u ON u.id = IF(? = 0, t.user_id, ?)" + validTokenSQL

// UserAs authenticates the token and reads the user with the given id (0
// for the caller) in one round trip. The user is nil when none has the
// id; the caller must still be checked for the right to see it.
func (s *Store) UserAs(ctx context.Context, tokenHash []byte, id int64) (*Caller, *User, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer cancel()
	caller := &Caller{TokenHash: tokenHash}
	var u nullableUser
	row, err := s.queryRow(ctx, callerAndUserSQL, id, id, tokenHash)
	if err != nil {
		return nil, nil, dbError("get user", err)
	}
	err = row.Scan(append([]any{&caller.ID, &caller.Role}, u.fields()...)...)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, ErrUnauthenticated
	}
	if err != nil {
		return nil, nil, dbError("get user", err)
	}
	if user, ok := u.user(); ok {
		return caller, &user, nil
	}
	return caller, nil, nil
}

// ListUsersAs authenticates the token and reads one page of the list with
// its exact unfiltered total, in one statement (see listQuery.pageSQL).
// Only an empty page needs a second statement, to tell a valid token from
// an invalid one; a filtered total (capped at maxFilteredCount rows) is
// another. The caller must still be checked for the right to list; for
// one who may not, the page read is simply discarded.
func (s *Store) ListUsersAs(ctx context.Context, tokenHash []byte, q listQuery) (*Caller, listPage, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, listPage{}, err
	}
	defer cancel()
	stmt, args := q.pageSQL(tokenHash)
	rows, err := s.queryRows(ctx, s.bounded(stmt), args...)
	if err != nil {
		return nil, listPage{}, dbError("list users", err)
	}
	defer rows.Close()
	caller := &Caller{TokenHash: tokenHash}
	page := listPage{Users: make([]User, 0, q.PerPage+1)}
	for rows.Next() {
		var u User
		var fullName sql.NullString
		err := rows.Scan(&caller.ID, &caller.Role, &page.Total,
			&u.ID, &u.Username, &u.Email, &fullName, &u.Role, &u.IsActive, &u.CreatedAt, &u.UpdatedAt, &u.Version)
		if err != nil {
			return nil, listPage{}, dbError("list users: scan", err)
		}
		if fullName.Valid {
			u.FullName = &fullName.String
		}
		page.Users = append(page.Users, u)
	}
	if err := rows.Err(); err != nil {
		return nil, listPage{}, dbError("list users", err)
	}
	if len(page.Users) == 0 {
		err := s.db.QueryRowContext(ctx,
			"SELECT t.user_id, t.role, (SELECT COALESCE(SUM(n), 0) FROM user_counts) FROM auth_tokens t"+validTokenSQL, tokenHash).
			Scan(&caller.ID, &caller.Role, &page.Total)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, listPage{}, ErrUnauthenticated
		}
		if err != nil {
			return nil, listPage{}, dbError("list users: authenticate", err)
		}
	}
	if int64(len(page.Users)) > q.PerPage {
		page.Users, page.HasMore = page.Users[:q.PerPage], true
	}
	if q.filtered() && caller.isAdmin() {
		stmt, args := q.countSQL()
		if err := s.db.QueryRowContext(ctx, s.bounded(stmt), args...).Scan(&page.Total); err != nil {
			return nil, listPage{}, dbError("list users: count", err)
		}
		if page.Total > maxFilteredCount {
			page.Total, page.Estimate = maxFilteredCount, true
		}
	}
	return caller, page, nil
}

// nullableUser scans a user from a LEFT JOIN, where every column may be
// NULL.
type nullableUser struct {
	id               sql.NullInt64
	username, email  sql.NullString
	fullName, role   sql.NullString
	active           sql.NullBool
	created, updated sql.NullTime
	version          sql.NullInt64
}

func (n *nullableUser) fields() []any {
	return []any{&n.id, &n.username, &n.email, &n.fullName, &n.role, &n.active, &n.created, &n.updated, &n.version}
}

// user returns the scanned user, or false when the join found none.
func (n *nullableUser) user() (User, bool) {
	if !n.id.Valid {
		return User{}, false
	}
	u := User{ID: n.id.Int64, Username: n.username.String, Email: n.email.String, Role: Role(n.role.String),
		IsActive: n.active.Bool, CreatedAt: n.created.Time, UpdatedAt: n.updated.Time, Version: n.version.Int64}
	if n.fullName.Valid {
		u.FullName = &n.fullName.String
	}
	return u, true
}

// UpdateUser applies changes to the user with the given id in one
// transaction: it locks the row, checks changes.Precondition against its
// version (If-Match: the check and the write cannot be split by another
// writer), refuses to leave no active admin, writes and bumps the version,
// revokes all the user's tokens when the password, role or active flag
// changes, and reads the result back. When changes.ExpectPasswordHash is
// set, the update happens only if the stored hash is still that one (the
// current password was checked against it). Bumping the version changes
// the row, so updated_at moves by its ON UPDATE clause on every update.
func (s *Store) UpdateUser(ctx context.Context, id int64, changes UserChanges) (User, error) {
	var updated User
	err := s.inTx(ctx, "update user", func(ctx context.Context, tx *sql.Tx) error {
		cur, err := lockUser(ctx, tx, id)
		if err != nil {
			return err
		}
		if changes.Precondition != nil && !changes.Precondition(cur.version) {
			return ErrPreconditionFailed
		}
		if changes.ExpectPasswordHash != "" && cur.passwordHash != changes.ExpectPasswordHash {
			return &stateConflictError{detail: "The password changed while this request ran; try again."}
		}
		if cur.isActiveAdmin() && changes.removesAdmin() {
			if err := ensureOtherActiveAdmin(ctx, tx, id); err != nil {
				return err
			}
		}
		set, args := changes.assignments()
		if _, err := tx.ExecContext(ctx, "UPDATE users SET "+set+" WHERE id = ?", append(args, id)...); err != nil {
			return dbError("update user", err)
		}
		if changes.revokesTokens(cur) {
			if _, err := tx.ExecContext(ctx, "DELETE FROM auth_tokens WHERE user_id = ?", id); err != nil {
				return dbError("update user: revoke tokens", err)
			}
		}
		updated, err = s.getUser(ctx, tx, id)
		return err
	})
	return updated, err
}

// lockedUser is what the rules of an update or delete need to know of the
// row they lock.
type lockedUser struct {
	role         Role
	isActive     bool
	passwordHash string
	version      int64
}

func (u lockedUser) isActiveAdmin() bool { return u.role == RoleAdmin && u.isActive }

// lockUser reads the user's row FOR UPDATE, so no other transaction can
// change it before this one ends.
func lockUser(ctx context.Context, tx *sql.Tx, id int64) (lockedUser, error) {
	var u lockedUser
	err := tx.QueryRowContext(ctx, "SELECT role, is_active, password_hash, version FROM users WHERE id = ? FOR UPDATE", id).
		Scan(&u.role, &u.isActive, &u.passwordHash, &u.version)
	if errors.Is(err, sql.ErrNoRows) {
		return lockedUser{}, ErrNotFound
	}
	if err != nil {
		return lockedUser{}, dbError("lock user", err)
	}
	return u, nil
}

// ensureOtherActiveAdmin returns ErrLastAdmin unless an active admin other
// than id exists, and locks that admin's row so it cannot be demoted by a
// concurrent transaction until this one ends. Two transactions demoting
// the last two admins lock each other's rows: the database picks one as
// a deadlock victim (a 503 to retry) and the survivor sees the truth.
func ensureOtherActiveAdmin(ctx context.Context, tx *sql.Tx, id int64) error {
	var other int64
	err := tx.QueryRowContext(ctx,
		"SELECT id FROM users WHERE role = 'admin' AND is_active = TRUE AND id <> ? LIMIT 1 FOR UPDATE", id).Scan(&other)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrLastAdmin
	}
	if err != nil {
		return dbError("find another admin", err)
	}
	return nil
}

// assignments returns the SET clause for the changed columns and its
// arguments. Column names are constants here, never client input.
func (c UserChanges) assignments() (string, []any) {
	var cols []string
	var args []any
	add := func(col string, v any) {
		cols = append(cols, col+" = ?")
		args = append(args, v)
	}
	if c.Username != nil {
		add("username", *c.Username)
	}
	if c.Email != nil {
		add("email", *c.Email)
	}
	if c.PasswordHash != nil {
		add("password_hash", *c.PasswordHash)
	}
	if c.SetFullName {
		add("full_name", c.FullName)
	}
	if c.Role != nil {
		add("role", *c.Role)
	}
	if c.IsActive != nil {
		add("is_active", *c.IsActive)
	}
	cols = append(cols, "version = version + 1")
	return strings.Join(cols, ", "), args
}

// DeleteUser deletes the user with the given id, or returns ErrNotFound.
// The last active admin cannot be deleted. The user's tokens go with it
// (ON DELETE CASCADE). A non-nil precondition is checked against the
// user's version under the row lock: false is ErrPreconditionFailed.
func (s *Store) DeleteUser(ctx context.Context, id int64, precondition func(version int64) bool) error {
	return s.inTx(ctx, "delete user", func(ctx context.Context, tx *sql.Tx) error {
		cur, err := lockUser(ctx, tx, id)
		if err != nil {
			return err
		}
		if precondition != nil && !precondition(cur.version) {
			return ErrPreconditionFailed
		}
		if cur.isActiveAdmin() {
			if err := ensureOtherActiveAdmin(ctx, tx, id); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM users WHERE id = ?", id); err != nil {
			return dbError("delete user", err)
		}
		return addToUserCount(ctx, tx, -1)
	})
}

// Credentials are what a login checks.
type Credentials struct {
	UserID       int64
	IsActive     bool
	PasswordHash string
}

// CredentialsFor finds a user by username, or by email when login holds an
// '@' (usernames cannot), and returns ErrNotFound when none matches.
func (s *Store) CredentialsFor(ctx context.Context, login string) (Credentials, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return Credentials{}, err
	}
	defer cancel()
	column := "username"
	if strings.Contains(login, "@") {
		column, login = "email", strings.ToLower(login)
	}
	var c Credentials
	err = s.db.QueryRowContext(ctx, "SELECT id, is_active, password_hash FROM users WHERE "+column+" = ?", login).
		Scan(&c.UserID, &c.IsActive, &c.PasswordHash)
	if errors.Is(err, sql.ErrNoRows) {
		return Credentials{}, ErrNotFound
	}
	if err != nil {
		return Credentials{}, dbError("find credentials", err)
	}
	return c, nil
}

// UserWithPasswordHash returns the user and its stored hash, for checks
// that need both (the current password, a password equal to the username).
func (s *Store) UserWithPasswordHash(ctx context.Context, id int64) (User, string, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return User{}, "", err
	}
	defer cancel()
	var u User
	var fullName sql.NullString
	var hash string
	err = s.db.QueryRowContext(ctx, "SELECT "+userColumns+", password_hash FROM users WHERE id = ?", id).
		Scan(&u.ID, &u.Username, &u.Email, &fullName, &u.Role, &u.IsActive, &u.CreatedAt, &u.UpdatedAt, &u.Version, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return User{}, "", ErrNotFound
	}
	if err != nil {
		return User{}, "", dbError("get user", err)
	}
	if fullName.Valid {
		u.FullName = &fullName.String
	}
	return u, hash, nil
}

// CreateToken stores the hash of a new token for the user, valid for ttl,
// with the user's role, and drops the user's expired tokens. It reads the
// user's row with a shared lock, so a concurrent password, role or active
// change either comes first (and no token is issued for the old password,
// or the token gets the new role) or comes after and deletes the token: a
// token row never outlives the state it was issued for. It returns
// ErrUnauthenticated for a user who is gone, inactive, or whose password
// is no longer the one (passwordHash) the login checked.
func (s *Store) CreateToken(ctx context.Context, userID int64, passwordHash string, tokenHash []byte, ttl time.Duration) error {
	return s.inTx(ctx, "create token", func(ctx context.Context, tx *sql.Tx) error {
		var role Role
		err := tx.QueryRowContext(ctx,
			"SELECT role FROM users WHERE id = ? AND is_active = TRUE AND password_hash = ? LOCK IN SHARE MODE",
			userID, passwordHash).Scan(&role)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrUnauthenticated
		}
		if err != nil {
			return dbError("create token: read user", err)
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM auth_tokens WHERE user_id = ? AND expires_at <= NOW(6)", userID); err != nil {
			return dbError("create token: purge expired", err)
		}
		_, err = tx.ExecContext(ctx,
			"INSERT INTO auth_tokens (token_hash, user_id, role, expires_at) VALUES (?, ?, ?, NOW(6) + INTERVAL ? MICROSECOND)",
			tokenHash, userID, role, ttl.Microseconds())
		if err != nil {
			return dbError("create token", err)
		}
		return nil
	})
}

// Authenticate returns the user holding the unexpired token with this
// hash, or ErrUnauthenticated. (Only active users hold tokens.)
func (s *Store) Authenticate(ctx context.Context, tokenHash []byte) (*Caller, error) {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return nil, err
	}
	defer cancel()
	c := &Caller{TokenHash: tokenHash}
	err = s.db.QueryRowContext(ctx, "SELECT t.user_id, t.role FROM auth_tokens t"+validTokenSQL, tokenHash).
		Scan(&c.ID, &c.Role)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrUnauthenticated
	}
	if err != nil {
		return nil, dbError("authenticate", err)
	}
	return c, nil
}

// RevokeToken deletes one token: a logout.
func (s *Store) RevokeToken(ctx context.Context, tokenHash []byte) error {
	ctx, cancel, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if _, err := s.db.ExecContext(ctx, "DELETE FROM auth_tokens WHERE token_hash = ?", tokenHash); err != nil {
		return dbError("revoke token", err)
	}
	return nil
}

// BootstrapAdmin creates u, an admin, unless an active admin exists. It
// reports whether it created one. Replicas starting together may race:
// the unique indexes let one win, and the others find its admin.
func (s *Store) BootstrapAdmin(ctx context.Context, u NewUser) (bool, error) {
	created := false
	err := s.inTx(ctx, "bootstrap admin", func(ctx context.Context, tx *sql.Tx) error {
		var id int64
		err := tx.QueryRowContext(ctx, "SELECT id FROM users WHERE role = 'admin' AND is_active = TRUE LIMIT 1 FOR UPDATE").Scan(&id)
		if err == nil {
			return nil // an active admin exists
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return dbError("bootstrap admin: find admin", err)
		}
		u.Role, u.IsActive = RoleAdmin, true
		if _, err := insertUser(ctx, tx, u); err != nil {
			return err
		}
		created = true
		return nil
	})
	return created && err == nil, err
}
