package route

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/repute-mail/repute/internal/dns"
	"github.com/repute-mail/repute/internal/provider"
)

func testTable() *provider.Table {
	return provider.NewTable([]provider.Entry{
		{ID: "google", MXSuffixes: []string{".google.com", ".googlemail.com"}},
		{ID: "microsoft", MXSuffixes: []string{".protection.outlook.com"}},
	})
}

func TestResolveGroupsByProvider(t *testing.T) {
	google := []*net.MX{
		{Host: "alt1.aspmx.l.google.com.", Pref: 5}, {Host: "aspmx.l.google.com.", Pref: 1},
		{Host: "alt2.aspmx.l.google.com.", Pref: 5},
	}
	fake := dns.Fake{MX: map[string][]*net.MX{
		"a.example.":   google, // two Workspace domains: one provider, one group
		"b.example.":   google,
		"c.example.":   {{Host: "c-example.mail.protection.outlook.com.", Pref: 0}},
		"d.example.":   {{Host: "mx1.hoster.example.", Pref: 10}, {Host: "mx2.hoster.example.", Pref: 20}},
		"e.example.":   {{Host: "mx2.hoster.example.", Pref: 5}, {Host: "mx1.hoster.example.", Pref: 5}},
		"null.example": nil,
	}, Fail: []string{"mx fail.example."}}
	fake.MX["nullmx.example."] = []*net.MX{{Host: ".", Pref: 0}}
	r := &Resolver{DNS: fake, Providers: testTable(), Relays: map[string]string{"relayed.example": "smarthost.example:587"}}
	ctx := context.Background()

	a, b := r.Resolve(ctx, "a.example"), r.Resolve(ctx, "B.Example")
	if a.Group != "google" || b.Group != "google" || a.Provider != "google" {
		t.Errorf("Google Workspace domains: groups %q and %q, provider %q; want both google", a.Group, b.Group, a.Provider)
	}
	if a.MXHosts[0].Name != "aspmx.l.google.com" || a.MXHosts[0].Pref != 1 {
		t.Errorf("most preferred host first: got %+v", a.MXHosts)
	}
	if c := r.Resolve(ctx, "c.example"); c.Group != "microsoft" {
		t.Errorf("Microsoft 365 tenant: group %q", c.Group)
	}
	d, e := r.Resolve(ctx, "d.example"), r.Resolve(ctx, "e.example")
	if d.Group != "mx:mx1.hoster.example,mx2.hoster.example" || e.Group != d.Group || d.Provider != "" {
		t.Errorf("unknown domains on one hoster's MX set: groups %q and %q (provider %q)", d.Group, e.Group, d.Provider)
	}
	if rt := r.Resolve(ctx, "implicit.example"); !rt.Implicit || rt.Hosts()[0] != "implicit.example" || rt.Fail != nil {
		t.Errorf("no MX: want the implicit MX, got %+v", rt)
	}
	if rt := r.Resolve(ctx, "nullmx.example"); rt.Fail == nil || !rt.Fail.Permanent || rt.Fail.Enhanced != "5.1.10" {
		t.Errorf("null MX: want a permanent 5.1.10 failure, got %+v", rt.Fail)
	}
	if rt := r.Resolve(ctx, "fail.example"); rt.Fail == nil || rt.Fail.Permanent {
		t.Errorf("DNS failure: want a temporary failure, got %+v", rt.Fail)
	}
	if _, ok := r.Cached("fail.example"); ok {
		t.Error("a temporary failure must not be cached")
	}
	if rt := r.Resolve(ctx, "relayed.example"); rt.Relay != "smarthost.example:587" || rt.Group != "relay:smarthost.example:587" || len(rt.MXHosts) != 0 {
		t.Errorf("relayed domain: got %+v", rt)
	}
}

func TestResolveCachesForTTL(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	fake := dns.Fake{MX: map[string][]*net.MX{"a.example.": {{Host: "mx.a.example.", Pref: 10}}}}
	r := &Resolver{DNS: fake, Providers: testTable(), TTL: time.Minute, Now: func() time.Time { return now }}
	r.Resolve(context.Background(), "a.example")
	if _, ok := r.Cached("a.example"); !ok {
		t.Fatal("resolved route not cached")
	}
	now = now.Add(time.Minute)
	if _, ok := r.Cached("a.example"); ok {
		t.Error("route kept past its TTL")
	}
}
