package main

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"
)

// The SCIM reads: one user with its externalId, and a page of users a
// SCIM filter selects, with its exact total. A filter (scim_filter.go)
// compiles to a WHERE clause whose text comes from constants here and
// whose every value is an argument.

// scimUserSQL reads users with their externalId; u and x are the
// aliases a compiled filter names.
var scimUserSQL = "SELECT " + userColumnsU + ", COALESCE(x.external_id, '') FROM users u LEFT JOIN user_external_ids x ON x.user_id = u.id"

// SCIMUser reads the user id with its externalId, or ErrNotFound.
func (s *Store) SCIMUser(ctx context.Context, id int64) (SCIMUser, error) {
	u, _, err := s.scimUser(ctx, id, false)
	return u, err
}

// SCIMUserWithPasswordHash is SCIMUser with the stored hash, for an
// update that compares a password with it.
func (s *Store) SCIMUserWithPasswordHash(ctx context.Context, id int64) (SCIMUser, string, error) {
	return s.scimUser(ctx, id, true)
}

// scimUser reads the user id, with its hash when withHash.
func (s *Store) scimUser(ctx context.Context, id int64, withHash bool) (SCIMUser, string, error) {
	ctx, cancel, err := s.callContext(ctx)
	if err != nil {
		return SCIMUser{}, "", err
	}
	defer cancel()
	query, hashExpr := scimUserSQL, "''"
	if withHash {
		hashExpr = "u.password_hash"
	}
	query = strings.Replace(query, " FROM users u", ", "+hashExpr+" FROM users u", 1)
	var external []byte
	var hash string
	u, err := scanUser(s.db.QueryRowContext(ctx, s.causal(query+" WHERE u.id = ?"), id), &external, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return SCIMUser{}, "", ErrNotFound
	}
	if err != nil {
		return SCIMUser{}, "", dbError("get scim user", err)
	}
	return SCIMUser{User: u, ExternalID: string(external)}, hash, nil
}

// SCIMUsers reads the users filter selects (all, when nil), in id order,
// count of them from the 1-based startIndex, and their exact number, in
// one statement: each row carries the total, the user count without a
// filter, a window COUNT(*) of the filter with one. Only a page with no
// row (count 0, or past the end) counts in a statement of its own.
func (s *Store) SCIMUsers(ctx context.Context, filter filterNode, startIndex, count int64) ([]SCIMUser, int64, error) {
	where, args := "TRUE", []any(nil)
	if filter != nil {
		var err error
		if where, args, err = compileFilter(filter, ""); err != nil {
			return nil, 0, err
		}
	}
	ctx, cancel, err := s.callContext(ctx)
	if err != nil {
		return nil, 0, err
	}
	defer cancel()
	users := []SCIMUser{}
	var total int64
	if count > 0 {
		query := scimPageSQL(where, filter != nil)
		if users, total, err = s.scimPage(ctx, query, append(args, count, startIndex-1)); err != nil || len(users) > 0 {
			return users, total, err
		}
	}
	countSQL := "SELECT COALESCE(SUM(n), 0) FROM user_counts"
	if filter != nil {
		countSQL = "SELECT COUNT(*) FROM users u LEFT JOIN user_external_ids x ON x.user_id = u.id WHERE " + where
	}
	if err := s.db.QueryRowContext(ctx, s.bounded(countSQL), args...).Scan(&total); err != nil {
		return nil, 0, dbError("list scim users: count", err)
	}
	return users, total, nil
}

// scimPageSQL is the statement of a page whose rows where selects
// (filtered: by a filter), each with the total; its last two arguments
// are LIMIT and OFFSET.
func scimPageSQL(where string, filtered bool) string {
	total := "(SELECT COALESCE(SUM(n), 0) FROM user_counts)"
	if filtered {
		total = "COUNT(*) OVER ()"
	}
	return strings.Replace(scimUserSQL, " FROM users u", ", "+total+" FROM users u", 1) +
		" WHERE " + where + " ORDER BY u.id LIMIT ? OFFSET ?"
}

// scimPage reads the rows of a page statement, each a user, its
// externalId and the total.
func (s *Store) scimPage(ctx context.Context, query string, args []any) ([]SCIMUser, int64, error) {
	rows, err := s.db.QueryContext(ctx, s.bounded(query), args...)
	if err != nil {
		return nil, 0, dbError("list scim users", err)
	}
	defer rows.Close()
	users := []SCIMUser{}
	var total int64
	for rows.Next() {
		var external []byte
		u, err := scanUser(rows, &external, &total)
		if err != nil {
			return nil, 0, dbError("list scim users", err)
		}
		users = append(users, SCIMUser{User: u, ExternalID: string(external)})
	}
	return users, total, dbError("list scim users", rows.Err())
}

// scimColumn is how a filterable attribute reads in SQL: its column
// expression and kind ("string", "nullable", "bool", "id", "time"), or
// for an attribute every user has with one value (emails.type "work",
// emails.primary true), that constant.
type scimColumn struct {
	expr     string
	kind     string
	constant any
}

// scimColumns are the attributes a filter may name (docs/scim.md).
var scimColumns = map[string]scimColumn{
	"id":                {expr: "u.id", kind: "id"},
	"username":          {expr: "u.username", kind: "string"},
	"externalid":        {expr: "x.external_id", kind: "nullable"},
	"emails":            {expr: "u.email", kind: "string"},
	"emails.value":      {expr: "u.email", kind: "string"},
	"emails.type":       {constant: "work"},
	"emails.primary":    {constant: true},
	"displayname":       {expr: "u.full_name", kind: "nullable"},
	"name.formatted":    {expr: "u.full_name", kind: "nullable"},
	"active":            {expr: "u.is_active", kind: "bool"},
	"roles":             {expr: "u.role", kind: "string"},
	"roles.value":       {expr: "u.role", kind: "string"},
	"roles.primary":     {constant: true},
	"meta.created":      {expr: "u.created_at", kind: "time"},
	"meta.lastmodified": {expr: "u.updated_at", kind: "time"},
}

// compileFilter turns a filter into a WHERE condition and its
// arguments; parent is the attribute of an enclosing value filter.
// Negation is two-valued: NOT COALESCE(..., FALSE), so "not (displayName
// eq x)" selects the users without a displayName too.
func compileFilter(node filterNode, parent string) (string, []any, error) {
	switch n := node.(type) {
	case filterLogic:
		left, largs, err := compileFilter(n.Left, parent)
		if err != nil {
			return "", nil, err
		}
		right, rargs, err := compileFilter(n.Right, parent)
		if err != nil {
			return "", nil, err
		}
		return "(" + left + " " + strings.ToUpper(n.Op) + " " + right + ")", append(largs, rargs...), nil
	case filterNot:
		inner, args, err := compileFilter(n.Inner, parent)
		return "NOT COALESCE(" + inner + ", FALSE)", args, err
	case filterValuePath:
		if parent != "" {
			return "", nil, invalidFilter("a value filter cannot hold another one")
		}
		return compileFilter(n.Inner, n.Attr)
	case filterCompare:
		return compileCompare(n, parent)
	}
	return "", nil, invalidFilter("unknown expression")
}

// compileCompare compiles one comparison.
func compileCompare(c filterCompare, parent string) (string, []any, error) {
	name := c.Path.String()
	if parent != "" {
		if c.Path.Sub != "" {
			return "", nil, invalidFilter("%q is not a sub-attribute of %s", name, parent)
		}
		name = parent + "." + c.Path.Attr
	}
	col, ok := scimColumns[name]
	if !ok {
		return "", nil, invalidFilter("%q cannot be filtered on; see ServiceProviderConfig and docs/scim.md", name)
	}
	if col.constant != nil {
		match, err := evalCompare(filterCompare{Path: attrPath{Attr: "v"}, Op: c.Op, Value: c.Value}, map[string]any{"v": col.constant})
		if err != nil {
			return "", nil, invalidFilter("%s", err.(*SCIMRequestError).Detail)
		}
		return map[bool]string{true: "TRUE", false: "FALSE"}[match], nil, nil
	}
	if c.Op == "pr" || c.Value.Kind == "null" {
		return presence(col, c, name)
	}
	arg, err := filterArg(col, c, name)
	if err != nil {
		return "", nil, err
	}
	switch c.Op {
	case "eq":
		cond, args := equality(col, arg)
		return cond, args, nil
	case "ne":
		cond, args := equality(col, arg)
		return "NOT COALESCE(" + cond + ", FALSE)", args, nil
	case "gt", "ge", "lt", "le":
		op := map[string]string{"gt": ">", "ge": ">=", "lt": "<", "le": "<="}[c.Op]
		return col.expr + " " + op + " ?", []any{arg}, nil
	}
	pattern := escapeLike(c.Value.Str)
	pattern = map[string]string{"co": "%" + pattern + "%", "sw": pattern + "%", "ew": "%" + pattern}[c.Op]
	if col.kind == "nullable" && col.expr == "x.external_id" {
		return col.expr + " LIKE ?", []any{[]byte(pattern)}, nil
	}
	return col.expr + " LIKE ?", []any{pattern}, nil
}

// equality is the condition that the column equals arg. For strings
// the collations pad with spaces ("alice " = "alice"), so the lengths
// must be equal too; the = alone still reads by the column's index.
func equality(col scimColumn, arg any) (string, []any) {
	if col.kind != "string" && col.kind != "nullable" {
		return col.expr + " = ?", []any{arg}
	}
	return "(" + col.expr + " = ? AND CHAR_LENGTH(" + col.expr + ") = CHAR_LENGTH(?))", []any{arg, arg}
}

// presence compiles "pr", "eq null" and "ne null".
func presence(col scimColumn, c filterCompare, name string) (string, []any, error) {
	present := "TRUE"
	if col.kind == "nullable" {
		present = "(" + col.expr + " IS NOT NULL AND " + col.expr + " <> '')"
	}
	switch c.Op {
	case "pr", "ne":
		return present, nil, nil
	case "eq":
		return "NOT " + present, nil, nil
	}
	return "", nil, invalidFilter("%s null needs eq or ne", name)
}

// filterArg is the comparison's value as the column's argument, checked
// against the attribute's kind and the operator.
func filterArg(col scimColumn, c filterCompare, name string) (any, error) {
	v := c.Value
	substring := c.Op == "co" || c.Op == "sw" || c.Op == "ew"
	switch col.kind {
	case "bool":
		if c.Op != "eq" && c.Op != "ne" || v.Kind != "bool" && !(v.Kind == "string" && (strings.EqualFold(v.Str, "true") || strings.EqualFold(v.Str, "false"))) {
			return nil, invalidFilter("%s compares with eq or ne to true or false", name)
		}
		return v.Bool || strings.EqualFold(v.Str, "true"), nil
	case "id":
		if substring || v.Kind != "string" && v.Kind != "number" {
			return nil, invalidFilter("%s compares with eq, ne, gt, ge, lt or le to an id", name)
		}
		id, ok := scimUserID(v.Str)
		switch {
		case !ok && c.Op != "eq" && c.Op != "ne":
			return nil, invalidFilter("%s orders ids, which are decimal digits: %q is none", name, truncate(v.Str, 40))
		case !ok:
			id = 0 // no user has it: eq matches none, ne every user
		}
		return id, nil
	case "time":
		at, err := time.Parse(time.RFC3339Nano, v.Str)
		if v.Kind != "string" || substring || err != nil || at.UTC().Year() < 1000 || at.UTC().Year() > 9999 {
			return nil, invalidFilter("%s compares with eq, ne, gt, ge, lt or le to an RFC 3339 time", name)
		}
		return at.UTC(), nil
	}
	if v.Kind != "string" {
		return nil, invalidFilter("%s compares to a string", name)
	}
	if col.expr == "x.external_id" {
		return []byte(v.Str), nil // case-exact, as the column is binary
	}
	return v.Str, nil
}
