package shaper

import (
	"math"
	"net/netip"
	"testing"
	"time"

	"github.com/repute-mail/repute/internal/classify"
	"github.com/repute-mail/repute/internal/route"
)

var (
	t0        = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	google    = route.Route{Group: "google", Provider: "google"}
	microsoft = route.Route{Group: "microsoft", Provider: "microsoft"}
	yahoo     = route.Route{Group: "yahoo", Provider: "yahoo"}
	unknown   = route.Route{Group: "mx:mx.example"}
	ip1       = netip.MustParseAddr("192.0.2.1")
	ip2       = netip.MustParseAddr("192.0.2.2")
)

func throttle() Feedback {
	return Feedback{Reply: "421 4.7.28 rate limited", Result: classify.Result{Category: classify.RateLimited,
		Temporary: true, Action: classify.ActionSlowDown}}
}

func block() Feedback {
	return Feedback{Reply: "550 5.7.1 (S3140)", Permanent: true, Result: classify.Result{Category: classify.IPReputation,
		Action: classify.ActionPauseProvider, Advice: "delist", URL: "https://example.com/delist"}}
}

func statusOf(t *testing.T, e *Engine, group string, ip netip.Addr, now time.Time) Status {
	t.Helper()
	for _, s := range e.Status(now) {
		if s.Group == group && s.SourceIP == ipKey(ip) {
			return s
		}
	}
	t.Fatalf("no status for %s from %s", group, ip)
	return Status{}
}

// TestConnections: connections in total, per lane, messages per connection, IPv4 sources
// first and in turn.
func TestConnections(t *testing.T) {
	e := &Engine{MaxConnections: 3, Profiles: map[string]Profile{DefaultProvider: {MaxConnections: 2, MessagesPerConnection: 7}},
		SourceIPs: []netip.Addr{netip.MustParseAddr("2001:db8::1"), ip1}}
	p1, r := e.Acquire(unknown, t0)
	if r != nil || p1.MaxMessages != 7 || p1.Source != ip1 {
		t.Fatalf("first permit: %+v %+v", p1, r)
	}
	p2, _ := e.Acquire(unknown, t0)
	if p2 == nil {
		t.Fatal("second permit refused")
	}
	if p, r := e.Acquire(unknown, t0); p != nil || r.Reason != ReasonConnections || !r.Next.IsZero() {
		t.Fatalf("third connection to one lane: %+v %+v, want refused until a release", p, r)
	}
	if p, _ := e.Acquire(route.Route{Group: "mx:other"}, t0); p == nil {
		t.Fatal("another group is not limited by the first")
	}
	if p, r := e.Acquire(route.Route{Group: "mx:third"}, t0); p != nil || r.Reason != ReasonConnections {
		t.Fatal("total limit not enforced")
	}
	p1.Release()
	p1.Release() // a second release is harmless
	if p, _ := e.Acquire(unknown, t0); p == nil {
		t.Fatal("a released slot is available again")
	}
}

// TestConnectionAIMD: a refusal halves the connections a lane may have (one cut per round
// of refusals, never below one); connections that deliver win them back gradually.
func TestConnectionAIMD(t *testing.T) {
	e := &Engine{MaxConnections: 50, Profiles: map[string]Profile{DefaultProvider: {MaxConnections: 10}}}
	now := t0
	var permits []*Permit
	for range 8 {
		p, _ := e.Acquire(unknown, now)
		permits = append(permits, p)
	}
	if v := e.Observe(permits[7], Feedback{Refused: true, Reply: "421 4.3.2 too many connections"}, now); !v.NotAttempt || v.Reason != ReasonConnections {
		t.Fatalf("verdict on a connection refusal: %+v", v)
	}
	if got := statusOf(t, e, unknown.Group, netip.Addr{}, now).MaxConnections; got != 4 {
		t.Fatalf("after a refusal with 8 open: %d allowed, want 4", got)
	}
	e.Observe(permits[6], Feedback{Refused: true}, now.Add(time.Second)) // same burst
	if got := statusOf(t, e, unknown.Group, netip.Addr{}, now).MaxConnections; got != 4 {
		t.Fatalf("a second refusal in the same round cut again: %d", got)
	}
	for _, p := range permits {
		p.Release()
	}
	// Good connections win the count back one connection per as many as are allowed.
	now = now.Add(time.Minute)
	seen := []int{}
	for range 60 {
		p, r := e.Acquire(unknown, now)
		if r != nil {
			t.Fatalf("refused: %+v", r)
		}
		e.Observe(p, Feedback{Delivered: true}, now)
		p.Release()
		seen = append(seen, statusOf(t, e, unknown.Group, netip.Addr{}, now).MaxConnections)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] > seen[i-1]+1 {
			t.Fatalf("connections snapped back: %v", seen)
		}
	}
	if seen[len(seen)-1] != 10 {
		t.Fatalf("connections after 60 good ones: %v, want back at 10", seen)
	}
}

// bucket is a provider's per-IP limit as the simulator has it: a token bucket of rate
// per minute and ten seconds' worth of burst.
type bucket struct {
	rate   float64
	tokens float64
	at     time.Time
}

func (b *bucket) take(now time.Time) bool {
	if b.at.IsZero() {
		b.tokens, b.at = b.rate/6, now
	}
	b.tokens = math.Min(b.rate/6, b.tokens+b.rate*now.Sub(b.at).Minutes())
	b.at = now
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	return false
}

// run sends to one provider lane for d of fake time, in steps of 5 ms, each permit's
// messages answered by the provider's bucket; it returns messages delivered, deferrals
// and the largest number of deferrals in any minute.
func run(e *Engine, rt route.Route, b *bucket, start time.Time, d time.Duration, rates *[]float64) (delivered, deferred, worstMinute int) {
	perMinute := map[int]int{}
	for now := start; now.Before(start.Add(d)); now = now.Add(5 * time.Millisecond) {
		for {
			p, r := e.Acquire(rt, now)
			if r != nil {
				break
			}
			for range p.MaxMessages {
				if b.take(now) {
					delivered++
					e.Observe(p, Feedback{Delivered: true}, now)
				} else {
					deferred++
					perMinute[int(now.Sub(start)/time.Minute)]++
					e.Observe(p, throttle(), now)
				}
			}
			p.Release()
		}
		if rates != nil && now.Sub(start)%time.Second == 0 {
			e.mu.Lock()
			*rates = append(*rates, e.lanes["|"+rt.Group].rate)
			e.mu.Unlock()
		}
	}
	for _, n := range perMinute {
		worstMinute = max(worstMinute, n)
	}
	return delivered, deferred, worstMinute
}

// TestRateFindsLimit: whatever the provider's real limit (half, once or twice what the
// simulator uses by default), the engine finds it from the deferrals alone: it delivers
// at least 80 % of what the limit allows over ten minutes, and keeps deferrals far below
// what gets a sender blocked (tens in a minute).
func TestRateFindsLimit(t *testing.T) {
	for _, tc := range []struct {
		rt    route.Route
		limit float64
	}{
		{google, 300}, {google, 600}, {google, 1200},
		{microsoft, 150}, {microsoft, 300}, {microsoft, 600},
		{yahoo, 60}, {yahoo, 120}, {yahoo, 240},
	} {
		e := &Engine{MaxConnections: 100}
		b := &bucket{rate: tc.limit}
		d := 10 * time.Minute
		delivered, deferred, worst := run(e, tc.rt, b, t0, d, nil)
		ideal := tc.limit*d.Minutes() + tc.limit/6
		eff := float64(delivered) / ideal
		t.Logf("%s at %v/min: delivered %d of %.0f (%.0f%%), %d deferrals, at most %d in a minute",
			tc.rt.Group, tc.limit, delivered, ideal, 100*eff, deferred, worst)
		if eff < 0.8 {
			t.Errorf("%s at %v/min: %.0f%% of the limit used, want at least 80%%", tc.rt.Group, tc.limit, 100*eff)
		}
		if worst > 20 {
			t.Errorf("%s at %v/min: %d deferrals in one minute: a provider blocks for that", tc.rt.Group, tc.limit, worst)
		}
	}
}

// TestNoSnapBack: after a cut the rate climbs back additively, a few percent per round,
// never jumping back to where it was.
func TestNoSnapBack(t *testing.T) {
	e := &Engine{MaxConnections: 100}
	var rates []float64
	run(e, microsoft, &bucket{rate: 300}, t0, 5*time.Minute, &rates)
	cut := false
	for i := 1; i < len(rates); i++ {
		if rates[i] < rates[i-1] {
			cut = true
			continue
		}
		if cut && rates[i] > rates[i-1]*1.2 {
			t.Fatalf("the rate jumped from %.1f to %.1f after a cut", rates[i-1], rates[i])
		}
	}
	if !cut {
		t.Fatal("no cut: the test shows nothing")
	}
}

// TestThrottleOncePerBurst: deferrals of mail granted before a cut are the same burst:
// one cut; a deferral of mail granted after it cuts again.
func TestThrottleOncePerBurst(t *testing.T) {
	e := &Engine{MaxConnections: 100}
	now := t0
	p1, _ := e.Acquire(microsoft, now)
	p2, _ := e.Acquire(microsoft, now)
	rate := func() float64 { return *statusOf(t, e, "microsoft", netip.Addr{}, now).RatePerMinute }
	start := rate()
	now = now.Add(time.Second)
	v := e.Observe(p1, throttle(), now)
	if v.Reason != ReasonBackoff || !v.Hold.After(now) || v.NotAttempt {
		t.Fatalf("verdict on a throttle: %+v", v)
	}
	after := rate()
	if math.Abs(after-start*beta) > 0.01 {
		t.Fatalf("rate %v after one throttle, want %v", after, start*beta)
	}
	e.Observe(p2, throttle(), now.Add(time.Millisecond))
	if rate() != after {
		t.Fatal("a deferral of the same burst cut again")
	}
	p1.Release()
	p2.Release()
	now = now.Add(30 * time.Second)
	p3, r := e.Acquire(microsoft, now)
	if r != nil {
		t.Fatalf("refused after the backoff: %+v", r)
	}
	e.Observe(p3, throttle(), now)
	if math.Abs(rate()-after*beta) > 0.01 {
		t.Fatalf("a deferral of mail sent after the cut: rate %v, want %v", rate(), after*beta)
	}
	// A retry hint holds the lane.
	p3.Release()
	fb := throttle()
	fb.RetryAfter = 10 * time.Minute
	p4, _ := e.Acquire(microsoft, now.Add(time.Minute))
	v = e.Observe(p4, fb, now.Add(time.Minute))
	p4.Release()
	if !v.Hold.Equal(now.Add(11 * time.Minute)) {
		t.Fatalf("hold %v with a 10-minute hint", v.Hold)
	}
	if _, r := e.Acquire(microsoft, now.Add(2*time.Minute)); r == nil || r.Reason != ReasonBackoff || !r.Next.Equal(now.Add(11*time.Minute)) {
		t.Fatalf("the hint was not honoured: %+v", r)
	}
}

// TestPauseProbeResume: a block pauses the lane at once (live permits stop), mail is held
// until the cool-down ends, then one probe goes; a failed probe doubles the cool-down, a
// good one resumes at half the rate, and the admin is told each time.
func TestPauseProbeResume(t *testing.T) {
	var got []Transition
	e := &Engine{MaxConnections: 100, CoolDown: time.Hour, Notify: func(tr Transition) { got = append(got, tr) }}
	now := t0
	p1, _ := e.Acquire(microsoft, now)
	p1.Use(1)
	p2, _ := e.Acquire(microsoft, now)
	p2.Use(1)
	rateBefore := *statusOf(t, e, "microsoft", netip.Addr{}, now).RatePerMinute
	v := e.Observe(p1, block(), now)
	if v.Reason != ReasonPaused || !v.Hold.Equal(now.Add(time.Hour)) || v.NotAttempt {
		t.Fatalf("verdict on a block: %+v", v)
	}
	if !p1.Stopped() || !p2.Stopped() {
		t.Fatal("live permits not stopped at the block")
	}
	if v := e.Observe(p2, Feedback{Held: true}, now); !v.NotAttempt || !v.Hold.Equal(now.Add(time.Hour)) {
		t.Fatalf("verdict on a held message: %+v", v)
	}
	p1.Release()
	p2.Release()
	if len(got) != 1 || got[0].Kind != "paused" || got[0].Category != classify.IPReputation || got[0].URL == "" ||
		!got[0].Until.Equal(now.Add(time.Hour)) || got[0].Provider != "microsoft" {
		t.Fatalf("transitions: %+v", got)
	}
	if _, r := e.Acquire(microsoft, now.Add(59*time.Minute)); r == nil || r.Reason != ReasonPaused || !r.Next.Equal(now.Add(time.Hour)) {
		t.Fatalf("during the cool-down: %+v", r)
	}
	if st := statusOf(t, e, "microsoft", netip.Addr{}, now); st.State != StatePaused || st.PausedUntil == nil || st.Reason != classify.IPReputation {
		t.Fatalf("status while paused: %+v", st)
	}
	// The probe: one message; nothing else meanwhile.
	now = now.Add(time.Hour)
	probe, r := e.Acquire(microsoft, now)
	if r != nil || !probe.Probe || probe.MaxMessages != 1 {
		t.Fatalf("probe: %+v %+v", probe, r)
	}
	if _, r := e.Acquire(microsoft, now); r == nil || r.Reason != ReasonPaused {
		t.Fatal("a second connection while the probe is out")
	}
	e.Observe(probe, block(), now)
	probe.Release()
	if len(got) != 2 || got[1].Kind != "probe_failed" || !got[1].Until.Equal(now.Add(2*time.Hour)) {
		t.Fatalf("after a failed probe: %+v", got)
	}
	now = now.Add(2 * time.Hour)
	probe, _ = e.Acquire(microsoft, now)
	e.Observe(probe, Feedback{Delivered: true}, now)
	probe.Release()
	if len(got) != 3 || got[2].Kind != "resumed" {
		t.Fatalf("after a good probe: %+v", got)
	}
	st := statusOf(t, e, "microsoft", netip.Addr{}, now)
	if st.State == StatePaused || *st.RatePerMinute != rateBefore/2 || st.MaxConnections > 2 {
		t.Fatalf("after resuming: %+v (rate before %v)", st, rateBefore)
	}
}

// TestPauseOneIP: a block of one source IP leaves the other IPs sending; a reply about the
// domain pauses every IP.
func TestPauseOneIP(t *testing.T) {
	e := &Engine{MaxConnections: 100, SourceIPs: []netip.Addr{ip1, ip2}}
	now := t0
	p, _ := e.Acquire(google, now)
	e.Observe(p, block(), now)
	p.Release()
	for range 4 {
		q, r := e.Acquire(google, now)
		q.Use(1)
		if r != nil || q.Source == p.Source {
			t.Fatalf("after %s was blocked: %+v %+v", p.Source, q, r)
		}
		q.Release()
	}
	q, _ := e.Acquire(google, now)
	fb := block()
	fb.Result.Category = classify.DomainReputation
	e.Observe(q, fb, now)
	q.Release()
	if _, r := e.Acquire(google, now); r == nil || r.Reason != ReasonPaused {
		t.Fatalf("a domain block left an IP sending: %+v", r)
	}
	// With a fallback relay, a provider paused on every IP goes through it.
	e.FallbackRelay = "fallback.example.net:25"
	f, r := e.Acquire(google, now)
	if r != nil || f.Fallback != "fallback.example.net:25" {
		t.Fatalf("fallback: %+v %+v", f, r)
	}
	f.Release()
	if _, r := e.Acquire(yahoo, now); r != nil {
		t.Fatal("another provider was paused")
	}
}

// TestAdminPause: the admin's pause holds until the admin resumes; no probe ends it.
func TestAdminPause(t *testing.T) {
	e := &Engine{}
	now := t0
	if _, err := e.Pause("nosuch", netip.Addr{}, now); err == nil {
		t.Fatal("pausing an unknown provider")
	}
	if n, err := e.Pause("yahoo", netip.Addr{}, now); err != nil || n != 1 {
		t.Fatalf("pause: %d %v", n, err)
	}
	if _, r := e.Acquire(yahoo, now.Add(48*time.Hour)); r == nil || r.Reason != ReasonPaused {
		t.Fatal("the admin's pause ended by itself")
	}
	if st := statusOf(t, e, "yahoo", netip.Addr{}, now); st.State != StatePaused || st.Reason != "admin" {
		t.Fatalf("status: %+v", st)
	}
	if n, err := e.Resume("yahoo", netip.Addr{}, now); err != nil || n != 1 {
		t.Fatalf("resume: %d %v", n, err)
	}
	if _, r := e.Acquire(yahoo, now.Add(time.Minute)); r != nil {
		t.Fatalf("after resume: %+v", r)
	}
}

// TestWarmup: thirty days of a new IP and a warm one, sending all they may to Microsoft
// every day: the new IP's cap starts in the tens and doubles every three days, the day's
// allowance is spread over the day, mail over the cap goes to the warm IP, and after the
// warm-up the cap is gone. A day of trouble holds the schedule back.
func TestWarmup(t *testing.T) {
	start := t0
	e := &Engine{MaxConnections: 100, SourceIPs: []netip.Addr{ip1, ip2}, Warmup: Warmup{Enabled: true},
		FirstUse: map[netip.Addr]time.Time{ip2: start.AddDate(-1, 0, 0)},
		Profiles: map[string]Profile{"microsoft": {MaxConnections: 5, MessagesPerConnection: 30, WarmupStart: 50}}}
	var caps []int
	for day := range 32 {
		dayStart := start.Add(time.Duration(day) * 24 * time.Hour)
		sent := map[netip.Addr]int{}
		firstHour := 0
		for step := time.Duration(0); step < 24*time.Hour; step += time.Minute {
			now := dayStart.Add(step)
			for range 3 {
				p, r := e.Acquire(microsoft, now)
				if r != nil {
					break
				}
				sent[p.Source] += p.MaxMessages
				if p.Source == ip1 && step < time.Hour {
					firstHour += p.MaxMessages
				}
				for range p.MaxMessages {
					e.Observe(p, Feedback{Delivered: true}, now)
				}
				p.Release()
			}
		}
		st := statusOf(t, e, "microsoft", ip1, dayStart.Add(time.Hour))
		c := 0
		if st.DailyCap != nil {
			c = *st.DailyCap
		}
		caps = append(caps, c)
		if c > 0 && sent[ip1] > c {
			t.Fatalf("day %d: the new IP sent %d, over its cap %d", day, sent[ip1], c)
		}
		if c > 0 && firstHour > c/6 {
			t.Fatalf("day %d: %d of the cap %d in the first hour: not spread over the day", day, firstHour, c)
		}
		if sent[ip2] == 0 {
			t.Fatalf("day %d: nothing overflowed to the warm IP", day)
		}
		if day == 0 && (c < 10 || c > 99 || st.State != StateWarming) {
			t.Fatalf("day 0: cap %d, state %s; want tens and warming", c, st.State)
		}
	}
	t.Logf("caps of the new IP by day: %v", caps)
	for d := 3; d < 30; d += 3 {
		if caps[d] < caps[d-3]*19/10 || caps[d] > caps[d-3]*21/10 {
			t.Fatalf("the cap did not double from day %d to %d: %v", d-3, d, caps)
		}
	}
	if caps[30] != 0 || caps[31] != 0 {
		t.Fatalf("the cap remains after 30 days: %v", caps)
	}
	if st := statusOf(t, e, "microsoft", ip1, start.AddDate(0, 0, 31)); st.IPAgeDays != 31 || st.State == StateWarming {
		t.Fatalf("after the warm-up: %+v", st)
	}

	// Trouble holds the schedule back: a day with many throttles does not count.
	e2 := &Engine{MaxConnections: 100, Warmup: Warmup{Enabled: true}, Profiles: map[string]Profile{"yahoo": {MaxConnections: 5, WarmupStart: 40}}}
	now := start
	for day := range 3 {
		now = start.Add(time.Duration(day)*24*time.Hour + time.Hour)
		p, r := e2.Acquire(yahoo, now)
		if r != nil {
			t.Fatalf("day %d: %+v", day, r)
		}
		if day == 1 {
			e2.Observe(p, throttle(), now)
		} else {
			e2.Observe(p, Feedback{Delivered: true}, now)
		}
		p.Release()
	}
	if st := statusOf(t, e2, "yahoo", netip.Addr{}, start.Add(72*time.Hour+time.Hour)); st.WarmupDay != 2 || st.IPAgeDays != 3 {
		t.Fatalf("after a day of trouble: warm-up day %d, age %d; want 2 and 3", st.WarmupDay, st.IPAgeDays)
	}
}

// TestSnapshot: a restart keeps what the engine learnt: the rate, a pause, today's count.
func TestSnapshot(t *testing.T) {
	e := &Engine{MaxConnections: 100, Warmup: Warmup{Enabled: true}}
	now := t0
	p, _ := e.Acquire(yahoo, now)
	e.Observe(p, throttle(), now)
	p.Release()
	q, _ := e.Acquire(microsoft, now.Add(time.Minute))
	e.Observe(q, block(), now.Add(time.Minute))
	q.Release()
	snap := e.Export(now.Add(time.Minute))
	e2 := &Engine{MaxConnections: 100, Warmup: Warmup{Enabled: true}}
	e2.Import(snap)
	at := now.Add(2 * time.Minute)
	for _, g := range []string{"yahoo", "microsoft"} {
		a, b := statusOf(t, e, g, netip.Addr{}, at), statusOf(t, e2, g, netip.Addr{}, at)
		if a.State != b.State || *a.RatePerMinute != *b.RatePerMinute || a.SentToday != b.SentToday ||
			(a.PausedUntil == nil) != (b.PausedUntil == nil) || a.WarmupDay != b.WarmupDay {
			t.Fatalf("%s before and after a restart:\n%+v\n%+v", g, a, b)
		}
	}
}

// TestComplaintHoldsWarmup: a complaint makes the day one of trouble: the warm-up does
// not advance for it.
func TestComplaintHoldsWarmup(t *testing.T) {
	e := &Engine{MaxConnections: 10, Warmup: Warmup{Enabled: true}}
	for day := range 2 {
		now := t0.Add(time.Duration(day)*24*time.Hour + time.Hour)
		p, _ := e.Acquire(google, now)
		e.Observe(p, Feedback{Delivered: true}, now)
		p.Release()
		if day == 0 {
			e.Complained("google", "", now)
		}
	}
	if st := statusOf(t, e, "google", netip.Addr{}, t0.Add(49*time.Hour)); st.WarmupDay != 1 || st.IPAgeDays != 2 {
		t.Fatalf("after a day with a complaint: warm-up day %d, age %d; want 1 and 2", st.WarmupDay, st.IPAgeDays)
	}
}

// TestAdminResumeKeepsRate: the admin's own pause says nothing about the provider: on
// resume the lane sends at the rate it had.
func TestAdminResumeKeepsRate(t *testing.T) {
	e := &Engine{}
	p, _ := e.Acquire(yahoo, t0)
	p.Release()
	before := *statusOf(t, e, "yahoo", netip.Addr{}, t0).RatePerMinute
	e.Pause("yahoo", netip.Addr{}, t0)
	e.Resume("yahoo", netip.Addr{}, t0.Add(time.Second))
	st := statusOf(t, e, "yahoo", netip.Addr{}, t0.Add(time.Second))
	if *st.RatePerMinute != before || st.State != StateNormal {
		t.Fatalf("after the admin's pause and resume: %+v, rate before %v", st, before)
	}
}

// TestFallbackPerProvider: a provider's own fallback relay wins over the global one.
func TestFallbackPerProvider(t *testing.T) {
	profiles := DefaultProfiles()
	y := profiles["yahoo"]
	y.FallbackRelay = "yahoo-relay.example.net:25"
	e := &Engine{FallbackRelay: "relay.example.net:25", Profiles: map[string]Profile{"yahoo": y}}
	for _, tc := range []struct {
		rt   route.Route
		want string
	}{{yahoo, "yahoo-relay.example.net:25"}, {google, "relay.example.net:25"}} {
		p, _ := e.Acquire(tc.rt, t0)
		e.Observe(p, block(), t0)
		p.Release()
		f, r := e.Acquire(tc.rt, t0)
		if r != nil || f.Fallback != tc.want {
			t.Errorf("%s paused: %+v %+v, want through %s", tc.rt.Group, f, r, tc.want)
		}
		f.Release()
	}
}
