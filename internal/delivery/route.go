package delivery

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strings"

	moxdns "github.com/mjl-/mox/dns"
	"github.com/mjl-/mox/mtasts"
	"github.com/mjl-/mox/smtpclient"

	"github.com/repute-mail/repute/internal/dns"
)

// host is one MX target; pref is -1 for the implicit MX (RFC 5321 §5.1).
type host struct {
	name moxdns.Domain
	pref int
}

// route is where mail for one domain goes, and under which TLS policy.
type route struct {
	c         *Client
	domain    moxdns.Domain
	hosts     []host // in the order to try
	haveMX    bool
	authentic bool           // the MX answer (or its denial) was DNSSEC-validated
	sts       *mtasts.Policy // nil: no MTA-STS policy in force
	stsReport string         // TLS-RPT result type when the policy could not be fetched
}

// route resolves domain's MX hosts (RFC 5321 §5.1) and its MTA-STS policy. A failure is
// permanent for an invalid domain or a null MX (RFC 7505), temporary for DNS trouble.
func (c *Client) route(ctx context.Context, domain string) (*route, *failure) {
	d, err := moxdns.ParseDomain(domain)
	if err != nil {
		return nil, &failure{reply: reply{enhanced: "5.1.2", permanent: true,
			text: fmt.Sprintf("invalid destination domain %q: %v", domain, err)}, err: err}
	}
	mxs, result, err := c.resolver.LookupMX(ctx, d.ASCII+".")
	rt := &route{c: c, domain: d, authentic: result.Authentic}
	switch {
	case err != nil && len(mxs) == 0 && !dns.IsNotFound(err):
		return nil, &failure{reply: reply{text: fmt.Sprintf("MX lookup for %s: %v", d.ASCII, err)}, err: err}
	case len(mxs) == 0:
		// No MX: the domain itself is the implicit MX. If it has no address either, the
		// host lookup reports "no such domain".
		rt.hosts = []host{{name: d, pref: -1}}
	case len(mxs) == 1 && mxs[0].Host == ".":
		return nil, &failure{reply: reply{enhanced: "5.1.10", permanent: true,
			text: "domain does not accept mail (null MX)"}}
	default:
		rt.haveMX = true
		rt.hosts = mxHosts(c.log, mxs)
		if len(rt.hosts) == 0 {
			return nil, &failure{reply: reply{enhanced: "5.1.2", permanent: true,
				text: fmt.Sprintf("no valid MX host for %s", d.ASCII)}}
		}
	}
	c.checkDNSSEC(ctx)
	rt.sts, rt.stsReport = c.stsPolicy(ctx, d)
	return rt, nil
}

// mxHosts parses MX targets and orders them by preference, equal preferences at random
// (RFC 5321 §5.1). Unparsable targets and "." among real hosts are skipped.
func mxHosts(log *slog.Logger, mxs []*net.MX) []host {
	var hosts []host
	for _, mx := range mxs {
		if mx.Host == "." {
			continue
		}
		name, err := moxdns.ParseDomainLax(strings.TrimSuffix(mx.Host, "."))
		if err != nil {
			log.Info("skipping invalid mx host", slog.String("host", mx.Host), slog.Any("err", err))
			continue
		}
		hosts = append(hosts, host{name: name, pref: int(mx.Pref)})
	}
	rand.Shuffle(len(hosts), func(i, j int) { hosts[i], hosts[j] = hosts[j], hosts[i] })
	slices.SortStableFunc(hosts, func(a, b host) int { return a.pref - b.pref })
	return hosts
}

func (rt *route) enforce() bool {
	return rt.sts != nil && rt.sts.Mode == mtasts.ModeEnforce
}

// connect tries the hosts in order until one greets and completes EHLO (and TLS as the
// policy demands). A refused connection, a 4xx/5xx greeting or a failed TLS handshake
// moves on; hosts an enforced MTA-STS policy does not list are not contacted at all.
func (rt *route) connect(ctx context.Context) (*session, *failure) {
	var skipped []string
	var last *failure
	for _, h := range rt.hosts {
		if err := ctx.Err(); err != nil {
			return nil, ctxFailure(err)
		}
		if rt.enforce() && !rt.sts.Matches(h.name) {
			skipped = append(skipped, h.name.ASCII)
			continue
		}
		s, f, final := rt.connectHost(ctx, h)
		if s != nil {
			return s, nil
		}
		last = f
		if final {
			break
		}
	}
	if last == nil {
		return nil, &failure{hop: hop{tlsrpt: "validation-failure"}, reply: reply{
			text: fmt.Sprintf("MTA-STS policy enforce: MX %s not in policy [%s]",
				strings.Join(skipped, ", "), policyMX(rt.sts))}}
	}
	if len(skipped) > 0 {
		last.text += fmt.Sprintf(" (MTA-STS policy enforce also excluded MX %s)", strings.Join(skipped, ", "))
	}
	return nil, last
}

func policyMX(p *mtasts.Policy) string {
	var l []string
	for _, mx := range p.MX {
		l = append(l, mx.LogString())
	}
	return strings.Join(l, ", ")
}

// connectHost tries each address of h. final means no other host is worth trying.
func (rt *route) connectHost(ctx context.Context, h host) (s *session, f *failure, final bool) {
	c := rt.c
	hostAuthentic, expandedAuthentic, expanded, ips, _, err := smtpclient.GatherIPs(ctx, c.log, c.resolver, "ip",
		moxdns.IPDomain{Domain: h.name}, map[string][]net.IP{})
	if err != nil {
		if !rt.haveMX && dns.IsNotFound(err) {
			return nil, &failure{reply: reply{enhanced: "5.1.2", permanent: true,
				text: fmt.Sprintf("no such domain: %s has no MX, A or AAAA records", h.name.ASCII)}, err: err}, true
		}
		return nil, &failure{hop: hop{mx: h.name.ASCII},
			reply: reply{text: fmt.Sprintf("looking up addresses of %s: %v", h.name.ASCII, err)}, err: err}, false
	}
	plan, f := rt.plan(ctx, h, hostAuthentic, expandedAuthentic, expanded)
	if f != nil {
		return nil, f, false
	}
	ips = c.usableIPs(ips)
	if len(ips) == 0 {
		return nil, &failure{hop: hop{mx: h.name.ASCII}, reply: reply{
			text: fmt.Sprintf("no address of %s has a matching source address family", h.name.ASCII)}}, false
	}
	for _, ip := range ips {
		var nextHost bool
		s, f, nextHost = rt.connectIP(ctx, h, ip, plan)
		if s != nil || nextHost || ctx.Err() != nil {
			break
		}
	}
	return s, f, false
}
