// Package dsn composes delivery status notifications: the bounce and delay messages Repute
// sends back to a message's envelope sender when outbound delivery fails for good or is
// taking long (RFC 3464, carried in the multipart/report container of RFC 6522).
//
// Upstream is the scheduler: when a queued recipient fails permanently, or has waited long
// enough for a delay warning, it fills a Message from the queue row and the last delivery
// Attempt and calls Compose. Downstream, the result is stored and queued like any other
// message, with the null reverse-path MAIL FROM:<> (RFC 5321 §4.5.5), so that a DSN can
// never cause another DSN.
//
// The caller must never compose a DSN about a message whose envelope sender was itself the
// null sender: such a message is a notification already, and answering it risks a loop
// between two servers (RFC 5321 §4.5.5 and §6.1). Compose refuses an empty To for the
// same reason.
//
// The output is meant to be read by people first and machines second:
//
//   - Part 1, text/plain (RFC 6522 §3), says per recipient what happened, quotes the reply
//     of the receiving server verbatim, explains the RFC 3463 status code in words and
//     says what happens next (nothing for a failure, more attempts for a delay).
//   - Part 2, message/delivery-status (RFC 3464 §2.2 and §2.3): Reporting-MTA,
//     Arrival-Date and the Repute message id as the extension field X-Repute-Msg-ID
//     (RFC 3464 §2.4); per recipient Final-Recipient, Action, Status, Remote-MTA,
//     Diagnostic-Code, Last-Attempt-Date and Will-Retry-Until.
//   - Part 3, the original: a failure returns the whole message up to MaxOriginal bytes as
//     message/rfc822; a larger message, and every delay notice, returns only its header
//     as text/rfc822-headers (RFC 6522 §4), so that a warning does not send a large
//     message back.
//
// Every line ends in CRLF and the whole message is 7-bit (RFC 5322 §2.1, RFC 2045 §2.7),
// so it can be relayed by any server: the text part is quoted-printable when it holds
// UTF-8 (a quoted reply or an internationalised address); an original with 8-bit content
// or overlong lines is returned as message/global (RFC 6532 §3.7), which unlike
// message/rfc822 may be base64-encoded; internationalised recipient addresses use the
// "utf-8" address type in its 7-bit xtext form (RFC 6533 §3); non-ASCII in a
// Diagnostic-Code is written as \x{HEX} the same way. The one exception is an envelope
// sender with a non-ASCII local part: the To field then carries it in UTF-8 (RFC 6532
// §3.2), since such a DSN can only be delivered with SMTPUTF8 anyway.
//
// Compose is a pure function of its arguments: the MIME boundary and the Message-ID are
// derived from a hash of the input, so tests can compare against golden files.
package dsn

import (
	"bytes"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"mime/multipart"
	"mime/quotedprintable"
	"net/textproto"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// MaxOriginal is the size up to which a failure DSN returns the whole original message.
// Larger messages are returned as their header only: the sender has the message, and a
// large bounce costs both sides bandwidth and quota.
const MaxOriginal = 100 << 10

// Recipient is the outcome for one recipient of the original message.
type Recipient struct {
	Address        string    // final recipient (rfc822;address)
	Action         string    // "failed" or "delayed" (RFC 3464 §2.3.3)
	Status         string    // RFC 3463 code, e.g. "5.1.1"
	RemoteMTA      string    // host name of the server that answered, "" if none (dns;host)
	Diagnostic     string    // the remote server's reply verbatim, e.g. "550 5.1.1 <x@y>: no such user" (smtp;...) or our own text
	LastAttempt    time.Time // zero if unknown
	WillRetryUntil time.Time // for "delayed"
}

// Message is everything a DSN reports about one original message.
type Message struct {
	ReportingMTA string    // our hostname
	To           string    // the original envelope sender: who gets the DSN
	OriginalID   string    // Repute's message id
	Arrival      time.Time // when Repute accepted the original
	Recipients   []Recipient
	Original     []byte // the original message, header and body
}

// Actions a Recipient may report (RFC 3464 §2.3.3). "delivered", "relayed" and "expanded"
// are success notifications, which Repute does not send.
const (
	Failed  = "failed"
	Delayed = "delayed"
)

// Subjects of the two kinds of notice.
const (
	SubjectFailed  = "Undelivered Mail Returned to Sender"
	SubjectDelayed = "Delayed Mail (still being retried)"
)

// Compose returns a complete RFC 5322 message: the DSN for m, dated now. A DSN that
// reports at least one failed recipient is a failure notice (subject SubjectFailed, the
// original returned whole when small), otherwise a delay notice.
func Compose(m Message, now time.Time) ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, err
	}
	failure := false
	for _, r := range m.Recipients {
		failure = failure || r.Action == Failed
	}
	orig := originalPart(m.Original, failure)
	textType, textCTE, text := textPart(humanText(m, failure, orig))
	status := deliveryStatus(m)

	seed := seedOf(m, now, orig.body)
	boundary := pickBoundary(seed, text, status, orig.body)
	msgID := fmt.Sprintf("<dsn.%s@%s>", idEncoding.EncodeToString(seed[16:31]), asciiDomain(m.ReportingMTA))

	var b bytes.Buffer
	b.Grow(len(text) + len(status) + len(orig.body) + 2048)
	subject := SubjectDelayed
	if failure {
		subject = SubjectFailed
	}
	writeField(&b, "From", "Mail Delivery System <MAILER-DAEMON@"+asciiDomain(m.ReportingMTA)+">")
	writeField(&b, "To", "<"+headerAddress(m.To)+">")
	writeField(&b, "Subject", subject)
	writeField(&b, "Date", now.Format(time.RFC1123Z))
	writeField(&b, "Message-ID", msgID)
	if ref := originalMessageID(orig.header); ref != "" {
		writeField(&b, "References", ref) // lets mail readers thread the notice with the original
	}
	writeField(&b, "Auto-Submitted", "auto-replied") // RFC 3834 §5
	writeField(&b, "MIME-Version", "1.0")
	writeField(&b, "Content-Type", `multipart/report; report-type=delivery-status; boundary="`+boundary+`"`)
	b.WriteString("\r\n")
	b.WriteString("This is a delivery status notification in MIME format (RFC 3464).\r\n\r\n")

	mw := multipart.NewWriter(&b)
	if err := mw.SetBoundary(boundary); err != nil {
		return nil, fmt.Errorf("dsn: boundary %q: %w", boundary, err)
	}
	parts := []struct {
		ctype, cte string
		body       []byte
	}{
		{textType, textCTE, text},
		{"message/delivery-status", "7bit", status},
		{orig.ctype, orig.cte, orig.body},
	}
	for _, p := range parts {
		if p.ctype == "" {
			continue
		}
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", p.ctype)
		h.Set("Content-Transfer-Encoding", p.cte)
		if p.ctype == "message/delivery-status" {
			h.Set("Content-Description", "Delivery report")
		}
		w, err := mw.CreatePart(h)
		if err != nil {
			return nil, fmt.Errorf("dsn: create part %s: %w", p.ctype, err)
		}
		if _, err := w.Write(p.body); err != nil {
			return nil, fmt.Errorf("dsn: write part %s: %w", p.ctype, err)
		}
	}
	if err := mw.Close(); err != nil {
		return nil, fmt.Errorf("dsn: close multipart: %w", err)
	}
	return b.Bytes(), nil
}

var statusRE = regexp.MustCompile(`^[245]\.[0-9]{1,3}\.[0-9]{1,3}$`)

func (m *Message) validate() error {
	to := strings.TrimSpace(m.To)
	if to == "" || to == "<>" {
		return errors.New("dsn: no recipient for the notice: never compose a DSN for a message from the null sender (RFC 5321 §4.5.5)")
	}
	if !strings.Contains(to, "@") || strings.ContainsAny(to, "\r\n<>") {
		return fmt.Errorf("dsn: invalid envelope sender %q", m.To)
	}
	if m.ReportingMTA == "" || strings.ContainsAny(m.ReportingMTA, " \t\r\n") {
		return fmt.Errorf("dsn: invalid reporting MTA %q", m.ReportingMTA)
	}
	if len(m.Recipients) == 0 {
		return errors.New("dsn: no recipients to report on (RFC 3464 §2.3 requires at least one)")
	}
	for i, r := range m.Recipients {
		if r.Address == "" || !strings.Contains(r.Address, "@") || strings.ContainsAny(r.Address, "\r\n") {
			return fmt.Errorf("dsn: recipient %d: invalid address %q", i, r.Address)
		}
		if r.Action != Failed && r.Action != Delayed {
			return fmt.Errorf("dsn: recipient %s: action %q is neither %q nor %q", r.Address, r.Action, Failed, Delayed)
		}
		if r.Status != "" && !statusRE.MatchString(r.Status) {
			return fmt.Errorf("dsn: recipient %s: status %q is not an RFC 3463 code", r.Address, r.Status)
		}
		if strings.ContainsAny(r.RemoteMTA, " \t\r\n;") {
			return fmt.Errorf("dsn: recipient %s: invalid remote MTA %q", r.Address, r.RemoteMTA)
		}
	}
	return nil
}

// status returns r's status code, or the generic one for its action when it has none
// (the field is required, RFC 3464 §2.3.4).
func (r Recipient) status() string {
	switch {
	case r.Status != "":
		return r.Status
	case r.Action == Delayed:
		return "4.0.0"
	default:
		return "5.0.0"
	}
}

// seedOf hashes the input (of the original, the part returned), so the boundary and
// Message-ID are stable for equal input and differ between notices.
func seedOf(m Message, now time.Time, returned []byte) [32]byte {
	h := sha256.New()
	str := func(s string) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	tm := func(t time.Time) { str(t.UTC().Format(time.RFC3339Nano)) }
	str(m.ReportingMTA)
	str(m.To)
	str(m.OriginalID)
	tm(m.Arrival)
	tm(now)
	for _, r := range m.Recipients {
		str(r.Address)
		str(r.Action)
		str(r.Status)
		str(r.RemoteMTA)
		str(r.Diagnostic)
		tm(r.LastAttempt)
		tm(r.WillRetryUntil)
	}
	str(string(returned))
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum
}

var idEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// pickBoundary derives the MIME boundary from seed. It starts with "=_", which cannot
// occur in quoted-printable or base64 text, and is re-derived in the unlikely case that it
// occurs in a part anyway (RFC 2046 §5.1.1).
func pickBoundary(seed [32]byte, parts ...[]byte) string {
	for i := 0; ; i++ {
		h := sha256.Sum256(append(seed[:], byte(i)))
		b := "=_repute-dsn-" + idEncoding.EncodeToString(h[:15])
		clash := false
		for _, p := range parts {
			clash = clash || bytes.Contains(p, []byte("--"+b))
		}
		if !clash {
			return b
		}
	}
}

// writeField writes one header field, folded at spaces so that lines stay under 78
// characters where possible and always under 998 (RFC 5322 §2.1.1, §2.2.3).
func writeField(b *bytes.Buffer, name, value string) {
	b.WriteString(fold(name+": "+value, 78))
	b.WriteString("\r\n")
}

// fold breaks s at spaces into lines of at most width characters, continuing lines with
// a tab. A word too long for the hard limit of 998 is split with a space, and runs of
// spaces beyond the width are shortened, which changes the text slightly but keeps the
// message valid.
func fold(s string, width int) string {
	const hard = 990
	var out strings.Builder
	lineLen, first := 0, true
	emit := func(w string) {
		switch {
		case w == "" && !first && lineLen+1 > width:
			// A run of spaces past the fold width: a fold cannot start with an empty
			// word (that would leave a whitespace-only line), so the extra space goes.
			return
		case first:
			first = false
		case lineLen+1+len(w) > width && lineLen > 1 && w != "":
			out.WriteString("\r\n\t")
			lineLen = 1
		default:
			out.WriteByte(' ')
			lineLen++
		}
		out.WriteString(w)
		lineLen += len(w)
	}
	for _, w := range strings.Split(s, " ") {
		for len(w) > hard {
			cut := hard
			for cut > 0 && !utf8.RuneStart(w[cut]) {
				cut--
			}
			emit(w[:cut])
			w = w[cut:]
		}
		emit(w)
	}
	return out.String()
}

// asciiDomain returns a host name in its ASCII (A-label) form (RFC 5890 §2.3.2.1).
func asciiDomain(d string) string {
	if isASCII(d) {
		return d
	}
	if a, err := idna.Lookup.ToASCII(d); err == nil {
		return a
	}
	return embedUnicode(d)
}

// splitAddress splits at the last '@' and converts the domain to ASCII.
func splitAddress(addr string) (local, domain string) {
	addr = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(addr), "<"), ">")
	at := strings.LastIndexByte(addr, '@')
	return addr[:at], asciiDomain(addr[at+1:])
}

// headerAddress is an address for the To field: ASCII domain, local part as given.
func headerAddress(addr string) string {
	local, domain := splitAddress(addr)
	return local + "@" + domain
}

// typedAddress formats an address for Final-Recipient: "rfc822; local@domain" when it
// is ASCII, else the "utf-8" type in the 7-bit utf-8-addr-xtext form of RFC 6533 §3,
// which encodes every character outside QCHAR as \x{HEX}.
func typedAddress(addr string) string {
	local, domain := splitAddress(addr)
	if isASCII(local) {
		return "rfc822; " + local + "@" + domain
	}
	var b strings.Builder
	for _, r := range local {
		if r > 0x20 && r < 0x7f && r != '\\' && r != '+' && r != '=' {
			b.WriteRune(r)
		} else {
			fmt.Fprintf(&b, `\x{%X}`, r)
		}
	}
	return "utf-8; " + b.String() + "@" + domain
}

// embedUnicode writes non-ASCII characters as \x{HEX} (the embedded-unicode-char of RFC
// 6533 §3), for 7-bit fields that quote foreign text.
func embedUnicode(s string) string {
	if isASCII(s) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if r < 0x80 {
			b.WriteRune(r)
		} else {
			fmt.Fprintf(&b, `\x{%X}`, r)
		}
	}
	return b.String()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// oneLine joins the lines of a multi-line SMTP reply with spaces, so that it fits one
// Diagnostic-Code field (RFC 3464 §2.3.6), and replaces other control characters with
// spaces.
func oneLine(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	lines := strings.FieldsFunc(s, func(r rune) bool { return r == '\r' || r == '\n' })
	for i, l := range lines {
		lines[i] = strings.Map(func(r rune) rune {
			if r < 0x20 || r == 0x7f {
				return ' '
			}
			return r
		}, strings.TrimSpace(l))
	}
	return strings.Join(lines, " ")
}

var smtpReplyRE = regexp.MustCompile(`^[2-5][0-9][0-9]([ -]|$)`)

// isSMTPReply reports whether a diagnostic is a server's reply rather than our own text.
func isSMTPReply(s string) bool { return smtpReplyRE.MatchString(strings.TrimSpace(s)) }

// statusDate is the date format of the delivery-status fields: RFC 5322 date-time without
// the optional day of week, the form most DSN parsers (mox's among them) accept.
const statusDate = "2 Jan 2006 15:04:05 -0700"

// deliveryStatus renders the message/delivery-status body (RFC 3464 §2.1): the
// per-message fields, then one block per recipient, blocks separated by empty lines.
func deliveryStatus(m Message) []byte {
	var b bytes.Buffer
	writeField(&b, "Reporting-MTA", "dns; "+asciiDomain(m.ReportingMTA))
	if m.OriginalID != "" {
		writeField(&b, "X-Repute-Msg-ID", embedUnicode(oneLine(m.OriginalID)))
	}
	if !m.Arrival.IsZero() {
		writeField(&b, "Arrival-Date", m.Arrival.Format(statusDate))
	}
	for _, r := range m.Recipients {
		b.WriteString("\r\n")
		writeField(&b, "Final-Recipient", typedAddress(r.Address))
		writeField(&b, "Action", r.Action)
		writeField(&b, "Status", r.status())
		if r.RemoteMTA != "" {
			writeField(&b, "Remote-MTA", "dns; "+asciiDomain(r.RemoteMTA))
		}
		if d := oneLine(r.Diagnostic); d != "" {
			// Postfix does the same for its own texts with "X-Postfix;" (RFC 3464 §2.3.6:
			// the diagnostic type names where the text comes from).
			typ := "X-Repute"
			if isSMTPReply(d) {
				typ = "smtp"
			}
			writeField(&b, "Diagnostic-Code", typ+"; "+embedUnicode(d))
		}
		if !r.LastAttempt.IsZero() {
			writeField(&b, "Last-Attempt-Date", r.LastAttempt.Format(statusDate))
		}
		if r.Action == Delayed && !r.WillRetryUntil.IsZero() {
			writeField(&b, "Will-Retry-Until", r.WillRetryUntil.Format(statusDate))
		}
	}
	return b.Bytes()
}

// attachment is the third part of the report; ctype "" means none.
type attachment struct {
	ctype, cte string
	body       []byte
	header     []byte // the original's header section, CRLF
	whole      bool   // body is the whole message, not only its header
	size       int    // size of the original
}

// originalPart chooses how to return the original (see the package comment). Only the
// part that is returned is copied, so a large original costs little.
func originalPart(orig []byte, failure bool) attachment {
	if len(bytes.TrimSpace(orig)) == 0 {
		return attachment{}
	}
	a := attachment{size: len(orig)}
	if failure && len(orig) <= MaxOriginal {
		full := canonicalLines(orig)
		a.header = headerSection(full)
		if len(full) <= MaxOriginal { // bare LFs that became CRLF may push it over
			a.whole = true
			if sevenBit(full) {
				a.ctype, a.cte, a.body = "message/rfc822", "7bit", full
			} else {
				a.ctype, a.cte, a.body = "message/global", "base64", base64Lines(full)
			}
			return a
		}
	} else {
		a.header = headerSection(canonicalLines(rawHeader(orig)))
	}
	if sevenBit(a.header) {
		a.ctype, a.cte, a.body = "text/rfc822-headers", "7bit", a.header
	} else {
		a.ctype, a.cte, a.body = "text/rfc822-headers; charset=utf-8", "quoted-printable", quotedPrintable(a.header)
	}
	return a
}

// rawHeader returns the header section of msg in whatever line endings it has (up to and
// including the empty line), at most about 2*MaxOriginal bytes of it.
func rawHeader(msg []byte) []byte {
	for i := 0; i < len(msg) && i < 2*MaxOriginal; {
		nl := bytes.IndexByte(msg[i:], '\n')
		if nl < 0 {
			break
		}
		line := bytes.TrimSuffix(msg[i:i+nl], []byte("\r"))
		i += nl + 1
		if len(line) == 0 {
			return msg[:i]
		}
	}
	return msg[:min(len(msg), 2*MaxOriginal)]
}

// canonicalLines turns every line ending (CRLF, bare LF, bare CR) into CRLF and ends the
// data with one.
func canonicalLines(data []byte) []byte {
	out := make([]byte, 0, len(data)+len(data)/50+2)
	for i := 0; i < len(data); i++ {
		switch c := data[i]; c {
		case '\r':
			if i+1 < len(data) && data[i+1] == '\n' {
				i++
			}
			out = append(out, '\r', '\n')
		case '\n':
			out = append(out, '\r', '\n')
		default:
			out = append(out, c)
		}
	}
	if !bytes.HasSuffix(out, []byte("\r\n")) {
		out = append(out, '\r', '\n')
	}
	return out
}

// headerSection returns the header of a message with its terminating empty line, cut at a
// line boundary if it alone exceeds MaxOriginal.
func headerSection(msg []byte) []byte {
	h := msg
	if bytes.HasPrefix(msg, []byte("\r\n")) {
		h = msg[:2]
	} else if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		h = msg[:i+4]
	}
	if len(h) > MaxOriginal {
		cut := bytes.LastIndex(h[:MaxOriginal], []byte("\r\n")) + 2
		if cut < 2 { // one enormous line: cut it anyway, the encoding copes with the length
			cut = MaxOriginal
		}
		h = append(h[:cut:cut], '\r', '\n')
	}
	return h
}

// sevenBit reports whether data may be sent as 7bit: ASCII without NUL, lines of at most
// 998 characters (RFC 2045 §2.7).
func sevenBit(data []byte) bool {
	lineLen := 0
	for _, c := range data {
		switch {
		case c == 0 || c >= 0x80:
			return false
		case c == '\n':
			lineLen = 0
		case c != '\r':
			lineLen++
			if lineLen > 998 {
				return false
			}
		}
	}
	return true
}

func base64Lines(data []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(data)
	var b bytes.Buffer
	for len(enc) > 76 { // RFC 2045 §6.8
		b.WriteString(enc[:76])
		b.WriteString("\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc)
	b.WriteString("\r\n")
	return b.Bytes()
}

func quotedPrintable(data []byte) []byte {
	var b bytes.Buffer
	w := quotedprintable.NewWriter(&b)
	w.Write(data) // writes to a bytes.Buffer cannot fail
	w.Close()
	return canonicalLines(b.Bytes())
}

// textPart encodes the human-readable text: 7bit when it is plain ASCII with short lines,
// else UTF-8 in quoted-printable.
func textPart(text string) (ctype, cte string, body []byte) {
	data := canonicalLines([]byte(text))
	if sevenBit(data) {
		return "text/plain; charset=us-ascii", "7bit", data
	}
	return "text/plain; charset=utf-8", "quoted-printable", quotedPrintable(data)
}

// originalMessageID returns the original's Message-ID if it is safe to repeat in a header.
func originalMessageID(h []byte) string {
	var id string
	for _, line := range strings.Split(unfold(string(h)), "\r\n") {
		name, value, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(strings.TrimSpace(name), "Message-ID") {
			id = strings.TrimSpace(value)
			break
		}
	}
	if !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, ">") || len(id) > 900 || !isASCII(id) ||
		strings.ContainsAny(id, " \t\r\n") {
		return ""
	}
	return id
}

func unfold(h string) string {
	h = strings.ReplaceAll(h, "\r\n ", " ")
	return strings.ReplaceAll(h, "\r\n\t", " ")
}
