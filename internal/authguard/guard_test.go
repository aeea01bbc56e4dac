package authguard

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"testing"
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
