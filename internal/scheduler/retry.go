package scheduler

import (
	"time"
)

// Policy is the retry policy: exponential backoff with jitter between RetryMin and
// RetryMax, a hard MaxAge, and one delay warning after DelayWarning.
type Policy struct {
	RetryMin     time.Duration
	RetryMax     time.Duration
	MaxAge       time.Duration
	DelayWarning time.Duration // 0: never warn
}

// Decision is what to do with an entry after a temporary failure.
type Decision int

const (
	Retry  Decision = iota // try again at the returned time
	Expire                 // older than MaxAge: bounce
)

// Next decides, after the attempts-th failed attempt (1 for the first) of an entry created
// at created, when to try again. jitter is a number in [0,1) (from the caller's random
// source) that spreads retries by ±10% so that messages queued together do not retry in
// lockstep. hint is the receiver's "try again in" wish, honoured when it asks for longer
// than the backoff (never beyond MaxAge). An entry whose next attempt would fall after
// its MaxAge gets one last attempt at MaxAge, so no message bounces for a temporary
// failure earlier than its maximum age and none waits past it.
func (p Policy) Next(now, created time.Time, attempts int, hint time.Duration, jitter float64) (time.Time, Decision) {
	deadline := created.Add(p.MaxAge)
	if !now.Before(deadline) {
		return time.Time{}, Expire
	}
	wait := p.RetryMin
	for i := 1; i < attempts && wait < p.RetryMax; i++ {
		wait *= 2
	}
	wait = min(wait, p.RetryMax)
	wait = time.Duration(float64(wait) * (0.9 + 0.2*jitter)).Round(time.Second) // the queue keeps seconds
	wait = max(wait, hint, time.Second)
	next := now.Add(wait)
	if next.After(deadline) {
		next = deadline
	}
	return next, Retry
}

// ShouldWarn reports whether an entry created at created, not yet warned, is now old
// enough for a delay notice.
func (p Policy) ShouldWarn(now, created time.Time, warned bool) bool {
	return p.DelayWarning > 0 && !warned && now.Sub(created) >= p.DelayWarning && p.DelayWarning < p.MaxAge
}
