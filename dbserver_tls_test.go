package main

import (
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
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// TLS on the private MariaDB servers: their certificates, and the proof
// that the driver verifies whom it talks to.

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
func (s *privateServer) writeCertificates() ([]string, error) {
	ca, caKey, caPEM, err := newTestCA("usersvc private MariaDB test CA")
	if err != nil {
		return nil, err
	}
	_, _, wrongPEM, err := newTestCA("usersvc unrelated test CA")
	if err != nil {
		return nil, err
	}
	certPEM, keyPEM, err := newServerCertificate(ca, caKey)
	if err != nil {
		return nil, err
	}
	s.CAPEM, s.WrongCAPEM = caPEM, wrongPEM
	s.CAFile = filepath.Join(s.Dir, "ca.pem")
	s.WrongCAFile = filepath.Join(s.Dir, "wrong-ca.pem")
	s.CertFile = filepath.Join(s.Dir, "server-cert.pem")
	s.KeyFile = filepath.Join(s.Dir, "server-key.pem")
	for name, data := range map[string][]byte{s.CAFile: caPEM, s.WrongCAFile: wrongPEM, s.CertFile: certPEM, s.KeyFile: keyPEM} {
		if err := os.WriteFile(name, data, 0o600); err != nil {
			return nil, err
		}
	}
	return []string{"--ssl-ca=" + s.CAFile, "--ssl-cert=" + s.CertFile, "--ssl-key=" + s.KeyFile}, nil
}

// newServerCertificate makes a certificate and key for 127.0.0.1, ::1
// and localhost, valid for a day, signed by ca, both as PEM.
func newServerCertificate(ca *x509.Certificate, caKey *ecdsa.PrivateKey) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
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
		return nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), nil
}

// newTestCA makes a self-signed ECDSA P-256 CA valid for a day.
func newTestCA(name string) (*x509.Certificate, *ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
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
		return nil, nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, err
	}
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

func randomSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
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
