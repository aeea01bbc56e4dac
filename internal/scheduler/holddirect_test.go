package scheduler

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/repute-mail/repute/internal/delivery"
	"github.com/repute-mail/repute/internal/route"
)

// viaRecorder is a Deliverer that accepts everything and records, per recipient, the
// relay the route sent it through ("" for direct).
type viaRecorder struct {
	mu  sync.Mutex
	via map[string]string
}

func (d *viaRecorder) Deliver(_ context.Context, rt route.Route, _ netip.Addr, msgs []*delivery.Message, report func([]delivery.Attempt)) {
	for _, m := range msgs {
		var out []delivery.Attempt
		for _, r := range m.Rcpts {
			d.mu.Lock()
			d.via[r.Address] = rt.Fallback
			d.mu.Unlock()
			out = append(out, delivery.Attempt{QueueID: r.QueueID, Rcpt: r.Address, Code: 250, Enhanced: "2.0.0", Text: "queued", MX: "mx.remote.test"})
		}
		report(out)
	}
}

// TestHoldDirect: while HoldDirect names a relay, mail goes through it instead of
// directly (outbound.direct_when = "checks_pass"); once it names none, directly.
func TestHoldDirect(t *testing.T) {
	d := &viaRecorder{via: map[string]string{}}
	f := newFixture(t, d)
	var direct atomic.Bool
	f.sched.HoldDirect = func() string {
		if direct.Load() {
			return ""
		}
		return "relay.test:587"
	}
	f.run(t)
	via := func(rcpt string) (string, bool) {
		d.mu.Lock()
		defer d.mu.Unlock()
		v, ok := d.via[rcpt]
		return v, ok
	}
	f.queue(t, "alice@a.test", "one@remote.test")
	waitFor(t, "the first delivery", func() bool { _, ok := via("one@remote.test"); return ok })
	if v, _ := via("one@remote.test"); v != "relay.test:587" {
		t.Errorf("while the checks fail: delivered via %q, want the relay", v)
	}
	direct.Store(true)
	f.queue(t, "alice@a.test", "two@remote.test")
	waitFor(t, "the second delivery", func() bool { _, ok := via("two@remote.test"); return ok })
	if v, _ := via("two@remote.test"); v != "" {
		t.Errorf("once the checks pass: delivered via %q, want directly", v)
	}
}
