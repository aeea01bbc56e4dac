package delivery

import (
	"context"
	"net/netip"
	"strings"

	"github.com/repute-mail/repute/internal/route"
)

// Router sends each destination domain through the Deliverer of its route (a relay for
// that domain), and everything else through Default. Routes are keyed by lower-case
// domain. A route with a Fallback relay (its provider is paused) goes through that
// relay's Deliverer in Fallbacks.
type Router struct {
	Default   Deliverer
	Routes    map[string]Deliverer
	Fallbacks map[string]Deliverer // by "host:port"
}

// Deliver implements Deliverer.
func (r Router) Deliver(ctx context.Context, rt route.Route, source netip.Addr, msgs []*Message, report func([]Attempt)) {
	if d, ok := r.Fallbacks[rt.Fallback]; ok && rt.Fallback != "" {
		d.Deliver(ctx, rt, source, msgs, report)
		return
	}
	if d, ok := r.Routes[strings.ToLower(rt.Domain)]; ok {
		d.Deliver(ctx, rt, source, msgs, report)
		return
	}
	r.Default.Deliver(ctx, rt, source, msgs, report)
}
