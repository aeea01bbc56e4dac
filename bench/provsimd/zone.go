package main

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/repute-mail/repute/test/provsim"
)

// mailDomain is a recipient domain the benchmark sends to and the MX host name it gets.
// The MX names end in the providers' real suffixes (internal/provider's table), so that
// a sender that groups destinations by provider sees Gmail, Microsoft and Yahoo. They
// exist only in this private DNS server: nothing here ever resolves or contacts them on
// the Internet.
type mailDomain struct {
	Domain   string
	MX       string
	Provider provsim.Provider
}

// mailDomains are the simulated recipient domains: Outlook.com (outlook.test) and
// Hotmail (hotmail.test) are two destinations of one provider, like in life.
var mailDomains = []mailDomain{
	{"gmail.test", "gmail-smtp-in.l.google.com", provsim.Google},
	{"outlook.test", "outlook-test.mail.protection.outlook.com", provsim.Microsoft},
	{"hotmail.test", "hotmail-test.olc.protection.outlook.com", provsim.Microsoft},
	{"yahoo.test", "mta5.am0.yahoodns.net", provsim.Yahoo},
}

// zoneTTL is the TTL of every answer, and the negative TTL of the SOA.
const zoneTTL = 300

// zone is the private DNS of the benchmark: the simulated domains, the sender's domain
// and localhost. Every other name is NXDOMAIN. It is read-only once built.
type zone struct {
	rrs     map[string][]dns.RR // by owner name, lower case, fully qualified
	ptrHost string              // PTR answer for loopback addresses not named otherwise
	soa     dns.RR
}

// newZone builds the zone: each simulated domain's MX pointing at its provider's
// address in sims; the sender domain with an MX host whose A records (and the PTR
// records of those addresses) are senderIPs, and an SPF record for loopback; localhost.
// Every address must be on loopback.
func newZone(sender string, senderIPs []netip.Addr, sims map[provsim.Provider]netip.Addr) (*zone, error) {
	z := &zone{rrs: map[string][]dns.RR{}}
	sender = strings.ToLower(dns.Fqdn(sender))
	if _, ok := dns.IsDomainName(sender); !ok || sender == "." {
		return nil, fmt.Errorf("sender domain %q is not a domain name", sender)
	}
	if len(senderIPs) == 0 {
		return nil, fmt.Errorf("no sender IP")
	}
	z.ptrHost = "mx." + sender
	z.soa = &dns.SOA{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: zoneTTL},
		Ns: "ns.provsimd.test.", Mbox: "admin.provsimd.test.", Serial: 1, Refresh: 3600, Retry: 600,
		Expire: 86400, Minttl: zoneTTL}
	for _, d := range mailDomains {
		ip, ok := sims[d.Provider]
		if !ok {
			return nil, fmt.Errorf("no address for provider %s", d.Provider)
		}
		if err := z.add(fmt.Sprintf("%s. MX 10 %s.", d.Domain, d.MX)); err != nil {
			return nil, err
		}
		if err := z.addA(d.MX+".", ip); err != nil {
			return nil, err
		}
	}
	for _, ip := range senderIPs {
		if err := z.addA(z.ptrHost, ip); err != nil {
			return nil, err
		}
	}
	if err := z.addA(sender, senderIPs[0]); err != nil {
		return nil, err
	}
	if err := z.add(fmt.Sprintf("%s MX 10 %s", sender, z.ptrHost),
		fmt.Sprintf(`%s TXT "v=spf1 ip4:127.0.0.0/8 -all"`, sender)); err != nil {
		return nil, err
	}
	if err := z.addA("localhost.", netip.MustParseAddr("127.0.0.1")); err != nil {
		return nil, err
	}
	return z, nil
}

// add puts records in zone-file syntax into the zone.
func (z *zone) add(records ...string) error {
	for _, s := range records {
		rr, err := dns.NewRR(fmt.Sprintf("$TTL %d\n%s", zoneTTL, s))
		if err != nil || rr == nil {
			return fmt.Errorf("record %q: %v", s, err)
		}
		name := strings.ToLower(rr.Header().Name)
		z.rrs[name] = append(z.rrs[name], rr)
	}
	return nil
}

// addA adds an A record, refusing an address off loopback: every name of this zone leads
// to this host.
func (z *zone) addA(name string, ip netip.Addr) error {
	if !ip.Is4() || !ip.IsLoopback() {
		return fmt.Errorf("%s: %s is not an IPv4 loopback address", name, ip)
	}
	return z.add(fmt.Sprintf("%s A %s", name, ip))
}

// lookup answers a question: the records of that type, and whether the name exists.
func (z *zone) lookup(name string, qtype uint16) (answer []dns.RR, exists bool) {
	name = strings.ToLower(name)
	if rr := z.ptr(name); rr != nil {
		if qtype == dns.TypePTR || qtype == dns.TypeANY {
			return []dns.RR{rr}, true
		}
		return nil, true
	}
	rrs, exists := z.rrs[name]
	for _, rr := range rrs {
		if rr.Header().Rrtype == qtype || qtype == dns.TypeANY {
			answer = append(answer, dns.Copy(rr))
		}
	}
	return answer, exists
}

// ptr is the PTR record of a reverse name in 127.in-addr.arpa: localhost for
// 127.0.0.1, the first simulated MX host of a simulator's address, the sender's MX host for
// any other loopback address (the sender's source addresses). Nil for other names.
func (z *zone) ptr(name string) dns.RR {
	rest, ok := strings.CutSuffix(name, ".in-addr.arpa.")
	if !ok {
		return nil
	}
	labels := strings.Split(rest, ".")
	if len(labels) != 4 {
		return nil
	}
	ip, err := netip.ParseAddr(labels[3] + "." + labels[2] + "." + labels[1] + "." + labels[0])
	if err != nil || !ip.IsLoopback() {
		return nil
	}
	host := z.ptrHost
	if ip == netip.MustParseAddr("127.0.0.1") {
		host = "localhost."
	}
	for _, d := range slices.Backward(mailDomains) { // the first domain of an address wins
		for _, rr := range z.rrs[d.MX+"."] {
			if a, ok := rr.(*dns.A); ok && a.A.Equal(net.IP(ip.AsSlice())) {
				host = d.MX + "."
			}
		}
	}
	return &dns.PTR{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: zoneTTL}, Ptr: host}
}

// ServeDNS answers from the zone, authoritatively; negative answers carry the SOA
// (RFC 2308), as a resolver's do.
func (z *zone) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	answer, exists := z.lookup(q.Name, q.Qtype)
	m.Answer = answer
	if !exists {
		m.Rcode = dns.RcodeNameError
	}
	if len(answer) == 0 {
		m.Ns = []dns.RR{dns.Copy(z.soa)}
	}
	_ = w.WriteMsg(m)
}

// serveDNS serves the zone on addr over UDP and TCP; stop shuts both down.
func serveDNS(addr string, z *zone) (stop func(), err error) {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return nil, fmt.Errorf("DNS on %s: %w", addr, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("DNS on %s: %w", addr, err)
	}
	udp := &dns.Server{PacketConn: pc, Handler: z}
	tcp := &dns.Server{Listener: ln, Handler: z, ReadTimeout: 5 * time.Second}
	go func() { _ = udp.ActivateAndServe() }()
	go func() { _ = tcp.ActivateAndServe() }()
	return func() {
		_ = udp.Shutdown()
		_ = tcp.Shutdown()
	}, nil
}
