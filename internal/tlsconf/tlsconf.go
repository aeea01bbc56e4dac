// Package tlsconf turns the [tls] section of the configuration into the one *tls.Config
// every listener presents (STARTTLS on smtp, submission and imap; implicit TLS on
// submissions and imaps).
//
// Two sources are supported. Certificate files (typically certbot's fullchain.pem and
// privkey.pem) are watched by modification time and re-read at most once a minute from
// GetCertificate, so a renewal is picked up without a restart and a half-written renewal
// never replaces a working certificate. Without files, a self-signed certificate for the
// host name is generated once in data_dir/tls and reused: a new server then speaks TLS from
// its first start (RFC 3207 opportunistic STARTTLS between MTAs does not require a trusted
// certificate), and its operator is told by a warning that clients will not trust it.
//
// Upstream: internal/config (config.TLS, hostname, data_dir). Downstream: internal/app,
// which hands the returned *tls.Config to the SMTP and IMAP servers.
package tlsconf

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/repute-mail/repute/internal/config"
)

// DefaultReloadInterval is how often Load's certificate files are checked for changes.
const DefaultReloadInterval = time.Minute

// Load returns the TLS configuration for c: the certificate files when cert_file and
// key_file are set, else a self-signed certificate for hostname kept in dataDir/tls.
// ACME (acme_email) is rejected: this version does not support it yet.
func Load(c config.TLS, hostname, dataDir string, log *slog.Logger) (*tls.Config, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch {
	case c.ACMEEmail != "":
		return nil, errors.New("tls.acme_email is set, but ACME is not supported yet in this version; " +
			"set tls.cert_file and tls.key_file (for example certbot's fullchain.pem and privkey.pem), " +
			"or leave all three empty to use a self-signed certificate")
	case c.CertFile == "" && c.KeyFile == "":
		cert, err := loadSelfSigned(hostname, dataDir, time.Now(), log)
		if err != nil {
			return nil, err
		}
		return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
	case c.CertFile == "" || c.KeyFile == "":
		return nil, errors.New("tls.cert_file and tls.key_file must be set together")
	}
	fc, err := NewFileCert(c.CertFile, c.KeyFile, DefaultReloadInterval, log)
	if err != nil {
		return nil, err
	}
	if hostname != "" {
		if err := fc.current().Leaf.VerifyHostname(hostname); err != nil {
			log.Warn("the TLS certificate does not cover the configured hostname; clients checking it will fail",
				"cert_file", c.CertFile, "hostname", hostname, "err", err)
		}
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: fc.GetCertificate}, nil
}

// leafSummary returns log attributes describing a certificate.
func leafSummary(cert *tls.Certificate) []any {
	if cert.Leaf == nil {
		return nil
	}
	return []any{"subject", cert.Leaf.Subject.CommonName, "names", cert.Leaf.DNSNames,
		"not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339)}
}

// checkExpiry logs a warning for a certificate that has expired or soon will.
func checkExpiry(cert *tls.Certificate, file string, now time.Time, log *slog.Logger) {
	if cert.Leaf == nil {
		return
	}
	switch left := cert.Leaf.NotAfter.Sub(now); {
	case left <= 0:
		log.Warn("the TLS certificate has expired; clients checking it will fail", "cert_file", file,
			"not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	case left < 14*24*time.Hour:
		log.Warn("the TLS certificate expires soon", "cert_file", file,
			"not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339),
			"days_left", fmt.Sprintf("%.1f", left.Hours()/24))
	}
}
