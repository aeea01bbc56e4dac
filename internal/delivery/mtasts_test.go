package delivery

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// policyServer serves an MTA-STS policy over HTTPS with a certificate from the env's CA.
type policyServer struct {
	mu      sync.Mutex
	policy  string // "" answers 404
	fetches atomic.Int32
	srv     *httptest.Server
}

func (ps *policyServer) set(policy string) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.policy = policy
}

// stsEnv is an env for b.test with MX mx.b.test (127.0.0.11), an _mta-sts record and a
// policy host mta-sts.b.test (127.0.0.70:443) that the route's STS dials at an httptest
// server, so the default policy HTTP client, resolver included, is what gets tested.
func stsEnv(t *testing.T, policy string) (*env, *policyServer) {
	e := newEnv(t, "b.test. MX 10 mx.b.test.", "mx.b.test. A 127.0.0.11",
		`_mta-sts.b.test. TXT "v=STSv1; id=1"`, "mta-sts.b.test. A 127.0.0.70")
	ps := &policyServer{policy: policy}
	ps.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ps.fetches.Add(1)
		ps.mu.Lock()
		p := ps.policy
		ps.mu.Unlock()
		if r.URL.Path != "/.well-known/mta-sts.txt" || r.Host != "mta-sts.b.test" || p == "" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(p)) //nolint:errcheck // test server
	}))
	ps.srv.TLS = serverTLS(e.ca.leaf(t, "mta-sts.b.test"))
	ps.srv.StartTLS()
	t.Cleanup(ps.srv.Close)
	policyAddr := ps.srv.Listener.Addr().String()
	e.sts.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == "127.0.0.70:443" {
			addr = policyAddr
		}
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	return e, ps
}

func stsPolicyText(mode string, mx ...string) string {
	s := "version: STSv1\nmode: " + mode + "\nmax_age: 86400\n"
	for _, m := range mx {
		s += "mx: " + m + "\n"
	}
	return s
}

func TestMTASTS(t *testing.T) {
	tests := []struct {
		name     string
		policy   string
		sink     func(e *env) sinkConfig // nil: no server
		want     want
		tlsrpt   string
		received int
	}{
		{
			name:   "enforce: MX not in policy is not contacted",
			policy: stsPolicyText("enforce", "mail.b.test"),
			sink:   func(e *env) sinkConfig { return sinkConfig{tls: serverTLS(e.ca.leaf(e.t, "mx.b.test"))} },
			want:   want{rcpt: "bob@b.test", text: "MTA-STS policy enforce: MX mx.b.test not in policy [mail.b.test]"},
			tlsrpt: "validation-failure",
		},
		{
			name:     "enforce: PKIX-valid TLS",
			policy:   stsPolicyText("enforce", "mail.b.test", "*.b.test"),
			sink:     func(e *env) sinkConfig { return sinkConfig{tls: serverTLS(e.ca.leaf(e.t, "mx.b.test"))} },
			want:     want{rcpt: "bob@b.test", code: 250, mx: "mx.b.test", tls: true, verified: "pkix"},
			received: 1,
		},
		{
			name:   "enforce: untrusted certificate",
			policy: stsPolicyText("enforce", "mx.b.test"),
			sink: func(e *env) sinkConfig {
				return sinkConfig{tls: serverTLS(newCA(e.t).leaf(e.t, "mx.b.test"))}
			},
			want:   want{rcpt: "bob@b.test", mx: "mx.b.test", text: "MTA-STS policy enforce: TLS with mx.b.test failed"},
			tlsrpt: "certificate-not-trusted",
		},
		{
			name:   "enforce: certificate for another name",
			policy: stsPolicyText("enforce", "mx.b.test"),
			sink:   func(e *env) sinkConfig { return sinkConfig{tls: serverTLS(e.ca.leaf(e.t, "other.b.test"))} },
			want:   want{rcpt: "bob@b.test", mx: "mx.b.test", text: "MTA-STS policy enforce: TLS with mx.b.test failed"},
			tlsrpt: "certificate-host-mismatch",
		},
		{
			name:   "enforce: no STARTTLS",
			policy: stsPolicyText("enforce", "mx.b.test"),
			sink:   func(e *env) sinkConfig { return sinkConfig{} },
			want:   want{rcpt: "bob@b.test", mx: "mx.b.test", text: "MTA-STS policy enforce: TLS with mx.b.test failed"},
			tlsrpt: "starttls-not-supported",
		},
		{
			name:     "testing: MX not in policy is used and reported",
			policy:   stsPolicyText("testing", "mail.b.test"),
			sink:     func(e *env) sinkConfig { return sinkConfig{tls: serverTLS(e.ca.leaf(e.t, "mx.b.test"))} },
			want:     want{rcpt: "bob@b.test", code: 250, mx: "mx.b.test", tls: true},
			tlsrpt:   "validation-failure",
			received: 1,
		},
		{
			name:   "testing: untrusted certificate is used and reported",
			policy: stsPolicyText("testing", "mx.b.test"),
			sink: func(e *env) sinkConfig {
				return sinkConfig{tls: serverTLS(newCA(e.t).leaf(e.t, "mx.b.test"))}
			},
			want:     want{rcpt: "bob@b.test", code: 250, mx: "mx.b.test", tls: true},
			tlsrpt:   "certificate-not-trusted",
			received: 1,
		},
		{
			name:     "record without policy: opportunistic, fetch failure reported",
			policy:   "",
			sink:     func(e *env) sinkConfig { return sinkConfig{} },
			want:     want{rcpt: "bob@b.test", code: 250, mx: "mx.b.test"},
			tlsrpt:   "sts-policy-fetch-error",
			received: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, _ := stsEnv(t, tc.policy)
			sk := startSink(t, e.addr("127.0.0.11"), tc.sink(e))
			got := e.deliver("b.test", msg("1", "alice@a.test", "bob@b.test"))
			check(t, got, []want{tc.want})
			if got[0].TLSRPT != tc.tlsrpt {
				t.Errorf("TLSRPT %q, want %q", got[0].TLSRPT, tc.tlsrpt)
			}
			if n := len(sk.received()); n != tc.received {
				t.Errorf("server received %d messages, want %d", n, tc.received)
			}
			if strings.Contains(tc.want.text, "not in policy") && sk.connections() != 0 {
				t.Errorf("server got %d connections, want none", sk.connections())
			}
		})
	}
}

func TestMTASTSCache(t *testing.T) {
	e, ps := stsEnv(t, stsPolicyText("enforce", "mail.b.test"))
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	e.sts.Now = func() time.Time { return now }
	startSink(t, e.addr("127.0.0.11"), sinkConfig{}) // no STARTTLS
	blocked := want{rcpt: "bob@b.test", text: "not in policy [mail.b.test]"}
	deliver := func() []Attempt { return e.deliver("b.test", msg("1", "alice@a.test", "bob@b.test")) }

	check(t, deliver(), []want{blocked})
	ps.set(stsPolicyText("enforce", "mx.b.test")) // changed, but the record id is the same
	check(t, deliver(), []want{blocked})
	if n := ps.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches with an unchanged record id, want 1", n)
	}

	// The record disappears (here: fails to resolve): the cached policy stays in force.
	e.dns.Fail("_mta-sts.b.test.", mdns.RcodeServerFailure)
	check(t, deliver(), []want{blocked})

	// After max_age the policy is fetched again.
	e.dns.Fail("_mta-sts.b.test.", mdns.RcodeSuccess)
	now = now.Add(86401 * time.Second)
	check(t, deliver(), []want{{rcpt: "bob@b.test", mx: "mx.b.test", text: "MTA-STS policy enforce: TLS with mx.b.test failed"}})
	if n := ps.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches after expiry, want 2", n)
	}

	// A new record id means a new fetch at once.
	ps.set(stsPolicyText("enforce", "mail.b.test"))
	if err := e.dns.Replace(`_mta-sts.b.test. TXT "v=STSv1; id=2"`); err != nil {
		t.Fatal(err)
	}
	check(t, deliver(), []want{blocked})
	if n := ps.fetches.Load(); n != 3 {
		t.Fatalf("%d fetches after the record id changed, want 3", n)
	}
}

// TestMTASTSFailedFetchRemembered: a policy host that answers 404 is asked once per five
// minutes, not on every delivery; a new record id is tried at once.
func TestMTASTSFailedFetchRemembered(t *testing.T) {
	e, ps := stsEnv(t, "") // 404
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	e.sts.Now = func() time.Time { return now }
	startSink(t, e.addr("127.0.0.11"), sinkConfig{})
	deliver := func() { e.deliver("b.test", msg("1", "alice@a.test", "bob@b.test")) }
	deliver()
	deliver()
	if n := ps.fetches.Load(); n != 1 {
		t.Fatalf("%d fetches for two deliveries within five minutes, want 1", n)
	}
	now = now.Add(5 * time.Minute) // failed fetches are remembered for five minutes
	deliver()
	if n := ps.fetches.Load(); n != 2 {
		t.Fatalf("%d fetches after five minutes, want 2", n)
	}
	if err := e.dns.Replace(`_mta-sts.b.test. TXT "v=STSv1; id=2"`); err != nil {
		t.Fatal(err)
	}
	deliver()
	if n := ps.fetches.Load(); n != 3 {
		t.Fatalf("%d fetches after the record id changed, want 3", n)
	}
}
