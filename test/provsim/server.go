package provsim

import (
	"crypto/tls"
	"errors"
	"fmt"
	"math"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// Config is how to run a simulated provider.
type Config struct {
	// Addr is the address to listen on, for example "127.0.0.31:2525" (port 0 for any
	// free port). It must be a loopback address: the simulator is for tests on one host.
	Addr    string
	Profile Profile

	// Now is the clock; nil means time.Now. Tests pass a ManualClock's Now.
	Now func() time.Time
	// TimeScale is how many times faster than Now simulated time runs; 0 means 1.
	TimeScale float64
	// RaceGrace is how long after the block reply other connections' transactions count
	// as racing it (Counters.TransactionsRacingBlock) rather than ignoring it; 0 means
	// DefaultRaceGrace, a negative value none.
	RaceGrace time.Duration

	// TLS, when set, offers STARTTLS with this configuration.
	TLS *tls.Config
	// Hostname is the name in the banner and replies; "" means a name for the provider
	// under provsim.test.
	Hostname string

	// MaxMessageSize is the SIZE the server announces and enforces; 0 means 25 MiB.
	MaxMessageSize int64
	// KeepMessages is how many accepted messages Messages keeps (envelope and size);
	// 0 means 100000, a negative value none. The counters count all.
	KeepMessages int
	// KeepBodies is how many bytes of message bodies the server keeps, over all
	// messages; 0 keeps none. A body that does not fit is not kept.
	KeepBodies int64
	// CommandTimeout is the wall-clock time the server waits for a command or a data
	// line before it closes the connection; 0 means one minute.
	CommandTimeout time.Duration
	// MaxSessions bounds the connections open at once from all senders together, as a
	// safeguard; a connection over it is closed at once. 0 means 1000.
	MaxSessions int

	// Logf, when set, receives a line for every session event worth seeing in a failing
	// test (connections, replies over a limit, blocks).
	Logf func(format string, args ...any)
}

// Server is one simulated provider. Its methods are safe for concurrent use.
type Server struct {
	cfg      Config
	prof     Profile // with defaults
	host     string
	clock    simClock
	interval time.Duration // the token bucket's time per message (simulated)
	stages   map[Event]Stage
	ln       net.Listener

	keepMessages int
	keepBodies   int64

	mu        sync.Mutex
	ips       map[string]*ipState
	total     Counters
	msgs      []Message
	bodyBytes int64
	conns     map[net.Conn]struct{}
	closed    bool

	wg     sync.WaitGroup
	nextID atomic.Uint64
}

// Message is an accepted message.
type Message struct {
	Provider Provider
	SenderIP string
	Helo     string
	From     string
	To       []string
	Size     int64     // bytes of message data after dot-unstuffing, CRLFs included
	Body     []byte    // the data, when kept (Config.KeepBodies)
	At       time.Time // clock time of acceptance
}

// Start starts a simulated provider listening on cfg.Addr.
func Start(cfg Config) (*Server, error) {
	if err := cfg.Profile.Check(); err != nil {
		return nil, err
	}
	if err := checkLoopback(cfg.Addr); err != nil {
		return nil, err
	}
	if cfg.TimeScale < 0 || math.IsNaN(cfg.TimeScale) || math.IsInf(cfg.TimeScale, 0) {
		return nil, fmt.Errorf("provsim: time scale %v", cfg.TimeScale)
	}
	if cfg.TimeScale == 0 {
		cfg.TimeScale = 1
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = 25 << 20
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = time.Minute
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 1000
	}
	s := &Server{
		cfg:        cfg,
		prof:       cfg.Profile.withDefaults(),
		host:       cfg.Hostname,
		clock:      simClock{now: cfg.Now, epoch: cfg.Now(), scale: cfg.TimeScale},
		keepBodies: max(0, cfg.KeepBodies),
		ips:        map[string]*ipState{},
		conns:      map[net.Conn]struct{}{},
	}
	if s.host == "" {
		s.host = defaultHost(s.prof.Provider)
	}
	switch {
	case cfg.KeepMessages == 0:
		s.keepMessages = 100000
	case cfg.KeepMessages > 0:
		s.keepMessages = cfg.KeepMessages
	}
	s.interval = s.prof.interval()
	s.stages = map[Event]Stage{}
	for _, e := range []Event{EventRate, EventConnections, EventPerConnection, EventBlock} {
		s.stages[e] = ReplyFor(s.prof.Provider, e, "", "").Stage
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("provsim: %w", err)
	}
	s.ln = ln
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// checkLoopback refuses an address that is not on a loopback interface.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("provsim: address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("provsim: address %q is not a loopback address", addr)
	}
	return nil
}

func defaultHost(p Provider) string {
	switch p {
	case Google:
		return "gmail-smtp-in.provsim.test"
	case Microsoft:
		return "outlook-com.olc.provsim.test"
	}
	return "mta5.am0.yahoo.provsim.test"
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Provider is the simulated provider.
func (s *Server) Provider() Provider { return s.prof.Provider }

// Profile is the server's profile with its defaults filled in.
func (s *Server) Profile() Profile { return s.prof }

// Hostname is the name in the server's banner and replies.
func (s *Server) Hostname() string { return s.host }

// SimNow is the simulated time now.
func (s *Server) SimNow() time.Time { return s.clock.simNow() }

// IdealTime is the clock time a perfect sender needs for messages to this server from
// senderIPs sending IPs.
func (s *Server) IdealTime(messages, senderIPs int) time.Duration {
	return IdealTime(s.clock.scale, Load{Profile: s.prof, Messages: messages, SenderIPs: senderIPs})
}

// Stats are the counters of one sender IP (as in "127.0.0.5").
func (s *Server) Stats(ip string) Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.ips[ip]; st != nil {
		return st.c
	}
	return Counters{}
}

// Total are the counters of all sender IPs together.
func (s *Server) Total() Counters {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// SenderIPs are the IPs the server has seen, sorted.
func (s *Server) SenderIPs() []string {
	s.mu.Lock()
	ips := make([]string, 0, len(s.ips))
	for ip := range s.ips {
		ips = append(ips, ip)
	}
	s.mu.Unlock()
	sort.Strings(ips)
	return ips
}

// Messages are the accepted messages kept (Config.KeepMessages), in order of acceptance.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.msgs...)
}

// Blocked says whether ip is blocked and until when, in clock time.
func (s *Server) Blocked(ip string) (until time.Time, blocked bool) {
	now := s.clock.simNow()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.ips[ip]
	if st == nil || st.blockedUntil.IsZero() || !now.Before(st.blockedUntil) {
		return time.Time{}, false
	}
	return s.clock.clock(st.blockedUntil), true
}

// Block blocks ip now for d of simulated time (0: the profile's BlockFor), as a provider
// does on its own grounds (complaints, a blocklist): from now on every transaction from
// ip gets the block reply, whether or not it was deferred before.
func (s *Server) Block(ip string, d time.Duration) {
	now := s.clock.simNow()
	if d <= 0 {
		d = s.prof.BlockFor
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.state(ip, now)
	st.deferrals = nil
	st.blockedUntil = now.Add(d)
	s.bump(st, func(c *Counters) { c.BlocksTriggered++ })
	s.logf("provsim %s: blocking %s until %s (simulated), on request", s.prof.Provider, ip, st.blockedUntil.Format(time.RFC3339))
}

// closeWait bounds how long Close waits for sessions to end.
const closeWait = 5 * time.Second

// Close stops listening, closes every connection and waits (a few seconds at most)
// for the sessions to end.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	err := s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return err
	case <-time.After(closeWait):
		return errors.New("provsim: sessions still running after close")
	}
}

func (s *Server) serve() {
	defer s.wg.Done()
	var backoff time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait a little and go on.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.logf("provsim %s: accept: %v", s.prof.Provider, err)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		s.mu.Lock()
		if s.closed || len(s.conns) >= s.cfg.MaxSessions {
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
			}()
			s.session(c)
		}()
	}
}

func (s *Server) logf(format string, args ...any) {
	if s.cfg.Logf != nil {
		s.cfg.Logf(format, args...)
	}
}
