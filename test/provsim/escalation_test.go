package provsim

import (
	"strings"
	"testing"
	"time"
)

// TestEscalationToBlock plays a sender that ignores deferrals: after more than
// BlockAfter deferrals within the window it gets the provider's block reply at the
// provider's stage, every transaction and connection it attempts after that reply is
// counted, and the block ends after its cool-down.
func TestEscalationToBlock(t *testing.T) {
	const src = "127.0.0.51"
	tests := []struct {
		p      Provider
		stage  Stage
		prefix string
		has    []string
	}{
		{Google, StageData, "550-5.7.1 [" + src + "] Our system has detected an unusual rate of", []string{"has been blocked", "UnsolicitedIPError", "550 5.7.1 Bulk Email Senders Guidelines."}},
		{Microsoft, StageMail, "550 5.7.1 Unfortunately, messages from [" + src + "] weren't sent.", []string{"(S3140)", "block list"}},
		{Yahoo, StageMail, "553 5.7.2 [TSS09] All messages from " + src + " will be permanently deferred; Retrying will NOT succeed.", []string{"postmaster.yahooinc.com"}},
	}
	for _, tt := range tests {
		t.Run(string(tt.p), func(t *testing.T) {
			s, clock := start(t, Profile{Provider: tt.p, RatePerMinute: 60, Burst: 1,
				BlockAfter: 3, BlockWindow: time.Minute, BlockFor: 10 * time.Minute})
			if o := attempt(t, s, src); o.stage != "" {
				t.Fatalf("first message: %q", o.reply)
			}
			rate := ReplyFor(tt.p, EventRate, src, s.Hostname())
			for i := range 4 { // the fourth deferral is one more than BlockAfter
				o := attempt(t, s, src)
				if o.stage != rate.Stage || !strings.HasPrefix(o.reply, rate.Text[:10]) {
					t.Fatalf("attempt %d: %q at %q, want the rate deferral", i, o.reply, o.stage)
				}
				clock.Advance(100 * time.Millisecond) // within the window, too little for a token
			}
			st := s.Stats(src)
			if st.BlocksTriggered != 1 || st.DeferredRate != 4 || st.BlockReplies != 0 {
				t.Fatalf("after 4 deferrals: %+v, want 1 block triggered", st)
			}
			until, blocked := s.Blocked(src)
			if !blocked || !until.Equal(epoch.Add(300*time.Millisecond+10*time.Minute)) {
				t.Errorf("Blocked = %v, %v", until, blocked)
			}

			o := attempt(t, s, src)
			want := ReplyFor(tt.p, EventBlock, src, s.Hostname())
			if o.stage != tt.stage || want.Stage != tt.stage || !sameReply(o.reply, want.Text) {
				t.Fatalf("blocked: %q at %q, want\n%s\nat %s", o.reply, o.stage, want.Text, tt.stage)
			}
			if !strings.HasPrefix(o.reply, tt.prefix) {
				t.Errorf("block reply %q, want prefix %q", o.reply, tt.prefix)
			}
			for _, h := range tt.has {
				if !strings.Contains(o.reply, h) {
					t.Errorf("block reply %q lacks %q", o.reply, h)
				}
			}
			if o.open == want.Close {
				t.Errorf("connection open %v after the block reply, want closed %v", o.open, want.Close)
			}
			if st := s.Stats(src); st.BlockReplies != 1 || st.TransactionsAfterBlock != 0 || st.ConnectionsAfterBlock != 0 {
				t.Errorf("after the block reply: %+v", st)
			}

			// The sender goes on: every attempt counts and gets the block reply again.
			for i := range 2 {
				if o := attempt(t, s, src); o.stage != tt.stage || !sameReply(o.reply, want.Text) {
					t.Fatalf("attempt %d after the block: %q at %q", i, o.reply, o.stage)
				}
			}
			st = s.Stats(src)
			if st.TransactionsAfterBlock != 2 || st.ConnectionsAfterBlock != 2 || st.BlockReplies != 3 || st.BlocksTriggered != 1 {
				t.Errorf("after two more attempts: %+v", st)
			}
			if o := attempt(t, s, "127.0.0.52"); o.stage != "" {
				t.Errorf("another IP is not blocked: %q", o.reply)
			}

			// The cool-down ends the block; the IP starts afresh.
			clock.Advance(10 * time.Minute)
			if _, blocked := s.Blocked(src); blocked {
				t.Fatal("still blocked after the cool-down")
			}
			if o := attempt(t, s, src); o.stage != "" {
				t.Fatalf("after the cool-down: %q at %q", o.reply, o.stage)
			}
			st = s.Stats(src)
			if st.TransactionsAfterBlock != 2 || st.Accepted != 2 {
				t.Errorf("after the cool-down: %+v", st)
			}
			if tot := s.Total(); tot.BlocksTriggered != 1 || tot.TransactionsAfterBlock != 2 || tot.Accepted != 3 {
				t.Errorf("totals %+v", tot)
			}
		})
	}
}

// TestConnectionRefusalsEscalate checks that refused connections are deferrals too: a
// sender that keeps opening connections over the cap is blocked.
func TestConnectionRefusalsEscalate(t *testing.T) {
	const src = "127.0.0.53"
	s, _ := start(t, Profile{Provider: Yahoo, MaxConnections: 1, BlockAfter: 2})
	held := dial(t, s.Addr(), src)
	held.hello()
	for i := range 3 {
		if o := attempt(t, s, src); o.stage != StageGreeting {
			t.Fatalf("connection %d: %q at %q", i, o.reply, o.stage)
		}
	}
	if st := s.Stats(src); st.DeferredConnections != 3 || st.BlocksTriggered != 1 {
		t.Fatalf("counters %+v", st)
	}
	// The held connection is now blocked too, at MAIL.
	o := held.send("a@example.com", []string{"u@example.net"}, "x\r\n")
	if o.stage != StageMail || !strings.HasPrefix(o.reply, "553 5.7.2 [TSS09] ") {
		t.Errorf("held connection: %q at %q", o.reply, o.stage)
	}
}

// TestDeferralsOutsideWindowDoNotBlock checks the sliding window: deferrals spread over
// more than the window never add up to a block.
func TestDeferralsOutsideWindowDoNotBlock(t *testing.T) {
	const src = "127.0.0.54"
	s, clock := start(t, Profile{Provider: Yahoo, RatePerMinute: 1, Burst: 1, BlockAfter: 2, BlockWindow: time.Minute})
	if o := attempt(t, s, src); o.stage != "" { // takes the only token
		t.Fatalf("first message: %q", o.reply)
	}
	for i := range 6 {
		if o := attempt(t, s, src); o.stage != StageMail || !strings.Contains(o.reply, "[TSS04]") {
			t.Fatalf("attempt %d: %q", i, o.reply)
		}
		clock.Advance(35 * time.Second) // two deferrals per window at most
		if i%2 == 1 {
			if o := attempt(t, s, src); o.stage != "" { // the token that came back meanwhile
				t.Fatalf("after %d deferrals: %q", i+1, o.reply)
			}
		}
	}
	if st := s.Stats(src); st.BlocksTriggered != 0 || st.DeferredRate != 6 {
		t.Errorf("counters %+v, want no block", st)
	}
}

// TestBlockNever checks that a negative BlockAfter never blocks.
func TestBlockNever(t *testing.T) {
	s, _ := start(t, Profile{Provider: Microsoft, RatePerMinute: 1, Burst: 1, BlockAfter: -1})
	c := dial(t, s.Addr(), "127.0.0.55")
	c.hello()
	c.send("a@example.com", []string{"u@example.net"}, "x\r\n")
	for range 50 {
		if o := c.send("a@example.com", []string{"u@example.net"}, "x\r\n"); o.stage != StageRcpt {
			t.Fatalf("%q at %q", o.reply, o.stage)
		}
	}
	if st := s.Stats("127.0.0.55"); st.BlocksTriggered != 0 || st.DeferredRate != 50 {
		t.Errorf("counters %+v", st)
	}
}
