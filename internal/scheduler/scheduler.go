// Package scheduler is the one loop that connects the outbound queue to delivery: it finds
// queue entries that are due, hands them to a delivery.Deliverer in batches per
// destination domain with bounded concurrency, and records each outcome: delivered entries
// leave the queue, temporary failures wait according to Policy, permanent failures and
// expired entries are returned to the sender with a delivery status notification.
//
// There is no goroutine per message and no sleeping per message: the loop wakes when new
// mail is queued (Wake), when a worker finishes, when the next entry falls due, and every
// ScanInterval to pick up entries queued by other processes. State lives only in the
// store, so a restart (or a kill -9) loses nothing: an entry being delivered at the moment
// of a crash is still queued and is tried again, so it may be delivered twice, never zero
// times.
//
// Upstream: internal/app (Run, Wake from the SMTP session). Downstream: internal/store
// (queue rows), internal/delivery (the network), internal/dsn (notices), internal/obs
// (mail events).
package scheduler

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/repute-mail/repute/internal/classify"
	"github.com/repute-mail/repute/internal/delivery"
	"github.com/repute-mail/repute/internal/obs"
	"github.com/repute-mail/repute/internal/store"
)

// leaseTime bounds one batch's delivery; an entry whose lease ends without an outcome (its
// process died) is due again.
const leaseTime = 30 * time.Minute

// Scheduler delivers the outbound queue. Set the fields, then Run.
type Scheduler struct {
	DB        *store.DB
	Deliverer delivery.Deliverer
	Policy    Policy
	Hostname  string // reporting MTA in notices
	Events    *obs.EventLog
	Logger    *slog.Logger
	// Delivered is told about notices stored in local mailboxes (IMAP notifications).
	Delivered func([]store.Stored)
	// Classifier reads failed attempts' replies: their category and provider go into the
	// event log, and permanent failures that say the recipient is gone suppress it for
	// the sending domain. nil: no classification, no automatic suppression.
	Classifier *classify.Classifier
	// EnvelopeFrom gives the envelope sender a message leaves with (the bounce address
	// tag of internal/verp); nil sends with the sender as queued.
	EnvelopeFrom func(from, msgID string) string
	// Concurrency bounds deliveries in progress; PerDomain bounds those to one domain
	// (parallel connections to one destination), BatchSize the messages per connection.
	Concurrency  int
	PerDomain    int
	BatchSize    int
	ScanInterval time.Duration
	Now          func() time.Time
	Jitter       func() float64

	wake chan struct{}
	once sync.Once
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
		if s.ScanInterval <= 0 {
			s.ScanInterval = 30 * time.Second
		}
	})
}

// Wake makes the loop look at the queue now (new mail was queued). It never blocks.
func (s *Scheduler) Wake() {
	s.init()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// batch is one worker's job: entries for one domain, grouped into messages.
type batch struct {
	domain  string
	entries map[int64]store.QueueEntry
}

// result tells the loop that a batch is finished (and its outcomes recorded).
type result struct{ b *batch }

// Run delivers until ctx ends, then waits for the deliveries in progress (each bounded by
// its own timeouts) before returning.
func (s *Scheduler) Run(ctx context.Context) error {
	s.init()
	results := make(chan result)
	inflight := map[int64]bool{}
	perDomain := map[string]int{}
	running := 0
	var wg sync.WaitGroup
	defer wg.Wait()
	if err := s.DB.QueueClearLeases(ctx); err != nil {
		s.Logger.Error("queue: clearing leases failed", "err", err)
	}
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		if ctx.Err() == nil && running < s.Concurrency {
			s.dispatch(ctx, inflight, perDomain, &running, results, &wg)
		}
		s.resetTimer(ctx, timer)
		select {
		case <-ctx.Done():
			// Workers see ctx too; collect what they finish so outcomes are recorded.
			for running > 0 {
				r := <-results
				running--
				release(r.b, inflight, perDomain)
			}
			return nil
		case <-s.wake:
		case <-timer.C:
		case r := <-results:
			running--
			release(r.b, inflight, perDomain)
		}
	}
}

// resetTimer arms the timer for the next due entry, or ScanInterval, whichever is sooner.
func (s *Scheduler) resetTimer(ctx context.Context, t *time.Timer) {
	wait := s.ScanInterval
	if next, ok, err := s.DB.QueueNextDue(ctx); err == nil && ok {
		if d := next.Sub(s.Now()); d < wait {
			wait = max(d, 100*time.Millisecond)
		}
	}
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(wait)
}

// dispatch starts workers for due entries, round-robin over destination domains, until
// the concurrency limits are reached or nothing more is due.
func (s *Scheduler) dispatch(ctx context.Context, inflight map[int64]bool, perDomain map[string]int,
	running *int, results chan<- result, wg *sync.WaitGroup) {
	for pass := 0; pass < 4 && *running < s.Concurrency; pass++ {
		start := s.plan(ctx, inflight, perDomain, *running)
		if len(start) == 0 {
			return
		}
		// Lease before delivering, so that no outcome can be overwritten by the lease.
		var ids []int64
		for _, b := range start {
			for id := range b.entries {
				inflight[id] = true
				ids = append(ids, id)
			}
		}
		if err := s.DB.QueueLease(ctx, ids, s.Now().Add(leaseTime)); err != nil {
			s.Logger.Warn("queue: leasing entries failed; delivering anyway", "err", err)
		}
		for _, b := range start {
			*running++
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.work(ctx, b)
				results <- result{b: b}
			}()
		}
	}
}

// plan reads due entries of destinations that can take another connection and groups
// them into the batches to start now (counting them in perDomain).
func (s *Scheduler) plan(ctx context.Context, inflight map[int64]bool, perDomain map[string]int, running int) []*batch {
	var full []string
	for d, n := range perDomain {
		if n >= s.PerDomain {
			full = append(full, d)
		}
	}
	free := s.Concurrency - running
	due, err := s.DB.QueueDue(ctx, s.Now(), free*s.BatchSize, full)
	if err != nil {
		s.Logger.Error("queue: reading due entries failed", "err", err)
		return nil
	}
	batches := map[string][]*batch{}
	var order []string
	for _, e := range due {
		if inflight[e.ID] {
			continue
		}
		bs := batches[e.Domain]
		if len(bs) == 0 || len(bs[len(bs)-1].entries) >= s.BatchSize {
			if len(bs) == 0 {
				order = append(order, e.Domain)
			}
			bs = append(bs, &batch{domain: e.Domain, entries: map[int64]store.QueueEntry{}})
			batches[e.Domain] = bs
		}
		bs[len(bs)-1].entries[e.ID] = e
	}
	var start []*batch
	for progress := true; progress && len(start) < free; {
		progress = false
		for _, d := range order { // one batch per domain per round
			if len(start) >= free || perDomain[d] >= s.PerDomain || len(batches[d]) == 0 {
				continue
			}
			start = append(start, batches[d][0])
			batches[d] = batches[d][1:]
			perDomain[d]++
			progress = true
		}
	}
	return start
}

// release frees a finished batch's entries for the next dispatch.
func release(b *batch, inflight map[int64]bool, perDomain map[string]int) {
	for id := range b.entries {
		delete(inflight, id)
	}
	if perDomain[b.domain]--; perDomain[b.domain] <= 0 {
		delete(perDomain, b.domain)
	}
}

// work delivers one batch. Outcomes are recorded as they are reported, by a recorder
// goroutine that folds whatever has arrived into one write, so delivery never waits for
// the disk and a crash repeats only the few messages not yet recorded.
func (s *Scheduler) work(ctx context.Context, b *batch) {
	reports := make(chan []delivery.Attempt, 64)
	recorded := make(chan struct{})
	go func() {
		defer close(recorded)
		reported := map[int64]bool{}
		for as := range reports {
		more:
			for {
				select {
				case x, ok := <-reports:
					if !ok {
						break more
					}
					as = append(as, x...)
				default:
					break more
				}
			}
			s.record(b, as, reported)
		}
		// Entries the Deliverer never reported (it was interrupted) are retried.
		var missing []delivery.Attempt
		for id, e := range b.entries {
			if !reported[id] {
				missing = append(missing, delivery.Attempt{QueueID: id, Rcpt: e.Rcpt, Text: "delivery interrupted before a result"})
			}
		}
		if len(missing) > 0 {
			s.record(b, missing, reported)
		}
	}()
	s.deliver(ctx, b, func(as []delivery.Attempt) { reports <- as })
	close(reports)
	<-recorded
}

// deliver loads the bodies of a batch and runs the Deliverer.
func (s *Scheduler) deliver(ctx context.Context, b *batch, report func([]delivery.Attempt)) {
	byMsg := map[string]*delivery.Message{}
	var msgs []*delivery.Message
	ids := make([]int64, 0, len(b.entries))
	for id := range b.entries {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		e := b.entries[id]
		if a, refused := s.checkSuppressed(ctx, e); refused {
			report([]delivery.Attempt{a})
			continue
		}
		m := byMsg[e.MsgID]
		if m == nil {
			body, err := s.DB.Blob(ctx, e.BlobID)
			if err != nil {
				report([]delivery.Attempt{{QueueID: id, Rcpt: e.Rcpt, Text: "reading the queued message: " + err.Error()}})
				continue
			}
			from := e.From
			if s.EnvelopeFrom != nil {
				from = s.EnvelopeFrom(from, e.MsgID)
			}
			m = &delivery.Message{ID: e.MsgID, From: from, Body: body, RequireTLS: e.RequireTLS}
			byMsg[e.MsgID] = m
			msgs = append(msgs, m)
		}
		m.Rcpts = append(m.Rcpts, delivery.Recipient{QueueID: id, Address: e.Rcpt})
	}
	if len(msgs) > 0 {
		s.Deliverer.Deliver(ctx, b.domain, msgs, report)
	}
}
