// Package outcome is the one place where what happened to a message is recorded: a
// delivery attempt's reply, a bounce that came back days later, a complaint, an
// unsubscribe. The reply is classified once, from its structured fields (code, enhanced
// code, text, the MX host that gave it), and the outcome is published as typed events on
// an in-process bus. Everything that reacts to outcomes is a subscriber: the mail-event
// log, the hourly counts behind the bounce and complaint rates, the suppression list, and
// next the reputation state, alerts and the dashboard. Producers (the scheduler, the
// bounce processor, the unsubscribe page) therefore never write counts or suppressions
// themselves, and a new reaction is one more subscriber, not a fourth copy.
//
// Publishing is synchronous and in order: when Record returns, every subscriber has seen
// the events, and an error from a subscriber that must not fail silently (the
// suppression list) is returned to the producer, which then does not acknowledge what it
// was told (the SMTP session answers 451 and the bounce is sent again).
//
// Upstream: internal/scheduler, internal/bounce, internal/web. Downstream: internal/obs
// (the event log), internal/store (counts, suppressions), internal/classify.
package outcome

import (
	"context"
	"errors"
	"strings"
	"sync"

	"github.com/repute-mail/repute/internal/classify"
	"github.com/repute-mail/repute/internal/obs"
)

// Event is one outcome as the subscribers see it: the mail-event log's fields (a
// contract) and what the classifier made of the reply.
type Event struct {
	obs.Event
	// SenderDomain is the domain whose reputation and suppression list the outcome
	// concerns: the envelope sender's ("" for the null sender), or the sending domain of
	// an unsubscribe link.
	SenderDomain string
	// Action is the classifier's action for the reply (classify.Action*), "" when there
	// was nothing to classify (a delivery, a complaint).
	Action string
	// Source says where the outcome was learnt: "delivery", "dsn", "arf", "unsubscribe",
	// "mailto", "admin".
	Source string
	// Detail is kept with a suppression: the reply, report summary or note.
	Detail string
}

// Subscriber reacts to published events. An error stops nothing else (every subscriber
// sees every event) but is returned to the producer.
type Subscriber interface {
	Handle(ctx context.Context, events []Event) error
}

// SubscriberFunc adapts a function to Subscriber.
type SubscriberFunc func(ctx context.Context, events []Event) error

// Handle implements Subscriber.
func (f SubscriberFunc) Handle(ctx context.Context, events []Event) error { return f(ctx, events) }

// Bus delivers events to its subscribers, in the order they subscribed. The zero value has
// none; it is safe for concurrent use.
type Bus struct {
	mu   sync.RWMutex
	subs []Subscriber
}

// Subscribe adds s; it sees the events published from then on.
func (b *Bus) Subscribe(s Subscriber) {
	b.mu.Lock()
	b.subs = append(b.subs, s)
	b.mu.Unlock()
}

// Publish hands events to every subscriber and returns their errors joined.
func (b *Bus) Publish(ctx context.Context, events ...Event) error {
	if b == nil || len(events) == 0 {
		return nil
	}
	b.mu.RLock()
	subs := b.subs
	b.mu.RUnlock()
	var errs []error
	for _, s := range subs {
		if err := s.Handle(ctx, events); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Recorder classifies replies and publishes outcomes.
type Recorder struct {
	Classifier *classify.Classifier // nil: nothing is classified (zero Results)
	Bus        *Bus
}

// Classify reads one reply, once: code 0 means there was none (a network, DNS or TLS
// failure described by text). mx is the host that answered, which names the provider
// when the text does not.
func (r *Recorder) Classify(code int, enhanced, text, mx string) classify.Result {
	if r == nil || r.Classifier == nil {
		return classify.Result{}
	}
	return r.Classifier.ClassifyReply(code, enhanced, text, mx)
}

// ClassifyText reads a reply known only as text, as bounce messages quote it ("smtp;
// 550 5.1.1 ..." with the status in front).
func (r *Recorder) ClassifyText(text, mx string) classify.Result {
	if r == nil || r.Classifier == nil {
		return classify.Result{}
	}
	return r.Classifier.ClassifyFrom(text, mx)
}

// Provider names the provider of an MX host ("" when unknown).
func (r *Recorder) Provider(mx string) string {
	if r == nil || r.Classifier == nil {
		return ""
	}
	return r.Classifier.Provider(mx)
}

// Record publishes events. Time defaults to now at the subscribers (obs.EventLog), so
// producers set it when they have a clock of their own.
func (r *Recorder) Record(ctx context.Context, events ...Event) error {
	if r == nil {
		return nil
	}
	return r.Bus.Publish(ctx, events...)
}

// With fills an event's classification fields from a result.
func With(e Event, c classify.Result) Event {
	e.Category, e.Action = c.Category, c.Action
	if e.Provider == "" {
		e.Provider = c.Provider
	}
	return e
}

// DomainOf returns the lower-case domain of an address, "" for the null sender or a bare
// local part.
func DomainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}
