package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// TestDiskFull puts the data directory on a 6 MiB tmpfs and fills it up for real.
//
// Phase 1 (min_free_disk = 0, no early check): messages are sent until the database cannot
// grow; the server must answer 452 4.3.1 (temporary), stay up, and every message it
// acknowledged before must still be readable. Phase 2 (min_free_disk larger than what is
// left): new mail is refused at MAIL FROM with 452 4.3.1 before any data is sent. Then
// space is freed and mail is accepted again.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs as the data directory")
	}
	s := newServer(t, serverOptions{MinFreeDisk: -1})
	mountTinyDataDir(t, s.dataDir, "6m")
	// Ballast the test deletes later to free space.
	ballast := filepath.Join(s.dataDir, "ballast")
	if err := os.WriteFile(ballast, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	s.start()

	acked := map[int]bool{}
	var full *smtp.SMTPError
	for n := 1; n <= 200 && full == nil; n++ {
		err := sendBig(s.SMTP(), n)
		var se *smtp.SMTPError
		switch {
		case err == nil:
			acked[n] = true
		case errors.As(err, &se) && se.Code == 452:
			full = se
		default:
			t.Fatalf("message %d: unexpected error %v\n%s", n, err, s.logTail())
		}
	}
	if full == nil {
		t.Fatalf("200 messages of 100 KB fit in 6 MiB? %d acknowledged", len(acked))
	}
	if got := fmt.Sprintf("%d.%d.%d", full.EnhancedCode[0], full.EnhancedCode[1], full.EnhancedCode[2]); got != "4.3.1" {
		t.Errorf("disk full answered %d %s %q, want 452 4.3.1", full.Code, got, full.Message)
	}
	t.Logf("disk full after %d acknowledged messages: %d %v %s", len(acked), full.Code, full.EnhancedCode, full.Message)
	if err := s.exitErr(); err != nil {
		t.Fatalf("server died on a full disk: %v", err)
	}
	checkBigInbox(t, s, acked)

	// Phase 2: the early check refuses at MAIL FROM.
	s.stop()
	s.opts.MinFreeDisk = 64 << 20
	s.writeConfig()
	s.start()
	c, err := smtp.Dial(s.SMTP())
	if err != nil {
		t.Fatal(err)
	}
	err = c.Mail("load@"+remoteDomain, nil)
	var se *smtp.SMTPError
	if !errors.As(err, &se) || se.Code != 452 || se.EnhancedCode != (smtp.EnhancedCode{4, 3, 1}) {
		t.Errorf("MAIL FROM on a nearly full disk: %v, want 452 4.3.1", err)
	}
	c.Close()

	// Free space, drop the threshold: mail flows again, nothing was lost.
	s.stop()
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	s.opts.MinFreeDisk = -1
	s.writeConfig()
	s.start()
	if err := sendBig(s.SMTP(), 1000); err != nil {
		t.Fatalf("after freeing space: %v", err)
	}
	acked[1000] = true
	checkBigInbox(t, s, acked)
}

// mountTinyDataDir replaces dir (already holding the database made by the CLI) with a tmpfs
// of the given size carrying the same files.
func mountTinyDataDir(t *testing.T, dir, size string) {
	t.Helper()
	orig := dir + ".orig"
	if err := os.Rename(dir, orig); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() {
		for i := 0; i < 50; i++ {
			if err := syscall.Unmount(dir, 0); err == nil || errors.Is(err, syscall.EINVAL) {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		syscall.Unmount(dir, syscall.MNT_DETACH)
	})
	if out, err := exec.Command("cp", "-a", orig+"/.", dir).CombinedOutput(); err != nil {
		t.Fatalf("copy data dir: %v %s", err, out)
	}
}

// sendBig sends message n of ~100 KB to alice in its own connection.
func sendBig(addr string, n int) error {
	c, err := smtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.CommandTimeout, c.SubmissionTimeout = 30*time.Second, 30*time.Second
	line := fmt.Sprintf("big message %d, filler to take space on the disk...........\r\n", n)
	if err := sendToAlice(c, fmt.Sprintf("big %d", n), fmt.Sprintf("big-%d", n), strings.Repeat(line, 100_000/len(line))); err != nil {
		return err
	}
	return c.Quit()
}

// checkBigInbox asserts that every acknowledged message is in alice's INBOX.
func checkBigInbox(t *testing.T, s *server, acked map[int]bool) {
	t.Helper()
	stored := map[int]bool{}
	for _, m := range s.inbox(t, "alice") {
		var n int
		if _, err := fmt.Sscanf(m.Subject, "big %d", &n); err == nil {
			stored[n] = true
		}
	}
	var lost []int
	for n := range acked {
		if !stored[n] {
			lost = append(lost, n)
		}
	}
	if len(lost) > 0 {
		t.Errorf("acknowledged messages lost: %v", lost)
	}
	t.Logf("%d acknowledged, %d stored", len(acked), len(stored))
}
