package policy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"

	rdns "github.com/repute-mail/repute/internal/dns"
	"github.com/repute-mail/repute/internal/dns/dnstest"
)

// TestVerifierActions runs the whole inbound check against a DNS server on loopback and
// checks the action for each DMARC outcome, and the Authentication-Results field.
func TestVerifierActions(t *testing.T) {
	srv, err := dnstest.Start(
		`reject.test. TXT "v=spf1 -all"`, `_dmarc.reject.test. TXT "v=DMARC1; p=reject"`,
		`quar.test. TXT "v=spf1 -all"`, `_dmarc.quar.test. TXT "v=DMARC1; p=quarantine"`,
		`ok.test. TXT "v=spf1 ip4:192.0.2.0/24 -all"`, `_dmarc.ok.test. TXT "v=DMARC1; p=reject"`,
		`nopolicy.test. TXT "v=spf1 -all"`,
	)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.Fail("_dmarc.broken.test.", dns.RcodeServerFailure)
	r, err := rdns.New(srv.Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	v := &Verifier{Resolver: r, AuthservID: "mx.example.net"}
	client := netip.MustParseAddr("192.0.2.7")
	tests := []struct {
		from   string
		action Action
		reason string
		ar     []string
	}{
		{"ok.test", Accept, "", []string{"spf=pass smtp.mailfrom=ok.test", "dmarc=pass"}},
		{"reject.test", Reject, "reject.test", []string{"spf=fail", "dmarc=fail (p=reject dis=reject)"}},
		{"quar.test", Junk, "", []string{"dmarc=fail (p=quarantine dis=quarantine)"}},
		{"nopolicy.test", Accept, "", []string{"spf=fail", "dmarc=none"}},
		{"broken.test", Defer, "broken.test", []string{"dmarc=temperror"}},
	}
	for _, tt := range tests {
		t.Run(tt.from, func(t *testing.T) {
			c := v.Start(client)
			c.MailFrom("client.example.org", "user@"+tt.from)
			msg := []byte("Authentication-Results: MX.EXAMPLE.NET; dmarc=pass\r\nFrom: <user@" + tt.from +
				">\r\nSubject: hi\r\n\r\nbody\r\n")
			msg = v.Clean(msg)
			if strings.Contains(string(msg), "MX.EXAMPLE.NET") {
				t.Fatal("a forged Authentication-Results with our name survived Clean")
			}
			vd := c.Verify(msg)
			if vd.Action != tt.action {
				t.Errorf("action %v, want %v (dmarc %+v)", vd.Action, tt.action, vd.DMARC)
			}
			if !strings.Contains(vd.Reason, tt.reason) {
				t.Errorf("reason %q does not mention %q", vd.Reason, tt.reason)
			}
			h := v.Header(vd, client)
			if !strings.HasPrefix(h, "Authentication-Results: mx.example.net;") || !strings.HasSuffix(h, "\r\n") {
				t.Errorf("header %q", h)
			}
			for _, want := range tt.ar {
				if !strings.Contains(h, want) {
					t.Errorf("header lacks %q:\n%s", want, h)
				}
			}
			// A second transaction on the same connection reuses the iprev result.
			c.MailFrom("client.example.org", "user@"+tt.from)
			if vd2 := c.Verify(msg); vd2.Action != tt.action {
				t.Errorf("second transaction: action %v", vd2.Action)
			}
		})
	}
}

func TestSeveralAuthorsRejected(t *testing.T) {
	srv, err := dnstest.Start(`ok.test. TXT "v=spf1 ip4:192.0.2.0/24 -all"`)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	r, err := rdns.New(srv.Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	v := &Verifier{Resolver: r, AuthservID: "mx.example.net"}
	for _, header := range []string{
		"From: <ceo@bank.test>\r\nFrom: <x@ok.test>\r\n",
		"From: <ceo@bank.test>, <x@ok.test>\r\n",
	} {
		c := v.Start(netip.MustParseAddr("192.0.2.7"))
		c.MailFrom("client.example.org", "x@ok.test")
		vd := c.Verify([]byte(header + "Subject: hi\r\n\r\nbody\r\n"))
		if vd.Action != Reject || !strings.Contains(vd.Reason, "RFC 7489") {
			t.Errorf("%q: action %v, reason %q; want reject", header, vd.Action, vd.Reason)
		}
	}
}
