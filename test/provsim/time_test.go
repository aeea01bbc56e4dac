package provsim

import (
	"testing"
	"time"
)

// TestTimeScaleCompressesRate checks that with a time scale of 60 a simulated minute
// passes in a second of the clock: a sender allowed one message a minute gets its next
// token after one second, where without scaling it needs the full minute.
func TestTimeScaleCompressesRate(t *testing.T) {
	const src = "127.0.0.61"
	prof := Profile{Provider: Yahoo, RatePerMinute: 1, Burst: 1, BlockAfter: -1}

	scaled, clock := start(t, prof, func(c *Config) { c.TimeScale = 60 })
	if o := attempt(t, scaled, src); o.stage != "" {
		t.Fatalf("first: %q", o.reply)
	}
	if o := attempt(t, scaled, src); o.stage != StageMail {
		t.Fatalf("second, same instant: %q", o.reply)
	}
	clock.Advance(time.Second)
	if got := scaled.SimNow(); !got.Equal(epoch.Add(time.Minute)) {
		t.Errorf("simulated time %v after one clock second, want %v", got, epoch.Add(time.Minute))
	}
	if o := attempt(t, scaled, src); o.stage != "" {
		t.Fatalf("one clock second later at scale 60: %q", o.reply)
	}

	plain, clock := start(t, prof)
	attempt(t, plain, src)
	clock.Advance(time.Second)
	if o := attempt(t, plain, src); o.stage != StageMail {
		t.Fatalf("one second later at scale 1: %q", o.reply)
	}
	clock.Advance(59 * time.Second)
	if o := attempt(t, plain, src); o.stage != "" {
		t.Fatalf("one minute later at scale 1: %q", o.reply)
	}
}

// TestTimeScaleCompressesBlock checks that the block window and the cool-down are
// simulated time too: at a scale of 3600 a one-hour block lasts one clock second, and
// deferrals a clock second (a simulated hour) apart never share a one-minute window.
func TestTimeScaleCompressesBlock(t *testing.T) {
	const src = "127.0.0.62"
	s, clock := start(t, Profile{Provider: Microsoft, RatePerMinute: 1, Burst: 1, BlockAfter: 1,
		BlockWindow: time.Minute, BlockFor: time.Hour}, func(c *Config) { c.TimeScale = 3600 })
	c := dial(t, s.Addr(), src)
	c.hello()
	if o := c.send("a@example.com", []string{"u@example.net"}, "x\r\n"); o.stage != "" {
		t.Fatalf("first: %q", o.reply)
	}
	// Over the rate twice in the same instant: the second deferral blocks.
	for range 2 {
		if o := c.send("a@example.com", []string{"u@example.net"}, "x\r\n"); o.stage != StageRcpt {
			t.Fatalf("%q at %q", o.reply, o.stage)
		}
	}
	until, blocked := s.Blocked(src)
	if !blocked || !until.Equal(epoch.Add(time.Second)) {
		t.Fatalf("Blocked = %v, %v; want until one clock second from now", until, blocked)
	}
	clock.Advance(time.Second)
	if _, blocked := s.Blocked(src); blocked {
		t.Fatal("still blocked one clock second (one simulated hour) later")
	}
	// Deferrals a clock second (a simulated hour) apart: a one-minute window never holds two.
	for i := range 5 {
		if o := c.send("a@example.com", []string{"u@example.net"}, "x\r\n"); o.stage != "" {
			t.Fatalf("round %d: the hour's token: %q", i, o.reply)
		}
		clock.Advance(time.Millisecond) // 3.6 simulated seconds: no token yet
		if o := c.send("a@example.com", []string{"u@example.net"}, "x\r\n"); o.stage != StageRcpt {
			t.Fatalf("%q at %q", o.reply, o.stage)
		}
		clock.Advance(time.Second)
	}
	if st := s.Stats(src); st.BlocksTriggered != 1 {
		t.Errorf("counters %+v, want only the first block", st)
	}
}

// TestPacedSenderMeetsIdealTime plays a perfect sender: it sends the burst at once, then
// one message every minute/rate, and is never deferred; the clock time it takes is the
// ideal time.
func TestPacedSenderMeetsIdealTime(t *testing.T) {
	const src = "127.0.0.63"
	prof := Profile{Provider: Google, RatePerMinute: 120, Burst: 5}
	const scale = 10
	s, clock := start(t, prof, func(c *Config) { c.TimeScale = scale })
	const n = 25
	c := dial(t, s.Addr(), src)
	c.hello()
	step := time.Minute / 120 / scale
	for i := range n {
		if i >= prof.Burst {
			clock.Advance(step)
		}
		if o := c.send("a@example.com", []string{"u@example.net"}, "x\r\n"); o.stage != "" {
			t.Fatalf("message %d: %q", i, o.reply)
		}
	}
	elapsed := clock.Now().Sub(epoch)
	if ideal := s.IdealTime(n, 1); elapsed != ideal {
		t.Errorf("paced sender took %v, ideal %v", elapsed, ideal)
	}
	if st := s.Stats(src); st.Deferrals() != 0 || st.Accepted != n {
		t.Errorf("counters %+v", st)
	}
}

// TestIdealTime checks the ideal-time arithmetic.
func TestIdealTime(t *testing.T) {
	g := Profile{Provider: Google, RatePerMinute: 60, Burst: 10}
	m := Profile{Provider: Microsoft, RatePerMinute: 30, Burst: 5}
	y := Profile{Provider: Yahoo, RatePerMinute: 12}
	tests := []struct {
		name  string
		got   time.Duration
		wantD time.Duration
	}{
		{"one IP", g.IdealTime(100, 1), 90 * time.Second},
		{"two IPs share the load", g.IdealTime(100, 2), 40 * time.Second},
		{"zero IPs mean one", g.IdealTime(100, 0), 90 * time.Second},
		{"within the burst", g.IdealTime(10, 1), 0},
		{"no messages", g.IdealTime(0, 1), 0},
		{"default burst is ten seconds of the rate", y.IdealTime(14, 1), 1 * time.Minute},
		{"no rate limit", Profile{Provider: Yahoo}.IdealTime(1000, 1), 0},
		{"parallel providers: the longest", IdealTime(1, Load{g, 100, 1}, Load{m, 65, 1}), 2 * time.Minute},
		{"time scale divides", IdealTime(60, Load{g, 100, 1}, Load{m, 65, 1}), 2 * time.Second},
		{"zero scale means one", IdealTime(0, Load{Profile: g, Messages: 100}), 90 * time.Second},
	}
	for _, tt := range tests {
		if tt.got != tt.wantD {
			t.Errorf("%s: %v, want %v", tt.name, tt.got, tt.wantD)
		}
	}
	if b := y.BurstSize(); b != 2 {
		t.Errorf("default burst at 12/min: %d, want 2", b)
	}
}
