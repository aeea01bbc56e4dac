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

// TestConnectionAIMD: a refusal halves the connections a group may have (one cut per
// round of refusals, never below one); deliveries win them back one at a time, gradually,
// never snapping back to the limit.
func TestConnectionAIMD(t *testing.T) {
	l := &Limits{MaxConnections: 50, PerGroup: 10, Round: 10 * time.Second}
	ms := route.Route{Group: "microsoft"}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var permits []*Permit
	for range 8 {
		p, _ := l.Acquire(ms, now)
		permits = append(permits, p)
	}
	// The ninth is refused by Microsoft at connect ("421 4.3.2 ... connections"): at most 8
	// are accepted; half of that is allowed now.
	if !l.ConnectionRefused(ms, now) || l.Allowed("microsoft") != 4 {
		t.Fatalf("after a refusal with 8 open: %d allowed, want 4", l.Allowed("microsoft"))
	}
	if !l.ConnectionRefused(ms, now.Add(5*time.Second)) || l.Allowed("microsoft") != 4 {
		t.Errorf("a second refusal in the same round cut again: %d", l.Allowed("microsoft"))
	}
	for _, p := range permits {
		p.Release()
	}
	var open int
	for {
		if p, _ := l.Acquire(ms, now); p == nil {
			break
		}
		open++
	}
	if open != 4 {
		t.Errorf("%d connections granted after the cut, want 4", open)
	}
	if !l.ConnectionRefused(ms, now.Add(11*time.Second)) || l.Allowed("microsoft") != 2 {
		t.Errorf("a refusal in the next round: %d allowed, want 2", l.Allowed("microsoft"))
	}
	for _, p := range permitsOf(l, ms, now) {
		p.Release()
	}
	if !l.ConnectionRefused(ms, now.Add(time.Hour)) || l.Allowed("microsoft") != 1 {
		t.Errorf("a refusal with nothing open: %d allowed, want 1", l.Allowed("microsoft"))
	}
	// Down to one connection, a refusal in a later round is not about our count: the
	// destination refuses us, and the caller treats it as an ordinary failure.
	if l.ConnectionRefused(ms, now.Add(2*time.Hour)) {
		t.Error("a refusal of our only connection was taken for a connection-count signal")
	}
	// Additive increase: the allowance climbs by about one per `allowed` deliveries (from
	// 1 to 10 in about 50).
	var trail []int
	for range 60 {
		l.Delivered(ms)
		trail = append(trail, l.Allowed("microsoft"))
	}
	for i := 1; i < len(trail); i++ {
		if trail[i] < trail[i-1] || trail[i] > trail[i-1]+1 {
			t.Fatalf("allowance went %d → %d: want steps of at most one", trail[i-1], trail[i])
		}
	}
	if trail[0] > 3 || trail[len(trail)-1] != 10 {
		t.Errorf("allowance after 1 and 60 deliveries: %d and %d; want a slow climb back to 10", trail[0], trail[len(trail)-1])
	}
	if l.Allowed("google") != 10 {
		t.Error("another group was cut")
	}
}

// permitsOf takes every permit the group can have now.
func permitsOf(l *Limits, rt route.Route, now time.Time) []*Permit {
	var ps []*Permit
	for {
		p, _ := l.Acquire(rt, now)
		if p == nil {
			return ps
		}
		ps = append(ps, p)
	}
}
