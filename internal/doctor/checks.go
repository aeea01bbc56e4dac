package doctor

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/repute-mail/repute/internal/dns"
)

// Checker runs the checks of one Setup. The zero values of its optional fields are the
// production defaults.
type Checker struct {
	Setup    Setup
	Resolver dns.Resolver

	// Port25Probe is the "host:port" outbound port 25 must reach ("" leaves port25_out
	// out); PortsInProbe the URL of an outside prober ("" leaves ports_in out).
	Port25Probe  string
	PortsInProbe string
	// Blocklists and DomainBlocklists are the DNS zones queried for the sending IPs and
	// for the local domains.
	Blocklists       []string
	DomainBlocklists []string
	// DNSSECProbe is a name in a signed zone that tells whether the resolver validates
	// (dns.dnssec_probe); "" = the root.
	DNSSECProbe string

	// Ports are the server's own ports probed on the hostname (0 = the standard port).
	Ports Ports
	// RootCAs verifies certificates (the hostname's and the MTA-STS hosts'); nil means the
	// system roots, which honour SSL_CERT_FILE.
	RootCAs *x509.CertPool
	// Dial opens probe connections; nil means a net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Timeout bounds each probe (a connection, a TLS handshake, an HTTPS fetch); 0 = 5 s.
	Timeout time.Duration
	// Now is the clock certificates are judged by; nil = time.Now.
	Now func() time.Time
	// Progress, when set, is told which check is about to run (a progress line).
	Progress func(id, target string)
	Log      *slog.Logger

	records []Record // what repute dns records prints for Setup, for the fixes
}

// Ports are the listening ports of the server that the checks probe.
type Ports struct {
	SMTP        int // 25
	Submissions int // 465
	IMAPS       int // 993
	HTTPS       int // 443
}

func (p Ports) withDefaults() Ports {
	if p.SMTP == 0 {
		p.SMTP = 25
	}
	if p.Submissions == 0 {
		p.Submissions = 465
	}
	if p.IMAPS == 0 {
		p.IMAPS = 993
	}
	if p.HTTPS == 0 {
		p.HTTPS = 443
	}
	return p
}

// Run runs every check and returns the report. It never fails as a whole: a check that
// cannot run is an error result.
func (c *Checker) Run(ctx context.Context) *Report {
	c.defaults()
	r := &Report{Checks: []Result{}}
	hostIPs := c.resolveHost(ctx, c.Setup.Hostname)
	for _, ip := range c.Setup.SendIPs {
		c.progress(IDPTR, ip.String())
		r.Add(c.checkReverse(ctx, ip)...)
	}
	if len(c.Setup.SendIPs) == 0 {
		r.Add(Result{ID: IDPTR, Status: Error, Target: c.Setup.Hostname, Found: "no sending address is known",
			Why: "receivers judge mail by the address it comes from", Fix: "set outbound.source_ips (or outbound.public_ips behind NAT) to the address mail leaves from"})
	}
	for _, d := range c.Setup.Domains {
		c.progress(IDMX, d.Name)
		r.Add(c.checkMX(ctx, d.Name, hostIPs))
		c.progress(IDSPF, d.Name)
		r.Add(c.checkSPF(ctx, d.Name))
		c.progress(IDDKIM, d.Name)
		r.Add(c.checkDKIM(ctx, d)...)
		c.progress(IDDMARC, d.Name)
		r.Add(c.checkDMARC(ctx, d.Name))
		c.progress(IDMTASTS, d.Name)
		r.Add(c.checkMTASTS(ctx, d.Name))
		c.progress(IDTLSRPT, d.Name)
		r.Add(c.checkTLSRPT(ctx, d.Name))
	}
	c.progress(IDTLSA, c.Setup.Hostname)
	certs := c.probeCerts(ctx, hostIPs)
	tlsa, signed := c.checkTLSA(ctx, certs[c.ports().SMTP])
	r.Add(tlsa)
	c.progress(IDDNSSEC, c.Setup.Hostname)
	r.Add(c.checkDNSSEC(ctx, signed, tlsa))
	c.progress(IDCert, c.Setup.Hostname)
	r.Add(c.checkCerts(certs)...)
	if c.Port25Probe != "" {
		c.progress(IDPort25Out, c.Port25Probe)
		r.Add(c.checkPort25Out(ctx))
	}
	if c.PortsInProbe != "" {
		c.progress(IDPortsIn, c.Setup.Hostname)
		r.Add(c.checkPortsIn(ctx)...)
	}
	c.progress(IDBlocklistIP, "")
	r.Add(c.checkBlocklistIPs(ctx)...)
	c.progress(IDBlocklistDomain, "")
	r.Add(c.checkBlocklistDomains(ctx)...)
	return r
}

func (c *Checker) defaults() {
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Dial == nil {
		d := &net.Dialer{Timeout: c.Timeout}
		c.Dial = d.DialContext
	}
}

func (c *Checker) ports() Ports { return c.Ports.withDefaults() }

func (c *Checker) progress(id, target string) {
	if c.Progress != nil {
		c.Progress(id, target)
	}
}

// resolveHost returns the addresses a name resolves to through the checker's resolver,
// IPv4 first; nil when it does not resolve.
func (c *Checker) resolveHost(ctx context.Context, host string) []netip.Addr {
	ips, _, err := c.Resolver.LookupIP(ctx, "ip", abs(host))
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, ip := range ips {
		if a, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, a.Unmap())
		}
	}
	slices.SortStableFunc(out, func(a, b netip.Addr) int {
		if a.Is4() == b.Is4() {
			return 0
		}
		if a.Is4() {
			return -1
		}
		return 1
	})
	return out
}

// dialHost connects to port on the first of ips that answers.
func (c *Checker) dialHost(ctx context.Context, ips []netip.Addr, port int) (net.Conn, error) {
	if len(ips) == 0 {
		return nil, fmt.Errorf("%s does not resolve", c.Setup.Hostname)
	}
	var last error
	for _, ip := range ips {
		dctx, cancel := context.WithTimeout(ctx, c.Timeout)
		conn, err := c.Dial(dctx, "tcp", net.JoinHostPort(ip.String(), strconv.Itoa(port)))
		cancel()
		if err == nil {
			return conn, nil
		}
		last = err
	}
	return nil, last
}

// httpClient fetches over HTTPS, resolving names through the checker's resolver and
// verifying certificates against its roots; it follows no redirects (RFC 8461 §3.3).
func (c *Checker) httpClient(port int) *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			ips := c.resolveHost(ctx, host)
			if len(ips) == 0 {
				return nil, fmt.Errorf("%s does not resolve", host)
			}
			return c.dialHost(ctx, ips, port)
		},
		TLSHandshakeTimeout:   c.Timeout,
		ResponseHeaderTimeout: c.Timeout,
		DisableKeepAlives:     true,
	}
	tr.TLSClientConfig = tlsConfig(c.RootCAs, "")
	return &http.Client{Transport: tr, Timeout: 2 * c.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// abs makes a name absolute for the resolver.
func abs(name string) string {
	if strings.HasSuffix(name, ".") {
		return name
	}
	return name + "."
}

// trimDot drops a trailing dot and lower-cases a name.
func trimDot(name string) string { return strings.ToLower(strings.TrimSuffix(name, ".")) }

// lookupErr describes a failed lookup for a result: not found, or could not find out.
func lookupErr(what string, err error) string {
	if dns.IsNotFound(err) {
		return "no " + what
	}
	return "looking up " + what + " failed: " + err.Error()
}

// status of a lookup error: not found is the check's verdict, anything else is an error.
func errStatus(err error, notFound Status) Status {
	if dns.IsNotFound(err) {
		return notFound
	}
	return Error
}

func quote(s string) string { return strconv.Quote(s) }
