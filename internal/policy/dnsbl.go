// Package policy holds the checks an inbound SMTP session runs at each stage of the
// dialogue. This file: DNS blocklists (RFC 5782) consulted when a client connects.
//
// A listing is an A record in 127.0.0.0/8 at the client address's reversed octets under
// the list's zone; its TXT record says why. Answers in 127.255.255.0/24 are not listings
// but the list refusing the query (Spamhaus returns them to open resolvers and over-quota
// users), and DNS failures are not listings either: a list that cannot be asked must
// never block mail.
//
// Upstream: internal/session (at connect; the refusal is given at RCPT so that the client
// learns why). Downstream: internal/dns.
package policy

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/repute-mail/repute/internal/dns"
)

// Listing says that a client address is on a blocklist.
type Listing struct {
	Zone   string // the list, e.g. "zen.spamhaus.org"
	Codes  []netip.Addr
	Reason string // the list's TXT text, if any
}

// ErrListRefused marks a 127.255.255.x answer: the list refused to answer this querier.
var ErrListRefused = errors.New("blocklist refused the query")

// DNSBL looks client addresses up in a set of blocklists.
type DNSBL struct {
	Resolver dns.Resolver
	Zones    []string      // e.g. ["zen.spamhaus.org", "bl.spamcop.net"]
	Timeout  time.Duration // per lookup; 0 = 5 s
}

// Check returns the first listing of ip, or nil. Errors (timeouts, refused queries) are
// returned alongside for logging; they never produce a listing.
func (b *DNSBL) Check(ctx context.Context, ip netip.Addr) (*Listing, []error) {
	var errs []error
	for _, zone := range b.Zones {
		l, err := b.lookup(ctx, ip, zone)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", zone, err))
			continue
		}
		if l != nil {
			return l, errs
		}
	}
	return nil, errs
}

func (b *DNSBL) lookup(ctx context.Context, ip netip.Addr, zone string) (*Listing, error) {
	timeout := b.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	name := dns.ListName(ip) + "." + strings.TrimSuffix(zone, ".") + "."
	ips, _, err := b.Resolver.LookupIP(ctx, "ip4", name)
	if dns.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	l := &Listing{Zone: strings.TrimSuffix(zone, ".")}
	for _, a := range ips {
		addr, ok := netip.AddrFromSlice(a)
		if !ok {
			continue
		}
		addr = addr.Unmap()
		switch {
		case netip.MustParsePrefix("127.255.255.0/24").Contains(addr):
			return nil, fmt.Errorf("%w (answer %s)", ErrListRefused, addr)
		case netip.MustParsePrefix("127.0.0.0/8").Contains(addr):
			l.Codes = append(l.Codes, addr)
		}
	}
	if len(l.Codes) == 0 {
		return nil, nil // answers outside 127/8 are not listings (RFC 5782 §2.1)
	}
	if txts, _, err := b.Resolver.LookupTXT(ctx, name); err == nil {
		l.Reason = strings.Join(txts, " ")
	}
	return l, nil
}
