package classify

// This file reads returned bounce messages: RFC 3464 delivery status notifications
// (carried in the multipart/report container of RFC 6522, or its internationalised form,
// RFC 6533) and the older free-text notices that some MTAs still send instead. The result
// is a BounceReport, which the classifier turns into a category the same way it judges a
// live SMTP reply.
//
// Bounces come from strangers and are often broken: cut off, mis-declared, missing their
// closing boundary. The parser therefore never trusts the structure it is told about. It
// carries its own small MIME reader (dsnParser) that tolerates what net/mail and
// mime/multipart reject, caps every size the input controls (see the dsnMax constants), and
// returns what it could read rather than an error whenever that is still useful.
//
// The code is in three files. This one holds the API (ParseDSN, BounceReport and the
// limits), the reading of the delivery-status part and the helpers that clean the values
// taken from it. dsnmime.go holds the MIME reader, which is shared with ParseARF
// (arf.go); dsntext.go holds the parsers of the free-text notices (Postfix, Exim, qmail,
// Sendmail, Yahoo, Exchange, Gmail).

import (
	"errors"
	"fmt"
	"net/mail"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ErrNotBounce is returned (wrapped) by ParseDSN for a message that is not a bounce:
// ordinary mail, an auto-reply such as a vacation notice, a feedback report, or input
// without a header section at all.
var ErrNotBounce = errors.New("classify: not a bounce message")

// BouncedRecipient is one recipient a returned bounce message reports on.
type BouncedRecipient struct {
	Recipient  string // the failed address (Final-Recipient, or Original-Recipient, or from the text), without "rfc822;"
	Action     string // "failed", "delayed", "delivered", "relayed", "expanded" (RFC 3464 §2.3.3); "failed" for non-standard permanent bounces
	Status     string // enhanced status code (RFC 3463) such as "5.1.1" if known, else ""
	Diagnostic string // the remote server's reply (Diagnostic-Code without "smtp;"), on one line, or the human text for non-standard formats
	RemoteMTA  string // Remote-MTA without "dns;", if any
}

// BounceReport is what a returned bounce says.
type BounceReport struct {
	// Format names the shape the bounce was read in: "rfc3464" for a standard DSN from an
	// MTA not recognised more closely (Repute's own notices among them), or the sender's
	// style: "exchange", "gmail", "yahoo", "postfix", "exim", "qmail", "sendmail";
	// "unknown" for a notice from a mailer daemon in no shape we know.
	Format             string
	ReportingMTA       string // Reporting-MTA without "dns;", or the host the text names
	OriginalEnvelopeID string // Original-Envelope-Id (RFC 3464 §2.2.1) if present
	OriginalMessageID  string // Message-ID of the returned original, with its angle brackets
	OriginalFrom       string // address in the From (else Return-Path) of the returned original
	Recipients         []BouncedRecipient
}

// Limits on what ParseDSN and ParseARF read. Bounces and reports come from strangers, so
// every size the input controls is capped; beyond a cap the excess is dropped and the
// parsers return what they have rather than fail.
const (
	dsnMaxInput      = 10 << 20 // bytes of a message considered; the rest is ignored
	dsnMaxRecipients = 1000     // recipients per bounce; values of a repeated ARF field
	dsnMaxField      = 64 << 10 // bytes per header field, diagnostic or address
	dsnMaxDepth      = 10       // MIME nesting levels entered
	dsnMaxFields     = 10000    // fields kept per header section
	dsnMaxParts      = 10000    // MIME parts per message
	dsnMaxDecoded    = 32 << 20 // bytes of base64 or quoted-printable decoded per message
	dsnMaxTexts      = 4        // human-readable parts examined
)

// ParseDSN reads a bounce message (the full RFC 5322 message). A message is a bounce if
// it holds a message/delivery-status or message/global-delivery-status part (RFC 3464
// §2.1, RFC 6533 §6), or if it comes from a mailer daemon (null Return-Path, MAILER-DAEMON,
// postmaster, X-Failed-Recipients) and its text has the shape of a known non-standard
// notice or its subject says it is one. Auto-replies are not bounces.
//
// When a delivery-status part names recipients, they are taken from it (the human text
// may fill in a missing diagnostic); otherwise they come from the text. Every error wraps
// ErrNotBounce. A report may come back with no recipients when the message is clearly a
// bounce but too damaged to say about whom; its OriginalMessageID may still identify the
// message.
//
// Only the first 10 MiB of msg are read, at most 1000 recipients are returned, and each
// field is cut at 64 KiB.
func ParseDSN(msg []byte) (*BounceReport, error) {
	if len(msg) > dsnMaxInput {
		msg = msg[:dsnMaxInput]
	}
	var p dsnParser
	root := p.parse(msg, 0)
	if len(root.header) == 0 {
		return nil, fmt.Errorf("%w: no header section", ErrNotBounce)
	}
	rep := &BounceReport{}
	var hints dsnStatusHints
	statusPart := root.find(func(p *dsnPart) bool {
		return p.mediaType == "message/delivery-status" || p.mediaType == "message/global-delivery-status"
	})
	if statusPart != nil {
		rep.Recipients, hints = dsnParseStatus(statusPart.body, rep)
	}

	notice, quoted, format := dsnNotice(root)
	textRcpts, textMTA := dsnParseText(format, notice)

	if statusPart == nil {
		if err := dsnCheckBounce(root.header, format); err != nil {
			return nil, err
		}
		if format == "" {
			format = "unknown"
		}
		rep.Recipients = textRcpts
	} else {
		if format == "" {
			format = dsnFormatHint(root.header, rep.ReportingMTA, hints)
		}
		if len(rep.Recipients) == 0 {
			rep.Recipients = textRcpts
		} else {
			dsnEnrich(rep.Recipients, textRcpts)
		}
	}
	rep.Format = format
	if len(rep.Recipients) == 0 {
		rep.Recipients = dsnFailedRecipients(root.header, notice)
	}
	if rep.ReportingMTA == "" {
		rep.ReportingMTA = textMTA
	}
	if rep.ReportingMTA == "" {
		rep.ReportingMTA = dsnDomain(dsnAddress(root.header.get("From")))
	}
	dsnOriginal(rep, root, quoted, hints.originalMessageID)
	return rep, nil
}

// dsnCheckBounce decides whether a message without a delivery-status part is a bounce:
// it must come from a mailer daemon, and either its text has a known shape (format) or its
// subject says it is a bounce while nothing marks it as an auto-reply.
func dsnCheckBounce(h dsnHeader, format string) error {
	if !dsnDaemonSender(h) {
		return fmt.Errorf("%w: no delivery-status part and not from a mailer daemon", ErrNotBounce)
	}
	if format != "" {
		return nil
	}
	subject := strings.ToLower(dsnDecodeWords(h.get("Subject")))
	if dsnAutoReply(h, subject) {
		return fmt.Errorf("%w: auto-reply", ErrNotBounce)
	}
	if !dsnContainsAny(subject, dsnBounceSubjects) {
		return fmt.Errorf("%w: no delivery-status part and no known bounce text", ErrNotBounce)
	}
	return nil
}

// ---- the delivery-status part (RFC 3464 §2.2, §2.3) ----

// dsnStatusHints are per-message fields that help beyond the BounceReport fields.
type dsnStatusHints struct {
	originalMessageID string // Gmail's X-Original-Message-ID
	postfix           bool   // X-Postfix-* fields
}

// dsnStatusGroup collects the per-recipient fields of one recipient.
type dsnStatusGroup struct {
	final, original, action, status, remote, diag string
	seen                                          uint8
}

// dsnRcptFields maps per-recipient field names to a bit each; a field seen twice starts
// a new recipient, which copes with groups that lack their separating empty line.
var dsnRcptFields = map[string]uint8{
	"final-recipient": 1, "original-recipient": 2, "action": 4, "status": 8,
	"remote-mta": 16, "diagnostic-code": 32,
}

// dsnParseStatus reads a delivery-status body: the per-message fields into rep, one
// recipient per field group. Field groups are told apart by their fields, not only by the
// empty lines between them, so a missing or extra empty line does no harm.
func dsnParseStatus(body []byte, rep *BounceReport) ([]BouncedRecipient, dsnStatusHints) {
	var (
		rcpts []BouncedRecipient
		hints dsnStatusHints
		cur   *dsnStatusGroup
	)
	flush := func() {
		if cur != nil {
			if r, ok := cur.recipient(); ok {
				rcpts = dsnAdd(rcpts, r)
			}
		}
		cur = nil
	}
	for data := body; len(data) > 0 && len(rcpts) < dsnMaxRecipients; {
		h, rest := dsnParseHeader(data, true)
		for _, f := range h {
			name := strings.ToLower(f.name)
			switch name {
			case "reporting-mta":
				if rep.ReportingMTA == "" {
					rep.ReportingMTA = dsnHostValue(f.value)
				}
			case "original-envelope-id":
				rep.OriginalEnvelopeID = dsnCap(f.value)
			case "x-original-message-id":
				hints.originalMessageID = dsnMessageID(f.value)
			case "x-postfix-queue-id", "x-postfix-sender":
				hints.postfix = true
			default:
				bit, ok := dsnRcptFields[name]
				if !ok {
					continue
				}
				if cur == nil || cur.seen&bit != 0 {
					flush()
					cur = &dsnStatusGroup{}
				}
				cur.seen |= bit
				cur.set(name, f.value)
			}
		}
		flush()
		if len(rest) >= len(data) { // cannot happen, but progress must be certain
			_, rest = dsnCutLine(data)
		}
		data = rest
	}
	return rcpts, hints
}

func (g *dsnStatusGroup) set(name, v string) {
	switch name {
	case "final-recipient":
		g.final = dsnTypedAddress(v)
	case "original-recipient":
		g.original = dsnTypedAddress(v)
	case "action":
		g.action = strings.ToLower(strings.TrimSpace(v))
	case "status":
		g.status = v
	case "remote-mta":
		g.remote = dsnHostValue(v)
	case "diagnostic-code":
		g.diag = dsnDecodeUnicode(dsnTypedValue(v))
	}
}

// recipient turns the group into a BouncedRecipient; a group without an address is
// dropped. A missing or unknown Action is inferred from the status class.
func (g *dsnStatusGroup) recipient() (BouncedRecipient, bool) {
	addr := g.final
	if addr == "" {
		addr = g.original
	}
	if addr == "" {
		return BouncedRecipient{}, false
	}
	diag := dsnCleanDiagnostic(g.diag)
	status := dsnFindStatus(g.status)
	if status == "" {
		status = dsnFindStatus(diag)
	}
	action, _, _ := strings.Cut(g.action, " ")
	switch action {
	case "failed", "delayed", "delivered", "relayed", "expanded":
	default:
		action = dsnActionFor(status)
	}
	return BouncedRecipient{Recipient: addr, Action: action, Status: status, Diagnostic: diag, RemoteMTA: g.remote}, true
}

// dsnActionFor infers an Action from an enhanced status code's class (RFC 3463 §3.1).
func dsnActionFor(status string) string {
	switch {
	case strings.HasPrefix(status, "4."):
		return "delayed"
	case strings.HasPrefix(status, "2."):
		return "delivered"
	}
	return "failed"
}

// dsnTypedValue strips the type from "type; value" (address-type, mta-name-type,
// diagnostic-type of RFC 3464 §2.1.2), when what precedes the semicolon is a type token.
func dsnTypedValue(v string) string {
	v = strings.TrimSpace(v)
	t, rest, ok := strings.Cut(v, ";")
	if !ok || len(t) > 40 || t == "" {
		return v
	}
	for _, c := range []byte(strings.TrimSpace(t)) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return v
		}
	}
	return strings.TrimSpace(rest)
}

// dsnTypedAddress reads a Final-Recipient or Original-Recipient value. The "utf-8" type
// writes non-ASCII characters as \x{HEX} (RFC 6533 §3); they are decoded.
func dsnTypedAddress(v string) string {
	return dsnCleanAddress(dsnDecodeUnicode(dsnTypedValue(v)))
}

// dsnHostValue reads an MTA name ("dns; mx.example.org. (1.2.3.4)"): its first word,
// without the type, comments or a trailing dot.
func dsnHostValue(v string) string {
	f := strings.Fields(dsnTypedValue(v))
	if len(f) == 0 {
		return ""
	}
	return dsnCap(strings.TrimSuffix(strings.Trim(f[0], "[]"), "."))
}

// dsnDecodeUnicode decodes the \x{HEX} escapes of RFC 6533 §3, which Repute's own notices
// also use in Diagnostic-Code fields.
func dsnDecodeUnicode(s string) string {
	if !strings.Contains(s, `\x{`) {
		return s
	}
	var b strings.Builder
	for {
		i := strings.Index(s, `\x{`)
		if i < 0 {
			break
		}
		hex := s[i+3 : min(len(s), i+3+9)]
		j := strings.IndexByte(hex, '}')
		v, err := strconv.ParseUint(hex[:max(j, 0)], 16, 32)
		if j <= 0 || err != nil || !utf8.ValidRune(rune(v)) {
			b.WriteString(s[:i+3])
			s = s[i+3:]
			continue
		}
		b.WriteString(s[:i])
		b.WriteRune(rune(v))
		s = s[i+4+j:]
	}
	b.WriteString(s)
	return b.String()
}

// ---- cleaning values ----

var dsnReplyCodeRE = regexp.MustCompile(`^([2-5][0-9][0-9])([ -])(?:([245]\.[0-9]{1,3}\.[0-9]{1,3}) )?`)

// dsnCleanDiagnostic puts a reply on one line: white space runs become one space, and
// the code prefixes repeated on each line of a multi-line SMTP reply (RFC 5321 §4.2.1:
// "550-5.1.1 ... 550 5.1.1 ...") are removed after the first, so the text reads as one
// sentence for the rules that match it.
func dsnCleanDiagnostic(s string) string {
	s = dsnCollapse(s)
	m := dsnReplyCodeRE.FindStringSubmatch(s)
	if m == nil {
		return s
	}
	code, sep, enh := m[1], m[2], m[3]
	rest := s[len(m[0]):]
	switch {
	case enh != "":
		rest = strings.ReplaceAll(rest, " "+code+"-"+enh+" ", " ")
		rest = strings.ReplaceAll(rest, " "+code+" "+enh+" ", " ")
	case sep == "-":
		rest = strings.ReplaceAll(rest, " "+code+"-", " ")
		rest = strings.ReplaceAll(rest, " "+code+" ", " ")
	}
	head := code + " "
	if enh != "" {
		head += enh + " "
	}
	return strings.TrimSpace(head + rest)
}

// dsnCollapse trims s, turns runs of white space into one space, makes it valid UTF-8 and
// cuts it at dsnMaxField bytes.
func dsnCollapse(s string) string {
	if len(s) > 4*dsnMaxField {
		s = s[:4*dsnMaxField]
	}
	return dsnCap(strings.Join(strings.Fields(strings.ToValidUTF8(s, "\uFFFD")), " "))
}

// dsnCap cuts s at dsnMaxField bytes, on a character boundary.
func dsnCap(s string) string {
	if len(s) <= dsnMaxField {
		return s
	}
	cut := dsnMaxField
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

var dsnStatusRE = regexp.MustCompile(`[245]\.[0-9]{1,3}\.[0-9]{1,3}`)

// dsnFindStatus returns the first enhanced status code (RFC 3463) in s that is not part of
// a longer dotted number such as an IP address, or "".
func dsnFindStatus(s string) string {
	for _, m := range dsnStatusRE.FindAllStringIndex(s, 32) {
		i, j := m[0], m[1]
		if i > 0 && (dsnIsDigit(s[i-1]) || s[i-1] == '.') {
			continue
		}
		if j < len(s) && (dsnIsDigit(s[j]) || s[j] == '.' && j+1 < len(s) && dsnIsDigit(s[j+1])) {
			continue
		}
		return s[i:j]
	}
	return ""
}

func dsnIsDigit(c byte) bool { return '0' <= c && c <= '9' }

// dsnCleanAddress strips angle brackets, quotes, "mailto:" and trailing punctuation from
// an address taken from a field or a text.
func dsnCleanAddress(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '<'); i >= 0 {
		if j := strings.IndexByte(s[i:], '>'); j > 0 {
			s = s[i+1 : i+j]
		}
	}
	s = strings.Trim(s, " \t<>\"'`,;:.()[]")
	if len(s) >= 7 && strings.EqualFold(s[:7], "mailto:") {
		s = s[7:]
	}
	return dsnCap(strings.ToValidUTF8(s, "\uFFFD"))
}

// dsnAddress returns the address of an address field (From, Return-Path, To), or "".
func dsnAddress(v string) string {
	v = strings.TrimSpace(v)
	if v == "" || v == "<>" {
		return ""
	}
	if len(v) <= 4<<10 {
		if a, err := mail.ParseAddress(v); err == nil {
			return a.Address
		}
	}
	if i := strings.IndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 0 {
			if a := dsnCleanAddress(v[i : i+j+1]); strings.Contains(a, "@") {
				return a
			}
		}
	}
	for _, w := range strings.Fields(v) {
		if strings.Contains(w, "@") {
			return dsnCleanAddress(w)
		}
	}
	return ""
}

// dsnDomain returns the part of an address after its last "@".
func dsnDomain(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return ""
}

// dsnMessageID returns the first <id> of a Message-ID value, or the trimmed value when it
// has no angle brackets.
func dsnMessageID(v string) string {
	v = strings.TrimSpace(v)
	if i := strings.IndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 0 {
			return dsnCap(v[i : i+j+1])
		}
	}
	if f := strings.Fields(v); len(f) > 0 {
		return dsnCap(f[0])
	}
	return ""
}

// dsnAdd appends r unless the list is full or r has no address.
func dsnAdd(list []BouncedRecipient, r BouncedRecipient) []BouncedRecipient {
	if len(list) >= dsnMaxRecipients || r.Recipient == "" {
		return list
	}
	return append(list, r)
}

// dsnRecipient builds a recipient read from a text.
func dsnRecipient(addr, action, diag, remote string) BouncedRecipient {
	diag = dsnCleanDiagnostic(diag)
	return BouncedRecipient{
		Recipient:  dsnCleanAddress(addr),
		Action:     action,
		Status:     dsnFindStatus(diag),
		Diagnostic: diag,
		RemoteMTA:  dsnCap(strings.TrimSuffix(remote, ".")),
	}
}

// ---- who sent it ----

// dsnDaemonLocals are local parts (prefixes) of the addresses bounces come from.
var dsnDaemonLocals = []string{"mailer-daemon", "mailerdaemon", "mailer_daemon", "mail-daemon", "postmaster", "mdaemon", "microsoftexchange"}

// dsnDaemonSender reports whether a message comes from a mailer daemon: a null reverse
// path (RFC 5321 §4.5.5) as recorded in Return-Path, Exim's and Gmail's
// X-Failed-Recipients, or a From address or name that MTAs use for notices.
func dsnDaemonSender(h dsnHeader) bool {
	if strings.TrimSpace(h.get("Return-Path")) == "<>" || h.has("X-Failed-Recipients") {
		return true
	}
	from := h.get("From")
	if strings.TrimSpace(from) == "" {
		return true // every ordinary message has a From; some MTAs' notices do not
	}
	local, _, _ := strings.Cut(strings.ToLower(dsnAddress(from)), "@")
	for _, d := range dsnDaemonLocals {
		if strings.HasPrefix(local, d) {
			return true
		}
	}
	low := strings.ToLower(dsnDecodeWords(from))
	return dsnContainsAny(low, []string{"mail delivery", "mailer-daemon", "mail administrator", "postmaster"})
}

// dsnBounceSubjects are subject words of bounces, lower case.
var dsnBounceSubjects = []string{
	"undeliver", "undelivered", "returned mail", "returned to sender", "delivery status notification",
	"delivery failure", "delivery failed", "failure notice", "non-delivery", "nondeliverable",
	"not delivered", "delivery problem", "could not send message", "delayed mail", "delivery delayed",
	"delivery notification", "unzustellbar", "nicht zustellbar", "non remis", "no entregado",
}

// dsnAutoReply reports whether a message marks itself as an auto-reply (RFC 3834 §5 and
// the common vendor headers) or its subject says so.
func dsnAutoReply(h dsnHeader, subject string) bool {
	if h.has("X-Autoreply") || h.has("X-Autorespond") ||
		strings.EqualFold(strings.TrimSpace(h.get("Precedence")), "auto_reply") ||
		strings.HasPrefix(strings.ToLower(strings.TrimSpace(h.get("Auto-Submitted"))), "auto-replied") {
		return true
	}
	return dsnContainsAny(subject, []string{"out of office", "out of the office", "automatic reply", "auto-reply",
		"autoreply", "auto reply", "abwesenheit", "vacation", "réponse automatique", "away from"})
}

func dsnContainsAny(s string, subs []string) bool {
	for _, sub := range subs {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// dsnFormatHint names the sender of a standard DSN whose text did not give it away.
func dsnFormatHint(h dsnHeader, reportingMTA string, hints dsnStatusHints) string {
	from := strings.ToLower(dsnDomain(dsnAddress(h.get("From"))))
	mta := strings.ToLower(reportingMTA)
	switch {
	case hints.postfix:
		return "postfix"
	case from == "googlemail.com" || from == "google.com" || mta == "googlemail.com" || mta == "google.com":
		return "gmail"
	case strings.HasSuffix(mta, ".outlook.com") || strings.HasSuffix(from, ".onmicrosoft.com") || h.has("X-MS-Exchange-Message-Is-Ndr"):
		return "exchange"
	case strings.HasSuffix(from, "yahoo.com") || strings.HasSuffix(mta, ".yahoo.com"):
		return "yahoo"
	}
	return "rfc3464"
}

// ---- the original message ----

// dsnOriginal fills in what rep says about the returned original: from an enclosed
// message or header part, else from the header quoted in the text, else from the
// delivery-status hints or, last, from a single-id References field (which Repute's own
// notices and several MTAs set to the original's Message-ID).
func dsnOriginal(rep *BounceReport, root *dsnPart, quoted, hintID string) {
	var h dsnHeader
	if p := root.find(func(p *dsnPart) bool { return p.encloses && len(p.enclosed) > 0 }); p != nil {
		h = p.enclosed
	} else if quoted != "" {
		h, _ = dsnParseHeader([]byte(strings.TrimLeft(quoted, " \t\n")), false)
	}
	rep.OriginalMessageID = dsnMessageID(h.get("Message-ID"))
	rep.OriginalFrom = dsnAddress(h.get("From"))
	if rep.OriginalFrom == "" {
		rep.OriginalFrom = dsnAddress(h.get("Return-Path"))
	}
	if rep.OriginalMessageID == "" {
		rep.OriginalMessageID = hintID
	}
	if refs := strings.Fields(root.header.get("References")); rep.OriginalMessageID == "" && len(refs) == 1 {
		rep.OriginalMessageID = dsnMessageID(refs[0])
	}
}
