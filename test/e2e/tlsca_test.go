package e2e

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/repute-mail/repute/internal/testcert"
)

// testCA is a certificate authority of one test. Its certificate is written to PEMPath,
// which a server under test trusts through SSL_CERT_FILE (Go's crypto/x509 reads it on
// Linux instead of the system roots).
type testCA struct {
	*testcert.CA
	PEMPath string
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	ca := &testCA{CA: testcert.NewCA(t, "Repute e2e test CA "+t.Name()), PEMPath: filepath.Join(t.TempDir(), "ca.pem")}
	if err := os.WriteFile(ca.PEMPath, ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return ca
}

// issue makes a server certificate for the DNS names, signed by the CA; the chain
// holds the leaf and the CA certificate.
func (ca *testCA) issue(t *testing.T, names ...string) tls.Certificate {
	return ca.Issue(t, true, names...)
}

// spkiSHA256 is the hex SHA-256 of the leaf's SubjectPublicKeyInfo: the data of a
// TLSA 3 1 1 record (DANE-EE, SPKI, SHA-256; RFC 7671 §5.1) for it.
func spkiSHA256(c tls.Certificate) string {
	sum := sha256.Sum256(c.Leaf.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

// writeCertFiles stores the chain and the key as PEM files in dir, for daemons that read
// files (Postfix).
func writeCertFiles(t *testing.T, dir, name string, c tls.Certificate) (certPath, keyPath string) {
	t.Helper()
	var chain []byte
	for _, der := range c.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certPath, chain, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath
}
