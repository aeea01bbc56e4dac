// Package route decides where mail for a destination domain goes before anything is sent:
// its MX hosts (RFC 5321 §5.1: implicit MX, null MX of RFC 7505), whether that answer was
// DNSSEC-authentic (the precondition for DANE), the relay it must go through instead, and
// the destination group it belongs to. The group is what the traffic shaper and the
// scheduler count and limit: a known provider's id when the MX hosts are that provider's
// (every Google Workspace domain is "google": one receiver, one reputation, one set of
// limits), the MX host set for other domains, or the relay.
//
// The route also carries the domain's MTA-STS policy (RFC 8461), from a cache that the
// server keeps in the store (STS). The scheduler resolves a route per domain before it
// asks the shaper for a permit and hands the route to delivery, so delivery looks up
// only what one connection needs: the hosts' addresses and, for DANE, their TLSA records.
//
// Upstream: internal/scheduler. Downstream: internal/dns, internal/provider.
package route

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	moxdns "github.com/mjl-/mox/dns"
	"github.com/mjl-/mox/mtasts"

	"github.com/repute-mail/repute/internal/dns"
	"github.com/repute-mail/repute/internal/provider"
)

// Route is where mail for one domain goes.
type Route struct {
	Domain    string   // recipient domain, ASCII, lower case
	MXHosts   []MXHost // by preference; hosts of equal preference are shuffled by delivery
	Implicit  bool     // no MX record: the domain itself is the only host (RFC 5321 §5.1)
	Authentic bool     // the MX answer (or its denial) was DNSSEC-validated
	Provider  string   // provider id of the MX hosts, "" when unknown
	Group     string   // the destination group: Provider, "mx:<hosts>" or "relay:<host:port>"
	Relay     string   // "host:port" of the smarthost mail for Domain goes through; "" = direct
	// Fallback is set by the scheduler, not the resolver: the destination is paused (it
	// blocked every source IP) and this batch goes through this fallback relay
	// ("host:port"); "" for none.
	Fallback string
	// RequireTLS is set by the scheduler from the provider's shaping profile: the
	// provider's hosts always offer STARTTLS, so mail to them never goes in plain text.
	RequireTLS bool
	// STS is the domain's MTA-STS policy in force (RFC 8461), nil for none; STSReport is
	// the TLS-RPT result type when a published policy could not be fetched. DANE needs
	// Authentic, and the TLSA records of each MX host, which delivery looks up when it
	// connects to that host.
	STS       *mtasts.Policy
	STSReport string
	// Fail is set when no delivery can be tried: a permanent failure (null MX, invalid
	// domain) bounces the domain's mail, a temporary one (DNS trouble) defers it.
	Fail *Failure
}

// MXHost is one MX target.
type MXHost struct {
	Name string // ASCII host name without the trailing dot
	Pref int    // MX preference; -1 for the implicit MX
}

// Failure explains why a route could not be resolved.
type Failure struct {
	Enhanced  string // RFC 3463 code, "" when none fits
	Text      string
	Permanent bool
}

// Hosts returns the MX host names in order.
func (r Route) Hosts() []string {
	hs := make([]string, len(r.MXHosts))
	for i, h := range r.MXHosts {
		hs[i] = h.Name
	}
	return hs
}

// Resolver resolves and caches routes. Set the fields before the first Resolve; it is safe
// for concurrent use.
type Resolver struct {
	DNS       dns.Resolver
	Providers *provider.Table
	Relay     string            // outbound.relay: every domain goes through it
	Relays    map[string]string // lower-case domain → relay (outbound.routes)
	STS       *STS              // MTA-STS policies; nil: none are looked up
	// TTL is how long a resolved route is kept (MX records change rarely; a route that
	// failed temporarily is never kept). 0: 5 minutes.
	TTL    time.Duration
	Now    func() time.Time
	Logger *slog.Logger

	mu    sync.Mutex
	cache map[string]cached
}

type cached struct {
	rt      Route
	expires time.Time
}

// maxCached bounds the cache; past it, expired routes are dropped first, then everything.
const maxCached = 50000

// Cached returns the route of domain if it is in the cache and fresh, without any lookup.
func (r *Resolver) Cached(domain string) (Route, bool) {
	domain = strings.ToLower(domain)
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.cache[domain]
	if !ok || !r.now().Before(c.expires) {
		return Route{}, false
	}
	return c.rt, true
}

// Resolve returns the route of domain, from the cache when fresh.
func (r *Resolver) Resolve(ctx context.Context, domain string) Route {
	domain = strings.ToLower(domain)
	if rt, ok := r.Cached(domain); ok {
		return rt
	}
	rt := r.lookup(ctx, domain)
	if rt.Fail != nil && !rt.Fail.Permanent {
		return rt
	}
	ttl := r.TTL
	if ttl <= 0 {
		ttl = 5 * time.Minute
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cache == nil {
		r.cache = map[string]cached{}
	}
	if len(r.cache) >= maxCached {
		now := r.now()
		for d, c := range r.cache {
			if !now.Before(c.expires) {
				delete(r.cache, d)
			}
		}
		if len(r.cache) >= maxCached {
			clear(r.cache)
		}
	}
	r.cache[domain] = cached{rt: rt, expires: r.now().Add(ttl)}
	return rt
}

// Forget drops a domain's cached route (after a delivery found it stale).
func (r *Resolver) Forget(domain string) {
	r.mu.Lock()
	delete(r.cache, strings.ToLower(domain))
	r.mu.Unlock()
}

func (r *Resolver) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Resolver) lookup(ctx context.Context, domain string) Route {
	if relay := r.relayFor(domain); relay != "" {
		return Route{Domain: domain, Relay: relay, Group: "relay:" + relay}
	}
	rt := Route{Domain: domain}
	d, err := moxdns.ParseDomain(domain)
	if err != nil {
		rt.Fail = &Failure{Enhanced: "5.1.2", Permanent: true, Text: fmt.Sprintf("invalid destination domain %q: %v", domain, err)}
		return rt
	}
	rt.Domain = d.ASCII
	mxs, result, err := r.DNS.LookupMX(ctx, d.ASCII+".")
	rt.Authentic = result.Authentic
	switch {
	case err != nil && len(mxs) == 0 && !dns.IsNotFound(err):
		rt.Fail = &Failure{Text: fmt.Sprintf("MX lookup for %s: %v", d.ASCII, err)}
		return rt
	case len(mxs) == 0:
		// No MX: the domain itself is the implicit MX. If it has no address either,
		// delivery reports "no such domain" when it looks the host up.
		rt.Implicit = true
		rt.MXHosts = []MXHost{{Name: d.ASCII, Pref: -1}}
	case len(mxs) == 1 && mxs[0].Host == ".":
		rt.Fail = &Failure{Enhanced: "5.1.10", Permanent: true, Text: "domain does not accept mail (null MX)"}
		return rt
	default:
		for _, mx := range mxs {
			if mx.Host == "." {
				continue
			}
			name, err := moxdns.ParseDomainLax(strings.TrimSuffix(mx.Host, "."))
			if err != nil {
				r.log().Info("route: skipping invalid MX host", "domain", d.ASCII, "host", mx.Host, "err", err)
				continue
			}
			rt.MXHosts = append(rt.MXHosts, MXHost{Name: name.ASCII, Pref: int(mx.Pref)})
		}
		if len(rt.MXHosts) == 0 {
			rt.Fail = &Failure{Enhanced: "5.1.2", Permanent: true, Text: fmt.Sprintf("no valid MX host for %s", d.ASCII)}
			return rt
		}
		sortByPref(rt.MXHosts)
	}
	rt.Provider = r.Providers.Lookup(rt.MXHosts[0].Name)
	rt.Group = r.Providers.Group(rt.Hosts())
	if r.STS != nil {
		rt.STS, rt.STSReport = r.STS.Policy(ctx, d)
	}
	return rt
}

func (r *Resolver) relayFor(domain string) string {
	if relay, ok := r.Relays[domain]; ok {
		return relay
	}
	return r.Relay
}

func (r *Resolver) log() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.Default()
}

// sortByPref orders hosts by preference, keeping the DNS order among equals (delivery
// shuffles those per connection).
func sortByPref(hs []MXHost) {
	slices.SortStableFunc(hs, func(a, b MXHost) int { return a.Pref - b.Pref })
}
