package shaper

import (
	"math"
	"net/netip"
	"time"
)

// Snapshot is the engine's learnt state, saved in the store so that a restart neither
// forgets a provider's limits nor lifts a pause nor starts a warm-up day's count over.
type Snapshot struct {
	Lanes    []LaneState          `json:"lanes"`
	FirstUse map[string]time.Time `json:"first_use"` // by source IP ("" for the kernel's choice)
}

// LaneState is one lane's saved state.
type LaneState struct {
	SourceIP       string        `json:"source_ip"`
	Group          string        `json:"group"`
	Provider       string        `json:"provider"`
	Rate           float64       `json:"rate"`
	SlowStart      bool          `json:"slow_start"`
	RateAtCut      float64       `json:"rate_at_cut,omitempty"`
	LastCut        time.Time     `json:"last_cut,omitzero"`
	AllowedConns   float64       `json:"allowed_conns,omitempty"`
	Day            int           `json:"day"`
	SentToday      int           `json:"sent_today"`
	HeldDays       int           `json:"held_days,omitempty"`
	TroubleToday   int           `json:"trouble_today,omitempty"`
	DeliveredToday int           `json:"delivered_today,omitempty"`
	State          string        `json:"state,omitempty"`
	PausedUntil    time.Time     `json:"paused_until,omitzero"`
	CoolDown       time.Duration `json:"cool_down,omitempty"`
	AdminPause     bool          `json:"admin_pause,omitempty"`
	Reason         string        `json:"reason,omitempty"`
	Reply          string        `json:"reply,omitempty"`
	Advice         string        `json:"advice,omitempty"`
	URL            string        `json:"url,omitempty"`
	RateAtPause    float64       `json:"rate_at_pause,omitempty"`
	LastActivity   time.Time     `json:"last_activity,omitzero"`
}

// Dirty reports whether the state changed since the last Export.
func (e *Engine) Dirty() bool { return e.dirty.Load() }

// Export returns the state worth keeping, and forgets idle lanes of unknown destinations
// that learnt nothing (they would only grow the table). Lanes are kept while they have
// a pause, a cut rate or connection count, or today's count under a warm-up cap.
func (e *Engine) Export(now time.Time) Snapshot {
	e.init()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.dirty.Store(false)
	snap := Snapshot{FirstUse: map[string]time.Time{}}
	for k, t := range e.firstUse {
		snap.FirstUse[k] = t
	}
	idle := e.day()
	for k, l := range e.lanes {
		learnt := l.state != "" || !l.lastCut.IsZero() || l.allowedConns > 0 || l.heldDays > 0
		if l.open == 0 && !learnt && now.Sub(l.lastActivity) > idle && l.provider == DefaultProvider {
			delete(e.lanes, k)
			continue
		}
		if !learnt && l.sentToday == 0 && l.provider == DefaultProvider {
			continue
		}
		state := l.state
		if state == StateProbing {
			state = StatePaused // a probe in flight at a crash is tried again
		}
		snap.Lanes = append(snap.Lanes, LaneState{SourceIP: l.ipKey, Group: l.group, Provider: l.provider,
			Rate: l.rate, SlowStart: l.slowStart, RateAtCut: l.rateAtCut, LastCut: l.lastCut,
			AllowedConns: l.allowedConns, Day: l.day, SentToday: l.sentToday, HeldDays: l.heldDays,
			TroubleToday: l.troubleToday, DeliveredToday: l.deliveredToday, State: state,
			PausedUntil: l.pausedUntil, CoolDown: l.coolDown, AdminPause: l.adminPause, Reason: l.reason,
			Reply: l.reply, Advice: l.advice, URL: l.url, RateAtPause: l.rateAtPause, LastActivity: l.lastActivity})
	}
	return snap
}

// Import restores a snapshot before the first Acquire. Lanes of source IPs no longer
// configured are dropped; first-use dates from the configuration (FirstUse) win.
func (e *Engine) Import(s Snapshot) {
	e.init()
	e.mu.Lock()
	defer e.mu.Unlock()
	for k, t := range s.FirstUse {
		if _, ok := e.firstUse[k]; !ok {
			e.firstUse[k] = t
		}
	}
	sources := map[string]netip.Addr{}
	for _, a := range e.sourceSet {
		sources[ipKey(a)] = a
	}
	for _, st := range s.Lanes {
		ip, ok := sources[st.SourceIP]
		if !ok || st.Group == "" {
			continue
		}
		id, prof := e.profile(st.Provider)
		l := &lane{ip: ip, ipKey: st.SourceIP, group: st.Group, provider: id, prof: prof,
			rate: st.Rate, slowStart: st.SlowStart, rateAtCut: st.RateAtCut, lastCut: st.LastCut,
			allowedConns: st.AllowedConns, day: st.Day, sentToday: st.SentToday, heldDays: st.HeldDays,
			troubleToday: st.TroubleToday, deliveredToday: st.DeliveredToday, state: st.State,
			pausedUntil: st.PausedUntil, coolDown: st.CoolDown, adminPause: st.AdminPause, reason: st.Reason,
			reply: st.Reply, advice: st.Advice, url: st.URL, rateAtPause: st.RateAtPause,
			lastActivity: st.LastActivity, permits: map[*Permit]struct{}{}}
		if !(l.rate >= 0) || math.IsInf(l.rate, 0) {
			l.rate = prof.StartPerMinute // damaged: start afresh
		}
		if prof.MessagesPerMinute > 0 && l.rate > prof.MessagesPerMinute {
			l.rate = prof.MessagesPerMinute // the admin lowered the ceiling
		}
		if !(l.allowedConns >= 0) || math.IsInf(l.allowedConns, 0) {
			l.allowedConns = 0
		}
		l.sentToday, l.heldDays = max(l.sentToday, 0), max(l.heldDays, 0)
		l.troubleToday, l.deliveredToday = max(l.troubleToday, 0), max(l.deliveredToday, 0)
		if l.state != "" && l.state != StatePaused {
			l.state = StatePaused
		}
		if l.capTokens == 0 {
			l.capAt = time.Time{}
		}
		e.lanes[st.SourceIP+"|"+st.Group] = l
	}
}
