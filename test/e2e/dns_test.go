package e2e

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// dnsAddr is the "IP:PORT" of the in-process DNS server every test server resolves
// through (config dns.resolver), so no lookup ever leaves loopback.
var dnsAddr string

// blackholeIP is where the test zone points remote MX hosts: loopback, never allocated
// to a test server, nothing listens there.
const blackholeIP = "127.0.0.250"

// testZone answers for the names the tests use. remote.test is the domain outside
// senders use: it exists, and its SPF record authorises every loopback client.
// Everything else is NXDOMAIN.
var testZone = map[uint16]map[string][]string{
	dns.TypeA: {
		"remote.test.":    {"remote.test. 300 IN A " + blackholeIP},
		"mx.remote.test.": {"mx.remote.test. 300 IN A " + blackholeIP},
		"localhost.":      {"localhost. 300 IN A 127.0.0.1"},
	},
	dns.TypeMX: {
		"remote.test.": {"remote.test. 300 IN MX 10 mx.remote.test."},
	},
	dns.TypeTXT: {
		"remote.test.": {`remote.test. 300 IN TXT "v=spf1 ip4:127.0.0.0/8 -all"`},
	},
	dns.TypePTR: {
		"1.0.0.127.in-addr.arpa.": {"1.0.0.127.in-addr.arpa. 300 IN PTR localhost."},
	},
}

// nameExists reports whether the test zone has the name (NOERROR with no data for
// other types, NXDOMAIN otherwise).
func nameExists(name string) bool {
	for _, names := range testZone {
		if _, ok := names[name]; ok {
			return true
		}
	}
	return false
}

// sharedZone holds no records of its own: it answers from testZone (for the shared test
// DNS server and the private resolver of repute dev).
var sharedZone zone

func lookupTestZone(name string, qtype uint16) []dns.RR {
	var out []dns.RR
	for _, s := range testZone[qtype][name] {
		rr, err := dns.NewRR(s)
		if err == nil {
			out = append(out, rr)
		}
	}
	return out
}

// zone is the DNS of one test: its own records (a.test, b.test, … pointing at the
// test's own loopback addresses) served by a DNS server of its own, so that tests
// running in parallel can each have their a.test. Names it does not hold are answered
// from testZone; everything else is NXDOMAIN.
type zone struct {
	t    *testing.T
	addr string // "127.0.0.1:PORT" (UDP and TCP), for dns.resolver

	mu      sync.Mutex
	rrs     map[string][]dns.RR // by owner name, lower case and fully qualified
	silence []string            // names at or under these get no answer at all (timeouts)
}

// silent makes every query for domain and the names under it go unanswered, as from a
// dead authoritative server: the resolver times out.
func (z *zone) silent(domain string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.silence = append(z.silence, strings.ToLower(dns.Fqdn(domain)))
}

// newZone starts an empty zone's DNS server on 127.0.0.1; it stops when the test ends.
func newZone(t *testing.T) *zone {
	t.Helper()
	z := &zone{t: t, rrs: map[string][]dns.RR{}}
	pc, ln, err := listenPair()
	if err != nil {
		t.Fatalf("test DNS: %v", err)
	}
	z.addr = pc.LocalAddr().String()
	z.serve(pc, ln)
	return z
}

// listenPair binds UDP and TCP to the same free port of 127.0.0.1.
func listenPair() (net.PacketConn, net.Listener, error) {
	var err error
	for i := 0; i < 20; i++ {
		pc, perr := net.ListenPacket("udp", "127.0.0.1:0")
		if perr != nil {
			return nil, nil, perr
		}
		ln, lerr := net.Listen("tcp", pc.LocalAddr().String())
		if lerr == nil {
			return pc, ln, nil
		}
		pc.Close()
		err = lerr
	}
	return nil, nil, fmt.Errorf("no UDP+TCP port pair on 127.0.0.1: %v", err)
}

// serveDNS answers with h on pc (UDP) and ln (TCP) until stop is called.
func serveDNS(pc net.PacketConn, ln net.Listener, h dns.HandlerFunc) (stop func()) {
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: ln, Handler: h, ReadTimeout: 5 * time.Second}
	go func() { _ = udp.ActivateAndServe() }()
	go func() { _ = tcp.ActivateAndServe() }()
	return func() {
		_ = udp.Shutdown()
		_ = tcp.Shutdown()
	}
}

// listen serves the zone also on IP:53 (UDP and TCP), for daemons that read
// /etc/resolv.conf, which has no port; it returns the address.
func (z *zone) listen(ip string) string {
	z.t.Helper()
	addr := net.JoinHostPort(ip, "53")
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		z.t.Fatalf("test DNS on %s: %v", addr, err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		pc.Close()
		z.t.Fatalf("test DNS on %s: %v", addr, err)
	}
	z.serve(pc, ln)
	return addr
}

func (z *zone) serve(pc net.PacketConn, ln net.Listener) {
	z.t.Cleanup(serveDNS(pc, ln, z.answer))
}

// add puts records in zone-file syntax into the zone ("b.test. MX 10 mx.b.test.");
// a record without a TTL gets 60 seconds.
func (z *zone) add(records ...string) {
	z.t.Helper()
	z.mu.Lock()
	defer z.mu.Unlock()
	for _, s := range records {
		rr, err := dns.NewRR("$TTL 60\n" + s)
		if err != nil || rr == nil {
			z.t.Fatalf("test DNS record %q: %v", s, err)
		}
		name := strings.ToLower(rr.Header().Name)
		z.rrs[name] = append(z.rrs[name], rr)
	}
}

// remove deletes every record of the type at the name (dns.TypeANY: all of them).
func (z *zone) remove(name string, qtype uint16) {
	z.mu.Lock()
	defer z.mu.Unlock()
	name = strings.ToLower(dns.Fqdn(name))
	var keep []dns.RR
	for _, rr := range z.rrs[name] {
		if qtype != dns.TypeANY && rr.Header().Rrtype != qtype {
			keep = append(keep, rr)
		}
	}
	if len(keep) == 0 {
		delete(z.rrs, name)
	} else {
		z.rrs[name] = keep
	}
}

// mailDomain publishes a mail domain: MX 10 mxHost, mxHost's A record, and an SPF
// record allowing every loopback address (outbound connections come from the address
// the kernel picks, usually 127.0.0.1).
func (z *zone) mailDomain(domain, mxHost, ip string) {
	z.t.Helper()
	z.add(
		fmt.Sprintf("%s. MX 10 %s.", domain, mxHost),
		fmt.Sprintf("%s. A %s", mxHost, ip),
		fmt.Sprintf(`%s. TXT "v=spf1 ip4:127.0.0.0/8 -all"`, domain),
	)
}

func (z *zone) answer(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	z.mu.Lock()
	for _, d := range z.silence {
		if name == d || strings.HasSuffix(name, "."+d) {
			z.mu.Unlock()
			return
		}
	}
	rrs, exists := z.rrs[name]
	for _, rr := range rrs {
		if rr.Header().Rrtype == q.Qtype || q.Qtype == dns.TypeANY {
			m.Answer = append(m.Answer, dns.Copy(rr))
		}
	}
	z.mu.Unlock()
	if !exists {
		m.Answer = lookupTestZone(name, q.Qtype)
		if len(m.Answer) == 0 && !nameExists(name) {
			m.Rcode = dns.RcodeNameError
		}
	}
	_ = w.WriteMsg(m)
}

// startFakeDNS serves testZone over UDP and TCP on one port of 127.0.0.1.
func startFakeDNS() (stop func(), err error) {
	pc, ln, err := listenPair()
	if err != nil {
		return nil, err
	}
	dnsAddr = pc.LocalAddr().String()
	return serveDNS(pc, ln, sharedZone.answer), nil
}
