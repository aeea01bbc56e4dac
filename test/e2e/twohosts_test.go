package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestOutboundTwoHosts runs two Repute hosts, mx.a.test for a.test and mx.b.test for
// b.test, each on its own loopback address and port 25, found through MX records of the
// test's DNS. It checks, in order:
//
//   - mail submitted on a for b arrives in the b user's INBOX, and back (EHLO name =
//     hostname, STARTTLS between the two), with queued and delivered events;
//   - a recipient b does not know (550 5.1.1): a DSN in the sender's INBOX on a,
//     quoting b's reply;
//   - a null-MX domain (RFC 7505): a DSN at once, no retry;
//   - repute sendmail (-f with recipients, -t -i, and as a symlink named sendmail);
//   - b stopped: the message waits in a's queue with an attempt and its error; the queue
//     tools show, hold, release, retry and drop it; once b is back the message arrives
//     within a minute, by itself.
func TestOutboundTwoHosts(t *testing.T) {
	t.Parallel()
	z := newZone(t)
	a, b := hostPair(t, z, serverOptions{Queue: fastQueue}, serverOptions{Queue: fastQueue})
	z.add("nullmx.test. MX 0 .")
	a.start()
	b.start()

	start := time.Now()
	for _, phase := range []struct {
		name string
		run  func(*testing.T, *server, *server)
	}{
		{"a → b and b → a", exchangeBothWays},
		{"550 at b → DSN on a", bounceFromB},
		{"null MX → DSN at once", nullMX},
		{"repute sendmail", sendmailInjection},
		{"b down, queue tools, b back", bDownAndBack},
	} {
		t.Logf("%6.1fs %s", time.Since(start).Seconds(), phase.name)
		phase.run(t, a, b)
	}
	t.Logf("%6.1fs done", time.Since(start).Seconds())
}

func exchangeBothWays(t *testing.T, a, b *server) {
	t.Helper()
	subj := "a to b " + uniqueID()
	a.submit(t, "alice", []string{"bob@b.test"}, subj)
	got := b.waitForMessage(t, "bob", deliveryTimeout, fmt.Sprintf("%q", subj), withSubject(subj))
	// b's trace header names a's EHLO name (its hostname) and shows STARTTLS.
	received := regexp.MustCompile(`Received: from mx\.a\.test \(\[[0-9.]+\]\)\s+by mx\.b\.test \(Repute\) with (\S+)`)
	if m := received.FindStringSubmatch(got.Body); m == nil {
		t.Errorf("message on b has no Received header for a connection from EHLO mx.a.test:\n%s", headerBlock(got.Body))
	} else if m[1] != "ESMTPS" {
		t.Errorf("a delivered to b with %s, want ESMTPS (opportunistic STARTTLS):\n%s", m[1], headerBlock(got.Body))
	}

	subj = "b to a " + uniqueID()
	b.submit(t, "bob", []string{"alice@a.test"}, subj)
	a.waitForMessage(t, "alice", deliveryTimeout, fmt.Sprintf("%q", subj), withSubject(subj))

	q := a.waitEvent(t, "queued", "bob@b.test")
	d := a.waitEvent(t, "delivered", "bob@b.test")
	if q.MsgID == "" || d.MsgID != q.MsgID {
		t.Errorf("events.log: queued msg_id %q, delivered msg_id %q; want the same, non-empty", q.MsgID, d.MsgID)
	}
	if d.MX != "mx.b.test" || d.Code != 250 || d.DelayS < 0 || d.DelayS > deliveryTimeout.Seconds() {
		t.Errorf("delivered event: %s; want mx mx.b.test, code 250, delay_s between 0 and %v", d, deliveryTimeout.Seconds())
	}
	if es := a.queueFor(t, "bob@b.test"); len(es) != 0 {
		t.Errorf("delivered message still queued: %v", es)
	}
}

func bounceFromB(t *testing.T, a, _ *server) {
	t.Helper()
	const rcpt = "nosuch@b.test"
	a.submit(t, "alice", []string{rcpt}, "to nobody "+uniqueID())
	dsn := a.waitForMessage(t, "alice", deliveryTimeout, "a DSN for "+rcpt, dsnFor(rcpt))
	// b answers 550 5.1.1 "Mailbox <nosuch@b.test> does not exist".
	checkDSN(t, dsn.Body, rcpt, "550", "does not exist")
	ev := a.waitEvent(t, "bounced", rcpt)
	if ev.Code != 550 || ev.EnhancedCode != "5.1.1" || !strings.Contains(ev.Text, "does not exist") || ev.MX != "mx.b.test" {
		t.Errorf("bounced event: %s; want code 550, enhanced_code 5.1.1, b's text, mx mx.b.test", ev)
	}
	if es := a.queueFor(t, rcpt); len(es) != 0 {
		t.Errorf("bounced recipient still queued: %v", es)
	}

	// A message from the null sender gets no DSN (RFC 5321 §4.5.5: notifications about
	// notifications would loop): after its bounce nothing new is queued.
	const rcpt2 = "nosuch2@b.test"
	queuedBefore := len(eventsOfKind(a.events(t), "queued"))
	a.runSendmail(t, "", outboundMessage("mailer-daemon@a.test", []string{rcpt2}, "from the null sender "+uniqueID(), uniqueID(), "no reply"),
		"-f", "<>", rcpt2)
	a.waitEvent(t, "bounced", rcpt2)
	// The entry leaves the queue in the transaction that would also queue a notice.
	waitFor(t, 10*time.Second, "the bounced entry to leave the queue", func() (bool, string) {
		es := a.queueFor(t, rcpt2)
		return len(es) == 0, fmt.Sprint(es)
	})
	if q := eventsOfKind(a.events(t), "queued"); len(q) != queuedBefore+1 {
		t.Errorf("after the null sender's message bounced, %d messages were queued, want 1 (no DSN): %v", len(q)-queuedBefore, q[queuedBefore:])
	}
	if es := a.queueList(t); len(es) != 0 {
		t.Errorf("queue after the null sender's bounce: %v", es)
	}
}

func eventsOfKind(evs []mailEvent, kind string) []mailEvent {
	var out []mailEvent
	for _, e := range evs {
		if e.Event == kind {
			out = append(out, e)
		}
	}
	return out
}

func nullMX(t *testing.T, a, _ *server) {
	t.Helper()
	const rcpt = "someone@nullmx.test"
	start := time.Now()
	a.submit(t, "alice", []string{rcpt}, "to a null MX "+uniqueID())
	dsn := a.waitForMessage(t, "alice", deliveryTimeout, "a DSN for "+rcpt, dsnFor(rcpt))
	took := time.Since(start)
	checkDSN(t, dsn.Body, rcpt)
	if took > 10*time.Second {
		t.Errorf("DSN for a null-MX domain after %v; it needs no attempt and no retry", took.Round(time.Millisecond))
	}
	a.waitEvent(t, "bounced", rcpt)
	if d := eventsFor(a.events(t), "deferred", rcpt); len(d) > 0 {
		t.Errorf("null MX was deferred (retried) %d times: %v", len(d), d[0])
	}
	if es := a.queueFor(t, rcpt); len(es) != 0 {
		t.Errorf("null-MX recipient still queued: %v", es)
	}
	t.Logf("DSN for the null-MX domain after %v", took.Round(time.Millisecond))
}

func sendmailInjection(t *testing.T, a, b *server) {
	t.Helper()
	// Recipients on the command line, envelope sender from -f.
	subj := "sendmail args " + uniqueID()
	a.runSendmail(t, "", outboundMessage("alice@a.test", []string{"bob@b.test"}, subj, uniqueID(), "via sendmail"),
		"-f", "alice@a.test", "bob@b.test")
	// -t: recipients from the header; -i: a line with a single dot is text, not the end.
	subjT := "sendmail -t " + uniqueID()
	a.runSendmail(t, "", outboundMessage("alice@a.test", []string{"carol@b.test"}, subjT, uniqueID(), "before the dot\n.\nafter the dot"),
		"-t", "-i", "-f", "alice@a.test")
	// As a symlink named sendmail, the way cron and scripts call it (config from $REPUTE_CONFIG).
	link := filepath.Join(t.TempDir(), "sendmail")
	if err := os.Symlink(reputeBin, link); err != nil {
		t.Fatal(err)
	}
	subjL := "sendmail symlink " + uniqueID()
	a.runSendmail(t, link, outboundMessage("alice@a.test", []string{"dave@b.test"}, subjL, uniqueID(), "via the symlink"),
		"-t", "-i", "-f", "alice@a.test")

	b.waitForMessage(t, "bob", deliveryTimeout, fmt.Sprintf("%q", subj), withSubject(subj))
	m := b.waitForMessage(t, "carol", deliveryTimeout, fmt.Sprintf("%q", subjT), withSubject(subjT))
	if !strings.Contains(m.Body, "after the dot") {
		t.Errorf("sendmail -i cut the message at the lone dot:\n%s", m.Body)
	}
	b.waitForMessage(t, "dave", deliveryTimeout, fmt.Sprintf("%q", subjL), withSubject(subjL))
}

func bDownAndBack(t *testing.T, a, b *server) {
	t.Helper()
	b.stop()
	subj := "while b is down " + uniqueID()
	a.submit(t, "alice", []string{"bob@b.test"}, subj)
	e := a.waitQueueEntry(t, "bob@b.test", 20*time.Second, "a failed attempt to b", func(e queueEntry) bool {
		return e.Attempts >= 1 && e.LastError != ""
	})
	t.Logf("queued while b is down: %s", e)
	if e.State != "queued" || e.From != "alice@a.test" || e.Domain != "b.test" || e.Size <= 0 || e.MsgID == "" {
		t.Errorf("queue entry %s: want state queued, from alice@a.test, domain b.test, a size and a msg_id", e)
	}
	def := a.waitEvent(t, "deferred", "bob@b.test")
	if def.MsgID != e.MsgID || def.Text == "" {
		t.Errorf("deferred event %s: want msg_id %q and the failure text", def, e.MsgID)
	}

	var shown map[string]any
	a.cliJSON(t, &shown, "queue", "show", string(e.ID))
	if fmt.Sprint(shown["rcpt"]) != "bob@b.test" {
		t.Errorf("queue show %s --json: %v; want rcpt bob@b.test", e.ID, shown)
	}
	var summary any
	a.cliJSON(t, &summary, "queue", "summary")
	if b, _ := json.Marshal(summary); !strings.Contains(string(b), `"b.test"`) || !strings.Contains(string(b), `"provider":"mx:mx.b.test"`) {
		t.Errorf("queue summary --json does not mention b.test (and its MX group) with a message queued for it: %s", b)
	}

	// hold: no attempts while held.
	a.cliT(t, "", "queue", "hold", string(e.ID))
	a.waitQueueEntry(t, "bob@b.test", 5*time.Second, "state hold", func(e queueEntry) bool { return e.State == "hold" })
	time.Sleep(time.Second) // an attempt already under way may still be recorded
	held := a.queueFor(t, "bob@b.test")[0]
	time.Sleep(4500 * time.Millisecond) // longer than retry_max + scan_interval
	if now := a.queueFor(t, "bob@b.test"); len(now) != 1 || now[0].Attempts != held.Attempts || now[0].State != "hold" {
		t.Errorf("held entry changed: before %s, now %v", held, now)
	}
	a.cliT(t, "", "queue", "release", string(e.ID))
	a.waitQueueEntry(t, "bob@b.test", 5*time.Second, "state queued after release", func(e queueEntry) bool { return e.State == "queued" })
	// retry: another attempt soon.
	a.cliT(t, "", "queue", "retry", string(e.ID))
	a.waitQueueEntry(t, "bob@b.test", 10*time.Second, "another attempt after retry", func(x queueEntry) bool { return x.Attempts > held.Attempts })
	a.cliT(t, "", "queue", "retry", "--domain", "b.test")
	a.cliT(t, "", "queue", "retry", "--all")

	// drop: a second message goes away without a trace at b.
	dropSubj := "dropped " + uniqueID()
	a.submit(t, "alice", []string{"carol@b.test"}, dropSubj)
	d := a.waitQueueEntry(t, "carol@b.test", 10*time.Second, "the message to drop", func(queueEntry) bool { return true })
	a.cliT(t, "", "queue", "drop", string(d.ID))
	if es := a.queueFor(t, "carol@b.test"); len(es) != 0 {
		t.Errorf("dropped entry still listed: %v", es)
	}

	b.start()
	back := time.Now()
	b.waitForMessage(t, "bob", time.Minute, fmt.Sprintf("%q after b came back", subj), withSubject(subj))
	t.Logf("delivered %v after b came back", time.Since(back).Round(time.Millisecond))
	a.waitQueueEmpty(t, 10*time.Second)
	a.waitEvent(t, "delivered", "bob@b.test")
	for _, m := range b.messages(t, "carol", "INBOX", false) {
		if m.Subject == dropSubj {
			t.Errorf("dropped message arrived at b")
		}
	}
	var list []json.RawMessage
	a.cliJSON(t, &list, "queue", "list")
	if len(list) != 0 {
		t.Errorf("queue list --json after delivery: %d entries", len(list))
	}
}

// headerBlock returns a message's header section, for failure messages.
func headerBlock(raw string) string {
	if i := strings.Index(raw, "\r\n\r\n"); i >= 0 {
		return raw[:i]
	}
	return abbreviateLong(raw)
}

// hostPair makes (does not start) two servers on zone z, a for a.test and b for b.test,
// with their MX and address records published; the options say the rest (Domain and
// DNS are set here).
func hostPair(t *testing.T, z *zone, a, b serverOptions) (*server, *server) {
	t.Helper()
	a.Domain, a.DNS = "a.test", z.addr
	b.Domain, b.DNS = "b.test", z.addr
	sa, sb := newServer(t, a), newServer(t, b)
	z.mailDomain("a.test", "mx.a.test", sa.ip)
	z.mailDomain("b.test", "mx.b.test", sb.ip)
	return sa, sb
}
