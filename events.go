package main

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// EventType names a kind of change in the audit trail (docs/events.md).
type EventType string

const (
	EventUserCreated     EventType = "user.created"
	EventUserUpdated     EventType = "user.updated"
	EventPasswordChanged EventType = "user.password_changed"
	EventUserDeleted     EventType = "user.deleted"
	EventTokensRevoked   EventType = "user.tokens_revoked"
)

// eventTypes are every type an event may have, for the type filter.
var eventTypes = []EventType{EventUserCreated, EventUserUpdated, EventPasswordChanged, EventUserDeleted, EventTokensRevoked}

// ActorType says who made a change.
type ActorType string

const (
	// ActorUser: a signed-in user, named by Actor.ID.
	ActorUser ActorType = "user"
	// ActorSystem: the service itself (the bootstrap admin).
	ActorSystem ActorType = "system"
	// ActorAnonymous: a caller without a token (a sign-up).
	ActorAnonymous ActorType = "anonymous"
)

// Actor is who made a change, and through which request. The store
// records it with every event; the handler builds it (server.actor).
type Actor struct {
	Type          ActorType
	ID            int64 // the acting user's id; 0 unless Type is ActorUser
	RequestID     string
	ClientAddress string

	// tokenHash is the token the user acts with. A write checks it again
	// under its row lock (stillSignedIn), so a token revoked while the
	// request ran cannot write after its revocation.
	tokenHash []byte
}

// The reasons a user.tokens_revoked event gives.
const (
	revokedLogout          = "logout"
	revokedDeactivated     = "deactivated"
	revokedRoleChanged     = "role_changed"
	revokedPasswordChanged = "password_changed"
)

// newEvent is an event a store transaction is about to insert: what
// happened to which user. The actor and the time are the transaction's.
type newEvent struct {
	Type    EventType
	UserID  int64
	Changes []byte // a JSON object, or nil
}

// Event is one recorded change, as the feed serves it.
type Event struct {
	Seq     int64 // the feed position, the event's id in JSON; 0 (null) until numbered
	Type    EventType
	Time    time.Time
	UserID  int64
	Actor   Actor
	Changes []byte // a JSON object made by the service, or nil
}

// valueChange is the old and new value of role or is_active.
type valueChange[T any] struct {
	Old T `json:"old"`
	New T `json:"new"`
}

// updateChanges is the changes member of a user.updated event: the names
// of the fields whose value changed, and for role and is_active, when
// they changed, the old and new values. Never a password or its hash.
type updateChanges struct {
	Fields   []string           `json:"fields"`
	Role     *valueChange[Role] `json:"role,omitempty"`
	IsActive *valueChange[bool] `json:"is_active,omitempty"`
}

// mustJSON encodes v, which holds only strings, bools and slices of them.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // strings, bools and slices always encode
	}
	return b
}

// updateEvents are the events of an update of the user id, whose row held
// cur before it, in the order they are recorded (docs/events.md):
//
//   - user.password_changed when a password is set (a new hash is a change,
//     even for the same password);
//   - user.updated when any other field changes value, naming those fields
//     (with old and new values for role and is_active);
//   - user.tokens_revoked (revocation) when the update deleted tokens; the
//     caller adds it, once it knows.
//
// A field sent as stored is no change (UserChanges.effective), and an
// update that changes nothing has no event: it writes nothing at all.
func updateEvents(id int64, cur lockedUser, c UserChanges) []newEvent {
	c = c.effective(cur)
	var events []newEvent
	if c.PasswordHash != nil {
		events = append(events, newEvent{Type: EventPasswordChanged, UserID: id})
	}
	changes := updateChanges{Fields: c.fieldNames()}
	if c.Role != nil {
		changes.Role = &valueChange[Role]{Old: cur.role, New: *c.Role}
	}
	if c.IsActive != nil {
		changes.IsActive = &valueChange[bool]{Old: cur.isActive, New: *c.IsActive}
	}
	if len(changes.Fields) > 0 {
		events = append(events, newEvent{Type: EventUserUpdated, UserID: id, Changes: mustJSON(changes)})
	}
	return events
}

// revocationEvent records that the user's tokens were revoked, and why.
func revocationEvent(userID int64, reason string) newEvent {
	return newEvent{Type: EventTokensRevoked, UserID: userID, Changes: mustJSON(struct {
		Reason string `json:"reason"`
	}{reason})}
}

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

// eventQuery is a parsed, validated request for a page of the feed.
type eventQuery struct {
	After   *int64 // the seq to continue after; nil: from the oldest kept
	PerPage int
	UserID  *int64
	ActorID *int64
	Type    *EventType
	// Pending: the page also lists the user's events not yet numbered,
	// when it reaches the head (the route of one user).
	Pending bool
}

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

// eventPage is one page of the feed as read from the store, with the
// pruning horizon and the head read in the same statement.
type eventPage struct {
	Events []Event
	// Pending are the events of the user, committed but not yet numbered,
	// in the order they will be numbered (for eventQuery.Pending).
	Pending       []Event
	PrunedThrough int64 // every seq up to this one has been deleted
	Head          int64 // last_seq: every seq up to this one is numbered, and visible to the page
}

// cursorError says why the cursor of q cannot be followed, judged by the
// page read with it, or nil: it is below the pruning horizon (the events
// just after it are gone), or past the head (no event has that seq yet).
func (p *eventPage) cursorError(q eventQuery) error {
	switch {
	case q.After == nil:
		return nil
	case *q.After < p.PrunedThrough:
		return ErrCursorPruned
	case *q.After > p.Head:
		return ErrCursorAhead
	}
	return nil
}

// full reports whether the page holds per_page events: more may follow.
func (p *eventPage) full(q eventQuery) bool { return len(p.Events) == q.PerPage }

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
	b = strconv.AppendInt(b, e.UserID, 10)
	b = append(b, `,"actor_type":`...)
	b = appendJSONString(b, string(e.Actor.Type))
	b = append(b, `,"actor_id":`...)
	if e.Actor.Type == ActorUser {
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
