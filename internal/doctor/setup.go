package doctor

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/repute-mail/repute/internal/auth"
	"github.com/repute-mail/repute/internal/config"
	"github.com/repute-mail/repute/internal/store"
)

// RetiredGrace is how long a retired DKIM key's record stays published: mail signed with
// it may still be in transit or verified late (a week covers queue lifetimes and
// forwarding).
const RetiredGrace = 7 * 24 * time.Hour

// Store is what the doctor reads from the store: the local domains and their DKIM keys.
type Store interface {
	Domains(ctx context.Context) ([]store.Domain, error)
	DKIMKeys(ctx context.Context, domain string) ([]store.DKIMKey, error)
}

// SetupFrom builds the Setup of a configured server: its hostname, the addresses its mail
// leaves from, its relay, and its local domains (all of them, or only those named) with
// the DKIM keys whose records should be published.
func SetupFrom(ctx context.Context, cfg config.Config, db Store, only ...string) (Setup, error) {
	s := Setup{
		Hostname:     cfg.Hostname,
		MTASTSMode:   cfg.MTASTS.Mode,
		MTASTSMaxAge: cfg.MTASTS.MaxAge.Duration,
		ReportsLocal: cfg.Reports.LocalPart,
	}
	s.SendIPs = SendIPs(cfg)
	s.HostIPs = s.SendIPs
	s.Relay = cfg.Outbound.Relay
	if s.Relay == "" {
		s.Relay = cfg.Outbound.FallbackRelay
	}
	if s.Relay != "" {
		s.RelaySPF = cfg.Outbound.RelaySPF
		if s.RelaySPF == "" {
			host, _, err := net.SplitHostPort(s.Relay)
			if err != nil {
				host = s.Relay
			}
			if ip, err := netip.ParseAddr(host); err == nil {
				if ip.Is4() {
					s.RelaySPF = "ip4:" + ip.String()
				} else {
					s.RelaySPF = "ip6:" + ip.String()
				}
			} else {
				s.RelaySPF = "a:" + host
			}
		}
	}
	if cfg.TLS.ACMEEmail != "" {
		s.ACMECA = "letsencrypt.org"
	}
	domains, err := db.Domains(ctx)
	if err != nil {
		return s, fmt.Errorf("reading the local domains: %w", err)
	}
	want := map[string]bool{}
	for _, d := range only {
		want[d] = true
	}
	for _, d := range domains {
		if len(only) > 0 && !want[d.Name] {
			continue
		}
		delete(want, d.Name)
		dom := Domain{Name: d.Name}
		keys, err := db.DKIMKeys(ctx, d.Name)
		if err != nil {
			return s, fmt.Errorf("reading the DKIM keys of %s: %w", d.Name, err)
		}
		for _, k := range keys {
			retireBy := time.Unix(k.Changed, 0).Add(RetiredGrace)
			if k.State == store.KeyRetired && time.Now().After(retireBy) {
				continue
			}
			dk, err := auth.ParseDKIMKey(k.Domain, k.Selector, k.PrivatePEM)
			if err != nil {
				return s, fmt.Errorf("DKIM key %s of %s: %w", k.Selector, d.Name, err)
			}
			_, txt := dk.DNSRecord()
			dom.DKIM = append(dom.DKIM, DKIMKey{Selector: k.Selector, Algorithm: k.Algorithm, State: k.State, Record: txt, RetireBy: retireBy})
		}
		s.Domains = append(s.Domains, dom)
	}
	for d := range want {
		return s, fmt.Errorf("%s is not a local domain (add it with 'repute domain add %s')", d, d)
	}
	return s, nil
}

// SendIPs are the addresses the world sees mail come from: outbound.public_ips, else
// outbound.source_ips, else the addresses of this host's interfaces that the system would
// send from (public ones when there are any).
func SendIPs(cfg config.Config) []netip.Addr {
	var out []netip.Addr
	list := cfg.Outbound.PublicIPs
	if len(list) == 0 {
		list = cfg.Outbound.SourceIPs
	}
	for _, s := range list {
		if ip, err := netip.ParseAddr(s); err == nil {
			out = append(out, ip.Unmap())
		}
	}
	if len(out) > 0 {
		return out
	}
	return LocalIPs()
}

// LocalIPs lists the unicast addresses of this host's interfaces: the public ones when
// there are any, else the private ones, else loopback.
func LocalIPs() []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var public, private, loop []netip.Addr
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a.String())
		if err != nil {
			continue
		}
		ip := p.Addr().Unmap()
		switch {
		case ip.IsLoopback():
			loop = append(loop, ip)
		case ip.IsLinkLocalUnicast() || ip.IsMulticast() || ip.IsUnspecified():
		case isPublic(ip):
			public = append(public, ip)
		default:
			private = append(private, ip)
		}
	}
	switch {
	case len(public) > 0:
		return public
	case len(private) > 0:
		return private
	}
	return loop
}

// PortsFrom reads the probed ports from the listen addresses (0 when a listener is off:
// the standard port is probed).
func PortsFrom(cfg config.Config) Ports {
	port := func(addr string) int {
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			return 0
		}
		n, _ := strconv.Atoi(p)
		return n
	}
	return Ports{SMTP: port(cfg.Listen.SMTP), Submissions: port(cfg.Listen.Submissions), IMAPS: port(cfg.Listen.IMAPS), HTTPS: port(cfg.Listen.HTTPS)}
}

// CheckerFor builds the Checker of a configured server.
func CheckerFor(cfg config.Config, s Setup) *Checker {
	return &Checker{
		Setup: s, Port25Probe: cfg.Check.Port25Probe, PortsInProbe: cfg.Check.PortsInProbe,
		Blocklists: cfg.Check.Blocklists, DomainBlocklists: cfg.Check.DomainBlocklists,
		Ports: PortsFrom(cfg),
	}
}
