package authguard

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

var errBad = errors.New("bad password")

func TestLockoutPerAddress(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	var slept time.Duration
	g := New(slog.New(slog.DiscardHandler))
	g.Now = func() time.Time { return now }
	g.Sleep = func(_ context.Context, d time.Duration) { slept += d }
	ctx := context.Background()
	attacker := netip.MustParseAddr("192.0.2.7")
	friend := netip.MustParseAddr("198.51.100.1")
	try := func(from netip.Addr, good bool) error {
		_, err := Check(ctx, g, from, "alice@a.test", func() (int, error) {
			if good {
				return 1, nil
			}
			return 0, errBad
		}, func(err error) bool { return errors.Is(err, errBad) })
		return err
	}
	for i := 0; i < 20; i++ {
		err := try(attacker, false)
		if i < 10 && !errors.Is(err, errBad) || i >= 10 && !errors.Is(err, ErrLockedOut) {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
	}
	if slept == 0 {
		t.Error("failures were not slowed down")
	}
	if err := try(attacker, true); !errors.Is(err, ErrLockedOut) {
		t.Errorf("locked-out address got in with the right password: %v", err)
	}
	if err := try(friend, true); err != nil {
		t.Errorf("the right password from another address must work: %v", err)
	}
	now = now.Add(16 * time.Minute)
	if err := try(attacker, true); err != nil {
		t.Errorf("lockout did not expire: %v", err)
	}
	// Other errors (a broken database) never count against the client.
	for i := 0; i < 30; i++ {
		Check(ctx, g, friend, "x", func() (int, error) { return 0, errors.New("db down") },
			func(err error) bool { return errors.Is(err, errBad) })
	}
	if g.LockedOut(friend) {
		t.Error("internal errors locked a client out")
	}
}

func TestIPv6CountedPerPrefix(t *testing.T) {
	g := New(slog.New(slog.DiscardHandler))
	g.Sleep = func(context.Context, time.Duration) {}
	for i := 0; i < 10; i++ {
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i)})
		Check(context.Background(), g, a, "u", func() (int, error) { return 0, errBad },
			func(error) bool { return true })
	}
	if !g.LockedOut(netip.MustParseAddr("2001:db8::ff")) {
		t.Error("addresses of one /64 must share a counter")
	}
}

func isBad(err error) bool { return errors.Is(err, errBad) }

// burst runs n logins from addr at once, each taking a second (a slow password hash), and
// returns how many passwords login evaluated and how many attempts were refused as locked
// out. Runs inside a synctest bubble, where the second passes at once.
func burst(t *testing.T, g *Guard, addr netip.Addr, n int, good bool) (evaluated, lockedOut int) {
	t.Helper()
	var mu sync.Mutex
	inFlight, maxInFlight := 0, 0
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, errs[i] = Check(context.Background(), g, addr, "alice@a.test", func() (int, error) {
				mu.Lock()
				evaluated++
				inFlight++
				maxInFlight = max(maxInFlight, inFlight)
				mu.Unlock()
				time.Sleep(time.Second)
				mu.Lock()
				inFlight--
				mu.Unlock()
				if good {
					return 1, nil
				}
				return 0, errBad
			}, isBad)
		})
	}
	wg.Wait()
	for _, err := range errs {
		switch {
		case errors.Is(err, ErrLockedOut):
			lockedOut++
		case err == nil && good, errors.Is(err, errBad) && !good:
		default:
			t.Errorf("unexpected result %v", err)
		}
	}
	if maxInFlight > g.MaxFailures {
		t.Errorf("%d password checks ran at once from one address, more than the %d slots", maxInFlight, g.MaxFailures)
	}
	return evaluated, lockedOut
}

// TestParallelGuessesExact is the reported case: parallel connections all passed the
// "locked out?" test before any of their failures was counted, and got 15 guesses instead
// of 10. Now at most MaxFailures wrong passwords are evaluated per window, however many
// attempts run at once.
func TestParallelGuessesExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := New(slog.New(slog.DiscardHandler))
		attacker := netip.MustParseAddr("192.0.2.7")
		for round := range 3 {
			evaluated, lockedOut := burst(t, g, attacker, 50, false)
			if evaluated != g.MaxFailures || lockedOut != 50-g.MaxFailures {
				t.Errorf("round %d: %d wrong passwords evaluated, %d attempts locked out; want %d and %d",
					round, evaluated, lockedOut, g.MaxFailures, 50-g.MaxFailures)
			}
			if !g.LockedOut(attacker) {
				t.Errorf("round %d: address not locked out", round)
			}
			time.Sleep(g.Lockout + time.Second) // the lockout ends; a new window starts
			if g.LockedOut(attacker) {
				t.Errorf("round %d: lockout did not end", round)
			}
		}
	})
}

// TestParallelGoodLogins checks that slots held by logins in progress make other logins
// wait, not fail: parallel logins with the right password all succeed, including from an
// address with failures on record (a success forgives them and frees the slots).
func TestParallelGoodLogins(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := New(slog.New(slog.DiscardHandler))
		office := netip.MustParseAddr("198.51.100.1")
		if evaluated, lockedOut := burst(t, g, office, 30, true); evaluated != 30 || lockedOut != 0 {
			t.Errorf("%d of 30 good logins evaluated, %d locked out", evaluated, lockedOut)
		}
		if evaluated, _ := burst(t, g, office, g.MaxFailures-1, false); evaluated != g.MaxFailures-1 {
			t.Fatalf("%d failures evaluated", evaluated)
		}
		if evaluated, lockedOut := burst(t, g, office, 30, true); evaluated != 30 || lockedOut != 0 {
			t.Errorf("after %d failures: %d of 30 good logins evaluated, %d locked out", g.MaxFailures-1, evaluated, lockedOut)
		}
		if g.LockedOut(office) {
			t.Error("good logins locked the address out")
		}
	})
}

// TestWaitingAttemptGivesUp checks that an attempt waiting for a slot ends with its
// context, and that a panicking password check gives its slot back uncounted.
func TestWaitingAttemptGivesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := New(slog.New(slog.DiscardHandler))
		addr := netip.MustParseAddr("203.0.113.9")
		release := make(chan struct{})
		var wg sync.WaitGroup
		for range g.MaxFailures {
			wg.Go(func() {
				Check(context.Background(), g, addr, "u", func() (int, error) { <-release; return 0, errBad }, isBad)
			})
		}
		synctest.Wait() // every slot is held
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() {
			_, err := Check(ctx, g, addr, "u", func() (int, error) { t.Error("ran without a slot"); return 0, nil }, isBad)
			done <- err
		}()
		synctest.Wait()
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("waiting attempt ended with %v, want context.Canceled", err)
		}
		close(release)
		wg.Wait()
		if !g.LockedOut(addr) {
			t.Error("not locked out after the failures in progress")
		}

		other := netip.MustParseAddr("203.0.113.10")
		func() {
			defer func() { recover() }()
			Check(context.Background(), g, other, "u", func() (int, error) { panic("boom") }, isBad)
		}()
		if evaluated, lockedOut := burst(t, g, other, g.MaxFailures+5, false); evaluated != g.MaxFailures || lockedOut != 5 {
			t.Errorf("after a panicking check: %d evaluated, %d locked out; want %d and 5", evaluated, lockedOut, g.MaxFailures)
		}
	})
}
