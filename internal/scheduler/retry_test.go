package scheduler

import (
	"testing"
	"time"
)

func TestPolicyNext(t *testing.T) {
	p := Policy{RetryMin: 5 * time.Minute, RetryMax: 3 * time.Hour, MaxAge: 5 * 24 * time.Hour, DelayWarning: 4 * time.Hour}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		age      time.Duration
		attempts int
		hint     time.Duration
		jitter   float64
		want     time.Duration // wait from now; -1 = expire
	}{
		{"first retry", time.Minute, 1, 0, 0.5, 5 * time.Minute},
		{"second doubles", time.Hour, 2, 0, 0.5, 10 * time.Minute},
		{"fifth", time.Hour, 5, 0, 0.5, 80 * time.Minute},
		{"capped", time.Hour, 12, 0, 0.5, 3 * time.Hour},
		{"jitter low", time.Minute, 1, 0, 0, 4*time.Minute + 30*time.Second},
		{"jitter high", time.Minute, 1, 0, 0.999999, 5*time.Minute + 30*time.Second},
		{"longer hint honoured", time.Minute, 1, 20 * time.Minute, 0.5, 20 * time.Minute},
		{"shorter hint ignored", time.Minute, 3, time.Minute, 0.5, 20 * time.Minute},
		{"last attempt at max age", 5*24*time.Hour - time.Hour, 30, 0, 0.5, time.Hour},
		{"expired", 5 * 24 * time.Hour, 30, 0, 0.5, -1},
	}
	for _, tc := range tests {
		now := t0.Add(tc.age)
		next, d := p.Next(now, t0, tc.attempts, tc.hint, tc.jitter)
		if tc.want < 0 {
			if d != Expire {
				t.Errorf("%s: %v, want Expire", tc.name, d)
			}
			continue
		}
		if d != Retry || next.Sub(now) != tc.want {
			t.Errorf("%s: wait %v (%v), want %v", tc.name, next.Sub(now), d, tc.want)
		}
	}
}

func TestPolicyShouldWarn(t *testing.T) {
	p := Policy{RetryMin: time.Minute, RetryMax: time.Hour, MaxAge: 48 * time.Hour, DelayWarning: 4 * time.Hour}
	t0 := time.Unix(0, 0)
	for _, tc := range []struct {
		age    time.Duration
		warned bool
		want   bool
	}{{time.Hour, false, false}, {4 * time.Hour, false, true}, {5 * time.Hour, true, false}} {
		if got := p.ShouldWarn(t0.Add(tc.age), t0, tc.warned); got != tc.want {
			t.Errorf("age %v warned %v: %v", tc.age, tc.warned, got)
		}
	}
	p.DelayWarning = 0
	if p.ShouldWarn(t0.Add(100*time.Hour), t0, false) {
		t.Error("DelayWarning 0 must never warn")
	}
}
