package main

import (
	"database/sql"
	"fmt"
	"log/slog"
	"math"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// The pool and its sessions: the driver configuration from the store's
// settings, what every connection is set to, and the pool's limits.

// driverLogger sends the driver's own complaints (broken connections and
// the like) to the service's structured log instead of bare stderr lines.
type driverLogger struct{ logger *slog.Logger }

func (d driverLogger) Print(v ...any) {
	d.logger.Warn("mysql driver", "message", strings.TrimSpace(fmt.Sprint(v...)))
}

// dbSettings are the store's settings, taken from the configuration
// (Config.dbSettings: DB_HOST, DB_PORT, ...).
type dbSettings struct {
	Host, User, Password, Name string
	Port                       int
	TLS, TLSCA                 string        // DB_TLS (dbtls.go) and DB_TLS_CA
	Timeout                    time.Duration // each call, and dialing
	MaxOpenConns, MaxIdleConns int
	ConnMaxLifetime            time.Duration // 0: never closed for their age
}

// mysqlConfig is the driver configuration for cfg. It fails only when
// DB_TLS_CA cannot be read.
func mysqlConfig(cfg dbSettings) (*mysql.Config, error) {
	mc := mysql.NewConfig()
	mc.Net = "tcp"
	mc.Addr = net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))
	mc.User = cfg.User
	mc.Passwd = cfg.Password
	mc.DBName = cfg.Name
	applySessionSettings(mc, cfg.Timeout)
	if err := applyDBTLS(mc, cfg); err != nil {
		return nil, err
	}
	return mc, nil
}

// applySessionSettings sets what every connection of the service needs,
// whatever server it talks to: UTC timestamps, a pinned time zone, SQL mode
// and collation, matched-rows counts, and I/O deadlines so a black-holed
// server cannot hang a connection forever.
func applySessionSettings(mc *mysql.Config, timeout time.Duration) {
	mc.ParseTime = true
	mc.Loc = time.UTC
	mc.Collation = "utf8mb4_unicode_ci"
	mc.ClientFoundRows = true // UPDATE reports matched rows: 0 means not found
	// Queries with arguments go out in one round trip, the arguments
	// escaped into the text by the driver (safe with utf8mb4), instead of
	// prepare + execute + close (docs/performance.md has the numbers).
	// The read statements are held prepared instead (Store.prepared),
	// which also spares the server parsing them.
	// The fast write path (store_fastpath.go) sends the statements of one
	// round trip together. Every value is an argument, escaped by the
	// driver, never spliced into the text, so a value cannot add a
	// statement of its own.
	mc.MultiStatements = true
	mc.InterpolateParams = true
	mc.Timeout = timeout
	mc.ReadTimeout = 2 * timeout
	mc.WriteTimeout = 2 * timeout
	if mc.Params == nil {
		mc.Params = map[string]string{}
	}
	mc.Params["time_zone"] = "'+00:00'"
	mc.Params["sql_mode"] = sessionSQLMode
	// The server itself ends a session whose client went silent, frozen
	// or cut off, and with it any transaction it held open and its locks
	// (the default, 8 hours, would let one stopped replica hold a row for
	// that long). Idle connections are closed by the pool first
	// (openDB), so only a silent client meets this limit.
	mc.Params["wait_timeout"] = strconv.FormatInt(poolWaitTimeout(timeout), 10)
}

// poolWaitTimeout is the wait_timeout, in whole seconds, of the service's
// connections: twice the database timeout, rounded up, at least 2. No
// statement of a request is sent later than the timeout after the one
// before it, so only a client that stopped (SIGSTOP, a cut network)
// reaches it. Sequencer rounds use a tighter limit (sequencerRound).
func poolWaitTimeout(timeout time.Duration) int64 {
	return max(2, int64(math.Ceil(2*timeout.Seconds())))
}

// openDB opens a pool on mc with the configured limits. It does not
// connect: the service starts even while the database is down. plaintext,
// when not nil, counts the connections DB_TLS=preferred opens without TLS.
func openDB(mc *mysql.Config, cfg dbSettings, plaintext *plaintextWatch) (*sql.DB, error) {
	connector, err := watchPlaintext(mc, plaintext)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(cfg.MaxOpenConns)
	db.SetMaxIdleConns(cfg.MaxIdleConns)
	db.SetConnMaxLifetime(cfg.ConnMaxLifetime)
	// Closed before the server's wait_timeout (applySessionSettings)
	// would: a connection the server dropped costs a failed first use.
	db.SetConnMaxIdleTime(max(cfg.Timeout, time.Second))
	return db, nil
}
