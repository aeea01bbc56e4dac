package submit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/repute-mail/repute/internal/auth"
	"github.com/repute-mail/repute/internal/smtp"
	"github.com/repute-mail/repute/internal/store"
)

var testNow = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

// fixture is a store with three hosted domains and a submitter on it:
//
//	a.test: users alice and bob; sales -> alice, support -> bob, team -> alice and bob,
//	        and the catch-all @a.test -> alice
//	b.test: user carol (another hosted domain); alice was granted ceo@b.test
//	c.test: no users; alice was granted the whole domain
//
// a.test and c.test have DKIM keys (keys: record name -> TXT text).
type fixture struct {
	db        *store.DB
	sub       *Submitter
	alice     store.User
	keys      map[string]string
	queued    int
	delivered [][]store.Stored
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, store.Options{Path: filepath.Join(t.TempDir(), "r.db"), Now: func() time.Time { return testNow },
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &fixture{db: db, keys: map[string]string{}}
	for _, d := range []string{"a.test", "b.test", "c.test"} {
		must(t, second(db.AddDomain(ctx, d)))
	}
	if f.alice, err = db.AddUser(ctx, "alice@a.test", "pw"); err != nil {
		t.Fatal(err)
	}
	must(t, second(db.AddUser(ctx, "bob@a.test", "pw")))
	must(t, second(db.AddUser(ctx, "carol@b.test", "pw")))
	for _, a := range [][2]string{{"sales@a.test", "alice@a.test"}, {"support@a.test", "bob@a.test"},
		{"team@a.test", "alice@a.test"}, {"team@a.test", "bob@a.test"}, {"@a.test", "alice@a.test"},
		{"fwd@a.test", "ext@remote.test"}} {
		must(t, db.AddAlias(ctx, a[0], a[1]))
	}
	must(t, db.AddGrant(ctx, "alice@a.test", "ceo@b.test"))
	must(t, db.AddGrant(ctx, "alice@a.test", "@c.test"))
	for _, d := range []string{"a.test", "c.test"} {
		k, err := auth.GenerateDKIMKey(d, auth.KeyEd25519, testNow)
		if err != nil {
			t.Fatal(err)
		}
		pem, err := k.MarshalPrivate()
		if err != nil {
			t.Fatal(err)
		}
		must(t, db.AddDKIMKey(ctx, store.DKIMKey{Domain: d, Selector: k.Selector, Algorithm: "ed25519", PrivatePEM: pem}))
		name, txt := k.DNSRecord()
		f.keys[strings.TrimSuffix(strings.ToLower(name), ".")] = txt
	}
	f.sub = &Submitter{Store: db, Signer: NewSigner(db), Hostname: "mx.a.test", Now: func() time.Time { return testNow },
		Logger: slog.New(slog.DiscardHandler),
		Queued: func() { f.queued++ }, Delivered: func(s []store.Stored) { f.delivered = append(f.delivered, s) }}
	return f
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func second[T any](_ T, err error) error { return err }

func addr(t testing.TB, s string) smtp.Address {
	t.Helper()
	if s == "" {
		return smtp.Address{}
	}
	a, err := smtp.ParseAddress(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// send runs the recipient checks and Submit as the session does, and returns the stored
// message (from the queue row of ext@remote.test) or the refusal.
func (f *fixture) send(t *testing.T, who Who, from string, header string) (string, error) {
	t.Helper()
	ctx := context.Background()
	r, err := f.sub.Recipient(ctx, addr(t, from), addr(t, "ext@remote.test"))
	if err != nil {
		t.Fatal(err)
	}
	env := Envelope{From: addr(t, from), Rcpts: []Recipient{r}, Trace: "Received: from test\r\n"}
	id, err := f.sub.Submit(ctx, env, []byte(header+"\r\nbody\r\n"), who)
	if err != nil {
		return "", err
	}
	q, err := f.db.Queue(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range q {
		if e.MsgID == id {
			body, err := f.db.Body(ctx, e.BlobID)
			if err != nil {
				t.Fatal(err)
			}
			return string(body), nil
		}
	}
	t.Fatalf("message %s not queued", id)
	return "", nil
}

// replyOf returns "CODE ENHANCED" of err, "" for nil, or the error text.
func replyOf(err error) string {
	if err == nil {
		return ""
	}
	var r *smtp.Reply
	if errors.As(err, &r) {
		return fmt.Sprintf("%d %s", r.Code, r.Enhanced)
	}
	return err.Error()
}

func TestSender(t *testing.T) {
	f := newFixture(t)
	alice := User(f.alice, netip.MustParseAddr("192.0.2.1"))
	tests := []struct {
		who  Who
		from string
		want string // "" = allowed
	}{
		{alice, "alice@a.test", ""},
		{alice, "Alice+news@A.test", ""},
		{alice, "sales@a.test", ""},
		{alice, "sales+x@a.test", ""},
		{alice, "team@a.test", ""},             // an alias that reaches her, among others
		{alice, "support@a.test", "553 5.7.1"}, // an alias of someone else
		{alice, "nobody@a.test", "553 5.7.1"},  // only her catch-all takes it
		{alice, "bob@a.test", "553 5.7.1"},
		{alice, "carol@b.test", "553 5.7.1"},
		{alice, "ceo@b.test", ""}, // granted address
		{alice, "ceo+x@b.test", ""},
		{alice, "anyone@c.test", ""}, // granted domain
		{alice, "ceo@remote.test", "553 5.7.1"},
		{alice, "", "553 5.7.1"},
		{Local("uid 0"), "", ""},
		{Local("uid 0"), "bob@a.test", ""},
		{Local("uid 0"), "someone@remote.test", ""},
	}
	for _, tc := range tests {
		err := f.sub.Sender(context.Background(), tc.who, addr(t, tc.from))
		if got := replyOf(err); got != tc.want {
			t.Errorf("Sender(%s, <%s>) = %v, want %q", tc.who, tc.from, err, tc.want)
		}
	}
}

func TestAuthors(t *testing.T) {
	f := newFixture(t)
	alice := User(f.alice, netip.MustParseAddr("192.0.2.1"))
	local := Local("uid 1000")
	tests := []struct {
		name   string
		who    Who
		from   string // envelope
		header string
		want   string // "" = accepted, else "CODE ENHANCED"
		text   string // in the refusal, or a regexp the stored message matches
		signed string // d= of the DKIM signature, "" = unsigned
	}{
		{"own address", alice, "alice@a.test", "From: Alice <alice@a.test>\r\n", "", "", "a.test"},
		{"+tag", alice, "alice+news@a.test", "From: <alice+news@a.test>\r\n", "", "", "a.test"},
		{"alias to self", alice, "alice@a.test", "From: Sales <sales@a.test>\r\n", "", "", "a.test"},
		{"alias to someone else", alice, "alice@a.test", "From: support@a.test\r\n", "553 5.7.1",
			"From address <support@a.test> not owned by authenticated user alice@a.test", ""},
		{"catch-all owner as a non-existent address", alice, "alice@a.test", "From: nobody@a.test\r\n", "553 5.7.1", "<nobody@a.test>", ""},
		{"delegated domain", alice, "anyone@c.test", "From: Anyone <anyone@c.test>\r\n", "", "", "c.test"},
		{"delegated domain, own envelope", alice, "alice@a.test", "From: news@c.test\r\n", "", "", "c.test"},
		{"granted address", alice, "alice@a.test", "From: The CEO <ceo@b.test>\r\n", "", "", ""}, // b.test has no keys
		{"another user", alice, "alice@a.test", "From: Bob <bob@a.test>\r\n", "553 5.7.1", "<bob@a.test>", ""},
		{"another hosted domain", alice, "alice@a.test", "From: Carol <carol@b.test>\r\n", "553 5.7.1", "<carol@b.test>", ""},
		{"remote domain", alice, "alice@a.test", "From: ceo@remote.test\r\n", "553 5.7.1", "<ceo@remote.test>", ""},
		{"Sender of another user", alice, "alice@a.test", "From: alice@a.test\r\nSender: bob@a.test\r\n", "553 5.7.1",
			"Sender address <bob@a.test>", ""},
		{"own Sender", alice, "alice@a.test", "From: sales@a.test\r\nSender: alice@a.test\r\n", "", "", "a.test"},
		{"several From addresses", alice, "alice@a.test", "From: alice@a.test, sales@a.test\r\n", "550 5.7.1", "2 addresses", ""},
		{"several From addresses, one foreign", alice, "alice@a.test", "From: alice@a.test,\r\n bob@a.test\r\n", "550 5.7.1", "exactly one author", ""},
		{"several From fields", alice, "alice@a.test", "From: alice@a.test\r\nSubject: x\r\nfrom: alice@a.test\r\n", "550 5.7.1", "2 From fields", ""},
		{"group in From", alice, "alice@a.test", "From: Us: alice@a.test, bob@a.test;\r\n", "550 5.7.1", "2 addresses", ""},
		{"empty group in From", alice, "alice@a.test", "From: undisclosed:;\r\n", "550 5.6.0", "no address", ""},
		{"unparseable From", alice, "alice@a.test", "From: <alice@a.test\r\n", "550 5.6.0", "not a valid address list", ""},
		{"foreign charset display name", alice, "alice@a.test", "From: =?iso-2022-jp?B?GyRCJUYlOSVIGyhC?= <alice@a.test>\r\n", "", "", "a.test"},
		{"missing From: added from the envelope", alice, "sales@a.test", "Subject: no author\r\n", "", "(?m)^From: <sales@a.test>\r$", "a.test"},
		{"missing Date and Message-ID added", alice, "alice@a.test", "From: alice@a.test\r\n", "",
			`(?s)^Received: from test\r\nDKIM-Signature: .*\r\nDate: Tue, 04 Mar 2025 05:06:07 \+0000\r\nMessage-ID: <[0-9a-v]{16}@a\.test>\r\nFrom: alice@a\.test\r\n\r\nbody\r\n$`, "a.test"},
		{"own Date and Message-ID kept", alice, "alice@a.test", "From: alice@a.test\r\nDate: Mon, 3 Mar 2025 00:00:00 +0000\r\nMessage-ID: <x@y>\r\n", "",
			`(?s)^Received: from test\r\nDKIM-Signature: .*\r\nFrom: alice@a\.test\r\nDate: Mon, 3 Mar 2025`, "a.test"},
		{"no empty line before the body", alice, "alice@a.test", "From: alice@a.test\r\nnot a field", "", "\r\nFrom: alice@a.test\r\n\r\nnot a field\r\nbody\r\n$", "a.test"},
		{"local: anyone local", local, "bob@a.test", "From: Carol <carol@b.test>\r\n", "", "", ""},
		{"local: local domain signed", local, "", "From: bob@a.test\r\n", "", "", "a.test"},
		{"local: foreign From, not signed", local, "root@a.test", "From: me@elsewhere.test\r\n", "", "", ""},
		{"local: unqualified From, not signed", local, "root@a.test", "From: root\r\n", "", "", ""},
		{"local: missing From for the null sender", local, "", "Subject: x\r\n", "", "(?m)^From: <MAILER-DAEMON@mx.a.test>\r$", ""},
		{"local: Message-ID at the hostname", local, "root@a.test", "Subject: x\r\n", "", "Message-ID: <[0-9a-v]{16}@mx\\.a\\.test>", "a.test"},
		{"local: several From fields", local, "root@a.test", "From: a@a.test\r\nFrom: b@a.test\r\n", "550 5.7.1", "2 From fields", ""},
		{"local: several From addresses", local, "root@a.test", "From: a@a.test, b@a.test\r\n", "550 5.7.1", "2 addresses", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg, err := f.send(t, tc.who, tc.from, tc.header)
			if got := replyOf(err); got != tc.want {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if err != nil {
				var r *smtp.Reply
				errors.As(err, &r)
				if !strings.Contains(r.Text, tc.text) {
					t.Errorf("reply text %q does not contain %q", r.Text, tc.text)
				}
				return
			}
			if tc.text != "" && !regexp.MustCompile(tc.text).MatchString(msg) {
				t.Errorf("stored message does not match %q:\n%s", tc.text, msg)
			}
			if got := f.verify(t, msg); got != tc.signed {
				t.Errorf("signed by %q, want %q:\n%s", got, tc.signed, msg)
			}
		})
	}
}

// verify checks the message's DKIM signatures with go-msgauth (an implementation other
// than the signer's) and returns the signing domain, "" if there is no signature.
func (f *fixture) verify(t *testing.T, msg string) string {
	t.Helper()
	lookup := func(name string) ([]string, error) {
		if txt, ok := f.keys[strings.TrimSuffix(strings.ToLower(name), ".")]; ok {
			return []string{txt}, nil
		}
		return nil, fmt.Errorf("no key at %s", name)
	}
	vs, err := dkim.VerifyWithOptions(strings.NewReader(msg), &dkim.VerifyOptions{LookupTXT: lookup})
	if err != nil {
		t.Fatal(err)
	}
	domain := ""
	for _, v := range vs {
		if v.Err != nil {
			t.Errorf("signature d=%s: %v", v.Domain, v.Err)
		}
		domain = v.Domain
	}
	return domain
}

func TestRecipient(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	must(t, second(f.db.Suppress(ctx, store.Suppression{SenderDomain: "a.test", Address: "gone@remote.test", Reason: "bad_mailbox",
		Source: "delivery", Detail: "550 5.1.1 user\r\nunknown"})))
	tests := []struct {
		from, rcpt string
		want       string
		cause      error
		local      int  // local targets
		remote     bool // queued as is
	}{
		{"alice@a.test", "bob@a.test", "", nil, 1, false},
		{"alice@a.test", "team@a.test", "", nil, 2, false},
		{"alice@a.test", "fwd@a.test", "", nil, 1, false}, // the forward is a target
		{"alice@a.test", "ext@remote.test", "", nil, 0, true},
		{"alice@a.test", "nosuch@b.test", "550 5.1.1", store.ErrNoSuchUser, 0, false},
		{"alice@a.test", "x@[192.0.2.1]", "550 5.1.2", nil, 0, false},
		{"alice@a.test", "Gone@remote.test", "550 5.1.1", ErrSuppressed, 0, false},
		{"alice@c.test", "gone@remote.test", "", nil, 0, true}, // suppressed for a.test only
	}
	for _, tc := range tests {
		r, err := f.sub.Recipient(ctx, addr(t, tc.from), addr(t, tc.rcpt))
		if got := replyOf(err); got != tc.want || tc.cause != nil && !errors.Is(err, tc.cause) {
			t.Errorf("Recipient(%s, %s) = %v, want %q (%v)", tc.from, tc.rcpt, err, tc.want, tc.cause)
			continue
		}
		if err == nil && (len(r.local) != tc.local || r.remote != tc.remote || r.Addr() != addr(t, tc.rcpt)) {
			t.Errorf("Recipient(%s, %s) = %+v, want %d local, remote %v", tc.from, tc.rcpt, r, tc.local, tc.remote)
		}
		if tc.cause == ErrSuppressed && (!strings.Contains(err.Error(), "suppressed: bad_mailbox since") ||
			!strings.Contains(err.Error(), "(550 5.1.1 user__unknown)")) {
			t.Errorf("suppression refusal %q does not say why", err)
		}
	}
}

// TestSubmitDelivers checks the hand-off: one Accept with each local user once and each
// remote address once, then the hooks.
func TestSubmitDelivers(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	from := addr(t, "alice@a.test")
	var rcpts []Recipient
	for _, a := range []string{"bob@a.test", "team@a.test", "fwd@a.test", "ext@remote.test", "EXT@remote.test"} {
		r, err := f.sub.Recipient(ctx, from, addr(t, a))
		must(t, err)
		rcpts = append(rcpts, r)
	}
	id, err := f.sub.Submit(ctx, Envelope{From: from, Rcpts: rcpts, RequireTLS: true}, []byte("From: alice@a.test\r\n\r\nhi"),
		User(f.alice, netip.MustParseAddr("192.0.2.1")))
	must(t, err)
	if len(f.delivered) != 1 || len(f.delivered[0]) != 2 || f.queued != 1 {
		t.Errorf("Delivered %v, Queued %d times; want alice and bob once, one wake-up", f.delivered, f.queued)
	}
	q, _ := f.db.Queue(ctx)
	var got []string
	for _, e := range q {
		got = append(got, e.Rcpt)
		if e.MsgID != id || e.From != "alice@a.test" || !e.RequireTLS {
			t.Errorf("queue entry %+v", e)
		}
	}
	if strings.Join(got, " ") != "ext@remote.test ext@remote.test" && strings.Join(got, " ") != "ext@remote.test" {
		t.Errorf("queued for %v, want ext@remote.test once", got)
	}

	// Nobody may submit without an identity, and the envelope sender is checked again.
	if _, err := f.sub.Submit(ctx, Envelope{From: from, Rcpts: rcpts}, []byte("x\r\n"), Who{}); err == nil {
		t.Error("Submit accepted a message from nobody")
	}
	bob, _ := f.db.UserByAddress(ctx, "bob@a.test")
	if _, err := f.sub.Submit(ctx, Envelope{From: from, Rcpts: rcpts}, []byte("x\r\n"), User(bob, netip.Addr{})); replyOf(err) != "553 5.7.1" {
		t.Errorf("bob submitting with alice's envelope sender: %v", err)
	}
}

func TestBulkFields(t *testing.T) {
	f := newFixture(t)
	f.sub.Bulk = &Bulk{Key: []byte("k"), BaseURL: "https://mx.a.test", Senders: map[string]bool{"@c.test": true}}
	alice := User(f.alice, netip.Addr{})
	tests := []struct {
		from, header string
		want         bool
	}{
		{"alice@a.test", "From: alice@a.test\r\nSubject: personal\r\n", false},
		{"alice@a.test", "From: alice@a.test\r\nPrecedence: bulk\r\n", true},
		{"alice@a.test", "From: alice@a.test\r\nList-Id: <news.a.test>\r\n", true},
		{"alice@a.test", "From: alice@a.test\r\nList-Id: <x>\r\nList-Unsubscribe: <mailto:u@a.test>\r\n", false}, // its own kept
		{"news@c.test", "From: news@c.test\r\n", true},                                                           // a configured bulk sender
	}
	for _, tc := range tests {
		msg, err := f.send(t, alice, tc.from, tc.header)
		must(t, err)
		has := strings.Contains(msg, "List-Unsubscribe-Post: List-Unsubscribe=One-Click")
		if has != tc.want {
			t.Errorf("%s with %q: List-Unsubscribe-Post %v, want %v", tc.from, tc.header, has, tc.want)
		}
		if has && f.verify(t, msg) == "" {
			t.Errorf("the fields were added after signing:\n%s", msg)
		}
	}
}

// TestClass: bulk mail is queued as such (it is sent after transactional mail); mail a
// person sends one by one is transactional.
func TestClass(t *testing.T) {
	f := newFixture(t)
	f.sub.Bulk = &Bulk{Key: []byte("k"), BaseURL: "https://mx.a.test", Senders: map[string]bool{"@c.test": true}}
	alice := User(f.alice, netip.Addr{})
	for _, tc := range []struct{ from, header, want string }{
		{"alice@a.test", "From: alice@a.test\r\nSubject: hello\r\n", store.ClassTransactional},
		{"alice@a.test", "From: alice@a.test\r\nPrecedence: bulk\r\n", store.ClassBulk},
		{"alice@a.test", "From: alice@a.test\r\nList-Id: <news.a.test>\r\n", store.ClassBulk},
		{"alice@a.test", "From: alice@a.test\r\nList-Unsubscribe: <mailto:u@a.test>\r\n", store.ClassBulk},
		{"news@c.test", "From: news@c.test\r\n", store.ClassBulk},
	} {
		if _, err := f.send(t, alice, tc.from, tc.header); err != nil {
			t.Fatal(err)
		}
		q, _ := f.db.Queue(context.Background())
		if got := q[len(q)-1].Class; got != tc.want {
			t.Errorf("%s with %q: class %q, want %q", tc.from, tc.header, got, tc.want)
		}
	}
}

func TestMaxSize(t *testing.T) {
	f := newFixture(t)
	f.sub.MaxSize = 1000
	_, err := f.send(t, User(f.alice, netip.Addr{}), "alice@a.test", "From: alice@a.test\r\nX: "+strings.Repeat("y", 9500)+"\r\n")
	if replyOf(err) != "552 5.3.4" {
		t.Errorf("oversized message: %v, want 552 5.3.4", err)
	}
	_, err = f.send(t, User(f.alice, netip.Addr{}), "alice@a.test", "From: alice@a.test\r\n"+strings.Repeat("X: y\r\n", MaxHeaderFields+1))
	if replyOf(err) != "552 5.3.4" {
		t.Errorf("header with too many fields: %v, want 552 5.3.4", err)
	}
}

// TestSmugglingBytesRefused: whatever path a message comes in by, nothing that a later
// receiver could read as an end of data (bare CR or LF, NUL) reaches the queue.
func TestSmugglingBytesRefused(t *testing.T) {
	f := newFixture(t)
	alice := User(f.alice, netip.Addr{})
	for _, tc := range []struct{ name, body, want string }{
		{"bare LF dot", "hello\n.\nMAIL FROM:<x@a.test>\r\n", "554 5.5.2"},
		{"bare CR dot", "hello\r.\rMAIL FROM:<x@a.test>\r\n", "554 5.5.2"},
		{"CRLF dot bare LF", "hello\r\n.\nMAIL FROM:<x@a.test>\r\n", "554 5.5.2"},
		{"NUL dot", "hello\r\n\x00.\r\nMAIL FROM:<x@a.test>\r\n", "554 5.6.0"},
		{"trailing bare CR", "hello\r", "554 5.5.2"},
	} {
		_, err := f.send(t, alice, "alice@a.test", "From: alice@a.test\r\n\r\n"+tc.body)
		if replyOf(err) != tc.want {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.want)
		}
	}
	if q, _ := f.db.Queue(context.Background()); len(q) != 0 {
		t.Errorf("%d entries queued", len(q))
	}
}

func TestSplitHeader(t *testing.T) {
	tests := []struct {
		in, fields, body string
	}{
		{"A: 1\r\nB: 2\r\n\r\nbody\r\n", "A: 1\r\nB: 2\r\n", "body\r\n"},
		{"A: 1\r\n folded\r\n\tmore\r\n\r\n", "A: 1\r\n folded\r\n\tmore\r\n", ""},
		{"A: 1\r\nnot a field\r\nB: 2\r\n", "A: 1\r\n", "not a field\r\nB: 2\r\n"},
		{" leading space\r\n", "", " leading space\r\n"},
		{"A : obsolete\r\n\r\n", "A : obsolete\r\n", ""},
		{"Bad name: x\r\n", "", "Bad name: x\r\n"},
		{"A: no final CRLF", "A: no final CRLF\r\n", ""},
		{"", "", ""},
		{"\r\nbody", "", "body"},
	}
	for _, tc := range tests {
		h, body, err := SplitHeader([]byte(tc.in))
		must(t, err)
		var b bytes.Buffer
		h.WriteFields(&b)
		if b.String() != tc.fields || string(body) != tc.body {
			t.Errorf("SplitHeader(%q) = %q, %q; want %q, %q", tc.in, b.String(), body, tc.fields, tc.body)
		}
	}
	h, _, _ := SplitHeader([]byte("To: a@b.test,\r\n c@d.test\r\nBcc: x@y.test\r\ncc: e@f.test\r\n\r\n"))
	if v := h.Values("to"); len(v) != 1 || v[0] != "a@b.test, c@d.test" {
		t.Errorf("Values(to) = %q", v)
	}
	h.Remove("BCC")
	if h.Has("Bcc") || !h.Has("CC") || h.Size() != len("To: a@b.test,\r\n c@d.test\r\ncc: e@f.test\r\n") {
		t.Errorf("after Remove(BCC): Has(Bcc) %v, Has(CC) %v, Size %d", h.Has("Bcc"), h.Has("CC"), h.Size())
	}
	if _, _, err := SplitHeader([]byte("X: " + strings.Repeat("y", MaxHeaderSize) + "\r\n\r\n")); replyOf(err) != "552 5.3.4" {
		t.Errorf("oversized header: %v", err)
	}
}

// TestActiveKeys: only active keys sign; pending (not yet in DNS) and retired ones don't.
func TestActiveKeys(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for i, state := range []string{store.KeyPending, store.KeyRetired} {
		k, err := auth.GenerateDKIMKey("c.test", auth.KeyEd25519, testNow)
		if err != nil {
			t.Fatal(err)
		}
		pem, _ := k.MarshalPrivate()
		must(t, f.db.AddDKIMKey(ctx, store.DKIMKey{Domain: "c.test", Selector: fmt.Sprintf("x%d", i), Algorithm: "ed25519",
			PrivatePEM: pem, State: state}))
	}
	keys, err := ActiveKeys(f.db)(ctx, "c.test")
	if err != nil || len(keys) != 1 || keys[0].Selector == "x0" || keys[0].Selector == "x1" {
		t.Errorf("ActiveKeys(c.test) = %d keys, %v; want the one active key", len(keys), err)
	}
	if keys, err := ActiveKeys(f.db)(ctx, "b.test"); err != nil || len(keys) != 0 {
		t.Errorf("ActiveKeys(b.test) = %v, %v; want none", keys, err)
	}
}
