package outcome

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/repute-mail/repute/internal/classify"
	"github.com/repute-mail/repute/internal/obs"
	"github.com/repute-mail/repute/internal/store"
)

// EventLog writes every event to the mail-event log (data_dir/events.log).
func EventLog(l *obs.EventLog) Subscriber {
	return SubscriberFunc(func(_ context.Context, events []Event) error {
		for _, e := range events {
			l.Emit(e.Event)
		}
		return nil
	})
}

// CountStore is what Counts needs of the store.
type CountStore interface {
	CountOutcomes(ctx context.Context, cs []store.OutcomeCount) error
}

// Counts adds outcomes to the hourly counters behind `repute bounce rates`, per sending
// domain and destination provider (the recipient's domain when the provider is unknown).
// Counting is best effort: a failure is logged and never holds up mail.
func Counts(db CountStore, log *slog.Logger) Subscriber {
	return SubscriberFunc(func(ctx context.Context, events []Event) error {
		var cs []store.OutcomeCount
		for _, e := range events {
			kind := countKind[e.Event.Event]
			if kind == "" || e.SenderDomain == "" {
				continue
			}
			prov := e.Provider
			if prov == "" {
				prov = DomainOf(e.Rcpt)
			}
			c := store.OutcomeCount{Time: e.Time, SenderDomain: e.SenderDomain, Provider: prov, Kind: kind}
			if kind == store.CountBounced {
				c.Category = e.Category
			}
			if c.Time.IsZero() {
				c.Time = time.Now()
			}
			cs = append(cs, c)
		}
		if err := db.CountOutcomes(ctx, cs); err != nil {
			log.Warn("outcome: counting failed", "err", err)
		}
		return nil
	})
}

var countKind = map[string]string{
	obs.Delivered: store.CountDelivered, obs.Bounced: store.CountBounced, obs.Deferred: store.CountDeferred,
	obs.Complained: store.CountComplaint, obs.Unsubscribed: store.CountUnsubscribe,
}

// SuppressStore is what Suppressions needs of the store.
type SuppressStore interface {
	Suppress(ctx context.Context, s store.Suppression) (bool, error)
	SuppressNew(ctx context.Context, s store.Suppression) (bool, error)
}

// Suppressions puts recipients on their sending domain's suppression list when an
// outcome says mailing them again can only hurt: a permanent failure whose action is
// suppress_recipient (the mailbox or domain is gone), a complaint, an unsubscribe. A new
// entry is published as a "suppressed" event. A failure is returned: the producer must
// not acknowledge an outcome whose suppression was not stored.
//
// What a delivery attempt learns keeps the first cause of an existing entry (the attempt
// may have been refused because of that very entry); a report or an unsubscribe updates
// the reason.
func Suppressions(db SuppressStore, bus *Bus, log *slog.Logger) Subscriber {
	return SubscriberFunc(func(ctx context.Context, events []Event) error {
		var added []Event
		for _, e := range events {
			reason := suppressReason(e)
			if reason == "" || e.SenderDomain == "" || e.Rcpt == "" {
				continue
			}
			t := e.Time
			if t.IsZero() {
				t = time.Now()
			}
			s := store.Suppression{SenderDomain: e.SenderDomain, Address: e.Rcpt, Reason: reason, Source: e.Source,
				Detail: e.Detail, MsgID: e.MsgID, Created: t}
			put := db.Suppress
			if e.Source == "delivery" {
				put = db.SuppressNew
			}
			isNew, err := put(ctx, s)
			if err != nil {
				return fmt.Errorf("suppress %s for %s: %w", e.Rcpt, e.SenderDomain, err)
			}
			if !isNew {
				continue
			}
			log.Info("outcome: recipient suppressed", "rcpt", e.Rcpt, "sender_domain", e.SenderDomain, "reason", reason, "source", e.Source)
			ev := e
			ev.Event.Event = obs.Suppressed
			ev.Event.Text = reason + " via " + e.Source + ": " + e.Event.Text
			ev.Action = ""
			added = append(added, ev)
		}
		return bus.Publish(ctx, added...)
	})
}

func suppressReason(e Event) string {
	switch e.Event.Event {
	case obs.Bounced:
		if e.Action == classify.ActionSuppressRecipient {
			return e.Category
		}
	case obs.Complained:
		return "complaint"
	case obs.Unsubscribed:
		return "unsubscribe"
	}
	return ""
}
