// Package shaper decides when mail may leave, and from which of our addresses: between
// "due" and "deliver" the scheduler asks it for a permit to open one connection to a
// destination group (a provider such as Google or Microsoft, or an unknown domain's MX
// host set), and the shaper either grants one, naming the source IP and how many messages
// the connection may carry, or says "not now": when to ask again and why.
//
// Limits, the shaper of this version, enforces the limits Repute always had: connections
// in total, connections per destination group, messages per connection, and spreads
// connections over the configured source addresses in turn. It is the seam where
// per-provider shaping, IP warm-up, backoff and pauses plug in: they are further reasons
// to refuse or to grant less, keyed by (source IP, provider).
//
// Upstream: internal/scheduler. Downstream: internal/route (the group of a route). The
// shaper never sends anything itself, and delivery never asks it.
package shaper

import (
	"net/netip"
	"sync"
	"time"

	"github.com/repute-mail/repute/internal/route"
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
	release     func()
}

// Release returns the permit's connection slot. It may be called once.
func (p *Permit) Release() {
	if p != nil && p.release != nil {
		p.release()
		p.release = nil
	}
}

// Refusal says why no connection may be opened now, and when to ask again: the zero Next
// means when a connection of the group (or of the server) is released.
type Refusal struct {
	Next   time.Time
	Reason string
}

// Limits is the shaper of this version: limits on connections and messages per
// connection, source addresses in turn, and the connections a destination group may have
// open adapted to what it accepts: a group that refuses a connection ("421 4.3.2 too many
// connections", Yahoo's TSS04 at connect) gets half as many, at most one cut per Round,
// never fewer than one; every connection that delivers mail earns a little back (one
// more connection per as many good connections as are allowed), up to PerGroup, so the
// count climbs back gradually and never snaps back. Its methods are safe for concurrent
// use.
type Limits struct {
	MaxConnections int           // open connections in total; 0: 20
	PerGroup       int           // open connections to one destination group at most; 0: min(10, MaxConnections)
	PerConnection  int           // messages per connection; 0: 50
	SourceIPs      []netip.Addr  // our addresses; none: the kernel chooses
	Round          time.Duration // refusals within a round after a cut are one signal; 0: 10 s

	mu      sync.Mutex
	open    map[string]int
	allowed map[string]float64 // groups whose allowance was cut, and what it is now
	cut     map[string]time.Time
	total   int
	next    int
}

func (l *Limits) limits() (total, perGroup, perConn int) {
	total, perGroup, perConn = l.MaxConnections, l.PerGroup, l.PerConnection
	if total <= 0 {
		total = 20
	}
	if perGroup <= 0 {
		perGroup = min(10, total)
	}
	if perConn <= 0 {
		perConn = 50
	}
	return total, perGroup, perConn
}

// Acquire asks for a connection to rt's group at now.
func (l *Limits) Acquire(rt route.Route, now time.Time) (*Permit, *Refusal) {
	total, perGroup, perConn := l.limits()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open == nil {
		l.open = map[string]int{}
	}
	if l.total >= total || l.open[rt.Group] >= l.allowedLocked(rt.Group, perGroup) {
		return nil, &Refusal{Reason: ReasonConnections}
	}
	l.total++
	l.open[rt.Group]++
	group := rt.Group
	return &Permit{Source: l.source(), MaxMessages: perConn, release: func() { l.release(group) }}, nil
}

func (l *Limits) release(group string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.open[group]--; l.open[group] <= 0 {
		delete(l.open, group)
	}
}

// source returns the next source address in turn. IPv4 addresses are used when there are
// any: every receiver accepts IPv4, while an IPv6 source can reach only the MX hosts
// that have IPv6 addresses. IPv6 sources serve a server that has no IPv4 one.
func (l *Limits) source() netip.Addr {
	var v4, v6 []netip.Addr
	for _, a := range l.SourceIPs {
		if a.Unmap().Is4() {
			v4 = append(v4, a.Unmap())
		} else {
			v6 = append(v6, a)
		}
	}
	use := v4
	if len(use) == 0 {
		use = v6
	}
	if len(use) == 0 {
		return netip.Addr{}
	}
	a := use[l.next%len(use)]
	l.next++
	return a
}

// allowedLocked is how many connections group may have open now.
func (l *Limits) allowedLocked(group string, perGroup int) int {
	if a, ok := l.allowed[group]; ok {
		return min(perGroup, max(1, int(a)))
	}
	return perGroup
}

// Allowed reports how many connections a group may have open now.
func (l *Limits) Allowed(group string) int {
	_, perGroup, _ := l.limits()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.allowedLocked(group, perGroup)
}

// ConnectionRefused tells that rt's group refused a connection before any transaction
// (a 421 greeting): it may have half as many open as it has now, at most one cut per
// Round. It reports whether the refusal was about the number of connections: false when
// the group was already down to one connection before this round, so that the refusal
// is the destination refusing us, not our count (the caller then treats it as any other
// temporary failure).
func (l *Limits) ConnectionRefused(rt route.Route, now time.Time) bool {
	_, perGroup, _ := l.limits()
	round := l.Round
	if round <= 0 {
		round = 10 * time.Second
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.allowed == nil {
		l.allowed, l.cut = map[string]float64{}, map[string]time.Time{}
	}
	g := rt.Group
	if last, ok := l.cut[g]; ok && now.Sub(last) < round {
		return true // the same burst of refusals: one cut
	}
	cur := float64(l.allowedLocked(g, perGroup))
	// The refused connection was one too many: at most as many as are open now are
	// accepted. Halve that.
	if open := float64(l.open[g]); open > 0 && open < cur {
		cur = open
	}
	if cur <= 1 {
		return false
	}
	l.allowed[g] = max(1, float64(int(cur/2)))
	l.cut[g] = now
	return true
}

// Delivered tells that a connection to rt's group delivered mail: the group earns
// 1/allowed of a connection back (additive increase), up to PerGroup.
func (l *Limits) Delivered(rt route.Route) {
	_, perGroup, _ := l.limits()
	l.mu.Lock()
	defer l.mu.Unlock()
	a, ok := l.allowed[rt.Group]
	if !ok {
		return // never cut: already at PerGroup
	}
	a += 1 / max(a, 1)
	if a >= float64(perGroup) {
		delete(l.allowed, rt.Group)
		return
	}
	l.allowed[rt.Group] = a
}

// Open reports the connections open to a group, and in total.
func (l *Limits) Open(group string) (inGroup, total int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open[group], l.total
}
