package delivery

import (
	"github.com/repute-mail/repute/internal/route"

	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mjl-/adns"
	"github.com/mjl-/mox/smtpclient"
)

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		text string
		want time.Duration
	}{
		{"Greylisted, please try again in 300 seconds", 300 * time.Second},
		{"Try again in 5 minutes", 5 * time.Minute},
		{"try again later (in 10 min)", 10 * time.Minute},
		{"Please retry after 60s", time.Minute},
		{"Too many connections, wait 2 hours", 2 * time.Hour},
		{"Greylisted for 5 mins", 5 * time.Minute},
		{"Deferred for 1 hour due to rate limits", time.Hour},
		{"temporarily rate limited; retry in 90 secs", 90 * time.Second},
		{"retry in 1000 hours", maxRetryHint},
		{"Service unavailable, try again later", 0},
		{"Greylisted, see http://postgrey.schweikert.ch/help/b.test.html", 0},
		{"mailbox 4 full", 0},
		{"", 0},
	}
	for _, tc := range tests {
		if got := retryAfter(tc.text); got != tc.want {
			t.Errorf("retryAfter(%q) = %v, want %v", tc.text, got, tc.want)
		}
	}
}

func TestReplyText(t *testing.T) {
	tests := []struct {
		first    string
		more     []string
		enhanced string
		text     string
	}{
		{"550 5.1.1 <bob@b.test>: no such user", nil, "5.1.1", "<bob@b.test>: no such user"},
		{"421 mx.b.test busy", nil, "", "mx.b.test busy"},
		{"554-5.7.1 blocked", []string{"554-5.7.1 see https://example/bl", "554 5.7.1 bye"}, "5.7.1",
			"blocked see https://example/bl bye"},
		{"250", nil, "", ""},
		{"451 4.7.1", nil, "4.7.1", ""},
	}
	for _, tc := range tests {
		enhanced, text := replyText(tc.first, tc.more)
		if enhanced != tc.enhanced || text != tc.text {
			t.Errorf("replyText(%q) = %q, %q; want %q, %q", tc.first, enhanced, text, tc.enhanced, tc.text)
		}
	}
}

func TestReplyFromErr(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want reply
	}{
		{"rcpt refused", smtpclient.Error{Permanent: true, Code: 550, Secode: "1.1", Line: "550 5.1.1 unknown user"},
			reply{code: 550, enhanced: "5.1.1", text: "unknown user", permanent: true}},
		{"greeting without parsed code", smtpclient.Error{Code: 421, Line: "421 4.3.2 shutting down"},
			reply{code: 421, enhanced: "4.3.2", text: "shutting down"}},
		{"i/o", smtpclient.Error{Err: errors.New("read: connection reset")},
			reply{text: "read: connection reset"}},
		{"other", errors.New("boom"), reply{text: "boom"}},
	}
	for _, tc := range tests {
		if got := replyFromErr(tc.err); got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestUsableIPs(t *testing.T) {
	ips := []net.IP{net.ParseIP("2001:db8::1"), net.ParseIP("192.0.2.1"), net.ParseIP("192.0.2.2")}
	tests := []struct {
		source string
		want   string
	}{
		{"", "192.0.2.1 192.0.2.2 2001:db8::1"},
		{"198.51.100.1", "192.0.2.1 192.0.2.2"},
		{"::ffff:198.51.100.1", "192.0.2.1 192.0.2.2"},
		{"2001:db8::99", "2001:db8::1"},
	}
	for _, tc := range tests {
		var source netip.Addr
		if tc.source != "" {
			source = netip.MustParseAddr(tc.source)
		}
		var got []string
		for _, ip := range usableIPs(ips, source) {
			got = append(got, ip.String())
		}
		if s := strings.Join(got, " "); s != tc.want {
			t.Errorf("source %q: got %q, want %q", tc.source, s, tc.want)
		}
	}
}

func TestUsableTLSA(t *testing.T) {
	sha256 := make([]byte, 32)
	recs := []adns.TLSA{
		{Usage: adns.TLSAUsageDANEEE, Selector: adns.TLSASelectorSPKI, MatchType: adns.TLSAMatchTypeSHA256, CertAssoc: sha256},
		{Usage: adns.TLSAUsageDANETA, Selector: adns.TLSASelectorCert, MatchType: adns.TLSAMatchTypeSHA256, CertAssoc: sha256},
		{Usage: adns.TLSAUsagePKIXEE, Selector: adns.TLSASelectorSPKI, MatchType: adns.TLSAMatchTypeSHA256, CertAssoc: sha256},
		{Usage: adns.TLSAUsageDANEEE, Selector: adns.TLSASelectorSPKI, MatchType: adns.TLSAMatchTypeSHA512, CertAssoc: sha256},
		{Usage: adns.TLSAUsageDANEEE, Selector: 7, MatchType: adns.TLSAMatchTypeSHA256, CertAssoc: sha256},
	}
	if got := usableTLSA(recs); len(got) != 2 || got[0].Usage != adns.TLSAUsageDANEEE || got[1].Usage != adns.TLSAUsageDANETA {
		t.Errorf("got %v, want the first two records", got)
	}
	if got := usableTLSA(recs[2:]); got != nil {
		t.Errorf("got %v, want nil", got)
	}
}

func TestMXHostsOrder(t *testing.T) {
	mxs := []route.MXHost{{Name: "c.test", Pref: 20}, {Name: "a.test", Pref: 10}, {Name: "b.test", Pref: 10},
		{Name: "bad_host!.test", Pref: 5}}
	seen := map[string]bool{}
	for range 50 {
		hosts := mxHosts(testLogger(), mxs)
		if len(hosts) != 3 || hosts[2].name.ASCII != "c.test" {
			t.Fatalf("got %+v", hosts)
		}
		seen[hosts[0].name.ASCII] = true
	}
	if !seen["a.test"] || !seen["b.test"] {
		t.Errorf("equal preferences not randomised: first hosts seen %v", seen)
	}
}
