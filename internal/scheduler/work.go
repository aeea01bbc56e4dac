package scheduler

import (
	"context"
	"net/netip"
	"sort"

	"github.com/repute-mail/repute/internal/delivery"
)

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
	if fb, ok := s.Shaper.(Feedback); ok && b.delivered {
		fb.Delivered(b.rt)
	}
}

// deliver loads the bodies of a batch and runs the Deliverer on the batch's route from
// the permit's source address. A route that could not be resolved is answered for every
// entry without a connection.
func (s *Scheduler) deliver(ctx context.Context, b *batch, report func([]delivery.Attempt)) {
	ids := make([]int64, 0, len(b.entries))
	for id := range b.entries {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	if f := b.rt.Fail; f != nil {
		for _, id := range ids {
			report([]delivery.Attempt{{QueueID: id, Rcpt: b.entries[id].Rcpt, Enhanced: f.Enhanced, Text: f.Text, Permanent: f.Permanent}})
		}
		return
	}
	byMsg := map[string]*delivery.Message{}
	var msgs []*delivery.Message
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
		var source netip.Addr
		if b.permit != nil {
			source = b.permit.Source
		}
		s.Deliverer.Deliver(ctx, b.rt, source, msgs, report)
	}
}
