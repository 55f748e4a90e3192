package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"
)

// schemaCollation is the one collation of every table and text column:
// MySQL 8.4 and MariaDB 10.11 both have it (utf8mb4_0900_ai_ci, MySQL's
// default, does not exist on MariaDB).
const schemaCollation = "utf8mb4_unicode_ci"

// schemaTables are the tables schema.sql creates, in its order.
var schemaTables = func() []string {
	var names []string
	for _, m := range regexp.MustCompile(`(?m)^CREATE TABLE IF NOT EXISTS (\w+)`).FindAllStringSubmatch(schemaSQL, -1) {
		names = append(names, m[1])
	}
	return names
}()

// applySchemaSQL runs schema.sql, then, for migrate (convertOldTables),
// converts any of its tables that an older schema, or a server default,
// left in another collation.
func (s *Store) applySchemaSQL(ctx context.Context) error {
	for _, stmt := range splitSQL(schemaSQL) {
		if _, err := s.db.ExecContext(ctx, stmt); err != nil {
			return dbError("apply schema", err)
		}
	}
	if !s.convertOldTables {
		return nil
	}
	return s.convertCollations(ctx)
}

// checkSchema checks, without DDL, that every table of schema.sql exists
// and can be read: a missing one is error 1146 ("schema missing"), an
// unreadable one 1142 ("missing grant").
func (s *Store) checkSchema(ctx context.Context) error {
	for _, table := range schemaTables {
		rows, err := s.db.QueryContext(ctx, "SELECT * FROM "+table+" LIMIT 0")
		if err != nil {
			return dbError("check schema", err)
		}
		rows.Close()
	}
	return nil
}

// tablesInOtherCollations lists the schema's tables whose default
// collation, or that of a text column, is not schemaCollation. Binary
// and numeric columns have no collation (NULL) and never match.
func (s *Store) tablesInOtherCollations(ctx context.Context) ([]string, error) {
	in, tables := inList(schemaTables)
	query := `SELECT t.TABLE_NAME FROM information_schema.TABLES t
		WHERE t.TABLE_SCHEMA = DATABASE()
		AND (t.TABLE_COLLATION <> ? OR EXISTS (SELECT 1 FROM information_schema.COLUMNS c
			WHERE c.TABLE_SCHEMA = t.TABLE_SCHEMA AND c.TABLE_NAME = t.TABLE_NAME AND c.COLLATION_NAME <> ?))
		AND t.TABLE_NAME IN (` + in + `)
		ORDER BY t.TABLE_NAME`
	return readColumn[string](ctx, s.db, "read collations", query, append([]any{schemaCollation, schemaCollation}, tables...)...)
}

// convertCollations converts each table tablesInOtherCollations names,
// so a database created by an older schema, which named no collation,
// ends like a new one. CREATE TABLE IF NOT EXISTS leaves an existing
// table alone, and this runs only where needed: a table already right
// is never rebuilt. Only `usersvc migrate` runs it, never serve: the
// conversion rebuilds the table (it needs ALTER, and on Galera blocks
// the cluster while it runs), which replicas starting together must not
// each do on their own.
func (s *Store) convertCollations(ctx context.Context) error {
	tables, err := s.tablesInOtherCollations(ctx)
	if err != nil {
		return err
	}
	for _, table := range tables {
		stmt := fmt.Sprintf("ALTER TABLE %s CONVERT TO CHARACTER SET utf8mb4 COLLATE %s", table, schemaCollation)
		if _, err := s.db.ExecContext(ctx, stmt); err != nil {
			return dbError("convert "+table+" to "+schemaCollation, err)
		}
	}
	return nil
}

// EnsureSchema applies schema.sql once per process, or with applySchema
// off (SCHEMA_APPLY=false) only checks that its tables exist, running no
// DDL. Until it succeeds, every call tries again, so the service heals
// when the database, or the schema, appears.
func (s *Store) EnsureSchema(ctx context.Context) error {
	if s.schemaApplied.Load() {
		return nil
	}
	select {
	case s.schemaLock <- struct{}{}:
		defer func() { <-s.schemaLock }()
	case <-ctx.Done():
		if !s.applySchema {
			return dbError("check schema", ctx.Err()) // SCHEMA_APPLY=false applies nothing
		}
		return dbError("apply schema", ctx.Err())
	}
	if s.schemaApplied.Load() {
		return nil
	}
	check := s.applySchemaSQL
	if !s.applySchema {
		check = s.checkSchema
	}
	if err := check(ctx); err != nil {
		return err
	}
	// Galera first: the seed's read must then be causal, or a replica
	// starting on another node could miss the seed and add a second one.
	if err := s.detectGalera(ctx); err != nil {
		return err
	}
	if err := s.Retry(ctx, func() error { return s.initUserCount(ctx) }); err != nil {
		return err
	}
	s.schemaApplied.Store(true)
	return nil
}

// initUserCount seeds the user count from the users table when the count
// has no rows (a new database, or users restored without their count).
// The locking read of the empty count table blocks concurrent creates and
// deletes until the seed commits, so none is counted twice or missed. A
// causal read comes first: on Galera it sees a seed another node
// committed (two nodes seeding at once conflict, and the loser runs again
// and sees it), and a seeded count needs no lock.
func (s *Store) initUserCount(ctx context.Context) error {
	var slots int
	if err := s.db.QueryRowContext(ctx, s.causal("SELECT COUNT(*) FROM user_counts")).Scan(&slots); err != nil {
		return dbError("init user count", err)
	}
	if slots > 0 {
		return nil
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return dbError("init user count: begin", err)
	}
	defer tx.Rollback()
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
