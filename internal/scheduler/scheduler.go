// Package scheduler is the one loop that connects the outbound queue to delivery. For each
// entry it runs the same steps in the same order:
//
//	due → claim (lease) → route → shaper permit → deliver → outcome
//
// It claims due entries from the store in one atomic step (QueueClaim: selected and
// leased to this node together, so two nodes sharing one queue never take the same
// entry), resolves each destination domain's route (internal/route: MX hosts, provider,
// relay) off the loop, groups the entries by the route's destination group (a provider
// such as Google, whose thousands of Workspace domains are one receiver; or an unknown
// domain's MX host set), asks the shaper for a permit to open a connection to that group,
// and hands a batch for one domain to a delivery.Deliverer together with the route and
// the source address the permit names. Outcomes are recorded as they are reported:
// delivered entries leave the queue, temporary failures wait according to Policy,
// permanent failures and expired entries are returned to the sender with a delivery
// status notification, and every attempt is published through internal/outcome.
//
// Claimed entries wait in memory, per group, for a permit (at most ActiveLimit of each
// class, like Postfix's active queue). Transactional mail is claimed and sent before bulk
// mail (newsletters, campaigns), each class with its own budget, so a bulk backlog
// never delays a password reset. A destination that the shaper holds back by its rate
// keeps only a share of the budget in memory (the lookahead is bounded), so a provider
// at its limit never keeps another provider's mail from being claimed. The claim is served by the (state, next_attempt) index,
// so it costs the same with a thousand or a million entries queued: leased entries move
// out of the due range, and nothing is re-read while it is in flight.
//
// There is no goroutine per message and no sleeping per message: the loop wakes when new
// mail is queued (Wake), when a worker finishes, when a route is resolved, when the next
// entry falls due, and every ScanInterval. State lives only in the store, so a restart
// (or a kill -9) loses nothing: an entry being delivered at the moment of a crash is still
// queued under this node's lease, which start-up clears, so it may be delivered twice,
// never zero times.
//
// Upstream: internal/app (Run, Wake from the SMTP session and the control socket).
// Downstream: internal/store (through the Queue interface), internal/route,
// internal/shaper, internal/delivery (the network), internal/outcome, internal/dsn.
package scheduler

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/repute-mail/repute/internal/delivery"
	"github.com/repute-mail/repute/internal/outcome"
	"github.com/repute-mail/repute/internal/route"
	"github.com/repute-mail/repute/internal/shaper"
	"github.com/repute-mail/repute/internal/smtp"
	"github.com/repute-mail/repute/internal/store"
)

// leaseTime (the default Lease) bounds how long claimed entries are this node's: an
// entry whose lease ends without an outcome (its node died) is due again. Entries still
// waiting in memory when their lease ends are claimed again by this node, which renews
// the lease.
const leaseTime = 30 * time.Minute

// maxClaim bounds one claim, to keep the store's write transactions short.
const maxClaim = 1000

// maxResolving bounds the route lookups running at once.
const maxResolving = 32

// requeueAfter (the default HoldBack): a shaper refusal that lasts longer than this puts
// the group's waiting entries back in the queue, due when the refusal ends, instead of
// holding them in memory.
const requeueAfter = time.Minute

// Queue is what the scheduler needs of the store.
type Queue interface {
	QueueClaim(ctx context.Context, node, class string, now time.Time, limit int, lease time.Duration) ([]store.QueueEntry, error)
	QueueNextDueClass(ctx context.Context, class string) (time.Time, bool, error)
	QueueCountDue(ctx context.Context, class string, now time.Time) (int, error)
	QueueRequeue(ctx context.Context, ids []int64, next time.Time) error
	QueueRetry(ctx context.Context, sel store.QueueSelector) (int64, error)
	QueueClearLeases(ctx context.Context, node string) error
	QueueRecord(ctx context.Context, now time.Time, outs []store.Outcome) error
	QueueBounce(ctx context.Context, ids []int64, dsn *store.Delivery) ([]store.Stored, error)
	QueueWarn(ctx context.Context, ids []int64, notice *store.Delivery) ([]store.Stored, error)
	Blob(ctx context.Context, id int64) ([]byte, error)
	Resolve(ctx context.Context, addr smtp.Address) ([]store.Target, error)
	Suppressed(ctx context.Context, senderDomain, address string) (*store.Suppression, error)
}

// Routes resolves destination domains (a *route.Resolver).
type Routes interface {
	Cached(domain string) (route.Route, bool)
	Resolve(ctx context.Context, domain string) route.Route
}

// Shaper grants connections (a *shaper.Engine).
type Shaper interface {
	Acquire(rt route.Route, now time.Time) (*shaper.Permit, *shaper.Refusal)
}

// Observer is a shaper that learns from the outcomes of the connections it granted (the
// engine does): it is told every attempt, before the delivery goes on to the next
// message, and its verdict can hold a throttled or blocked message back.
type Observer interface {
	Observe(p *shaper.Permit, fb shaper.Feedback, now time.Time) shaper.Verdict
}

// Scheduler delivers the outbound queue. Set the fields, then Run.
type Scheduler struct {
	DB        Queue
	Deliverer delivery.Deliverer
	// Routes resolves destinations; nil makes every domain its own group, without lookups.
	Routes Routes
	// Shaper grants connections; nil: a shaper.Engine with Concurrency connections,
	// and PerDomain and BatchSize for destinations that are no known provider.
	Shaper Shaper
	// Outcomes classifies failed attempts' replies and publishes every attempt (event
	// log, counts, suppression). nil: nothing is classified or published.
	Outcomes *outcome.Recorder
	// HoldDirect, when set, returns the relay ("host:port") that mail must go through
	// instead of directly to the recipients' servers, or "" when direct delivery is
	// allowed (outbound.direct_when = "checks_pass" until the set-up checks pass).
	HoldDirect func() string
	Policy     Policy
	Hostname   string // reporting MTA in notices
	Logger     *slog.Logger
	// Delivered is told about notices stored in local mailboxes (IMAP notifications).
	Delivered func([]store.Stored)
	// EnvelopeFrom gives the envelope sender a message leaves with (the bounce address
	// tag of internal/verp); nil sends with the sender as queued.
	EnvelopeFrom func(from, msgID string) string
	// Node names this process in queue leases (several nodes may share one queue).
	Node string
	// Concurrency bounds deliveries in progress; PerDomain the connections to one
	// destination group; BatchSize the messages per connection (defaults of the
	// built-in shaper). ActiveLimit bounds the entries of each class (transactional,
	// bulk) claimed and waiting in memory.
	Concurrency  int
	PerDomain    int
	BatchSize    int
	ActiveLimit  int
	ScanInterval time.Duration
	// Lease is how long claimed entries are this node's (0: 30 minutes); HoldBack is
	// the shaper refusal beyond which waiting entries go back to the queue (0: a
	// minute). Both are scaled down in simulations.
	Lease    time.Duration
	HoldBack time.Duration
	// BulkSpread paces bulk mail: a backlog of bulk mail is claimed evenly over this
	// window (scaled in simulations), so that each provider sees a steady rate rather
	// than a burst. 0: bulk mail goes as fast as the shaper allows.
	BulkSpread time.Duration
	Now        func() time.Time
	Jitter     func() float64

	wake chan struct{}
	once sync.Once

	heldMu  sync.Mutex
	held    map[string]map[string]bool // domains put back while their group was paused, by group
	resumed map[string]bool            // groups resumed since the loop last looked
}

// noteHeld remembers that entries of domain wait for their group's pause to end.
func (s *Scheduler) noteHeld(group, domain string) {
	s.heldMu.Lock()
	defer s.heldMu.Unlock()
	if s.held == nil {
		s.held = map[string]map[string]bool{}
	}
	if s.held[group] == nil {
		s.held[group] = map[string]bool{}
	}
	s.held[group][domain] = true
}

// Resumed makes the mail that waits for a paused group due now (the admin resumed it, or
// a probe succeeded) and wakes the loop.
func (s *Scheduler) Resumed(ctx context.Context, group string) {
	s.init()
	s.heldMu.Lock()
	domains := s.held[group]
	delete(s.held, group)
	if s.resumed == nil {
		s.resumed = map[string]bool{}
	}
	s.resumed[group] = true
	s.heldMu.Unlock()
	for d := range domains {
		if _, err := s.DB.QueueRetry(ctx, store.QueueSelector{Domain: d}); err != nil {
			s.Logger.Warn("queue: making mail of a resumed destination due failed; it waits for its time", "domain", d, "err", err)
		}
	}
	s.Wake()
}

func (s *Scheduler) init() {
	s.once.Do(func() {
		s.wake = make(chan struct{}, 1)
		if s.Logger == nil {
			s.Logger = slog.Default()
		}
		if s.Now == nil {
			s.Now = time.Now
		}
		if s.Jitter == nil {
			s.Jitter = rand.Float64
		}
		if s.Concurrency <= 0 {
			s.Concurrency = 20
		}
		if s.PerDomain <= 0 {
			s.PerDomain = min(10, s.Concurrency)
		}
		if s.BatchSize <= 0 {
			s.BatchSize = 50
		}
		if s.ActiveLimit <= 0 {
			s.ActiveLimit = 4 * s.Concurrency * s.BatchSize
		}
		if s.ScanInterval <= 0 {
			s.ScanInterval = 30 * time.Second
		}
		if s.Lease <= 0 {
			s.Lease = leaseTime
		}
		if s.HoldBack <= 0 {
			s.HoldBack = requeueAfter
		}
		if s.Node == "" {
			s.Node = "local"
		}
		if s.Shaper == nil {
			s.Shaper = &shaper.Engine{MaxConnections: s.Concurrency, Profiles: map[string]shaper.Profile{
				shaper.DefaultProvider: {MaxConnections: s.PerDomain, MessagesPerConnection: s.BatchSize}}}
		}
		if s.Routes == nil {
			s.Routes = ownGroups{}
		}
	})
}

// ownGroups is the Routes of a Scheduler without a resolver: each domain is a group.
type ownGroups struct{}

func (ownGroups) Cached(domain string) (route.Route, bool) {
	return route.Route{Domain: domain, Group: domain}, true
}

func (ownGroups) Resolve(_ context.Context, domain string) route.Route {
	return route.Route{Domain: domain, Group: domain}
}

// Wake makes the loop look at the queue now (new mail was queued, or an admin made
// entries due). It never blocks.
func (s *Scheduler) Wake() {
	s.init()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// batch is one worker's job: entries of one domain, delivered on one route under one
// permit (nil for a route that failed: no connection is made).
type batch struct {
	rt      route.Route
	permit  *shaper.Permit
	entries map[int64]store.QueueEntry
}

// Run delivers until ctx ends, then waits for the deliveries in progress (each bounded by
// its own timeouts), puts what it had claimed but not started back in the queue, and
// returns.
func (s *Scheduler) Run(ctx context.Context) error {
	s.init()
	if err := s.DB.QueueClearLeases(ctx, s.Node); err != nil {
		s.Logger.Error("queue: clearing this node's leases failed", "node", s.Node, "err", err)
	}
	l := newLoop(s)
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		if ctx.Err() == nil {
			l.forgetResumed()
			l.claim(ctx)
			l.dispatch(ctx)
		}
		s.resetTimer(ctx, timer, l)
		select {
		case <-ctx.Done():
			l.stop()
			return nil
		case <-s.wake:
		case <-timer.C:
		case r := <-l.resolved:
			l.routed(ctx, r)
		case b := <-l.results:
			l.finished(b)
		}
	}
}

// resetTimer arms the timer for the next due entry, the end of a shaper refusal, or
// ScanInterval, whichever is soonest.
func (s *Scheduler) resetTimer(ctx context.Context, t *time.Timer, l *loop) {
	now := s.Now()
	wait := s.ScanInterval
	for _, class := range classes {
		if !l.canClaim(class) {
			continue
		}
		d := l.due[class]
		if !d.known {
			next, ok, err := s.DB.QueueNextDueClass(ctx, class)
			d = dueAt{next, ok && err == nil, true}
		}
		if d.ok {
			wait = min(wait, d.at.Sub(now))
		}
	}
	// The queue keeps seconds: an entry due "now" is looked at again after a short
	// pause, not in a busy loop. The end of a shaper refusal (the next token of a
	// paced lane) is precise, and may be milliseconds away in a simulation.
	wait = max(wait, min(100*time.Millisecond, s.ScanInterval))
	if w, ok := l.nextWait(); ok {
		wait = min(wait, max(w.Sub(now), time.Millisecond))
	}
	if w, ok := l.bulk.nextToken(now); ok {
		wait = min(wait, max(w.Sub(now), time.Millisecond))
	}
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(wait)
}
