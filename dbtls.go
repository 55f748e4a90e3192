package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

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
