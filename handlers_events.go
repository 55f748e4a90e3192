package main

import "net/http"

// actor is who makes the change r asks for: the signed-in caller, or an
// anonymous one (a sign-up), with the request's id and client address.
func (s *server) actor(r *http.Request) Actor {
	a := Actor{Type: ActorAnonymous, RequestID: requestID(r.Context()), ClientAddress: clientAddress(r)}
	if caller := callerFrom(r.Context()); caller != nil {
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
	q, err := parseEventQuery(r.URL.Query(), userID)
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
