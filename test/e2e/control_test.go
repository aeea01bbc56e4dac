package e2e

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestAdminChannel: `repute queue retry` on a running server takes effect at once, not at
// the next queue scan. The server scans the queue hourly and retries after an hour; its
// only message waits because the destination is down. After the retry command the next
// attempt is made within seconds (the server is told over data_dir/control.sock, which
// only its own account may use), and once the destination is back a second retry
// delivers the message.
func TestAdminChannel(t *testing.T) {
	t.Parallel()
	z := newZone(t)
	slow := queueOpts{RetryMin: "1h", RetryMax: "2h", ScanInterval: "1h", DelayWarning: "0s"}
	a, b := hostPair(t, z, serverOptions{Queue: slow}, serverOptions{Queue: slow})
	a.start()

	fi, err := os.Stat(filepath.Join(a.dataDir, "control.sock"))
	if err != nil || fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket: %v, mode %v; want a socket with mode 0600", err, fi.Mode())
	}

	subj := "admin channel " + uniqueID()
	a.submit(t, "alice", []string{"bob@b.test"}, subj)
	a.waitQueueEntry(t, "bob@b.test", deliveryTimeout, "the first attempt to fail", func(e queueEntry) bool { return e.Attempts == 1 })

	a.cliT(t, "", "queue", "retry", "--all")
	took := waitFor(t, 15*time.Second, "the retried attempt", func() (bool, string) {
		es := a.queueFor(t, "bob@b.test")
		if len(es) == 0 {
			return false, "entry gone"
		}
		return es[0].Attempts == 2, es[0].String()
	})
	t.Logf("retry took effect after %v (scan interval 1h)", took.Round(10*time.Millisecond))

	b.start()
	a.cliT(t, "", "queue", "retry", "--all")
	b.waitForMessage(t, "bob", deliveryTimeout, subj, withSubject(subj))

	// Without a running server the command still works: the change is in the store.
	a.stop()
	if _, err := os.Stat(filepath.Join(a.dataDir, "control.sock")); !os.IsNotExist(err) {
		t.Errorf("control socket left behind after a clean stop: %v", err)
	}
	if out, err := a.cli("", "queue", "retry", "--all"); err != nil {
		t.Errorf("queue retry without a running server: %v\n%s", err, out)
	}
}

// TestTimeScale: with [shaping] time_scale the real retry schedule runs compressed. The
// server keeps the default retry_min of five minutes; at a scale of 300 the second
// attempt at a destination that is down comes about a second after the first, and once
// the destination is back the message arrives without any admin command.
func TestTimeScale(t *testing.T) {
	t.Parallel()
	z := newZone(t)
	a, b := hostPair(t, z, serverOptions{TimeScale: 300}, serverOptions{Queue: fastQueue})
	a.start()
	subj := "time scale " + uniqueID()
	a.submit(t, "alice", []string{"bob@b.test"}, subj)
	a.waitQueueEntry(t, "bob@b.test", deliveryTimeout, "a second attempt within seconds (5m / 300)",
		func(e queueEntry) bool { return e.Attempts >= 2 })
	b.start()
	b.waitForMessage(t, "bob", deliveryTimeout, subj, withSubject(subj))
}
