package delivery

import (
	"context"
	"crypto/x509"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	moxdns "github.com/mjl-/mox/dns"

	"github.com/repute-mail/repute/internal/dns"
	"github.com/repute-mail/repute/internal/route"
)

const (
	defaultPort           = 25
	defaultDialTimeout    = 30 * time.Second
	defaultCommandTimeout = 5 * time.Minute // RFC 5321 §4.5.3.2: 5 min for most replies, 10 after DATA's "."
)

// Relay TLS modes (Client.RelayTLS).
const (
	RelaySTARTTLS = "starttls" // STARTTLS is required and the certificate verified (default)
	RelayImplicit = "implicit" // TLS from the first byte (port 465), certificate verified
	RelayNone     = "none"     // plaintext; AUTH is then refused
)

// RelayAuth holds smarthost credentials, sent with AUTH PLAIN and only over TLS.
type RelayAuth struct {
	Username string
	Password string
}

// Client is the SMTP Deliverer. Its zero value delivers through the system resolver to
// port 25 of each destination's MX hosts. Set fields before the first Deliver and do not
// copy a Client after that; Deliver may be called from several goroutines at once.
type Client struct {
	Resolver   dns.Resolver // every lookup (MX, A/AAAA, TLSA, MTA-STS TXT); nil: the system resolver
	Hostname   string       // EHLO name (config `hostname`); "": os.Hostname
	RemotePort int          // port of MX hosts; 0: 25

	Relay     string     // "host:port" smarthost for all mail (no MX lookup); "": deliver directly
	RelayTLS  string     // RelaySTARTTLS (""), RelayImplicit or RelayNone
	RelayAuth *RelayAuth // nil: no AUTH

	Logger         *slog.Logger
	Now            func() time.Time // clock for durations; nil: time.Now
	DialTimeout    time.Duration    // per TCP connect; 0: 30 s
	CommandTimeout time.Duration    // per SMTP reply; 0: 5 min
	// Dial opens TCP connections; nil: a net.Dialer bound to source (if valid).
	Dial func(ctx context.Context, network, address string, source netip.Addr) (net.Conn, error)

	RootCAs     *x509.CertPool // PKIX roots for MTA-STS hosts, REQUIRETLS and the relay; nil: the system's
	DNSSECProbe string         // name in a signed zone, looked up once to tell whether DANE can work; "": the root

	setupOnce  sync.Once
	log        *slog.Logger
	resolver   dns.Resolver
	ehlo       moxdns.Domain
	dnssecOnce sync.Once
}

var _ Deliverer = (*Client)(nil)

// Deliver implements Deliverer: one Attempt per recipient of every message, reported
// message by message, sent on rt from source.
func (c *Client) Deliver(ctx context.Context, rt route.Route, source netip.Addr, msgs []*Message, report func([]Attempt)) {
	if len(msgs) == 0 {
		return
	}
	c.setup()
	d := &delivery{c: c, start: c.now(), report: report}
	if c.Relay != "" {
		d.run(ctx, msgs, c.relayConnector(source.Unmap()))
		return
	}
	ds, fail := c.dest(ctx, rt, source)
	if fail != nil {
		d.fail(msgs, *fail)
		return
	}
	d.run(ctx, msgs, ds.connect)
}

func (c *Client) setup() {
	c.setupOnce.Do(func() {
		c.log = c.Logger
		if c.log == nil {
			c.log = slog.New(slog.DiscardHandler)
		}
		c.resolver = c.Resolver
		if c.resolver == nil {
			c.resolver, _ = dns.New("", c.log) // cannot fail for the system resolver
		}
		c.ehlo = ehloName(c.Hostname)
	})
}

// ehloName parses the EHLO name; an unparsable one is sent as is rather than replaced.
func ehloName(hostname string) moxdns.Domain {
	if hostname == "" {
		hostname, _ = os.Hostname()
	}
	if hostname == "" {
		hostname = "localhost"
	}
	d, err := moxdns.ParseDomain(hostname)
	if err != nil {
		return moxdns.Domain{ASCII: hostname}
	}
	return d
}

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Client) port() int {
	if c.RemotePort > 0 {
		return c.RemotePort
	}
	return defaultPort
}

func (c *Client) commandTimeout() time.Duration {
	if c.CommandTimeout > 0 {
		return c.CommandTimeout
	}
	return defaultCommandTimeout
}

// checkDNSSEC logs once when the resolver gives no authentic answers. DANE needs none of
// this: it acts only on authentic answers, which a non-validating or untrusted resolver
// never yields. The line tells the operator why DANE is never used.
func (c *Client) checkDNSSEC(ctx context.Context) {
	c.dnssecOnce.Do(func() {
		if err := dns.CheckDNSSEC(ctx, c.resolver, c.DNSSECProbe); err != nil {
			c.log.Warn("no DNSSEC-validated answers from the resolver: DANE (RFC 7672) is skipped",
				slog.Any("err", err))
		}
	})
}
