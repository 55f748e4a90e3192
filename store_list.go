package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// The list as the store reads it: the request (listQuery, parsed from
// the query string by list.go) and the page (listPage, written as JSON by
// list.go).

// maxFilteredCount caps the rows counted for a filtered total; past it
// the total is reported as a lower bound (total_is_estimate).
const maxFilteredCount = 10_000

// listQuery is a parsed, validated list request.
type listQuery struct {
	Page    int64   // 1-based; 0 when Cursor is used
	Cursor  *cursor // the position to continue after
	PerPage int64
	Sort    string // one of sortColumns
	Desc    bool

	Role          *Role
	IsActive      *bool
	Prefix        string // q: a prefix of the username or the email
	CreatedAfter  *time.Time
	CreatedBefore *time.Time
	UpdatedSince  *time.Time
}

// filtered reports whether the list is narrowed by any filter, so that its
// total needs a count of its own.
func (q listQuery) filtered() bool {
	return q.Role != nil || q.IsActive != nil || q.Prefix != "" ||
		q.CreatedAfter != nil || q.CreatedBefore != nil || q.UpdatedSince != nil
}

// cursor is a position in a sorted list: the sort key and id of the last
// row returned. Clients see it as an opaque string.
type cursor struct {
	Sort  string `json:"s"`
	Key   string `json:"k,omitempty"` // the sort column's value, as text
	ID    int64  `json:"i"`
	value any    // Key parsed for the sort column
}

// listPage is one page of the user list as read from the store.
type listPage struct {
	Users    []User
	Total    int64
	Estimate bool // Total is a lower bound: the filtered count was capped
	HasMore  bool // rows follow the last of Users
}

// ListUsersAs authenticates the token and reads one page of the list with
// its exact unfiltered total, in one statement (see listQuery.pageSQL),
// for a caller whose role is one of readers: the route's access rule, as
// data (access.rolesPermitted). Only an empty page needs a second
// statement, to tell a valid token from an invalid one and a reader from
// anyone else; a filtered total (capped at maxFilteredCount rows) is
// another, for readers only. For any other caller the page statement
// reads nothing, so the work is a token check whatever the query; the
// caller must still be refused by the handler.
func (s *Store) ListUsersAs(ctx context.Context, tokenHash []byte, readers []Role, q listQuery) (*Caller, listPage, error) {
	ctx, cancel, err := s.callContext(ctx)
	if err != nil {
		return nil, listPage{}, err
	}
	defer cancel()
	caller := &Caller{TokenHash: tokenHash}
	page, err := s.readPage(ctx, caller, readers, q)
	if err != nil {
		return nil, listPage{}, err
	}
	if len(page.Users) == 0 {
		err := s.db.QueryRowContext(ctx, s.causal(
			"SELECT t.user_id, t.role, (SELECT COALESCE(SUM(n), 0) FROM user_counts) FROM auth_tokens t WHERE "+tokenValidSQL), tokenHash).
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
	if q.filtered() && slices.Contains(readers, caller.Role) {
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

// readPage runs the page statement, filling in the caller from its
// token row, and returns up to PerPage+1 users with the unfiltered total.
func (s *Store) readPage(ctx context.Context, caller *Caller, readers []Role, q listQuery) (listPage, error) {
	stmt, args := q.pageSQL(caller.TokenHash, readers)
	rows, err := s.queryRows(ctx, s.bounded(stmt), args...)
	if err != nil {
		return listPage{}, dbError("list users", err)
	}
	defer rows.Close()
	page := listPage{Users: make([]User, 0, q.PerPage+1)}
	var u userRow
	dest := append([]any{&caller.ID, &caller.Role, &page.Total}, u.dest()...)
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return listPage{}, dbError("list users: scan", err)
		}
		user, _ := u.user()
		page.Users = append(page.Users, user)
	}
	if err := rows.Err(); err != nil {
		return listPage{}, dbError("list users", err)
	}
	return page, nil
}

// filterSQL returns the WHERE conditions of the filters and their
// arguments. Column names come from constants, values only as arguments.
func (q listQuery) filterSQL() ([]string, []any) {
	var conds []string
	var args []any
	if q.Role != nil {
		conds, args = append(conds, "u.role = ?"), append(args, string(*q.Role))
	}
	if q.IsActive != nil {
		conds, args = append(conds, "u.is_active = ?"), append(args, *q.IsActive)
	}
	if q.Prefix != "" {
		// The collation makes LIKE case-insensitive; each side can use its
		// unique index (an index merge).
		pattern := escapeLike(q.Prefix) + "%"
		conds, args = append(conds, "(u.username LIKE ? OR u.email LIKE ?)"), append(args, pattern, pattern)
	}
	// Times are bound as time.Time: compared as DATETIME(6) on both
	// servers, never as strings (see Store.prepared).
	if q.CreatedAfter != nil {
		conds, args = append(conds, "u.created_at > ?"), append(args, *q.CreatedAfter)
	}
	if q.CreatedBefore != nil {
		conds, args = append(conds, "u.created_at < ?"), append(args, *q.CreatedBefore)
	}
	if q.UpdatedSince != nil {
		conds, args = append(conds, "u.updated_at >= ?"), append(args, *q.UpdatedSince)
	}
	return conds, args
}

// escapeLike escapes LIKE's wildcards (and its escape character) so a
// prefix matches literally.
func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

// pageSQL returns the statement that reads one page, one row more than
// PerPage so that the caller knows whether a next page exists, and checks
// the token at the same time: the valid token row t is joined as a
// constant table (one primary-key lookup), and each row starts with the
// holder's id and role and the exact unfiltered total. The users table
// is aliased u. Only the token row of one of readers passes t.role IN
// (...): for anyone else the server finds the WHERE impossible once it
// has read the constant table, and reads no user at all, whatever the
// filters and page (authorization before any work).
func (q listQuery) pageSQL(tokenHash []byte, readers []Role) (string, []any) {
	filters, filterArgs := q.filterSQL()
	in, roleArgs := inList(roleNames(readers))
	if len(readers) == 0 {
		in = "NULL" // nobody: IN (NULL) is never true
	}
	conds := append([]string{tokenValidSQL, "t.role IN (" + in + ")"}, filters...)
	args := append(append([]any{tokenHash}, roleArgs...), filterArgs...)
	cmp := ">"
	if q.Desc {
		cmp = "<"
	}
	if q.Cursor != nil {
		if q.Sort == "id" {
			conds, args = append(conds, "u.id "+cmp+" ?"), append(args, q.Cursor.ID)
		} else {
			// (col, id) after (v, id0), written so the index on col gives
			// the range: col >= v AND (col > v OR id > id0).
			conds = append(conds, fmt.Sprintf("u.%[1]s %[2]s= ? AND (u.%[1]s %[2]s ? OR u.id %[2]s ?)", q.Sort, cmp))
			args = append(args, q.Cursor.value, q.Cursor.value, q.Cursor.ID)
		}
	}
	stmt := "SELECT t.user_id, t.role, (SELECT COALESCE(SUM(n), 0) FROM user_counts), " + userColumnsU +
		" FROM auth_tokens t JOIN users u WHERE " + strings.Join(conds, " AND ") + " " + q.orderBy() + " LIMIT ?"
	args = append(args, q.PerPage+1)
	if q.Cursor == nil && q.Page > 1 {
		stmt += " OFFSET ?"
		args = append(args, (q.Page-1)*q.PerPage)
	}
	return stmt, args
}

// orderBy is the ORDER BY clause of the list on the alias u: the sort
// column, then id to break ties.
func (q listQuery) orderBy() string {
	dir := " ASC"
	if q.Desc {
		dir = " DESC"
	}
	clause := "ORDER BY "
	if q.Sort != "id" {
		clause += "u." + q.Sort + dir + ", "
	}
	return clause + "u.id" + dir
}

// countSQL counts the filtered rows, stopping past maxFilteredCount.
func (q listQuery) countSQL() (string, []any) {
	conds, args := q.filterSQL()
	return "SELECT COUNT(*) FROM (SELECT 1 FROM users u WHERE " + strings.Join(conds, " AND ") +
		" LIMIT ?) AS capped", append(args, int64(maxFilteredCount+1))
}

// roleNames are the roles as the statements' string arguments.
func roleNames(roles []Role) []string {
	names := make([]string, len(roles))
	for i, r := range roles {
		names[i] = string(r)
	}
	return names
}
