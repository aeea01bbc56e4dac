package shaper

import (
	"math"
	"time"

	"github.com/repute-mail/repute/internal/classify"
)

// Feedback is one attempt's outcome as the engine needs it.
type Feedback struct {
	Delivered bool
	// Refused: the destination refused the connection before any transaction (a 421
	// greeting: "too many connections", Yahoo's TSS04 at connect).
	Refused bool
	// Held: the message was not sent because the permit was stopped (a pause).
	Held bool
	// Permanent: the reply was a 5xx. A reputation reply blocks only when it is
	// permanent; a temporary one (Gmail's 421 4.7.28, Microsoft's 451 4.7.650) is the
	// provider saying "slower".
	Permanent bool
	// Result is the classified reply of a failed attempt; Reply the reply itself.
	Result     classify.Result
	Reply      string
	RetryAfter time.Duration // the reply's "try again in", 0 when none
}

// Verdict is what the scheduler does with the attempt's message beyond the usual.
type Verdict struct {
	// Hold, when set, is when the message is due again instead of the retry schedule's
	// time: a throttled message goes back in line, a blocked one waits for the probe
	// (it is never bounced for a block).
	Hold   time.Time
	Reason string // the throttled reason: ReasonBackoff, ReasonPaused, ReasonConnections
	// NotAttempt: the message did not reach the provider's judgement (held back by a
	// pause, or a connection refusal the engine answered by opening fewer).
	NotAttempt bool
}

// Observe tells the engine the outcome of one attempt made under permit p (nil: none,
// for example a route that failed) and returns the verdict for its message. It must be
// called before the delivery goes on to the next message, so that a block stops the
// rest of the batch at once.
func (e *Engine) Observe(p *Permit, fb Feedback, now time.Time) Verdict {
	if p == nil || p.lane == nil {
		return Verdict{}
	}
	e.init()
	e.mu.Lock()
	v := e.observeLocked(p, fb, now)
	transitions := len(e.pending) > 0
	e.mu.Unlock()
	if transitions { // rare: most attempts change no lane's state
		e.flush()
	}
	return v
}

func (e *Engine) observeLocked(p *Permit, fb Feedback, now time.Time) Verdict {
	l := p.lane
	switch {
	case fb.Held && l.state != "":
		return Verdict{Hold: e.holdFor(l, now), Reason: ReasonPaused, NotAttempt: true}
	case fb.Held:
		// Stopped by a throttle: back in line, due when the lane may send again.
		return Verdict{Hold: maxTime(now.Add(e.round()/2), l.holdUntil), Reason: ReasonBackoff, NotAttempt: true}
	case fb.Delivered:
		p.delivered = true
		l.window[len(l.window)-1]++
		l.deliveredToday++
		l.strikes = 0
		if p.Probe {
			e.resumeLocked(l, now, "", "")
		}
		return Verdict{}
	case p.Probe:
		// The probe failed: the provider still refuses us. Wait twice as long.
		if fb.Refused && !blocks(fb) {
			// Refused at connect for another reason: try the probe again later.
			l.probeOut = false
			l.pausedUntil = now.Add(e.coolDown())
			return Verdict{Hold: l.pausedUntil, Reason: ReasonPaused, NotAttempt: true}
		}
		e.pauseLocked(l, now, fb, true)
		return Verdict{Hold: e.holdFor(l, now), Reason: ReasonPaused}
	case blocks(fb):
		e.pauseLocked(l, now, fb, false)
		if fb.Result.Category == classify.DomainReputation {
			// The reply is about our domain: every source IP is in the same trouble.
			for _, o := range e.lanes {
				if o != l && o.group == l.group && o.state == "" {
					e.pauseLocked(o, now, fb, false)
				}
			}
		}
		return Verdict{Hold: e.holdFor(l, now), Reason: ReasonPaused}
	case fb.Refused:
		if e.connectionRefusedLocked(l, p, now) {
			return Verdict{Reason: ReasonConnections, NotAttempt: true}
		}
		// Refused although we were down to one connection: the provider refuses us.
		return e.throttleLocked(l, p, fb, now)
	case throttles(fb):
		return e.throttleLocked(l, p, fb, now)
	}
	return Verdict{}
}

// blocks reports whether a reply is a block: a permanent reply about our IP's or
// domain's reputation, or one the classifier says to pause for.
func blocks(fb Feedback) bool {
	if !fb.Permanent {
		return false
	}
	switch fb.Result.Category {
	case classify.IPReputation, classify.DomainReputation:
		return true
	}
	return fb.Result.Action == classify.ActionPauseProvider
}

// throttles reports whether a reply asks us to slow down: rate limiting, a
// temporary reputation reply (the provider limits an IP it does not trust yet), or
// whatever the classifier says to slow down or pause for.
func throttles(fb Feedback) bool {
	if fb.Result.Category == classify.RateLimited {
		return true // even behind a 5xx: too fast is never a reason to give up a message
	}
	if fb.Permanent {
		return false
	}
	switch fb.Result.Category {
	case classify.RateLimited, classify.IPReputation, classify.DomainReputation:
		return true
	}
	return fb.Result.Action == classify.ActionSlowDown || fb.Result.Action == classify.ActionPauseProvider
}

// holdFor is when a message held back by a pause of l is due again: at once when the
// fallback relay takes it, else when the probe is due.
func (e *Engine) holdFor(l *lane, now time.Time) time.Time {
	if e.fallbackRelay(l.provider) != "" || l.adminPause {
		return now
	}
	return l.pausedUntil
}

// throttleLocked applies a "slow down" reply: the lane's rate is cut (at most once per
// burst: a deferral of mail granted before the last cut is the same burst), a retry
// hint holds the lane, and the message goes back in line, not to the retry schedule.
// Throttles in a row without a delivery in between mean the provider is refusing us
// rather than pacing us: the lane pauses.
func (e *Engine) throttleLocked(l *lane, p *Permit, fb Feedback, now time.Time) Verdict {
	l.troubleToday++
	l.strikes++
	e.dirty.Store(true)
	if l.strikes >= maxStrikes {
		fb.Result.Category = "repeated_throttling"
		if fb.Result.Advice == "" {
			fb.Result.Advice = "The provider kept deferring every message; sending is paused until a probe succeeds."
		}
		e.pauseLocked(l, now, fb, false)
		return Verdict{Hold: e.holdFor(l, now), Reason: ReasonPaused}
	}
	if l.lastCut.IsZero() || p.granted.After(l.lastCut) {
		e.cutLocked(l, now)
	}
	// What the lane's connections still carry was granted at the old rate: it waits,
	// rather than earning a deferral each.
	for q := range l.permits {
		q.stopped.Store(true)
	}
	hold := now.Add(e.round())
	if fb.RetryAfter > 0 {
		hint := e.scaled(fb.RetryAfter)
		if until := now.Add(hint); until.After(l.holdUntil) {
			l.holdUntil = until
		}
		hold = maxTime(hold, now.Add(hint))
	}
	return Verdict{Hold: hold, Reason: ReasonBackoff}
}

// cutLocked is the multiplicative decrease. An unpaced lane (no ceiling) starts pacing
// at what it delivered lately.
func (e *Engine) cutLocked(l *lane, now time.Time) {
	if !l.paced() {
		r := l.deliveredRate(e.round(), e.minute())
		if r < minRate {
			r = 60
		}
		l.rate = r
	}
	l.rateAtCut = l.rate
	l.rate = math.Max(minRate, l.rate*beta)
	l.slowStart = false
	l.lastCut = now
	l.tokens, l.tokensAt = 0, now
}

// connectionRefusedLocked halves the connections a lane may have open, at most once per
// round, and reports whether the refusal was about the count: false when the lane was
// down to one connection already.
func (e *Engine) connectionRefusedLocked(l *lane, p *Permit, now time.Time) bool {
	if !l.connCut.IsZero() && now.Sub(l.connCut) < e.round() {
		return true // the same burst of refusals: one cut
	}
	cur := float64(l.maxConns())
	// The refused connection was one too many: at most as many as are open (counting
	// it) are accepted. Halve that.
	if open := float64(l.open); open > 0 && open < cur {
		cur = open
	}
	if cur <= 1 {
		return false
	}
	l.allowedConns = math.Max(1, math.Floor(cur/2))
	l.connCut = now
	e.dirty.Store(true)
	return true
}

// pauseLocked stops lane l at once: its live permits stop before their next message,
// and nothing is sent until the cool-down ends (doubled after a failed probe).
func (e *Engine) pauseLocked(l *lane, now time.Time, fb Feedback, probeFailed bool) {
	switch {
	case probeFailed:
		l.coolDown = min(2*max(l.coolDown, e.coolDown()), e.maxCoolDown())
	case l.state == "":
		l.coolDown = e.coolDown()
		l.rateAtPause = l.rate
	}
	if l.coolDown <= 0 {
		l.coolDown = e.coolDown()
	}
	l.state, l.probeOut = StatePaused, false
	l.pausedUntil = now.Add(l.coolDown)
	l.reason, l.reply, l.advice, l.url = fb.Result.Category, fb.Reply, fb.Result.Advice, fb.Result.URL
	for q := range l.permits {
		q.stopped.Store(true)
	}
	e.dirty.Store(true)
	kind := "paused"
	if probeFailed {
		kind = "probe_failed"
	}
	e.pending = append(e.pending, e.transition(kind, l, now))
}

// resumeLocked ends a pause: the lane sends again at half the rate it had (one
// connection to start with), and climbs back gradually.
func (e *Engine) resumeLocked(l *lane, now time.Time, reason, reply string) {
	wasAdmin := l.adminPause && l.reason == "admin"
	l.state, l.probeOut, l.adminPause = "", false, false
	l.pausedUntil = time.Time{}
	switch {
	case wasAdmin:
		// The admin's own pause says nothing of the provider: as before it.
		l.rate = max(l.rate, l.rateAtPause)
	case l.rateAtPause > 0:
		l.rate = math.Max(minRate, l.rateAtPause/2)
	case l.paced():
		l.rate = math.Max(minRate, l.rate/2)
	}
	if !wasAdmin {
		l.rateAtCut, l.slowStart, l.lastCut = l.rate, false, now
		l.tokens, l.tokensAt = 0, now
		l.allowedConns = 1
	}
	l.strikes = 0
	l.coolDown = 0
	tr := e.transition("resumed", l, now)
	if reason != "" {
		tr.Category, tr.Reply = reason, reply
	}
	l.reason, l.reply, l.advice, l.url = "", "", "", ""
	e.dirty.Store(true)
	e.pending = append(e.pending, tr)
}

func (e *Engine) transition(kind string, l *lane, now time.Time) Transition {
	t := Transition{Kind: kind, Time: now, Provider: l.provider, Group: l.group, SourceIP: l.ipKey,
		Category: l.reason, Reply: l.reply, Advice: l.advice, URL: l.url}
	if l.provider == DefaultProvider {
		t.Provider = l.group
	}
	if kind != "resumed" {
		t.Until = l.pausedUntil
	}
	return t
}

// Complained tells the engine of a complaint (a feedback-loop report) about mail sent to
// provider from ip ("" when the report does not say: every source IP): the day counts as
// a day of trouble, which holds the IP's warm-up back.
func (e *Engine) Complained(provider, ip string, now time.Time) {
	e.init()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, l := range e.lanes {
		if (l.provider == provider || l.group == provider) && (ip == "" || l.ipKey == ip) {
			e.rollDay(l, now)
			l.troubleToday += 1 + l.deliveredToday // more than 5 % of the day, whatever its volume
			e.dirty.Store(true)
		}
	}
}

// flush hands pending transitions to Notify, in order, outside the engine's lock.
func (e *Engine) flush() {
	e.notifyMu.Lock()
	defer e.notifyMu.Unlock()
	e.mu.Lock()
	ts := e.pending
	e.pending = nil
	e.mu.Unlock()
	if e.Notify == nil {
		return
	}
	for _, t := range ts {
		e.Notify(t)
	}
}

// releaseLocked closes permit p's connection. A connection that delivered mail earns
// its lane a little of the connection count back (one connection per as many good
// connections as are allowed), so the count climbs back gradually and never snaps back.
func (e *Engine) releaseLocked(p *Permit) {
	e.mu.Lock()
	l := p.lane
	e.total--
	l.open--
	delete(l.permits, p)
	if p.delivered && l.allowedConns > 0 {
		l.allowedConns += 1 / math.Max(l.allowedConns, 1)
		if l.allowedConns >= float64(l.prof.MaxConnections) {
			l.allowedConns = 0
		}
	}
	if p.Probe && l.state == StateProbing && l.probeOut {
		// The probe went nowhere (nothing to send, or no outcome): probe again.
		l.probeOut = false
	}
	e.mu.Unlock()
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
