package session

import (
	"strings"
	"testing"

	"github.com/repute-mail/repute/internal/dns"
	"github.com/repute-mail/repute/internal/dns/dnstest"
	"github.com/repute-mail/repute/internal/policy"
)

func TestDNSBLRefusesAtRCPT(t *testing.T) {
	for _, tc := range []struct {
		answer string
		want   string
	}{
		{"A 127.0.0.2", "554 5.7.1"},       // listed
		{"A 127.255.255.254", "250 2.1.5"}, // the list refused the query: not a listing
	} {
		srv, err := dnstest.Start("1.0.0.127.bl.test. "+tc.answer, `1.0.0.127.bl.test. TXT "spam source"`)
		if err != nil {
			t.Fatal(err)
		}
		r, err := dns.New(srv.Addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		e := start(t, func(s *Server) {
			if s.Mode == MX {
				s.DNSBL = &policy.DNSBL{Resolver: r, Zones: []string{"bl.test"}}
			}
		})
		c := dial(t, e.mx)
		c.cmd("EHLO c.test", "250")
		c.cmd("MAIL FROM:<x@r.test>", "250")
		got := c.cmd("RCPT TO:<alice@a.test>", tc.want)
		if tc.want == "554 5.7.1" && (!strings.Contains(got, "bl.test") || !strings.Contains(got, "spam source")) {
			t.Errorf("refusal %q does not name the list and its reason", got)
		}
		// Postmaster stays reachable (RFC 5321 §4.5.1) — it resolves to a missing user here.
		c.cmd("RCPT TO:<postmaster@a.test>", "550 5.1.1")
		srv.Close()
	}
}
