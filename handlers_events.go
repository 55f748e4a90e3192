package main

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// actor is who makes the change r asks for: the signed-in caller, or an
// anonymous one (a sign-up), with the request's id and client address.
func (s *server) actor(r *http.Request) Actor {
	a := Actor{Type: ActorAnonymous, RequestID: requestID(r.Context()), ClientAddress: clientAddress(r)}
	switch caller := callerFrom(r.Context()); {
	case caller.isProvisioner():
		a.Type, a.ID, a.tokenHash = ActorProvisioningToken, caller.TokenID, caller.TokenHash
	case caller != nil:
		a.Type, a.ID, a.tokenHash = ActorUser, caller.ID, caller.TokenHash
	}
	return a
}

// handleEvents serves the change feed: the events after the cursor sent
// as after, oldest first, filtered by user_id, actor_id and type.
func (s *server) handleEvents(w http.ResponseWriter, r *http.Request) {
	s.serveEvents(w, r, nil)
}

// handleUserEvents serves the feed of one user, which outlives the user.
func (s *server) handleUserEvents(w http.ResponseWriter, r *http.Request) {
	ref, err := pathUser(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	id := ref.resolve(callerFrom(r.Context()))
	s.serveEvents(w, r, &id)
}

// serveEvents answers one page of the feed, of the user userID when it is
// not nil. A cursor below the pruning horizon (410) or past the head
// (400) is refused: following it would skip events.
func (s *server) serveEvents(w http.ResponseWriter, r *http.Request, userID *int64) {
	values, err := requestQuery(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	q, err := parseEventQuery(values, userID)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	page, err := s.store.ListEvents(r.Context(), q)
	if err == nil {
		err = page.cursorError(q)
	}
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeBody(w, http.StatusOK, "application/json", page.appendJSON(make([]byte, 0, 256+300*(len(page.Events)+len(page.Pending))), q))
}

// The feed on the wire: cursors, query parameters and the page body.

// eventCursorPrefix starts every event cursor: a cursor of the users list
// can never pass for one.
const eventCursorPrefix = "ev1_"

// eventCursor is the opaque form of a feed position (a seq): the prefix,
// then the seq as 8 big-endian bytes in unpadded base64url.
func eventCursor(seq int64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(seq))
	return eventCursorPrefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// parseEventCursor reads a cursor made by eventCursor, and nothing else:
// whatever does not encode back to the same text is refused.
func parseEventCursor(s string) (int64, bool) {
	rest, ok := strings.CutPrefix(s, eventCursorPrefix)
	if !ok || len(rest) != 11 {
		return 0, false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(rest)
	if err != nil || len(b) != 8 {
		return 0, false
	}
	seq := binary.BigEndian.Uint64(b)
	if seq > 1<<63-1 || eventCursor(int64(seq)) != s {
		return 0, false
	}
	return int64(seq), true
}

// Limits of the event feed.
const (
	defaultEventsPerPage = 100
	maxEventsPerPage     = 1000
)

// parseEventQuery reads the feed's query parameters, reporting every
// problem at once; unknown or repeated parameters are errors. userID is
// the user of /users/{id}/events (nil for /events, where user_id is a
// parameter), whose pages also list the events not yet numbered.
func parseEventQuery(values url.Values, userID *int64) (eventQuery, error) {
	q := eventQuery{PerPage: defaultEventsPerPage, UserID: userID, Pending: userID != nil}
	known := []string{"after", "per_page", "actor_id", "type"}
	if userID == nil {
		known = append(known, "user_id")
	}
	var errs fieldErrors
	one := newQueryParams(values, known, &errs).one
	if v, ok := one("after"); ok {
		if seq, valid := parseEventCursor(v); valid {
			q.After = &seq
		} else {
			errs.add("after", "is not a cursor of the event feed: send a next_cursor as it came")
		}
	}
	if v, ok := one("per_page"); ok {
		if n, valid := parsePositiveInt(v); valid && n <= maxEventsPerPage {
			q.PerPage = int(n)
		} else {
			errs.add("per_page", "must be an integer from 1 to "+strconv.Itoa(maxEventsPerPage))
		}
	}
	for _, f := range []struct {
		name string
		dest **int64
	}{{"user_id", &q.UserID}, {"actor_id", &q.ActorID}} {
		if !slices.Contains(known, f.name) {
			continue
		}
		if v, ok := one(f.name); ok {
			if id, valid := parsePositiveInt(v); valid {
				*f.dest = &id
			} else {
				errs.add(f.name, "must be a positive decimal integer")
			}
		}
	}
	if v, ok := one("type"); ok {
		if t := EventType(v); slices.Contains(eventTypes, t) {
			q.Type = &t
		} else {
			errs.add("type", fmt.Sprintf("must be one of %s", joinTypes(eventTypes)))
		}
	}
	if len(errs) > 0 {
		return eventQuery{}, badRequest("The query parameters are not valid.", errs...)
	}
	return q, nil
}

func joinTypes(types []EventType) string {
	names := make([]string, len(types))
	for i, t := range types {
		names[i] = string(t)
	}
	return strings.Join(names, ", ")
}

// nextCursor is where the consumer goes on from. A full page ends at its
// last event. A page that is not full has passed over every event up to
// the head, since its snapshot holds every event numbered up to it, so
// it goes on from the head (or its last event, were that past it): a
// consumer whose filter matches nothing new moves on all the same, and
// stays ahead of the pruner. It never passes a pending event: those get
// seqs past the head.
func (p *eventPage) nextCursor(q eventQuery) string {
	n := len(p.Events)
	if p.full(q) {
		return eventCursor(p.Events[n-1].Seq)
	}
	if n > 0 {
		return eventCursor(max(p.Head, p.Events[n-1].Seq))
	}
	return eventCursor(p.Head)
}

// appendJSON appends the page as the feed's body: items and next_cursor,
// and pending when the query asks for it and the page reached the head
// (a full page may not have: the events not yet numbered come after
// those still to read).
func (p *eventPage) appendJSON(b []byte, q eventQuery) []byte {
	b = append(b, `{"items":`...)
	b = appendJSONArray(b, p.Events, appendEventJSON)
	b = append(b, `,"next_cursor":`...)
	b = appendJSONString(b, p.nextCursor(q))
	if q.Pending && !p.full(q) {
		b = append(b, `,"pending":`...)
		b = appendJSONArray(b, p.Pending, appendEventJSON)
	}
	return append(b, '}')
}

// appendEventJSON appends e as a JSON object, whose id is null until e is
// numbered. changes is JSON the service made itself (mustJSON), so it
// goes in as it is.
func appendEventJSON(b []byte, e *Event) []byte {
	b = append(b, `{"id":`...)
	if e.Seq == 0 {
		b = append(b, "null"...)
	} else {
		b = strconv.AppendInt(b, e.Seq, 10)
	}
	b = append(b, `,"type":`...)
	b = appendJSONString(b, string(e.Type))
	b = append(b, `,"time":`...)
	b = appendTimestamp(b, e.Time)
	b = append(b, `,"user_id":`...)
	if e.UserID == 0 { // an event about no user: a webhook's
		b = append(b, "null"...)
	} else {
		b = strconv.AppendInt(b, e.UserID, 10)
	}
	b = append(b, `,"actor_type":`...)
	b = appendJSONString(b, string(e.Actor.Type))
	b = append(b, `,"actor_id":`...)
	if e.Actor.Type.hasID() {
		b = strconv.AppendInt(b, e.Actor.ID, 10)
	} else {
		b = append(b, "null"...)
	}
	b = append(b, `,"request_id":`...)
	b = appendJSONString(b, e.Actor.RequestID)
	b = append(b, `,"client_address":`...)
	b = appendJSONString(b, e.Actor.ClientAddress)
	b = append(b, `,"changes":`...)
	if e.Changes == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, e.Changes...)
	}
	return append(b, '}')
}
