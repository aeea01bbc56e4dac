package doctor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/repute-mail/repute/internal/auth"
	"github.com/repute-mail/repute/internal/config"
	"github.com/repute-mail/repute/internal/store"
	"github.com/repute-mail/repute/internal/tlsconf"
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
// leaves from, its relay, the ACME CA, the TLSA keys, and its local domains (all of them,
// or only those named) with the DKIM keys whose records should be published. What the
// admin should know but no record carries goes to Setup.Notes.
func SetupFrom(ctx context.Context, cfg config.Config, db Store, only ...string) (Setup, error) {
	return SetupAt(ctx, cfg, db, time.Now(), only...)
}

// SetupAt is SetupFrom at a given time (which retired DKIM keys are still published).
func SetupAt(ctx context.Context, cfg config.Config, db Store, now time.Time, only ...string) (Setup, error) {
	s := Setup{
		Hostname:     strings.ToLower(strings.TrimSuffix(cfg.Hostname, ".")),
		MTASTSMode:   cfg.MTASTS.Mode,
		MTASTSMaxAge: cfg.MTASTS.MaxAge.Duration,
		MTASTSMX:     cfg.MTASTS.MX,
		ReportsLocal: cfg.Reports.LocalPart,
	}
	s.SendIPs, s.Notes = sendIPs(cfg.Outbound, s.Notes)
	s.HostIPs = s.SendIPs
	s.Relay = cfg.Outbound.Relay
	if s.Relay == "" {
		s.Relay = cfg.Outbound.FallbackRelay
	}
	if s.Relay != "" {
		s.RelaySPF = cfg.Outbound.RelaySPF
		host, _, err := net.SplitHostPort(s.Relay)
		if err != nil {
			host = s.Relay
		}
		if ip, err := netip.ParseAddr(host); s.RelaySPF == "" && err == nil {
			ip = ip.Unmap()
			s.RelaySPF = "ip4:" + ip.String()
			if ip.Is6() {
				s.RelaySPF = "ip6:" + ip.String()
			}
		}
		if s.RelaySPF == "" {
			s.Notes = append(s.Notes, fmt.Sprintf("SPF does not authorise the relay %s: set outbound.relay_spf to the mechanism its provider documents (such as \"include:spf.relay.example\")", s.Relay))
		}
	}
	var note string
	s.ACMECA, note = acmeIssuer(cfg.TLS)
	if note != "" {
		s.Notes = append(s.Notes, note)
	}
	if keys, err := tlsconf.TLSAKeys(cfg.TLS, cfg.DataDir); err != nil {
		s.Notes = append(s.Notes, fmt.Sprintf("no TLSA records: %v", err))
	} else {
		s.TLSAKeys = keys
	}

	domains, err := db.Domains(ctx)
	if err != nil {
		return s, fmt.Errorf("reading the local domains: %w", err)
	}
	var names []string
	for _, d := range domains {
		names = append(names, d.Name)
	}
	want := names
	if len(only) > 0 {
		want = nil
		for _, n := range only {
			n = strings.ToLower(strings.TrimSuffix(n, "."))
			if !slices.Contains(names, n) {
				return s, fmt.Errorf("%s is not a local domain (add it with 'repute domain add %s')", n, n)
			}
			if !slices.Contains(want, n) {
				want = append(want, n)
			}
		}
	} else if len(names) == 0 {
		return s, errors.New("there is no local domain yet (add one with 'repute domain add DOMAIN')")
	}
	for _, name := range want {
		dom := Domain{Name: name}
		keys, err := db.DKIMKeys(ctx, name)
		if err != nil {
			return s, fmt.Errorf("reading the DKIM keys of %s: %w", name, err)
		}
		for _, k := range keys {
			retireBy := time.Unix(k.Changed, 0).Add(RetiredGrace)
			if k.State == store.KeyRetired && now.After(retireBy) {
				continue // past its grace period: the record can go
			}
			dk, err := auth.ParseDKIMKey(k.Domain, k.Selector, k.PrivatePEM)
			if err != nil {
				return s, fmt.Errorf("DKIM key %s of %s: %w", k.Selector, name, err)
			}
			_, txt := dk.DNSRecord()
			dom.DKIM = append(dom.DKIM, DKIMKey{Selector: k.Selector, Algorithm: k.Algorithm, State: k.State, Record: txt, RetireBy: retireBy})
		}
		s.Domains = append(s.Domains, dom)
	}
	return s, nil
}

// sendIPs are the addresses the world sees mail come from: outbound.public_ips, else
// outbound.source_ips, else the addresses of this host's interfaces (with a note).
func sendIPs(o config.Outbound, notes []string) ([]netip.Addr, []string) {
	list := o.PublicIPs
	if len(list) == 0 {
		list = o.SourceIPs
	}
	var ips []netip.Addr
	for _, s := range list {
		if ip, err := netip.ParseAddr(s); err == nil {
			ips = append(ips, ip.Unmap())
		}
	}
	if len(ips) > 0 {
		return ips, notes
	}
	ips, err := LocalIPs()
	if err != nil {
		return nil, append(notes, err.Error())
	}
	return ips, append(notes, "the sending addresses are this host's interface addresses; if mail leaves "+
		"through NAT, set outbound.public_ips to the address the world sees")
}

// SendIPs are the addresses the world sees mail come from (see sendIPs).
func SendIPs(cfg config.Config) []netip.Addr {
	ips, _ := sendIPs(cfg.Outbound, nil)
	return ips
}

// acmeIssuer returns the CAA issuer domain (RFC 8659 §4.2) of the ACME CA tls.acme_directory
// names, "" without ACME. For a CA it does not know it returns "" and a note: a wrong CAA
// record would stop the CA from issuing.
func acmeIssuer(t config.TLS) (string, string) {
	if t.ACMEEmail == "" {
		return "", ""
	}
	if t.ACMEDirectory == "" {
		return "letsencrypt.org", ""
	}
	u, err := url.Parse(t.ACMEDirectory)
	if err != nil {
		return "", ""
	}
	host := strings.ToLower(u.Hostname())
	for suffix, issuer := range map[string]string{
		"letsencrypt.org": "letsencrypt.org",
		"zerossl.com":     "sectigo.com",
		"pki.goog":        "pki.goog",
		"buypass.com":     "buypass.com",
		"ssl.com":         "ssl.com",
	} {
		if host == suffix || strings.HasSuffix(host, "."+suffix) {
			return issuer, ""
		}
	}
	return "", fmt.Sprintf("no CAA record: the CAA issuer domain of the ACME CA at %s is not known; "+
		"if you want one, publish DOMAIN CAA 0 issue \"ISSUER\" with the issuer domain the CA documents", host)
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
		Ports: PortsFrom(cfg), DNSSECProbe: cfg.DNS.DNSSECProbe,
	}
}
