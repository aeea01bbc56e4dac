package provsim

import (
	"sync"
	"time"
)

// ManualClock is a clock that moves only when told, for Config.Now in tests. It is safe
// for concurrent use.
type ManualClock struct {
	mu sync.Mutex
	t  time.Time
}

// NewManualClock is a clock at t.
func NewManualClock(t time.Time) *ManualClock { return &ManualClock{t: t} }

// Now is the clock's time.
func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *ManualClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// simClock maps the injected clock to simulated time, which runs scale times faster
// from the epoch (the clock's time when the server started).
type simClock struct {
	now   func() time.Time
	epoch time.Time
	scale float64
}

// sim is the simulated time at clock time t.
func (c simClock) sim(t time.Time) time.Time {
	if c.scale == 1 {
		return t
	}
	return c.epoch.Add(time.Duration(float64(t.Sub(c.epoch)) * c.scale))
}

// clock is the clock time at simulated time s.
func (c simClock) clock(s time.Time) time.Time {
	if c.scale == 1 {
		return s
	}
	return c.epoch.Add(time.Duration(float64(s.Sub(c.epoch)) / c.scale))
}

// simNow is the simulated time now.
func (c simClock) simNow() time.Time { return c.sim(c.now()) }
