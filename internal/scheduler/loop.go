package scheduler

import (
	"context"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/repute-mail/repute/internal/outcome"
	"github.com/repute-mail/repute/internal/route"
	"github.com/repute-mail/repute/internal/shaper"
	"github.com/repute-mail/repute/internal/store"
)

// loop is the state of one Run, touched only by Run's goroutine: the entries claimed and
// waiting for a permit, grouped by destination group and domain, and the domains whose
// route is being looked up.
type loop struct {
	s         *Scheduler
	held      map[int64]bool                // claimed and not yet finished (waiting or in flight)
	heldBulk  int                           // of held, bulk entries
	flight    map[int64]bool                // of held, entries whose batch is running
	reclaimed map[int64]store.QueueEntry    // in flight, put back by their batch and claimed again
	bulk      spread                        // paces the claims of bulk mail (BulkSpread)
	told      map[int64]bool                // of held, entries whose wait in memory has its throttled event
	due       map[string]dueAt              // what this pass's claim learnt of each class's next due entry
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
	rt     route.Route
	urgent []store.QueueEntry // transactional mail, sent first
	bulk   []store.QueueEntry
}

func (w *waiting) len() int { return len(w.urgent) + len(w.bulk) }

// take removes up to n entries, transactional ones first.
func (w *waiting) take(n int) []store.QueueEntry {
	var out []store.QueueEntry
	k := min(n, len(w.urgent))
	out, w.urgent = append(out, w.urgent[:k]...), w.urgent[k:]
	k = min(n-len(out), len(w.bulk))
	out, w.bulk = append(out, w.bulk[:k]...), w.bulk[k:]
	return out
}

// each calls fn for every waiting entry.
func (w *waiting) each(fn func(store.QueueEntry)) {
	for _, e := range w.urgent {
		fn(e)
	}
	for _, e := range w.bulk {
		fn(e)
	}
}

// dueAt is when a class's next entry falls due, as the claim last read it (ok false:
// none queued); known false when the claim did not end on that reading.
type dueAt struct {
	at        time.Time
	ok, known bool
}

// classes are claimed in this order, each with its own budget.
var classes = []string{store.ClassTransactional, store.ClassBulk}

type resolvedRoute struct {
	domain string
	rt     route.Route
}

func newLoop(s *Scheduler) *loop {
	return &loop{s: s, held: map[int64]bool{}, flight: map[int64]bool{}, reclaimed: map[int64]store.QueueEntry{}, told: map[int64]bool{},
		due:    map[string]dueAt{},
		groups: map[string]*group{}, pending: map[string][]store.QueueEntry{},
		resolving: map[string]bool{}, results: make(chan *batch), resolved: make(chan resolvedRoute)}
}

// canClaim reports whether there is room in memory for more claimed entries of a class.
func (l *loop) canClaim(class string) bool { return l.heldOf(class) < l.s.ActiveLimit }

func (l *loop) heldOf(class string) int {
	if class == store.ClassBulk {
		return l.heldBulk
	}
	return len(l.held) - l.heldBulk
}

// claim leases due entries of each class up to its budget and sorts them by route.
func (l *loop) claim(ctx context.Context) {
	for _, class := range classes {
		l.claimClass(ctx, class)
	}
	l.resolveNext(ctx)
}

func (l *loop) claimClass(ctx context.Context, class string) {
	s := l.s
	l.due[class] = dueAt{}
	for l.canClaim(class) {
		now := s.Now()
		next, ok, err := s.DB.QueueNextDueClass(ctx, class)
		if err != nil {
			return
		}
		if !ok || next.After(now) {
			l.due[class] = dueAt{next, ok, true} // the timer needs no second reading
			return
		}
		limit := min(s.ActiveLimit-l.heldOf(class), maxClaim)
		if class == store.ClassBulk && s.BulkSpread > 0 {
			if limit = min(limit, l.bulk.allow(ctx, l, now)); limit <= 0 {
				return
			}
		}
		es, err := s.DB.QueueClaim(ctx, s.Node, class, now, limit, s.Lease)
		if err != nil {
			// Nothing was leased, so nothing is delivered: try again on the next wake.
			s.Logger.Error("queue: claiming due entries failed", "class", class, "err", err)
			return
		}
		fresh := 0
		if class == store.ClassBulk && s.BulkSpread > 0 {
			l.bulk.took(len(es))
		}
		for _, e := range es {
			if l.held[e.ID] {
				if l.flight[e.ID] {
					// Its batch put it back (not sent, due again) before the batch
					// ended here: it waits again once the batch has ended.
					l.reclaimed[e.ID] = e
				}
				continue // else still waiting here since an earlier claim: the lease was renewed
			}
			l.hold(e)
			fresh++
			l.add(e)
		}
		if len(es) < limit || fresh == 0 {
			return
		}
	}
}

func (l *loop) hold(e store.QueueEntry) {
	l.held[e.ID] = true
	if e.Class == store.ClassBulk {
		l.heldBulk++
	}
}

func (l *loop) release(e store.QueueEntry) {
	if !l.held[e.ID] {
		return
	}
	delete(l.held, e.ID)
	delete(l.told, e.ID)
	if e.Class == store.ClassBulk {
		l.heldBulk--
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
	if e.Class == store.ClassBulk {
		w.bulk = append(w.bulk, e)
	} else {
		w.urgent = append(w.urgent, e)
	}
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
		if g.until.Sub(now) > s.HoldBack {
			l.requeue(ctx, g)
		} else {
			l.spill(ctx, g) // entries claimed since the refusal count too
		}
		return false
	}
	i := nextDomain(g)
	domain := g.domains[i]
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
		n = w.len() // answered without a connection: all at once
	}
	for _, e := range w.take(n) {
		b.entries[e.ID] = e
		l.flight[e.ID] = true
	}
	if b.permit != nil {
		b.permit.Use(len(b.entries))
		b.rt.Fallback = b.permit.Fallback
		b.rt.RequireTLS = b.permit.RequireTLS && b.permit.Fallback == ""
		if b.rt.Relay == "" && b.rt.Fallback == "" && s.HoldDirect != nil {
			if relay := s.HoldDirect(); relay != "" {
				b.rt.Fallback, b.rt.RequireTLS = relay, false
			}
		}
	}
	g.domains = append(g.domains[:i], g.domains[i+1:]...)
	if w.len() > 0 {
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

// nextDomain picks the domain of a group's next batch: the first in turn that has
// transactional mail waiting, else the first in turn.
func nextDomain(g *group) int {
	for i, d := range g.domains {
		if len(g.ready[d].urgent) > 0 {
			return i
		}
	}
	return 0
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
	if next.Sub(l.s.Now()) > l.s.HoldBack {
		l.requeue(ctx, g)
		return
	}
	l.spill(ctx, g)
	l.tell(ctx, g)
}

// spill bounds what a group held back by its rate keeps in memory (the lookahead): a
// provider at its limit must not fill the claim budget and starve the others. Beyond
// lookahead entries, the newest bulk ones first go back to the queue, due after
// HoldBack; they would have waited for the rate anyway.
func (l *loop) spill(ctx context.Context, g *group) {
	if len(l.held) < l.s.ActiveLimit/2 {
		return // room enough for everyone: keep what is claimed
	}
	limit := max(l.s.ActiveLimit/8, 2*l.s.BatchSize)
	n := 0
	for _, w := range g.ready {
		n += w.len()
	}
	if n <= limit {
		return
	}
	var ids []int64
	var out []store.QueueEntry
	for _, d := range slices.Backward(g.domains) {
		w := g.ready[d]
		for n > limit && len(w.bulk) > 0 {
			e := w.bulk[len(w.bulk)-1]
			w.bulk = w.bulk[:len(w.bulk)-1]
			ids, out, n = append(ids, e.ID), append(out, e), n-1
		}
		for n > limit && len(w.urgent) > 1 {
			e := w.urgent[len(w.urgent)-1]
			w.urgent = w.urgent[:len(w.urgent)-1]
			ids, out, n = append(ids, e.ID), append(out, e), n-1
		}
	}
	next := l.s.Now().Add(l.s.HoldBack)
	if err := l.s.DB.QueueRequeue(ctx, ids, next); err != nil {
		l.s.Logger.Error("queue: returning a held-back group's overflow failed; it waits here", "group", g.key, "err", err)
		for _, e := range out {
			l.file(g.ready[e.Domain].rt, e) // put back where it was
		}
		return
	}
	for _, e := range out {
		l.release(e)
	}
	for d, w := range g.ready {
		if w.len() == 0 {
			delete(g.ready, d)
			g.domains = slices.DeleteFunc(g.domains, func(x string) bool { return x == d })
		}
	}
}

// tell publishes a throttled event (reason and when it may go) for each of group g's
// waiting entries that the shaper now holds back in memory, once per entry and claim:
// every delay Repute imposes on itself is in the event log, a short one too.
func (l *loop) tell(ctx context.Context, g *group) {
	now := l.s.Now()
	var events []outcome.Event
	for _, w := range g.ready {
		w.each(func(e store.QueueEntry) {
			if l.told[e.ID] {
				return
			}
			l.told[e.ID] = true
			events = append(events, throttled(e, w.rt.Provider, g.reason, g.until, now))
		})
	}
	l.s.publish(ctx, events)
}

// requeue puts group g's waiting entries back in the queue, due when its refusal ends,
// and publishes a throttled event for each (reason and next_attempt).
func (l *loop) requeue(ctx context.Context, g *group) {
	var ids []int64
	for _, w := range g.ready {
		w.each(func(e store.QueueEntry) { ids = append(ids, e.ID) })
	}
	if err := l.s.DB.QueueRequeue(ctx, ids, g.until); err != nil {
		l.s.Logger.Error("queue: putting held-back entries back failed; they wait here", "group", g.key, "err", err)
		return
	}
	l.s.Logger.Info("queue: destination held back", "group", g.key, "reason", g.reason, "entries", len(ids), "until", g.until)
	now := l.s.Now()
	var events []outcome.Event
	for domain, w := range g.ready {
		if g.reason == shaper.ReasonPaused {
			l.s.noteHeld(w.rt.Group, domain)
		}
		w.each(func(e store.QueueEntry) {
			l.release(e)
			events = append(events, throttled(e, w.rt.Provider, g.reason, g.until, now))
		})
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
	for _, e := range b.entries {
		l.release(e)
		delete(l.flight, e.ID)
		if r, ok := l.reclaimed[e.ID]; ok {
			delete(l.reclaimed, e.ID)
			l.hold(r)
			l.add(r)
		}
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
			w.each(func(e store.QueueEntry) { ids = append(ids, e.ID) })
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

// spread paces the claims of bulk mail so that a backlog drains evenly over BulkSpread:
// its rate is the backlog divided by the window, raised when a larger backlog arrives
// (a new campaign), kept while the backlog drains, and dropped once it is gone.
type spread struct {
	rate    float64 // entries per second
	tokens  float64
	at      time.Time
	counted time.Time
}

// allow returns how many bulk entries may be claimed now.
func (p *spread) allow(ctx context.Context, l *loop, now time.Time) int {
	s := l.s
	if p.counted.IsZero() || now.Sub(p.counted) >= s.ScanInterval {
		p.counted = now
		n, err := s.DB.QueueCountDue(ctx, store.ClassBulk, now)
		if err != nil {
			n = 0
		}
		n += l.heldBulk
		switch r := float64(n) / s.BulkSpread.Seconds(); {
		case n == 0:
			p.rate, p.tokens = 0, 0
		case r > p.rate:
			p.rate = r
		}
	}
	if !p.at.IsZero() {
		capacity := math.Max(1, p.rate*s.ScanInterval.Seconds())
		p.tokens = math.Min(capacity, p.tokens+p.rate*now.Sub(p.at).Seconds())
	} else {
		p.tokens = math.Max(p.tokens, 1)
	}
	p.at = now
	return int(p.tokens)
}

func (p *spread) took(n int) { p.tokens -= float64(n) }

// nextToken is when the next bulk entry may be claimed, while bulk mail is being paced.
func (p *spread) nextToken(now time.Time) (time.Time, bool) {
	if p.rate <= 0 || p.tokens >= 1 {
		return time.Time{}, false
	}
	return now.Add(time.Duration((1 - p.tokens) / p.rate * float64(time.Second))), true
}

// forgetResumed ends the loop's own hold of groups resumed meanwhile (Resumed), so that
// their mail goes at once instead of when the old refusal would have ended.
func (l *loop) forgetResumed() {
	s := l.s
	s.heldMu.Lock()
	resumed := s.resumed
	s.resumed = nil
	s.heldMu.Unlock()
	for key := range resumed {
		if g := l.groups[key]; g != nil {
			g.until, g.reason = time.Time{}, ""
		}
	}
}
