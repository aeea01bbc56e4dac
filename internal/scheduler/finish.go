package scheduler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/repute-mail/repute/internal/classify"
	"github.com/repute-mail/repute/internal/delivery"
	"github.com/repute-mail/repute/internal/dsn"
	"github.com/repute-mail/repute/internal/obs"
	"github.com/repute-mail/repute/internal/outcome"
	"github.com/repute-mail/repute/internal/route"
	"github.com/repute-mail/repute/internal/shaper"
	"github.com/repute-mail/repute/internal/smtp"
	"github.com/repute-mail/repute/internal/store"
)

// record applies attempts reported for entries of batch b: delivered entries leave the
// queue, temporary failures wait, permanent ones (and expired entries) bounce with a
// notice. The shaper's verdict comes first: a message it holds back (throttled, or
// blocked: never bounced for a block) is due when the verdict says, and one that never
// reached the provider's judgement (held by a pause, a refused connection the shaper
// answered by opening fewer) is not an attempt at all. The outcomes are published once
// the store holds them. reported collects the entries seen so far.
func (s *Scheduler) record(b *batch, js []judged, reported map[int64]bool) {
	// Recording must not be cut short by shutdown: use a context of its own.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	now := s.Now()
	var outs []store.Outcome
	var events []outcome.Event
	bounces := map[string][]failure{} // by msg id
	warns := map[string][]failure{}
	putBack := map[putBackKey][]store.QueueEntry{} // not attempts: back in the queue
	for _, j := range js {
		a, c, v := j.a, j.c, j.v
		e, ok := b.entries[a.QueueID]
		if !ok || reported[a.QueueID] {
			continue // not ours, or reported twice: the first report stands
		}
		reported[a.QueueID] = true
		id := a.QueueID
		delivered := a.Code >= 200 && a.Code < 300
		expired := !now.Before(time.Unix(e.Created, 0).Add(s.Policy.MaxAge))
		switch {
		case delivered:
			outs = append(outs, store.Outcome{ID: id, Delivered: true})
			events = append(events, s.event(obs.Delivered, b.rt, e, a, c, now))
			continue
		case v.NotAttempt && !expired:
			next := v.Hold
			if next.IsZero() || v.Reason == shaper.ReasonConnections {
				next = now.Add(s.HoldBack)
			}
			k := putBackKey{next, v.Reason}
			putBack[k] = append(putBack[k], e)
			continue
		case !v.Hold.IsZero() && !expired:
			// Throttled or blocked: an attempt, due again when the shaper says.
			outs = append(outs, store.Outcome{ID: id, NextAttempt: v.Hold, Code: a.Code, Text: attemptText(a), MX: a.MX})
			events = append(events, s.event(obs.Deferred, b.rt, e, a, c, now))
			continue
		case a.Permanent && !c.Temporary:
			// A 5xx that says it is temporary (greylisting behind a 5xx code, say) is
			// retried like a 4xx: the classifier knows what the sender should do.
			bounces[e.MsgID] = append(bounces[e.MsgID], failure{e, a, c, "failed"})
			continue
		}
		next, d := s.Policy.Next(now, time.Unix(e.Created, 0), e.Attempts+1, a.RetryAfter, s.Jitter())
		if d == Expire {
			a.Text = fmt.Sprintf("gave up after %s; last error: %s", now.Sub(time.Unix(e.Created, 0)).Round(time.Minute), a.Text)
			if a.Enhanced == "" || a.Enhanced[0] != '5' {
				a.Enhanced = "4.4.7" // RFC 3463: delivery time expired
			}
			if c.Action == classify.ActionSuppressRecipient {
				c.Action = classify.ActionBounce // a temporary reply never suppresses
			}
			bounces[e.MsgID] = append(bounces[e.MsgID], failure{e, a, c, "failed"})
			continue
		}
		outs = append(outs, store.Outcome{ID: id, NextAttempt: next, Code: a.Code, Text: attemptText(a), MX: a.MX})
		events = append(events, s.event(obs.Deferred, b.rt, e, a, c, now))
		if s.Policy.ShouldWarn(now, time.Unix(e.Created, 0), e.Warned) {
			a.Text = attemptText(a)
			warns[e.MsgID] = append(warns[e.MsgID], failure{e, a, c, "delayed"})
		}
	}
	if len(outs) > 0 {
		if err := s.DB.QueueRecord(ctx, now, outs); err != nil {
			s.Logger.Error("queue: recording delivery outcomes failed; they will be retried", "err", err)
			events = nil
		}
	}
	s.publish(ctx, events)
	for k, es := range putBack {
		s.putBack(ctx, b.rt, es, k.next, k.reason, now)
	}
	for _, fs := range bounces {
		s.bounce(ctx, b.rt, fs, now)
	}
	for _, fs := range warns {
		s.warn(ctx, fs, now)
	}
}

type putBackKey struct {
	next   time.Time
	reason string
}

// putBack returns entries that were not attempted to the queue, due at next, and
// publishes a throttled event for each.
func (s *Scheduler) putBack(ctx context.Context, rt route.Route, es []store.QueueEntry, next time.Time, reason string, now time.Time) {
	if len(es) == 0 {
		return
	}
	if reason == "" {
		reason = shaper.ReasonBackoff
	}
	ids := make([]int64, len(es))
	events := make([]outcome.Event, len(es))
	for i, e := range es {
		ids[i] = e.ID
		events[i] = throttled(e, rt.Provider, reason, next, now)
		if reason == shaper.ReasonPaused && next.After(now) {
			s.noteHeld(rt.Group, e.Domain)
		}
	}
	if err := s.DB.QueueRequeue(ctx, ids, next); err != nil {
		s.Logger.Error("queue: putting back entries that were not sent failed; their lease ends by itself", "err", err)
		return
	}
	s.Logger.Info("queue: not sent; back in the queue", "group", rt.Group, "reason", reason, "entries", len(es), "until", next)
	s.publish(ctx, events)
	if !next.After(now) {
		s.Wake()
	}
}

// throttled is the event of an entry Repute holds back itself: why, and when it may go.
func throttled(e store.QueueEntry, provider, reason string, next, now time.Time) outcome.Event {
	return outcome.Event{Event: obs.Event{Time: now, Event: obs.Throttled, MsgID: e.MsgID, From: e.From,
		Rcpt: e.Rcpt, Provider: provider, Reason: reason, NextAttempt: next}}
}

// publish hands outcomes to the recorder's subscribers (event log, counts, suppression).
func (s *Scheduler) publish(ctx context.Context, events []outcome.Event) {
	if err := s.Outcomes.Record(ctx, events...); err != nil {
		s.Logger.Error("queue: recording outcomes failed", "err", err)
	}
}

// failure is one recipient of a message that could not be delivered (yet).
type failure struct {
	e      store.QueueEntry
	a      delivery.Attempt
	c      classify.Result // the reply, classified
	action string          // "failed" or "delayed"
}

func attemptText(a delivery.Attempt) string {
	if a.Code != 0 {
		return fmt.Sprintf("%d %s %s", a.Code, a.Enhanced, a.Text)
	}
	return a.Text
}

// event describes an attempt for the outcome subscribers. Its provider is the route's
// (the destination's), or the one the reply names when the route's is unknown.
func (s *Scheduler) event(kind string, rt route.Route, e store.QueueEntry, a delivery.Attempt, c classify.Result, now time.Time) outcome.Event {
	ev := outcome.Event{SenderDomain: senderDomain(e.From), Source: "delivery", Detail: attemptText(a),
		Event: obs.Event{Time: now, Event: kind, MsgID: e.MsgID, From: e.From, Rcpt: e.Rcpt, Provider: rt.Provider,
			SourceIP: a.SourceIP, MX: a.MX, Code: a.Code, EnhancedCode: a.Enhanced, Text: a.Text,
			DelayS: now.Sub(time.Unix(e.Created, 0)).Seconds(), Size: e.Size, IP: a.IP, TLS: a.TLS,
			TLSVerified: a.TLSVerified, DurationS: a.Duration.Seconds(), Attempt: e.Attempts + 1, TLSRPT: a.TLSRPT}}
	ev = outcome.With(ev, c)
	if kind != obs.Delivered {
		s.Logger.Info("queue: "+kind, "msg_id", e.MsgID, "rcpt", e.Rcpt, "mx", a.MX, "code", a.Code,
			"enhanced", a.Enhanced, "text", a.Text, "attempts", e.Attempts+1, "category", c.Category, "provider", ev.Provider)
	}
	return ev
}

// checkSuppressed refuses, before any connection, a queued entry whose recipient its
// sending domain no longer mails (the entry was queued before the suppression, or came
// in through sendmail): it bounces with a notice like any permanent failure.
func (s *Scheduler) checkSuppressed(ctx context.Context, e store.QueueEntry) (delivery.Attempt, bool) {
	domain := senderDomain(e.From)
	if domain == "" {
		return delivery.Attempt{}, false
	}
	sup, err := s.DB.Suppressed(ctx, domain, e.Rcpt)
	if err != nil || sup == nil {
		return delivery.Attempt{}, false // a failed lookup must not stop delivery
	}
	return delivery.Attempt{QueueID: e.ID, Rcpt: e.Rcpt, Code: 550, Enhanced: "5.1.1", Permanent: true,
		Text: fmt.Sprintf("not sent: <%s> is suppressed for %s (%s since %s)", e.Rcpt, domain, sup.Reason,
			sup.Created.UTC().Format("2006-01-02"))}, true
}

// senderDomain is the domain of an envelope sender, "" for the null sender.
func senderDomain(from string) string {
	if i := strings.LastIndexByte(from, '@'); i >= 0 {
		return strings.ToLower(from[i+1:])
	}
	return ""
}

// bounce removes failed entries of one message and returns a notice to its sender, in one
// transaction. No notice goes to the null sender (RFC 5321 §6.1 / RFC 3464: notices about
// notices would loop).
func (s *Scheduler) bounce(ctx context.Context, rt route.Route, fs []failure, now time.Time) {
	ids := make([]int64, len(fs))
	events := make([]outcome.Event, len(fs))
	for i, f := range fs {
		ids[i] = f.e.ID
		events[i] = s.event(obs.Bounced, rt, f.e, f.a, f.c, now)
	}
	notice, err := s.notice(ctx, fs, now, time.Time{})
	if err != nil {
		s.Logger.Error("queue: cannot compose the failure notice; the entries stay queued", "msg_id", fs[0].e.MsgID, "err", err)
		return
	}
	// Published before the entries leave: a suppression must be in place before the
	// sender reads the notice, and if removing the entries fails they are tried again,
	// find the recipient suppressed and bounce then.
	s.publish(ctx, events)
	stored, err := s.DB.QueueBounce(ctx, ids, notice)
	if err != nil {
		s.Logger.Error("queue: recording a bounce failed; the entries stay queued", "msg_id", fs[0].e.MsgID, "err", err)
		return
	}
	if s.Delivered != nil && len(stored) > 0 {
		s.Delivered(stored)
	}
	if notice != nil && len(notice.Remote) > 0 {
		s.Wake()
	}
}

// warn tells the sender once that delivery is delayed.
func (s *Scheduler) warn(ctx context.Context, fs []failure, now time.Time) {
	ids := make([]int64, len(fs))
	for i, f := range fs {
		ids[i] = f.e.ID
	}
	until := time.Unix(fs[0].e.Created, 0).Add(s.Policy.MaxAge)
	notice, err := s.notice(ctx, fs, now, until)
	if err != nil {
		s.Logger.Warn("queue: cannot compose the delay notice", "msg_id", fs[0].e.MsgID, "err", err)
		return
	}
	stored, err := s.DB.QueueWarn(ctx, ids, notice)
	if err != nil {
		s.Logger.Warn("queue: recording a delay notice failed", "msg_id", fs[0].e.MsgID, "err", err)
		return
	}
	if s.Delivered != nil && len(stored) > 0 {
		s.Delivered(stored)
	}
}

// notice composes the DSN for fs and addresses it to the original sender: local senders
// get it in their INBOX, remote ones through the queue (with the null sender). It returns
// nil for a message whose sender was the null sender.
func (s *Scheduler) notice(ctx context.Context, fs []failure, now, retryUntil time.Time) (*store.Delivery, error) {
	first := fs[0].e
	if first.From == "" {
		return nil, nil
	}
	sender, err := smtp.ParseAddress(first.From)
	if err != nil {
		s.Logger.Warn("queue: sender address unusable for a notice", "from", first.From, "err", err)
		return nil, nil
	}
	original, err := s.DB.Blob(ctx, first.BlobID)
	if err != nil {
		return nil, err
	}
	m := dsn.Message{ReportingMTA: s.Hostname, To: first.From, OriginalID: first.MsgID,
		Arrival: time.Unix(first.Created, 0), Original: original}
	for _, f := range fs {
		status := f.a.Enhanced
		if status == "" {
			status = map[bool]string{true: "5.0.0", false: "4.0.0"}[f.action == "failed"]
			if f.action == "failed" && f.a.Code >= 400 && f.a.Code < 500 {
				status = "4.4.7"
			}
		}
		diag := f.a.Text
		if f.a.Code != 0 {
			diag = fmt.Sprintf("%d %s %s", f.a.Code, f.a.Enhanced, f.a.Text)
		}
		m.Recipients = append(m.Recipients, dsn.Recipient{Address: f.e.Rcpt, Action: f.action, Status: status,
			RemoteMTA: f.a.MX, Diagnostic: diag, LastAttempt: now, WillRetryUntil: retryUntil})
	}
	body, err := dsn.Compose(m, now)
	if err != nil {
		return nil, err
	}
	d := &store.Delivery{MsgID: store.NewID(now), From: "", Body: body, Received: now}
	targets, err := s.DB.Resolve(ctx, sender)
	switch {
	case err == nil:
		d.AddTargets(targets)
	case errors.Is(err, store.ErrNotLocal):
		d.Remote = []string{sender.String()}
	case errors.Is(err, store.ErrNoSuchUser):
		s.Logger.Warn("queue: the sender of a failed message no longer exists; no notice", "from", first.From)
		return nil, nil
	default:
		return nil, err
	}
	return d, nil
}
