package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// A private MariaDB server: its own data directory, socket and TCP port on
// 127.0.0.1, optionally with TLS from a CA made for it. The TLS tests
// start one each (startPrivateMariaDB); a run whose configured server
// does not answer starts one for all its database tests
// (dbserver_run_test.go). The shared server of TEST_DB_DSN is never
// touched.

// Account created on every private server, reachable over TCP with a
// password (mysql_native_password), with all privileges.
const (
	privateServerUser     = "usersvc"
	privateServerPassword = "usersvc-test-pw"
)

const (
	privateStartup = 30 * time.Second // bound on waiting for a server to answer
	privateStop    = 10 * time.Second // SIGTERM grace before SIGKILL

	// privateDirPrefix starts the name of each private server's
	// directory, followed by the pid of the test binary that owns it and
	// a dash, so that a later run can remove what a killed one left
	// (removeStalePrivateServers).
	privateDirPrefix = "usersvc-mariadb-"
)

type privateServerOptions struct {
	// TLS gives the server a certificate for 127.0.0.1, ::1 and localhost,
	// signed by a CA generated for this server alone.
	TLS bool
	// RequireSecureTransport refuses unencrypted TCP connections (the
	// socket still counts as secure). It needs TLS.
	RequireSecureTransport bool
	// ExtraArgs are appended to mariadbd's command line (not to
	// mariadb-install-db's), so they override the helper's own options.
	ExtraArgs []string
}

type privateServer struct {
	Addr   string // "127.0.0.1:port", for mysql.Config.Addr with Net "tcp"
	Port   int
	Socket string // unix socket; root without password reaches it
	Dir    string // everything of the server lives here; removed by Close

	// With TLS: the CA that signed the server certificate, as PEM and as a
	// file, and the server's own certificate and key files.
	CAPEM    []byte
	CAFile   string
	CertFile string
	KeyFile  string
	// WrongCAPEM and WrongCAFile are another CA, unrelated to the server,
	// for tests that a client checks whom it talks to. Set with TLS.
	WrongCAPEM  []byte
	WrongCAFile string

	User     string // privateServerUser
	Password string // privateServerPassword
	LogFile  string // the server's error log

	InstallTime time.Duration // mariadb-install-db
	StartTime   time.Duration // mariadbd started until it answered
	Total       time.Duration // everything: certificates, install, start, user

	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has been waited for
}

// mariadbPrograms are a MariaDB server and the program that makes its
// data directory.
type mariadbPrograms struct{ server, installDB string }

// findMariaDBPrograms finds mariadbd and mariadb-install-db, or the older
// names mysqld and mysql_install_db that MariaDB's packages still
// install, on PATH or in the sbin directories a normal user's PATH
// often lacks. (MySQL's own mysqld has no install program: it is not
// used.)
func findMariaDBPrograms() (mariadbPrograms, error) {
	for _, names := range [][2]string{{"mariadbd", "mariadb-install-db"}, {"mysqld", "mysql_install_db"}} {
		server, serverErr := lookProgram(names[0])
		installDB, installErr := lookProgram(names[1])
		if serverErr == nil && installErr == nil {
			return mariadbPrograms{server: server, installDB: installDB}, nil
		}
	}
	return mariadbPrograms{}, errors.New("MariaDB is not installed: no mariadbd with mariadb-install-db " +
		"(Debian: apt-get install mariadb-server)")
}

// lookProgram finds the program name on PATH or in an sbin directory.
func lookProgram(name string) (string, error) {
	if path, err := exec.LookPath(name); err == nil {
		return path, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		path := filepath.Join(dir, name)
		if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return path, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

// startPrivateMariaDB starts a MariaDB server for the test and stops it,
// removing all its files, when the test ends. Without MariaDB installed
// the test is skipped, or fails under CI=true; under -short it is
// skipped (a server takes seconds to start).
func startPrivateMariaDB(t testing.TB, opts privateServerOptions) *privateServer {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a private MariaDB server; run without -short")
	}
	progs, err := findMariaDBPrograms()
	if err != nil {
		skipUnlessCI(t, "no private MariaDB server: "+err.Error())
	}
	s, err := launchPrivateMariaDB(progs, opts)
	if err != nil {
		t.Fatalf("private MariaDB: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Log(s.logTail(40))
		}
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// launchPrivateMariaDB starts a MariaDB server with progs: a directory
// of its own, a fresh data directory, the server on a free port, and the
// password account. The caller ends it with Close. On error nothing of
// it is left, and the error ends with the end of the server's log.
func launchPrivateMariaDB(progs mariadbPrograms, opts privateServerOptions) (_ *privateServer, err error) {
	begin := time.Now()
	if opts.RequireSecureTransport && !opts.TLS {
		return nil, errors.New("RequireSecureTransport needs TLS")
	}
	base := privateServerBaseDir()
	removeStalePrivateServers(base)
	dir, err := os.MkdirTemp(base, privateDirPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return nil, err
	}
	s := &privateServer{
		Dir:      dir,
		Socket:   filepath.Join(dir, "mariadb.sock"),
		LogFile:  filepath.Join(dir, "error.log"),
		User:     privateServerUser,
		Password: privateServerPassword,
	}
	defer func() {
		if err != nil {
			if tail := s.logTail(40); tail != "" {
				err = fmt.Errorf("%w\n%s", err, tail)
			}
			err = errors.Join(err, s.Close())
		}
	}()
	args, err := s.prepare(progs.installDB, opts)
	if err != nil {
		return nil, err
	}
	startBegin := time.Now()
	if err := s.startOnFreePort(progs.server, args); err != nil {
		return nil, err
	}
	s.StartTime = time.Since(startBegin)
	if err := s.createUser(); err != nil {
		return nil, err
	}
	s.Total = time.Since(begin)
	return s, nil
}

// prepare writes the certificates (with TLS), makes the data directory,
// and returns mariadbd's options, the port aside.
func (s *privateServer) prepare(installDB string, opts privateServerOptions) ([]string, error) {
	var tlsArgs []string
	if opts.TLS {
		var err error
		if tlsArgs, err = s.writeCertificates(); err != nil {
			return nil, fmt.Errorf("certificates: %w", err)
		}
	}
	datadir := filepath.Join(s.Dir, "data")
	// A tmpdir of its own: at start-up mariadbd deletes every "#sql*" file
	// in its tmpdir as a leftover of its own last run, and in the shared
	// /tmp those are the temporary tables other servers are using, the
	// shared server of TEST_DB_DSN among them (which then fails a query
	// with error 6, or crashes in ha_maria::drop_table).
	tmpdir := filepath.Join(s.Dir, "tmp")
	if err := os.Mkdir(tmpdir, 0o700); err != nil {
		return nil, err
	}
	if err := s.install(installDB, datadir, tmpdir); err != nil {
		return nil, err
	}
	args := []string{
		"--no-defaults",
		"--datadir=" + datadir,
		"--tmpdir=" + tmpdir,
		"--socket=" + s.Socket,
		"--bind-address=127.0.0.1",
		"--skip-name-resolve",
		"--pid-file=" + filepath.Join(s.Dir, "mariadbd.pid"),
		"--log-error=" + s.LogFile,
		"--innodb-buffer-pool-size=32M",
		"--innodb-log-file-size=8M",
		"--skip-log-bin",
	}
	args = append(args, asRootOption()...)
	args = append(args, tlsArgs...)
	if opts.RequireSecureTransport {
		args = append(args, "--require-secure-transport=ON")
	}
	return append(args, opts.ExtraArgs...), nil
}

// install makes a fresh data directory with installDB.
func (s *privateServer) install(installDB, datadir, tmpdir string) error {
	cmd := exec.Command(installDB,
		"--no-defaults",
		"--datadir="+datadir,
		"--tmpdir="+tmpdir,
		"--auth-root-authentication-method=normal",
		"--skip-test-db",
		"--skip-name-resolve",
		"--innodb-buffer-pool-size=32M",
		"--innodb-log-file-size=8M", // 22 MB on disk instead of 114 MB
	)
	cmd.Args = append(cmd.Args, asRootOption()...)
	begin := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %v\n%s", installDB, err, out)
	}
	s.InstallTime = time.Since(begin)
	return nil
}

// asRootOption is the option mariadbd and mariadb-install-db need to run
// as root, which they otherwise refuse; a normal user needs none.
func asRootOption() []string {
	if os.Geteuid() == 0 {
		return []string{"--user=root"}
	}
	return nil
}

// startOnFreePort starts mariadbd with args on a free port. A free port
// can be taken between finding it and the server binding it: then the
// server exits at once, and another port is tried.
func (s *privateServer) startOnFreePort(mariadbd string, args []string) error {
	for attempt := 1; ; attempt++ {
		port, err := freeLocalPort()
		if err != nil {
			return err
		}
		err = s.run(mariadbd, append(args, "--port="+strconv.Itoa(port)))
		if err == nil {
			s.Port = port
			s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
			return nil
		}
		log, _ := os.ReadFile(s.LogFile)
		if attempt < 3 && bytes.Contains(log, []byte("Address already in use")) {
			os.Remove(s.LogFile)
			continue
		}
		return fmt.Errorf("private MariaDB did not start: %w", err)
	}
}

// privateServerBaseDir holds the servers' directories: /var/tmp, whose
// short paths keep the socket path under the 108-byte limit that
// t.TempDir's long names can pass.
func privateServerBaseDir() string {
	if fi, err := os.Stat("/var/tmp"); err == nil && fi.IsDir() {
		return "/var/tmp"
	}
	return os.TempDir()
}

// removeStalePrivateServers removes from base the directories of private
// servers whose test binary is gone: killed by its deadline, a panic or
// a signal, it could not remove them, and its servers died with it
// (setParentDeathSignal). Directories of a live binary, such as another
// run's in parallel, and other names are left alone.
func removeStalePrivateServers(base string) {
	entries, err := os.ReadDir(base)
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), privateDirPrefix)
		pidText, _, dashed := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if !ok || !dashed || err != nil || pid <= 0 || !e.IsDir() || processAlive(pid) {
			continue
		}
		os.RemoveAll(filepath.Join(base, e.Name()))
	}
}

// freeLocalPort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freeLocalPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// run starts mariadbd with args and waits until it answers on its socket,
// or exits, or privateStartup passes.
func (s *privateServer) run(mariadbd string, args []string) error {
	cmd := exec.Command(mariadbd, args...)
	cmd.Dir = s.Dir
	setParentDeathSignal(cmd) // no server outlives a killed test binary
	// The parent-death signal fires when the OS thread that started the
	// server ends, not the process: Go ends a thread whose goroutine exits
	// locked to it (the bcrypt workers do), so a server started from any
	// pooled thread could be killed mid-test. The server is started from
	// a thread locked to this goroutine, which lives as long as the server.
	exited := make(chan struct{})
	started := make(chan error)
	var waitErr error
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		waitErr = cmd.Wait()
		close(exited)
	}()
	if err := <-started; err != nil {
		return err
	}
	s.cmd, s.exited = cmd, exited

	db := s.rootDB()
	defer db.Close()
	deadline := time.Now().Add(privateStartup)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := db.PingContext(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			s.cmd, s.exited = nil, nil
			return fmt.Errorf("mariadbd exited: %v", waitErr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.stop()
			return fmt.Errorf("mariadbd did not answer within %v: %v", privateStartup, err)
		}
	}
}

// Close stops the server and removes its directory; the error says what
// stayed.
func (s *privateServer) Close() error {
	s.stop()
	if err := os.RemoveAll(s.Dir); err != nil {
		return fmt.Errorf("remove private server directory: %w", err)
	}
	return nil
}

// stop ends the server: SIGTERM, then SIGKILL after privateStop, which
// it notes on stderr (shown with -v or when the run fails).
func (s *privateServer) stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(privateStop):
		fmt.Fprintf(os.Stderr, "usersvc: private MariaDB in %s ignored SIGTERM for %v: killing it\n", s.Dir, privateStop)
		s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd, s.exited = nil, nil
}

// rootDB is a pool on the server's socket as root, which needs no password
// and, being a socket, no TLS even under require_secure_transport.
func (s *privateServer) rootDB() *sql.DB {
	mc := mysql.NewConfig()
	mc.Net, mc.Addr, mc.User = "unix", s.Socket, "root"
	mc.Timeout = time.Second
	mc.Logger = &mysql.NopLogger{} // "connection refused" while it starts
	connector, err := mysql.NewConnector(mc)
	if err != nil {
		panic(err) // a static, valid configuration
	}
	return sql.OpenDB(connector)
}

// exec runs statements as root over the socket, stopping at the first
// error.
func (s *privateServer) exec(stmts ...string) error {
	db := s.rootDB()
	defer db.Close()
	for _, stmt := range stmts {
		if _, err := db.Exec(stmt); err != nil {
			return fmt.Errorf("private MariaDB: %s: %w", stmt, err)
		}
	}
	return nil
}

// Exec is exec failing the test on error: for changing the server under
// a test (SET GLOBAL, ALTER USER ...).
func (s *privateServer) Exec(t testing.TB, stmts ...string) {
	t.Helper()
	if err := s.exec(stmts...); err != nil {
		t.Fatal(err)
	}
}

// createUser makes the password account the tests connect with over TCP,
// and drops the anonymous accounts, which would otherwise match first.
func (s *privateServer) createUser() error {
	return s.exec(
		"DELETE FROM mysql.global_priv WHERE User = ''",
		"FLUSH PRIVILEGES",
		"CREATE USER '"+s.User+"'@'%' IDENTIFIED BY '"+s.Password+"'",
		"GRANT ALL PRIVILEGES ON *.* TO '"+s.User+"'@'%' WITH GRANT OPTION",
	)
}

// Config is a driver configuration for the server's password account over
// TCP, with no TLS set and the service's session settings.
func (s *privateServer) Config() *mysql.Config {
	mc := mysql.NewConfig()
	mc.Net, mc.Addr = "tcp", s.Addr
	mc.User, mc.Passwd = s.User, s.Password
	applySessionSettings(mc, testTimeout)
	mc.Logger = &mysql.NopLogger{} // tests provoke failed handshakes
	return mc
}

// logTail is the end of the server's error log, introduced, or "" when
// there is none.
func (s *privateServer) logTail(n int) string {
	log, err := os.ReadFile(s.LogFile)
	if err != nil || len(log) == 0 {
		return ""
	}
	return fmt.Sprintf("private MariaDB error log (%s), last lines:\n%s", s.LogFile, lastLines(log, n))
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
