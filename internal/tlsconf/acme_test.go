package tlsconf

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/repute-mail/repute/internal/config"
	"github.com/repute-mail/repute/internal/dns/dnstest"
)

const testHost = "mail.example.test"

func TestACMENames(t *testing.T) {
	tests := []struct {
		name    string
		domains []string
		want    []string
	}{
		{"host name only", nil, []string{testHost}},
		{"one domain", []string{"example.test"}, []string{testHost, "mta-sts.example.test", "autoconfig.example.test", "autodiscover.example.test"}},
		{"sorted, normalised, deduplicated", []string{"B.test.", "a.test", "b.test", ""},
			[]string{testHost, "mta-sts.a.test", "autoconfig.a.test", "autodiscover.a.test", "mta-sts.b.test", "autoconfig.b.test", "autodiscover.b.test"}},
		{"host name among the names", []string{"test"}, []string{testHost, "mta-sts.test", "autoconfig.test", "autodiscover.test"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := acmeNames(testHost, tt.domains); !slices.Equal(got, tt.want) {
				t.Errorf("acmeNames = %v, want %v", got, tt.want)
			}
		})
	}
	if got := acmeNames("mta-sts.a.test", []string{"a.test"}); !slices.Equal(got, []string{"mta-sts.a.test", "autoconfig.a.test", "autodiscover.a.test"}) {
		t.Errorf("host name that is also an mta-sts name: %v", got)
	}
}

func TestChallengePorts(t *testing.T) {
	tests := []struct {
		http, https string
		host        string
		hp, tp      int
		err         string
	}{
		{"0.0.0.0:80", "0.0.0.0:443", "0.0.0.0", 80, 443, ""},
		{"127.0.0.1:8080", "", "127.0.0.1", 8080, 0, ""},
		{"", "[::]:443", "::", 0, 443, ""},
		{"127.0.0.1:80", "192.0.2.1:443", "", 80, 443, ""},
		{"localhost", "", "", 0, 0, "listen.http"},
		{"", "127.0.0.1:https", "", 0, 0, "fixed port"},
		{"127.0.0.1:0", "", "", 0, 0, "fixed port"},
	}
	for _, tt := range tests {
		host, hp, tp, err := challengePorts(tt.http, tt.https)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("challengePorts(%q, %q) error = %v, want %q", tt.http, tt.https, err, tt.err)
			}
			continue
		}
		if err != nil || host != tt.host || hp != tt.hp || tp != tt.tp {
			t.Errorf("challengePorts(%q, %q) = %q, %d, %d, %v", tt.http, tt.https, host, hp, tp, err)
		}
	}
}

// TestACMEBeforeCertificate covers what needs no CA: the keys, the self-signed fallback
// served while the CA cannot be reached, TLSAKeys, and Start/Close.
func TestACMEBeforeCertificate(t *testing.T) {
	dataDir := t.TempDir()
	log, logs := newLog()
	// Nothing listens on port 1: every order fails at once and is retried later.
	c := config.TLS{ACMEEmail: "postmaster@example.test", ACMEDirectory: "https://127.0.0.1:1/dir"}
	opts := Options{Logger: log, HTTPAddr: "127.0.0.1:1",
		Domains: func(context.Context) ([]string, error) { return []string{"example.test"}, nil }}
	certs, err := Load(c, testHost, dataDir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer certs.Close()
	if err := certs.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := certs.Start(context.Background()); err == nil {
		t.Error("second Start succeeded")
	}
	ln := serveTLS(t, certs.TLSConfig())

	cur := keyFile(t, CurrentKeyFile(dataDir))
	next := keyFile(t, NextKeyFile(dataDir))
	if samePublicKey(cur, next) {
		t.Fatal("the current and the next key are the same")
	}
	for _, name := range []string{testHost, "mta-sts.example.test", "", "unknown.example.test"} {
		leaf := handshake(t, ln, &tls.Config{ServerName: name, InsecureSkipVerify: true}).PeerCertificates[0]
		if leaf.Subject.CommonName != testHost || leaf.Issuer.CommonName != testHost {
			t.Errorf("SNI %q: got %q issued by %q, want the self-signed fallback", name, leaf.Subject.CommonName, leaf.Issuer.CommonName)
		}
		if !cur.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(leaf.PublicKey) {
			t.Errorf("SNI %q: the fallback is not for the current key", name)
		}
	}
	if n := strings.Count(logs.String(), "no certificate from the CA yet"); n != 2 {
		t.Errorf("fallback logged %d times, want once per managed name used (2):\n%s", n, logs)
	}
	certs.Close()
	certs.Close()

	// A second start keeps both keys.
	loadAndClose(t, c, dataDir, opts)
	if !samePublicKey(cur, keyFile(t, CurrentKeyFile(dataDir))) || !samePublicKey(next, keyFile(t, NextKeyFile(dataDir))) {
		t.Error("keys changed between starts")
	}
	for _, f := range []string{CurrentKeyFile(dataDir), NextKeyFile(dataDir)} {
		if fi, err := os.Stat(f); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v", f, err, fi.Mode())
		}
	}

	spkis, err := TLSAKeys(c, dataDir)
	if err != nil || len(spkis) != 2 {
		t.Fatalf("TLSAKeys = %d keys, %v", len(spkis), err)
	}
	for i, k := range []crypto.Signer{cur, next} {
		want, _ := x509.MarshalPKIXPublicKey(k.Public())
		if !bytes.Equal(spkis[i], want) {
			t.Errorf("TLSAKeys[%d] is not the public key of %s", i, []string{"current-key.pem", "next-key.pem"}[i])
		}
	}

	// An unreadable key is never replaced silently: its TLSA record may be published.
	if err := os.WriteFile(CurrentKeyFile(dataDir), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(c, testHost, dataDir, opts); err == nil || !strings.Contains(err.Error(), "restore it from a backup") {
		t.Errorf("garbled key: err = %v", err)
	}
}

// TestACMEKeyFromStorage: without current-key.pem (data_dir/tls lost), the key of the
// host name's stored certificate becomes the current key, since its TLSA record may be
// published; a current key that differs from the stored one is reported.
func TestACMEKeyFromStorage(t *testing.T) {
	dataDir := t.TempDir()
	c := config.TLS{ACMEEmail: "postmaster@example.test", ACMEDirectory: "https://127.0.0.1:1/dir"}
	issuerKey := (&certmagic.ACMEIssuer{CA: c.ACMEDirectory}).IssuerKey()
	stored := filepath.Join(acmeStorageDir(dataDir), filepath.FromSlash(certmagic.StorageKeys.SitePrivateKey(issuerKey, testHost)))
	storedKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeKey(stored, storedKey); err != nil {
		t.Fatal(err)
	}
	log, logs := newLog()
	loadAndClose(t, c, dataDir, Options{Logger: log, HTTPAddr: "127.0.0.1:80"})
	if !samePublicKey(storedKey, keyFile(t, CurrentKeyFile(dataDir))) {
		t.Error("the stored key was not adopted")
	}
	if !strings.Contains(logs.String(), "adopted the key of the stored certificate") || strings.Contains(logs.String(), "other than the current key") {
		t.Errorf("log:\n%s", logs)
	}

	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := writeKey(stored, other); err != nil {
		t.Fatal(err)
	}
	log, logs = newLog()
	loadAndClose(t, c, dataDir, Options{Logger: log, HTTPAddr: "127.0.0.1:80"})
	if !samePublicKey(storedKey, keyFile(t, CurrentKeyFile(dataDir))) {
		t.Error("the current key changed")
	}
	if !strings.Contains(logs.String(), "other than the current key") {
		t.Errorf("differing stored key not reported:\n%s", logs)
	}
}

// loadAndClose loads c for testHost and releases it (certmagic's maintenance runs from Load).
func loadAndClose(t *testing.T, c config.TLS, dataDir string, opts Options) {
	t.Helper()
	certs, err := Load(c, testHost, dataDir, opts)
	if err != nil {
		t.Fatal(err)
	}
	certs.Close()
}

func TestTLSAKeysWithoutACME(t *testing.T) {
	dir := t.TempDir()
	if got, err := TLSAKeys(config.TLS{}, dir); err != nil || got != nil {
		t.Errorf("before the first start: %v, %v", got, err)
	}
	conf, err := loadConfig(config.TLS{}, testHost, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := TLSAKeys(config.TLS{}, dir)
	if err != nil || len(got) != 1 || !bytes.Equal(got[0], conf.Certificates[0].Leaf.RawSubjectPublicKeyInfo) {
		t.Errorf("self-signed: %d keys, %v", len(got), err)
	}
	certFile, keyFile := writePair(t, dir, testHost)
	got, err = TLSAKeys(config.TLS{CertFile: certFile, KeyFile: keyFile}, dir)
	if err != nil || len(got) != 1 {
		t.Fatalf("files: %d keys, %v", len(got), err)
	}
	if _, err := TLSAKeys(config.TLS{CertFile: keyFile, KeyFile: keyFile}, dir); err == nil {
		t.Error("a key file as certificate gave no error")
	}
}

// TestACMEHTTP01 obtains certificates from pebble through HTTP-01 on the plain HTTP
// listener, serves them on a mail listener, and follows a domain added and one removed.
func TestACMEHTTP01(t *testing.T) {
	env := startACMETest(t, acmeTestOptions{http01: true})
	env.waitIssued(t, env.mail, testHost, nil)
	env.waitIssued(t, env.mail, "mta-sts.example.test", nil)
	env.waitIssued(t, env.mail, "autoconfig.example.test", nil)
	env.checkChallenges(t, "http-01", "tls-alpn-01")
	// Without SNI (common between MTAs), the host name's certificate.
	st := handshake(t, env.mail, &tls.Config{InsecureSkipVerify: true})
	if err := env.verify(st, testHost); err != nil {
		t.Errorf("without SNI: %v", err)
	}
	// The challenge handler passes everything else on.
	resp, err := http.Get("http://" + env.http.String() + "/.well-known/acme-challenge/unknown")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTeapot {
		t.Errorf("unknown challenge: status %d, want the next handler's", resp.StatusCode)
	}

	// A domain added gets its certificates after Refresh; one removed is no longer served.
	env.setDomains("example2.test")
	env.certs.Refresh()
	env.waitIssued(t, env.mail, "mta-sts.example2.test", nil)
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := handshake(t, env.mail, &tls.Config{ServerName: "mta-sts.example.test", InsecureSkipVerify: true})
		if err := env.verify(st, testHost); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the removed domain's name is still served its own certificate")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(env.logs.String(), "ACME: obtained a certificate") {
		t.Errorf("issuance not logged:\n%s", env.logs)
	}
}

// TestACMETLSALPN01 obtains certificates through TLS-ALPN-01 on the HTTPS listener and
// checks that only that listener answers "acme-tls/1", while ordinary clients with or
// without ALPN still connect everywhere.
func TestACMETLSALPN01(t *testing.T) {
	env := startACMETest(t, acmeTestOptions{tlsALPN01: true})
	env.waitIssued(t, env.https, testHost, nil)
	env.waitIssued(t, env.https, "mta-sts.example.test", nil)
	env.checkChallenges(t, "tls-alpn-01", "http-01")

	for _, tt := range []struct {
		name   string
		ln     net.Addr
		protos []string
	}{
		{"https, browser ALPN", env.https, []string{"h2", "http/1.1"}},
		{"https, no ALPN", env.https, nil},
		{"mail, smtp ALPN", env.mail, []string{"smtp"}},
		// A mail listener never answers the challenge: the certificate is the real one.
		{"mail, acme-tls/1 only", env.mail, []string{acmeTLS1}},
	} {
		st := handshake(t, tt.ln, &tls.Config{ServerName: "mta-sts.example.test", NextProtos: tt.protos, InsecureSkipVerify: true})
		if st.NegotiatedProtocol != "" {
			t.Errorf("%s: negotiated %q", tt.name, st.NegotiatedProtocol)
		}
		if err := env.verify(st, "mta-sts.example.test"); err != nil {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
	// On the HTTPS listener, acme-tls/1 without a pending challenge fails the handshake
	// rather than serve a certificate.
	c, err := tls.Dial("tcp", env.https.String(), &tls.Config{ServerName: testHost, NextProtos: []string{acmeTLS1}, InsecureSkipVerify: true})
	if err == nil {
		c.Close()
		t.Error("acme-tls/1 handshake without a challenge succeeded")
	}
}

// TestACMERenewal has pebble issue certificates that live seconds, so certmagic's
// maintenance renews them: the renewed certificate must be served by the listener that was
// already running, for the same key.
func TestACMERenewal(t *testing.T) {
	env := startACMETest(t, acmeTestOptions{http01: true, validity: 9 * time.Second, noDomains: true})
	first := env.waitIssued(t, env.mail, testHost, nil)
	// With a third of 9 s as renewal window, the renewal starts after about 6 s.
	renewed := env.waitIssued(t, env.mail, testHost, func(leaf *x509.Certificate) bool {
		return leaf.SerialNumber.Cmp(first.SerialNumber) != 0
	})
	if !bytes.Equal(renewed.RawSubjectPublicKeyInfo, first.RawSubjectPublicKeyInfo) {
		t.Error("the renewed certificate has another key")
	}
	if !strings.Contains(env.logs.String(), "ACME: renewed a certificate") {
		t.Errorf("renewal not logged:\n%s", env.logs)
	}
}

type acmeTestOptions struct {
	http01, tlsALPN01 bool
	validity          time.Duration // of pebble's certificates; 0 = pebble's default
	noDomains         bool          // manage the host name only
}

type acmeTest struct {
	certs             *Certs
	dataDir           string
	mail, http, https net.Addr
	roots             *x509.CertPool // pebble's issuing root
	logs              *logBuffer
	pebbleOut         *logBuffer

	mu      sync.Mutex
	domains []string
}

func (e *acmeTest) setDomains(d ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.domains = d
}

// checkChallenges checks in the server's log that our listeners answered the challenges of
// type used, and none of type unused.
func (e *acmeTest) checkChallenges(t *testing.T, used, unused string) {
	t.Helper()
	logs := e.logs.String()
	if !strings.Contains(logs, "challenge="+used) {
		t.Errorf("no %s challenge answered:\n%s", used, logs)
	}
	if strings.Contains(logs, "challenge="+unused) {
		t.Errorf("a %s challenge was answered:\n%s", unused, logs)
	}
}

// startACMETest runs pebble against an in-process DNS server that points the test names at
// 127.0.0.1, and Certs with a mail listener plus the challenge listeners asked for.
func startACMETest(t *testing.T, o acmeTestOptions) *acmeTest {
	t.Helper()
	pebbleBin, err := exec.LookPath("pebble")
	if err != nil {
		pebbleBin = "/usr/bin/pebble"
	}
	if _, err := os.Stat(pebbleBin); err != nil {
		t.Skip("pebble (Debian package pebble, an ACME test CA) not installed: apt-get install pebble")
	}
	var records []string
	for _, d := range []string{"example.test", "example2.test"} {
		for _, n := range acmeNames(testHost, []string{d}) {
			records = append(records, n+". A 127.0.0.1")
		}
	}
	dnsSrv, err := dnstest.Start(records...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dnsSrv.Close() })

	log, logs := newLog()
	e := &acmeTest{dataDir: t.TempDir(), logs: logs, domains: []string{"example.test"}}
	if o.noDomains {
		e.domains = nil
	}
	opts := Options{Logger: log, RenewCheckInterval: 500 * time.Millisecond, Domains: func(context.Context) ([]string, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		return slices.Clone(e.domains), nil
	}}
	// pebble validates on the ports it is configured with; a challenge turned off gets a
	// port where nothing listens.
	unused := freeAddr(t)
	httpPort, tlsPort := port(unused), port(unused)
	var httpLn, httpsLn net.Listener
	if o.http01 {
		httpLn = listen(t)
		e.http, opts.HTTPAddr, httpPort = httpLn.Addr(), httpLn.Addr().String(), port(httpLn.Addr())
	}
	if o.tlsALPN01 {
		httpsLn = listen(t)
		e.https, opts.HTTPSAddr, tlsPort = httpsLn.Addr(), httpsLn.Addr().String(), port(httpsLn.Addr())
	}

	pebbleDir := t.TempDir()
	pebbleCert, err := generateSelfSigned("localhost", pebbleDir, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	caFile := SelfSignedCertPath(pebbleDir)
	api, mgmt := freeAddr(t), freeAddr(t)
	pc := map[string]any{
		"listenAddress": api.String(), "managementListenAddress": mgmt.String(),
		"certificate": caFile, "privateKey": selfSignedKeyPath(pebbleDir),
		"httpPort": httpPort, "tlsPort": tlsPort,
		"ocspResponderURL": "", "externalAccountBindingRequired": false,
	}
	if o.validity > 0 {
		pc["certificateValidityPeriod"] = int(o.validity.Seconds())
	}
	cfgJSON, _ := json.Marshal(map[string]any{"pebble": pc})
	cfgFile := filepath.Join(pebbleDir, "pebble-config.json")
	if err := os.WriteFile(cfgFile, cfgJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	e.pebbleOut = &logBuffer{}
	cmd := exec.Command(pebbleBin, "-config", cfgFile, "-dnsserver", dnsSrv.Addr)
	// No artificial validation delay, no rejected nonces, fresh authorisations each order.
	cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0", "PEBBLE_AUTHZREUSE=0")
	cmd.Stdout, cmd.Stderr = e.pebbleOut, e.pebbleOut
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() || os.Getenv("ACMEDEBUG") != "" {
			t.Logf("pebble:\n%s", e.pebbleOut)
			t.Logf("server log:\n%s", e.logs)
		}
	})

	pebblePool := x509.NewCertPool()
	pebblePool.AddCert(pebbleCert.Leaf)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pebblePool}}}
	var rootPEM []byte
	for deadline := time.Now().Add(15 * time.Second); ; {
		select {
		case <-exited:
			t.Fatalf("pebble exited:\n%s", e.pebbleOut)
		default:
		}
		if rootPEM, err = get(client, "https://"+mgmt.String()+"/roots/0"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pebble's management interface does not answer: %v\n%s", err, e.pebbleOut)
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.roots = x509.NewCertPool()
	if !e.roots.AppendCertsFromPEM(rootPEM) {
		t.Fatalf("pebble's /roots/0 holds no certificate: %q", rootPEM)
	}

	c := config.TLS{ACMEEmail: "postmaster@example.test", ACMEDirectory: "https://" + api.String() + "/dir", ACMECAFile: caFile}
	if e.certs, err = Load(c, testHost, e.dataDir, opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.certs.Close)
	e.mail = serveTLS(t, e.certs.TLSConfig())
	if httpLn != nil {
		notFound := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
		serveHTTP(t, httpLn, e.certs.HTTPChallengeHandler(notFound))
	}
	if httpsLn != nil {
		serveHTTP(t, tls.NewListener(httpsLn, e.certs.HTTPSConfig()), http.NotFoundHandler())
	}
	if err := e.certs.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return e
}

// waitIssued polls until the listener at addr serves, for SNI name, a certificate from
// pebble that verifies for name (and satisfies ok, if given), and returns its leaf.
func (e *acmeTest) waitIssued(t *testing.T, addr net.Addr, name string, ok func(*x509.Certificate) bool) *x509.Certificate {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second)
	for {
		st := handshake(t, addr, &tls.Config{ServerName: name, InsecureSkipVerify: true})
		err := e.verify(st, name)
		leaf := st.PeerCertificates[0]
		if err == nil && (ok == nil || ok(leaf)) {
			cur := keyFile(t, CurrentKeyFile(e.dataDir))
			if !cur.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(leaf.PublicKey) {
				t.Errorf("%s: the certificate is not for current-key.pem", name)
			}
			return leaf
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no certificate from pebble within 45 s; last served %q issued by %q (%v)",
				name, leaf.Subject.CommonName, leaf.Issuer.CommonName, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// verify checks the served chain against pebble's root for name.
func (e *acmeTest) verify(st tls.ConnectionState, name string) error {
	inter := x509.NewCertPool()
	for _, c := range st.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err := st.PeerCertificates[0].Verify(x509.VerifyOptions{DNSName: name, Roots: e.roots, Intermediates: inter})
	return err
}

// handshake connects to addr with conf and returns the connection state.
func handshake(t *testing.T, addr net.Addr, conf *tls.Config) tls.ConnectionState {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr.String(), conf)
	if err != nil {
		t.Fatalf("handshake with %s (SNI %q): %v", addr, conf.ServerName, err)
	}
	defer c.Close()
	return c.ConnectionState()
}

// serveTLS accepts TLS connections with conf, as a mail listener with implicit TLS would.
func serveTLS(t *testing.T, conf *tls.Config) net.Addr {
	t.Helper()
	ln := listen(t)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			raw, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				tc := tls.Server(raw, conf)
				tc.SetDeadline(time.Now().Add(5 * time.Second))
				tc.Handshake()
				tc.Close()
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr()
}

func serveHTTP(t *testing.T, ln net.Listener, h http.Handler) {
	t.Helper()
	// pebble drops its validation connections after the handshake; that is no error here.
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: stdlog.New(io.Discard, "", 0)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// freeAddr returns a loopback address with a port nothing listens on right now.
func freeAddr(t *testing.T) net.Addr {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr()
}

func port(a net.Addr) int { return a.(*net.TCPAddr).Port }

func get(c *http.Client, url string) ([]byte, error) {
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", url, resp.Status)
	}
	return body, err
}

func keyFile(t *testing.T, path string) crypto.Signer {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := pem.Decode(data); b == nil || b.Type != "PRIVATE KEY" {
		t.Fatalf("%s: not a PKCS #8 PEM key", path)
	}
	k, err := readKey(path)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
