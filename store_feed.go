package main

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"slices"
	"strconv"
	"strings"
)

// The read side of the feed: a page, and what a consumer needs to judge
// its cursor by, read in one statement.

// eventColumns are an event's columns as ListEvents reads them.
const eventColumns = "seq, type, occurred_at, user_id, actor_type, actor_id, request_id, client_address, changes"

// The parts of a page statement, told apart by its first column.
const (
	partSequencer = iota // the sequencer's row: pruned_through, last_seq
	partNumbered         // an event of the page, by seq
	partPending          // an event not yet numbered, by pending id
)

// ListEvents reads one page of the feed with the pruning horizon and the
// head (last_seq), and for q.Pending the matching events not yet
// numbered, in one statement: one snapshot. So a page can never start
// past events the pruner deleted while the horizon read says they were
// kept; the head is exactly what the page could have held: the sequencer
// commits each batch with its last_seq, so a snapshot that sees last_seq
// N sees every event numbered up to N; and an event the sequencer moves
// meanwhile is either numbered or pending, never both or neither. The
// sequencer's row is a part of its own (UNION ALL), there even when the
// page is empty. The page's filters each have an index that ends in seq.
//
// (It was once the page as a derived table LEFT JOINed to the sequencer
// row. MariaDB 10.11.19 crashed freeing that derived table's temporary
// table, while a second server on the machine shared its tmpdir. A UNION
// ALL without an ORDER BY of the whole streams its parts, with no
// temporary table, on MariaDB 10.11 and MySQL 8.)
func (s *Store) ListEvents(ctx context.Context, q eventQuery) (eventPage, error) {
	ctx, cancel, err := s.callContext(ctx)
	if err != nil {
		return eventPage{}, err
	}
	defer cancel()
	query, args := listEventsSQL(q)
	page := eventPage{Events: make([]Event, 0, q.PerPage)}
	if err := s.readEvents(ctx, &page, s.bounded(query), args); err != nil {
		return eventPage{}, err
	}
	return page, nil
}

// listEventsSQL is the statement of a page and its arguments: the
// sequencer's row, the page, and for q.Pending up to per_page events not
// yet numbered. Every part has the same columns: its part,
// pruned_through and last_seq, and eventColumns (for a pending event,
// its pending id in place of seq).
func listEventsSQL(q eventQuery) (string, []any) {
	after := int64(0)
	if q.After != nil {
		after = *q.After
	}
	filters, filterArgs := eventFilters(q)
	eventNulls := strings.Repeat(", NULL", strings.Count(eventColumns, ",")+1) // the sequencer's row has no event
	query := "SELECT " + strconv.Itoa(partSequencer) + ", pruned_through, last_seq" + eventNulls +
		" FROM event_sequencer WHERE id = 1" +
		" UNION ALL (SELECT " + strconv.Itoa(partNumbered) + ", NULL, NULL, " + eventColumns + " FROM user_events" +
		where(append([]string{"seq > ?"}, filters...)) + " ORDER BY seq LIMIT ?)"
	args := append(append([]any{after}, filterArgs...), q.PerPage)
	if q.Pending {
		// user_events_pending has no index but its key, so this scans it:
		// it holds only the events committed since the sequencer's last
		// round, a few milliseconds' worth. Should the sequencer stall,
		// the LIMIT still bounds the answer (not the scan).
		query += " UNION ALL (SELECT " + strconv.Itoa(partPending) + ", NULL, NULL, id, " + pendingEventColumns +
			" FROM user_events_pending" + where(filters) + " ORDER BY id LIMIT ?)"
		args = append(append(args, filterArgs...), q.PerPage)
	}
	return query, args
}

// eventFilters are the conditions and arguments of the page's filters.
func eventFilters(q eventQuery) ([]string, []any) {
	var conds []string
	var args []any
	if q.UserID != nil {
		conds, args = append(conds, "user_id = ?"), append(args, *q.UserID)
	}
	if q.ActorID != nil {
		// actor_id names a user (or a provisioning token): the filter is
		// the acting user's.
		conds, args = append(conds, "actor_id = ? AND actor_type = 'user'"), append(args, *q.ActorID)
	}
	if q.Type != nil {
		conds, args = append(conds, "type = ?"), append(args, string(*q.Type))
	}
	return conds, args
}

// where is the WHERE clause of conds, or nothing without any.
func where(conds []string) string {
	if len(conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conds, " AND ")
}

// feedRow is an event row of a page statement: its part, and its key in
// that part: a seq, or a pending id (the order it will be numbered in).
type feedRow struct {
	part  int
	key   int64
	event Event
}

// readEvents runs a page statement and fills page from its rows. The
// rows of a UNION come in no defined order (a part's ORDER BY only picks
// its rows), so they are sorted here.
func (s *Store) readEvents(ctx context.Context, page *eventPage, query string, args []any) error {
	rows, err := s.queryRows(ctx, query, args...)
	if err != nil {
		return dbError("list events", err)
	}
	defer rows.Close()
	var events []feedRow
	sequencer := false
	for rows.Next() {
		r, err := scanFeedRow(rows, page)
		if err != nil {
			return dbError("list events", err)
		}
		if r.part == partSequencer {
			sequencer = true
		} else {
			events = append(events, r)
		}
	}
	if err := rows.Err(); err != nil {
		return dbError("list events", err)
	}
	if !sequencer {
		return errors.New("list events: the event_sequencer row is missing")
	}
	slices.SortFunc(events, func(a, b feedRow) int { return cmp.Or(cmp.Compare(a.part, b.part), cmp.Compare(a.key, b.key)) })
	for _, r := range events {
		if r.part == partPending {
			page.Pending = append(page.Pending, r.event)
			continue
		}
		r.event.Seq = r.key
		page.Events = append(page.Events, r.event)
	}
	return nil
}

// scanFeedRow scans one row of a page statement. The sequencer's row
// sets page's horizon and head; any other row is an event, returned.
func scanFeedRow(row rowScanner, page *eventPage) (feedRow, error) {
	var (
		r                       feedRow
		pruned, head            sql.NullInt64
		key, userID, actorID    sql.NullInt64
		typ, actorType, changes sql.NullString
		requestID, address      sql.NullString
		at                      sql.NullTime
	)
	if err := row.Scan(&r.part, &pruned, &head, &key, &typ, &at, &userID, &actorType, &actorID, &requestID, &address, &changes); err != nil {
		return feedRow{}, err
	}
	if r.part == partSequencer {
		page.PrunedThrough, page.Head = pruned.Int64, head.Int64
		return r, nil
	}
	r.key = key.Int64
	r.event = Event{Type: EventType(typ.String), Time: at.Time, UserID: userID.Int64,
		Actor: Actor{Type: ActorType(actorType.String), ID: actorID.Int64, RequestID: requestID.String, ClientAddress: address.String}}
	if changes.Valid {
		r.event.Changes = []byte(changes.String)
	}
	return r, nil
}
