package outcome

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/repute-mail/repute/internal/classify"
	"github.com/repute-mail/repute/internal/obs"
	"github.com/repute-mail/repute/internal/store"
)

func openStore(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), store.Options{Path: filepath.Join(t.TempDir(), "r.db"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestRecorder: one outcome, classified once, reaches every subscriber; suppressions
// follow the rules of their source, and a new suppression is published in turn.
func TestRecorder(t *testing.T) {
	db := openStore(t)
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	bus := &Bus{}
	var seen []string
	bus.Subscribe(SubscriberFunc(func(_ context.Context, evs []Event) error {
		for _, e := range evs {
			seen = append(seen, e.Event.Event+" "+e.Rcpt)
		}
		return nil
	}))
	bus.Subscribe(Counts(db, log))
	bus.Subscribe(Suppressions(db, bus, log))
	r := &Recorder{Classifier: classify.Default(), Bus: bus}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

	c := r.Classify(550, "5.1.1", "The email account that you tried to reach does not exist", "gmail-smtp-in.l.google.com")
	if c.Category != classify.BadMailbox || c.Provider != "google" || c.Action != classify.ActionSuppressRecipient {
		t.Fatalf("classified as %+v", c)
	}
	gone := With(Event{SenderDomain: "a.test", Source: "delivery", Detail: "550 5.1.1 gone",
		Event: obs.Event{Time: now, Event: obs.Bounced, From: "alice@a.test", Rcpt: "u@gmail.test"}}, c)
	policy := With(Event{SenderDomain: "a.test", Source: "delivery",
		Event: obs.Event{Time: now, Event: obs.Bounced, From: "alice@a.test", Rcpt: "v@gmail.test"}},
		r.Classify(550, "5.7.1", "Message rejected due to local policy", "gmail-smtp-in.l.google.com"))
	delivered := Event{SenderDomain: "a.test", Event: obs.Event{Time: now, Event: obs.Delivered, Rcpt: "w@example.test"}}
	complaint := Event{SenderDomain: "a.test", Source: "arf", Detail: "abuse report",
		Event: obs.Event{Time: now, Event: obs.Complained, Rcpt: "x@example.test"}}
	if err := r.Record(ctx, gone, policy, delivered, complaint); err != nil {
		t.Fatal(err)
	}
	want := []string{"bounced u@gmail.test", "bounced v@gmail.test", "delivered w@example.test", "complained x@example.test",
		"suppressed u@gmail.test", "suppressed x@example.test"}
	if len(seen) != len(want) {
		t.Fatalf("events seen %q, want %q", seen, want)
	}
	for i := range want {
		if seen[i] != want[i] {
			t.Errorf("event %d: %q, want %q", i, seen[i], want[i])
		}
	}
	if s, _ := db.Suppressed(ctx, "a.test", "u@gmail.test"); s == nil || s.Reason != "bad_mailbox" || s.Source != "delivery" {
		t.Errorf("gone recipient: %+v", s)
	}
	if s, _ := db.Suppressed(ctx, "a.test", "v@gmail.test"); s != nil {
		t.Errorf("a policy refusal suppressed: %+v", s)
	}
	rates, err := db.Rates(ctx, now.Add(-time.Hour), true, true)
	if err != nil || len(rates) != 2 {
		t.Fatalf("rates %+v, %v", rates, err)
	}
	for _, rt := range rates {
		switch rt.Provider {
		case "google":
			if rt.Bounced != 2 || rt.ByCategory["bad_mailbox"] != 1 {
				t.Errorf("google: %+v", rt)
			}
		case "example.test": // unknown provider: the recipient's domain
			if rt.Delivered != 1 || rt.Complaints != 1 {
				t.Errorf("example.test: %+v", rt)
			}
		default:
			t.Errorf("unexpected rate %+v", rt)
		}
	}

	// A delivery attempt keeps an entry's first cause; a report updates it.
	again := gone
	again.Category, again.Detail = "inactive_mailbox", "later"
	r.Record(ctx, again)
	if s, _ := db.Suppressed(ctx, "a.test", "u@gmail.test"); s.Reason != "bad_mailbox" {
		t.Errorf("a later attempt replaced the first cause: %+v", s)
	}
	again.Source = "dsn"
	r.Record(ctx, again)
	if s, _ := db.Suppressed(ctx, "a.test", "u@gmail.test"); s.Reason != "inactive_mailbox" {
		t.Errorf("a returned bounce did not update the reason: %+v", s)
	}
}

type failingSuppress struct{}

func (failingSuppress) Suppress(context.Context, store.Suppression) (bool, error) {
	return false, errors.New("disk full")
}
func (failingSuppress) SuppressNew(context.Context, store.Suppression) (bool, error) {
	return false, errors.New("disk full")
}

// TestSuppressionFailureReachesProducer: the producer learns that a suppression was not
// stored, and every subscriber still saw the event.
func TestSuppressionFailureReachesProducer(t *testing.T) {
	bus := &Bus{}
	logged := 0
	bus.Subscribe(Suppressions(failingSuppress{}, bus, slog.New(slog.DiscardHandler)))
	bus.Subscribe(SubscriberFunc(func(context.Context, []Event) error { logged++; return nil }))
	err := (&Recorder{Bus: bus}).Record(context.Background(), Event{SenderDomain: "a.test", Source: "arf",
		Event: obs.Event{Event: obs.Complained, Rcpt: "x@example.test"}})
	if err == nil || logged != 1 {
		t.Fatalf("err %v, later subscriber saw %d events; want the error and 1", err, logged)
	}
}
