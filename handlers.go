package main

import (
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"
)

// server holds what the handlers need.
type server struct {
	logger      *slog.Logger
	store       *Store
	passwords   *passwordHasher
	metrics     *metrics
	tokenTTL    time.Duration
	allowSignup bool

	logins  *loginLimits
	signups *attemptLimiter // sign-ups per client address
	// identityChanges: changes of one's own username or email, per user
	identityChanges *attemptLimiter
	startup         *startup
	bodies          *bodyBudget
	// connections is the public listener's table, which readiness
	// watches; nil when the handlers serve no listener of their own.
	connections *connTable

	webhooks      webhookSettings
	webhookSender *webhookSender // test pings
	// proxies are the peers whose X-Forwarded-Proto is believed (SCIM's
	// meta.location).
	proxies trustedProxies

	public, management http.Handler
}

// startup tells whether start-up work that serving depends on is done.
// Until it is, the health checks answer 503 and sign-ups are refused, so
// that no one can take the bootstrap admin's name first.
type startup struct {
	waitForAdmin bool        // a bootstrap admin is configured
	adminDone    atomic.Bool // and exists, or was found not to be needed
}

// done reports whether start-up is complete; a nil startup always is.
func (st *startup) done() bool {
	return st == nil || !st.waitForAdmin || st.adminDone.Load()
}

// newServer returns the service with its two HTTP handlers: public, the
// API, and management (probes and metrics). Each has every route with the
// access it requires, wrapped in the middleware every request passes
// through.
func newServer(logger *slog.Logger, store *Store, passwords *passwordHasher, cfg Config, st *startup) *server {
	s := &server{
		logger:          logger,
		store:           store,
		passwords:       passwords,
		metrics:         newMetrics(),
		tokenTTL:        cfg.TokenTTL,
		allowSignup:     cfg.AllowSignup,
		logins:          newLoginLimits(),
		signups:         newAttemptLimiter(cfg.SignupsPerHour, time.Hour),
		identityChanges: newAttemptLimiter(identityChangesPerHour, time.Hour),
		startup:         st,
		bodies:          newBodyBudget(cfg.MaxBodyBytesInFlight),

		webhooks:      cfg.Webhooks,
		webhookSender: newWebhookSender(cfg.Webhooks),
		proxies:       cfg.TrustedProxies,
	}
	s.public = s.handler(s.routes(cfg.MaxBodyBytes), cfg, cfg.CORSAllowedOrigins)
	s.management = s.handler(s.managementRoutes(), cfg, nil)
	return s
}

// handler serves routes behind the common middleware, answering CORS for
// origins when there are any.
func (s *server) handler(routes []route, cfg Config, origins corsOrigins) http.Handler {
	mux := http.NewServeMux()
	for _, rt := range routes {
		if rt.maxBody > 0 {
			rt.handler = s.limitBody(rt.maxBody, rt.handler)
		}
		mux.HandleFunc(rt.pattern, s.guard(rt))
	}
	var h http.Handler = problemsForUnmatched(mux)
	if len(origins) > 0 {
		h = s.cors(origins, h)
	}
	h = recoverPanics(s.logger, h)
	h = observeRequests(s.logger, s.metrics, cfg.TrustedProxies, h)
	return commonHeaders(h)
}

// route is one pattern of the mux, who may call it, the largest body it
// reads (0: none), and its handler.
type route struct {
	pattern string
	access  access
	check   tokenCheck
	maxBody int64
	handler http.HandlerFunc
}

// routes is the whole API at a glance, with the access each route needs
// (access.go says what each rule means) and its body limit; userBody is
// the limit of the routes that take a user. openapi.json describes
// exactly these (TestOpenAPIDescribesEveryRoute).
func (s *server) routes(userBody int64) []route {
	const login = loginMaxBodyBytes
	return []route{
		{"GET /health", public, noToken, 0, s.handleHealth},
		{"GET /openapi.json", public, noToken, 0, s.handleOpenAPI},
		{"GET /docs", public, noToken, 0, s.handleDocs},
		{"POST /api/v1/auth/token", public, noToken, login, s.handleLogin},
		{"POST /api/v1/auth/logout", signedIn, tokenFirst, 0, s.handleLogout},
		{"POST /api/v1/users", adminOrSignup, tokenFirst, userBody, s.handleCreateUser},
		{"POST /api/v1/users/{$}", adminOrSignup, tokenFirst, userBody, s.handleCreateUser},
		{"GET /api/v1/users", adminOnly, tokenInQuery, 0, s.handleListUsers},
		{"GET /api/v1/users/{$}", adminOnly, tokenInQuery, 0, s.handleListUsers},
		{"GET /api/v1/users/{id}", selfOrAdmin, tokenInQuery, 0, s.handleGetUser},
		{"PUT /api/v1/users/{id}", selfOrAdmin, tokenInQuery, userBody, s.handleUpdateUser},
		{"PATCH /api/v1/users/{id}", selfOrAdmin, tokenInQuery, userBody, s.handleUpdateUser},
		{"DELETE /api/v1/users/{id}", adminOnly, tokenInQuery, 0, s.handleDeleteUser},
		{"GET /api/v1/users/{id}/events", adminOnly, tokenFirst, 0, s.handleUserEvents},
		{"GET /api/v1/events", adminOnly, tokenFirst, 0, s.handleEvents},
		{"POST /api/v1/webhooks", adminOnly, tokenFirst, webhookMaxBody, s.handleCreateWebhook},
		{"GET /api/v1/webhooks", adminOnly, tokenFirst, 0, s.handleListWebhooks},
		{"GET /api/v1/webhooks/{id}", adminOnly, tokenFirst, 0, s.handleGetWebhook},
		{"PATCH /api/v1/webhooks/{id}", adminOnly, tokenFirst, webhookMaxBody, s.handleUpdateWebhook},
		{"DELETE /api/v1/webhooks/{id}", adminOnly, tokenFirst, 0, s.handleDeleteWebhook},
		{"POST /api/v1/webhooks/{id}/secret", adminOnly, tokenFirst, 0, s.handleRotateWebhookSecret},
		{"GET /api/v1/webhooks/{id}/deliveries", adminOnly, tokenFirst, 0, s.handleWebhookDeliveries},
		{"POST /api/v1/webhooks/{id}/test", adminOnly, tokenFirst, 0, s.handleTestWebhook},
		{"POST /api/v1/tokens", adminOnly, tokenFirst, tokenMaxBodyBytes, s.handleCreateToken},
		{"GET /api/v1/tokens", adminOnly, tokenFirst, 0, s.handleListTokens},
		{"DELETE /api/v1/tokens/{id}", adminOnly, tokenFirst, 0, s.handleRevokeToken},
		// SCIM 2.0 (docs/scim.md): answered in SCIM's shapes, errors included.
		{"GET /scim/v2/ServiceProviderConfig", provisioner, tokenFirst, 0, s.handleSCIMConfig},
		{"GET /scim/v2/ResourceTypes", provisioner, tokenFirst, 0, s.handleSCIMResourceTypes},
		{"GET /scim/v2/ResourceTypes/{name}", provisioner, tokenFirst, 0, s.handleSCIMResourceType},
		{"GET /scim/v2/Schemas", provisioner, tokenFirst, 0, s.handleSCIMSchemas},
		{"GET /scim/v2/Schemas/{name}", provisioner, tokenFirst, 0, s.handleSCIMSchema},
		{"GET /scim/v2/Users", provisioner, tokenFirst, 0, s.handleSCIMListUsers},
		{"POST /scim/v2/Users", provisioner, tokenFirst, userBody, s.handleSCIMCreateUser},
		{"GET /scim/v2/Users/{id}", provisioner, tokenFirst, 0, s.handleSCIMGetUser},
		{"PUT /scim/v2/Users/{id}", provisioner, tokenFirst, userBody, s.handleSCIMReplaceUser},
		{"PATCH /scim/v2/Users/{id}", provisioner, tokenFirst, userBody, s.handleSCIMPatchUser},
		{"DELETE /scim/v2/Users/{id}", provisioner, tokenFirst, 0, s.handleSCIMDeleteUser},
	}
}

// managementRoutes are served on the management listener only: probes
// and metrics for the operator's network, not the public one, and the
// document that describes them (openapi-management.json).
func (s *server) managementRoutes() []route {
	return []route{
		{"GET /health", public, noToken, 0, s.handleHealth},
		{"GET /health/live", public, noToken, 0, s.handleLive},
		{"GET /health/ready", public, noToken, 0, s.handleReady},
		{"GET /metrics", public, noToken, 0, s.handleMetrics},
		{"GET /openapi.json", public, noToken, 0, s.handleManagementOpenAPI},
	}
}

// respond writes v as JSON, turning an encoding failure into a 500.
func (s *server) respond(w http.ResponseWriter, r *http.Request, status int, v any) {
	if err := writeJSON(w, status, v); err != nil {
		s.writeError(w, r, err)
	}
}

// writeError answers err as problemFor maps it (in SCIM's error schema
// under /scim/v2). What the client cannot be told is logged: the cause
// of every 5xx, in full.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	s.logAnswer(r, problemFor(err).Status, err)
	writeErrorFor(w, r, err)
}

// logAnswer logs an error answered with a 5xx status: an unexpected one
// as an error, a database setup failure once per change of its reason,
// an unavailable database as a warning. Busy hashers and 4xx answers are
// the clients' business and the access log's.
func (s *server) logAnswer(r *http.Request, status int, err error) {
	ctx := r.Context()
	switch {
	case s.store.ReportSetupTrouble(ctx, s.logger, err):
	case status == http.StatusInternalServerError:
		s.logger.ErrorContext(ctx, "internal error", "error", err, "request_id", requestID(ctx))
	case errors.Is(err, ErrBodiesBusy):
		s.logger.WarnContext(ctx, "request bodies at their limit", "request_id", requestID(ctx))
	case status == http.StatusServiceUnavailable && !errors.Is(err, ErrBusy):
		s.logger.WarnContext(ctx, "database unavailable", "error", err, "request_id", requestID(ctx))
	case errors.Is(err, ErrOutcomeUnknown):
		s.logger.ErrorContext(ctx, "write outcome unknown", "error", err, "request_id", requestID(ctx))
	}
}
