package dsn

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"log/slog"
	netmail "net/mail"
	"net/textproto"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	moxdsn "github.com/mjl-/mox/dsn"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

var (
	now     = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	arrival = now.Add(-26 * time.Hour)
	last    = now.Add(-time.Minute)
	until   = arrival.Add(5 * 24 * time.Hour)
)

const smallOriginal = "Received: from client.example.com ([192.0.2.7])\r\n\tby mail.example.com (Repute) with ESMTPSA id 0f2k3m4n5p6q7r8s;\r\n\tTue, 04 Mar 2025 03:06:07 +0000\r\n" +
	"From: Alice <alice@example.com>\r\nTo: Bob <bob@example.org>\r\nSubject: Lunch on Friday?\r\n" +
	"Message-ID: <lunch.1@example.com>\r\nDate: Mon, 03 Mar 2025 03:06:00 +0000\r\n\r\nAre you free on Friday?\r\n"

// gmailNoSuchUser is a real-world multi-line reply.
const gmailNoSuchUser = "550-5.1.1 The email account that you tried to reach does not exist. Please try\r\n" +
	"550-5.1.1 double-checking the recipient's email address for typos or\r\n" +
	"550-5.1.1 unnecessary spaces. For more information, go to\r\n" +
	"550 5.1.1  https://support.google.com/mail/?p=NoSuchUser 5b1f17b1804b1-43b7a8f7e5asi1234567f9.123 - gsmtp"

func bigOriginal() []byte {
	var b strings.Builder
	b.WriteString("From: alice@example.com\r\nTo: bob@example.org\r\nSubject: the quarterly figures\r\nMessage-ID: <big@example.com>\r\n\r\n")
	for i := 0; b.Len() < 200<<10; i++ {
		fmt.Fprintf(&b, "line %06d of a long attachment that nobody wants returned in full\r\n", i)
	}
	return []byte(b.String())
}

type testCase struct {
	name    string
	msg     Message
	part3   string // expected media type of the third part, "" for none
	whole   bool   // the third part is the whole original
	utf8To  bool   // the To field carries a UTF-8 address
	moxable bool   // mox's DSN parser understands the report (ASCII, smtp diagnostics only)
}

func cases() []testCase {
	return []testCase{
		{
			name: "failed-no-such-user",
			msg: Message{ReportingMTA: "mail.example.com", To: "alice@example.com", OriginalID: "0f2k3m4n5p6q7r8s", Arrival: arrival,
				Recipients: []Recipient{{Address: "bob@example.org", Action: Failed, Status: "5.1.1", RemoteMTA: "mx.example.org",
					Diagnostic: "550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown in virtual mailbox table", LastAttempt: last}},
				Original: []byte(smallOriginal)},
			part3: "message/rfc822", whole: true, moxable: true,
		},
		{
			name: "delayed-greylisted",
			msg: Message{ReportingMTA: "mail.example.com", To: "alice@example.com", OriginalID: "0f2k3m4n5p6q7r8s", Arrival: arrival,
				Recipients: []Recipient{{Address: "carol@example.net", Action: Delayed, Status: "4.7.1", RemoteMTA: "mx1.example.net",
					Diagnostic: "451 4.7.1 Greylisting in action, please come back later", LastAttempt: last, WillRetryUntil: until}},
				Original: []byte(smallOriginal)},
			part3: "text/rfc822-headers", moxable: true,
		},
		{
			name: "long-diagnostic",
			msg: Message{ReportingMTA: "mail.example.com", To: "alice@example.com", OriginalID: "0f2k3m4n5p6q7r8s", Arrival: arrival,
				Recipients: []Recipient{
					{Address: "nobody.here@gmail.com", Action: Failed, Status: "5.1.1", RemoteMTA: "gmail-smtp-in.l.google.com",
						Diagnostic: gmailNoSuchUser, LastAttempt: last},
					{Address: "dan@example.org", Action: Failed, Status: "5.7.1", RemoteMTA: "mx.example.org",
						Diagnostic: "554 5.7.1 " + strings.Repeat("x", 1500) + " end", LastAttempt: last},
				},
				Original: []byte(smallOriginal)},
			part3: "message/rfc822", whole: true, moxable: true,
		},
		{
			name: "utf8-recipient",
			msg: Message{ReportingMTA: "mail.example.com", To: "alice@example.com", OriginalID: "0f2k3m4n5p6q7r8s", Arrival: arrival,
				Recipients: []Recipient{{Address: "jörg+news@bücher.de", Action: Failed, Status: "5.1.1", RemoteMTA: "mx.bücher.de",
					Diagnostic: "550 5.1.1 Benutzer „jörg+news“ unbekannt", LastAttempt: last}},
				Original: []byte("From: alice@example.com\r\nTo: jörg+news@bücher.de\r\nSubject: Grüße\r\n\r\nHallo Jörg!\r\n")},
			part3: "message/global", whole: true,
		},
		{
			name: "delayed-utf8-header",
			msg: Message{ReportingMTA: "mail.example.com", To: "alice@example.com", OriginalID: "0f2k3m4n5p6q7r8s", Arrival: arrival,
				Recipients: []Recipient{{Address: "bob@example.org", Action: Delayed, Status: "4.2.2", RemoteMTA: "mx.example.org",
					Diagnostic: "452 4.2.2 Postfach voll", LastAttempt: last, WillRetryUntil: until}},
				Original: []byte("From: Jörg <jörg@bücher.de>\nTo: bob@example.org\nSubject: Grüße\n\nHallo Bob!\n")},
			part3: "text/rfc822-headers", moxable: true,
		},
		{
			name: "utf8-sender",
			msg: Message{ReportingMTA: "mail.example.com", To: "用户@例子.中国", OriginalID: "0f2k3m4n5p6q7r8s", Arrival: arrival,
				Recipients: []Recipient{{Address: "bob@example.org", Action: Delayed, Status: "4.4.1",
					Diagnostic: "connect to mx.example.org[192.0.2.25]:25: Connection timed out", LastAttempt: last, WillRetryUntil: until}}},
			utf8To: true,
		},
		{
			name: "expired-after-retries",
			msg: Message{ReportingMTA: "mail.example.com", To: "alice@example.com", OriginalID: "0f2k3m4n5p6q7r8s", Arrival: arrival,
				Recipients: []Recipient{{Address: "bob@example.org", Action: Failed, Status: "4.4.7", RemoteMTA: "mx.example.org",
					Diagnostic: "421 4.7.0 [203.0.113.9] Our system has detected an unusual rate of unsolicited mail", LastAttempt: last}}},
			moxable: true,
		},
		{
			name: "big-original",
			msg: Message{ReportingMTA: "mail.example.com", To: "alice@example.com", OriginalID: "0f2k3m4n5p6q7r8s", Arrival: arrival,
				Recipients: []Recipient{{Address: "bob@example.org", Action: Failed, Status: "5.2.2", RemoteMTA: "mx.example.org",
					Diagnostic: "552 5.2.2 Mailbox full", LastAttempt: last}},
				Original: bigOriginal()},
			part3: "text/rfc822-headers", moxable: true,
		},
		{
			name: "own-diagnostic-mixed",
			msg: Message{ReportingMTA: "mail.example.com", To: "alice@example.com", OriginalID: "0f2k3m4n5p6q7r8s", Arrival: arrival,
				Recipients: []Recipient{
					{Address: "x@nonexistent.example", Action: Failed, Status: "5.1.2",
						Diagnostic: "Host or domain name not found: nonexistent.example has no MX, A or AAAA record", LastAttempt: last},
					{Address: "erin@example.net", Action: Delayed, Status: "4.4.2", RemoteMTA: "mx.example.net", LastAttempt: last, WillRetryUntil: until},
					{Address: "frank@example.net", Action: Failed},
				},
				Original: []byte("Subject: no body, bare LF\nFrom: alice@example.com\n")},
			part3: "message/rfc822", whole: true,
		},
	}
}

func TestComposeGolden(t *testing.T) {
	for _, tc := range cases() {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Compose(tc.msg, now)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", tc.name+".eml")
			if *update {
				if err := os.WriteFile(golden, out, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(out, want) {
				t.Errorf("output differs from %s (run go test -update after checking the change):\n%s", golden, out)
			}
			again, _ := Compose(tc.msg, now)
			if !bytes.Equal(out, again) {
				t.Error("Compose is not deterministic")
			}
			checkWire(t, out, tc.utf8To)
			checkParsed(t, tc, out)
			if tc.moxable {
				checkMox(t, tc, out)
			}
		})
	}
}

// checkWire checks the transport rules: CRLF only, lines under 998, 7-bit (except a
// UTF-8 To field where the test expects one).
func checkWire(t *testing.T, out []byte, utf8To bool) {
	t.Helper()
	if !bytes.HasSuffix(out, []byte("\r\n")) {
		t.Error("message does not end with CRLF")
	}
	for i, line := range bytes.Split(bytes.TrimSuffix(out, []byte("\r\n")), []byte("\r\n")) {
		if bytes.ContainsAny(line, "\r\n") {
			t.Errorf("line %d: bare CR or LF: %q", i+1, line)
		}
		if len(line) > 998 {
			t.Errorf("line %d: %d characters", i+1, len(line))
		}
		if !isASCII(string(line)) && !(utf8To && bytes.HasPrefix(line, []byte("To: "))) {
			t.Errorf("line %d is not 7-bit: %q", i+1, line)
		}
	}
}

// checkParsed reads the report back with go-message and checks every field against the
// input.
func checkParsed(t *testing.T, tc testCase, out []byte) {
	t.Helper()
	m := tc.msg
	mr, err := mail.CreateReader(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	h := mr.Header
	from, err := h.AddressList("From")
	if err != nil || len(from) != 1 || from[0].Address != "MAILER-DAEMON@"+m.ReportingMTA || from[0].Name != "Mail Delivery System" {
		t.Errorf("From = %v, %v", from, err)
	}
	if to := h.Get("To"); to != "<"+headerAddress(m.To)+">" {
		t.Errorf("To = %q", to)
	}
	failure := false
	for _, r := range m.Recipients {
		failure = failure || r.Action == Failed
	}
	wantSubject := map[bool]string{true: SubjectFailed, false: SubjectDelayed}[failure]
	if s, _ := h.Subject(); s != wantSubject {
		t.Errorf("Subject = %q, want %q", s, wantSubject)
	}
	if d, err := h.Date(); err != nil || !d.Equal(now) {
		t.Errorf("Date = %v, %v", d, err)
	}
	if id, err := h.MessageID(); err != nil || !strings.HasSuffix(id, "@"+m.ReportingMTA) {
		t.Errorf("Message-ID = %q, %v", id, err)
	}
	if v := h.Get("Auto-Submitted"); v != "auto-replied" {
		t.Errorf("Auto-Submitted = %q", v)
	}
	ct, params, err := h.ContentType()
	if err != nil || ct != "multipart/report" || params["report-type"] != "delivery-status" {
		t.Errorf("Content-Type = %q %v %v", ct, params, err)
	}

	ent, err := message.Read(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	var parts []*message.Entity
	var bodies [][]byte
	err = ent.Walk(func(path []int, e *message.Entity, err error) error {
		if err != nil || len(path) != 1 {
			return err
		}
		b, err := io.ReadAll(e.Body)
		parts = append(parts, e)
		bodies = append(bodies, b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	wantParts := 3
	if tc.part3 == "" {
		wantParts = 2
	}
	if len(parts) != wantParts {
		t.Fatalf("%d parts, want %d", len(parts), wantParts)
	}
	types := make([]string, len(parts))
	for i, p := range parts {
		types[i], _, _ = p.Header.ContentType()
	}
	if types[0] != "text/plain" || types[1] != "message/delivery-status" {
		t.Errorf("part types %v", types)
	}

	// Part 1: each recipient, each reply quoted verbatim (line by line).
	text := strings.ReplaceAll(string(bodies[0]), "\r\n", "\n")
	for _, r := range m.Recipients {
		if !strings.Contains(text, "<"+r.Address+">") {
			t.Errorf("text part does not name %s", r.Address)
		}
		for _, line := range strings.Split(strings.ReplaceAll(r.Diagnostic, "\r\n", "\n"), "\n") {
			if line != "" && !strings.Contains(text, "> "+strings.TrimRight(line, " ")+"\n") {
				t.Errorf("text part does not quote %q:\n%s", line, text)
			}
		}
		flat := strings.Join(strings.Fields(text), " ") // the prose is wrapped
		if r.Action == Delayed && !r.WillRetryUntil.IsZero() && !strings.Contains(flat, "retried until "+r.WillRetryUntil.Format(time.RFC1123Z)) {
			t.Errorf("text part does not say until when %s is retried", r.Address)
		}
	}
	if !strings.Contains(text, m.OriginalID) {
		t.Error("text part does not give the message ID")
	}

	// Part 2: every field.
	perMsg, perRcpt := parseStatus(t, bodies[1])
	if v := perMsg.Get("Reporting-MTA"); v != "dns; "+asciiDomain(m.ReportingMTA) {
		t.Errorf("Reporting-MTA = %q", v)
	}
	if v := perMsg.Get("X-Repute-Msg-ID"); v != m.OriginalID {
		t.Errorf("X-Repute-Msg-ID = %q", v)
	}
	checkDate(t, "Arrival-Date", perMsg.Get("Arrival-Date"), m.Arrival)
	if len(perRcpt) != len(m.Recipients) {
		t.Fatalf("%d recipient blocks, want %d", len(perRcpt), len(m.Recipients))
	}
	for i, r := range m.Recipients {
		f := perRcpt[i]
		if got := decodeTypedAddress(t, f.Get("Final-Recipient")); got != headerAddress(r.Address) && got != r.Address {
			t.Errorf("Final-Recipient %q decodes to %q, want %q", f.Get("Final-Recipient"), got, r.Address)
		}
		if f.Get("Action") != r.Action {
			t.Errorf("Action = %q, want %q", f.Get("Action"), r.Action)
		}
		if f.Get("Status") != r.status() {
			t.Errorf("Status = %q, want %q", f.Get("Status"), r.status())
		}
		wantMTA := ""
		if r.RemoteMTA != "" {
			wantMTA = "dns; " + asciiDomain(r.RemoteMTA)
		}
		if f.Get("Remote-MTA") != wantMTA {
			t.Errorf("Remote-MTA = %q, want %q", f.Get("Remote-MTA"), wantMTA)
		}
		checkDiagnostic(t, f.Get("Diagnostic-Code"), r.Diagnostic)
		checkDate(t, "Last-Attempt-Date", f.Get("Last-Attempt-Date"), r.LastAttempt)
		wantUntil := time.Time{}
		if r.Action == Delayed {
			wantUntil = r.WillRetryUntil
		}
		checkDate(t, "Will-Retry-Until", f.Get("Will-Retry-Until"), wantUntil)
	}

	// Part 3: the original, whole or its header.
	if tc.part3 == "" {
		return
	}
	if types[2] != tc.part3 {
		t.Errorf("third part is %s, want %s", types[2], tc.part3)
	}
	canon := canonicalLines(m.Original)
	want := headerSection(canon)
	if tc.whole {
		want = canon
	}
	if !bytes.Equal(bodies[2], want) {
		t.Errorf("third part is %d bytes, want %d (whole=%v)", len(bodies[2]), len(want), tc.whole)
	}
}

// parseStatus splits a delivery-status body into its per-message and per-recipient
// field groups (RFC 3464 §2.1).
func parseStatus(t *testing.T, body []byte) (textproto.MIMEHeader, []textproto.MIMEHeader) {
	t.Helper()
	br := bufio.NewReader(io.MultiReader(bytes.NewReader(body), strings.NewReader("\r\n")))
	r := textproto.NewReader(br)
	perMsg, err := r.ReadMIMEHeader()
	if err != nil {
		t.Fatalf("per-message fields: %v", err)
	}
	var perRcpt []textproto.MIMEHeader
	for {
		if _, err := br.Peek(1); err == io.EOF {
			break
		}
		h, err := r.ReadMIMEHeader()
		if err != nil {
			t.Fatalf("per-recipient fields: %v", err)
		}
		perRcpt = append(perRcpt, h)
	}
	return perMsg, perRcpt
}

// decodeTypedAddress undoes the rfc822 and utf-8 (RFC 6533 §3) address types.
func decodeTypedAddress(t *testing.T, v string) string {
	t.Helper()
	typ, addr, ok := strings.Cut(v, ";")
	addr = strings.TrimSpace(addr)
	switch {
	case !ok:
		t.Errorf("address %q has no type", v)
	case strings.EqualFold(typ, "rfc822"):
		return addr
	case strings.EqualFold(typ, "utf-8"):
		return decodeEmbedded(t, addr)
	default:
		t.Errorf("address %q has unknown type", v)
	}
	return ""
}

func decodeEmbedded(t *testing.T, s string) string {
	t.Helper()
	var b strings.Builder
	for {
		i := strings.Index(s, `\x{`)
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i:], '}')
		var r rune
		if end < 0 {
			t.Errorf("unterminated \\x{ in %q", s)
			return b.String()
		}
		if _, err := fmt.Sscanf(s[i+3:i+end], "%X", &r); err != nil {
			t.Errorf("bad \\x{} in %q: %v", s, err)
		}
		b.WriteRune(r)
		s = s[i+end+1:]
	}
}

func checkDiagnostic(t *testing.T, field, diag string) {
	t.Helper()
	if diag == "" {
		if field != "" {
			t.Errorf("Diagnostic-Code = %q, want none", field)
		}
		return
	}
	typ, text, _ := strings.Cut(field, ";")
	wantType := "X-Repute"
	if isSMTPReply(diag) {
		wantType = "smtp"
	}
	if typ != wantType {
		t.Errorf("Diagnostic-Code type %q, want %q", typ, wantType)
	}
	// The field is the reply with its lines joined; folding may have added whitespace and a
	// word longer than a line may have been split, so compare the words.
	norm := func(s string) string { return strings.Join(strings.Fields(s), "") }
	if got, want := norm(decodeEmbedded(t, text)), norm(diag); got != want {
		t.Errorf("Diagnostic-Code text %q\nwant %q", got, want)
	}
}

func checkDate(t *testing.T, name, v string, want time.Time) {
	t.Helper()
	if want.IsZero() {
		if v != "" {
			t.Errorf("%s = %q, want none", name, v)
		}
		return
	}
	got, err := netmail.ParseDate(v) // any RFC 5322 parser must accept it
	if err != nil || !got.Equal(want) {
		t.Errorf("%s = %q (%v), want %v", name, v, err, want)
	}
}

// checkMox parses the report with mox's independent DSN parser.
func checkMox(t *testing.T, tc testCase, out []byte) {
	t.Helper()
	m, _, err := moxdsn.Parse(slog.New(slog.NewTextHandler(io.Discard, nil)), bytes.NewReader(out))
	if err != nil {
		t.Fatalf("mox dsn.Parse: %v", err)
	}
	if m.ReportingMTA != tc.msg.ReportingMTA || !m.ArrivalDate.Equal(tc.msg.Arrival) {
		t.Errorf("mox: reporting MTA %q, arrival %v", m.ReportingMTA, m.ArrivalDate)
	}
	if m.MessageHeader.Get("X-Repute-Msg-Id") != tc.msg.OriginalID {
		t.Errorf("mox: X-Repute-Msg-ID = %q", m.MessageHeader.Get("X-Repute-Msg-Id"))
	}
	if len(m.Recipients) != len(tc.msg.Recipients) {
		t.Fatalf("mox: %d recipients", len(m.Recipients))
	}
	for i, r := range tc.msg.Recipients {
		got := m.Recipients[i]
		if got.FinalRecipient.String() != r.Address || string(got.Action) != r.Action || got.Status != r.status() ||
			got.RemoteMTA.Name != "dns; "+r.RemoteMTA || !got.LastAttemptDate.Equal(r.LastAttempt) {
			// mox keeps the "dns;" type in the name.
			t.Errorf("mox: recipient %d = %+v", i, got)
		}
		if (got.WillRetryUntil != nil) != (r.Action == Delayed) || got.WillRetryUntil != nil && !got.WillRetryUntil.Equal(r.WillRetryUntil) {
			t.Errorf("mox: Will-Retry-Until = %v", got.WillRetryUntil)
		}
	}
}

// TestUTF8StatusWithMox decodes an internationalised report with mox's parser of the
// utf-8 address type.
func TestUTF8StatusWithMox(t *testing.T) {
	msg := Message{ReportingMTA: "mail.example.com", To: "alice@example.com", Arrival: arrival,
		Recipients: []Recipient{{Address: "jörg+news@bücher.de", Action: Failed, Status: "5.1.1",
			RemoteMTA: "mx.example.de", Diagnostic: "550 5.1.1 unknown user", LastAttempt: last}}}
	status := deliveryStatus(msg)
	m, err := moxdsn.Decode(bytes.NewReader(status), true)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Recipients[0].FinalRecipient.XString(true); got != "jörg+news@bücher.de" {
		t.Errorf("final recipient = %q", got)
	}
}

func TestComposeRefuses(t *testing.T) {
	ok := Message{ReportingMTA: "mail.example.com", To: "alice@example.com",
		Recipients: []Recipient{{Address: "bob@example.org", Action: Failed, Status: "5.1.1"}}}
	tests := []struct {
		name string
		edit func(m *Message)
		want string
	}{
		{"null sender", func(m *Message) { m.To = "" }, "null sender"},
		{"null sender brackets", func(m *Message) { m.To = "<>" }, "null sender"},
		{"no reporting MTA", func(m *Message) { m.ReportingMTA = "" }, "reporting MTA"},
		{"no recipients", func(m *Message) { m.Recipients = nil }, "no recipients"},
		{"bad action", func(m *Message) { m.Recipients[0].Action = "delivered" }, "action"},
		{"bad status", func(m *Message) { m.Recipients[0].Status = "550" }, "status"},
		{"bad address", func(m *Message) { m.Recipients[0].Address = "bob" }, "invalid address"},
		{"header injection", func(m *Message) { m.To = "a@b\r\nBcc: x@y" }, "invalid envelope sender"},
	}
	for _, tc := range tests {
		m := ok
		m.Recipients = append([]Recipient(nil), ok.Recipients...)
		tc.edit(&m)
		_, err := Compose(m, now)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want it to mention %q", tc.name, err, tc.want)
		}
	}
	if _, err := Compose(ok, now); err != nil {
		t.Errorf("valid message: %v", err)
	}
}

func TestBoundaryChangesWithInput(t *testing.T) {
	m := cases()[0].msg
	a, _ := Compose(m, now)
	b, _ := Compose(m, now.Add(time.Second))
	ba, bb := boundaryOf(t, a), boundaryOf(t, b)
	if ba == bb {
		t.Errorf("same boundary %q for notices at different times", ba)
	}
	// An original that contains the boundary forces another one.
	m.Original = append([]byte("Subject: x\r\n\r\n--"+ba+"\r\n"), m.Original...)
	if got := boundaryOf(t, mustCompose(t, m)); strings.Contains(string(m.Original), "--"+got) {
		t.Errorf("boundary %q occurs in the original", got)
	}
}

func mustCompose(t *testing.T, m Message) []byte {
	t.Helper()
	out, err := Compose(m, now)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func boundaryOf(t *testing.T, msg []byte) string {
	t.Helper()
	e, err := message.Read(bytes.NewReader(msg))
	if err != nil {
		t.Fatal(err)
	}
	_, p, _ := e.Header.ContentType()
	return p["boundary"]
}

func TestFold(t *testing.T) {
	tests := []struct {
		in       string
		maxLine  int
		wantRoom bool // the unfolded text equals the input
	}{
		{"Subject: short", 78, true},
		{"Diagnostic-Code: smtp; " + strings.Repeat("word ", 60) + "end", 78, true},
		{"Diagnostic-Code: smtp; " + strings.Repeat("y", 3000), 998, false},
		{"X: a  b   c", 78, true},
		{"Diagnostic-Code: x;" + strings.Repeat(" ", 3000) + "end", 998, false}, // found by FuzzCompose
	}
	for _, tc := range tests {
		out := fold(tc.in, 78)
		for _, line := range strings.Split(out, "\r\n") {
			if len(line) > tc.maxLine {
				t.Errorf("fold(%.30q...): line of %d characters", tc.in, len(line))
			}
			if strings.TrimSpace(line) == "" {
				t.Errorf("fold(%.30q...): whitespace-only line", tc.in)
			}
		}
		unfolded := strings.ReplaceAll(out, "\r\n\t", " ")
		if tc.wantRoom && unfolded != tc.in {
			t.Errorf("fold(%q) unfolds to %q", tc.in, unfolded)
		}
		if strings.ReplaceAll(unfolded, " ", "") != strings.ReplaceAll(tc.in, " ", "") {
			t.Errorf("fold(%.30q...) lost characters", tc.in)
		}
	}
}

func TestDescribeStatus(t *testing.T) {
	tests := []struct{ code, want string }{
		{"5.1.1", "permanent failure, the recipient's mailbox does not exist at the destination"},
		{"4.2.2", "temporary failure, the recipient's mailbox is full"},
		{"5.7.26", "permanent failure, several authentication checks (SPF, DKIM, DMARC) failed"},
		{"5.7.99", "permanent failure, the receiving server's security or policy rules"},
		{"4.9.9", "temporary failure, an unknown problem"},
	}
	for _, tc := range tests {
		if got := describeStatus(tc.code); got != tc.want {
			t.Errorf("describeStatus(%s) = %q, want %q", tc.code, got, tc.want)
		}
	}
}

// FuzzCompose checks the transport invariants for arbitrary remote replies, addresses and
// originals: whatever a remote server answers, the notice stays valid 7-bit mail.
func FuzzCompose(f *testing.F) {
	f.Add(gmailNoSuchUser, "bob@example.org", "mx.example.org", smallOriginal, true)
	f.Add("550 5.1.1 Benutzer „jörg“ unbekannt\r\n", "jörg@bücher.de", "mx.bücher.de", "Subject: Grüße\n\nx", false)
	f.Add(strings.Repeat("z", 2000), "a b@c", "", "\xff\xfe\r\r\n\n", true)
	f.Fuzz(func(t *testing.T, diag, addr, mta, orig string, failed bool) {
		action := Delayed
		if failed {
			action = Failed
		}
		m := Message{ReportingMTA: "mail.example.com", To: "alice@example.com", OriginalID: "id", Arrival: arrival,
			Recipients: []Recipient{{Address: addr, Action: action, RemoteMTA: mta, Diagnostic: diag, LastAttempt: last, WillRetryUntil: until}},
			Original:   []byte(orig)}
		out, err := Compose(m, now)
		if err != nil {
			return // invalid input is refused, which is fine
		}
		checkWire(t, out, false)
		if _, err := message.Read(bytes.NewReader(out)); err != nil {
			t.Errorf("go-message cannot read the notice: %v", err)
		}
	})
}

func TestHeaderSection(t *testing.T) {
	long := strings.Repeat("X-Long: "+strings.Repeat("v", 80)+"\r\n", 2000) // 180 KB of header
	tests := []struct {
		name, in string
		check    func(h string) bool
	}{
		{"header and body", "A: 1\r\nB: 2\r\n\r\nbody\r\n", func(h string) bool { return h == "A: 1\r\nB: 2\r\n\r\n" }},
		{"header only", "A: 1\r\n", func(h string) bool { return h == "A: 1\r\n" }},
		{"empty header", "\r\nbody\r\n", func(h string) bool { return h == "\r\n" }},
		{"huge header cut at a line", long + "\r\nbody\r\n", func(h string) bool {
			return len(h) <= MaxOriginal+2 && strings.HasSuffix(h, "\r\n\r\n") && strings.HasPrefix(long, strings.TrimSuffix(h, "\r\n"))
		}},
		{"one huge line", strings.Repeat("y", 3*MaxOriginal) + "\r\n", func(h string) bool { return len(h) == MaxOriginal+2 }},
	}
	for _, tc := range tests {
		if h := string(headerSection([]byte(tc.in))); !tc.check(h) {
			t.Errorf("%s: headerSection = %.80q (%d bytes)", tc.name, h, len(h))
		}
		if raw := string(rawHeader([]byte(strings.ReplaceAll(tc.in, "\r\n", "\n")))); len(raw) > 2*MaxOriginal {
			t.Errorf("%s: rawHeader returned %d bytes", tc.name, len(raw))
		}
	}
}
