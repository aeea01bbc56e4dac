package shaper

import (
	"log/slog"
	"math"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/repute-mail/repute/internal/route"
)

// Engine is Repute's traffic shaper: per source IP and destination group ("lane") it
// enforces the provider's profile, a warm-up cap by the IP's age, a message rate it
// adapts to what the provider accepts (AIMD), the connections the provider accepts, and
// pauses the lane when the provider blocks it. Its methods are safe for concurrent use.
//
// Every duration it uses is divided by TimeScale, so that a simulation can pass a day
// in minutes; rates are per (scaled) minute.
type Engine struct {
	// Profiles by provider id, with DefaultProvider for the rest; nil: DefaultProfiles().
	Profiles map[string]Profile
	// Providers are the ids of every known provider (the provider table), which the
	// admin may pause before they have any traffic.
	Providers []string
	// MaxConnections bounds open connections in total (0: 20).
	MaxConnections int
	// SourceIPs are our addresses; none: the kernel chooses (one lane per group).
	SourceIPs []netip.Addr
	// FirstUse gives IPs already in use their first-use dates (warm-up age); others get
	// theirs at their first delivery.
	FirstUse map[netip.Addr]time.Time
	Warmup   Warmup
	// FallbackRelay is outbound.fallback_relay ("host:port", "" none): a group paused on
	// every source IP gets permits to go through it (or through its profile's own).
	FallbackRelay string
	// FallbackConnections bounds connections to the fallback relay (0: 10).
	FallbackConnections int
	// CoolDown is the first pause's length before a probe (0: an hour); each failed
	// probe doubles it up to MaxCoolDown (0: a day).
	CoolDown    time.Duration
	MaxCoolDown time.Duration
	// Round is a round of feedback: at most one cut per round's burst of deferrals, one
	// increase per round of good deliveries (0: 10 s).
	Round     time.Duration
	TimeScale float64 // 0 or 1: real time
	// Notify is told of pauses and resumptions (outside the engine's lock, in order).
	Notify func(Transition)
	Logger *slog.Logger

	mu        sync.Mutex
	lanes     map[string]*lane // by ipKey + "|" + group
	firstUse  map[string]time.Time
	total     int
	fallback  map[string]int // open fallback connections by group
	next      int
	notifyMu  sync.Mutex
	pending   []Transition
	dirty     atomic.Bool // state changed since the last Export
	initOnce  sync.Once
	profiles  map[string]Profile
	sourceSet []netip.Addr
}

// Transition is a pause or a resumption of a lane, for alerts and the event log.
type Transition struct {
	Kind     string // "paused", "resumed", "probe_failed"
	Time     time.Time
	Provider string
	Group    string
	SourceIP string
	Category string
	Reply    string
	Advice   string
	URL      string
	Until    time.Time
}

const (
	beta         = 0.75 // a cut keeps this share of the rate
	increaseFrac = 0.05 // each good round adds this share of the rate before the last cut
	maxStrikes   = 8    // throttles in a row without a delivery: the provider refuses us, pause
	minRate      = 1.0  // messages per minute, the floor of a cut
)

func (e *Engine) init() {
	e.initOnce.Do(func() {
		e.lanes = map[string]*lane{}
		e.firstUse = map[string]time.Time{}
		e.fallback = map[string]int{}
		e.profiles = DefaultProfiles()
		for id, p := range e.Profiles {
			e.profiles[id] = p
		}
		for ip, t := range e.FirstUse {
			e.firstUse[ipKey(ip)] = t
		}
		var v4, v6 []netip.Addr
		for _, a := range e.SourceIPs {
			if a.Unmap().Is4() {
				v4 = append(v4, a.Unmap())
			} else {
				v6 = append(v6, a)
			}
		}
		// IPv4 when there is any: every receiver accepts it, while an IPv6 source
		// reaches only MX hosts with IPv6 addresses.
		e.sourceSet = v4
		if len(v4) == 0 {
			e.sourceSet = v6
		}
		if len(e.sourceSet) == 0 {
			e.sourceSet = []netip.Addr{{}}
		}
		if e.Logger == nil {
			e.Logger = slog.Default()
		}
	})
}

func ipKey(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// scaled divides d by TimeScale.
func (e *Engine) scaled(d time.Duration) time.Duration {
	if e.TimeScale <= 0 || e.TimeScale == 1 {
		return d
	}
	return time.Duration(float64(d) / e.TimeScale)
}

func (e *Engine) minute() time.Duration { return e.scaled(time.Minute) }

func (e *Engine) round() time.Duration {
	if e.Round > 0 {
		return e.scaled(e.Round)
	}
	return e.scaled(10 * time.Second)
}

func (e *Engine) day() time.Duration {
	if e.Warmup.Day > 0 {
		return e.scaled(e.Warmup.Day)
	}
	return e.scaled(24 * time.Hour)
}

func (e *Engine) coolDown() time.Duration {
	if e.CoolDown > 0 {
		return e.scaled(e.CoolDown)
	}
	return e.scaled(time.Hour)
}

func (e *Engine) maxCoolDown() time.Duration {
	if e.MaxCoolDown > 0 {
		return e.scaled(e.MaxCoolDown)
	}
	return e.scaled(24 * time.Hour)
}

func (e *Engine) maxTotal() int {
	if e.MaxConnections > 0 {
		return e.MaxConnections
	}
	return 20
}

// profile returns the profile of a provider id ("" for none).
func (e *Engine) profile(provider string) (string, Profile) {
	if p, ok := e.profiles[provider]; ok && provider != "" {
		return provider, p
	}
	return DefaultProvider, e.profiles[DefaultProvider]
}

// laneLocked returns the lane of ip and a route's group, made on first use.
func (e *Engine) laneLocked(ip netip.Addr, rt route.Route, now time.Time) *lane {
	k := ipKey(ip) + "|" + rt.Group
	l := e.lanes[k]
	if l == nil {
		id, prof := e.profile(rt.Provider)
		l = &lane{ip: ip, ipKey: ipKey(ip), group: rt.Group, provider: id, prof: prof, slowStart: true,
			permits: map[*Permit]struct{}{}}
		l.rate = prof.StartPerMinute
		if l.rate <= 0 {
			l.rate = prof.MessagesPerMinute
		}
		e.lanes[k] = l
	}
	if l.provider == DefaultProvider && rt.Provider != "" && rt.Provider != l.provider {
		// A restored lane: the route names the provider.
		id, prof := e.profile(rt.Provider)
		l.provider, l.prof = id, prof
	}
	return l
}

// age is the warm-up day of an IP at now: whole days since its first use, less the days
// of trouble; -1 when the IP was never used (its first day is ahead).
func (e *Engine) warmupDay(l *lane, now time.Time) (day int, first time.Time, known bool) {
	first, known = e.firstUse[l.ipKey]
	if !known {
		return 0, now, false
	}
	d := int(now.Sub(first) / e.day())
	return max(0, d), first, true
}

// dailyCap is a lane's warm-up cap today (0: none).
func (e *Engine) dailyCap(l *lane, now time.Time) int {
	d, _, _ := e.warmupDay(l, now)
	return e.Warmup.Cap(l.prof.WarmupStart, d-l.heldDays)
}

// rollDay starts a new warm-up day for l when the day changed: the counts start over,
// and a day of trouble holds the schedule back by one day.
func (e *Engine) rollDay(l *lane, now time.Time) {
	d, _, _ := e.warmupDay(l, now)
	if d == l.day {
		return
	}
	if d > l.day && e.dailyCap(l, now) > 0 || l.heldDays > 0 {
		attempts := l.deliveredToday + l.troubleToday
		if l.troubleToday > 0 && (attempts == 0 || float64(l.troubleToday) > 0.05*float64(attempts)) {
			l.heldDays++
		}
	}
	l.day, l.sentToday, l.troubleToday, l.deliveredToday = d, 0, 0, 0
}

// refillCap brings the day's allowance up to now: the cap accrues evenly over the day,
// and at most a twelfth of it (two hours' worth) waits unused, so a day's mail is spread
// over the day rather than sent at midnight.
func (e *Engine) refillCap(l *lane, cap int, now time.Time) {
	capacity := math.Max(1, float64(cap)/12)
	if l.capAt.IsZero() {
		l.capTokens, l.capAt = capacity, now
		return
	}
	if d := now.Sub(l.capAt); d > 0 {
		l.capTokens = math.Min(capacity, l.capTokens+float64(cap)*float64(d)/float64(e.day()))
		l.capAt = now
	}
}

// Acquire asks for a connection to rt's group at now: a permit naming the source IP
// and how many messages it may carry, or a refusal saying why not and when to ask again.
func (e *Engine) Acquire(rt route.Route, now time.Time) (*Permit, *Refusal) {
	e.init()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.total >= e.maxTotal() {
		return nil, &Refusal{Reason: ReasonConnections}
	}
	var best *Refusal
	allPaused := true
	for _, ip := range e.orderLocked(rt, now) {
		l := e.laneLocked(ip, rt, now)
		p, r := e.grantLocked(l, now)
		if p != nil {
			return p, nil
		}
		if r.Reason != ReasonPaused {
			allPaused = false
		}
		if best == nil || earlier(r, best) {
			best = r
		}
	}
	if relay := e.fallbackRelay(rt.Provider); allPaused && relay != "" {
		if p := e.fallbackLocked(rt, relay); p != nil {
			return p, nil
		}
		return nil, &Refusal{Reason: ReasonPaused}
	}
	return nil, best
}

// earlier reports whether refusal a ends before b (a zero Next, "when a connection is
// released", is soonest).
func earlier(a, b *Refusal) bool {
	if a.Next.IsZero() != b.Next.IsZero() {
		return a.Next.IsZero()
	}
	return a.Next.Before(b.Next)
}

// orderLocked is the order source IPs are tried in for rt: IPs still warming up first
// (they need the traffic their caps allow, and only that), then warm IPs in turn.
func (e *Engine) orderLocked(rt route.Route, now time.Time) []netip.Addr {
	if len(e.sourceSet) == 1 {
		return e.sourceSet
	}
	n := len(e.sourceSet)
	out := make([]netip.Addr, 0, n)
	var warm []netip.Addr
	for i := range n {
		ip := e.sourceSet[(e.next+i)%n]
		l := e.laneLocked(ip, rt, now)
		if e.dailyCap(l, now) > 0 {
			out = append(out, ip)
		} else {
			warm = append(warm, ip)
		}
	}
	e.next++
	return append(out, warm...)
}

// grantLocked tries to grant one connection on lane l.
func (e *Engine) grantLocked(l *lane, now time.Time) (*Permit, *Refusal) {
	minute := e.minute()
	if l.state == StatePaused || l.state == StateProbing {
		if l.adminPause || now.Before(l.pausedUntil) || l.probeOut {
			next := l.pausedUntil
			if l.adminPause || l.probeOut {
				next = time.Time{}
				if l.adminPause {
					next = now.Add(e.scaled(time.Hour))
				}
			}
			return nil, &Refusal{Next: next, Reason: ReasonPaused}
		}
		// The cool-down is over: one probe message.
		l.state, l.probeOut = StateProbing, true
		e.dirty.Store(true)
		return e.permitLocked(l, now, 1, true), nil
	}
	if l.open >= l.maxConns() {
		return nil, &Refusal{Reason: ReasonConnections}
	}
	if now.Before(l.holdUntil) {
		return nil, &Refusal{Next: l.holdUntil, Reason: ReasonBackoff}
	}
	if cpm := l.prof.ConnectionsPerMinute; cpm > 0 {
		cut := now.Add(-minute)
		i := sort.Search(len(l.connTimes), func(i int) bool { return l.connTimes[i].After(cut) })
		l.connTimes = l.connTimes[i:]
		if float64(len(l.connTimes)) >= cpm {
			return nil, &Refusal{Next: l.connTimes[0].Add(minute), Reason: ReasonRate}
		}
	}
	n := l.perConnection()
	e.rollDay(l, now)
	if c := e.dailyCap(l, now); c > 0 {
		if l.sentToday >= c {
			_, first, known := e.warmupDay(l, now)
			next := now.Add(e.day())
			if known {
				next = first.Add(time.Duration(l.day+1) * e.day())
			}
			return nil, &Refusal{Next: next, Reason: ReasonCap}
		}
		e.refillCap(l, c, now)
		if l.capTokens < 1 {
			wait := time.Duration(math.Ceil((1 - l.capTokens) / float64(c) * float64(e.day())))
			return nil, &Refusal{Next: now.Add(wait), Reason: ReasonCap}
		}
		n = min(n, int(l.capTokens), c-l.sentToday)
	}
	if mph := l.prof.MessagesPerHour; mph > 0 {
		if now.Sub(l.hourStart) >= e.scaled(time.Hour) {
			l.hourStart, l.sentHour = now, 0
		}
		if l.sentHour >= mph {
			return nil, &Refusal{Next: l.hourStart.Add(e.scaled(time.Hour)), Reason: ReasonRate}
		}
		n = min(n, mph-l.sentHour)
	}
	if mpd := l.prof.MessagesPerDay; mpd > 0 {
		if l.sentToday >= mpd {
			return nil, &Refusal{Next: now.Add(e.day()), Reason: ReasonRate}
		}
		n = min(n, mpd-l.sentToday)
	}
	e.adaptLocked(l, now)
	if l.paced() {
		l.refill(now, minute)
		// Wait for a quarter of the bucket (at least one message), so that a busy lane
		// sends a few messages per connection rather than one.
		// A lane that sent nothing lately need not keep a lone message waiting for
		// company.
		need := math.Max(1, math.Floor(l.bucket()/4))
		if now.Sub(l.lastActivity) > 5*e.scaled(time.Second) {
			need = 1
		}
		if l.tokens < need {
			reason := ReasonRate
			if !l.lastCut.IsZero() && now.Sub(l.lastCut) < e.round() {
				reason = ReasonBackoff
			}
			return nil, &Refusal{Next: l.readyAt(now, need, minute), Reason: reason}
		}
		n = min(n, int(l.tokens))
	}
	return e.permitLocked(l, now, max(1, n), false), nil
}

// permitLocked grants a permit for up to n messages on l and takes them from its
// allowances at once (Use gives back what the batch does not carry).
func (e *Engine) permitLocked(l *lane, now time.Time, n int, probe bool) *Permit {
	p := &Permit{Source: l.ip, MaxMessages: n, Probe: probe, RequireTLS: l.prof.RequireTLS, engine: e, lane: l, granted: now}
	e.total++
	l.open++
	l.permits[p] = struct{}{}
	l.lastActivity = now
	if l.prof.ConnectionsPerMinute > 0 {
		l.connTimes = append(l.connTimes, now)
	}
	e.charge(l, n)
	if _, ok := e.firstUse[l.ipKey]; !ok {
		e.firstUse[l.ipKey] = now
		e.dirty.Store(true)
	}
	return p
}

// charge takes n messages from l's allowances (negative n gives them back).
func (e *Engine) charge(l *lane, n int) {
	if l.paced() {
		l.tokens -= float64(n)
	}
	l.capTokens -= float64(n)
	l.sentToday += n
	l.sentHour += n
	l.roundSent += n
}

// fallbackRelay is the fallback relay for a provider's mail: its profile's, else
// outbound.fallback_relay, else "".
func (e *Engine) fallbackRelay(provider string) string {
	if _, p := e.profile(provider); p.FallbackRelay != "" {
		return p.FallbackRelay
	}
	return e.FallbackRelay
}

// fallbackLocked grants a connection through the fallback relay for a group paused on
// every source IP.
func (e *Engine) fallbackLocked(rt route.Route, relay string) *Permit {
	limit := e.FallbackConnections
	if limit <= 0 {
		limit = 10
	}
	if e.fallback[rt.Group] >= limit {
		return nil
	}
	e.fallback[rt.Group]++
	e.total++
	_, prof := e.profile(rt.Provider)
	per := prof.MessagesPerConnection
	if per <= 0 {
		per = 50
	}
	g := rt.Group
	p := &Permit{MaxMessages: per, Fallback: relay, engine: e}
	p.release = func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		e.total--
		if e.fallback[g]--; e.fallback[g] <= 0 {
			delete(e.fallback, g)
		}
	}
	return p
}

// adaptLocked applies the additive increase of the rounds that ended since the lane's
// last: every round in which the lane used most of its rate and was not cut raises the
// rate (doubling it in slow start), up to the profile's ceiling. An idle lane keeps its
// rate: it has not learnt that more would be accepted.
func (e *Engine) adaptLocked(l *lane, now time.Time) {
	round := e.round()
	if l.roundAt.IsZero() {
		l.roundAt = now
		return
	}
	for now.Sub(l.roundAt) >= round {
		used := float64(l.roundSent) >= 0.5*l.rate*float64(round)/float64(e.minute())
		cutThisRound := !l.lastCut.IsZero() && !l.lastCut.Before(l.roundAt)
		if l.paced() && used && !cutThisRound && l.state == "" {
			ceiling := l.prof.MessagesPerMinute
			if l.slowStart {
				l.rate *= 2
			} else {
				l.rate += math.Max(minRate, increaseFrac*math.Max(l.rateAtCut, l.rate))
			}
			if ceiling > 0 {
				l.rate = math.Min(l.rate, ceiling)
			}
			e.dirty.Store(true)
		}
		copy(l.window[:], l.window[1:])
		l.window[len(l.window)-1] = 0
		l.roundAt = l.roundAt.Add(round)
		l.roundSent = 0
		if now.Sub(l.roundAt) > 6*round {
			l.roundAt = now // long idle: skip the empty rounds
			l.window = [6]int{}
		}
	}
}
