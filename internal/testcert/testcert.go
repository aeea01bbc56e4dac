// Package testcert makes certificates for tests: a small CA that issues server
// certificates (for tests that verify TLS as a real client would: MTA-STS, DANE,
// REQUIRETLS, relays), and self-signed server configurations (for tests that only need
// TLS to work). Only tests import it.
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// CA is a certificate authority of one test.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	Pool *x509.CertPool // holds Cert, for clients that verify
	PEM  []byte         // Cert in PEM, e.g. for SSL_CERT_FILE
}

var serialSeq atomic.Int64

// serial is unique within the process, so certificates issued in one run never clash.
func serial() *big.Int { return big.NewInt(time.Now().UnixNano() + serialSeq.Add(1)) }

// NewCA makes a CA valid from an hour ago for a day.
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	cert := create(t, tmpl, tmpl, key, key)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{Cert: cert, Key: key, Pool: pool,
		PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})}
}

// Issue makes a server certificate for DNS names or IP addresses. The chain holds the
// leaf and, when withCA, the CA certificate too.
func (ca *CA) Issue(t testing.TB, withCA bool, names ...string) tls.Certificate {
	t.Helper()
	return ca.IssueValid(t, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour), withCA, names...)
}

// IssueValid is Issue for a certificate valid from notBefore to notAfter (an expired one,
// say).
func (ca *CA) IssueValid(t testing.TB, notBefore, notAfter time.Time, withCA bool, names ...string) tls.Certificate {
	t.Helper()
	key := newKey(t)
	tmpl := serverTemplate(names)
	tmpl.NotBefore, tmpl.NotAfter = notBefore, notAfter
	leaf := create(t, tmpl, ca.Cert, key, ca.Key)
	chain := [][]byte{leaf.Raw}
	if withCA {
		chain = append(chain, ca.Cert.Raw)
	}
	return tls.Certificate{Certificate: chain, PrivateKey: key, Leaf: leaf}
}

// SelfSigned returns a server configuration with a fresh self-signed certificate for
// names (DNS names or IP addresses) and a client configuration that trusts it.
func SelfSigned(t testing.TB, names ...string) (server, client *tls.Config) {
	t.Helper()
	key := newKey(t)
	tmpl := serverTemplate(names)
	tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
	tmpl.KeyUsage |= x509.KeyUsageCertSign
	cert := create(t, tmpl, tmpl, key, key)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}}},
		&tls.Config{RootCAs: pool}
}

func serverTemplate(names []string) *x509.Certificate {
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	return tmpl
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func create(t testing.TB, tmpl, parent *x509.Certificate, key, signer *ecdsa.PrivateKey) *x509.Certificate {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}
