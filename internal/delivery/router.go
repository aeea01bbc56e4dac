package delivery

import (
	"context"
	"strings"
)

// Router sends each destination domain through the Deliverer of its route (a relay for
// that domain), and everything else through Default. Routes are keyed by lower-case
// domain.
type Router struct {
	Default Deliverer
	Routes  map[string]Deliverer
}

// Deliver implements Deliverer.
func (r Router) Deliver(ctx context.Context, domain string, msgs []*Message, report func([]Attempt)) {
	if d, ok := r.Routes[strings.ToLower(domain)]; ok {
		d.Deliver(ctx, domain, msgs, report)
		return
	}
	r.Default.Deliver(ctx, domain, msgs, report)
}
