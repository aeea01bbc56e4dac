package shaper

import (
	"math"
	"net/netip"
	"time"
)

// Lane states (the "state" of provider status).
const (
	StateNormal  = "normal"  // sending at the rate it has learnt
	StateWarming = "warming" // a warm-up cap is in force
	StateBackoff = "backoff" // the provider pushed back lately; the rate is climbing again
	StatePaused  = "paused"  // blocked: nothing is sent until the cool-down ends
	StateProbing = "probing" // one probe message is on its way
)

// lane is the engine's state for one source IP and one destination group (a provider, or
// an unknown domain's MX host set). Every field is guarded by the engine's mutex.
type lane struct {
	ip       netip.Addr
	ipKey    string
	group    string
	provider string // profile id: the provider, or DefaultProvider
	prof     Profile

	// Connections: how many are open, and how many are allowed now (cut by refusals,
	// won back by deliveries). allowedConns 0 means prof.MaxConnections.
	open         int
	allowedConns float64
	connCut      time.Time
	connTimes    []time.Time // connection starts within the last minute (ConnectionsPerMinute)

	// Message rate (per engine minute). rate 0 means unpaced (no ceiling and never cut).
	rate      float64
	slowStart bool      // no pushback seen yet: the rate doubles every round
	tokens    float64   // the rate's bucket
	tokensAt  time.Time // when tokens was last brought up to date
	lastCut   time.Time // the last multiplicative decrease
	rateAtCut float64   // the rate just before it
	holdUntil time.Time // a retry hint, or the wait after a cut
	roundAt   time.Time // start of the current round of feedback
	roundSent int       // messages granted in the current round
	strikes   int       // throttles since the last delivery
	window    [6]int    // messages delivered in the last six rounds (newest last)

	// Hour and day counts for MessagesPerHour/MessagesPerDay and the warm-up cap.
	hourStart time.Time
	sentHour  int
	day       int // warm-up day index (days since the IP's first use) of sentToday
	sentToday int
	capTokens float64 // the day's allowance, spread over the day
	capAt     time.Time
	// Warm-up progress: days of trouble do not advance the schedule.
	heldDays       int
	troubleToday   int // throttles and complaints today
	deliveredToday int

	// Pause.
	state        string // "" (not paused), StatePaused or StateProbing
	pausedUntil  time.Time
	coolDown     time.Duration
	probeOut     bool
	adminPause   bool
	reason       string // the classifier's category, or "admin"
	reply        string
	advice       string
	url          string
	rateAtPause  float64
	permits      map[*Permit]struct{} // live permits, stopped at a pause
	lastActivity time.Time
}

func (l *lane) maxConns() int {
	m := l.prof.MaxConnections
	if m <= 0 {
		m = 10
	}
	if l.allowedConns > 0 {
		return min(m, max(1, int(l.allowedConns)))
	}
	return m
}

func (l *lane) perConnection() int {
	if l.prof.MessagesPerConnection > 0 {
		return l.prof.MessagesPerConnection
	}
	return 50
}

// paced reports whether the lane's rate is limited at all.
func (l *lane) paced() bool { return l.rate > 0 }

// refill brings the rate bucket up to now. The bucket holds five seconds' worth of the
// rate (at least one message, at most a connection's worth): enough for a connection
// to carry several messages, never more than a provider's own burst allowance.
func (l *lane) refill(now time.Time, minute time.Duration) {
	if !l.paced() {
		return
	}
	capacity := l.bucket()
	if l.tokensAt.IsZero() {
		l.tokens, l.tokensAt = capacity, now
		return
	}
	if d := now.Sub(l.tokensAt); d > 0 {
		l.tokens = math.Min(capacity, l.tokens+l.rate*float64(d)/float64(minute))
		l.tokensAt = now
	}
}

func (l *lane) bucket() float64 {
	return math.Max(1, math.Min(float64(l.perConnection()), l.rate/12)) // five seconds of a per-minute rate
}

// readyAt is when the bucket next holds n messages.
func (l *lane) readyAt(now time.Time, n float64, minute time.Duration) time.Time {
	if l.tokens >= n || l.rate <= 0 {
		return now
	}
	wait := (n - l.tokens) / l.rate * float64(minute)
	return now.Add(time.Duration(math.Ceil(wait)))
}

// delivered is the rate of deliveries over the last six rounds, per minute.
func (l *lane) deliveredRate(round, minute time.Duration) float64 {
	n := 0
	for _, c := range l.window {
		n += c
	}
	return float64(n) * float64(minute) / float64(6*round)
}
