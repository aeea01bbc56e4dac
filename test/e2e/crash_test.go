package e2e

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

const (
	crashTotal     = 2000 // numbered messages in the burst
	crashSessions  = 20   // concurrent SMTP sessions
	crashPerConn   = 5    // messages per connection before reconnecting
	crashKillAfter = 500  // acknowledgements before SIGKILL
	crashCmdWait   = 10 * time.Second
)

// TestCrashDurability sends a burst of numbered messages over 20 concurrent sessions,
// kills the server with SIGKILL in the middle of it, restarts it and checks that every
// message that got 250 after DATA is in the mailbox: an acknowledgement is a promise.
func TestCrashDurability(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	pid := s.pid()

	b := &burst{addr: s.SMTP(), killNow: make(chan struct{}), errs: map[string]int{}}
	start := time.Now()
	finished := b.start()
	select {
	case <-b.killNow:
	case <-time.After(90 * time.Second):
		t.Errorf("only %d messages acknowledged after 90s, wanted %d before the kill", b.ackCount.Load(), crashKillAfter)
	}
	b.killed.Store(true)
	s.kill()
	ackedAtKill, elapsed := b.ackCount.Load(), time.Since(start)
	select {
	case <-finished:
	case <-time.After(30 * time.Second):
		t.Fatal("SMTP clients still running 30s after SIGKILL")
	}
	for e, n := range b.errs {
		t.Errorf("before the kill, %d× %s", n, e)
	}
	t.Logf("SIGKILL pid %d after %v: %d acknowledged at kill, %d in total; %d numbers handed out",
		pid, elapsed.Round(time.Millisecond), ackedAtKill, len(b.acked), min(b.next.Load(), crashTotal))

	s.start()
	checkCrashInbox(t, s, b.acked)

	// The recovered server takes mail again.
	c, err := smtp.Dial(s.SMTP())
	if err != nil {
		t.Fatalf("after restart: %v", err)
	}
	defer c.Close()
	c.CommandTimeout, c.SubmissionTimeout = crashCmdWait, crashCmdWait
	if err := sendNumbered(c, crashTotal+1); err != nil {
		t.Errorf("after restart, sending one more message: %v", err)
	}
	_ = c.Quit()
}

// burst is the load of TestCrashDurability: crashSessions workers taking message
// numbers from one counter until the burst is over or the server has been killed.
type burst struct {
	addr     string
	next     atomic.Int64 // last message number handed out
	ackCount atomic.Int64
	killed   atomic.Bool   // set just before SIGKILL: errors from then on are expected
	killNow  chan struct{} // closed at crashKillAfter acknowledgements
	killOnce sync.Once

	mu    sync.Mutex
	acked map[int]bool   // message numbers that got 250 after DATA
	errs  map[string]int // unexpected errors (before the kill)
}

// start runs the workers; the returned channel is closed when all have returned.
func (b *burst) start() <-chan struct{} {
	b.acked = map[int]bool{}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < crashSessions; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); b.worker() }()
	}
	go func() { wg.Wait(); close(done) }()
	return done
}

func (b *burst) worker() {
	var c *smtp.Client
	sent := 0
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	for !b.killed.Load() {
		n := int(b.next.Add(1))
		if n > crashTotal {
			return
		}
		if c == nil {
			var err error
			if c, err = smtp.Dial(b.addr); err != nil {
				b.noteErr("dial", err)
				c = nil
				time.Sleep(20 * time.Millisecond)
				continue
			}
			c.CommandTimeout, c.SubmissionTimeout = crashCmdWait, crashCmdWait
			sent = 0
		}
		if err := sendNumbered(c, n); err != nil {
			b.noteErr("send", err)
			c.Close()
			c = nil
			continue
		}
		b.mu.Lock()
		b.acked[n] = true
		b.mu.Unlock()
		if b.ackCount.Add(1) >= crashKillAfter {
			b.killOnce.Do(func() { close(b.killNow) })
		}
		if sent++; sent == crashPerConn {
			_ = c.Quit()
			c.Close()
			c = nil
		}
	}
}

func (b *burst) noteErr(stage string, err error) {
	if b.killed.Load() {
		return // expected: the server is gone
	}
	b.mu.Lock()
	b.errs[stage+": "+err.Error()]++
	b.mu.Unlock()
}

// checkCrashInbox asserts that every acknowledged message is in alice's INBOX exactly
// once; messages stored without an acknowledgement are allowed.
func checkCrashInbox(t *testing.T, s *server, acked map[int]bool) {
	t.Helper()
	stored := map[int]int{}
	for _, m := range s.inbox(t, "alice") {
		var n int
		if _, err := fmt.Sscanf(m.Subject, "crash %d", &n); err != nil {
			t.Errorf("unexpected message in INBOX: subject %q", m.Subject)
			continue
		}
		if want := fmt.Sprintf("crash-%d@%s", n, remoteDomain); m.MessageID != want {
			t.Errorf("message %d: Message-ID %q, want %q", n, m.MessageID, want)
		}
		stored[n]++
	}
	var lost, dup []int
	extra := 0
	for n := range acked {
		if stored[n] == 0 {
			lost = append(lost, n)
		}
	}
	for n, k := range stored {
		if !acked[n] {
			extra++
		}
		if k > 1 {
			dup = append(dup, n)
		}
	}
	sort.Ints(lost)
	sort.Ints(dup)
	t.Logf("after restart: %d stored; %d acknowledged, %d of them lost; %d stored without an acknowledgement (allowed); %d duplicated",
		len(stored), len(acked), len(lost), extra, len(dup))
	if len(lost) > 0 {
		t.Errorf("%d acknowledged messages lost after SIGKILL: %v", len(lost), head(lost, 50))
	}
	if len(dup) > 0 {
		t.Errorf("%d messages stored more than once: %v", len(dup), head(dup, 50))
	}
}

// sendNumbered sends message n ("crash n", Message-ID <crash-n@remote.test>) to alice;
// a nil error means the server answered 250 to the end of DATA.
func sendNumbered(c *smtp.Client, n int) error {
	return sendToAlice(c, fmt.Sprintf("crash %d", n), fmt.Sprintf("crash-%d", n),
		strings.Repeat(fmt.Sprintf("message %d, a line of filler text to make it look like mail\r\n", n), 20))
}

// sendToAlice sends one message from load@remote.test to alice over c; a nil error means
// the server answered 250 to the end of DATA.
func sendToAlice(c *smtp.Client, subject, msgID, body string) error {
	from := "load@" + remoteDomain
	if err := c.Mail(from, nil); err != nil {
		return err
	}
	if err := c.Rcpt(address("alice"), nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	msg := fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nMessage-ID: <%s@%s>\r\nDate: %s\r\n\r\n%s",
		from, address("alice"), subject, msgID, remoteDomain, time.Now().Format(time.RFC1123Z), body)
	if _, err := w.Write([]byte(msg)); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

func head(xs []int, n int) []int {
	if len(xs) > n {
		return xs[:n]
	}
	return xs
}
