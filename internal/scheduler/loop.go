package scheduler

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/repute-mail/repute/internal/obs"
	"github.com/repute-mail/repute/internal/outcome"
	"github.com/repute-mail/repute/internal/route"
	"github.com/repute-mail/repute/internal/store"
)

// loop is the state of one Run, touched only by Run's goroutine: the entries claimed and
// waiting for a permit, grouped by destination group and domain, and the domains whose
// route is being looked up.
type loop struct {
	s         *Scheduler
	held      map[int64]bool                // claimed and not yet finished (waiting or in flight)
	groups    map[string]*group             // waiting entries by destination group
	order     []string                      // groups in round-robin order
	pending   map[string][]store.QueueEntry // entries whose domain's route is being resolved
	resolving map[string]bool
	running   int
	results   chan *batch
	resolved  chan resolvedRoute
	wg        sync.WaitGroup
}

// group is one destination group's waiting entries, by domain (a batch is for one
// domain: one route, one MTA-STS policy).
type group struct {
	key     string
	domains []string // round-robin order
	ready   map[string]*waiting
	until   time.Time // a shaper refusal holds the group until then (zero: none)
	reason  string    // and why
	blocked bool      // refused until a connection is released (reset on every finish)
}

type waiting struct {
	rt      route.Route
	entries []store.QueueEntry
}

type resolvedRoute struct {
	domain string
	rt     route.Route
}

func newLoop(s *Scheduler) *loop {
	return &loop{s: s, held: map[int64]bool{}, groups: map[string]*group{}, pending: map[string][]store.QueueEntry{},
		resolving: map[string]bool{}, results: make(chan *batch), resolved: make(chan resolvedRoute)}
}

// canClaim reports whether there is room in memory for more claimed entries.
func (l *loop) canClaim() bool { return len(l.held) < l.s.ActiveLimit }

// claim leases due entries up to the active limit and sorts them by route.
func (l *loop) claim(ctx context.Context) {
	s := l.s
	for l.canClaim() {
		now := s.Now()
		if next, ok, err := s.DB.QueueNextDue(ctx); err != nil || !ok || next.After(now) {
			return
		}
		limit := min(s.ActiveLimit-len(l.held), maxClaim)
		es, err := s.DB.QueueClaim(ctx, s.Node, now, limit, leaseTime)
		if err != nil {
			// Nothing was leased, so nothing is delivered: try again on the next wake.
			s.Logger.Error("queue: claiming due entries failed", "err", err)
			return
		}
		fresh := 0
		for _, e := range es {
			if l.held[e.ID] {
				continue // still waiting here since an earlier claim: the lease was renewed
			}
			l.held[e.ID] = true
			fresh++
			l.add(e)
		}
		l.resolveNext(ctx)
		if len(es) < limit || fresh == 0 {
			return
		}
	}
}

// add files a claimed entry under its route, or puts it with the entries waiting for
// their domain's route to be resolved.
func (l *loop) add(e store.QueueEntry) {
	if rt, ok := l.s.Routes.Cached(e.Domain); ok {
		l.file(rt, e)
		return
	}
	l.pending[e.Domain] = append(l.pending[e.Domain], e)
}

// resolveNext starts route lookups for pending domains, at most maxResolving at once.
func (l *loop) resolveNext(ctx context.Context) {
	for domain := range l.pending {
		if len(l.resolving) >= maxResolving {
			return
		}
		if l.resolving[domain] {
			continue
		}
		l.resolving[domain] = true
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			rt := l.s.Routes.Resolve(ctx, domain)
			select {
			case l.resolved <- resolvedRoute{domain, rt}:
			case <-ctx.Done():
			}
		}()
	}
}

// routed files a domain's pending entries once its route is known.
func (l *loop) routed(ctx context.Context, r resolvedRoute) {
	delete(l.resolving, r.domain)
	for _, e := range l.pending[r.domain] {
		l.file(r.rt, e)
	}
	delete(l.pending, r.domain)
	l.resolveNext(ctx)
}

func (l *loop) file(rt route.Route, e store.QueueEntry) {
	key := rt.Group
	if rt.Fail != nil || key == "" {
		key = "domain:" + e.Domain // a failed route is answered without a connection
	}
	g := l.groups[key]
	if g == nil {
		g = &group{key: key, ready: map[string]*waiting{}}
		l.groups[key] = g
		l.order = append(l.order, key)
	}
	w := g.ready[e.Domain]
	if w == nil {
		w = &waiting{rt: rt}
		g.ready[e.Domain] = w
		g.domains = append(g.domains, e.Domain)
	}
	w.entries = append(w.entries, e)
}

// dispatch starts batches, one group at a time in turn, until the concurrency limit is
// reached or no group can start another.
func (l *loop) dispatch(ctx context.Context) {
	s := l.s
	for progress := true; progress && l.running < s.Concurrency; {
		progress = false
		for _, key := range slices.Clone(l.order) {
			if l.running >= s.Concurrency {
				return
			}
			if l.startOne(ctx, l.groups[key]) {
				progress = true
			}
		}
	}
}

// startOne starts one batch of group g if its shaper permits, and reports whether it did.
func (l *loop) startOne(ctx context.Context, g *group) bool {
	s := l.s
	now := s.Now()
	if g == nil || g.blocked || len(g.domains) == 0 {
		return false
	}
	if now.Before(g.until) {
		if g.until.Sub(now) > requeueAfter {
			l.requeue(ctx, g)
		}
		return false
	}
	domain := g.domains[0]
	w := g.ready[domain]
	b := &batch{rt: w.rt, entries: map[int64]store.QueueEntry{}}
	if w.rt.Fail == nil {
		permit, refusal := s.Shaper.Acquire(w.rt, now)
		if refusal != nil {
			l.refused(ctx, g, refusal.Next, refusal.Reason)
			return false
		}
		b.permit = permit
	}
	n := s.BatchSize
	if b.permit != nil && b.permit.MaxMessages > 0 {
		n = min(n, b.permit.MaxMessages)
	}
	if w.rt.Fail != nil {
		n = len(w.entries) // answered without a connection: all at once
	}
	take := min(n, len(w.entries))
	for _, e := range w.entries[:take] {
		b.entries[e.ID] = e
	}
	w.entries = w.entries[take:]
	g.domains = g.domains[1:]
	if len(w.entries) > 0 {
		g.domains = append(g.domains, domain) // the group's next batch is for its next domain
	} else {
		delete(g.ready, domain)
	}
	l.running++
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		s.work(ctx, b)
		l.results <- b
	}()
	return true
}

// refused holds group g after a shaper refusal: until a connection is released (zero
// next), until next, or — for a long refusal — back in the queue, due at next. The group
// remembers the refusal, so entries of it claimed meanwhile go back too.
func (l *loop) refused(ctx context.Context, g *group, next time.Time, reason string) {
	if next.IsZero() {
		g.blocked = true
		return
	}
	g.until, g.reason = next, reason
	if next.Sub(l.s.Now()) > requeueAfter {
		l.requeue(ctx, g)
	}
}

// requeue puts group g's waiting entries back in the queue, due when its refusal ends,
// and publishes a throttled event for each (reason and next_attempt).
func (l *loop) requeue(ctx context.Context, g *group) {
	var ids []int64
	for _, w := range g.ready {
		for _, e := range w.entries {
			ids = append(ids, e.ID)
		}
	}
	if err := l.s.DB.QueueRequeue(ctx, ids, g.until); err != nil {
		l.s.Logger.Error("queue: putting held-back entries back failed; they wait here", "group", g.key, "err", err)
		return
	}
	l.s.Logger.Info("queue: destination held back", "group", g.key, "reason", g.reason, "entries", len(ids), "until", g.until)
	now := l.s.Now()
	var events []outcome.Event
	for _, w := range g.ready {
		for _, e := range w.entries {
			delete(l.held, e.ID)
			events = append(events, outcome.Event{Event: obs.Event{Time: now, Event: obs.Throttled, MsgID: e.MsgID,
				From: e.From, Rcpt: e.Rcpt, Provider: w.rt.Provider, Reason: g.reason, NextAttempt: g.until}})
		}
	}
	l.s.publish(ctx, events)
	clear(g.ready)
	g.domains = nil
}

func (l *loop) drop(g *group) {
	delete(l.groups, g.key)
	l.order = slices.DeleteFunc(l.order, func(k string) bool { return k == g.key })
}

// finished releases a batch's permit and entries. A released connection may let any
// refused group start again.
func (l *loop) finished(b *batch) {
	l.running--
	b.permit.Release()
	for id := range b.entries {
		delete(l.held, id)
	}
	now := l.s.Now()
	for _, g := range l.groups {
		g.blocked = false
		if len(g.domains) == 0 && !now.Before(g.until) {
			l.drop(g)
		}
	}
}

// nextWait is the earliest end of a shaper refusal, if any.
func (l *loop) nextWait() (time.Time, bool) {
	var next time.Time
	for _, g := range l.groups {
		if !g.until.IsZero() && len(g.domains) > 0 && (next.IsZero() || g.until.Before(next)) {
			next = g.until
		}
	}
	return next, !next.IsZero()
}

// stop waits for the batches in flight (their outcomes are recorded) and the route
// lookups, then puts the entries claimed but not started back in the queue, due now.
func (l *loop) stop() {
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	for {
		select {
		case b := <-l.results:
			l.finished(b)
			continue
		case <-l.resolved:
			continue
		case <-done:
		}
		break
	}
	var ids []int64
	for _, g := range l.groups {
		for _, w := range g.ready {
			for _, e := range w.entries {
				ids = append(ids, e.ID)
			}
		}
	}
	for _, es := range l.pending {
		for _, e := range es {
			ids = append(ids, e.ID)
		}
	}
	if len(ids) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.s.DB.QueueRequeue(ctx, ids, l.s.Now()); err != nil {
		l.s.Logger.Warn("queue: releasing claimed entries at shutdown failed; their lease ends by itself", "err", err)
	}
}
