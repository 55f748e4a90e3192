package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Limits of the list endpoint.
const (
	defaultPerPage = 20
	maxPerPage     = 100
	maxQueryLen    = 254
	// maxOffset is the deepest a page number reaches: an OFFSET makes the
	// server read and drop every row before the page. Cursors go deeper
	// at the cost of one page each.
	maxOffset = 10_000
)

// prefixProblem says what is wrong with a trimmed q, or "". Usernames and
// emails are printable ASCII, so a prefix of anything else matches no one
// literally, and some other characters (controls, ignorables) are equal
// to nothing under the collation, which would turn the prefix search
// into a scan.
func prefixProblem(s string) string {
	if s == "" || len(s) > maxQueryLen {
		return "must be 1 to 254 characters"
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return "must be printable ASCII, as usernames and emails are"
		}
	}
	return ""
}

// sortColumns are the columns a list may be sorted by; every one is
// indexed, and id breaks ties.
var sortColumns = []string{"id", "username", "email", "created_at", "updated_at"}

// listParams are the query parameters the list accepts.
var listParams = []string{"page", "per_page", "cursor", "sort", "role", "is_active", "q", "created_after", "created_before", "updated_since"}

// parseListQuery reads the list's query parameters, reporting every
// problem at once. Unknown or repeated parameters are errors too: a
// misspelt "per_pag" must not silently give the default.
func parseListQuery(values url.Values) (listQuery, error) {
	q := listQuery{Page: 1, PerPage: defaultPerPage, Sort: "id"}
	var errs fieldErrors
	one := newQueryParams(values, listParams, &errs).one
	if v, ok := one("page"); ok {
		if n, valid := parsePositiveInt(v); valid {
			q.Page = n
		} else {
			errs.add("page", "must be a positive integer")
		}
	}
	if v, ok := one("per_page"); ok {
		if n, valid := parsePositiveInt(v); valid && n <= maxPerPage {
			q.PerPage = n
		} else {
			errs.add("per_page", "must be an integer from 1 to 100")
		}
	}
	if v, ok := one("sort"); ok {
		col, desc := strings.CutPrefix(v, "-")
		if slices.Contains(sortColumns, col) {
			q.Sort, q.Desc = col, desc
		} else {
			errs.add("sort", "must be one of id, username, email, created_at, updated_at, optionally prefixed by - for descending")
		}
	}
	if v, ok := one("role"); ok {
		if role := Role(v); role == RoleAdmin || role == RoleUser {
			q.Role = &role
		} else {
			errs.add("role", `must be "admin" or "user"`)
		}
	}
	if v, ok := one("is_active"); ok {
		switch v {
		case "true", "false":
			active := v == "true"
			q.IsActive = &active
		default:
			errs.add("is_active", "must be true or false")
		}
	}
	if v, ok := one("q"); ok {
		if msg := prefixProblem(strings.TrimSpace(v)); msg != "" {
			errs.add("q", msg)
		} else {
			q.Prefix = strings.TrimSpace(v)
		}
	}
	q.CreatedAfter = parseTimeParam(one, "created_after", &errs)
	q.CreatedBefore = parseTimeParam(one, "created_before", &errs)
	q.UpdatedSince = parseTimeParam(one, "updated_since", &errs)
	if v, ok := one("cursor"); ok {
		c, err := decodeCursor(v, q.Sort, q.Desc)
		switch {
		case err != nil:
			errs.add("cursor", err.Error())
		case values.Has("page"):
			errs.add("cursor", "cannot be combined with page")
		default:
			q.Cursor, q.Page = &c, 0
		}
	}
	if len(errs) == 0 && q.Page > 0 && (q.Page-1) > maxOffset/q.PerPage {
		errs.add("page", fmt.Sprintf("goes past the first %d users; walk further with cursor (next_cursor) instead", maxOffset))
	}
	if len(errs) > 0 {
		return listQuery{}, badRequest("The query parameters are not valid.", errs...)
	}
	return q, nil
}

// parseTimeParam reads an RFC 3339 timestamp parameter.
func parseTimeParam(one func(string) (string, bool), name string, errs *fieldErrors) *time.Time {
	v, ok := one(name)
	if !ok {
		return nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil || !storableTime(t) {
		errs.add(name, "must be an RFC 3339 timestamp from the year 1000 to 9999, such as 2026-11-30T09:24:34Z")
		return nil
	}
	t = t.UTC()
	return &t
}

// storableTime reports whether t, in UTC, lies in DATETIME's range.
func storableTime(t time.Time) bool {
	year := t.UTC().Year()
	return year >= 1000 && year <= 9999
}

// cursorAfter returns the cursor that continues after u.
func cursorAfter(u *User, sort string, desc bool) string {
	c := cursor{Sort: sortParam(sort, desc), ID: u.ID}
	switch sort {
	case "username":
		c.Key = u.Username
	case "email":
		c.Key = u.Email
	case "created_at":
		c.Key = u.CreatedAt.UTC().Format(time.RFC3339Nano)
	case "updated_at":
		c.Key = u.UpdatedAt.UTC().Format(time.RFC3339Nano)
	}
	b, _ := json.Marshal(c) // strings and an int: always encodes
	return base64.RawURLEncoding.EncodeToString(b)
}

// decodeCursor parses a cursor made for the list sorted by sort.
func decodeCursor(s, sort string, desc bool) (cursor, error) {
	invalid := fmt.Errorf("is not a cursor this service made")
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(s) > 1024 {
		return cursor{}, invalid
	}
	var c cursor
	if err := json.Unmarshal(raw, &c); err != nil || c.ID < 0 {
		return cursor{}, invalid
	}
	col, _ := strings.CutPrefix(c.Sort, "-")
	if !slices.Contains(sortColumns, col) {
		return cursor{}, invalid
	}
	if c.Sort != sortParam(sort, desc) {
		return cursor{}, fmt.Errorf("was made for sort=%s; send the same sort with it", c.Sort)
	}
	switch col {
	case "username", "email":
		c.value = c.Key
	case "created_at", "updated_at":
		t, err := time.Parse(time.RFC3339Nano, c.Key)
		if err != nil || !storableTime(t) {
			return cursor{}, invalid
		}
		c.value = t.UTC()
	}
	return c, nil
}

func sortParam(col string, desc bool) string {
	if desc {
		return "-" + col
	}
	return col
}

// nextCursor is the cursor after the page's last user, or "" at the end.
func (p *listPage) nextCursor(q listQuery) string {
	if !p.HasMore || len(p.Users) == 0 {
		return ""
	}
	return cursorAfter(&p.Users[len(p.Users)-1], q.Sort, q.Desc)
}

func (p *listPage) totalPages(q listQuery) int64 {
	return (p.Total + q.PerPage - 1) / q.PerPage
}

// appendJSON appends the page as the list's JSON body: items, the page
// number (null when walking by cursor), per_page, total, total_pages,
// total_is_estimate and next_cursor (null at the end).
func (p *listPage) appendJSON(b []byte, q listQuery) []byte {
	b = append(b, `{"items":`...)
	b = appendJSONArray(b, p.Users, appendUserJSON)
	b = append(b, `,"page":`...)
	if q.Cursor != nil {
		b = append(b, "null"...)
	} else {
		b = strconv.AppendInt(b, q.Page, 10)
	}
	b = append(b, `,"per_page":`...)
	b = strconv.AppendInt(b, q.PerPage, 10)
	b = append(b, `,"total":`...)
	b = strconv.AppendInt(b, p.Total, 10)
	b = append(b, `,"total_pages":`...)
	b = strconv.AppendInt(b, p.totalPages(q), 10)
	b = append(b, `,"total_is_estimate":`...)
	b = strconv.AppendBool(b, p.Estimate)
	b = append(b, `,"next_cursor":`...)
	if next := p.nextCursor(q); next != "" {
		b = appendJSONString(b, next)
	} else {
		b = append(b, "null"...)
	}
	return append(b, '}')
}

// links builds the RFC 8288 Link header, keeping the request's filters and
// sort. By page: first, prev, next and last where they exist (an empty
// list still has a first and a last page: page 1). By cursor: first, and
// next by cursor. values are the request's parameters, which it changes.
func (p *listPage) links(path string, values url.Values, q listQuery) string {
	values.Set("per_page", strconv.FormatInt(q.PerPage, 10))
	link := func(rel, param, value string) string {
		values.Del("page")
		values.Del("cursor")
		values.Set(param, value)
		return "<" + path + "?" + values.Encode() + `>; rel="` + rel + `"`
	}
	page := func(rel string, n int64) string { return link(rel, "page", strconv.FormatInt(n, 10)) }
	links := []string{page("first", 1)}
	if q.Cursor != nil {
		if next := p.nextCursor(q); next != "" {
			links = append(links, link("next", "cursor", next))
		}
		return strings.Join(links, ", ")
	}
	lastPage := max(p.totalPages(q), 1)
	if q.Page > 1 {
		links = append(links, page("prev", min(q.Page-1, lastPage)))
	}
	if q.Page < p.totalPages(q) {
		links = append(links, page("next", q.Page+1))
	}
	links = append(links, page("last", lastPage))
	return strings.Join(links, ", ")
}
