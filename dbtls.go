package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql/driver"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"
)

// The values of DB_TLS.
const (
	dbTLSOff        = "false"       // plain TCP
	dbTLSPreferred  = "preferred"   // TLS when the server offers it, unverified; else plain
	dbTLSOn         = "true"        // TLS, the server verified against the system roots or DB_TLS_CA
	dbTLSSkipVerify = "skip-verify" // TLS, unverified
)

var dbTLSModes = []string{dbTLSOff, dbTLSPreferred, dbTLSOn, dbTLSSkipVerify}

// applyDBTLS sets the driver's TLS for DB_TLS on mc. The *tls.Config is
// set directly on mc.TLS (it wins over the driver's named TLSConfig), so
// nothing is registered in the driver's process-wide registry.
//
// With any TLS, MySQL 8.4's caching_sha2_password sends the password
// inside the encrypted connection and never asks for the server's RSA
// key. Without TLS the driver fetches that key in clear on a full
// authentication, and a machine in the middle could swap it: "preferred"
// falls back to exactly that when the server offers no TLS, and neither
// "preferred" nor "skip-verify" checks whom it talks to. Only "true"
// protects the password against an active attacker.
func applyDBTLS(mc *mysql.Config, cfg dbSettings) error {
	switch cfg.TLS {
	case "", dbTLSOff:
		mc.TLS = nil
	case dbTLSOn:
		c := &tls.Config{ServerName: cfg.Host, MinVersion: tls.VersionTLS12}
		if cfg.TLSCA != "" {
			pemCerts, err := os.ReadFile(cfg.TLSCA)
			if err != nil {
				return fmt.Errorf("DB_TLS_CA: %w", err)
			}
			c.RootCAs = x509.NewCertPool()
			if !c.RootCAs.AppendCertsFromPEM(pemCerts) {
				return fmt.Errorf("DB_TLS_CA: %s holds no PEM certificate", cfg.TLSCA)
			}
		}
		mc.TLS = c
	case dbTLSSkipVerify:
		mc.TLS = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
	case dbTLSPreferred:
		mc.TLS = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
		mc.AllowFallbackToPlaintext = true
	default:
		return fmt.Errorf("DB_TLS: unknown mode %q", cfg.TLS)
	}
	return nil
}

// plaintextWarnEvery is how often, at most, the log warns again of
// connections that DB_TLS=preferred opened in plaintext.
const plaintextWarnEvery = time.Minute

// plaintextWatch counts the connections that DB_TLS=preferred opened
// without TLS, the server offering none, and warns of them in the log:
// at the first (at start, when the database is up), then at most once
// every plaintextWarnEvery, with the count so far. The count is the
// metric usersvc_db_plaintext_connections_total.
type plaintextWatch struct {
	logger *slog.Logger
	now    func() time.Time
	count  atomic.Int64

	mu     sync.Mutex
	warned time.Time // when the last warning was logged; zero: never
}

func newPlaintextWatch(logger *slog.Logger) *plaintextWatch {
	return &plaintextWatch{logger: logger, now: time.Now}
}

// Count is how many connections were opened in plaintext; 0 for nil.
func (p *plaintextWatch) Count() int64 {
	if p == nil {
		return 0
	}
	return p.count.Load()
}

// opened counts one connection opened in plaintext, and warns unless a
// warning went out less than plaintextWarnEvery ago.
func (p *plaintextWatch) opened() {
	n := p.count.Add(1)
	p.mu.Lock()
	now := p.now()
	due := p.warned.IsZero() || now.Sub(p.warned) >= plaintextWarnEvery
	if due {
		p.warned = now
	}
	p.mu.Unlock()
	if due {
		p.logger.Warn("database connection without TLS: the server offers none and DB_TLS=preferred fell back to plaintext;"+
			" queries and their answers, password hashes included, cross the network readable; set DB_TLS=true",
			"plaintext_connections", n)
	}
}

// connConfigKey carries, in the context of one Connect, where the
// BeforeConnect hook leaves that connection's own configuration.
type connConfigKey struct{}

// watchedConnector opens connections with the driver's connector and
// reports to watch each one the driver opened in plaintext. The driver
// says so only by setting TLS to nil, on fallback, in the configuration
// of the connection; the BeforeConnect hook (watchPlaintext) makes that
// a copy of the connection's own and leaves it where Connect reads it.
// (Without the hook the driver sets it on the configuration every
// connection shares, and after one fallback never tries TLS again.)
type watchedConnector struct {
	driver.Connector
	watch *plaintextWatch
}

// Connect opens a connection and reports it to the watch if it is in
// plaintext.
func (c watchedConnector) Connect(ctx context.Context) (driver.Conn, error) {
	var cfg *mysql.Config
	conn, err := c.Connector.Connect(context.WithValue(ctx, connConfigKey{}, &cfg))
	if err == nil && cfg != nil && cfg.TLS == nil {
		c.watch.opened()
	}
	return conn, err
}

// watchPlaintext returns the connector for mc, whose connections opened
// in plaintext watch counts, when DB_TLS=preferred lets the driver fall
// back to plaintext (mc.AllowFallbackToPlaintext) and watch is not nil;
// otherwise the driver's connector.
func watchPlaintext(mc *mysql.Config, watch *plaintextWatch) (driver.Connector, error) {
	if watch == nil || !mc.AllowFallbackToPlaintext {
		return mysql.NewConnector(mc)
	}
	mc = mc.Clone()
	err := mc.Apply(mysql.BeforeConnect(func(ctx context.Context, cfg *mysql.Config) error {
		if dest, ok := ctx.Value(connConfigKey{}).(**mysql.Config); ok {
			*dest = cfg
		}
		return nil
	}))
	if err != nil {
		return nil, err
	}
	connector, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, err
	}
	return watchedConnector{Connector: connector, watch: watch}, nil
}
