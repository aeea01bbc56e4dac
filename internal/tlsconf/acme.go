package tlsconf

// ACME (RFC 8555): certificates for the host name and for mta-sts.DOMAIN and
// autoconfig.DOMAIN of every local domain, obtained and renewed by certmagic, which keeps
// them in data_dir/acme, answers HTTP-01 (RFC 8555 §8.3) and TLS-ALPN-01 (RFC 8737)
// challenges and renews when a third of a certificate's lifetime is left (or when the
// CA's ACME Renewal Information says so). Names are managed, not obtained on demand, so a
// certificate exists before the first handshake that needs it; obtaining runs in the
// background and never holds up start-up. Until a name has its certificate, handshakes
// for it get a self-signed certificate, so STARTTLS between MTAs keeps working.
//
// DANE (RFC 7672) pins the certificate key with TLSA "3 1 1" records, so the key must not
// change unannounced. Every certificate is issued for one key, data_dir/tls/current-key.pem
// (certmagic's KeySource), and certmagic reuses the stored key at each renewal
// (ReusePrivateKeys), so renewals keep the published TLSA record valid. A second key,
// data_dir/tls/next-key.pem, is generated once so that its TLSA record can be published
// ahead of a key change: `repute dns records` prints TLSA records for both (TLSAKeys). A
// key change would make the next key current only after its record has been published
// for at least twice the record's TTL, then renew every certificate at once; that step is
// not automated yet.

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/repute-mail/repute/internal/config"
)

const (
	// defaultDomainRefresh is how often the local domains are read again.
	defaultDomainRefresh = time.Hour
	// acmeTLS1 is the ALPN protocol of the TLS-ALPN-01 challenge (RFC 8737 §6.2).
	acmeTLS1 = "acme-tls/1"
)

// CurrentKeyFile is the private key of every ACME certificate (PEM, PKCS #8, mode 0600).
// It is created on the first start with ACME.
func CurrentKeyFile(dataDir string) string { return filepath.Join(dataDir, "tls", "current-key.pem") }

// NextKeyFile is the key that replaces CurrentKeyFile at the next key change; its TLSA
// record is published in advance. It is created on the first start with ACME.
func NextKeyFile(dataDir string) string { return filepath.Join(dataDir, "tls", "next-key.pem") }

// acmeStorageDir holds certmagic's storage: the account, certificates, their keys and
// metadata, and locks.
func acmeStorageDir(dataDir string) string { return filepath.Join(dataDir, "acme") }

// acmeCerts manages the ACME certificates behind a Certs.
type acmeCerts struct {
	hostname string
	domains  func(context.Context) ([]string, error)
	interval time.Duration
	log      *slog.Logger
	zap      *zap.Logger
	fallback *tls.Certificate // self-signed, for the current key
	storage  string           // certmagic's directory

	cache  *certmagic.Cache
	magic  *certmagic.Config
	issuer *certmagic.ACMEIssuer

	ctx       context.Context // ends at close: stops obtaining, retries and the loop
	cancel    context.CancelFunc
	refreshCh chan struct{}
	loopDone  chan struct{}
	closeOnce sync.Once

	mu      sync.Mutex
	started bool
	managed map[string]bool // names whose certificates are managed
	dropped map[string]bool // names managed once and no longer
	warned  map[string]bool // names whose self-signed fallback has been logged
}

// loadACME prepares ACME for c: keys, trusted roots, storage and the self-signed
// fallback. Nothing talks to the CA before start.
func loadACME(c config.TLS, hostname, dataDir string, opts Options, log *slog.Logger) (*acmeCerts, error) {
	hostname = normalizeName(hostname)
	if hostname == "" {
		return nil, errors.New("ACME: the hostname is empty; set hostname in the config")
	}
	if dataDir == "" {
		return nil, errors.New("ACME: data_dir is empty")
	}
	if opts.HTTPAddr == "" && opts.HTTPSAddr == "" {
		return nil, errors.New("tls.acme_email is set, but listen.http and listen.https are both off; " +
			"the CA checks control of the names through one of them (HTTP-01 on port 80, TLS-ALPN-01 on port 443)")
	}
	listenHost, httpPort, tlsPort, err := challengePorts(opts.HTTPAddr, opts.HTTPSAddr)
	if err != nil {
		return nil, err
	}
	roots, err := loadCARoots(c.ACMECAFile)
	if err != nil {
		return nil, err
	}
	directory := c.ACMEDirectory
	if directory == "" {
		directory = certmagic.LetsEncryptProductionCA
	}
	storage := &certmagic.FileStorage{Path: acmeStorageDir(dataDir)}
	issuerKey := (&certmagic.ACMEIssuer{CA: directory}).IssuerKey()
	key, err := loadCurrentKey(dataDir, storage, issuerKey, hostname, log)
	if err != nil {
		return nil, err
	}
	if err := ensureNextKey(dataDir, log); err != nil {
		return nil, err
	}
	fallback, err := fallbackCert(hostname, key, time.Now())
	if err != nil {
		return nil, err
	}
	interval := opts.RefreshInterval
	if interval <= 0 {
		interval = defaultDomainRefresh
	}

	ctx, cancel := context.WithCancel(context.Background())
	a := &acmeCerts{
		hostname: hostname, domains: opts.Domains, interval: interval, log: log,
		zap: zap.New(slogCore{log: log}), fallback: fallback, storage: storage.Path,
		ctx: ctx, cancel: cancel, refreshCh: make(chan struct{}, 1), loopDone: make(chan struct{}),
		managed: map[string]bool{}, dropped: map[string]bool{}, warned: map[string]bool{},
	}
	a.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return a.magic, nil },
		RenewCheckInterval: opts.RenewCheckInterval,
		Logger:             a.zap,
	})
	a.magic = certmagic.New(a.cache, certmagic.Config{
		Storage:          storage,
		ReusePrivateKeys: true,
		KeySource:        oneKey{key},
		OnEvent:          a.onEvent,
		ShouldEmitFunc:   func(event string) bool { return event != "tls_get_certificate" },
		Logger:           a.zap,
	})
	a.issuer = certmagic.NewACMEIssuer(a.magic, certmagic.ACMEIssuer{
		CA:                      directory,
		Email:                   c.ACMEEmail,
		Agreed:                  true,
		TrustedRoots:            roots,
		DisableHTTPChallenge:    opts.HTTPAddr == "",
		DisableTLSALPNChallenge: opts.HTTPSAddr == "",
		// Where certmagic would start its own challenge server: our listeners hold these
		// addresses, so it finds them taken and leaves the answering to them.
		ListenHost:     listenHost,
		AltHTTPPort:    httpPort,
		AltTLSALPNPort: tlsPort,
		Logger:         a.zap,
	})
	a.magic.Issuers = []certmagic.Issuer{a.issuer}
	return a, nil
}

// certs wraps a in the configurations of the listeners.
func (a *acmeCerts) certs() *Certs {
	mail := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: a.getCertificate}
	https := mail.Clone()
	https.GetConfigForClient = a.challengeConfig
	return &Certs{mail: mail, https: https, acme: a}
}

// getCertificate serves the managed certificate for the SNI name, or the host name's when
// the client sent no name or one not managed (MTAs often send none, or the MX name they
// looked up); until a certificate exists, the self-signed fallback.
func (a *acmeCerts) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := normalizeName(hello.ServerName)
	a.mu.Lock()
	if !a.managed[name] {
		name = a.hostname
	}
	a.mu.Unlock()
	if certs := a.cache.AllMatchingCertificates(name); len(certs) > 0 {
		if c, err := certmagic.DefaultCertificateSelector(hello, certs); err == nil {
			return &c.Certificate, nil
		}
	}
	a.mu.Lock()
	first := !a.warned[name]
	a.warned[name] = true
	a.mu.Unlock()
	if first {
		a.log.Warn("ACME: no certificate from the CA yet; serving a self-signed one until it arrives "+
			"(STARTTLS still works; clients that check certificates fail)", "name", name)
	}
	return a.fallback, nil
}

// challengeConfig answers a TLS-ALPN-01 validation on listen.https: a handshake that
// offers only "acme-tls/1" with a name negotiates that protocol and gets certmagic's
// challenge certificate (RFC 8737 §3). Every other handshake goes on with the listener's
// own configuration, which negotiates no ALPN protocol.
func (a *acmeCerts) challengeConfig(hello *tls.ClientHelloInfo) (*tls.Config, error) {
	if a.issuer.DisableTLSALPNChallenge || hello.ServerName == "" || !slices.Equal(hello.SupportedProtos, []string{acmeTLS1}) {
		return nil, nil
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{acmeTLS1}, GetCertificate: a.magic.GetCertificate}, nil
}

func (a *acmeCerts) httpChallengeHandler(next http.Handler) http.Handler {
	return a.issuer.HTTPChallengeHandler(next)
}

func (a *acmeCerts) start(ctx context.Context) error {
	a.mu.Lock()
	if a.started {
		a.mu.Unlock()
		return errors.New("ACME: already started")
	}
	a.started = true
	a.mu.Unlock()
	a.log.Info("ACME: managing certificates in the background; names without a certificate yet get a self-signed one",
		"directory", a.issuer.CA, "email", a.issuer.Email, "http_01", !a.issuer.DisableHTTPChallenge,
		"tls_alpn_01", !a.issuer.DisableTLSALPNChallenge, "storage", a.storage)
	a.sync(ctx)
	go a.loop()
	return nil
}

// loop reads the domains again at every interval and after refresh, until close.
func (a *acmeCerts) loop() {
	defer close(a.loopDone)
	t := time.NewTicker(a.interval)
	defer t.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
		case <-a.refreshCh:
		}
		a.sync(a.ctx)
	}
}

func (a *acmeCerts) refresh() {
	select {
	case a.refreshCh <- struct{}{}:
	default: // one is pending already
	}
}

// sync manages the names of the current domains: new names get their certificates in
// the background; names of removed domains are no longer renewed.
func (a *acmeCerts) sync(ctx context.Context) {
	var domains []string
	if a.domains != nil {
		var err error
		if domains, err = a.domains(ctx); err != nil {
			a.mu.Lock()
			first := len(a.managed) == 0
			a.mu.Unlock()
			a.log.Error("ACME: cannot read the local domains; the names managed so far stay managed", "err", err)
			if !first {
				return
			}
			domains = nil // the host name at least
		}
	}
	want := map[string]bool{}
	for _, n := range acmeNames(a.hostname, domains) {
		want[n] = true
	}
	a.mu.Lock()
	var added, removed []string
	for n := range want {
		if !a.managed[n] {
			added = append(added, n)
		}
	}
	for n := range a.managed {
		if !want[n] {
			removed = append(removed, n)
			a.dropped[n] = true
		}
	}
	for n := range want {
		delete(a.dropped, n)
	}
	// Every time, not just once: a certificate being obtained when its domain was removed
	// enters the cache later.
	var subjects []certmagic.SubjectIssuer
	for n := range a.dropped {
		subjects = append(subjects, certmagic.SubjectIssuer{Subject: n})
	}
	a.managed = want
	a.mu.Unlock()
	slices.Sort(added)
	slices.Sort(removed)

	a.cache.RemoveManaged(subjects)
	if len(removed) > 0 {
		a.log.Info("ACME: domains removed; their certificates are no longer renewed", "names", removed)
	}
	if len(added) > 0 {
		a.log.Info("ACME: managing certificates", "names", added)
		if err := a.magic.ManageAsync(a.ctx, added); err != nil {
			a.log.Error("ACME: cannot manage certificates", "names", added, "err", err)
		}
	}
}

func (a *acmeCerts) close() {
	a.closeOnce.Do(func() {
		a.cancel()
		a.mu.Lock()
		started := a.started
		a.mu.Unlock()
		if started {
			<-a.loopDone
		}
		a.cache.Stop()
		// Locks of orders cut short; this is process-wide, and a process has one Certs.
		certmagic.CleanUpOwnLocks(context.Background(), a.zap)
	})
}

// onEvent logs what an operator needs to know; certmagic's own log is mostly at debug level.
func (a *acmeCerts) onEvent(_ context.Context, event string, data map[string]any) error {
	switch event {
	case "cert_obtained":
		msg := "ACME: obtained a certificate"
		if renewal, _ := data["renewal"].(bool); renewal {
			msg = "ACME: renewed a certificate"
		}
		a.log.Info(msg, "name", data["identifier"], "issuer", data["issuer"])
		if name, ok := data["identifier"].(string); ok {
			a.mu.Lock()
			delete(a.warned, name)
			a.mu.Unlock()
		}
	case "cert_failed":
		a.log.Error("ACME: getting a certificate failed; it is tried again later", "name", data["identifier"],
			"renewal", data["renewal"], "err", data["error"])
	case "cert_ocsp_revoked":
		a.log.Error("ACME: the certificate has been revoked; renewing it", "names", data["subjects"])
	}
	return nil
}

// acmeNames lists the names certificates are needed for: the host name, then mta-sts
// (RFC 8461 §3.3) and autoconfig names of every domain, without duplicates.
func acmeNames(hostname string, domains []string) []string {
	var norm []string
	for _, d := range domains {
		if d = normalizeName(d); d != "" {
			norm = append(norm, d)
		}
	}
	slices.Sort(norm)
	names := []string{hostname}
	seen := map[string]bool{hostname: true}
	for _, d := range norm {
		for _, n := range []string{"mta-sts." + d, "autoconfig." + d, "autodiscover." + d} {
			if !seen[n] {
				seen[n] = true
				names = append(names, n)
			}
		}
	}
	return names
}

func normalizeName(name string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(name), "."))
}

// challengePorts returns where certmagic would listen for challenges: the ports of
// listen.http and listen.https, and their host if they share one (else all addresses).
func challengePorts(httpAddr, httpsAddr string) (host string, httpPort, tlsPort int, err error) {
	hosts := map[string]bool{}
	for _, l := range []struct {
		key, addr string
		port      *int
	}{{"listen.http", httpAddr, &httpPort}, {"listen.https", httpsAddr, &tlsPort}} {
		if l.addr == "" {
			continue
		}
		h, p, err := net.SplitHostPort(l.addr)
		if err != nil {
			return "", 0, 0, fmt.Errorf("ACME: %s = %q: %w", l.key, l.addr, err)
		}
		n, err := strconv.Atoi(p)
		if err != nil || n <= 0 || n > 65535 {
			return "", 0, 0, fmt.Errorf("ACME: %s = %q: the CA needs a fixed port", l.key, l.addr)
		}
		*l.port = n
		hosts[h] = true
	}
	if len(hosts) == 1 {
		for h := range hosts {
			host = h
		}
	}
	return host, httpPort, tlsPort, nil
}

// loadCARoots reads tls.acme_ca_file; "" means the system roots (nil).
func loadCARoots(file string) (*x509.CertPool, error) {
	if file == "" {
		return nil, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tls.acme_ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("tls.acme_ca_file %s: no PEM \"CERTIFICATE\" found", file)
	}
	return pool, nil
}

// oneKey is certmagic's KeySource: every new certificate is for the current key.
type oneKey struct{ key crypto.Signer }

func (k oneKey) GenerateKey() (crypto.PrivateKey, error) { return k.key, nil }

// loadCurrentKey returns the key of the ACME certificates, creating CurrentKeyFile if it
// is missing. A missing file with a certificate for hostname still in storage (data_dir/tls
// lost, data_dir/acme kept) adopts that certificate's key, whose TLSA record may be
// published; otherwise a new ECDSA P-256 key is generated. An unreadable file is an error,
// never silently replaced.
func loadCurrentKey(dataDir string, storage certmagic.Storage, issuerKey, hostname string, log *slog.Logger) (crypto.Signer, error) {
	path := CurrentKeyFile(dataDir)
	storedName := certmagic.StorageKeys.SitePrivateKey(issuerKey, hostname)
	var stored crypto.Signer
	if data, err := storage.Load(context.Background(), storedName); err == nil {
		if stored, err = certmagic.PEMDecodePrivateKey(data); err != nil {
			return nil, fmt.Errorf("ACME key of %s in %s: %w", hostname, acmeStorageDir(dataDir), err)
		}
	}
	key, err := readKey(path)
	switch {
	case err == nil:
		if stored != nil && !samePublicKey(stored, key) {
			log.Warn("ACME: the stored certificate for the host name has a key other than the current key; "+
				"renewals keep the stored key, so TLSA records made from the current key do not match it",
				"name", hostname, "current_key", path, "storage", acmeStorageDir(dataDir))
		}
		return key, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%w; restore it from a backup, or remove it to start with a new key (and publish its TLSA record)", err)
	case stored != nil:
		key = stored
		log.Info("ACME: adopted the key of the stored certificate as the current key", "name", hostname, "file", path)
	default:
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return nil, fmt.Errorf("generate ACME key: %w", err)
		}
		log.Info("ACME: generated the certificate key", "file", path)
	}
	if err := writeKey(path, key); err != nil {
		return nil, err
	}
	return key, nil
}

// ensureNextKey creates NextKeyFile once.
func ensureNextKey(dataDir string, log *slog.Logger) error {
	path := NextKeyFile(dataDir)
	_, err := readKey(path)
	switch {
	case err == nil:
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%w; restore it from a backup, or remove it to generate a new next key (and publish its TLSA record)", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("generate next ACME key: %w", err)
	}
	if err := writeKey(path, key); err != nil {
		return err
	}
	log.Info("ACME: generated the next certificate key; publish its TLSA record ahead of a key change", "file", path)
	return nil
}

// readKey reads a PEM private key (PKCS #8, SEC 1 or PKCS #1); a missing file gives an
// error wrapping fs.ErrNotExist.
func readKey(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	key, err := certmagic.PEMDecodePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("key %s: %w", path, err)
	}
	return key, nil
}

// writeKey stores key as PKCS #8 PEM, mode 0600, in a directory of mode 0700.
func writeKey(path string, key crypto.Signer) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode key %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create TLS directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("restrict TLS directory: %w", err)
	}
	return writeFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

func samePublicKey(a, b crypto.Signer) bool {
	pa, ok := a.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && pa.Equal(b.Public())
}

// fallbackCert is the self-signed certificate served for a name until its ACME
// certificate arrives. It is for the current key, so a published TLSA "3 1 1" record
// already matches it, and it is made afresh at every start (it is never written down).
func fallbackCert(hostname string, key crypto.Signer, now time.Time) (*tls.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generate certificate serial number: %w", err)
	}
	names := []string{hostname}
	if hostname != "localhost" {
		names = append(names, "localhost")
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: hostname, Organization: []string{"Repute self-signed"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(selfSignedLifetime),
		DNSNames:              names,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create self-signed certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// TLSAKeys returns the DER SubjectPublicKeyInfo of the key the server presents and, with
// ACME, of the next key, for DANE-EE SPKI SHA-256 ("3 1 1", RFC 7671 §5.1) records. Keys
// not created yet (the server has not started with this configuration) are left out.
func TLSAKeys(c config.TLS, dataDir string) ([][]byte, error) {
	var out [][]byte
	switch {
	case c.ACMEEmail != "":
		for _, path := range []string{CurrentKeyFile(dataDir), NextKeyFile(dataDir)} {
			key, err := readKey(path)
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return nil, err
			}
			spki, err := x509.MarshalPKIXPublicKey(key.Public())
			if err != nil {
				return nil, fmt.Errorf("key %s: %w", path, err)
			}
			out = append(out, spki)
		}
	case c.CertFile != "":
		spki, err := leafSPKI(c.CertFile)
		if err != nil {
			return nil, err
		}
		out = append(out, spki)
	default:
		spki, err := leafSPKI(SelfSignedCertPath(dataDir))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, spki)
	}
	return out, nil
}

// leafSPKI returns the public key of the first certificate in a PEM file.
func leafSPKI(file string) ([]byte, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read TLS certificate: %w", err)
	}
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			return nil, fmt.Errorf("TLS certificate %s: no PEM \"CERTIFICATE\" block found", file)
		}
		if b.Type == "CERTIFICATE" {
			leaf, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("TLS certificate %s: %w", file, err)
			}
			return leaf.RawSubjectPublicKeyInfo, nil
		}
	}
}

// slogCore is a zapcore.Core writing certmagic's log to slog. certmagic logs every step
// (locks taken and released, each request of an order) at info level; that goes to debug
// here, and onEvent logs what an operator needs at info level.
type slogCore struct {
	log    *slog.Logger
	fields []zapcore.Field
}

func (s slogCore) Enabled(l zapcore.Level) bool {
	return s.log.Enabled(context.Background(), slogLevel(l))
}

func (s slogCore) With(fields []zapcore.Field) zapcore.Core {
	return slogCore{log: s.log, fields: append(slices.Clip(s.fields), fields...)}
}

func (s slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if s.Enabled(e.Level) {
		return ce.AddCore(e, s)
	}
	return ce
}

func (s slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range s.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	attrs := make([]slog.Attr, 0, len(enc.Fields)+1)
	if e.LoggerName != "" {
		attrs = append(attrs, slog.String("certmagic", e.LoggerName))
	}
	for _, k := range slices.Sorted(maps.Keys(enc.Fields)) {
		attrs = append(attrs, slog.Any(k, enc.Fields[k]))
	}
	s.log.LogAttrs(context.Background(), slogLevel(e.Level), e.Message, attrs...)
	return nil
}

func (slogCore) Sync() error { return nil }

func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l >= zapcore.ErrorLevel:
		return slog.LevelError
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	default:
		return slog.LevelDebug
	}
}
