package delivery

import (
	"context"
	"crypto/tls"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	mdns "github.com/miekg/dns"
)

var twoMX = []string{
	"b.test. MX 20 mx2.b.test.",
	"b.test. MX 10 mx1.b.test.",
	"mx1.b.test. A 127.0.0.11",
	"mx2.b.test. A 127.0.0.12",
}

func TestDeliverMX(t *testing.T) {
	tests := []struct {
		name   string
		setup  func(e *env) map[string]*sink
		domain string
		msg    *Message
		want   []want
		after  func(t *testing.T, sinks map[string]*sink)
	}{
		{
			name: "lowest preference first",
			setup: func(e *env) map[string]*sink {
				e.add(twoMX...)
				return map[string]*sink{
					"mx1": startSink(e.t, e.addr("127.0.0.11"), sinkConfig{}),
					"mx2": startSink(e.t, e.addr("127.0.0.12"), sinkConfig{}),
				}
			},
			msg:  msg("1", "alice@a.test", "bob@b.test"),
			want: []want{{rcpt: "bob@b.test", code: 250, mx: "mx1.b.test"}},
			after: func(t *testing.T, sinks map[string]*sink) {
				if n := sinks["mx2"].connections(); n != 0 {
					t.Errorf("mx2 got %d connections, want 0", n)
				}
				got := sinks["mx1"].received()
				if len(got) != 1 || got[0].from != "alice@a.test" || got[0].rcpts[0] != "bob@b.test" {
					t.Errorf("mx1 received %+v", got)
				}
			},
		},
		{
			name: "second MX when the first refuses connections",
			setup: func(e *env) map[string]*sink {
				e.add("b.test. MX 10 mx1.b.test.", "b.test. MX 20 mx2.b.test.",
					"mx1.b.test. A 127.0.0.13", "mx2.b.test. A 127.0.0.12")
				return map[string]*sink{"mx2": startSink(e.t, e.addr("127.0.0.12"), sinkConfig{})}
			},
			msg:  msg("1", "alice@a.test", "bob@b.test"),
			want: []want{{rcpt: "bob@b.test", code: 250, mx: "mx2.b.test"}},
		},
		{
			name: "second MX after a 4xx greeting",
			setup: func(e *env) map[string]*sink {
				e.add(twoMX...)
				refuser(e.t, e.addr("127.0.0.11"), "421 4.3.2 busy")
				return map[string]*sink{"mx2": startSink(e.t, e.addr("127.0.0.12"), sinkConfig{})}
			},
			msg:  msg("1", "alice@a.test", "bob@b.test"),
			want: []want{{rcpt: "bob@b.test", code: 250, mx: "mx2.b.test"}},
		},
		{
			name: "every MX greets with 4xx",
			setup: func(e *env) map[string]*sink {
				e.add(twoMX...)
				refuser(e.t, e.addr("127.0.0.11"), "421 4.3.2 busy")
				refuser(e.t, e.addr("127.0.0.12"), "421 4.7.0 too many connections, try again in 2 minutes")
				return nil
			},
			msg: msg("1", "alice@a.test", "bob@b.test"),
			want: []want{{rcpt: "bob@b.test", code: 421, enhanced: "4.7.0", mx: "mx2.b.test",
				text: "too many connections", retryAfter: 2 * time.Minute}},
		},
		{
			name: "implicit MX",
			setup: func(e *env) map[string]*sink {
				e.add("b.test. A 127.0.0.11")
				return map[string]*sink{"b": startSink(e.t, e.addr("127.0.0.11"), sinkConfig{})}
			},
			msg:  msg("1", "alice@a.test", "bob@b.test"),
			want: []want{{rcpt: "bob@b.test", code: 250, mx: "b.test"}},
		},
		{
			name:  "null MX",
			setup: func(e *env) map[string]*sink { e.add("b.test. MX 0 ."); return nil },
			msg:   msg("1", "alice@a.test", "bob@b.test", "carol@b.test"),
			want: []want{
				{rcpt: "bob@b.test", enhanced: "5.1.10", permanent: true, text: "domain does not accept mail (null MX)"},
				{rcpt: "carol@b.test", enhanced: "5.1.10", permanent: true, text: "domain does not accept mail (null MX)"},
			},
		},
		{
			name:   "no such domain",
			setup:  func(e *env) map[string]*sink { e.add("b.test. A 127.0.0.11"); return nil },
			domain: "nosuch.test",
			msg:    msg("1", "alice@a.test", "bob@nosuch.test"),
			want:   []want{{rcpt: "bob@nosuch.test", enhanced: "5.1.2", permanent: true, text: "no such domain"}},
		},
		{
			name: "SERVFAIL for MX is temporary",
			setup: func(e *env) map[string]*sink {
				e.add(twoMX...)
				e.dns.Fail("b.test.", mdns.RcodeServerFailure)
				return nil
			},
			msg:  msg("1", "alice@a.test", "bob@b.test"),
			want: []want{{rcpt: "bob@b.test", text: "MX lookup for b.test"}},
		},
		{
			name: "SERVFAIL for the MX host's address is temporary",
			setup: func(e *env) map[string]*sink {
				e.add("b.test. MX 10 mx1.b.test.", "mx1.b.test. A 127.0.0.11")
				e.dns.Fail("mx1.b.test.", mdns.RcodeServerFailure)
				return nil
			},
			msg:  msg("1", "alice@a.test", "bob@b.test"),
			want: []want{{rcpt: "bob@b.test", mx: "mx1.b.test", text: "looking up addresses of mx1.b.test"}},
		},
		{
			name: "550 refuses one recipient only",
			setup: func(e *env) map[string]*sink {
				e.add(twoMX...)
				return map[string]*sink{"mx1": startSink(e.t, e.addr("127.0.0.11"), sinkConfig{rcpt: map[string]*smtp.SMTPError{
					"nobody@b.test": {Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"},
				}})}
			},
			msg: msg("1", "alice@a.test", "bob@b.test", "nobody@b.test"),
			want: []want{
				{rcpt: "bob@b.test", code: 250, mx: "mx1.b.test"},
				{rcpt: "nobody@b.test", code: 550, enhanced: "5.1.1", permanent: true, mx: "mx1.b.test", text: "no such user"},
			},
			after: func(t *testing.T, sinks map[string]*sink) {
				got := sinks["mx1"].received()
				if len(got) != 1 || len(got[0].rcpts) != 1 || got[0].rcpts[0] != "bob@b.test" {
					t.Errorf("received %+v, want one message to bob", got)
				}
			},
		},
		{
			name: "451 is temporary with its retry hint",
			setup: func(e *env) map[string]*sink {
				e.add(twoMX...)
				return map[string]*sink{"mx1": startSink(e.t, e.addr("127.0.0.11"), sinkConfig{rcpt: map[string]*smtp.SMTPError{
					"grey@b.test": {Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "Greylisted, try again in 10 minutes"},
				}})}
			},
			msg: msg("1", "alice@a.test", "grey@b.test"),
			want: []want{{rcpt: "grey@b.test", code: 451, enhanced: "4.7.1", mx: "mx1.b.test",
				text: "Greylisted", retryAfter: 10 * time.Minute}},
		},
		{
			name: "STARTTLS when offered, unverified without policy",
			setup: func(e *env) map[string]*sink {
				e.add(twoMX...)
				other := newCA(e.t) // not in RootCAs
				return map[string]*sink{"mx1": startSink(e.t, e.addr("127.0.0.11"),
					sinkConfig{tls: serverTLS(other.leaf(e.t, "mx1.b.test"))})}
			},
			msg:  msg("1", "alice@a.test", "bob@b.test"),
			want: []want{{rcpt: "bob@b.test", code: 250, mx: "mx1.b.test", tls: true}},
			after: func(t *testing.T, sinks map[string]*sink) {
				if got := sinks["mx1"].received(); len(got) != 1 || !got[0].tls {
					t.Errorf("received %+v, want one message over TLS", got)
				}
			},
		},
		{
			name: "STARTTLS handshake failure falls back to plaintext",
			setup: func(e *env) map[string]*sink {
				e.add(twoMX...)
				broken := &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
					return nil, errors.New("no certificate")
				}}
				return map[string]*sink{"mx1": startSink(e.t, e.addr("127.0.0.11"), sinkConfig{tls: broken})}
			},
			msg:  msg("1", "alice@a.test", "bob@b.test"),
			want: []want{{rcpt: "bob@b.test", code: 250, mx: "mx1.b.test"}},
			after: func(t *testing.T, sinks map[string]*sink) {
				if n := sinks["mx1"].connections(); n != 2 {
					t.Errorf("%d connections, want 2 (TLS, then plaintext)", n)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			sinks := tc.setup(e)
			domain := tc.domain
			if domain == "" {
				domain = "b.test"
			}
			got := e.deliver(domain, tc.msg)
			check(t, got, tc.want)
			if tc.after != nil {
				tc.after(t, sinks)
			}
		})
	}
}

func TestConnectionReuse(t *testing.T) {
	e := newEnv(t, twoMX...)
	sk := startSink(t, e.addr("127.0.0.11"), sinkConfig{})
	got := e.deliver("b.test",
		msg("1", "alice@a.test", "bob@b.test", "carol@b.test"),
		msg("2", "", "dave@b.test"))
	check(t, got, []want{
		{rcpt: "bob@b.test", code: 250, mx: "mx1.b.test"},
		{rcpt: "carol@b.test", code: 250, mx: "mx1.b.test"},
		{rcpt: "dave@b.test", code: 250, mx: "mx1.b.test"},
	})
	if n := sk.connections(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
	rcvd := sk.received()
	if len(rcvd) != 2 || len(rcvd[0].rcpts) != 2 || rcvd[1].from != "" {
		t.Errorf("received %+v, want 2 messages, the first with 2 recipients, the second from <>", rcvd)
	}
}

func TestSourceIPs(t *testing.T) {
	tests := []struct {
		name   string
		source netip.Addr
		want   want
		remote string
	}{
		{"bound to the source address", netip.MustParseAddr("127.0.0.5"),
			want{rcpt: "bob@b.test", code: 250, mx: "mx1.b.test"}, "127.0.0.5"},
		{"no source of the destination's family", netip.MustParseAddr("::1"),
			want{rcpt: "bob@b.test", mx: "mx2.b.test", text: "no address of mx2.b.test has a matching source address family"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, twoMX...)
			e.add("mx2.b.test. A 127.0.0.11") // both MX on one sink
			sk := startSink(t, e.addr("127.0.0.11"), sinkConfig{})
			e.source = tc.source
			got := e.deliver("b.test", msg("1", "alice@a.test", "bob@b.test"))
			check(t, got, []want{tc.want})
			if tc.remote == "" {
				return
			}
			if got[0].SourceIP != tc.remote {
				t.Errorf("attempt source %q, want %q", got[0].SourceIP, tc.remote)
			}
			if r := sk.received(); len(r) != 1 || r[0].remote != tc.remote {
				t.Errorf("received %+v, want from %s", r, tc.remote)
			}
		})
	}
}

func TestDeliverEndsWithContext(t *testing.T) {
	e := newEnv(t, twoMX...)
	e.dns.Drop("b.test.")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	got := collect(ctx, e.c, "b.test", []*Message{msg("1", "alice@a.test", "bob@b.test")})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Deliver took %v after its context ended", d)
	}
	check(t, got, []want{{rcpt: "bob@b.test", text: "MX lookup for b.test"}})
}

func TestAttemptFields(t *testing.T) {
	e := newEnv(t, twoMX...)
	startSink(t, e.addr("127.0.0.11"), sinkConfig{tls: serverTLS(e.ca.leaf(t, "mx1.b.test"))})
	got := e.deliver("b.test", msg("1", "alice@a.test", "bob@b.test"))
	if len(got) != 1 {
		t.Fatalf("got %d attempts", len(got))
	}
	a := got[0]
	if a.QueueID != 1 || a.Rcpt != "bob@b.test" || a.MX != "mx1.b.test" || a.IP != "127.0.0.11" ||
		a.SourceIP != "127.0.0.1" || a.TLS != "TLS 1.3" || a.Code != 250 || a.Permanent || a.Duration <= 0 {
		t.Errorf("attempt %+v", a)
	}
}
