// Package shaper decides when mail may leave, and from which of our addresses: between
// "due" and "deliver" the scheduler asks it for a permit to open one connection to a
// destination group (a provider such as Google or Microsoft, or an unknown domain's MX
// host set), and the shaper either grants one, naming the source IP and how many messages
// the connection may carry, or says "not now": when to ask again and why.
//
// The Engine keys everything by (source IP × destination group), a "lane": the
// provider's profile (connections, messages per connection, rate ceilings), the IP's
// warm-up cap, the rate the provider accepts (found by additive increase and
// multiplicative decrease on its replies), the connections it accepts, and a pause when
// it blocks us. Observe feeds it every attempt's outcome, and its verdict tells the
// scheduler when a throttled or blocked message is due again.
//
// Upstream: internal/scheduler. Downstream: internal/route (the group of a route). The
// shaper never sends anything itself, and delivery never asks it.
package shaper

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Refusal reasons (the "reason" of a throttled event).
const (
	ReasonConnections = "connections" // the group (or the whole server) has all the connections it may have
	ReasonCap         = "cap"         // a daily cap (warm-up) is reached
	ReasonRate        = "rate"        // a per-minute or per-hour rate is reached
	ReasonBackoff     = "backoff"     // the provider pushed back; waiting before trying again
	ReasonPaused      = "paused"      // the provider blocked us; paused until a probe succeeds
)

// Permit allows one connection to a route's group. Release it once the connection is
// closed.
type Permit struct {
	Source      netip.Addr // our address to connect from; the zero Addr lets the kernel choose
	MaxMessages int        // messages the connection may carry
	// Fallback is the relay ("host:port") the batch goes through instead of the group's
	// own hosts: the group is paused on every source IP. "": none.
	Fallback string
	// Probe: the lane is paused and this one message tests whether the provider takes
	// mail again.
	Probe bool
	// RequireTLS: the provider's profile says its hosts always offer STARTTLS.
	RequireTLS bool

	engine    *Engine
	lane      *lane
	granted   time.Time
	delivered bool // guarded by the engine's mutex
	stopped   atomic.Bool
	once      sync.Once
	release   func() // for permits not on a lane (fallback)
}

// Use tells how many messages the batch carries (at most MaxMessages); the permit's
// unused allowance goes back to its lane.
func (p *Permit) Use(n int) {
	if p == nil || p.lane == nil || n >= p.MaxMessages {
		return
	}
	e := p.engine
	e.mu.Lock()
	defer e.mu.Unlock()
	e.charge(p.lane, -(p.MaxMessages - max(n, 0)))
	p.MaxMessages = max(n, 0)
}

// Stopped reports whether the lane was paused since the permit was granted: nothing more
// may be sent under it, not even the rest of the batch in hand.
func (p *Permit) Stopped() bool { return p != nil && p.stopped.Load() }

// Release returns the permit's connection slot. It may be called more than once.
func (p *Permit) Release() {
	if p == nil {
		return
	}
	p.once.Do(func() {
		if p.release != nil {
			p.release()
			return
		}
		if p.engine != nil && p.lane != nil {
			p.engine.releaseLocked(p)
		}
	})
}

// Refusal says why no connection may be opened now, and when to ask again: the zero Next
// means when a connection of the group (or of the server) is released.
type Refusal struct {
	Next   time.Time
	Reason string
}
