// Package tlsconf turns the [tls] section of the configuration into the certificates every
// TLS listener presents (STARTTLS on smtp, submission and imap; implicit TLS on
// submissions, imaps and https).
//
// Three sources are supported. Certificate files (typically certbot's fullchain.pem and
// privkey.pem) are watched by modification time and re-read at most once a minute from
// GetCertificate, so a renewal is picked up without a restart and a half-written renewal
// never replaces a working certificate. ACME (acme.go) obtains and renews certificates
// for the host name and the mta-sts and autoconfig names of every local domain from a CA
// such as Let's Encrypt. With neither, a self-signed certificate for the host name is
// generated once in data_dir/tls and reused: a new server then speaks TLS from its first
// start (RFC 3207 opportunistic STARTTLS between MTAs does not require a trusted
// certificate), and its operator is told by a warning that clients will not trust it.
//
// Upstream: internal/config (config.TLS, hostname, data_dir) and, for ACME, the store's
// list of local domains through Options.Domains. Downstream: internal/app, which hands
// Certs.TLSConfig to the SMTP and IMAP servers, Certs.HTTPSConfig to listen.https and
// Certs.HTTPChallengeHandler to listen.http.
package tlsconf

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/repute-mail/repute/internal/config"
)

// DefaultReloadInterval is how often Load's certificate files are checked for changes.
const DefaultReloadInterval = time.Minute

// Options are what Load needs besides the [tls] section. Only Logger matters without ACME.
type Options struct {
	Logger *slog.Logger // nil: no logging

	// Domains returns the local domains; with ACME, each gets certificates for
	// mta-sts.DOMAIN and autoconfig.DOMAIN. It is called at Start, every RefreshInterval
	// and after Refresh. nil: certificates for the host name only.
	Domains func(context.Context) ([]string, error)
	// RefreshInterval is how often Domains is called again; 0 means hourly.
	RefreshInterval time.Duration

	// HTTPAddr and HTTPSAddr are listen.http and listen.https. With ACME, the CA's
	// HTTP-01 challenge is answered on the first (through HTTPChallengeHandler) and its
	// TLS-ALPN-01 challenge on the second (through HTTPSConfig); "" turns that challenge
	// off. They must be bound before Start.
	HTTPAddr, HTTPSAddr string

	// RenewCheckInterval is how often the certificates are checked for renewal (0:
	// certmagic's default, 10 minutes). A renewal is due at a third of the lifetime left,
	// days ahead for a real CA; simulations with short certificates shorten it
	// (shaping.time_scale).
	RenewCheckInterval time.Duration
}

// Certs is the certificate source of every TLS listener. All its configurations share one
// GetCertificate, so a renewed certificate is served by every listener at once.
type Certs struct {
	mail  *tls.Config
	https *tls.Config
	acme  *acmeCerts // nil unless tls.acme_email is set
}

// Load returns the certificates for c: ACME when acme_email is set, the certificate files
// when cert_file and key_file are set, else a self-signed certificate for hostname kept in
// dataDir/tls. With ACME nothing is obtained before Start, but certmagic's maintenance
// goroutine runs from here on: call Close when done, even without Start.
func Load(c config.TLS, hostname, dataDir string, opts Options) (*Certs, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch {
	case c.ACMEEmail != "":
		if c.CertFile != "" || c.KeyFile != "" {
			return nil, errors.New("tls.acme_email and tls.cert_file/key_file are both set; use ACME or your own certificate, not both")
		}
		a, err := loadACME(c, hostname, dataDir, opts, log)
		if err != nil {
			return nil, err
		}
		return a.certs(), nil
	case c.CertFile == "" && c.KeyFile == "":
		cert, err := loadSelfSigned(hostname, dataDir, time.Now(), log)
		if err != nil {
			return nil, err
		}
		return staticCerts(&tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}), nil
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
	return staticCerts(&tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: fc.GetCertificate}), nil
}

// staticCerts serves one configuration on every listener.
func staticCerts(conf *tls.Config) *Certs { return &Certs{mail: conf, https: conf} }

// TLSConfig returns a new copy of the configuration for the mail listeners: STARTTLS on
// smtp, submission and imap, implicit TLS on submissions and imaps. It negotiates no
// application protocol (ALPN), so clients offering one still connect.
func (c *Certs) TLSConfig() *tls.Config { return c.mail.Clone() }

// HTTPSConfig returns a new copy of the configuration for listen.https. It is TLSConfig
// plus, with ACME, the answer to the CA's TLS-ALPN-01 challenge (RFC 8737): a handshake
// offering only the "acme-tls/1" protocol gets the challenge certificate.
func (c *Certs) HTTPSConfig() *tls.Config { return c.https.Clone() }

// HTTPChallengeHandler wraps the handler of listen.http so that it answers the CA's
// HTTP-01 challenges (RFC 8555 §8.3, /.well-known/acme-challenge/) and passes every other
// request to next. Without ACME it returns next.
func (c *Certs) HTTPChallengeHandler(next http.Handler) http.Handler {
	if c.acme == nil {
		return next
	}
	return c.acme.httpChallengeHandler(next)
}

// Start begins obtaining and renewing ACME certificates in the background; it returns
// without waiting for them. Call it once listen.http and listen.https are bound (the
// challenges are answered there). Without ACME it does nothing.
func (c *Certs) Start(ctx context.Context) error {
	if c.acme == nil {
		return nil
	}
	return c.acme.start(ctx)
}

// Refresh makes ACME read the local domains again now, so that a domain just added gets
// its certificates without waiting for the next hourly check. It does not block.
func (c *Certs) Refresh() {
	if c.acme != nil {
		c.acme.refresh()
	}
}

// Close stops ACME's background work (obtaining, renewing, re-reading the domains). The
// configurations keep serving the certificates they have. Safe to call more than once.
func (c *Certs) Close() {
	if c.acme != nil {
		c.acme.close()
	}
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
