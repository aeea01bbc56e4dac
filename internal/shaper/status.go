package shaper

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"time"

	"github.com/repute-mail/repute/internal/route"
)

// Status is one lane as `repute provider status --json` prints it (docs/CONTRACTS.md
// §10; the JSON names are a contract).
type Status struct {
	Provider  string `json:"provider"`  // provider id, or the group of an unknown destination
	Group     string `json:"group"`     // the destination group
	SourceIP  string `json:"source_ip"` // "" when the kernel chooses
	State     string `json:"state"`     // normal, warming, backoff, paused, probing
	IPAgeDays int    `json:"ip_age_days"`
	// WarmupDay is the day of the warm-up schedule the IP is on: its age in the
	// engine's days (scaled by time_scale) less the days trouble held it back.
	WarmupDay          int        `json:"warmup_day"`
	FirstUse           *time.Time `json:"first_use"`
	DailyCap           *int       `json:"daily_cap"` // null: unlimited
	SentToday          int        `json:"sent_today"`
	RatePerMinute      *float64   `json:"rate_per_minute"` // allowed now; null: not paced
	RateCeiling        *float64   `json:"rate_ceiling"`
	Trend              string     `json:"trend"` // rising, falling, steady
	DeliveredPerMinute float64    `json:"delivered_per_minute"`
	MaxConnections     int        `json:"max_connections"` // allowed now
	OpenConnections    int        `json:"open_connections"`
	PausedUntil        *time.Time `json:"paused_until"` // null: not paused (or paused by the admin until resumed)
	Reason             string     `json:"reason"`
	Reply              string     `json:"reply,omitempty"`
	Advice             string     `json:"advice,omitempty"`
	URL                string     `json:"url,omitempty"`
}

// Status lists every lane with some state (traffic seen, a cap in force, a pause), by
// provider and source IP. A configured source IP still warming up is listed for every
// provider that caps it, before any traffic.
func (e *Engine) Status(now time.Time) []Status {
	e.init()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.Warmup.Enabled {
		for _, ip := range e.sourceSet {
			for id, p := range e.profiles {
				if id == DefaultProvider || p.WarmupStart <= 0 {
					continue
				}
				if _, ok := e.lanes[ipKey(ip)+"|"+id]; ok {
					continue
				}
				probe := &lane{ipKey: ipKey(ip), prof: p}
				if e.dailyCap(probe, now) > 0 {
					e.laneLocked(ip, route.Route{Group: id, Provider: id}, now)
				}
			}
		}
	}
	out := make([]Status, 0, len(e.lanes))
	for _, l := range e.lanes {
		e.adaptLocked(l, now)
		e.rollDay(l, now)
		out = append(out, e.statusLocked(l, now))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Provider != out[j].Provider {
			return out[i].Provider < out[j].Provider
		}
		return out[i].SourceIP < out[j].SourceIP
	})
	return out
}

func (e *Engine) statusLocked(l *lane, now time.Time) Status {
	s := Status{Provider: l.provider, Group: l.group, SourceIP: l.ipKey, SentToday: l.sentToday,
		MaxConnections: l.maxConns(), OpenConnections: l.open, Reason: l.reason, Reply: l.reply,
		Advice: l.advice, URL: l.url, Trend: "steady",
		DeliveredPerMinute: round2(l.deliveredRate(e.round(), e.minute()))}
	if l.provider == DefaultProvider {
		s.Provider = l.group
	}
	if first, ok := e.firstUse[l.ipKey]; ok {
		f := first.UTC()
		s.FirstUse = &f
		s.IPAgeDays = max(0, int(now.Sub(first)/(24*time.Hour)))
		d, _, _ := e.warmupDay(l, now)
		s.WarmupDay = max(0, d-l.heldDays)
	}
	if c := e.dailyCap(l, now); c > 0 {
		s.DailyCap = &c
	}
	if l.paced() {
		r := round2(l.rate)
		s.RatePerMinute = &r
	}
	if c := l.prof.MessagesPerMinute; c > 0 {
		s.RateCeiling = &c
	}
	round := e.round()
	switch {
	case !l.lastCut.IsZero() && now.Sub(l.lastCut) < 6*round:
		s.Trend = "falling"
	case l.paced() && l.rate < l.prof.MessagesPerMinute && !l.lastCut.IsZero():
		s.Trend = "rising"
	}
	switch {
	case l.state == StatePaused:
		s.State = StatePaused
		if !l.adminPause {
			u := l.pausedUntil.UTC()
			s.PausedUntil = &u
		}
	case l.state == StateProbing:
		s.State = StateProbing
	case now.Before(l.holdUntil) || !l.lastCut.IsZero() && now.Sub(l.lastCut) < 6*round ||
		l.allowedConns > 0 && !l.connCut.IsZero() && now.Sub(l.connCut) < 6*round:
		s.State = StateBackoff
	case s.DailyCap != nil:
		s.State = StateWarming
	default:
		s.State = StateNormal
	}
	return s
}

func round2(f float64) float64 { return float64(int64(f*100+0.5)) / 100 }

// ErrUnknownProvider is returned by Pause and Resume for a provider the engine has no
// profile or lane for.
var ErrUnknownProvider = fmt.Errorf("unknown provider")

// Pause stops sending to a provider (a provider id, or an unknown destination's group)
// from one source IP (ip invalid: every source IP) at once, until Resume: the admin's
// pause, which no probe ends. It returns the lanes paused.
func (e *Engine) Pause(provider string, ip netip.Addr, now time.Time) (int, error) {
	e.init()
	e.mu.Lock()
	n, err := e.adminLocked(provider, ip, now, true)
	e.mu.Unlock()
	e.flush()
	return n, err
}

// Resume ends a pause (the admin's or the engine's) of a provider from one source IP
// (ip invalid: every source IP) at once. It returns the lanes resumed.
func (e *Engine) Resume(provider string, ip netip.Addr, now time.Time) (int, error) {
	e.init()
	e.mu.Lock()
	n, err := e.adminLocked(provider, ip, now, false)
	e.mu.Unlock()
	e.flush()
	return n, err
}

func (e *Engine) adminLocked(provider string, ip netip.Addr, now time.Time, pause bool) (int, error) {
	_, known := e.profiles[provider]
	known = known && provider != DefaultProvider || slices.Contains(e.Providers, provider)
	for _, l := range e.lanes {
		if l.group == provider {
			known = true
		}
	}
	if !known {
		return 0, fmt.Errorf("%w %q", ErrUnknownProvider, provider)
	}
	if ip.IsValid() {
		found := false
		for _, s := range e.sourceSet {
			found = found || s == ip.Unmap()
		}
		if !found {
			return 0, fmt.Errorf("%s is not one of outbound.source_ips", ip)
		}
	}
	n := 0
	for _, src := range e.sourceSet {
		if ip.IsValid() && src != ip.Unmap() {
			continue
		}
		l := e.laneLocked(src, route.Route{Group: provider, Provider: provider}, now)
		switch {
		case pause && !l.adminPause:
			e.pauseLocked(l, now, Feedback{Reply: "paused by the admin"}, false)
			l.adminPause, l.reason, l.pausedUntil = true, "admin", time.Time{}
			e.pending[len(e.pending)-1].Category = "admin"
			e.pending[len(e.pending)-1].Until = time.Time{}
			n++
		case !pause && l.state != "":
			e.resumeLocked(l, now, "admin", "resumed by the admin")
			n++
		}
	}
	return n, nil
}
