// Command clientcheck runs one short scenario through Go clients that two
// generators, ogen and oapi-codegen, made from the service's OpenAPI
// documents (openapi.json for the API, openapi-management.json for the
// management listener), against the real service: the binary given with
// -service, started on a database of its own, created on the server that
// TEST_DB_DSN names (as the tests do) and dropped at the end.
//
// run.sh generates the clients into gen/ (not committed) and builds the
// service first; this directory is its own module, so that the service's
// go.mod keeps only its two dependencies.
//
//	go run . -service /tmp/usersvc
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "clientcheck:", err)
		os.Exit(1)
	}
}

// target is the running service: its two listeners and the bootstrap
// admin's credentials.
type target struct {
	api, management string // base URLs
	admin, password string
}

// scenario is one client's run of the scenario; steps counts what it did.
type scenario func(ctx context.Context, t target, wire *wireLog) (steps int, err error)

func run(args []string) error {
	flags := flag.NewFlagSet("clientcheck", flag.ContinueOnError)
	binary := flags.String("service", "", "the service binary to run")
	timeout := flags.Duration("timeout", 3*time.Minute, "limit on the whole run")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if *binary == "" {
		return errors.New("-service is required")
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	dsn := os.Getenv("TEST_DB_DSN")
	if dsn == "" {
		dsn = "root@tcp(127.0.0.1:3306)/"
	}
	db, drop, err := freshDatabase(ctx, dsn)
	if err != nil {
		return err
	}
	defer drop()
	svc, err := startService(ctx, *binary, db)
	if err != nil {
		return err
	}
	defer svc.stop()
	for _, c := range []struct {
		name string
		run  scenario
	}{{"ogen", ogenScenario}, {"oapi-codegen", oapiScenario}} {
		start := time.Now()
		steps, err := c.run(ctx, svc.target, &wireLog{})
		if err != nil {
			return fmt.Errorf("%s client: %w\nservice log:\n%s", c.name, err, svc.log())
		}
		fmt.Printf("%s: %d steps passed in %v\n", c.name, steps, time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// database is a database of the run's own, and an account that may use
// only it, reached over TCP as the service connects.
type database struct {
	host, port     string
	name           string
	user, password string
}

// freshDatabase creates a database and an account for it on the server
// dsn names, and returns them with a function that drops both. The
// account has a password and reaches the server over TCP, also where dsn
// is root over a socket.
func freshDatabase(ctx context.Context, dsn string) (database, func(), error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return database{}, nil, fmt.Errorf("TEST_DB_DSN: %w", err)
	}
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return database{}, nil, fmt.Errorf("TEST_DB_DSN: %w", err)
	}
	suffix := randomHex(4)
	db := database{host: "127.0.0.1", port: "3306", name: "clientcheck_" + suffix, user: "clientcheck_" + suffix, password: "pw-" + randomHex(8)}
	if cfg.Net == "tcp" {
		if host, port, err := net.SplitHostPort(cfg.Addr); err == nil {
			db.host, db.port = host, port
		}
	}
	drop := func() {
		for _, stmt := range []string{"DROP DATABASE IF EXISTS `" + db.name + "`", "DROP USER IF EXISTS '" + db.user + "'@'%'"} {
			if _, err := admin.Exec(stmt); err != nil {
				fmt.Fprintf(os.Stderr, "clientcheck: %s: %v\n", stmt, err)
			}
		}
		admin.Close()
	}
	for _, stmt := range []string{
		"CREATE DATABASE `" + db.name + "`",
		"CREATE USER '" + db.user + "'@'%' IDENTIFIED BY '" + db.password + "'",
		"GRANT ALL ON `" + db.name + "`.* TO '" + db.user + "'@'%'",
	} {
		if _, err := admin.ExecContext(ctx, stmt); err != nil {
			drop()
			return database{}, nil, fmt.Errorf("TEST_DB_DSN %s: %s: %w", cfg.Addr, stmt, err)
		}
	}
	return db, drop, nil
}

// service is the service binary running as a child process.
type service struct {
	target
	cmd    *exec.Cmd
	output *syncBuffer
	exited chan struct{} // closed when the process has ended
	err    error         // how it ended, once exited is closed
}

// startService runs binary on db, both listeners on free ports of
// 127.0.0.1, and returns once the management listener says it is ready.
func startService(ctx context.Context, binary string, db database) (*service, error) {
	t := target{admin: "clientcheck_admin", password: "clientcheck " + randomHex(8)}
	cmd := exec.Command(binary, "serve")
	cmd.Env = append(os.Environ(),
		"HTTP_ADDR=127.0.0.1:0", "MANAGEMENT_ADDR=127.0.0.1:0",
		"DB_HOST="+db.host, "DB_PORT="+db.port, "DB_USER="+db.user, "DB_PASSWORD="+db.password, "DB_NAME="+db.name,
		"SCHEMA_APPLY=true", "BCRYPT_COST=4", "BCRYPT_COST_UNBOUNDED=true", "LOG_LEVEL=info",
		"ADMIN_USERNAME="+t.admin, "ADMIN_EMAIL=clientcheck_admin@example.com", "ADMIN_PASSWORD="+t.password)
	out := &syncBuffer{}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", binary, err)
	}
	s := &service{target: t, cmd: cmd, output: out, exited: make(chan struct{})}
	listening := make(chan [2]string, 1)
	go func() {
		// The log is JSON lines; "listening" names both addresses.
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out.Write(append(sc.Bytes(), '\n'))
			var line struct {
				Msg            string `json:"msg"`
				Addr           string `json:"addr"`
				ManagementAddr string `json:"management_addr"`
			}
			if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "listening" {
				listening <- [2]string{line.Addr, line.ManagementAddr}
			}
		}
		s.err = cmd.Wait()
		close(s.exited)
	}()
	select {
	case addrs := <-listening:
		s.api, s.management = "http://"+addrs[0], "http://"+addrs[1]
	case <-s.exited:
		return nil, fmt.Errorf("the service stopped before listening: %v\n%s", s.err, out)
	case <-ctx.Done():
		s.stop()
		return nil, fmt.Errorf("the service did not listen: %w\n%s", ctx.Err(), out)
	}
	if err := s.waitReady(ctx); err != nil {
		s.stop()
		return nil, err
	}
	return s, nil
}

// waitReady polls the readiness probe until it answers 200: the schema is
// applied and the bootstrap admin exists.
func (s *service) waitReady(ctx context.Context) error {
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.management+"/health/ready", nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the service was not ready: %w\n%s", ctx.Err(), s.log())
		case <-s.exited:
			return fmt.Errorf("the service stopped: %v\n%s", s.err, s.log())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stop ends the service with SIGTERM, as an orchestrator would, and waits.
func (s *service) stop() {
	select {
	case <-s.exited:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
}

func (s *service) log() string { return s.output.String() }

// wireLog is an http.Client transport that keeps the last request body
// sent, so that a scenario can check what a generated client put on the
// wire (a null, not an absent member).
type wireLog struct {
	mu   sync.Mutex
	last []byte
}

func (w *wireLog) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	w.mu.Lock()
	w.last = body
	w.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

// lastBody is the body of the last request sent.
func (w *wireLog) lastBody() map[string]json.RawMessage {
	w.mu.Lock()
	defer w.mu.Unlock()
	var m map[string]json.RawMessage
	json.Unmarshal(w.last, &m)
	return m
}

// lastSent is the last request body sent, as text.
func (w *wireLog) lastSent() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.last)
}

// sentNull reports whether the last request body had member as null.
func (w *wireLog) sentNull(member string) bool {
	v, ok := w.lastBody()[member]
	return ok && string(v) == "null"
}

// unexpected describes an answer a step did not expect.
func unexpected(step string, res any, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", step, err)
	}
	return fmt.Errorf("%s: unexpected answer %T %+v", step, res, res)
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
