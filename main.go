// Command usersvc is a REST API for user accounts, backed by MySQL.
//
// Usage: see usage below (usersvc help).
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	runtimemetrics "runtime/metrics"
	"sync"
	"syscall"
	"time"
)

// HTTP server limits.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 15 * time.Second
	writeTimeout      = 30 * time.Second // covers bcrypt and a slow database
	shutdownTimeout   = 10 * time.Second
	maxHeaderBytes    = 16 << 10
)

// Bounds of the bcrypt queue: how many requests may wait per worker, and
// how long each may wait before a 503.
const (
	bcryptQueuePerWorker = 16
	bcryptMaxWait        = 5 * time.Second
)

// usage is what help, -h and --help print.
const usage = `usersvc: a REST API for user accounts, backed by MySQL 8.4 or MariaDB.

Usage:
  usersvc [serve]      serve the API (the default command)
  usersvc migrate      apply the schema (schema.sql, idempotent) and exit;
                       run it as an account that may CREATE and ALTER
  usersvc healthcheck  exit 0 when the running service's /health answers 200
  usersvc version      print the version (also --version)
  usersvc help         print this text (also -h, --help)

Configuration comes from the environment, over a .env file (or the file
ENV_FILE names). A variable set in the environment wins, even when empty:
DB_PASSWORD= usersvc clears a DB_PASSWORD of the .env file.
Variables: README.md, "Configuration"; the database: docs/deploy.md.
`

func main() {
	if err := run(context.Background(), os.Args, os.LookupEnv, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "usersvc: %v\n", err)
		os.Exit(1)
	}
}

// run is the whole program, with its environment passed in (lookupEnv,
// like os.LookupEnv, tells an empty variable from an unset one) so tests
// can run it in-process. Logs and command output go to stdout; main
// reports the error run returns on stderr.
func run(ctx context.Context, args []string, lookupEnv func(string) (string, bool), stdout io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	command := "serve"
	if len(args) > 1 {
		command = args[1]
	}
	switch command { // these need no configuration
	case "version", "--version":
		fmt.Fprintf(stdout, "usersvc %s %s\n", version, runtime.Version())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}

	envFile, named := lookupEnv("ENV_FILE")
	if envFile == "" {
		envFile, named = ".env", false
	}
	getenv, err := withDotenvFile(lookupEnv, envFile, named)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return err
	}
	switch command {
	case "healthcheck":
		return healthcheck(ctx, cfg.HTTPAddr, stdout)
	case "migrate":
		return migrate(ctx, cfg, stdout)
	case "serve":
		logs := newBufferedWriter(stdout, logBufferSize, logFlushInterval)
		defer logs.Close()
		logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: cfg.LogLevel}))
		return serve(ctx, cfg, logger)
	default:
		return fmt.Errorf("unknown command %q; run usersvc help for the commands", command)
	}
}

// withDotenvFile layers the variables of the file at path under the real
// environment. A missing file is no error unless it was named (ENV_FILE).
func withDotenvFile(lookupEnv func(string) (string, bool), path string, named bool) (func(string) string, error) {
	text, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !named {
		return withDotenv(lookupEnv, nil), nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	vars, err := parseDotenv(string(text))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return withDotenv(lookupEnv, vars), nil
}

// serve runs the HTTP server until ctx ends, then shuts down gracefully:
// it stops accepting, lets requests in flight finish for up to
// shutdownTimeout, and closes the database pool.
func serve(ctx context.Context, cfg Config, logger *slog.Logger) error {
	mc, err := mysqlConfig(cfg.dbSettings())
	if err != nil {
		return err
	}
	mc.Logger = driverLogger{logger}
	plaintext := newPlaintextWatch(logger)
	db, err := openDB(mc, cfg.dbSettings(), plaintext)
	if err != nil {
		return err
	}
	defer db.Close()
	store := NewStore(db, cfg.DBTimeout)
	store.applySchema = cfg.SchemaApply
	store.plaintext = plaintext
	passwords, err := newPasswordHasher(cfg.BcryptCost, cfg.BcryptWorkers, bcryptQueuePerWorker*cfg.BcryptWorkers, bcryptMaxWait)
	if err != nil {
		return err
	}
	defer passwords.Close()
	// One more scheduling slot per bcrypt worker: a worker busy on its
	// low-priority thread holds a slot, and requests must still find one.
	// The setting is the process's, so it is given back when serving ends.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + cfg.BcryptWorkers))
	// Start-up work runs beside serving; it stops when serving does, and
	// is waited for before the pool and the hasher close.
	st := &startup{waitForAdmin: cfg.AdminUsername != ""}
	prepareCtx, stopPreparing := context.WithCancel(ctx)
	var preparing sync.WaitGroup
	defer preparing.Wait()
	defer stopPreparing()
	preparing.Go(func() { prepareDatabase(prepareCtx, store, passwords, cfg, logger, st) })
	preparing.Go(func() { trimMemory(prepareCtx, memoryTrimInterval) })
	// The event workers outlive ctx until Shutdown has returned, so the
	// events of requests finishing during shutdown are numbered at once.
	defer startEventWorkers(context.WithoutCancel(ctx), store, cfg.EventsRetention, logger)()
	// Webhook deliveries stop with ctx: an attempt cut short is made
	// again, by this replica or another (docs/webhooks.md).
	defer startWebhookWorkers(ctx, store, cfg.Webhooks, logger)()

	s := newServer(logger, store, passwords, cfg, st)
	s.connections = newConnTable(cfg.MaxConnections, cfg.MaxConnectionsPerClient, cfg.TrustedProxies, readHeaderTimeout)
	servers, err := listen(cfg, logger, s.public, s.management, s.connections)
	if err != nil {
		return err
	}
	managementAddr := "off"
	if len(servers) > 1 {
		managementAddr = servers[1].addr
	}
	logger.Info("listening", "addr", servers[0].addr, "management_addr", managementAddr, "database", mc.Addr, "version", version)

	served := make(chan error, len(servers))
	for _, srv := range servers {
		go func() { served <- srv.Serve(srv.listener) }()
	}
	select {
	case err := <-served:
		err = fmt.Errorf("serve: %w", err)
		shutdown(context.WithoutCancel(ctx), servers, logger)
		return err
	case <-ctx.Done():
	}
	if err := shutdown(context.WithoutCancel(ctx), servers, logger); err != nil {
		return err
	}
	logger.Info("stopped")
	return nil
}

// listeningServer is an http.Server with the listener it serves.
type listeningServer struct {
	*http.Server
	listener net.Listener
	addr     string
}

// listen opens the public listener, its connections shared by the rules
// of conns (listener.go), and the management one when it is configured.
func listen(cfg Config, logger *slog.Logger, public, management http.Handler, conns *connTable) ([]listeningServer, error) {
	publicListener, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	publicServer := newHTTPServer(public, cfg, logger)
	publicServer.ConnState = conns.connState
	servers := []listeningServer{{publicServer, shareListener(publicListener, conns), publicListener.Addr().String()}}
	if cfg.ManagementAddr == "" {
		return servers, nil
	}
	managementListener, err := net.Listen("tcp", cfg.ManagementAddr)
	if err != nil {
		publicListener.Close()
		return nil, fmt.Errorf("listen on the management address: %w", err)
	}
	return append(servers, listeningServer{newHTTPServer(management, cfg, logger), managementListener, managementListener.Addr().String()}), nil
}

// newHTTPServer is an http.Server with every limit set.
func newHTTPServer(h http.Handler, cfg Config, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// shutdown stops every server gracefully: no new connections, requests
// in flight finish for up to shutdownTimeout.
func shutdown(ctx context.Context, servers []listeningServer, logger *slog.Logger) error {
	logger.Info("shutting down", "timeout", shutdownTimeout.String())
	ctx, cancel := context.WithTimeout(ctx, shutdownTimeout)
	defer cancel()
	var errs []error
	for _, srv := range servers {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shutdown %s: %w", srv.addr, err))
		}
	}
	return errors.Join(errs...)
}

// prepareDatabase applies the schema as soon as the database answers, so
// the log says when the service is ready (requests apply it too if they
// come first), then creates the bootstrap admin if one is configured and
// no active admin exists, and marks start-up done.
func prepareDatabase(ctx context.Context, store *Store, passwords *passwordHasher, cfg Config, logger *slog.Logger, st *startup) {
	delay := 500 * time.Millisecond
	for {
		err := store.EnsureSchema(ctx)
		if err == nil {
			store.SetupTroubleResolved(ctx, logger)
			logger.Info("database schema in place", "galera", store.Galera())
			if store.Galera() {
				logger.Info("the database is a Galera cluster node: conflicting transactions run again, reads that decide access are causal (wsrep_sync_wait=1)")
			}
			err = bootstrapAdmin(ctx, store, passwords, cfg, logger)
		}
		if err == nil {
			st.adminDone.Store(true)
			return
		}
		if ctx.Err() != nil {
			return // serving ended (a port in use, a signal): not the database's doing
		}
		if !store.ReportSetupTrouble(ctx, logger, err) {
			logger.Warn("database not ready; retrying", "error", err, "retry_in", delay.String())
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, 10*time.Second)
	}
}

// noAdminWarning is logged at start-up when nobody can manage users.
const noAdminWarning = "no active admin: nobody can create or manage users; set ADMIN_USERNAME and ADMIN_EMAIL " +
	"(and ADMIN_PASSWORD, or one is generated and logged) and restart, and the admin is created at start-up"

// bootstrapAdmin creates the admin named by ADMIN_USERNAME and
// ADMIN_EMAIL when they are set and no active admin exists, with
// ADMIN_PASSWORD, or without it a strong random password that is logged
// this once. Without them, it warns when no active admin exists: nobody
// could ever manage users.
func bootstrapAdmin(ctx context.Context, store *Store, passwords *passwordHasher, cfg Config, logger *slog.Logger) error {
	if cfg.AdminUsername == "" {
		exists, err := store.HasActiveAdmin(ctx)
		if err != nil {
			return err
		}
		if !exists {
			logger.Warn(noAdminWarning)
		}
		return nil
	}
	password, generated := cfg.AdminPassword, cfg.AdminPassword == ""
	if generated {
		password = generatePassword()
	}
	hash, err := passwords.Hash(ctx, password)
	if err != nil {
		return fmt.Errorf("bootstrap admin: %w", err)
	}
	created, err := store.BootstrapAdmin(ctx, NewUser{Username: cfg.AdminUsername, Email: cfg.AdminEmail, PasswordHash: hash},
		Actor{Type: ActorSystem})
	var conflict *ConflictError
	switch {
	case errors.As(err, &conflict):
		// Another replica won the race, or the name belongs to an inactive
		// user: either way, no admin is created here.
		logger.Warn("bootstrap admin not created: "+conflict.Field+" already taken", "username", cfg.AdminUsername)
		return nil
	case err != nil:
		return err
	case created && generated:
		logger.Warn("bootstrap admin created with a generated password, shown only this once: sign in and change it",
			"username", cfg.AdminUsername, "email", cfg.AdminEmail, "password", password)
	case created:
		logger.Info("bootstrap admin created", "username", cfg.AdminUsername, "email", cfg.AdminEmail)
	default:
		logger.Info("bootstrap admin not needed: an active admin exists")
	}
	return nil
}

// memoryTrimInterval is how often trimMemory looks for idle heap.
const memoryTrimInterval = 15 * time.Second

// maxIdleHeap is the idle heap trimMemory lets the process keep.
const maxIdleHeap = 4 << 20

// trimMemory gives idle heap back to the system every interval once more
// than maxIdleHeap of it is held: after a burst (many connections, many
// bodies), resident memory comes back down within seconds instead of
// waiting for the runtime's own, much slower, scavenging.
func trimMemory(ctx context.Context, interval time.Duration) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	idle := []runtimemetrics.Sample{{Name: "/memory/classes/heap/free:bytes"}}
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		runtimemetrics.Read(idle)
		if idle[0].Value.Uint64() > maxIdleHeap {
			debug.FreeOSMemory()
		}
	}
}

// generatePassword returns a random password of 24 base64url characters
// (144 bits).
func generatePassword() string {
	b := make([]byte, 18)
	rand.Read(b) // never fails (crypto/rand documentation)
	return base64.RawURLEncoding.EncodeToString(b)
}

// healthcheck asks the service listening on addr for /health and fails
// unless it answers 200. The container image has no shell or curl.
func healthcheck(ctx context.Context, addr string, stdout io.Writer) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	url := "http://" + net.JoinHostPort(host, port) + "/health"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s", url, resp.Status)
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}
