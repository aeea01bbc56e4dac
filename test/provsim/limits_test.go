package provsim

import (
	"strings"
	"testing"
	"time"
)

// TestRateLimitReplies checks that each provider answers a sender over its rate with its
// own reply at its own stage, closes the connection where the provider does, counts the
// deferral, and accepts again once the bucket has refilled.
func TestRateLimitReplies(t *testing.T) {
	const src = "127.0.0.41"
	tests := []struct {
		p         Provider
		stage     Stage
		closes    bool
		mustHave  []string
		firstLine string
	}{
		{Google, StageData, true, []string{"UnsolicitedRateLimitError", "[" + src + "]", " - gsmtp"}, "421-4.7.28 [" + src + "] Our system has detected an unusual rate of"},
		{Microsoft, StageRcpt, false, []string{"(S775)", "[" + src + "]"}, "451 4.7.650 The mail server [" + src + "] has been temporarily rate limited due to IP reputation."},
		{Yahoo, StageMail, true, []string{"[TSS04]", src}, "421 4.7.0 [TSS04] Messages from " + src + " temporarily deferred due to unexpected volume or user complaints"},
	}
	for _, tt := range tests {
		t.Run(string(tt.p), func(t *testing.T) {
			s, clock := start(t, Profile{Provider: tt.p, RatePerMinute: 60, Burst: 2, BlockAfter: -1})
			c := dial(t, s.Addr(), src)
			c.hello()
			for i := range 2 {
				if o := c.send("a@example.com", []string{"u@example.net"}, "Subject: x\r\n\r\nbody\r\n"); o.stage != "" {
					t.Fatalf("message %d within the burst refused at %s: %q", i, o.stage, o.reply)
				}
			}
			o := c.send("a@example.com", []string{"u@example.net"}, "Subject: x\r\n\r\nbody\r\n")
			if o.stage != tt.stage {
				t.Fatalf("over the rate: refused at %q with %q, want stage %s", o.stage, o.reply, tt.stage)
			}
			want := ReplyFor(tt.p, EventRate, src, s.Hostname())
			if !sameReply(o.reply, want.Text) || want.Stage != tt.stage || want.Close != tt.closes {
				t.Errorf("reply\n%s\nwant\n%s (stage %s, close %v)", o.reply, want.Text, want.Stage, want.Close)
			}
			if !strings.HasPrefix(o.reply, tt.firstLine) {
				t.Errorf("reply %q does not start with %q", o.reply, tt.firstLine)
			}
			for _, m := range tt.mustHave {
				if !strings.Contains(o.reply, m) {
					t.Errorf("reply %q lacks %q", o.reply, m)
				}
			}
			if tt.closes {
				c.closed()
				c = dial(t, s.Addr(), src)
				c.hello()
			} else if !o.open {
				t.Fatal("connection closed after a reply that keeps it open")
			}
			st := s.Stats(src)
			if st.Accepted != 2 || st.DeferredRate != 1 || st.Transactions != 3 || st.Deferrals() != 1 {
				t.Errorf("counters %+v, want 2 accepted, 1 rate deferral, 3 transactions", st)
			}
			// Still over the rate at the same instant; one token a second at 60/min.
			if o := c.send("a@example.com", []string{"u@example.net"}, "x\r\n"); o.stage != tt.stage {
				t.Fatalf("still over the rate: %q at %q", o.reply, o.stage)
			}
			if tt.closes {
				c = dial(t, s.Addr(), src)
				c.hello()
			}
			clock.Advance(time.Second)
			if o := c.send("a@example.com", []string{"u@example.net"}, "x\r\n"); o.stage != "" {
				t.Fatalf("after a second: refused at %s: %q", o.stage, o.reply)
			}
			if got := s.Total(); got.Accepted != 3 || got.DeferredRate != 2 {
				t.Errorf("totals %+v, want 3 accepted, 2 rate deferrals", got)
			}
		})
	}
}

// TestRateIsPerSenderIP checks that one IP over the rate does not slow another.
func TestRateIsPerSenderIP(t *testing.T) {
	s, _ := start(t, Profile{Provider: Yahoo, RatePerMinute: 1, Burst: 1, BlockAfter: -1})
	if o := attempt(t, s, "127.0.0.41"); o.stage != "" {
		t.Fatalf("first message: %q", o.reply)
	}
	if o := attempt(t, s, "127.0.0.41"); o.stage != StageMail {
		t.Fatalf("second message from the same IP: %q at %q", o.reply, o.stage)
	}
	if o := attempt(t, s, "127.0.0.42"); o.stage != "" {
		t.Fatalf("first message from another IP: %q", o.reply)
	}
	if ips := s.SenderIPs(); len(ips) != 2 || ips[0] != "127.0.0.41" || ips[1] != "127.0.0.42" {
		t.Errorf("sender IPs %v", ips)
	}
}

// TestConnectionCaps checks the refusal of a connection over the cap: at the greeting
// for Microsoft and Yahoo, in reply to EHLO for Gmail; the connection is closed, the
// deferral counted, and a slot freed by QUIT is available again.
func TestConnectionCaps(t *testing.T) {
	const src = "127.0.0.43"
	for _, p := range Providers() {
		t.Run(string(p), func(t *testing.T) {
			s, _ := start(t, Profile{Provider: p, MaxConnections: 2, BlockAfter: -1})
			open := []*client{dial(t, s.Addr(), src), dial(t, s.Addr(), src)}
			for _, c := range open {
				c.hello()
			}
			want := ReplyFor(p, EventConnections, src, s.Hostname())
			c := dial(t, s.Addr(), src)
			got := c.mustRead()
			switch want.Stage {
			case StageGreeting:
				if !sameReply(got, want.Text) {
					t.Errorf("greeting %q, want %q", got, want.Text)
				}
			case StageHelo:
				if !strings.HasPrefix(got, "220 ") {
					t.Fatalf("greeting %q", got)
				}
				got = c.cmd("EHLO client.example")
				if !sameReply(got, want.Text) {
					t.Errorf("EHLO reply %q, want %q", got, want.Text)
				}
			default:
				t.Fatalf("connection refusal at stage %s", want.Stage)
			}
			c.closed()
			if st := s.Stats(src); st.DeferredConnections != 1 || st.Connections != 3 {
				t.Errorf("counters %+v, want 3 connections, 1 connection deferral", st)
			}
			// Another sender IP has its own allowance.
			other := dial(t, s.Addr(), "127.0.0.44")
			other.hello()
			other.expect("QUIT", "221")

			open[0].expect("QUIT", "221")
			open[0].closed()
			c = dial(t, s.Addr(), src)
			c.hello()
			if o := c.send("a@example.com", []string{"u@example.net"}, "x\r\n"); o.stage != "" {
				t.Fatalf("after a slot was freed: %q", o.reply)
			}
		})
	}
	t.Run("texts", func(t *testing.T) {
		for p, text := range map[Provider]string{
			Google:    "421 4.7.0 Try again later, closing connection. (EHLO) provsim - gsmtp",
			Microsoft: "421 4.3.2 The maximum number of concurrent server connections has exceeded a limit, closing transmission channel [mx.test]",
			Yahoo:     "421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes",
		} {
			if got := ReplyFor(p, EventConnections, "192.0.2.1", "mx.test"); got.Text != text || !got.Close {
				t.Errorf("%s: %+v, want %q", p, got, text)
			}
		}
	})
}

// TestGoogleRefusalAnswersHELO checks that Gmail's refusal names the command it answers.
func TestGoogleRefusalAnswersHELO(t *testing.T) {
	s, _ := start(t, Profile{Provider: Google, MaxConnections: 1, BlockAfter: -1})
	first := dial(t, s.Addr(), "127.0.0.45")
	first.hello()
	c := dial(t, s.Addr(), "127.0.0.45")
	c.mustRead()
	if got := c.cmd("HELO client.example"); !strings.HasPrefix(got, "421 4.7.0 Try again later, closing connection. (HELO) ") {
		t.Errorf("HELO reply %q", got)
	}
	c.closed()
}

// TestMessagesPerConnection checks the optional per-connection limit: the transaction
// after the limit is refused at MAIL with a 421, the connection closed, and the deferral
// does not count towards a block.
func TestMessagesPerConnection(t *testing.T) {
	const src = "127.0.0.46"
	s, _ := start(t, Profile{Provider: Microsoft, MaxMessagesPerConnection: 2, BlockAfter: 1})
	for round := range 3 {
		c := dial(t, s.Addr(), src)
		c.hello()
		for i := range 2 {
			if o := c.send("a@example.com", []string{"u@example.net"}, "x\r\n"); o.stage != "" {
				t.Fatalf("round %d message %d: %q", round, i, o.reply)
			}
		}
		o := c.send("a@example.com", []string{"u@example.net"}, "x\r\n")
		if o.stage != StageMail || !strings.HasPrefix(o.reply, "421 4.7.0 ") {
			t.Fatalf("third message: %q at %q", o.reply, o.stage)
		}
		c.closed()
	}
	st := s.Stats(src)
	if st.Accepted != 6 || st.DeferredPerConnection != 3 || st.BlocksTriggered != 0 {
		t.Errorf("counters %+v, want 6 accepted, 3 per-connection deferrals, no block", st)
	}
}

// TestWithinLimits checks that a sender within every limit has all its messages
// accepted and counted, through several connections at once.
func TestWithinLimits(t *testing.T) {
	for _, p := range Providers() {
		t.Run(string(p), func(t *testing.T) {
			s, _ := start(t, Profile{Provider: p, MaxConnections: 3, RatePerMinute: 600, Burst: 30})
			const src = "127.0.0.47"
			cs := []*client{dial(t, s.Addr(), src), dial(t, s.Addr(), src), dial(t, s.Addr(), src)}
			for _, c := range cs {
				c.hello()
			}
			for i := range 30 {
				c := cs[i%len(cs)]
				if o := c.send("list@example.com", []string{"a@example.net", "b@example.net"}, "Subject: n\r\n\r\nhi\r\n"); o.stage != "" {
					t.Fatalf("message %d refused at %s: %q", i, o.stage, o.reply)
				}
			}
			for _, c := range cs {
				c.expect("QUIT", "221")
			}
			st := s.Stats(src)
			want := Counters{Connections: 3, Transactions: 30, Accepted: 30, Recipients: 60}
			if st != want {
				t.Errorf("counters %+v, want %+v", st, want)
			}
			if tot := s.Total(); tot != want {
				t.Errorf("totals %+v, want %+v", tot, want)
			}
			msgs := s.Messages()
			if len(msgs) != 30 {
				t.Fatalf("%d messages kept", len(msgs))
			}
			m := msgs[0]
			if m.Provider != p || m.SenderIP != src || m.From != "list@example.com" || len(m.To) != 2 || m.Helo != "client.example" ||
				m.Size != int64(len("Subject: n\r\n\r\nhi\r\n")) || m.Body != nil || !m.At.Equal(epoch) {
				t.Errorf("message %+v", m)
			}
		})
	}
}
