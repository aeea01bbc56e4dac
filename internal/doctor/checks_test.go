package doctor

import (
	"context"
	"net/netip"
	"testing"

	"github.com/repute-mail/repute/internal/dns"
)

func TestGenericPTR(t *testing.T) {
	ip := netip.MustParseAddr("203.0.113.45")
	for _, tt := range []struct {
		name    string
		generic bool
	}{
		{"mail.example.com", false},
		{"mx1.example.net", false},
		{"203-0-113-45.static.example.net", true},
		{"45.113.0.203.in-addr.example.net", true},
		{"ip-203-0-113-45.eu-west-1.compute.internal", true},
		{"cb00712d.example.net", true}, // the address in hexadecimal
		{"dynamic-pool7.isp.example", true},
		{"dsl-customer.isp.example", true},
		{"static.45.113.0.203.clients.your-server.de", true},
		{"smtp.example.org", false},
		{"client.example.org", true},
		{"home.example.org", true},
		{"post.example.org", false},
	} {
		got, why := genericPTR(tt.name, ip)
		if got != tt.generic {
			t.Errorf("genericPTR(%q) = %v (%s), want %v", tt.name, got, why, tt.generic)
		}
	}
}

func TestListVerdict(t *testing.T) {
	a := func(ips ...string) listAnswer {
		var l listAnswer
		for _, s := range ips {
			l.addrs = append(l.addrs, netip.MustParseAddr(s))
		}
		return l
	}
	for _, tt := range []struct {
		zone         string
		ans          listAnswer
		listed, err  bool
		policyListed bool
	}{
		{"zen.spamhaus.org", a(), false, false, false},
		{"zen.spamhaus.org", a("127.0.0.2"), true, false, false},
		{"zen.spamhaus.org", a("127.0.0.4", "127.0.0.10"), true, false, false},
		{"zen.spamhaus.org", a("127.0.0.10"), true, false, true}, // PBL only: ip_type's
		{"zen.spamhaus.org", a("127.255.255.254"), false, true, false},
		{"zen.spamhaus.org", a("127.255.255.252"), false, true, false},
		{"dbl.spamhaus.org", a("127.0.1.2"), true, false, false},
		{"dbl.spamhaus.org", a("127.0.1.255"), false, true, false},
		{"multi.surbl.org", a("127.0.0.1"), false, true, false},
		{"multi.uribl.com", a("127.0.0.1"), false, true, false},
		{"multi.uribl.com", a("127.0.0.2"), true, false, false},
		{"bl.spamcop.net", a("198.51.100.1"), false, true, false}, // a resolver rewriting NXDOMAIN
		{"bl.spamcop.net", a("::1"), false, true, false},
		{"bl.spamcop.net", listAnswer{err: context.DeadlineExceeded}, false, true, false},
	} {
		listed, errMsg, policy := listVerdict(tt.zone, tt.ans)
		if listed != tt.listed || (errMsg != "") != tt.err || policy != tt.policyListed {
			t.Errorf("listVerdict(%s, %v) = %v, %q, %v; want %v, error %v, policy %v", tt.zone, tt.ans.addrs, listed, errMsg, policy, tt.listed, tt.err, tt.policyListed)
		}
	}
}

func TestListName(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1":   "1.2.0.192",
		"2001:db8::1": "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2",
	} {
		if got := dns.ListName(netip.MustParseAddr(in)); got != want {
			t.Errorf("dns.ListName(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestSPFAllAndLookups(t *testing.T) {
	r := &dns.Fake{TXT: map[string][]string{
		"a.example.":     {"v=spf1 include:b.example mx a -all"},
		"b.example.":     {"v=spf1 include:c.example ~all"},
		"c.example.":     {"v=spf1 ip4:192.0.2.0/24 exists:%{i}.x.example -all"},
		"loop.example.":  {"v=spf1 include:loop.example -all"},
		"other.example.": {"google-site-verification=abc"},
	}}
	c := &Checker{Resolver: r}
	c.defaults()
	for _, tt := range []struct {
		rec  string
		want int
	}{
		{"v=spf1 ip4:192.0.2.1 -all", 0},
		{"v=spf1 include:a.example -all", 6}, // a: include mx a (3) + b: include (1) + c: exists (1), plus the top include
		{"v=spf1 include:other.example -all", 1},
		{"v=spf1 include:loop.example -all", 11},
		{"v=spf1 a mx ptr exists:x.example redirect=a.example", 10},
	} {
		n, err := c.spfLookups(context.Background(), tt.rec, 0)
		if err != nil || n != tt.want {
			t.Errorf("spfLookups(%q) = %d, %v; want %d", tt.rec, n, err, tt.want)
		}
	}
	for rec, want := range map[string]string{
		"v=spf1 -all": "-all", "v=spf1 mx ~all": "~all", "v=spf1 +all": "+all", "v=spf1 all": "+all",
		"v=spf1 ?all": "?all", "v=spf1 mx": "",
	} {
		if got := spfAll(rec); got != want {
			t.Errorf("spfAll(%q) = %q, want %q", rec, got, want)
		}
	}
}

func TestDKIMTag(t *testing.T) {
	rec := "v=DKIM1; k=ed25519; p=AB CD\n EF="
	if got := dkimTag(rec, "p"); got != "ABCDEF=" {
		t.Errorf("p = %q", got)
	}
	if got := dkimTagDefault("v=DKIM1; p=x", "k", "rsa"); got != "rsa" {
		t.Errorf("k default = %q", got)
	}
}

func TestMTASTSPolicyID(t *testing.T) {
	p1, id1 := MTASTSPolicy("enforce", 604800e9, []string{"mail.example.com", "MX2.example.com."})
	p2, id2 := MTASTSPolicy("enforce", 604800e9, []string{"mx2.example.com", "mail.example.com"})
	if p1 != p2 || id1 != id2 {
		t.Errorf("the same MX set spelt differently gives another policy:\n%s\n%s", p1, p2)
	}
	if _, id3 := MTASTSPolicy("testing", 604800e9, []string{"mail.example.com", "mx2.example.com"}); id3 == id1 {
		t.Error("a mode change keeps the id")
	}
	if len(id1) < 1 || len(id1) > 32 {
		t.Errorf("id %q: RFC 8461 wants 1 to 32 characters", id1)
	}
}
