package scheduler

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/repute-mail/repute/internal/classify"
	"github.com/repute-mail/repute/internal/delivery"
	"github.com/repute-mail/repute/internal/verp"
)

// TestSuppression: a reply saying the mailbox is gone suppresses the recipient for the
// sending domain; a later message to it is bounced without being offered to anyone, and a
// reply that does not say so (a policy refusal) suppresses nothing. Messages leave with
// the envelope sender EnvelopeFrom gives them.
func TestSuppression(t *testing.T) {
	var mu sync.Mutex
	var offered []string
	var envFrom []string
	d := &scripted{answer: answers(map[string]delivery.Attempt{
		"gone.test":   {Code: 550, Enhanced: "5.1.1", Text: "The email account that you tried to reach does not exist", Permanent: true, MX: "mx.gone.test"},
		"policy.test": {Code: 550, Enhanced: "5.7.1", Text: "Message rejected due to local policy", Permanent: true, MX: "mx.policy.test"},
	}), seen: func(m *delivery.Message) {
		mu.Lock()
		defer mu.Unlock()
		envFrom = append(envFrom, m.From)
		for _, r := range m.Rcpts {
			offered = append(offered, r.Address)
		}
	}}
	f := newFixture(t, d)
	key := []byte("k")
	f.rec.Classifier = classify.Default()
	f.sched.EnvelopeFrom = func(from, id string) string { return verp.Encode(key, from, id) }
	f.run(t)
	ctx := context.Background()

	f.queue(t, "alice@a.test", "u@gone.test", "u@policy.test")
	// One notice per destination domain: the recipients were delivered separately.
	waitFor(t, "the first notices", func() bool { return len(f.inbox(t)) == 2 })
	if s, _ := f.db.Suppressed(ctx, "a.test", "u@gone.test"); s == nil || s.Reason != "bad_mailbox" || s.Source != "delivery" {
		t.Fatalf("u@gone.test: %+v, want suppressed as bad_mailbox", s)
	}
	if s, _ := f.db.Suppressed(ctx, "a.test", "u@policy.test"); s != nil {
		t.Errorf("a policy refusal suppressed its recipient: %+v", s)
	}
	mu.Lock()
	if len(envFrom) == 0 || !strings.HasPrefix(envFrom[0], "alice+rb-") {
		t.Errorf("envelope senders %v, want tagged", envFrom)
	}
	mu.Unlock()

	f.queue(t, "alice@a.test", "u@gone.test")
	waitFor(t, "the third notice", func() bool { return len(f.inbox(t)) == 3 })
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(strings.Join(offered, " "), "u@gone.test"); n != 1 {
		t.Errorf("u@gone.test was offered for delivery %d times, want once (then suppressed)", n)
	}
	rs, err := f.db.Rates(ctx, f.now.Add(-time.Hour), true, false)
	if err != nil || len(rs) != 1 || rs[0].Bounced != 3 || rs[0].ByCategory["bad_mailbox"] != 2 || rs[0].ByCategory["policy"] != 1 {
		t.Errorf("rates of a.test: %+v %v; want 3 bounces, 2 bad_mailbox and 1 policy", rs, err)
	}
	notice := f.inbox(t)[2]
	if !strings.Contains(notice, "suppressed") {
		t.Errorf("the second notice does not say the recipient is suppressed:\n%s", notice)
	}
}

// TestTemporaryFiveHundred: a 5xx reply that the classifier reads as temporary
// (greylisting) is retried, not bounced.
func TestTemporaryFiveHundred(t *testing.T) {
	d := &scripted{answer: answers(map[string]delivery.Attempt{
		"grey.test": {Code: 550, Enhanced: "5.7.1", Text: "Greylisted, please try again in 5 minutes", Permanent: true, MX: "mx.grey.test"},
	})}
	f := newFixture(t, d)
	f.rec.Classifier = classify.Default()
	f.run(t)
	f.queue(t, "alice@a.test", "u@grey.test")
	waitFor(t, "the first attempt", func() bool {
		q := f.entries(t)
		return len(q) == 1 && q[0].Attempts == 1
	})
	if n := len(f.inbox(t)); n != 0 {
		t.Errorf("%d notices for a greylisted message, want none", n)
	}
}
