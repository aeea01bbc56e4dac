package delivery

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"

	moxdns "github.com/mjl-/mox/dns"
	"github.com/mjl-/mox/mtasts"
	"github.com/mjl-/mox/smtpclient"

	"github.com/repute-mail/repute/internal/dns"
	"github.com/repute-mail/repute/internal/route"
)

// host is one MX target; pref is -1 for the implicit MX (RFC 5321 §5.1).
type host struct {
	name moxdns.Domain
	pref int
}

// dest is one route being delivered to: its hosts, its TLS policy and the source
// address the scheduler chose.
type dest struct {
	c         *Client
	domain    moxdns.Domain
	hosts     []host // in the order to try
	haveMX    bool
	authentic bool           // the MX answer (or its denial) was DNSSEC-validated
	sts       *mtasts.Policy // nil: no MTA-STS policy in force
	stsReport string         // TLS-RPT result type when the policy could not be fetched
	source    netip.Addr     // address to connect from; invalid: the kernel's choice
	needTLS   bool           // the provider always offers STARTTLS: without it, do not send
}

// dest prepares delivery on a route the scheduler resolved: the hosts in order (equal
// preferences at random, RFC 5321 §5.1) under the route's MTA-STS policy.
func (c *Client) dest(ctx context.Context, rt route.Route, source netip.Addr) (*dest, *failure) {
	if rt.Fail != nil {
		return nil, &failure{reply: reply{enhanced: rt.Fail.Enhanced, permanent: rt.Fail.Permanent, text: rt.Fail.Text}}
	}
	d, err := moxdns.ParseDomain(rt.Domain)
	if err != nil {
		return nil, &failure{reply: reply{enhanced: "5.1.2", permanent: true,
			text: fmt.Sprintf("invalid destination domain %q: %v", rt.Domain, err)}, err: err}
	}
	ds := &dest{c: c, domain: d, haveMX: !rt.Implicit, authentic: rt.Authentic, source: source.Unmap(), needTLS: rt.RequireTLS}
	ds.hosts = mxHosts(c.log, rt.MXHosts)
	if len(ds.hosts) == 0 {
		return nil, &failure{reply: reply{enhanced: "5.1.2", permanent: true, text: fmt.Sprintf("no valid MX host for %s", d.ASCII)}}
	}
	c.checkDNSSEC(ctx)
	ds.sts, ds.stsReport = rt.STS, rt.STSReport
	return ds, nil
}

// mxHosts parses the route's hosts and shuffles those of equal preference (RFC 5321
// §5.1), keeping the order of preferences. Unparsable names are skipped.
func mxHosts(log *slog.Logger, mxs []route.MXHost) []host {
	var hosts []host
	for _, mx := range mxs {
		name, err := moxdns.ParseDomainLax(mx.Name)
		if err != nil {
			log.Info("skipping invalid mx host", slog.String("host", mx.Name), slog.Any("err", err))
			continue
		}
		hosts = append(hosts, host{name: name, pref: mx.Pref})
	}
	rand.Shuffle(len(hosts), func(i, j int) { hosts[i], hosts[j] = hosts[j], hosts[i] })
	slices.SortStableFunc(hosts, func(a, b host) int { return a.pref - b.pref })
	return hosts
}

func (rt *dest) enforce() bool {
	return rt.sts != nil && rt.sts.Mode == mtasts.ModeEnforce
}

// connect tries the hosts in order until one greets and completes EHLO (and TLS as the
// policy demands). A refused connection, a 4xx/5xx greeting or a failed TLS handshake
// moves on; hosts an enforced MTA-STS policy does not list are not contacted at all.
func (rt *dest) connect(ctx context.Context) (*session, *failure) {
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
func (rt *dest) connectHost(ctx context.Context, h host) (s *session, f *failure, final bool) {
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
	ips = usableIPs(ips, rt.source)
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
