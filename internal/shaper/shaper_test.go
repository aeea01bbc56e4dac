package shaper

import (
	"net/netip"
	"testing"
	"time"

	"github.com/repute-mail/repute/internal/route"
)

func TestLimits(t *testing.T) {
	l := &Limits{MaxConnections: 3, PerGroup: 2, PerConnection: 7,
		SourceIPs: []netip.Addr{netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("192.0.2.2")}}
	google, other := route.Route{Group: "google"}, route.Route{Group: "mx:mx.example"}
	now := time.Unix(0, 0)
	p1, r := l.Acquire(google, now)
	if r != nil || p1.MaxMessages != 7 || p1.Source.String() != "192.0.2.1" {
		t.Fatalf("first permit: %+v %+v", p1, r)
	}
	p2, _ := l.Acquire(google, now)
	if p2 == nil || p2.Source.String() != "192.0.2.2" {
		t.Fatalf("second permit: %+v (sources in turn, IPv4 first)", p2)
	}
	if p, r := l.Acquire(google, now); p != nil || r.Reason != ReasonConnections || !r.Next.IsZero() {
		t.Fatalf("third connection to one group: %+v %+v, want refused until a release", p, r)
	}
	p3, _ := l.Acquire(other, now)
	if p3 == nil {
		t.Fatal("another group is not limited by the first")
	}
	if p, _ := l.Acquire(route.Route{Group: "yahoo"}, now); p != nil {
		t.Fatal("total limit not enforced")
	}
	p1.Release()
	p1.Release() // a second release is harmless
	if n, total := l.Open("google"); n != 1 || total != 2 {
		t.Fatalf("after release: %d open to google, %d in total", n, total)
	}
	if p, _ := l.Acquire(google, now); p == nil {
		t.Fatal("a released slot is available again")
	}
}
