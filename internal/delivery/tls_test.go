package delivery

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"testing"

	mdns "github.com/miekg/dns"
)

// spkiHash is the SHA-256 of a certificate's SubjectPublicKeyInfo, for TLSA x 1 1.
func spkiHash(c *x509.Certificate) string {
	return fmt.Sprintf("%x", sha256.Sum256(c.RawSubjectPublicKeyInfo))
}

// daneEnv is an env for b.test (MX mx.b.test, 127.0.0.11) whose answers are all
// DNSSEC-authentic, with a server certificate from the env's CA.
func daneEnv(t *testing.T) (*env, tls.Certificate) {
	e := newEnv(t, "b.test. MX 10 mx.b.test.", "mx.b.test. A 127.0.0.11", "test. NS ns.test.")
	e.dns.SetAllAuthentic(true)
	return e, e.ca.leaf(t, "mx.b.test")
}

func (e *env) tlsa(usage int, hash string) string {
	return fmt.Sprintf("_%d._tcp.mx.b.test. TLSA %d 1 1 %s", e.port, usage, hash)
}

func TestDANE(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(e *env, cert tls.Certificate) sinkConfig
		want     want
		tlsrpt   string
		received int
	}{
		{
			name: "DANE-EE match",
			setup: func(e *env, cert tls.Certificate) sinkConfig {
				e.add(e.tlsa(3, spkiHash(cert.Leaf)))
				return sinkConfig{tls: serverTLS(cert)}
			},
			want:     want{rcpt: "bob@b.test", code: 250, mx: "mx.b.test", tls: true, verified: "dane"},
			received: 1,
		},
		{
			name: "DANE-TA match",
			setup: func(e *env, cert tls.Certificate) sinkConfig {
				e.add(e.tlsa(2, spkiHash(e.ca.Cert)))
				chain := cert
				chain.Certificate = append(chain.Certificate, e.ca.Cert.Raw)
				return sinkConfig{tls: serverTLS(chain)}
			},
			want:     want{rcpt: "bob@b.test", code: 250, mx: "mx.b.test", tls: true, verified: "dane"},
			received: 1,
		},
		{
			name: "wrong TLSA record",
			setup: func(e *env, cert tls.Certificate) sinkConfig {
				e.add(e.tlsa(3, spkiHash(e.ca.Cert)))
				return sinkConfig{tls: serverTLS(cert)}
			},
			want:   want{rcpt: "bob@b.test", mx: "mx.b.test", text: "DANE: TLS with mx.b.test failed"},
			tlsrpt: "validation-failure",
		},
		{
			name: "TLSA but no STARTTLS",
			setup: func(e *env, cert tls.Certificate) sinkConfig {
				e.add(e.tlsa(3, spkiHash(cert.Leaf)))
				return sinkConfig{}
			},
			want:   want{rcpt: "bob@b.test", mx: "mx.b.test", text: "DANE: TLS with mx.b.test failed"},
			tlsrpt: "starttls-not-supported",
		},
		{
			name: "TLSA lookup fails",
			setup: func(e *env, cert tls.Certificate) sinkConfig {
				e.dns.Fail(fmt.Sprintf("_%d._tcp.mx.b.test.", e.port), mdns.RcodeServerFailure)
				return sinkConfig{tls: serverTLS(cert)}
			},
			want:   want{rcpt: "bob@b.test", mx: "mx.b.test", text: "DANE: TLSA lookup for mx.b.test failed"},
			tlsrpt: "dnssec-invalid",
		},
		{
			name: "TLSA not authentic: DANE skipped",
			setup: func(e *env, cert tls.Certificate) sinkConfig {
				e.dns.SetAllAuthentic(false)
				e.add(e.tlsa(3, spkiHash(e.ca.Cert))) // would not match
				return sinkConfig{tls: serverTLS(cert)}
			},
			want:     want{rcpt: "bob@b.test", code: 250, mx: "mx.b.test", tls: true},
			received: 1,
		},
		{
			name: "authentic MX without TLSA: PKIX-valid TLS counts as verified",
			setup: func(e *env, cert tls.Certificate) sinkConfig {
				return sinkConfig{tls: serverTLS(cert)}
			},
			want:     want{rcpt: "bob@b.test", code: 250, mx: "mx.b.test", tls: true, verified: "pkix"},
			received: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, cert := daneEnv(t)
			sk := startSink(t, e.addr("127.0.0.11"), tc.setup(e, cert))
			got := e.deliver("b.test", msg("1", "alice@a.test", "bob@b.test"))
			check(t, got, []want{tc.want})
			if got[0].TLSRPT != tc.tlsrpt {
				t.Errorf("TLSRPT %q, want %q", got[0].TLSRPT, tc.tlsrpt)
			}
			if n := len(sk.received()); n != tc.received {
				t.Errorf("server received %d messages, want %d", n, tc.received)
			}
		})
	}
}

func TestRequireTLS(t *testing.T) {
	requireTLS := func(m *Message) *Message { m.RequireTLS = true; return m }
	tests := []struct {
		name      string
		dane      bool // publish a matching TLSA record
		authentic bool
		announce  bool // server announces REQUIRETLS
		want      []want
		received  int
	}{
		{
			name: "unverified TLS", authentic: false, announce: true,
			want: []want{
				{rcpt: "bob@b.test", enhanced: "5.7.10", permanent: true, mx: "mx.b.test", tls: true,
					text: "REQUIRETLS: TLS to mx.b.test is not verified by DANE or MTA-STS"},
				{rcpt: "carol@b.test", code: 250, mx: "mx.b.test", tls: true},
			},
			received: 1,
		},
		{
			name: "verified, but not announced", dane: true, authentic: true,
			want: []want{
				{rcpt: "bob@b.test", enhanced: "5.7.10", permanent: true, mx: "mx.b.test", tls: true, verified: "dane",
					text: "REQUIRETLS not supported by mx.b.test"},
				{rcpt: "carol@b.test", code: 250, mx: "mx.b.test", tls: true, verified: "dane"},
			},
			received: 1,
		},
		{
			name: "DANE-verified and announced", dane: true, authentic: true, announce: true,
			want: []want{
				{rcpt: "bob@b.test", code: 250, mx: "mx.b.test", tls: true, verified: "dane"},
				{rcpt: "carol@b.test", code: 250, mx: "mx.b.test", tls: true, verified: "dane"},
			},
			received: 2,
		},
		{
			name: "secure MX name, PKIX-verified and announced", authentic: true, announce: true,
			want: []want{
				{rcpt: "bob@b.test", code: 250, mx: "mx.b.test", tls: true, verified: "pkix"},
				{rcpt: "carol@b.test", code: 250, mx: "mx.b.test", tls: true, verified: "pkix"},
			},
			received: 2,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, cert := daneEnv(t)
			e.dns.SetAllAuthentic(tc.authentic)
			if tc.dane {
				e.add(e.tlsa(3, spkiHash(cert.Leaf)))
			}
			sk := startSink(t, e.addr("127.0.0.11"), sinkConfig{tls: serverTLS(cert), requireTLS: tc.announce})
			got := e.deliver("b.test",
				requireTLS(msg("1", "alice@a.test", "bob@b.test")),
				msg("2", "alice@a.test", "carol@b.test"))
			check(t, got, tc.want)
			rcvd := sk.received()
			if len(rcvd) != tc.received {
				t.Fatalf("server received %d messages, want %d", len(rcvd), tc.received)
			}
			if tc.received == 2 && !rcvd[0].requireTLS {
				t.Errorf("first message sent without REQUIRETLS")
			}
		})
	}
}
