package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// FileCert serves a certificate read from PEM files and re-reads them when their
// modification time or size changes. Files are checked from GetCertificate, at most once
// per interval; if a changed pair fails to load (say certbot has written the new
// certificate but not yet the new key), the previous certificate stays in use, the failure
// is logged once, and loading is tried again when the files change again.
type FileCert struct {
	certFile, keyFile string
	interval          time.Duration
	log               *slog.Logger
	now               func() time.Time // the clock; tests replace it before first use

	mu      sync.Mutex
	cert    *tls.Certificate
	loaded  stamps    // files as they were when cert was read
	failed  stamps    // files as they were when loading last failed
	checked time.Time // last time the files were looked at

	statFailed bool // the last check could not stat the files
}

// stamp identifies one version of a file well enough to notice replacement.
type stamp struct {
	mod  time.Time
	size int64
}

type stamps struct{ cert, key stamp }

// NewFileCert loads certFile and keyFile and returns a FileCert that checks them for
// changes at most once per interval (every call if interval <= 0). log may be nil.
func NewFileCert(certFile, keyFile string, interval time.Duration, log *slog.Logger) (*FileCert, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &FileCert{certFile: certFile, keyFile: keyFile, interval: interval, log: log, now: time.Now}
	st, err := f.stat()
	if err != nil {
		return nil, err
	}
	cert, err := loadPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	f.cert, f.loaded, f.checked = cert, st, f.now()
	log.Info("loaded TLS certificate", append([]any{"cert_file", certFile}, leafSummary(cert)...)...)
	checkExpiry(cert, certFile, f.checked, log)
	return f, nil
}

// GetCertificate implements tls.Config.GetCertificate. It never fails once NewFileCert has
// succeeded: problems with changed files are logged and the previous certificate is served.
func (f *FileCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if now := f.now(); now.Sub(f.checked) >= f.interval {
		f.checked = now
		f.reload(now)
	}
	return f.cert, nil
}

// current returns the certificate being served.
func (f *FileCert) current() *tls.Certificate {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cert
}

// reload re-reads the files if they changed since they were last read. f.mu is held.
func (f *FileCert) reload(now time.Time) {
	st, err := f.stat()
	if err != nil {
		if !f.statFailed { // report once, not at every check until the files are back
			f.statFailed = true
			f.log.Error("cannot check TLS certificate files; still serving the previous certificate", "err", err)
		}
		return
	}
	f.statFailed = false
	if st == f.loaded || st == f.failed {
		return
	}
	cert, err := loadPair(f.certFile, f.keyFile)
	if err != nil {
		f.failed = st
		f.log.Error("reloading TLS certificate failed; still serving the previous certificate", "err", err)
		return
	}
	f.cert, f.loaded, f.failed = cert, st, stamps{}
	f.log.Info("reloaded TLS certificate", append([]any{"cert_file", f.certFile}, leafSummary(cert)...)...)
	checkExpiry(cert, f.certFile, now, f.log)
}

// stat reads both files' stamps. It runs before the files are read, so a change that races
// with reading is seen at the next check.
func (f *FileCert) stat() (stamps, error) {
	var st stamps
	for _, x := range []struct {
		name string
		s    *stamp
	}{{f.certFile, &st.cert}, {f.keyFile, &st.key}} {
		fi, err := os.Stat(x.name)
		if err != nil {
			return stamps{}, fmt.Errorf("tls certificate: %w", err)
		}
		*x.s = stamp{mod: fi.ModTime(), size: fi.Size()}
	}
	return st, nil
}

// loadPair reads a PEM certificate chain and its private key; errors name the file at fault.
func loadPair(certFile, keyFile string) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("read TLS certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("read TLS key: %w", err)
	}
	if !hasPEMBlock(certPEM, func(t string) bool { return t == "CERTIFICATE" }) {
		return nil, fmt.Errorf("TLS certificate %s: no PEM \"CERTIFICATE\" block found", certFile)
	}
	if !hasPEMBlock(keyPEM, func(t string) bool { return strings.HasSuffix(t, "PRIVATE KEY") }) {
		return nil, fmt.Errorf("TLS key %s: no PEM private key block found", keyFile)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s with key %s: %w", certFile, keyFile, err)
	}
	if err := setLeaf(&cert); err != nil {
		return nil, fmt.Errorf("TLS certificate %s: %w", certFile, err)
	}
	return &cert, nil
}

// setLeaf makes sure cert.Leaf is parsed (X509KeyPair leaves it nil under
// GODEBUG=x509keypairleaf=0); callers log and check its names and expiry.
func setLeaf(cert *tls.Certificate) error {
	if cert.Leaf != nil {
		return nil
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return err
	}
	cert.Leaf = leaf
	return nil
}

func hasPEMBlock(data []byte, match func(blockType string) bool) bool {
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			return false
		}
		if match(b.Type) {
			return true
		}
	}
}
