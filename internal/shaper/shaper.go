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

// Limits is the shaper of this version: fixed limits, source addresses in turn. Its
// methods are safe for concurrent use.
type Limits struct {
	MaxConnections int          // open connections in total; 0: 20
	PerGroup       int          // open connections to one destination group; 0: min(10, MaxConnections)
	PerConnection  int          // messages per connection; 0: 50
	SourceIPs      []netip.Addr // our addresses; none: the kernel chooses

	mu    sync.Mutex
	open  map[string]int
	total int
	next  int
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
	if l.total >= total || l.open[rt.Group] >= perGroup {
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

// Open reports the connections open to a group, and in total.
func (l *Limits) Open(group string) (inGroup, total int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open[group], l.total
}
