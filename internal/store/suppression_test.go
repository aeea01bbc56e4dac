package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestSuppressions(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	added, err := db.Suppress(ctx, Suppression{SenderDomain: "A.test", Address: "Bob@Remote.test", Reason: "bad_mailbox",
		Source: "delivery", Detail: "550 5.1.1 no such user", MsgID: "m1"})
	if err != nil || !added {
		t.Fatalf("first suppress: added=%v err=%v", added, err)
	}
	s, err := db.Suppressed(ctx, "a.test", "bob@remote.test")
	if err != nil || s == nil || s.Reason != "bad_mailbox" || s.MsgID != "m1" {
		t.Fatalf("lookup: %+v %v", s, err)
	}
	first := s.Created
	// Again, for another reason: updated, not added, first date kept.
	added, err = db.Suppress(ctx, Suppression{SenderDomain: "a.test", Address: "bob@remote.test", Reason: "complaint", Source: "arf"})
	if err != nil || added {
		t.Fatalf("second suppress: added=%v err=%v", added, err)
	}
	if s, _ = db.Suppressed(ctx, "a.test", "bob@remote.test"); s.Reason != "complaint" || !s.Created.Equal(first) {
		t.Errorf("after update: %+v", s)
	}
	// SuppressNew keeps the first cause.
	added, err = db.SuppressNew(ctx, Suppression{SenderDomain: "a.test", Address: "bob@remote.test", Reason: "bad_mailbox", Source: "delivery"})
	if err != nil || added {
		t.Fatalf("SuppressNew of an existing entry: added=%v err=%v", added, err)
	}
	if s, _ = db.Suppressed(ctx, "a.test", "bob@remote.test"); s.Reason != "complaint" {
		t.Errorf("SuppressNew changed the entry: %+v", s)
	}
	// Per sending domain: b.test may still mail bob.
	if s, _ := db.Suppressed(ctx, "b.test", "bob@remote.test"); s != nil {
		t.Errorf("b.test: %+v, want none", s)
	}
	db.Suppress(ctx, Suppression{SenderDomain: "b.test", Address: "carol@remote.test", Reason: "manual", Source: "admin"})
	if l, _ := db.Suppressions(ctx, ""); len(l) != 2 {
		t.Errorf("all: %d entries, want 2", len(l))
	}
	if l, _ := db.Suppressions(ctx, "b.test"); len(l) != 1 || l[0].Address != "carol@remote.test" {
		t.Errorf("b.test: %+v", l)
	}
	if err := db.Unsuppress(ctx, "a.test", "BOB@remote.test"); err != nil {
		t.Fatal(err)
	}
	if err := db.Unsuppress(ctx, "a.test", "bob@remote.test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second removal: %v, want ErrNotFound", err)
	}
	if _, err := db.Suppress(ctx, Suppression{Address: "x@y"}); err == nil {
		t.Error("suppress without a sender domain succeeded")
	}
}

func TestSecret(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	a, err := db.Secret(ctx, "verp")
	if err != nil || len(a) != 32 {
		t.Fatalf("Secret: %x %v", a, err)
	}
	b, _ := db.Secret(ctx, "verp")
	c, _ := db.Secret(ctx, "other")
	if string(a) != string(b) || string(a) == string(c) {
		t.Error("a secret must be stable per name and differ between names")
	}
}

func TestRates(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	now := time.Now()
	old := now.Add(-48 * time.Hour)
	var cs []OutcomeCount
	add := func(n int, c OutcomeCount) {
		for i := 0; i < n; i++ {
			cs = append(cs, c)
		}
	}
	add(90, OutcomeCount{Time: now, SenderDomain: "a.test", Provider: "google", Kind: CountDelivered})
	add(10, OutcomeCount{Time: now, SenderDomain: "a.test", Provider: "google", Kind: CountBounced, Category: "bad_mailbox"})
	add(1, OutcomeCount{Time: now, SenderDomain: "a.test", Provider: "google", Kind: CountComplaint})
	add(50, OutcomeCount{Time: now, SenderDomain: "a.test", Provider: "microsoft", Kind: CountDelivered})
	add(50, OutcomeCount{Time: now, SenderDomain: "a.test", Provider: "microsoft", Kind: CountBounced, Category: "ip_reputation"})
	add(500, OutcomeCount{Time: old, SenderDomain: "a.test", Provider: "google", Kind: CountBounced, Category: "bad_mailbox"})
	if err := db.CountOutcomes(ctx, cs); err != nil {
		t.Fatal(err)
	}
	rs, err := db.Rates(ctx, now.Add(-24*time.Hour), true, true)
	if err != nil || len(rs) != 2 {
		t.Fatalf("Rates: %+v %v", rs, err)
	}
	g := rs[0]
	if g.Provider != "google" || g.Delivered != 90 || g.Bounced != 10 || g.BounceRate != 0.1 || g.ByCategory["bad_mailbox"] != 10 ||
		g.Complaints != 1 || g.ComplaintRate != 1.0/90 {
		t.Errorf("google over 24h: %+v", g)
	}
	total, _ := db.Rates(ctx, now.Add(-24*time.Hour), false, false)
	if len(total) != 1 || total[0].Delivered != 140 || total[0].Bounced != 60 || total[0].ByCategory["ip_reputation"] != 50 {
		t.Errorf("totals: %+v", total)
	}
	week, _ := db.Rates(ctx, now.Add(-7*24*time.Hour), true, false)
	if len(week) != 1 || week[0].Bounced != 560 {
		t.Errorf("a.test over a week: %+v", week)
	}
}
