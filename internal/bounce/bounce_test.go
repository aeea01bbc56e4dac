package bounce

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/repute-mail/repute/internal/classify"
	"github.com/repute-mail/repute/internal/dsn"
	"github.com/repute-mail/repute/internal/obs"
	"github.com/repute-mail/repute/internal/outcome"
	"github.com/repute-mail/repute/internal/smtp"
	"github.com/repute-mail/repute/internal/store"
	"github.com/repute-mail/repute/internal/unsubscribe"
	"github.com/repute-mail/repute/internal/verp"
)

const (
	testMsgID = "06h0ci1j2h83d91c" // Repute's id of the original message, in the tag
	// rawMarker is in every bounce the tests send, so a test can tell whether the raw
	// bounce reached a mailbox.
	rawMarker = "RAW-BOUNCE-7f3a"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

type fixture struct {
	db     *store.DB
	p      *Processor
	alice  store.User
	events *obs.EventLog
	evPath string
	closed bool

	mu        sync.Mutex
	delivered []store.Stored
}

// newFixture opens a store with the local domain a.test and the user alice@a.test, and a
// Processor with the feedback address fbl@a.test.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	logger := slog.New(slog.DiscardHandler)
	db, err := store.Open(ctx, store.Options{Path: filepath.Join(dir, "r.db"), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.AddDomain(ctx, "a.test"); err != nil {
		t.Fatal(err)
	}
	f := &fixture{db: db, evPath: filepath.Join(dir, "events.log")}
	if f.alice, err = db.AddUser(ctx, "alice@a.test", "pw"); err != nil {
		t.Fatal(err)
	}
	if f.events, err = obs.OpenEventLog(f.evPath, logger); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !f.closed {
			f.events.Close()
		}
	})
	now := time.Date(2025, 3, 5, 10, 0, 0, 0, time.UTC)
	bus := &outcome.Bus{}
	bus.Subscribe(outcome.EventLog(f.events))
	bus.Subscribe(outcome.Counts(db, logger))
	bus.Subscribe(outcome.Suppressions(db, bus, logger))
	f.p = &Processor{DB: db, Outcomes: &outcome.Recorder{Classifier: classify.Default(), Bus: bus}, Key: testKey,
		Feedback: map[string]bool{"fbl@a.test": true}, Hostname: "mx.a.test",
		Logger: logger, Now: func() time.Time { return now },
		Delivered: func(s []store.Stored) { f.mu.Lock(); f.delivered = append(f.delivered, s...); f.mu.Unlock() }}
	return f
}

// tagged is alice's tagged envelope sender for testMsgID.
func tagged(t *testing.T) string {
	t.Helper()
	a := verp.Encode(testKey, "alice@a.test", testMsgID)
	if a == "alice@a.test" {
		t.Fatal("verp.Encode did not tag alice@a.test")
	}
	return a
}

func addr(t *testing.T, s string) smtp.Address {
	t.Helper()
	a, err := smtp.ParseAddress(s)
	if err != nil {
		t.Fatalf("ParseAddress(%q): %v", s, err)
	}
	return a
}

// inbox returns the messages in alice's INBOX.
func (f *fixture) inbox(t *testing.T) []string {
	t.Helper()
	rows, err := f.db.Read().Query(`SELECT b.data FROM messages m JOIN mailboxes x ON x.id = m.mailbox_id
		JOIN blobs b ON b.id = m.blob_id WHERE x.user_id = ? AND x.name = 'INBOX'`, f.alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// messageCount counts the messages in every mailbox of the store.
func (f *fixture) messageCount(t *testing.T) int {
	t.Helper()
	var n int
	if err := f.db.Read().QueryRow(`SELECT count(*) FROM messages`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func (f *fixture) suppressions(t *testing.T) []store.Suppression {
	t.Helper()
	s, err := f.db.Suppressions(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (f *fixture) deliveredCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.delivered)
}

// eventLog closes the event log and returns the events written.
func (f *fixture) eventLog(t *testing.T) []obs.Event {
	t.Helper()
	if !f.closed {
		f.closed = true
		if err := f.events.Close(); err != nil {
			t.Fatal(err)
		}
	}
	file, err := os.Open(f.evPath)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	var out []obs.Event
	sc := bufio.NewScanner(file)
	for sc.Scan() {
		var e obs.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("event %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

// rcpt is one per-recipient group of a test bounce.
type rcpt struct{ addr, action, status, diag string }

// rfc3464 builds a standard bounce (RFC 3464 in an RFC 6522 multipart/report) from a
// remote MTA about alice's message to the given recipients.
func rfc3464(to string, rcpts ...rcpt) []byte {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\r\n", args...) }
	w("Return-Path: <>")
	w("From: Mail Delivery System <MAILER-DAEMON@mx.remote.test>")
	w("To: <%s>", to)
	w("Subject: Undelivered Mail Returned to Sender")
	w("Date: Wed, 05 Mar 2025 09:00:00 +0000")
	w("Message-ID: <%s@mx.remote.test>", rawMarker)
	w("MIME-Version: 1.0")
	w(`Content-Type: multipart/report; report-type=delivery-status; boundary="b1"`)
	w("")
	w("--b1")
	w("Content-Type: text/plain; charset=us-ascii")
	w("")
	w("This is the mail system at host mx.remote.test (%s).", rawMarker)
	w("")
	w("I'm sorry to have to inform you that your message could not")
	w("be delivered to one or more recipients.")
	w("")
	w("--b1")
	w("Content-Type: message/delivery-status")
	w("")
	w("Reporting-MTA: dns; mx.remote.test")
	w("Arrival-Date: Wed, 05 Mar 2025 08:59:00 +0000")
	for _, r := range rcpts {
		w("")
		w("Final-Recipient: rfc822; %s", r.addr)
		w("Action: %s", r.action)
		w("Status: %s", r.status)
		w("Remote-MTA: dns; mx.remote.test")
		w("Diagnostic-Code: smtp; %s", r.diag)
	}
	w("")
	w("--b1")
	w("Content-Type: text/rfc822-headers")
	w("")
	w("Return-Path: <%s>", to)
	w("From: Alice <alice@a.test>")
	w("To: %s", rcpts[0].addr)
	w("Subject: hello")
	w("Message-ID: <orig-1@a.test>")
	w("")
	w("--b1--")
	return []byte(b.String())
}

// vacation is an auto-reply to the tagged sender: not a bounce.
func vacation(to string) []byte {
	return []byte("Return-Path: <bob@remote.test>\r\nFrom: Bob <bob@remote.test>\r\nTo: <" + to + ">\r\n" +
		"Subject: Out of Office: hello\r\nAuto-Submitted: auto-replied\r\nMessage-ID: <vac-1@remote.test>\r\n" +
		"Content-Type: text/plain; charset=us-ascii\r\n\r\nI am away until Monday. " + rawMarker + "\r\n")
}

// arf builds an RFC 5965 abuse report about a message from mailFrom to rcptTo.
func arf(mailFrom, rcptTo string) []byte {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\r\n", args...) }
	w("From: <fbl@isp.test>")
	w("To: <fbl@a.test>")
	w("Subject: FW: hello")
	w("Date: Wed, 05 Mar 2025 09:00:00 +0000")
	w("MIME-Version: 1.0")
	w(`Content-Type: multipart/report; report-type=feedback-report; boundary="fb"`)
	w("")
	w("--fb")
	w("Content-Type: text/plain; charset=us-ascii")
	w("")
	w("This is an email abuse report.")
	w("")
	w("--fb")
	w("Content-Type: message/feedback-report")
	w("")
	w("Feedback-Type: abuse")
	w("User-Agent: ISP-FBL/1.0")
	w("Version: 1")
	w("Original-Mail-From: <%s>", mailFrom)
	w("Original-Rcpt-To: <%s>", rcptTo)
	w("Reporting-MTA: dns; fbl.isp.test")
	w("")
	w("--fb")
	w("Content-Type: message/rfc822")
	w("")
	w("Return-Path: <%s>", mailFrom)
	w("From: <%s>", strings.ToLower(mailFrom))
	w("To: <%s>", rcptTo)
	w("Subject: hello")
	w("Message-ID: <orig-1@a.test>")
	w("")
	w("Hello.")
	w("--fb--")
	return []byte(b.String())
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "classify", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMatch(t *testing.T) {
	f := newFixture(t)
	tag := tagged(t)
	otherKey := verp.Encode([]byte("another key, another server....."), "alice@a.test", testMsgID)
	tests := []struct {
		name string
		addr string
		want bool
	}{
		{"tagged", tag, true},
		{"tagged upper case", strings.ToUpper(tag), true},
		{"tagged with another key", otherKey, false},
		{"other message id", strings.Replace(tag, testMsgID, "06h0ci1j2h83d91d", 1), false},
		{"other sender", strings.Replace(tag, "alice", "mallo", 1), false},
		{"other domain", strings.Replace(tag, "@a.test", "@b.test", 1), false},
		{"tag without MAC", "alice+rb-" + testMsgID + "@a.test", false},
		{"plain address", "alice@a.test", false},
		{"plus address", "alice+news@a.test", false},
		{"feedback address", "fbl@a.test", true},
		{"feedback address, other case", "FBL@A.TEST", true},
		{"feedback address, mixed case", "Fbl@a.Test", true},
		{"not the feedback address", "fbl2@a.test", false},
		{"feedback local part, other domain", "fbl@b.test", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := f.p.Match(addr(t, tt.addr)); got != tt.want {
				t.Errorf("Match(%q) = %v, want %v", tt.addr, got, tt.want)
			}
		})
	}
}

func TestConsumeBounce(t *testing.T) {
	const unknown = "550 5.1.1 <bob@remote.test>: Recipient address rejected: User unknown in virtual mailbox table"
	tests := []struct {
		name string
		msg  func(to string) []byte
		// expectations
		suppressed map[string]string // address → reason
		notice     []string          // failed recipients the notice to alice reports
	}{
		{
			name: "user unknown",
			msg: func(to string) []byte {
				return rfc3464(to, rcpt{"bob@remote.test", "failed", "5.1.1", unknown})
			},
			suppressed: map[string]string{"bob@remote.test": classify.BadMailbox},
			notice:     []string{"bob@remote.test"},
		},
		{
			name: "delayed only",
			msg: func(to string) []byte {
				return rfc3464(to, rcpt{"bob@remote.test", "delayed", "4.4.1", "451 4.4.1 Connection timed out"})
			},
		},
		{
			name: "delayed only, Postfix warning from testdata",
			msg:  func(string) []byte { return readTestdata(t, "dsn/postfix-delay.eml") },
		},
		{
			name: "policy failure",
			msg: func(to string) []byte {
				return rfc3464(to, rcpt{"bob@remote.test", "failed", "5.7.1", "550 5.7.1 Message rejected by policy: content not accepted"})
			},
			notice: []string{"bob@remote.test"},
		},
		{
			name: "one failed, one delayed",
			msg: func(to string) []byte {
				return rfc3464(to,
					rcpt{"bob@remote.test", "failed", "5.1.1", unknown},
					rcpt{"carol@remote.test", "delayed", "4.2.2", "452 4.2.2 Mailbox full"})
			},
			suppressed: map[string]string{"bob@remote.test": classify.BadMailbox},
			notice:     []string{"bob@remote.test"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			tag := tagged(t)
			if err := f.p.Consume(context.Background(), addr(t, tag), tt.msg(tag)); err != nil {
				t.Fatalf("Consume: %v", err)
			}

			sup := f.suppressions(t)
			if len(sup) != len(tt.suppressed) {
				t.Errorf("suppressions = %+v, want %d", sup, len(tt.suppressed))
			}
			for _, s := range sup {
				reason, ok := tt.suppressed[s.Address]
				switch {
				case !ok:
					t.Errorf("unexpected suppression %+v", s)
				case s.SenderDomain != "a.test" || s.Reason != reason || s.Source != "dsn" || s.MsgID != testMsgID:
					t.Errorf("suppression = %+v, want domain a.test, reason %q, source dsn, msg id %q", s, reason, testMsgID)
				}
			}

			box := f.inbox(t)
			if len(tt.notice) == 0 {
				if len(box) != 0 || f.deliveredCount() != 0 {
					t.Fatalf("INBOX = %q (Delivered told of %d), want no notice", box, f.deliveredCount())
				}
				return
			}
			if len(box) != 1 {
				t.Fatalf("INBOX has %d messages, want exactly one notice: %q", len(box), box)
			}
			if n := f.deliveredCount(); n != 1 {
				t.Errorf("Delivered told of %d stored messages, want 1", n)
			}
			notice := box[0]
			if strings.Contains(notice, rawMarker) {
				t.Errorf("INBOX holds the raw bounce, not Repute's notice:\n%s", notice)
			}
			for _, want := range []string{"From: Mail Delivery System <MAILER-DAEMON@mx.a.test>", "Subject: " + dsn.SubjectFailed} {
				if !strings.Contains(notice, want+"\r\n") {
					t.Errorf("notice lacks %q:\n%s", want, notice)
				}
			}
			rep, err := classify.ParseDSN([]byte(notice))
			if err != nil {
				t.Fatalf("the notice does not parse as a DSN: %v\n%s", err, notice)
			}
			var got []string
			for _, r := range rep.Recipients {
				if r.Action != "failed" {
					t.Errorf("notice reports %s as %q, want failed", r.Recipient, r.Action)
				}
				got = append(got, r.Recipient)
			}
			if strings.Join(got, ",") != strings.Join(tt.notice, ",") {
				t.Errorf("notice reports %q, want %q", got, tt.notice)
			}
		})
	}
}

func TestConsumeBounceEvents(t *testing.T) {
	f := newFixture(t)
	tag := tagged(t)
	msg := rfc3464(tag,
		rcpt{"bob@remote.test", "failed", "5.1.1", "550 5.1.1 user unknown"},
		rcpt{"carol@remote.test", "delayed", "4.4.1", "451 4.4.1 Connection timed out"})
	if err := f.p.Consume(context.Background(), addr(t, tag), msg); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range f.eventLog(t) {
		got = append(got, e.Event+" "+e.Rcpt)
		if e.MsgID != testMsgID || e.From != "alice@a.test" {
			t.Errorf("event %+v: want msg id %q from alice@a.test", e, testMsgID)
		}
	}
	want := []string{obs.Bounced + " bob@remote.test", obs.Suppressed + " bob@remote.test", obs.Deferred + " carol@remote.test"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("events = %q, want %q", got, want)
	}
}

func TestConsumeNotABounce(t *testing.T) {
	tests := []struct {
		name string
		msg  func(to string) []byte
	}{
		{"vacation auto-reply", vacation},
		{"vacation auto-reply from testdata", func(string) []byte { return readTestdata(t, "dsn/vacation.eml") }},
		{"ordinary reply", func(to string) []byte {
			return []byte("From: Bob <bob@remote.test>\r\nTo: <" + to + ">\r\nSubject: Re: hello\r\n\r\nThanks! " + rawMarker + "\r\n")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			tag := tagged(t)
			msg := tt.msg(tag)
			if err := f.p.Consume(context.Background(), addr(t, tag), msg); err != nil {
				t.Fatalf("Consume: %v", err)
			}
			box := f.inbox(t)
			if len(box) != 1 || box[0] != string(msg) {
				t.Fatalf("INBOX = %q, want the message as it was sent", box)
			}
			if n := f.deliveredCount(); n != 1 {
				t.Errorf("Delivered told of %d stored messages, want 1", n)
			}
			if sup := f.suppressions(t); len(sup) != 0 {
				t.Errorf("suppressions = %+v, want none", sup)
			}
		})
	}
}

func TestConsumeUnverifiedTag(t *testing.T) {
	f := newFixture(t)
	bad := strings.Replace(tagged(t), testMsgID, "06h0ci1j2h83d91d", 1)
	err := f.p.Consume(context.Background(), addr(t, bad), rfc3464(bad, rcpt{"bob@remote.test", "failed", "5.1.1", "550 5.1.1 user unknown"}))
	if err == nil {
		t.Fatal("Consume accepted a tag whose MAC does not verify")
	}
	if n := f.messageCount(t); n != 0 {
		t.Errorf("%d messages stored, want none", n)
	}
	if sup := f.suppressions(t); len(sup) != 0 {
		t.Errorf("suppressions = %+v, want none", sup)
	}
}

func TestConsumeFeedback(t *testing.T) {
	tests := []struct {
		name string
		to   string // the feedback address as the reporter wrote it
		msg  func(tag string) []byte
		want *store.Suppression // nil: nothing suppressed
	}{
		{
			name: "abuse report about a tagged message",
			to:   "fbl@a.test",
			msg:  func(tag string) []byte { return arf(tag, "bob@remote.test") },
			want: &store.Suppression{SenderDomain: "a.test", Address: "bob@remote.test", Reason: "complaint", Source: "arf", MsgID: testMsgID},
		},
		{
			name: "feedback address in upper case",
			to:   "FBL@A.TEST",
			msg:  func(tag string) []byte { return arf(tag, "bob@remote.test") },
			want: &store.Suppression{SenderDomain: "a.test", Address: "bob@remote.test", Reason: "complaint", Source: "arf", MsgID: testMsgID},
		},
		{
			name: "sender domain not local",
			to:   "fbl@a.test",
			msg:  func(string) []byte { return arf("news@elsewhere.test", "bob@remote.test") },
		},
		{
			name: "RFC 5965 sample about someone else's mail",
			to:   "fbl@a.test",
			msg:  func(string) []byte { return readTestdata(t, "arf/rfc5965-simple.eml") },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if err := f.p.Consume(context.Background(), addr(t, tt.to), tt.msg(tagged(t))); err != nil {
				t.Fatalf("Consume: %v", err)
			}
			sup := f.suppressions(t)
			if tt.want == nil {
				if len(sup) != 0 {
					t.Errorf("suppressions = %+v, want none", sup)
				}
			} else {
				if len(sup) != 1 {
					t.Fatalf("suppressions = %+v, want one", sup)
				}
				s := sup[0]
				if s.SenderDomain != tt.want.SenderDomain || s.Address != tt.want.Address || s.Reason != tt.want.Reason ||
					s.Source != tt.want.Source || s.MsgID != tt.want.MsgID {
					t.Errorf("suppression = %+v, want %+v", s, *tt.want)
				}
			}
			if n := f.messageCount(t); n != 0 {
				t.Errorf("%d messages stored, want none: a report never lands in a mailbox", n)
			}
		})
	}
}

func TestConsumeFeedbackNotARF(t *testing.T) {
	tests := []struct {
		name string
		msg  []byte
	}{
		{"vacation auto-reply", vacation("fbl@a.test")},
		{"DSN", rfc3464("fbl@a.test", rcpt{"bob@remote.test", "failed", "5.1.1", "550 5.1.1 user unknown"})},
		{"report without its feedback part", readTestdata(t, "arf/no-feedback-part.eml")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			err := f.p.Consume(context.Background(), addr(t, "fbl@a.test"), tt.msg)
			var r *smtp.Reply
			if !errors.As(err, &r) {
				t.Fatalf("Consume = %v, want an *smtp.Reply", err)
			}
			if r.Code != 550 || smtp.ReplyFor(err).Code != 550 {
				t.Errorf("reply = %d %s %s, want 550", r.Code, r.Enhanced, r.Text)
			}
			if n := f.messageCount(t); n != 0 {
				t.Errorf("%d messages stored, want none", n)
			}
			if sup := f.suppressions(t); len(sup) != 0 {
				t.Errorf("suppressions = %+v, want none", sup)
			}
		})
	}
}

func TestConsumeSenderGone(t *testing.T) {
	tests := []struct {
		name   string
		sender string
		msg    func(to string) []byte
	}{
		{"deleted user, auto-reply", "alice@a.test", vacation},
		{"deleted user, policy bounce", "alice@a.test", func(to string) []byte {
			return rfc3464(to, rcpt{"bob@remote.test", "failed", "5.7.1", "550 5.7.1 Message rejected by policy"})
		}},
		{"domain no longer local, auto-reply", "dave@gone.test", vacation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			if err := f.db.DelUser(context.Background(), "alice@a.test"); err != nil {
				t.Fatal(err)
			}
			tag := verp.Encode(testKey, tt.sender, testMsgID)
			if err := f.p.Consume(context.Background(), addr(t, tag), tt.msg(tag)); err != nil {
				t.Fatalf("Consume: %v", err)
			}
			if n := f.messageCount(t); n != 0 {
				t.Errorf("%d messages stored, want none", n)
			}
			if n := f.deliveredCount(); n != 0 {
				t.Errorf("Delivered told of %d stored messages, want none", n)
			}
			if sup := f.suppressions(t); len(sup) != 0 {
				t.Errorf("suppressions = %+v, want none", sup)
			}
		})
	}
}

func TestReplyText(t *testing.T) {
	tests := []struct{ status, diag, want string }{
		{"5.0.0", "550 Requested action not taken: mailbox unavailable", "550 5.0.0 Requested action not taken: mailbox unavailable"},
		{"5.1.1", "550 5.1.1 user unknown", "550 5.1.1 user unknown"},
		{"5.1.1", "user unknown", "5.1.1 user unknown"},
		{"", "550 no such user", "550 no such user"},
	}
	for _, tt := range tests {
		if got := replyText(classify.BouncedRecipient{Status: tt.status, Diagnostic: tt.diag}); got != tt.want {
			t.Errorf("replyText(%q, %q) = %q, want %q", tt.status, tt.diag, got, tt.want)
		}
	}
}

func TestMailtoUnsubscribe(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.p.UnsubKey = []byte("unsub key")
	to := addr(t, "alice+unsubscribe@a.test")
	if !f.p.Match(to) {
		t.Fatal("the mailto unsubscribe address does not match")
	}
	tok := unsubscribe.Token(f.p.UnsubKey, "a.test", "bob@remote.test")
	msg := "From: <bob@remote.test>\r\nTo: <alice+unsubscribe@a.test>\r\nSubject: unsubscribe " + tok + "\r\n\r\n\r\n"
	if err := f.p.Consume(ctx, to, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	if s, _ := f.db.Suppressed(ctx, "a.test", "bob@remote.test"); s == nil || s.Reason != "unsubscribe" {
		t.Errorf("bob: %+v, want suppressed by unsubscribe", s)
	}
	if n := len(f.inbox(t)); n != 0 {
		t.Errorf("%d messages in the INBOX after an unsubscribe, want 0", n)
	}
	// Without a valid token it is ordinary plus-addressed mail for alice.
	other := "From: <carol@remote.test>\r\nSubject: Re: your offer\r\n\r\nHello\r\n"
	if err := f.p.Consume(ctx, to, []byte(other)); err != nil {
		t.Fatal(err)
	}
	if in := f.inbox(t); len(in) != 1 || in[0] != other {
		t.Errorf("INBOX %q, want the message as sent", in)
	}
}
