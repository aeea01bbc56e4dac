package scheduler

import (
	"context"
	"net/netip"
	"sort"

	"github.com/repute-mail/repute/internal/classify"
	"github.com/repute-mail/repute/internal/delivery"
	"github.com/repute-mail/repute/internal/shaper"
)

// work delivers one batch. Each attempt is judged as it is reported (its reply
// classified, the shaper told, so that a block stops the rest of the batch before the
// next message), and recorded by a recorder goroutine that folds whatever has arrived
// into one write, so delivery never waits for the disk and a crash repeats only the few
// messages not yet recorded.
func (s *Scheduler) work(ctx context.Context, b *batch) {
	reports := make(chan []judged, 64)
	recorded := make(chan struct{})
	go func() {
		defer close(recorded)
		reported := map[int64]bool{}
		for js := range reports {
		more:
			for {
				select {
				case x, ok := <-reports:
					if !ok {
						break more
					}
					js = append(js, x...)
				default:
					break more
				}
			}
			s.record(b, js, reported)
		}
		// Entries the Deliverer never reported (it was interrupted) are retried.
		var missing []judged
		for id, e := range b.entries {
			if !reported[id] {
				missing = append(missing, judged{a: delivery.Attempt{QueueID: id, Rcpt: e.Rcpt, Text: "delivery interrupted before a result"}})
			}
		}
		if len(missing) > 0 {
			s.record(b, missing, reported)
		}
	}()
	dctx := ctx
	if b.permit != nil {
		dctx = delivery.WithStop(ctx, b.permit.Stopped)
	}
	j := judge{s: s, b: b}
	s.deliver(dctx, b, func(as []delivery.Attempt) { reports <- j.all(as) })
	close(reports)
	<-recorded
}

// judged is an attempt with its classified reply (failures only) and the shaper's
// verdict.
type judged struct {
	a delivery.Attempt
	c classify.Result
	v shaper.Verdict
}

// judge classifies a batch's attempts and tells the shaper, in delivery's goroutine.
type judge struct {
	s       *Scheduler
	b       *batch
	connect *shaper.Verdict // the verdict on the batch's refused connection
	closing *shaper.Verdict // the verdict on the reply that closed the connection
}

func (j *judge) all(as []delivery.Attempt) []judged {
	out := make([]judged, len(as))
	for i, a := range as {
		out[i] = j.one(a)
	}
	return out
}

func (j *judge) one(a delivery.Attempt) judged {
	s := j.s
	r := judged{a: a}
	delivered := a.Code >= 200 && a.Code < 300
	if !delivered {
		r.c = s.Outcomes.Classify(a.Code, a.Enhanced, a.Text, a.MX)
	}
	o, ok := s.Shaper.(Observer)
	if !ok || j.b.permit == nil {
		return r
	}
	// One refused connection, or one reply that closed it, is one signal however many
	// messages it leaves unsent: those share the verdict of the first.
	switch {
	case a.Stage == delivery.StageNotSent && j.closing != nil:
		r.v = *j.closing
		r.v.NotAttempt = r.v.NotAttempt || !r.v.Hold.IsZero()
		return r
	case a.Stage == delivery.StageConnect && j.connect != nil:
		r.v = *j.connect
		return r
	}
	fb := shaper.Feedback{Delivered: delivered, Held: a.Stage == delivery.StageHeld,
		Refused: a.Stage == delivery.StageConnect && a.Code == 421, Result: r.c, Permanent: a.Permanent,
		Reply: attemptText(a), RetryAfter: a.RetryAfter}
	r.v = o.Observe(j.b.permit, fb, s.Now())
	switch {
	case a.Stage == delivery.StageConnect:
		j.connect = &r.v
	case a.Code == 421:
		j.closing = &r.v
	}
	return r
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
