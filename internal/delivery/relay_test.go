package delivery

import (
	"testing"
)

func TestRelay(t *testing.T) {
	creds := &RelayAuth{Username: "alice", Password: "secret"}
	tests := []struct {
		name     string
		relay    func(e *env) string // Relay address
		relayTLS string
		auth     *RelayAuth
		sink     func(e *env) sinkConfig
		want     want
		user     string
	}{
		{
			name:  "STARTTLS and AUTH PLAIN",
			relay: func(e *env) string { return e.addr("relay.test") },
			auth:  creds,
			sink: func(e *env) sinkConfig {
				return sinkConfig{tls: serverTLS(e.ca.leaf(e.t, "relay.test")), auth: creds}
			},
			want: want{rcpt: "bob@b.test", code: 250, mx: "relay.test", tls: true, verified: "pkix"},
			user: "alice",
		},
		{
			name:     "implicit TLS to an address",
			relay:    func(e *env) string { return e.addr("127.0.0.1") },
			relayTLS: RelayImplicit,
			sink: func(e *env) sinkConfig {
				return sinkConfig{tls: serverTLS(e.ca.leaf(e.t, "127.0.0.1")), implicit: true}
			},
			want: want{rcpt: "bob@b.test", code: 250, mx: "127.0.0.1", tls: true, verified: "pkix"},
		},
		{
			name:     "credentials never in plaintext",
			relay:    func(e *env) string { return e.addr("relay.test") },
			relayTLS: RelayNone,
			auth:     creds,
			sink:     func(e *env) sinkConfig { return sinkConfig{auth: creds} },
			want:     want{rcpt: "bob@b.test", mx: "relay.test", text: "refusing to send relay credentials without TLS"},
		},
		{
			name:  "wrong password is temporary",
			relay: func(e *env) string { return e.addr("relay.test") },
			auth:  &RelayAuth{Username: "alice", Password: "wrong"},
			sink: func(e *env) sinkConfig {
				return sinkConfig{tls: serverTLS(e.ca.leaf(e.t, "relay.test")), auth: creds}
			},
			want: want{rcpt: "bob@b.test", code: 454, enhanced: "4.7.0", mx: "relay.test", text: "relay: invalid credentials"},
		},
		{
			name:  "untrusted relay certificate",
			relay: func(e *env) string { return e.addr("relay.test") },
			sink: func(e *env) sinkConfig {
				return sinkConfig{tls: serverTLS(newCA(e.t).leaf(e.t, "relay.test"))}
			},
			want: want{rcpt: "bob@b.test", mx: "relay.test", text: "certificate"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// No records for b.test: relay mode must not look up its MX.
			e := newEnv(t, "relay.test. A 127.0.0.1")
			sk := startSink(t, e.addr("127.0.0.1"), tc.sink(e))
			e.c.Relay, e.c.RelayTLS, e.c.RelayAuth = tc.relay(e), tc.relayTLS, tc.auth
			got := e.deliver("b.test", msg("1", "alice@a.test", "bob@b.test"))
			check(t, got, []want{tc.want})
			rcvd := sk.received()
			if tc.want.code == 250 && (len(rcvd) != 1 || rcvd[0].user != tc.user) {
				t.Errorf("relay received %+v, want one message from user %q", rcvd, tc.user)
			}
			if tc.want.code != 250 && len(rcvd) != 0 {
				t.Errorf("relay received %+v, want nothing", rcvd)
			}
		})
	}
}
