// Package authguard slows down and locks out password guessing, for every listener that
// takes a password (SMTP submission, IMAP): a built-in fail2ban.
//
// Each failed login from a client address adds a growing delay before the failure is
// answered; after MaxFailures failures within Window the address is locked out for
// Lockout, and even a correct password is refused from it; when the lockout ends, a new
// window starts. A successful login forgives the address's failures. IPv6 clients are
// counted per /64. The limit holds for parallel attempts too: an attempt in progress counts
// as a failure until it succeeds (see Check), so however many connections an address opens,
// at most MaxFailures wrong passwords from it are evaluated before it is locked out.
//
// Failures are also counted per account, but an account is only ever slowed down, never
// locked: a lockout by account would let anyone lock a user out from anywhere.
//
// Upstream: internal/app wraps store.Authenticate with Guard.Check.
package authguard

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// ErrLockedOut is returned for a client address that failed too often.
var ErrLockedOut = errors.New("too many failed logins from this address; try again later")

// Guard holds failure counters. Its zero value needs Defaults-like fields set; use New.
type Guard struct {
	MaxFailures int           // per address within Window before lockout
	Window      time.Duration // failures older than this are forgotten
	Lockout     time.Duration
	StepDelay   time.Duration // added per recent failure, up to MaxDelay
	MaxDelay    time.Duration
	Now         func() time.Time
	Sleep       func(context.Context, time.Duration)
	Log         *slog.Logger
	OnLockout   func(remote netip.Addr) // told when an address gets locked out (metrics)

	mu       sync.Mutex
	byAddr   map[netip.Prefix]*record
	byUser   map[string]*record
	lastTrim time.Time
}

// record counts the login failures of one client address (or one account) in the current
// window. For an address, pending counts the attempts in progress; each holds a slot, so
// failures+pending never exceeds MaxFailures.
type record struct {
	failures    int
	first       time.Time // of the first failure in the window
	lockedUntil time.Time
	pending     int
	settled     chan struct{} // closed when an attempt in progress ends; nil if none waits
}

// New returns a guard with production defaults: 10 failures in 15 minutes lock an address
// out for 15 minutes; each failure adds 500 ms of delay, up to 5 s.
func New(log *slog.Logger) *Guard {
	if log == nil {
		log = slog.Default()
	}
	return &Guard{MaxFailures: 10, Window: 15 * time.Minute, Lockout: 15 * time.Minute,
		StepDelay: 500 * time.Millisecond, MaxDelay: 5 * time.Second, Now: time.Now, Sleep: sleepCtx, Log: log}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func key(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	if a.Is6() && !a.IsLoopback() {
		p, _ := a.Prefix(64)
		return p
	}
	return netip.PrefixFrom(a, a.BitLen())
}

// Check runs login (the real password check) unless the address is locked out, and records
// the outcome. isFailure tells a wrong password from other errors (a database error must not
// count against the client).
//
// The limit is exact under concurrency: before login runs, the attempt takes one of the
// address's MaxFailures slots, and holds it as a failure until login returns. An attempt
// that finds every slot taken waits (or until ctx ends) for one of the attempts in progress
// to finish: if those fail, the address is locked out and the waiting attempt refused;
// if one succeeds, its slot is free again. However many connections an address opens, at
// most MaxFailures wrong passwords from it are ever evaluated within Window.
func Check[U any](ctx context.Context, g *Guard, remote netip.Addr, username string,
	login func() (U, error), isFailure func(error) bool) (U, error) {
	var zero U
	k := key(remote)
	user := strings.ToLower(strings.TrimSpace(username))
	r, err := g.reserve(ctx, k)
	if err != nil {
		if errors.Is(err, ErrLockedOut) {
			g.Log.Warn("auth: refused login from locked-out address", "remote", remote, "user", user)
		}
		return zero, err
	}
	held := true
	defer func() {
		if held { // login panicked: give the slot back without counting it
			g.settle(r, k, settleOther)
		}
	}()
	u, err := login()
	switch {
	case err == nil:
		held = false
		g.settle(r, k, settleSuccess)
		return u, nil
	case !isFailure(err):
		held = false
		g.settle(r, k, settleOther)
		return zero, err
	}
	held = false
	now, failures, locked := g.settle(r, k, settleFailure)
	g.mu.Lock()
	ur := g.bumpUser(user, now)
	n := max(failures, ur.failures/2)
	g.mu.Unlock()
	if locked {
		g.Log.Warn("auth: address locked out after repeated login failures", "remote", remote,
			"failures", failures, "lockout", g.Lockout)
		if g.OnLockout != nil {
			g.OnLockout(remote)
		}
	}
	g.Sleep(ctx, min(time.Duration(n)*g.StepDelay, g.MaxDelay))
	return zero, err
}

// reserve takes a slot for one login attempt from k, waiting while all are taken by
// attempts in progress. It returns ErrLockedOut for a locked-out address.
func (g *Guard) reserve(ctx context.Context, k netip.Prefix) (*record, error) {
	for {
		now := g.Now()
		g.mu.Lock()
		g.trim(now)
		r := g.byAddr[k]
		if r == nil {
			r = &record{}
			if g.byAddr == nil {
				g.byAddr = map[netip.Prefix]*record{}
			}
			g.byAddr[k] = r
		}
		if now.Before(r.lockedUntil) {
			g.mu.Unlock()
			return nil, ErrLockedOut
		}
		r.expire(now, g.Window)
		if r.failures+r.pending < g.maxFailures() {
			r.pending++
			g.mu.Unlock()
			return r, nil
		}
		if r.settled == nil {
			r.settled = make(chan struct{})
		}
		wait := r.settled
		g.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// maxFailures is MaxFailures, at least 1: with no slot at all no attempt could ever run.
func (g *Guard) maxFailures() int { return max(g.MaxFailures, 1) }

// Outcomes of a reserved attempt.
const (
	settleSuccess = iota // the right password: the address's failures are forgiven
	settleFailure        // a wrong password: counted; MaxFailures of them lock the address out
	settleOther          // anything else (a broken database): not counted
)

// settle releases the slot r holds for an attempt from k with the given outcome and wakes
// the attempts waiting for a slot. For a failure it returns the time, the address's
// failures in the window and whether this failure locked the address out.
func (g *Guard) settle(r *record, k netip.Prefix, outcome int) (now time.Time, failures int, locked bool) {
	now = g.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	r.pending--
	switch outcome {
	case settleSuccess:
		r.failures = 0
	case settleFailure:
		if r.failures == 0 {
			r.first = now
		}
		r.failures++
		if r.failures >= g.maxFailures() && !now.Before(r.lockedUntil) {
			r.lockedUntil = now.Add(g.Lockout)
			locked = true
		}
	}
	if r.settled != nil {
		close(r.settled)
		r.settled = nil
	}
	if r.pending == 0 && r.failures == 0 && !now.Before(r.lockedUntil) && g.byAddr[k] == r {
		delete(g.byAddr, k)
	}
	return now, r.failures, locked
}

// expire starts a new window when the failures counted are older than window, or the
// lockout they caused is over. Slots held by attempts in progress stay held.
func (r *record) expire(now time.Time, window time.Duration) {
	lockOver := !r.lockedUntil.IsZero() && !now.Before(r.lockedUntil)
	if lockOver || r.failures > 0 && now.Sub(r.first) > window {
		r.failures, r.lockedUntil = 0, time.Time{}
	}
}

func (g *Guard) bumpUser(user string, now time.Time) *record {
	if g.byUser == nil {
		g.byUser = map[string]*record{}
	}
	r := g.byUser[user]
	if r == nil || now.Sub(r.first) > g.Window {
		r = &record{first: now}
		g.byUser[user] = r
	}
	r.failures++
	return r
}

// trim forgets stale records, at most once a minute, so the maps stay small.
func (g *Guard) trim(now time.Time) {
	if now.Sub(g.lastTrim) < time.Minute {
		return
	}
	g.lastTrim = now
	for k, r := range g.byAddr {
		if r.pending == 0 && now.Sub(r.first) > g.Window && now.After(r.lockedUntil) {
			delete(g.byAddr, k)
		}
	}
	for k, r := range g.byUser {
		if now.Sub(r.first) > g.Window {
			delete(g.byUser, k)
		}
	}
}

// LockedOut reports whether remote is currently locked out (for metrics and tests).
func (g *Guard) LockedOut(remote netip.Addr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.byAddr[key(remote)]
	return r != nil && g.Now().Before(r.lockedUntil)
}

// Authenticator checks passwords behind a Guard, for every protocol that logs users in
// (SMTP AUTH, IMAP LOGIN), and reports what happened to the metrics.
type Authenticator[U any] struct {
	Guard *Guard
	// Check is the real password check; IsBadPassword tells a wrong password (which
	// counts against the client) from other errors (which do not).
	Check         func(ctx context.Context, user, pass string) (U, error)
	IsBadPassword func(error) bool
	Failed        func(protocol string) // a wrong password was refused; nil: not counted
	Refused       func()                // an attempt from a locked-out address was refused; nil: not counted
}

// Login checks user's password for protocol ("smtp", "imap") from remote. A locked-out
// address gets ErrLockedOut without its password being checked.
func (a Authenticator[U]) Login(ctx context.Context, protocol, user, pass string, remote netip.Addr) (U, error) {
	u, err := Check(ctx, a.Guard, remote, user, func() (U, error) { return a.Check(ctx, user, pass) }, a.IsBadPassword)
	switch {
	case errors.Is(err, ErrLockedOut):
		if a.Refused != nil {
			a.Refused()
		}
	case err != nil && a.IsBadPassword(err):
		if a.Failed != nil {
			a.Failed(protocol)
		}
	}
	return u, err
}
