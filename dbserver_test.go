package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
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

// A private MariaDB server for one test: its own data directory, socket
// and TCP port on 127.0.0.1, optionally with TLS from a CA made for it.
// The shared server of TEST_DB_DSN is never touched.

// Account created on every private server, reachable over TCP with a
// password (mysql_native_password), with all privileges.
const (
	privateServerUser     = "usersvc"
	privateServerPassword = "usersvc-test-pw"
)

// The MariaDB programs the private servers need.
const (
	mariadbdPath   = "/usr/sbin/mariadbd"
	installDBName  = "mariadb-install-db"
	privateStartup = 30 * time.Second // bound on waiting for a server to answer
	privateStop    = 10 * time.Second // SIGTERM grace before SIGKILL
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
	Dir    string // everything of the server lives here; removed at cleanup

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
	tb     testing.TB
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
	begin := time.Now()
	if opts.RequireSecureTransport && !opts.TLS {
		t.Fatal("startPrivateMariaDB: RequireSecureTransport needs TLS")
	}
	mariadbd, installDB := privateServerPrograms(t)

	dir, err := os.MkdirTemp(privateServerBaseDir(), "usersvc-mariadb-")
	if err != nil {
		t.Fatal(err)
	}
	s := &privateServer{
		Dir:      dir,
		Socket:   filepath.Join(dir, "mariadb.sock"),
		LogFile:  filepath.Join(dir, "error.log"),
		User:     privateServerUser,
		Password: privateServerPassword,
		tb:       t,
	}
	// Registered first, so it runs last: after stop, and after the dump
	// of the log on failure.
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove private server directory: %v", err)
		}
	})

	var tlsArgs []string
	if opts.TLS {
		tlsArgs = s.writeCertificates(t)
	}

	datadir := filepath.Join(dir, "data")
	// A tmpdir of its own: at start-up mariadbd deletes every "#sql*" file
	// in its tmpdir as a leftover of its own last run, and in the shared
	// /tmp those are the temporary tables other servers are using, the
	// shared server of TEST_DB_DSN among them (which then fails a query
	// with error 6, or crashes in ha_maria::drop_table).
	tmpdir := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmpdir, 0o700); err != nil {
		t.Fatal(err)
	}
	install := exec.Command(installDB,
		"--no-defaults",
		"--datadir="+datadir,
		"--tmpdir="+tmpdir,
		"--auth-root-authentication-method=normal",
		"--skip-test-db",
		"--skip-name-resolve",
		"--innodb-buffer-pool-size=32M",
		"--innodb-log-file-size=8M", // 22 MB on disk instead of 114 MB
	)
	if os.Geteuid() == 0 {
		install.Args = append(install.Args, "--user=root")
	}
	installStart := time.Now()
	if out, err := install.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", installDB, err, out)
	}
	s.InstallTime = time.Since(installStart)

	args := []string{
		"--no-defaults",
		"--datadir=" + datadir,
		"--tmpdir=" + tmpdir,
		"--socket=" + s.Socket,
		"--bind-address=127.0.0.1",
		"--skip-name-resolve",
		"--pid-file=" + filepath.Join(dir, "mariadbd.pid"),
		"--log-error=" + s.LogFile,
		"--innodb-buffer-pool-size=32M",
		"--innodb-log-file-size=8M",
		"--skip-log-bin",
	}
	if os.Geteuid() == 0 {
		args = append(args, "--user=root")
	}
	args = append(args, tlsArgs...)
	if opts.RequireSecureTransport {
		args = append(args, "--require-secure-transport=ON")
	}
	args = append(args, opts.ExtraArgs...)

	t.Cleanup(func() {
		if t.Failed() {
			s.logTail(40)
		}
	})
	t.Cleanup(s.stop)

	// A free port can be taken between finding it and the server binding
	// it: then the server exits at once, and another port is tried.
	startStart := time.Now()
	for attempt := 1; ; attempt++ {
		port, err := freeLocalPort()
		if err != nil {
			t.Fatal(err)
		}
		err = s.run(mariadbd, append(args, "--port="+strconv.Itoa(port)))
		if err == nil {
			s.Port = port
			s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
			break
		}
		log, _ := os.ReadFile(s.LogFile)
		if attempt < 3 && bytes.Contains(log, []byte("Address already in use")) {
			os.Remove(s.LogFile)
			continue
		}
		t.Fatalf("private MariaDB did not start: %v", err) // the log follows
	}
	s.StartTime = time.Since(startStart)

	s.createUser(t)
	s.Total = time.Since(begin)
	return s
}

// privateServerPrograms finds mariadbd and mariadb-install-db, skipping
// the test when they are missing (failing it under CI=true).
func privateServerPrograms(t testing.TB) (mariadbd, installDB string) {
	t.Helper()
	var missing []string
	if _, err := os.Stat(mariadbdPath); err != nil {
		missing = append(missing, mariadbdPath)
	}
	installDB, err := exec.LookPath(installDBName)
	if err != nil {
		missing = append(missing, installDBName)
	}
	if len(missing) > 0 {
		skipUnlessCI(t, "no private MariaDB server: missing "+strings.Join(missing, ", ")+
			" (Debian: apt-get install mariadb-server)")
	}
	return mariadbdPath, installDB
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

// stop ends the server: SIGTERM, then SIGKILL after privateStop.
func (s *privateServer) stop() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(privateStop):
		s.tb.Logf("private MariaDB ignored SIGTERM for %v: killing it", privateStop)
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

// Exec runs statements as root over the socket, failing the test on error:
// for changing the server under a test (SET GLOBAL, ALTER USER ...).
func (s *privateServer) Exec(t testing.TB, stmts ...string) {
	t.Helper()
	db := s.rootDB()
	defer db.Close()
	for _, stmt := range stmts {
		if _, err := db.Exec(stmt); err != nil {
			t.Fatalf("private MariaDB: %s: %v", stmt, err)
		}
	}
}

// createUser makes the password account the tests connect with over TCP,
// and drops the anonymous accounts, which would otherwise match first.
func (s *privateServer) createUser(t testing.TB) {
	t.Helper()
	s.Exec(t,
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

// TLSConfig is a client configuration that trusts only the server's CA
// and checks the server's name (which may be "127.0.0.1" or "localhost").
func (s *privateServer) TLSConfig(serverName string) *tls.Config {
	return &tls.Config{RootCAs: certPool(s.CAPEM), ServerName: serverName, MinVersion: tls.VersionTLS12}
}

// WrongTLSConfig is like TLSConfig but trusts only the unrelated CA.
func (s *privateServer) WrongTLSConfig(serverName string) *tls.Config {
	return &tls.Config{RootCAs: certPool(s.WrongCAPEM), ServerName: serverName, MinVersion: tls.VersionTLS12}
}

// certPool holds the certificates in pemCerts: none for a server without
// TLS, so that a client trusting it verifies nothing.
func certPool(pemCerts []byte) *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemCerts)
	return pool
}

// writeCertificates makes the CA, the server certificate and the wrong CA,
// writes them into s.Dir, and returns mariadbd's options for them.
func (s *privateServer) writeCertificates(t testing.TB) []string {
	t.Helper()
	ca, caKey, caPEM := newTestCA(t, "usersvc private MariaDB test CA")
	_, _, wrongPEM := newTestCA(t, "usersvc unrelated test CA")

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(t),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}

	s.CAPEM, s.WrongCAPEM = caPEM, wrongPEM
	s.CAFile = filepath.Join(s.Dir, "ca.pem")
	s.WrongCAFile = filepath.Join(s.Dir, "wrong-ca.pem")
	s.CertFile = filepath.Join(s.Dir, "server-cert.pem")
	s.KeyFile = filepath.Join(s.Dir, "server-key.pem")
	for name, data := range map[string][]byte{
		s.CAFile:      caPEM,
		s.WrongCAFile: wrongPEM,
		s.CertFile:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		s.KeyFile:     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	} {
		if err := os.WriteFile(name, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return []string{"--ssl-ca=" + s.CAFile, "--ssl-cert=" + s.CertFile, "--ssl-key=" + s.KeyFile}
}

// newTestCA makes a self-signed ECDSA P-256 CA valid for a day.
func newTestCA(t testing.TB, name string) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func randomSerial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// logTail logs the end of the server's error log.
func (s *privateServer) logTail(n int) {
	log, err := os.ReadFile(s.LogFile)
	if err != nil {
		return
	}
	s.tb.Logf("private MariaDB error log (%s), last lines:\n%s", s.LogFile, lastLines(log, n))
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// registerTLS registers c with the driver under a fresh name for the
// test, removed when it ends, and returns the name for Config.TLSConfig
// or a DSN's tls=.
func registerTLS(t testing.TB, c *tls.Config) string {
	t.Helper()
	name := "privdb-" + randomHex(6)
	if err := mysql.RegisterTLSConfig(name, c); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mysql.DeregisterTLSConfig(name) })
	return name
}

// pingWith opens a one-connection pool on mc and pings it.
func pingWith(t testing.TB, mc *mysql.Config) (*sql.DB, error) {
	t.Helper()
	connector, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(connector)
	t.Cleanup(func() { db.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return db, db.PingContext(ctx)
}

// sslCipher is the session's Ssl_cipher status: "" on a plain connection.
func sslCipher(t testing.TB, db *sql.DB) string {
	t.Helper()
	var name, cipher string
	if err := db.QueryRow("SHOW SESSION STATUS LIKE 'Ssl_cipher'").Scan(&name, &cipher); err != nil {
		t.Fatalf("Ssl_cipher: %v", err)
	}
	return cipher
}

func TestPrivateMariaDBTLS(t *testing.T) {
	srv := startPrivateMariaDB(t, privateServerOptions{TLS: true, RequireSecureTransport: true})
	t.Logf("private MariaDB at %s in %s: install %v, start %v, total %v",
		srv.Addr, srv.Dir, srv.InstallTime.Round(time.Millisecond),
		srv.StartTime.Round(time.Millisecond), srv.Total.Round(time.Millisecond))

	t.Run("verified TLS", func(t *testing.T) {
		for _, serverName := range []string{"127.0.0.1", "localhost", ""} {
			mc := srv.Config()
			mc.TLSConfig = registerTLS(t, srv.TLSConfig(serverName))
			db, err := pingWith(t, mc)
			if err != nil {
				t.Fatalf("ServerName %q: %v", serverName, err)
			}
			cipher := sslCipher(t, db)
			if cipher == "" {
				t.Fatalf("ServerName %q: connected without TLS", serverName)
			}
			var version string
			db.QueryRow("SHOW SESSION STATUS LIKE 'Ssl_version'").Scan(new(string), &version)
			t.Logf("ServerName %q: %s, %s", serverName, version, cipher)
		}
	})

	t.Run("plain refused", func(t *testing.T) {
		_, err := pingWith(t, srv.Config())
		if err == nil {
			t.Fatal("a plain connection got through require_secure_transport")
		}
		t.Logf("plain connection: %T: %v", err, err)
		var me *mysql.MySQLError
		if !errors.As(err, &me) {
			t.Fatalf("want a *mysql.MySQLError, got %T", err)
		}
		t.Logf("number %d, SQLSTATE %s", me.Number, string(me.SQLState[:]))
		log, _ := os.ReadFile(srv.LogFile)
		t.Logf("server log:\n%s", lastLines(log, 3))

		// The same account gets in once the server stops requiring TLS:
		// the refusal is require_secure_transport's, not the password's.
		srv.Exec(t, "SET GLOBAL require_secure_transport = OFF")
		defer srv.Exec(t, "SET GLOBAL require_secure_transport = ON")
		db, err := pingWith(t, srv.Config())
		if err != nil {
			t.Fatalf("plain connection without require_secure_transport: %v", err)
		}
		if c := sslCipher(t, db); c != "" {
			t.Fatalf("plain connection has cipher %q", c)
		}
	})

	t.Run("wrong CA", func(t *testing.T) {
		mc := srv.Config()
		mc.TLSConfig = registerTLS(t, srv.WrongTLSConfig("127.0.0.1"))
		_, err := pingWith(t, mc)
		if err == nil {
			t.Fatal("a server certificate from another CA was accepted")
		}
		t.Logf("wrong CA: %T: %v", err, err)
		var verr *tls.CertificateVerificationError
		if !errors.As(err, &verr) {
			t.Fatalf("want a *tls.CertificateVerificationError, got %T", err)
		}
		var uerr x509.UnknownAuthorityError
		if !errors.As(err, &uerr) {
			t.Fatalf("want an x509.UnknownAuthorityError inside, got %T", verr.Err)
		}
		t.Logf("wrapped: %T: %v", verr.Err, verr.Err)
	})

	t.Run("wrong name", func(t *testing.T) {
		mc := srv.Config()
		mc.TLSConfig = registerTLS(t, srv.TLSConfig("db.example.com"))
		_, err := pingWith(t, mc)
		var herr x509.HostnameError
		if !errors.As(err, &herr) {
			t.Fatalf("want an x509.HostnameError, got %T: %v", err, err)
		}
		t.Logf("wrong name: %T: %v", err, err)
	})

	t.Run("skip-verify", func(t *testing.T) {
		wantTLSWith(t, srv, "skip-verify")
	})

	t.Run("preferred on TLS server", func(t *testing.T) {
		// preferred does not verify: it connects despite trusting no CA.
		wantTLSWith(t, srv, "preferred")
	})

	plain := startPrivateMariaDB(t, privateServerOptions{})
	t.Logf("plain private MariaDB at %s: total %v", plain.Addr, plain.Total.Round(time.Millisecond))

	t.Run("preferred falls back", func(t *testing.T) {
		mc := plain.Config()
		mc.TLSConfig = "preferred"
		db, err := pingWith(t, mc)
		if err != nil {
			t.Fatal(err)
		}
		if c := sslCipher(t, db); c != "" {
			t.Fatalf("a server without TLS gave cipher %q", c)
		}
	})

	t.Run("required TLS on plain server", func(t *testing.T) {
		mc := plain.Config()
		mc.TLSConfig = "true"
		_, err := pingWith(t, mc)
		if !errors.Is(err, mysql.ErrNoTLS) {
			t.Fatalf("want mysql.ErrNoTLS, got %T: %v", err, err)
		}
		t.Logf("tls=true on a server without TLS: %T: %v", err, err)
	})
}

// wantTLSWith connects to srv with the driver's tls setting mode and
// fails unless the connection uses TLS.
func wantTLSWith(t *testing.T, srv *privateServer, mode string) {
	t.Helper()
	mc := srv.Config()
	mc.TLSConfig = mode
	db, err := pingWith(t, mc)
	if err != nil {
		t.Fatal(err)
	}
	if sslCipher(t, db) == "" {
		t.Fatalf("tls=%s connected without TLS", mode)
	}
}
