package main

import (
	"encoding/json"
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

	// Changes to webhook endpoints (webhook.go): user_id 0 (null in
	// JSON), the endpoint's id in changes.
	EventWebhookCreated       EventType = "webhook.created"
	EventWebhookUpdated       EventType = "webhook.updated"
	EventWebhookDeleted       EventType = "webhook.deleted"
	EventWebhookSecretRotated EventType = "webhook.secret_rotated"
	EventWebhookDisabled      EventType = "webhook.disabled"
	EventWebhookEventsPruned  EventType = "webhook.events_pruned"
)

// eventTypes are every type an event may have, for the type filter.
var eventTypes = []EventType{EventUserCreated, EventUserUpdated, EventPasswordChanged, EventUserDeleted, EventTokensRevoked,
	EventWebhookCreated, EventWebhookUpdated, EventWebhookDeleted, EventWebhookSecretRotated, EventWebhookDisabled, EventWebhookEventsPruned}

// ActorType says who made a change.
type ActorType string

const (
	// ActorUser: a signed-in user, named by Actor.ID.
	ActorUser ActorType = "user"
	// ActorSystem: the service itself (the bootstrap admin).
	ActorSystem ActorType = "system"
	// ActorAnonymous: a caller without a token (a sign-up).
	ActorAnonymous ActorType = "anonymous"
	// ActorProvisioningToken: an identity provider, through a
	// provisioning token named by Actor.ID (docs/scim.md).
	ActorProvisioningToken ActorType = "provisioner"
)

// hasID reports whether the actor type names an id: a user's or a
// provisioning token's.
func (t ActorType) hasID() bool { return t == ActorUser || t == ActorProvisioningToken }

// Actor is who made a change, and through which request. The store
// records it with every event; the handler builds it (server.actor).
type Actor struct {
	Type          ActorType
	ID            int64 // the acting user's or provisioning token's id; 0 for the others
	RequestID     string
	ClientAddress string

	// tokenHash is the token the user (or provisioning token) acts with.
	// A write checks it again under its row lock (stillSignedIn), so a
	// token revoked while the request ran cannot write after its
	// revocation.
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
