package e2e

import (
	"fmt"
	"net"
	"strings"
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

func serveTestZone(w dns.ResponseWriter, req *dns.Msg) {
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
	for _, s := range testZone[q.Qtype][name] {
		rr, err := dns.NewRR(s)
		if err == nil {
			m.Answer = append(m.Answer, rr)
		}
	}
	if len(m.Answer) == 0 && !nameExists(name) {
		m.Rcode = dns.RcodeNameError
	}
	_ = w.WriteMsg(m)
}

// startFakeDNS serves testZone over UDP and TCP on one port of 127.0.0.1.
func startFakeDNS() (stop func(), err error) {
	var pc net.PacketConn
	var ln net.Listener
	for i := 0; i < 20; i++ {
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("no UDP+TCP port pair on 127.0.0.1: %v", err)
	}
	h := dns.HandlerFunc(serveTestZone)
	udp := &dns.Server{PacketConn: pc, Handler: h}
	tcp := &dns.Server{Listener: ln, Handler: h, ReadTimeout: 5 * time.Second}
	go func() { _ = udp.ActivateAndServe() }()
	go func() { _ = tcp.ActivateAndServe() }()
	dnsAddr = pc.LocalAddr().String()
	return func() {
		_ = udp.Shutdown()
		_ = tcp.Shutdown()
	}, nil
}
