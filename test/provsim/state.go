package provsim

import (
	"time"
)

// Counters are what the server saw, for one sender IP or in total.
type Counters struct {
	Connections  int64 // TCP connections, refused ones included
	Transactions int64 // transactions started (MAIL commands), refused ones included
	Accepted     int64 // messages accepted (250 after the end of DATA)
	Recipients   int64 // recipients of the accepted messages

	// Deferrals by kind (see Event).
	DeferredRate          int64
	DeferredConnections   int64
	DeferredPerConnection int64

	BlocksTriggered int64 // times the IP was blocked
	BlockReplies    int64 // block replies sent
	// TransactionsAfterBlock counts transactions started while the IP was blocked and
	// had been sent the block reply more than Config.RaceGrace ago; ConnectionsAfterBlock
	// the same for connections. A sender that stops at the block reply keeps both at
	// zero. Those started within the grace, on other connections of a sender that runs
	// several at once, raced the reply (their commands were on the way, or the sender
	// had not read it yet) and are counted in TransactionsRacingBlock and
	// ConnectionsRacingBlock.
	TransactionsAfterBlock  int64
	ConnectionsAfterBlock   int64
	TransactionsRacingBlock int64
	ConnectionsRacingBlock  int64
}

// DefaultRaceGrace is how long after the block reply a transaction or connection from
// the same IP counts as racing it rather than ignoring it (Config.RaceGrace): the reply's
// way back, the sender reading it, and its other connections being told, all on one
// machine (real time, not simulated).
const DefaultRaceGrace = 100 * time.Millisecond

// Deferrals is the number of deferrals of all kinds.
func (c Counters) Deferrals() int64 {
	return c.DeferredRate + c.DeferredConnections + c.DeferredPerConnection
}

// ipState is the server's state for one sender IP. Times are simulated.
type ipState struct {
	c      Counters
	active int // open connections that were not refused

	// tat is the token bucket as a theoretical arrival time (the generic cell rate
	// algorithm): the time at which the bucket would be full again.
	tat time.Time

	deferrals    []time.Time // deferrals within the block window, oldest first
	blockedUntil time.Time   // zero when not blocked
	told         bool        // the block reply was sent during the current block
	toldAt       time.Time   // when it was first sent (wall clock)
}

// state returns the state of ip, made on first use, with an expired block lifted. The
// caller holds s.mu.
func (s *Server) state(ip string, now time.Time) *ipState {
	st := s.ips[ip]
	if st == nil {
		st = &ipState{}
		s.ips[ip] = st
	}
	if !st.blockedUntil.IsZero() && !now.Before(st.blockedUntil) {
		st.blockedUntil, st.told, st.deferrals = time.Time{}, false, nil
	}
	return st
}

// bump applies f to the counters of st and to the totals. The caller holds s.mu.
func (s *Server) bump(st *ipState, f func(*Counters)) {
	f(&st.c)
	f(&s.total)
}

// connect records a new connection from ip and says whether it is over the
// connection cap. A connection that is not refused must be ended with disconnect.
func (s *Server) connect(ip string) (refuse bool) {
	now := s.clock.simNow()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.state(ip, now)
	s.bump(st, func(c *Counters) { c.Connections++ })
	switch {
	case st.told && time.Since(st.toldAt) > s.raceGrace():
		s.bump(st, func(c *Counters) { c.ConnectionsAfterBlock++ })
	case st.told:
		s.bump(st, func(c *Counters) { c.ConnectionsRacingBlock++ })
	}
	if s.prof.MaxConnections > 0 && st.active >= s.prof.MaxConnections {
		return true
	}
	st.active++
	return false
}

func (s *Server) disconnect(ip string) {
	s.mu.Lock()
	s.ips[ip].active--
	s.mu.Unlock()
}

// startTransaction records a MAIL command from ip and says whether ip is blocked.
func (s *Server) startTransaction(ip string) (blocked bool) {
	now := s.clock.simNow()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.state(ip, now)
	s.bump(st, func(c *Counters) { c.Transactions++ })
	switch {
	case st.told && time.Since(st.toldAt) > s.raceGrace():
		s.bump(st, func(c *Counters) { c.TransactionsAfterBlock++ })
	case st.told:
		s.bump(st, func(c *Counters) { c.TransactionsRacingBlock++ })
	}
	return !st.blockedUntil.IsZero()
}

// isBlocked says whether ip is blocked now.
func (s *Server) isBlocked(ip string) bool {
	now := s.clock.simNow()
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.state(ip, now).blockedUntil.IsZero()
}

// blockReplied records that ip was sent the block reply.
func (s *Server) blockReplied(ip string) {
	now := s.clock.simNow()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.state(ip, now)
	if !st.told {
		st.told, st.toldAt = true, time.Now()
	}
	s.bump(st, func(c *Counters) { c.BlockReplies++ })
}

// take takes one message from ip's token bucket; false means ip is over the rate.
func (s *Server) take(ip string) bool {
	if s.prof.RatePerMinute <= 0 {
		return true
	}
	now := s.clock.simNow()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.state(ip, now)
	if st.tat.Before(now) {
		st.tat = now
	}
	if st.tat.Sub(now) > time.Duration(s.prof.Burst-1)*s.interval {
		return false
	}
	st.tat = st.tat.Add(s.interval)
	return true
}

// deferred records a deferral of kind e for ip and blocks ip when it has had more than
// BlockAfter deferrals within BlockWindow.
func (s *Server) deferred(ip string, e Event) {
	now := s.clock.simNow()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.state(ip, now)
	s.bump(st, func(c *Counters) {
		switch e {
		case EventRate:
			c.DeferredRate++
		case EventConnections:
			c.DeferredConnections++
		case EventPerConnection:
			c.DeferredPerConnection++
		}
	})
	if e == EventPerConnection || s.prof.BlockAfter < 0 || !st.blockedUntil.IsZero() {
		return
	}
	cut := 0
	for cut < len(st.deferrals) && !st.deferrals[cut].After(now.Add(-s.prof.BlockWindow)) {
		cut++
	}
	st.deferrals = append(st.deferrals[cut:], now)
	if len(st.deferrals) > s.prof.BlockAfter {
		st.deferrals = nil
		st.blockedUntil = now.Add(s.prof.BlockFor)
		s.bump(st, func(c *Counters) { c.BlocksTriggered++ })
		s.logf("provsim %s: blocking %s until %s (simulated)", s.prof.Provider, ip, st.blockedUntil.Format(time.RFC3339))
	}
}

// accepted records an accepted message.
func (s *Server) accepted(m Message) {
	now := s.clock.simNow()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.state(m.SenderIP, now)
	s.bump(st, func(c *Counters) {
		c.Accepted++
		c.Recipients += int64(len(m.To))
	})
	if len(s.msgs) >= s.keepMessages {
		return
	}
	if int64(len(m.Body)) > s.keepBodies-s.bodyBytes {
		m.Body = nil
	}
	s.bodyBytes += int64(len(m.Body))
	s.msgs = append(s.msgs, m)
}

// raceGrace is Config.RaceGrace with its default; a negative value means none.
func (s *Server) raceGrace() time.Duration {
	switch g := s.cfg.RaceGrace; {
	case g < 0:
		return -1
	case g == 0:
		return DefaultRaceGrace
	default:
		return g
	}
}
