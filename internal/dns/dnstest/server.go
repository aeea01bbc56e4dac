// Package dnstest runs a small DNS server on loopback (UDP and TCP on one port) that
// answers from records given as zone-file lines, so tests can point Repute's resolver
// (internal/dns, config `dns.resolver`) at it like at a real recursive resolver: answers
// follow CNAME chains, unknown names get NXDOMAIN, and names marked authentic get the AD
// bit when the query asks for it. Names can also be made to fail with SERVFAIL or never
// answer (a timeout).
//
// It is not a DNSSEC implementation: the AD bit is set by decree. End-to-end tests with a
// really signed zone and a validating resolver live in test/e2e.
//
// Upstream: tests of internal/dns, internal/delivery and any other package that looks up
// DNS. Downstream: github.com/miekg/dns.
package dnstest

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"

	mdns "github.com/miekg/dns"
)

// Server is a running test DNS server. Its methods may be called while it serves.
type Server struct {
	Addr string // "127.0.0.1:PORT", for UDP and TCP

	udp, tcp *mdns.Server

	mu        sync.Mutex
	records   map[string][]mdns.RR // by lower-case owner name
	rcode     map[string]int       // name → forced response code
	drop      map[string]bool      // name → no answer at all
	authentic map[string]bool      // name → AD bit
	all       bool                 // every name authentic
}

// Start parses records (zone-file lines with absolute names, e.g.
// "b.test. MX 10 mx.b.test.") and serves them on 127.0.0.1 on a free port. Records
// without a TTL get TTL 0, so resolvers do not cache them.
func Start(records ...string) (*Server, error) {
	s := &Server{
		records:   map[string][]mdns.RR{},
		rcode:     map[string]int{},
		drop:      map[string]bool{},
		authentic: map[string]bool{},
	}
	if err := s.Add(records...); err != nil {
		return nil, err
	}
	if err := s.listen(); err != nil {
		return nil, err
	}
	return s, nil
}

// listen binds UDP and TCP to the same loopback port, retrying when the TCP port is taken.
func (s *Server) listen() error {
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return fmt.Errorf("dnstest: listen udp: %w", err)
		}
		ln, err := net.Listen("tcp", pc.LocalAddr().String())
		if err != nil {
			pc.Close()
			lastErr = err
			continue
		}
		s.Addr = pc.LocalAddr().String()
		handler := mdns.HandlerFunc(s.serve)
		s.udp = &mdns.Server{PacketConn: pc, Handler: handler}
		s.tcp = &mdns.Server{Listener: ln, Handler: handler}
		s.start(s.udp)
		s.start(s.tcp)
		return nil
	}
	return fmt.Errorf("dnstest: no port free for both udp and tcp: %w", lastErr)
}

func (s *Server) start(srv *mdns.Server) {
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe() //nolint:errcheck // returns when Close shuts it down
	<-started
}

// Close stops the server.
func (s *Server) Close() error {
	return errors.Join(s.udp.Shutdown(), s.tcp.Shutdown())
}

// Add parses and adds zone-file lines.
func (s *Server) Add(records ...string) error {
	return s.add(false, records)
}

// Replace is like Add, but first removes the records of the same name and type.
func (s *Server) Replace(records ...string) error {
	return s.add(true, records)
}

func (s *Server) add(replace bool, records []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, line := range records {
		// TTL 0 unless the line says otherwise: tests change records and expect the
		// change to be seen at once, so nothing may be cached by default.
		rr, err := mdns.NewRR("$TTL 0\n" + line)
		if err != nil {
			return fmt.Errorf("dnstest: record %q: %w", line, err)
		}
		if rr == nil {
			continue
		}
		name := strings.ToLower(rr.Header().Name)
		if replace {
			s.records[name] = slices.DeleteFunc(s.records[name], func(old mdns.RR) bool {
				return old.Header().Rrtype == rr.Header().Rrtype
			})
		}
		s.records[name] = append(s.records[name], rr)
	}
	return nil
}

// Fail makes every query for name (any type) answer with rcode, e.g.
// mdns.RcodeServerFailure; mdns.RcodeSuccess makes it answer normally again.
func (s *Server) Fail(name string, rcode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rcode == mdns.RcodeSuccess {
		delete(s.rcode, strings.ToLower(name))
		return
	}
	s.rcode[strings.ToLower(name)] = rcode
}

// Drop makes queries for name go unanswered, so the client times out.
func (s *Server) Drop(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop[strings.ToLower(name)] = true
}

// SetAuthentic marks names as DNSSEC-secure: answers about them (including NXDOMAIN and
// empty answers) carry the AD bit when the query set AD or DO. An answer that follows a
// CNAME chain is authentic only if every name on it is.
func (s *Server) SetAuthentic(names ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		s.authentic[strings.ToLower(n)] = true
	}
}

// SetAllAuthentic marks every name as DNSSEC-secure (or none, with false).
func (s *Server) SetAllAuthentic(all bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.all = all
}

func (s *Server) serve(w mdns.ResponseWriter, req *mdns.Msg) {
	if len(req.Question) != 1 {
		m := new(mdns.Msg)
		m.SetRcode(req, mdns.RcodeFormatError)
		w.WriteMsg(m) //nolint:errcheck // the client sees a timeout
		return
	}
	q := req.Question[0]
	m := new(mdns.Msg)
	m.SetReply(req)
	if !s.answer(m, q.Name, q.Qtype) {
		return // dropped
	}
	m.RecursionAvailable = true
	m.AuthenticatedData = m.AuthenticatedData && (req.AuthenticatedData || doBit(req))
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(opt.UDPSize(), opt.Do())
	}
	if _, isUDP := w.RemoteAddr().(*net.UDPAddr); isUDP {
		m.Truncate(udpSize(req))
	}
	w.WriteMsg(m) //nolint:errcheck // the client sees a timeout
}

// answer fills in the response code, answer records and AD bit for one question; it
// returns false to drop the query.
func (s *Server) answer(m *mdns.Msg, qname string, qtype uint16) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := strings.ToLower(qname)
	authentic := true
	for range 10 {
		if s.drop[name] {
			return false
		}
		if rc, failed := s.rcode[name]; failed {
			m.Rcode = rc
			return true
		}
		authentic = authentic && (s.all || s.authentic[name])
		rrs, exists := s.records[name]
		if !exists {
			m.Rcode = mdns.RcodeNameError
			break
		}
		var cname *mdns.CNAME
		for _, rr := range rrs {
			if rr.Header().Rrtype == qtype {
				m.Answer = append(m.Answer, mdns.Copy(rr))
			} else if c, isCNAME := rr.(*mdns.CNAME); isCNAME {
				cname = c
			}
		}
		if qtype == mdns.TypeCNAME || cname == nil || len(m.Answer) > 0 {
			break
		}
		m.Answer = append(m.Answer, mdns.Copy(cname))
		name = strings.ToLower(cname.Target)
	}
	m.AuthenticatedData = authentic
	return true
}

func doBit(req *mdns.Msg) bool {
	opt := req.IsEdns0()
	return opt != nil && opt.Do()
}

func udpSize(req *mdns.Msg) int {
	if opt := req.IsEdns0(); opt != nil && opt.UDPSize() >= mdns.MinMsgSize {
		return int(opt.UDPSize())
	}
	return mdns.MinMsgSize
}
