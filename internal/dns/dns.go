// Package dns is the one resolver every DNS lookup in Repute goes through (MX, A/AAAA,
// TXT for SPF/DKIM/DMARC/MTA-STS/TLS-RPT, TLSA for DANE, PTR for iprev).
//
// Resolver is mox's dns.Resolver interface, so the protocol packages we build on
// (smtpclient, mtasts, dane, dkim, dmarc, iprev) take it unchanged. Every lookup returns
// an adns.Result whose Authentic flag says whether the answer was DNSSEC-validated; DANE
// (RFC 7672) and REQUIRETLS (RFC 8689) may only act on authentic answers.
//
// New builds the resolver from config `dns.resolver`:
//
//   - "" uses the system resolver (/etc/resolv.conf) through adns. adns trusts the AD bit
//     only when every nameserver in resolv.conf is on loopback or resolv.conf says
//     "options trust-ad" (RFC 6698 appendix A.3).
//   - "IP:PORT" sends every query to that server. adns cannot do this with DNSSEC: its
//     Dial hook redirects the packets, but whether the AD bit is requested and trusted is
//     decided from the servers in /etc/resolv.conf alone (dnsConfig.trustAD, computed in
//     dnsReadConfig; Result.Authentic = trustAD && AD && rcode is NOERROR/NXDOMAIN). A
//     validating unbound on 127.0.0.53 would thus be distrusted on any host whose
//     resolv.conf names a non-loopback server. So this mode uses our own stub resolver
//     (serverResolver, on miekg/dns), which applies the same rule to the configured
//     server: the AD bit is requested, and trusted only if the server's address is a
//     loopback address.
//
// CheckDNSSEC tells whether the resolver validates; `repute check` reports it and delivery
// skips DANE without it. Fake is an in-memory resolver for tests; package dnstest serves
// records over real sockets.
//
// Upstream: internal/delivery, internal/auth, internal/doctor, internal/policy and anything
// else that looks up DNS. Downstream: the configured or system recursive resolver. This
// package imports nothing of Repute's.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"

	"github.com/mjl-/adns"
	moxdns "github.com/mjl-/mox/dns"
)

// Resolver is the lookup interface of mox/dns. Names must be absolute (end in a dot);
// both implementations refuse relative names instead of applying a search list.
type Resolver = moxdns.Resolver

// Fake is an in-memory Resolver: records in maps keyed by absolute names, with lists of
// queries that fail (SERVFAIL) or answer authentic. For unit tests in any package.
type Fake = moxdns.MockResolver

// New returns the resolver for config `dns.resolver`: "" for the system resolver, or
// "IP:PORT" to send every query to that server. log receives a debug line per lookup and
// may be nil.
func New(server string, log *slog.Logger) (Resolver, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if server == "" {
		// adns.DefaultResolver has StrictErrors off; with it on, a SERVFAIL for AAAA makes a
		// whole address lookup fail temporarily instead of quietly returning only the A records.
		return moxdns.StrictResolver{
			Resolver: &adns.Resolver{PreferGo: true, StrictErrors: true},
			Log:      log,
		}, nil
	}
	addr, err := netip.ParseAddrPort(server)
	if err != nil {
		return nil, fmt.Errorf("dns resolver %q: want IP:PORT: %w", server, err)
	}
	r := newServerResolver(addr, log)
	if !r.trustAD {
		log.Warn("dns resolver is not on loopback: DNSSEC results are not trusted, DANE is off",
			slog.String("resolver", server))
	}
	return r, nil
}

// IsNotFound reports whether err says the name or the record type does not exist
// (NXDOMAIN or an empty answer), as opposed to a failure to find out.
func IsNotFound(err error) bool {
	return moxdns.IsNotFound(err)
}

// IsTemporary reports whether err is a lookup failure worth retrying later: SERVFAIL,
// REFUSED, a timeout, a network error or a cancelled context. A not-found answer is not
// temporary.
func IsTemporary(err error) bool {
	if err == nil || IsNotFound(err) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	var adnsErr *adns.DNSError
	if errors.As(err, &adnsErr) {
		return adnsErr.IsTemporary || adnsErr.IsTimeout
	}
	var netErr *net.DNSError
	if errors.As(err, &netErr) {
		return netErr.IsTemporary || netErr.IsTimeout
	}
	var opErr *net.OpError
	return errors.As(err, &opErr)
}

// ListName is the query label sequence of ip in a DNS list (RFC 5782 §2.1, §2.4): the
// octets reversed for IPv4, the nibbles reversed for IPv6; the list's zone follows it.
func ListName(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is4() {
		b := ip.As4()
		return fmt.Sprintf("%d.%d.%d.%d", b[3], b[2], b[1], b[0])
	}
	b := ip.As16()
	parts := make([]string, 0, 32)
	for i := len(b) - 1; i >= 0; i-- {
		parts = append(parts, fmt.Sprintf("%x", b[i]&0xf), fmt.Sprintf("%x", b[i]>>4))
	}
	return strings.Join(parts, ".")
}
