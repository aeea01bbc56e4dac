package scheduler

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/repute-mail/repute/internal/delivery"
	"github.com/repute-mail/repute/internal/obs"
	"github.com/repute-mail/repute/internal/outcome"
	"github.com/repute-mail/repute/internal/route"
	"github.com/repute-mail/repute/internal/shaper"
	"github.com/repute-mail/repute/internal/store"
)

// fakeRoutes puts the domains of google in one group, as the MX rollup does for Google
// Workspace domains, and every other domain in a group of its own.
type fakeRoutes struct {
	mu      sync.Mutex
	google  map[string]bool
	lookups map[string]int
}

func (r *fakeRoutes) Cached(string) (route.Route, bool) { return route.Route{}, false }

func (r *fakeRoutes) Resolve(_ context.Context, domain string) route.Route {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lookups[domain]++
	if r.google[domain] {
		return route.Route{Domain: domain, Provider: "google", Group: "google"}
	}
	return route.Route{Domain: domain, Group: "mx:mx." + domain}
}

// refusing refuses one group, and lets the built-in limits decide for the others.
type refusing struct {
	group string
	next  time.Time
	limits
	mu    sync.Mutex
	asked map[string]int
}

type limits = shaper.Engine

func (s *refusing) Acquire(rt route.Route, now time.Time) (*shaper.Permit, *shaper.Refusal) {
	s.mu.Lock()
	s.asked[rt.Group]++
	s.mu.Unlock()
	if rt.Group == s.group {
		return nil, &shaper.Refusal{Next: s.next, Reason: shaper.ReasonPaused}
	}
	return s.limits.Acquire(rt, now)
}

// TestShaperRefusesOneProvider: while the shaper refuses the google group, mail to both
// Workspace domains waits in the queue (not attempted, due when the refusal ends) and
// mail to other destinations flows.
func TestShaperRefusesOneProvider(t *testing.T) {
	d := &scripted{answer: func(string) delivery.Attempt { return delivery.Attempt{Code: 250} }}
	f := newFixture(t, d)
	routes := &fakeRoutes{google: map[string]bool{"ws1.test": true, "ws2.test": true}, lookups: map[string]int{}}
	sh := &refusing{group: "google", next: f.now.Add(2 * time.Hour), asked: map[string]int{}}
	f.sched.Routes, f.sched.Shaper = routes, sh
	var mu sync.Mutex
	throttled := map[string]outcome.Event{}
	f.rec.Bus.Subscribe(outcome.SubscriberFunc(func(_ context.Context, evs []outcome.Event) error {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range evs {
			if e.Event.Event == obs.Throttled {
				throttled[e.Rcpt] = e
			}
		}
		return nil
	}))
	f.run(t)
	f.queue(t, "alice@a.test", "a@ws1.test", "b@ws2.test", "c@other.test", "d@else.test")
	waitFor(t, "other destinations to be delivered", func() bool {
		q := f.entries(t)
		if len(q) != 2 {
			return false
		}
		for _, e := range q {
			if e.Attempts != 0 || !strings.HasPrefix(e.Domain, "ws") || e.NextAttempt < sh.next.Unix() {
				return false
			}
		}
		return true
	})
	if n := d.calls.Load(); n != 2 {
		t.Errorf("%d deliveries, want 2 (other.test and else.test only)", n)
	}
	mu.Lock()
	for _, rcpt := range []string{"a@ws1.test", "b@ws2.test"} {
		e, ok := throttled[rcpt]
		if !ok || e.Reason != shaper.ReasonPaused || !e.NextAttempt.Equal(sh.next) || e.Provider != "google" {
			t.Errorf("throttled event for %s: %+v (found %v)", rcpt, e.Event, ok)
		}
	}
	if len(throttled) != 2 {
		t.Errorf("%d throttled events, want 2", len(throttled))
	}
	mu.Unlock()
	sh.mu.Lock()
	if n := sh.asked["google"]; n < 1 || n > 2 {
		t.Errorf("the shaper was asked %d times for google, want at most once per domain", n)
	}
	sh.mu.Unlock()

	// The refusal ends: both Workspace domains go out.
	sh.mu.Lock()
	sh.group = ""
	sh.mu.Unlock()
	f.mu.Lock()
	f.now = sh.next
	f.mu.Unlock()
	f.sched.Wake()
	waitFor(t, "the held-back mail to leave", func() bool { return len(f.entries(t)) == 0 })
}

// TestShaperRefusalUntilRelease: a group refused until a connection is released keeps
// its entries claimed in memory and starts them as soon as one is.
func TestShaperRefusalUntilRelease(t *testing.T) {
	d := &scripted{hold: make(chan struct{}), holdFor: "busy.test", answer: func(string) delivery.Attempt { return delivery.Attempt{Code: 250} }}
	f := newFixture(t, d)
	f.sched.PerDomain = 1
	f.sched.BatchSize = 1
	f.run(t)
	f.queue(t, "alice@a.test", "a@busy.test", "b@busy.test", "c@free.test")
	waitFor(t, "free.test delivered while busy.test has its one connection", func() bool {
		for _, e := range f.entries(t) {
			if e.Domain == "free.test" {
				return false
			}
		}
		return d.active.Load() == 1
	})
	time.Sleep(50 * time.Millisecond) // let a wrongly started second connection show up
	if n := d.active.Load(); n != 1 {
		t.Errorf("%d connections to busy.test at once, want its limit 1", n)
	}
	close(d.hold)
	waitFor(t, "the queue to drain", func() bool { return len(f.entries(t)) == 0 })
}

// failingClaims is the store with claims that fail while fail is set.
type failingClaims struct {
	Queue
	fail   atomic.Bool
	failed atomic.Int64
}

func (q *failingClaims) QueueClaim(ctx context.Context, node, class string, now time.Time, limit int, lease time.Duration) ([]store.QueueEntry, error) {
	if q.fail.Load() {
		q.failed.Add(1)
		return nil, errors.New("database is locked")
	}
	return q.Queue.QueueClaim(ctx, node, class, now, limit, lease)
}

// TestFailedClaimDeliversNothing: when entries cannot be leased, nothing is delivered
// (another node could be delivering them); once claims work again, they go out.
func TestFailedClaimDeliversNothing(t *testing.T) {
	d := &scripted{answer: func(string) delivery.Attempt { return delivery.Attempt{Code: 250} }}
	f := newFixture(t, d)
	q := &failingClaims{Queue: f.db}
	q.fail.Store(true)
	f.sched.DB = q
	f.run(t)
	f.queue(t, "alice@a.test", "u@one.test", "v@two.test")
	waitFor(t, "several failed claims", func() bool { return q.failed.Load() >= 3 })
	if n := d.calls.Load(); n != 0 {
		t.Fatalf("%d deliveries without a lease", n)
	}
	q.fail.Store(false)
	f.sched.Wake()
	waitFor(t, "delivery once claims work", func() bool { return len(f.entries(t)) == 0 })
}

// TestTransactionalFirst: with a bulk backlog for a destination that takes one
// connection of one message at a time, a transactional message queued afterwards is the
// next one sent there, and a full memory of bulk entries does not keep it from being
// claimed.
func TestTransactionalFirst(t *testing.T) {
	var mu sync.Mutex
	var order []string
	gate := make(chan struct{})
	d := &scripted{answer: func(string) delivery.Attempt { return delivery.Attempt{Code: 250} },
		seen: func(m *delivery.Message) {
			mu.Lock()
			order = append(order, m.Rcpts[0].Address)
			first := len(order) == 1
			mu.Unlock()
			if first {
				<-gate // the first bulk message holds the one connection
			}
		}}
	f := newFixture(t, d)
	f.sched.PerDomain, f.sched.BatchSize, f.sched.ActiveLimit = 1, 1, 5
	ctx := context.Background()
	var bulk []string
	for i := range 20 {
		bulk = append(bulk, fmt.Sprintf("n%02d@dest.test", i))
	}
	if _, err := f.db.Accept(ctx, &store.Delivery{MsgID: store.NewID(f.now), From: "news@a.test", Body: []byte("x\r\n"),
		Remote: bulk, Received: f.now, Class: store.ClassBulk}); err != nil {
		t.Fatal(err)
	}
	f.run(t)
	waitFor(t, "the first bulk message in flight", func() bool { mu.Lock(); defer mu.Unlock(); return len(order) == 1 })
	f.queue(t, "alice@a.test", "reset@dest.test") // a password reset, transactional
	waitFor(t, "the transactional message to be claimed while the bulk budget is full", func() bool {
		for _, e := range f.entries(t) {
			if e.Rcpt == "reset@dest.test" {
				return e.NextAttempt > f.now.Add(time.Minute).Unix() // leased
			}
		}
		return false
	})
	close(gate)
	waitFor(t, "the queue to drain", func() bool { return len(f.entries(t)) == 0 })
	mu.Lock()
	defer mu.Unlock()
	if len(order) != 21 || order[1] != "reset@dest.test" {
		t.Errorf("order of delivery %v: want the transactional message right after the bulk one in flight", order[:min(4, len(order))])
	}
}

// refuseOne is a Deliverer for one destination with several connections open at once:
// the first connection is refused at connect ("421 4.3.2 too many connections") while the
// others are still open; those deliver once proceed is closed.
type refuseOne struct {
	started sync.WaitGroup
	n       atomic.Int64
	proceed chan struct{}
}

func (d *refuseOne) Deliver(ctx context.Context, rt route.Route, _ netip.Addr, msgs []*delivery.Message, report func([]delivery.Attempt)) {
	i := d.n.Add(1)
	first := i == 1
	if i <= 4 { // the four first connections are open at once
		d.started.Done()
		d.started.Wait()
	}
	for _, m := range msgs {
		var out []delivery.Attempt
		for _, r := range m.Rcpts {
			a := delivery.Attempt{QueueID: r.QueueID, Rcpt: r.Address, Code: 250}
			if first {
				a = delivery.Attempt{QueueID: r.QueueID, Rcpt: r.Address, Code: 421, Enhanced: "4.3.2", Stage: delivery.StageConnect,
					MX: "mx.busy.test", Text: "The maximum number of concurrent server connections has exceeded a limit"}
			} else {
				select {
				case <-d.proceed:
				case <-ctx.Done():
				}
			}
			out = append(out, a)
		}
		report(out)
	}
}

// TestConnectRefusalLowersConnections: a destination that refuses one connection more
// than it takes ("421 4.3.2 too many connections") costs no attempt: the entry waits
// HoldBack, the shaper allows fewer connections to that group, and a throttled event
// says why.
func TestConnectRefusalLowersConnections(t *testing.T) {
	d := &refuseOne{proceed: make(chan struct{})}
	d.started.Add(4)
	f := newFixture(t, d)
	limits := &shaper.Engine{MaxConnections: 8, Profiles: map[string]shaper.Profile{
		shaper.DefaultProvider: {MaxConnections: 8, MessagesPerConnection: 1}}}
	f.sched.Shaper, f.sched.HoldBack, f.sched.BatchSize = limits, time.Hour, 1
	var mu sync.Mutex
	var throttled []outcome.Event
	f.rec.Bus.Subscribe(outcome.SubscriberFunc(func(_ context.Context, evs []outcome.Event) error {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range evs {
			if e.Event.Event == obs.Throttled {
				throttled = append(throttled, e)
			}
		}
		return nil
	}))
	f.queue(t, "alice@a.test", "u1@busy.test", "u2@busy.test", "u3@busy.test", "u4@busy.test")
	f.run(t)
	heldUntil := f.now.Add(time.Hour).Unix()
	waitFor(t, "the refused entry to be held back", func() bool {
		for _, e := range f.entries(t) {
			if e.NextAttempt >= heldUntil-1 && e.NextAttempt <= heldUntil+1 && e.Attempts == 0 && e.LastAttempt == 0 {
				return true
			}
		}
		return false
	})
	got := -1
	for _, st := range limits.Status(f.now) {
		if st.Group == "busy.test" {
			got = st.MaxConnections
		}
	}
	if got != 2 {
		t.Errorf("allowed connections to busy.test: %d, want 2 (4 were open when one was refused: half)", got)
	}
	mu.Lock()
	if len(throttled) != 1 || throttled[0].Reason != shaper.ReasonConnections {
		t.Errorf("throttled events %+v", throttled)
	}
	mu.Unlock()
	close(d.proceed)
	waitFor(t, "the other three delivered", func() bool { return len(f.entries(t)) == 1 })
	// Time passes; the held-back entry leaves too.
	f.mu.Lock()
	f.now = f.now.Add(time.Hour)
	f.mu.Unlock()
	f.sched.Wake()
	waitFor(t, "delivery after the hold-back", func() bool { return len(f.entries(t)) == 0 })
}

// TestBulkSpread: with bulk_spread, a backlog of bulk mail is claimed evenly over the
// window instead of at once: half the window, about half the mail; a transactional
// message meanwhile is not paced.
func TestBulkSpread(t *testing.T) {
	var delivered atomic.Int64
	d := &scripted{answer: func(string) delivery.Attempt { delivered.Add(1); return delivery.Attempt{Code: 250} }}
	f := newFixture(t, d)
	f.sched.BulkSpread, f.sched.ScanInterval = 100*time.Second, 10*time.Second
	var bulk []string
	for i := range 100 {
		bulk = append(bulk, fmt.Sprintf("n%03d@dest%d.test", i, i%7))
	}
	if _, err := f.db.Accept(context.Background(), &store.Delivery{MsgID: store.NewID(f.now), From: "news@a.test",
		Body: []byte("x\r\n"), Remote: bulk, Received: f.now, Class: store.ClassBulk}); err != nil {
		t.Fatal(err)
	}
	f.run(t)
	step := func() {
		f.mu.Lock()
		f.now = f.now.Add(10 * time.Second)
		f.mu.Unlock()
		f.sched.Wake()
		time.Sleep(50 * time.Millisecond)
	}
	waitFor(t, "the first bulk message", func() bool { return delivered.Load() >= 1 })
	for range 5 {
		step()
	}
	waitFor(t, "deliveries of the first half of the window to settle", func() bool { return delivered.Load() >= 40 })
	time.Sleep(100 * time.Millisecond)
	if n := delivered.Load(); n < 40 || n > 62 {
		t.Fatalf("%d of 100 bulk messages after half the window, want about half", n)
	}
	f.queue(t, "alice@a.test", "reset@dest0.test")
	waitFor(t, "the transactional message, unpaced", func() bool {
		for _, e := range f.entries(t) {
			if e.Rcpt == "reset@dest0.test" {
				return false
			}
		}
		return true
	})
	for range 8 {
		step()
	}
	waitFor(t, "the rest of the backlog by the end of the window", func() bool { return len(f.entries(t)) == 0 })
}

// slowGroup paces one group (a refusal for "rate" that lasts a moment, every time but
// one in ten) and lets the built-in limits decide for the others.
type slowGroup struct {
	group string
	limits
	mu sync.Mutex
	n  int
}

func (s *slowGroup) Acquire(rt route.Route, now time.Time) (*shaper.Permit, *shaper.Refusal) {
	if rt.Group == s.group {
		s.mu.Lock()
		s.n++
		n := s.n
		s.mu.Unlock()
		if n%10 != 0 {
			return nil, &shaper.Refusal{Next: now.Add(time.Millisecond), Reason: shaper.ReasonRate}
		}
	}
	return s.limits.Acquire(rt, now)
}

// TestLookaheadBounded: a destination held back by its rate with a large backlog keeps
// only part of the claim budget in memory; mail for other destinations, queued after the
// backlog, is claimed and delivered meanwhile.
func TestLookaheadBounded(t *testing.T) {
	var fast atomic.Int64
	d := &scripted{answer: func(rcpt string) delivery.Attempt {
		if strings.HasSuffix(rcpt, "@fast.test") {
			fast.Add(1)
		}
		return delivery.Attempt{Code: 250}
	}}
	f := newFixture(t, d)
	f.sched.ActiveLimit, f.sched.BatchSize = 400, 10
	f.sched.Shaper = &slowGroup{group: "slow.test"}
	var slow []string
	for i := range 2000 {
		slow = append(slow, fmt.Sprintf("u%04d@slow.test", i))
	}
	if _, err := f.db.Accept(context.Background(), &store.Delivery{MsgID: store.NewID(f.now), From: "news@a.test",
		Body: []byte("x\r\n"), Remote: slow, Received: f.now}); err != nil {
		t.Fatal(err)
	}
	f.run(t)
	time.Sleep(50 * time.Millisecond)
	var others []string
	for i := range 20 {
		others = append(others, fmt.Sprintf("v%02d@fast.test", i))
	}
	f.queue(t, "alice@a.test", others...)
	waitFor(t, "the other destination's mail", func() bool { return fast.Load() == 20 })
	if n := len(f.entries(t)); n < 1000 {
		t.Fatalf("%d entries left: the slow destination was not held back, the test shows nothing", n)
	}
}
