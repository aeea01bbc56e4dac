package delivery

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"

	moxdns "github.com/mjl-/mox/dns"
	"github.com/mjl-/mox/sasl"
	"github.com/mjl-/mox/smtpclient"
)

var (
	errAuthPlaintext = errors.New("refusing to send relay credentials without TLS")
	errNoAuthPlain   = errors.New("relay does not offer AUTH PLAIN")
)

// relayConnector sends everything to the smarthost Relay: no MX lookup, no MTA-STS or
// DANE; TLS per RelayTLS with the certificate verified against RootCAs for the relay's
// name (or IP address), and AUTH PLAIN when RelayAuth is set. Every failure to reach the
// relay is temporary: it is a local set-up matter, not the recipient's.
func (c *Client) relayConnector(source netip.Addr) connector {
	return func(ctx context.Context) (*session, *failure) {
		s, f := c.connectRelay(ctx, source)
		if f != nil {
			f.permanent = false
		}
		return s, f
	}
}

func (c *Client) connectRelay(ctx context.Context, source netip.Addr) (*session, *failure) {
	host, portStr, err := net.SplitHostPort(c.Relay)
	port, perr := strconv.Atoi(portStr)
	if err != nil || perr != nil || port <= 0 || port > 65535 {
		return nil, &failure{reply: reply{text: fmt.Sprintf("relay %q: want host:port", c.Relay)}}
	}
	f := &failure{hop: hop{mx: host}}
	ips := []net.IP{net.ParseIP(host)}
	if ips[0] == nil {
		if ips, _, err = c.resolver.LookupIP(ctx, "ip", host+"."); err != nil {
			f.text, f.err = fmt.Sprintf("relay %s: looking up address: %v", host, err), err
			return nil, f
		}
	}
	mode := smtpclient.TLSRequiredStartTLS
	switch c.RelayTLS {
	case RelayImplicit:
		mode = smtpclient.TLSImmediate
	case RelayNone:
		mode = smtpclient.TLSSkip
	case "", RelaySTARTTLS:
	default:
		f.text = fmt.Sprintf("relay TLS mode %q: want %q, %q or %q", c.RelayTLS, RelaySTARTTLS, RelayImplicit, RelayNone)
		return nil, f
	}
	opts := smtpclient.Opts{
		TLSConfig: &tls.Config{ServerName: host, RootCAs: c.RootCAs, MinVersion: tls.VersionTLS12},
		Auth:      c.relayAuth(),
	}
	f.text = fmt.Sprintf("relay %s: no usable address", host)
	for _, ip := range usableIPs(ips, source) {
		s, sf := c.openSession(ctx, source, ip, port, host, mode, true, moxdns.Domain{ASCII: host}, opts)
		if s != nil {
			if s.hop.tls != "" {
				s.hop.verified = "pkix"
			}
			return s, nil
		}
		f = sf
		f.text = "relay: " + f.text
		if ctx.Err() != nil {
			break
		}
	}
	return nil, f
}

// relayAuth authenticates with AUTH PLAIN (RFC 4616), only over TLS.
func (c *Client) relayAuth() func([]string, *tls.ConnectionState) (sasl.Client, error) {
	if c.RelayAuth == nil {
		return nil
	}
	auth := *c.RelayAuth
	return func(mechanisms []string, cs *tls.ConnectionState) (sasl.Client, error) {
		if cs == nil {
			return nil, errAuthPlaintext
		}
		if !slices.Contains(mechanisms, "PLAIN") {
			return nil, errNoAuthPlain
		}
		return sasl.NewClientPlain(auth.Username, auth.Password), nil
	}
}
