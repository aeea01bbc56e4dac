package dns

import (
	"context"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"strings"

	mdns "github.com/miekg/dns"
	"github.com/mjl-/adns"
)

// The methods below give serverResolver the mox Resolver interface, with the same
// conventions as adns: absolute names in and out, not-found as an *adns.DNSError with
// IsNotFound, and records sorted the way net.Resolver sorts them.

func (r *serverResolver) LookupPort(ctx context.Context, network, service string) (int, error) {
	// Ports come from /etc/services, not from DNS.
	return net.DefaultResolver.LookupPort(ctx, network, service)
}

func (r *serverResolver) LookupAddr(ctx context.Context, addr string) ([]string, adns.Result, error) {
	arpa, err := mdns.ReverseAddr(addr)
	if err != nil {
		return nil, adns.Result{}, &adns.DNSError{Err: err.Error(), Name: addr}
	}
	rrs, result, err := r.lookup(ctx, arpa, mdns.TypePTR)
	var names []string
	for _, rr := range rrs {
		names = append(names, rr.(*mdns.PTR).Ptr)
	}
	return names, result, err
}

func (r *serverResolver) LookupCNAME(ctx context.Context, host string) (string, adns.Result, error) {
	return r.lookupCNAME(ctx, host)
}

func (r *serverResolver) LookupHost(ctx context.Context, host string) ([]string, adns.Result, error) {
	ips, result, err := r.LookupIP(ctx, "ip", host)
	var l []string
	for _, ip := range ips {
		l = append(l, ip.String())
	}
	return l, result, err
}

// LookupIP looks up A and/or AAAA records (network "ip", "ip4" or "ip6"). A temporary
// failure of either query fails the lookup, like adns with StrictErrors: a SERVFAIL for
// AAAA must not be mistaken for "no IPv6 address".
func (r *serverResolver) LookupIP(ctx context.Context, network, host string) ([]net.IP, adns.Result, error) {
	var qtypes []uint16
	switch network {
	case "ip":
		qtypes = []uint16{mdns.TypeA, mdns.TypeAAAA}
	case "ip4":
		qtypes = []uint16{mdns.TypeA}
	case "ip6":
		qtypes = []uint16{mdns.TypeAAAA}
	default:
		return nil, adns.Result{}, fmt.Errorf("lookup %s: unknown network %q", host, network)
	}
	authentic := true
	var ips []net.IP
	for _, qtype := range qtypes {
		rrs, result, err := r.lookup(ctx, host, qtype)
		if err != nil && !IsNotFound(err) {
			return nil, adns.Result{}, err
		}
		authentic = authentic && result.Authentic
		for _, rr := range rrs {
			switch rr := rr.(type) {
			case *mdns.A:
				ips = append(ips, rr.A)
			case *mdns.AAAA:
				ips = append(ips, rr.AAAA)
			}
		}
	}
	if len(ips) == 0 {
		return nil, adns.Result{Authentic: authentic}, r.notFound(host)
	}
	return ips, adns.Result{Authentic: authentic}, nil
}

func (r *serverResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, adns.Result, error) {
	ips, result, err := r.LookupIP(ctx, "ip", host)
	var l []net.IPAddr
	for _, ip := range ips {
		l = append(l, net.IPAddr{IP: ip})
	}
	return l, result, err
}

// LookupMX returns MX records sorted by preference, records of equal preference in random
// order (RFC 5321 §5.1).
func (r *serverResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, adns.Result, error) {
	rrs, result, err := r.lookup(ctx, name, mdns.TypeMX)
	var l []*net.MX
	for _, rr := range rrs {
		mx := rr.(*mdns.MX)
		l = append(l, &net.MX{Host: mx.Mx, Pref: mx.Preference})
	}
	rand.Shuffle(len(l), func(i, j int) { l[i], l[j] = l[j], l[i] })
	slices.SortStableFunc(l, func(a, b *net.MX) int { return int(a.Pref) - int(b.Pref) })
	return l, result, err
}

func (r *serverResolver) LookupNS(ctx context.Context, name string) ([]*net.NS, adns.Result, error) {
	rrs, result, err := r.lookup(ctx, name, mdns.TypeNS)
	var l []*net.NS
	for _, rr := range rrs {
		l = append(l, &net.NS{Host: rr.(*mdns.NS).Ns})
	}
	return l, result, err
}

// LookupSRV looks up _service._proto.name (or name itself when service and proto are
// empty), sorted by priority and then by descending weight.
func (r *serverResolver) LookupSRV(ctx context.Context, service, proto, name string) (string, []*net.SRV, adns.Result, error) {
	target := name
	if service != "" || proto != "" {
		target = "_" + service + "._" + proto + "." + name
	}
	rrs, result, err := r.lookup(ctx, target, mdns.TypeSRV)
	var l []*net.SRV
	for _, rr := range rrs {
		s := rr.(*mdns.SRV)
		l = append(l, &net.SRV{Target: s.Target, Port: s.Port, Priority: s.Priority, Weight: s.Weight})
	}
	slices.SortStableFunc(l, func(a, b *net.SRV) int {
		if a.Priority != b.Priority {
			return int(a.Priority) - int(b.Priority)
		}
		return int(b.Weight) - int(a.Weight)
	})
	return target, l, result, err
}

// LookupTXT returns one string per TXT record, its character-strings concatenated
// (RFC 7208 §3.3, RFC 6376 §3.6.2.2).
func (r *serverResolver) LookupTXT(ctx context.Context, name string) ([]string, adns.Result, error) {
	rrs, result, err := r.lookup(ctx, name, mdns.TypeTXT)
	var l []string
	for _, rr := range rrs {
		var b strings.Builder
		for _, part := range rr.(*mdns.TXT).Txt {
			b.WriteString(unescapeTXT(part))
		}
		l = append(l, b.String())
	}
	return l, result, err
}

// LookupTLSA looks up _port._protocol.host, or host itself when port is 0 and protocol
// is empty (as adns does). Callers must check Result.Authentic before using the records.
func (r *serverResolver) LookupTLSA(ctx context.Context, port int, protocol, host string) ([]adns.TLSA, adns.Result, error) {
	name := host
	if port != 0 || protocol != "" {
		name = fmt.Sprintf("_%d._%s.%s", port, protocol, host)
	}
	rrs, result, err := r.lookup(ctx, name, mdns.TypeTLSA)
	var l []adns.TLSA
	for _, rr := range rrs {
		t := rr.(*mdns.TLSA)
		data, herr := hex.DecodeString(t.Certificate)
		if herr != nil {
			continue // unusable record (RFC 7672 §2.2); the wire format is binary, so this cannot happen
		}
		l = append(l, adns.TLSA{
			Usage:     adns.TLSAUsage(t.Usage),
			Selector:  adns.TLSASelector(t.Selector),
			MatchType: adns.TLSAMatchType(t.MatchingType),
			CertAssoc: data,
		})
	}
	return l, result, err
}

// unescapeTXT turns a TXT character-string from miekg/dns's presentation form ("\DDD" for
// non-printable bytes, "\X" for a quoted X) back into its raw bytes, which is what the
// system resolver returns and what SPF and DKIM parsers expect.
func unescapeTXT(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		if i+3 < len(s) && isDigit(s[i+1]) && isDigit(s[i+2]) && isDigit(s[i+3]) {
			n := int(s[i+1]-'0')*100 + int(s[i+2]-'0')*10 + int(s[i+3]-'0')
			if n < 256 {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i+1])
		i++
	}
	return b.String()
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }
