// Package authguard slows down and locks out password guessing, for every listener that
// takes a password (SMTP submission, IMAP): a built-in fail2ban.
//
// Each failed login from a client address adds a growing delay before the failure is
// answered; after MaxFailures failures within Window the address is locked out for
// Lockout, and even a correct password is refused from it. IPv6 clients are counted per /64.
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

type record struct {
	failures    int
	first       time.Time
	lockedUntil time.Time
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
func Check[U any](ctx context.Context, g *Guard, remote netip.Addr, username string,
	login func() (U, error), isFailure func(error) bool) (U, error) {
	var zero U
	k := key(remote)
	user := strings.ToLower(strings.TrimSpace(username))
	now := g.Now()
	g.mu.Lock()
	g.trim(now)
	r := g.byAddr[k]
	if r != nil && now.Before(r.lockedUntil) {
		g.mu.Unlock()
		g.Log.Warn("auth: refused login from locked-out address", "remote", remote, "user", user)
		return zero, ErrLockedOut
	}
	g.mu.Unlock()

	u, err := login()
	if err == nil {
		g.mu.Lock()
		delete(g.byAddr, k)
		g.mu.Unlock()
		return u, nil
	}
	if !isFailure(err) {
		return zero, err
	}
	g.mu.Lock()
	ar := g.bump(k, now)
	ur := g.bumpUser(user, now)
	locked := false
	if ar.failures >= g.MaxFailures && !now.Before(ar.lockedUntil) {
		ar.lockedUntil = now.Add(g.Lockout)
		locked = true
	}
	n := max(ar.failures, ur.failures/2)
	g.mu.Unlock()
	if locked {
		g.Log.Warn("auth: address locked out after repeated login failures", "remote", remote,
			"failures", ar.failures, "lockout", g.Lockout)
		if g.OnLockout != nil {
			g.OnLockout(remote)
		}
	}
	g.Sleep(ctx, min(time.Duration(n)*g.StepDelay, g.MaxDelay))
	return zero, err
}

func (g *Guard) bump(k netip.Prefix, now time.Time) *record {
	if g.byAddr == nil {
		g.byAddr = map[netip.Prefix]*record{}
	}
	r := g.byAddr[k]
	if r == nil || now.Sub(r.first) > g.Window && now.After(r.lockedUntil) {
		r = &record{first: now}
		g.byAddr[k] = r
	}
	r.failures++
	return r
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
		if now.Sub(r.first) > g.Window && now.After(r.lockedUntil) {
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
