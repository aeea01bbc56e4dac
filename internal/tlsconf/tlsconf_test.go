package tlsconf

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/repute-mail/repute/internal/config"
)

// logBuffer collects log output; handshakes log from server goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// loadConfig is Load for the mail listeners' configuration.
func loadConfig(c config.TLS, hostname, dataDir string, log *slog.Logger) (*tls.Config, error) {
	certs, err := Load(c, hostname, dataDir, Options{Logger: log})
	if err != nil {
		return nil, err
	}
	return certs.TLSConfig(), nil
}

func newLog() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

func TestSelfSignedGenerated(t *testing.T) {
	dir := t.TempDir()
	log, logs := newLog()
	cfg, err := loadConfig(config.TLS{}, "Mail.Example.TEST", dir, log)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("MinVersion = %x, want TLS 1.2", cfg.MinVersion)
	}
	leaf := cfg.Certificates[0].Leaf
	if leaf.Subject.CommonName != "mail.example.test" {
		t.Errorf("CN = %q", leaf.Subject.CommonName)
	}
	if got := strings.Join(leaf.DNSNames, ","); got != "mail.example.test,localhost" {
		t.Errorf("DNS names = %s", got)
	}
	if len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[0].Equal(net.IPv4(127, 0, 0, 1)) || !leaf.IPAddresses[1].Equal(net.IPv6loopback) {
		t.Errorf("IP addresses = %v", leaf.IPAddresses)
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key is %T, want ECDSA P-256", leaf.PublicKey)
	}
	if life := leaf.NotAfter.Sub(time.Now()); life < 5*364*24*time.Hour || life > 5*366*24*time.Hour {
		t.Errorf("valid for %v, want about 5 years", life)
	}
	if leaf.IsCA {
		t.Error("self-signed certificate is a CA; it must be a leaf")
	}

	for path, want := range map[string]os.FileMode{
		filepath.Join(dir, "tls"):                       0o700 | os.ModeDir,
		filepath.Join(dir, "tls", "selfsigned-key.pem"): 0o600,
		SelfSignedCertPath(dir):                         0o644,
	} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s has mode %v, want %v", path, fi.Mode(), want)
		}
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "tls"))
	if len(entries) != 2 {
		t.Errorf("tls directory holds %d entries, want the two PEM files (no temp files)", len(entries))
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "will not trust it") {
		t.Errorf("no warning about the self-signed certificate in log:\n%s", logs)
	}
}

func TestSelfSignedReusedAndRegenerated(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	log, _ := newLog()
	first, err := loadSelfSigned("mail.example.test", dir, t0, log)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		hostname string
		now      time.Time
		garble   bool
		same     bool
	}{
		{name: "reused on next start", hostname: "mail.example.test", now: t0.Add(time.Hour), same: true},
		{name: "reused with hostname in other case", hostname: "MAIL.example.test", now: t0, same: true},
		{name: "reused four years later", hostname: "mail.example.test", now: t0.AddDate(4, 0, 0), same: true},
		{name: "regenerated within 30 days of expiry", hostname: "mail.example.test", now: first.Leaf.NotAfter.Add(-29 * 24 * time.Hour)},
		{name: "regenerated after expiry", hostname: "mail.example.test", now: first.Leaf.NotAfter.Add(time.Hour)},
		{name: "regenerated for a new hostname", hostname: "mx.example.test", now: t0},
		{name: "regenerated when garbled", hostname: "mail.example.test", now: t0, garble: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Each case starts from the first certificate.
			writeSelfSigned(t, dir, first)
			if tt.garble {
				if err := os.WriteFile(SelfSignedCertPath(dir), []byte("garbage"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := loadSelfSigned(tt.hostname, dir, tt.now, log)
			if err != nil {
				t.Fatal(err)
			}
			if same := bytes.Equal(got.Certificate[0], first.Certificate[0]); same != tt.same {
				t.Fatalf("same certificate = %v, want %v", same, tt.same)
			}
			if want := strings.ToLower(tt.hostname); got.Leaf.Subject.CommonName != want {
				t.Errorf("CN = %q, want %q", got.Leaf.Subject.CommonName, want)
			}
			if !tt.same && got.Leaf.NotAfter.Before(tt.now.Add(4*365*24*time.Hour)) {
				t.Errorf("regenerated certificate expires %v", got.Leaf.NotAfter)
			}
			// Whatever was served is what is on disk for clients to trust.
			onDisk, err := os.ReadFile(SelfSignedCertPath(dir))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(onDisk, pemCert(got.Certificate[0])) {
				t.Error("served certificate differs from the file")
			}
		})
	}
}

func TestLoadSameSelfSignedAcrossCalls(t *testing.T) {
	dir := t.TempDir()
	a, err := loadConfig(config.TLS{}, "mail.example.test", dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := loadConfig(config.TLS{}, "mail.example.test", dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Certificates[0].Certificate[0], b.Certificates[0].Certificate[0]) {
		t.Error("second Load generated a new certificate")
	}
}

func TestLoadFiles(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writePair(t, dir, "mail.example.test")
	log, logs := newLog()
	cfg, err := loadConfig(config.TLS{CertFile: certFile, KeyFile: keyFile}, "mail.example.test", t.TempDir(), log)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MinVersion != tls.VersionTLS12 || cfg.GetCertificate == nil {
		t.Fatalf("config %+v", cfg)
	}
	cert, err := cfg.GetCertificate(&tls.ClientHelloInfo{ServerName: "mail.example.test"})
	if err != nil || cert.Leaf.Subject.CommonName != "mail.example.test" {
		t.Fatalf("GetCertificate = %v, %v", cert, err)
	}
	if strings.Contains(logs.String(), "does not cover") {
		t.Errorf("unexpected hostname warning:\n%s", logs)
	}

	log, logs = newLog()
	if _, err := loadConfig(config.TLS{CertFile: certFile, KeyFile: keyFile}, "other.example.test", t.TempDir(), log); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "does not cover the configured hostname") {
		t.Errorf("no warning about a certificate for another name:\n%s", logs)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writePair(t, dir, "mail.example.test")
	_, otherKey := writePair(t, t.TempDir(), "other.example.test")
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not PEM at all\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")

	tests := []struct {
		name     string
		tls      config.TLS
		hostname string
		dataDir  string
		want     []string // substrings of the error
	}{
		{"missing cert file", config.TLS{CertFile: missing, KeyFile: keyFile}, "h.example", dir, []string{missing, "no such file"}},
		{"missing key file", config.TLS{CertFile: certFile, KeyFile: missing}, "h.example", dir, []string{missing, "no such file"}},
		{"garbled cert", config.TLS{CertFile: garbage, KeyFile: keyFile}, "h.example", dir, []string{garbage, "no PEM \"CERTIFICATE\" block"}},
		{"garbled key", config.TLS{CertFile: certFile, KeyFile: garbage}, "h.example", dir, []string{garbage, "no PEM private key"}},
		{"key swapped for cert", config.TLS{CertFile: keyFile, KeyFile: certFile}, "h.example", dir, []string{keyFile, "CERTIFICATE"}},
		{"key of another certificate", config.TLS{CertFile: certFile, KeyFile: otherKey}, "h.example", dir, []string{certFile, otherKey, "does not match"}},
		{"cert without key", config.TLS{CertFile: certFile}, "h.example", dir, []string{"must be set together"}},
		{"acme without challenge listeners", config.TLS{ACMEEmail: "ops@example.test"}, "h.example", dir, []string{"listen.http and listen.https are both off"}},
		{"acme and files", config.TLS{ACMEEmail: "ops@example.test", CertFile: certFile, KeyFile: keyFile}, "h.example", dir, []string{"both set"}},
		{"no hostname for self-signed", config.TLS{}, "", dir, []string{"hostname is empty"}},
		{"no data dir for self-signed", config.TLS{}, "h.example", "", []string{"data_dir is empty"}},
		{"unwritable data dir", config.TLS{}, "h.example", garbage, []string{"create TLS directory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.tls, tt.hostname, tt.dataDir, Options{})
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestFileCertReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writePair(t, dir, "a.example.test")
	log, logs := newLog()
	fc, err := NewFileCert(certFile, keyFile, time.Minute, log)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	fc.now = func() time.Time { return now }
	mtime := now
	serving := func() string {
		t.Helper()
		c, err := fc.GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		return c.Leaf.Subject.CommonName
	}
	// replace writes new files and moves their mtime on, as a renewal would.
	replace := func(cn string, garbleCert bool) {
		t.Helper()
		writePair(t, dir, cn)
		if garbleCert {
			if err := os.WriteFile(certFile, []byte("-----BEGIN CERTIFICATE-----\nbroken\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		mtime = mtime.Add(time.Second)
		for _, f := range []string{certFile, keyFile} {
			if err := os.Chtimes(f, mtime, mtime); err != nil {
				t.Fatal(err)
			}
		}
	}

	if got := serving(); got != "a.example.test" {
		t.Fatalf("serving %s", got)
	}
	replace("b.example.test", false)
	now = now.Add(30 * time.Second)
	if got := serving(); got != "a.example.test" {
		t.Errorf("files re-read before the interval passed: serving %s", got)
	}
	now = now.Add(31 * time.Second)
	if got := serving(); got != "b.example.test" {
		t.Errorf("after the interval: serving %s, want the renewed certificate", got)
	}
	if !strings.Contains(logs.String(), "reloaded TLS certificate") {
		t.Errorf("reload not logged:\n%s", logs)
	}

	replace("c.example.test", true)
	now = now.Add(time.Minute)
	if got := serving(); got != "b.example.test" {
		t.Errorf("after a broken renewal: serving %s, want the previous certificate", got)
	}
	now = now.Add(time.Minute)
	serving()
	if n := strings.Count(logs.String(), "reloading TLS certificate failed"); n != 1 {
		t.Errorf("failure logged %d times, want once:\n%s", n, logs)
	}

	replace("d.example.test", false)
	now = now.Add(time.Minute)
	if got := serving(); got != "d.example.test" {
		t.Errorf("after a fixed renewal: serving %s", got)
	}

	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	if got := serving(); got != "d.example.test" {
		t.Errorf("after the key file vanished: serving %s", got)
	}
	if !strings.Contains(logs.String(), "cannot check TLS certificate files") {
		t.Errorf("missing file not logged:\n%s", logs)
	}
}

func TestFileCertZeroIntervalChecksEveryTime(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writePair(t, dir, "a.example.test")
	fc, err := NewFileCert(certFile, keyFile, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	writePair(t, dir, "b.example.test")
	later := time.Now().Add(time.Hour)
	for _, f := range []string{certFile, keyFile} {
		if err := os.Chtimes(f, later, later); err != nil {
			t.Fatal(err)
		}
	}
	if c, _ := fc.GetCertificate(nil); c.Leaf.Subject.CommonName != "b.example.test" {
		t.Errorf("serving %s", c.Leaf.Subject.CommonName)
	}
}

func TestHandshakeWithSelfSigned(t *testing.T) {
	dataDir := t.TempDir()
	srvConf, err := loadConfig(config.TLS{}, "mail.example.test", dataDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srvConf)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			// The handshake happens on first write; failed handshakes just close.
			io.WriteString(c, "ok")
			c.Close()
		}
	}()
	defer wg.Wait()
	defer ln.Close()

	pemData, err := os.ReadFile(SelfSignedCertPath(dataDir))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pemData) {
		t.Fatal("certificate file holds no certificate")
	}
	tests := []struct {
		name   string
		client *tls.Config
		ok     bool
	}{
		{"hostname", &tls.Config{RootCAs: roots, ServerName: "mail.example.test"}, true},
		{"localhost", &tls.Config{RootCAs: roots, ServerName: "localhost"}, true},
		{"loopback IP", &tls.Config{RootCAs: roots}, true},
		{"TLS 1.3", &tls.Config{RootCAs: roots, ServerName: "mail.example.test", MinVersion: tls.VersionTLS13}, true},
		{"other name", &tls.Config{RootCAs: roots, ServerName: "other.example.test"}, false},
		{"not trusted", &tls.Config{RootCAs: x509.NewCertPool(), ServerName: "mail.example.test"}, false},
		{"TLS 1.1 refused", &tls.Config{RootCAs: roots, ServerName: "mail.example.test", MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tls.Dial("tcp", ln.Addr().String(), tt.client)
			if err == nil {
				var got []byte
				got, err = io.ReadAll(c)
				c.Close()
				if err == nil && string(got) != "ok" {
					t.Fatalf("read %q", got)
				}
			}
			if (err == nil) != tt.ok {
				t.Errorf("handshake error = %v, want success %v", err, tt.ok)
			}
		})
	}
}

// writePair writes cert.pem and key.pem for cn into dir and returns their paths.
func writePair(t *testing.T, dir, cn string) (certFile, keyFile string) {
	t.Helper()
	cert, err := generateSelfSigned(cn, t.TempDir(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	writeTo(t, cert, certFile, keyFile)
	return certFile, keyFile
}

// writeSelfSigned puts cert in place as dataDir's self-signed certificate.
func writeSelfSigned(t *testing.T, dataDir string, cert tls.Certificate) {
	t.Helper()
	writeTo(t, &cert, SelfSignedCertPath(dataDir), selfSignedKeyPath(dataDir))
}

func writeTo(t *testing.T, cert *tls.Certificate, certFile, keyFile string) {
	t.Helper()
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pemBlock("PRIVATE KEY", keyDER)
	if err := os.WriteFile(certFile, pemCert(cert.Certificate[0]), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
}

func pemCert(der []byte) []byte { return pemBlock("CERTIFICATE", der) }

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
