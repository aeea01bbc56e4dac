package auth

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/mjl-/adns"

	"github.com/repute-mail/repute/internal/dns"
)

// iprevPTRRecord returns the zone line of a PTR record for ip.
func iprevPTRRecord(t testing.TB, ip, name string) string {
	t.Helper()
	arpa, err := mdns.ReverseAddr(ip)
	if err != nil {
		t.Fatal(err)
	}
	return arpa + " PTR " + name
}

func TestCheckIPRev(t *testing.T) {
	zone := []string{
		iprevPTRRecord(t, "192.0.2.1", "mail.example.org."),
		`mail.example.org. A 192.0.2.1`,
		iprevPTRRecord(t, "192.0.2.2", "wrong.example.org."),
		`wrong.example.org. A 192.0.2.99`,
		iprevPTRRecord(t, "192.0.2.3", "first.example.org."),
		iprevPTRRecord(t, "192.0.2.3", "second.example.org."),
		`first.example.org. A 192.0.2.33`,
		`second.example.org. A 192.0.2.3`,
		iprevPTRRecord(t, "192.0.2.4", "fwdfail.example.org."),
		iprevPTRRecord(t, "192.0.2.6", "nxdomain.example.org."),
		iprevPTRRecord(t, "192.0.2.7", "fwdfail.example.org."),
		iprevPTRRecord(t, "192.0.2.7", "mail.example.org."),
		iprevPTRRecord(t, "192.0.2.7", "seven.example.org."),
		`seven.example.org. A 192.0.2.7`,
		iprevPTRRecord(t, "2001:db8::25", "v6.example.org."),
		`v6.example.org. AAAA 2001:db8::25`,
		`v6.example.org. A 192.0.2.25`,
	}
	// 192.0.2.8 has 15 PTR names; only the last resolves back, beyond the limit of 10.
	for i := range 15 {
		zone = append(zone, iprevPTRRecord(t, "192.0.2.8", fmt.Sprintf("n%d.many.example.", i)))
		zone = append(zone, fmt.Sprintf("n%d.many.example. A 192.0.2.%d", i, 100+i))
	}
	zone = append(zone, "n14.many.example. A 192.0.2.8")
	srv, r := spfTestServer(t, zone...)
	srv.Fail("fwdfail.example.org.", mdns.RcodeServerFailure)
	arpa5, _ := mdns.ReverseAddr("192.0.2.5")
	srv.Fail(arpa5, mdns.RcodeServerFailure)

	tests := []struct {
		ip, result, name string
		err              bool
	}{
		{"192.0.2.1", "pass", "mail.example.org", false},
		{"::ffff:192.0.2.1", "pass", "mail.example.org", false},
		{"192.0.2.2", "fail", "", false},
		{"192.0.2.3", "pass", "second.example.org", false},
		{"192.0.2.4", "temperror", "", true},              // forward lookup fails
		{"192.0.2.5", "temperror", "", true},              // PTR lookup fails
		{"192.0.2.6", "fail", "", false},                  // PTR name has no address
		{"192.0.2.7", "pass", "seven.example.org", false}, // a failing name does not hide a match
		{"192.0.2.8", "fail", "", false},                  // match only beyond the first 10 names
		{"192.0.2.9", "permerror", "", true},              // no PTR record
		{"2001:db8::25", "pass", "v6.example.org", false},
		{"2001:db8::26", "permerror", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.ip, func(t *testing.T) {
			got := CheckIPRev(t.Context(), r, netip.MustParseAddr(tc.ip))
			if got.Result != tc.result || got.Name != tc.name || (got.Err != nil) != tc.err {
				t.Errorf("got %s %q (err %v), want %s %q (error: %v)", got.Result, got.Name, got.Err, tc.result, tc.name, tc.err)
			}
		})
	}

	t.Run("invalid address", func(t *testing.T) {
		if got := CheckIPRev(t.Context(), r, netip.Addr{}); got.Result != "permerror" || got.Err == nil {
			t.Errorf("got %+v", got)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		arpa, _ := mdns.ReverseAddr("192.0.2.10")
		srv.Drop(arpa)
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		if got := CheckIPRev(ctx, r, netip.MustParseAddr("192.0.2.10")); got.Result != "temperror" || got.Err == nil {
			t.Errorf("got %+v", got)
		}
	})
}

// iprevCountingResolver counts address lookups.
type iprevCountingResolver struct {
	dns.Resolver
	lookups atomic.Int32
}

func (c *iprevCountingResolver) LookupIP(ctx context.Context, network, host string) ([]net.IP, adns.Result, error) {
	c.lookups.Add(1)
	return c.Resolver.LookupIP(ctx, network, host)
}

// TestCheckIPRevBounded: however many PTR names an address has, at most 10 are
// forward-resolved.
func TestCheckIPRevBounded(t *testing.T) {
	names := make([]string, 500)
	for i := range names {
		names[i] = fmt.Sprintf("n%d.example.", i)
	}
	r := &iprevCountingResolver{Resolver: dns.Fake{PTR: map[string][]string{"192.0.2.1": names}}}
	got := CheckIPRev(t.Context(), r, netip.MustParseAddr("192.0.2.1"))
	if got.Result != "fail" {
		t.Errorf("result %s (%v), want fail", got.Result, got.Err)
	}
	if n := r.lookups.Load(); n != maxPTRNames {
		t.Errorf("%d address lookups, want %d", n, maxPTRNames)
	}
}

func TestIPRevAuthResults(t *testing.T) {
	tests := []struct {
		res  IPRevResult
		ip   string
		want string
	}{
		{IPRevResult{Result: "pass", Name: "mail.example.org"}, "192.0.2.1",
			"iprev=pass policy.iprev=192.0.2.1 (mail.example.org)"},
		{IPRevResult{Result: "fail"}, "::ffff:192.0.2.1",
			"iprev=fail policy.iprev=192.0.2.1"},
		{IPRevResult{Result: "pass", Name: "v6.example.org"}, "2001:db8::1",
			`iprev=pass policy.iprev="2001:db8::1" (v6.example.org)`},
		{IPRevResult{Result: "pass", Name: `we(ird)\name`}, "192.0.2.1",
			`iprev=pass policy.iprev=192.0.2.1 (we\(ird\)\\name)`},
		{IPRevResult{Result: "temperror"}, "",
			"iprev=temperror"},
	}
	for _, tc := range tests {
		var ip netip.Addr
		if tc.ip != "" {
			ip = netip.MustParseAddr(tc.ip)
		}
		if got := tc.res.AuthResults(ip); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}
