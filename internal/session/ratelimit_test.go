package session

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestRateLimits checks the token buckets with explicit times: a minute's worth is
// allowed at once, then one more per 60/rate seconds; exempt networks and other
// addresses are not affected, and IPv6 clients share a bucket per /64.
func TestRateLimits(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	r := &RateLimits{ConnectionsPerMinute: 3, MessagesPerMinute: 2,
		Exempt: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}}
	a := netip.MustParseAddr("198.51.100.7")
	for i := 0; i < 3; i++ {
		if !r.allowConnection(a, t0) {
			t.Fatalf("connection %d refused within the burst", i+1)
		}
	}
	if r.allowConnection(a, t0) {
		t.Error("fourth connection in the same instant allowed")
	}
	if !r.allowConnection(netip.MustParseAddr("198.51.100.8"), t0) {
		t.Error("another address was limited")
	}
	if !r.allowConnection(a, t0.Add(20*time.Second)) {
		t.Error("no new token 20 s later (rate 3/min)")
	}
	for i := 0; i < 10; i++ {
		if !r.allowConnection(netip.MustParseAddr("192.0.2.9"), t0) {
			t.Fatal("exempt address limited")
		}
	}
	// Messages have their own bucket.
	if !r.allowMessage(a, t0) || !r.allowMessage(a, t0) || r.allowMessage(a, t0) {
		t.Error("message bucket: want 2 allowed, then refused")
	}
	v6a, v6b := netip.MustParseAddr("2001:db8:1:2::1"), netip.MustParseAddr("2001:db8:1:2::ffff")
	r.allowMessage(v6a, t0)
	r.allowMessage(v6a, t0)
	if r.allowMessage(v6b, t0) {
		t.Error("a second address of the same /64 got a bucket of its own")
	}
	// Buckets that have refilled are forgotten.
	r.allowConnection(a, t0.Add(10*time.Minute))
	if n := len(r.buckets); n > 1 {
		t.Errorf("%d buckets kept after 10 quiet minutes, want at most 1", n)
	}
	var nilLimits *RateLimits
	if !nilLimits.allowConnection(a, t0) || !nilLimits.allowMessage(a, t0) {
		t.Error("nil RateLimits must allow everything")
	}
}

func TestRateLimitReplies(t *testing.T) {
	rates := &RateLimits{ConnectionsPerMinute: 3, MessagesPerMinute: 1}
	e := start(t, func(s *Server) { s.Rates = rates })
	c := dial(t, e.mx)
	c.cmd("EHLO c.test", "250")
	c.cmd("MAIL FROM:<x@r.test>", "250 2.1.0")
	c.cmd("RSET", "250")
	c.cmd("MAIL FROM:<x@r.test>", "450 4.7.1")
	dial(t, e.mx)
	dial(t, e.sub) // all listeners share the limit
	if line := greeting(t, e.mx); !strings.HasPrefix(line, "421 4.7.0") {
		t.Errorf("fourth connection in a minute got %q, want 421 4.7.0", line)
	}
}
