package tlsconf

import (
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
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

const (
	selfSignedLifetime = 5 * 365 * 24 * time.Hour
	// A self-signed certificate this close to expiry is replaced at start-up, so that a
	// server restarted now and then never serves an expired one.
	selfSignedRenewBefore = 30 * 24 * time.Hour
)

// SelfSignedCertPath is where the generated certificate lives, for clients (and other
// servers in tests) that are told to trust it.
func SelfSignedCertPath(dataDir string) string {
	return filepath.Join(dataDir, "tls", "selfsigned-cert.pem")
}

func selfSignedKeyPath(dataDir string) string {
	return filepath.Join(dataDir, "tls", "selfsigned-key.pem")
}

// loadSelfSigned returns the self-signed certificate for hostname from dataDir/tls,
// generating it first if it is missing, unreadable, for another name, or expires within
// selfSignedRenewBefore of now.
func loadSelfSigned(hostname, dataDir string, now time.Time, log *slog.Logger) (tls.Certificate, error) {
	if hostname == "" {
		return tls.Certificate{}, errors.New("self-signed TLS certificate: the hostname is empty; set hostname in the config")
	}
	if dataDir == "" {
		return tls.Certificate{}, errors.New("self-signed TLS certificate: data_dir is empty")
	}
	hostname = strings.ToLower(hostname)
	certPath, keyPath := SelfSignedCertPath(dataDir), selfSignedKeyPath(dataDir)

	cert, err := loadPair(certPath, keyPath)
	reason := ""
	switch {
	case err == nil:
		reason = unusableReason(cert, hostname, now)
	case errors.Is(err, fs.ErrNotExist):
		reason = "none generated yet"
	default:
		reason = err.Error()
	}
	if reason != "" {
		log.Info("generating a self-signed TLS certificate", "hostname", hostname, "reason", reason)
		if cert, err = generateSelfSigned(hostname, dataDir, now); err != nil {
			return tls.Certificate{}, err
		}
	}
	log.Warn("using a self-signed TLS certificate: other mail servers and mail clients will not trust it; "+
		"set tls.cert_file and tls.key_file to a certificate from a public CA",
		"cert", certPath, "hostname", hostname, "not_after", cert.Leaf.NotAfter.UTC().Format(time.RFC3339))
	return *cert, nil
}

// unusableReason says why an existing self-signed certificate must be replaced, or "".
func unusableReason(cert *tls.Certificate, hostname string, now time.Time) string {
	leaf := cert.Leaf
	switch {
	case leaf == nil:
		return "certificate cannot be parsed"
	case leaf.Subject.CommonName != hostname || !slices.Contains(leaf.DNSNames, hostname):
		return fmt.Sprintf("it is for %q, not %q", leaf.Subject.CommonName, hostname)
	case now.Add(selfSignedRenewBefore).After(leaf.NotAfter):
		return "it expires on " + leaf.NotAfter.UTC().Format(time.DateOnly)
	}
	return ""
}

// generateSelfSigned creates an ECDSA P-256 certificate for hostname, localhost and the
// loopback addresses, valid for selfSignedLifetime, and writes it to dataDir/tls.
func generateSelfSigned(hostname, dataDir string, now time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate TLS key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("generate certificate serial number: %w", err)
	}
	names := []string{hostname}
	if hostname != "localhost" {
		names = append(names, "localhost")
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: hostname, Organization: []string{"Repute self-signed"}},
		NotBefore:    now.Add(-time.Hour), // tolerate clients whose clocks are a little behind
		NotAfter:     now.Add(selfSignedLifetime),
		DNSNames:     names,
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		// A leaf, not a CA: browsers and some mail clients reject CA certificates used by
		// servers, while a leaf added to a trust store is accepted as its own anchor.
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("create self-signed certificate: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode TLS key: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})

	dir := filepath.Join(dataDir, "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create TLS directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("restrict TLS directory: %w", err)
	}
	// Key first: a crash between the two writes leaves a pair that does not match, which
	// the next start detects and regenerates.
	if err := writeFileAtomic(selfSignedKeyPath(dataDir), keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(SelfSignedCertPath(dataDir), certPEM, 0o644); err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err == nil {
		err = setLeaf(&cert)
	}
	if err != nil {
		return nil, fmt.Errorf("self-signed certificate: %w", err)
	}
	return &cert, nil
}

// writeFileAtomic replaces path with data: temp file, write, fsync, rename, fsync the
// directory, so a crash leaves either the old file or the new one, never a torn one.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err = tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err = d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
