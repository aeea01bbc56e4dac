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
// The MIME reader is shared with ParseARF (arf.go).

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"html"
	"io"
	"mime"
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

// ---- MIME reading ----

// dsnField is one header field: its name as written and its value unfolded and trimmed.
type dsnField struct{ name, value string }

// dsnHeader is a header section in order.
type dsnHeader []dsnField

// get returns the value of the first field called name (case-insensitive), or "".
func (h dsnHeader) get(name string) string {
	for _, f := range h {
		if strings.EqualFold(f.name, name) {
			return f.value
		}
	}
	return ""
}

// has reports whether h has a field called name.
func (h dsnHeader) has(name string) bool {
	for _, f := range h {
		if strings.EqualFold(f.name, name) {
			return true
		}
	}
	return false
}

// all returns the values of every field called name.
func (h dsnHeader) all(name string) []string {
	var out []string
	for _, f := range h {
		if strings.EqualFold(f.name, name) {
			out = append(out, f.value)
		}
	}
	return out
}

// dsnCutLine splits b after its first line, dropping the CRLF or LF.
func dsnCutLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return bytes.TrimSuffix(b, []byte("\r")), nil
	}
	return bytes.TrimSuffix(b[:i], []byte("\r")), b[i+1:]
}

// dsnParseHeader reads the header section at the start of data (RFC 5322 §2.2) and
// returns it with the rest of data after the empty line that ends it. It never fails.
// A leading mbox "From " line is skipped. An invalid line ends the section and starts the
// body (a section of only invalid lines is no header at all, and data is returned whole),
// unless lenient is set: then it continues the previous field. The delivery-status and
// feedback-report bodies are read leniently, because some MTAs forget to indent folded
// Diagnostic-Code lines. A line of only white space counts as empty.
func dsnParseHeader(data []byte, lenient bool) (dsnHeader, []byte) {
	var (
		h    dsnHeader
		name string
		val  []byte
		open bool
	)
	flush := func() {
		if open && len(h) < dsnMaxFields {
			h = append(h, dsnField{name, strings.TrimSpace(string(val))})
		}
		open, val = false, val[:0]
	}
	rest := data
	for first := true; len(rest) > 0; first = false {
		line, next := dsnCutLine(rest)
		switch {
		case len(bytes.TrimSpace(line)) == 0:
			flush()
			return h, next
		case line[0] == ' ' || line[0] == '\t':
			if open {
				val = dsnAppendCapped(val, line)
			} else if !lenient {
				return nil, data
			}
		default:
			if n, v, ok := dsnSplitField(line); ok {
				flush()
				name, open = n, true
				val = dsnAppendCapped(val, v)
			} else if first && bytes.HasPrefix(line, []byte("From ")) {
				// mbox separator
			} else if lenient {
				if open {
					val = dsnAppendCapped(dsnAppendCapped(val, []byte{' '}), line)
				}
			} else {
				flush()
				if len(h) == 0 {
					return nil, data
				}
				return h, rest
			}
		}
		rest = next
	}
	flush()
	return h, nil
}

// dsnSplitField splits "Name: value" where Name is printable ASCII without spaces.
func dsnSplitField(line []byte) (string, []byte, bool) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return "", nil, false
	}
	n := bytes.TrimRight(line[:i], " \t")
	if len(n) == 0 {
		return "", nil, false
	}
	for _, c := range n {
		if c <= ' ' || c >= 0x7f {
			return "", nil, false
		}
	}
	return string(n), line[i+1:], true
}

// dsnAppendCapped appends src to dst up to dsnMaxField bytes in all.
func dsnAppendCapped(dst, src []byte) []byte {
	room := dsnMaxField - len(dst)
	if room <= 0 {
		return dst
	}
	return append(dst, src[:min(len(src), room)]...)
}

// dsnPart is one MIME entity, read tolerantly.
type dsnPart struct {
	header    dsnHeader
	mediaType string            // lower case "type/subtype"; "text/plain" when absent or unusable
	params    map[string]string // Content-Type parameters, names in lower case
	body      []byte            // the body with its transfer encoding undone
	parts     []*dsnPart        // the parts of a multipart
	enclosed  dsnHeader         // the header of an enclosed message (see dsnEnclosing)
	encloses  bool              // the part is an enclosed message or header
}

// dsnEnclosing lists the media types that carry a returned message or its header
// (RFC 2046 §5.2.1, RFC 6522 §4, RFC 6532 §3.7, RFC 6533 §6.3). Their content is not
// searched for report parts: a returned message may itself be a bounce or a report.
var dsnEnclosing = map[string]bool{
	"message/rfc822":         true,
	"message/global":         true,
	"text/rfc822-headers":    true,
	"message/rfc822-headers": true,
	"message/global-headers": true,
}

// dsnParser reads one message and counts the parts and decoded bytes it allowed.
type dsnParser struct {
	parts   int
	decoded int
}

// parse reads the entity in data at nesting depth depth.
func (p *dsnParser) parse(data []byte, depth int) *dsnPart {
	p.parts++
	h, body := dsnParseHeader(data, false)
	part := &dsnPart{header: h}
	part.mediaType, part.params = dsnContentType(h.get("Content-Type"))
	part.body = p.decode(body, strings.ToLower(strings.TrimSpace(h.get("Content-Transfer-Encoding"))))
	switch {
	case strings.HasPrefix(part.mediaType, "multipart/"):
		b := part.params["boundary"]
		if depth >= dsnMaxDepth || b == "" || len(b) > 200 {
			break
		}
		for _, raw := range dsnSplitMultipart(part.body, b) {
			if p.parts >= dsnMaxParts {
				break
			}
			part.parts = append(part.parts, p.parse(raw, depth+1))
		}
	case dsnEnclosing[part.mediaType]:
		part.encloses = true
		part.enclosed, _ = dsnParseHeader(part.body, false)
	}
	return part
}

// decode undoes a base64 or quoted-printable transfer encoding, as long as the message's
// budget of decoded bytes lasts; past it, and for any other encoding, body is returned as is.
func (p *dsnParser) decode(body []byte, cte string) []byte {
	if cte != "base64" && cte != "quoted-printable" {
		return body
	}
	if p.decoded+len(body) > dsnMaxDecoded {
		return body
	}
	p.decoded += len(body)
	if cte == "base64" {
		return dsnDecodeBase64(body)
	}
	return dsnDecodeQP(body)
}

// walk calls fn for p and its descendants in document order until fn returns false. It
// does not enter enclosed messages, which are not parsed beyond their header.
func (p *dsnPart) walk(fn func(*dsnPart) bool) bool {
	if !fn(p) {
		return false
	}
	for _, c := range p.parts {
		if !c.walk(fn) {
			return false
		}
	}
	return true
}

// find returns the first part for which match is true, or nil.
func (p *dsnPart) find(match func(*dsnPart) bool) *dsnPart {
	var found *dsnPart
	p.walk(func(q *dsnPart) bool {
		if match(q) {
			found = q
			return false
		}
		return true
	})
	return found
}

// dsnContentType parses a Content-Type value, falling back to a forgiving split at
// semicolons when mime.ParseMediaType refuses it. A missing or unusable type is
// text/plain (RFC 2045 §5.2).
func dsnContentType(v string) (string, map[string]string) {
	if v == "" {
		return "text/plain", nil
	}
	if len(v) <= 8<<10 {
		if mt, params, err := mime.ParseMediaType(v); err == nil && strings.Contains(mt, "/") {
			return strings.ToLower(mt), params
		}
	}
	mt, rest, _ := strings.Cut(v, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	if !strings.Contains(mt, "/") || strings.ContainsAny(mt, " \t\"") {
		mt = "text/plain"
	}
	params := map[string]string{}
	for _, kv := range strings.Split(rest, ";") {
		k, val, ok := strings.Cut(kv, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		if !ok || k == "" {
			continue
		}
		if _, dup := params[k]; !dup {
			params[k] = strings.Trim(strings.TrimSpace(val), `"`)
		}
	}
	return mt, params
}

// dsnSplitMultipart returns the bodies of the parts of a multipart body (RFC 2046
// §5.1.1). A missing closing delimiter is forgiven: the last part then runs to the end,
// which is how a truncated bounce still yields its delivery-status part. Every delimiter
// is searched for once, so the work is linear in the body.
func dsnSplitMultipart(body []byte, boundary string) [][]byte {
	delim := []byte("--" + boundary)
	var parts [][]byte
	start := -1 // where the current part's content starts; -1 in the preamble
	for pos := 0; pos < len(body); {
		i := bytes.Index(body[pos:], delim)
		if i < 0 {
			break
		}
		i += pos
		pos = i + len(delim)
		if i > 0 && body[i-1] != '\n' {
			continue
		}
		after := body[pos:]
		closing := bytes.HasPrefix(after, []byte("--"))
		line, rest := dsnCutLine(after)
		if !closing && len(bytes.TrimSpace(line)) != 0 {
			continue // a longer boundary, or text that starts like this one
		}
		if start >= 0 {
			end := i
			// The line break before a delimiter belongs to the delimiter.
			if end > start && body[end-1] == '\n' {
				end--
				if end > start && body[end-1] == '\r' {
					end--
				}
			}
			parts = append(parts, body[start:end])
			if len(parts) >= dsnMaxParts {
				return parts
			}
		}
		if closing {
			return parts
		}
		start = len(body) - len(rest)
		pos = start
	}
	if start >= 0 && start < len(body) {
		parts = append(parts, body[start:])
	}
	return parts
}

// dsnDecodeBase64 decodes base64, skipping anything outside the alphabet and a dangling
// last character, so a damaged part still yields most of its content.
func dsnDecodeBase64(b []byte) []byte {
	clean := make([]byte, 0, len(b))
	for _, c := range b {
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/' {
			clean = append(clean, c)
		}
	}
	if len(clean)%4 == 1 {
		clean = clean[:len(clean)-1]
	}
	out := make([]byte, base64.RawStdEncoding.DecodedLen(len(clean)))
	n, _ := base64.RawStdEncoding.Decode(out, clean)
	return out[:n]
}

// dsnDecodeQP decodes quoted-printable (RFC 2045 §6.7), keeping an "=" that starts no
// valid escape instead of failing as mime/quotedprintable does.
func dsnDecodeQP(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != '=' {
			out = append(out, c)
			continue
		}
		switch {
		case i+1 < len(b) && b[i+1] == '\n':
			i++
		case i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n':
			i += 2
		case i+2 < len(b) && dsnUnhex(b[i+1]) >= 0 && dsnUnhex(b[i+2]) >= 0:
			out = append(out, byte(dsnUnhex(b[i+1])<<4|dsnUnhex(b[i+2])))
			i += 2
		default:
			out = append(out, c)
		}
	}
	return out
}

func dsnUnhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// dsnToUTF8 returns text in UTF-8. Only the Latin-1 family is converted: bounce texts are
// almost always ASCII or UTF-8, and the parsers look for ASCII markers anyway; anything
// else keeps its bytes, with invalid sequences replaced.
func dsnToUTF8(b []byte, charset string) string {
	switch strings.ToLower(strings.Trim(charset, `" `)) {
	case "iso-8859-1", "iso8859-1", "latin1", "latin-1", "windows-1252", "cp1252", "iso-8859-15":
		if !utf8.Valid(b) {
			rs := make([]rune, len(b))
			for i, c := range b {
				rs[i] = rune(c)
			}
			return string(rs)
		}
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// dsnDecodeWords decodes RFC 2047 encoded words in a header value, leaving it as it is
// when a charset is unknown.
func dsnDecodeWords(v string) string {
	d := mime.WordDecoder{CharsetReader: func(charset string, r io.Reader) (io.Reader, error) {
		b, err := io.ReadAll(io.LimitReader(r, dsnMaxField))
		if err != nil {
			return nil, err
		}
		return strings.NewReader(dsnToUTF8(b, charset)), nil
	}}
	if s, err := d.DecodeHeader(v); err == nil {
		return s
	}
	return v
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

// ---- the human-readable text ----

// dsnNotice returns the notice text of a bounce, cut before the copy of the original
// (returned as quoted), and the format its shape reveals ("" if none). Up to dsnMaxTexts
// text parts are tried in order; HTML is reduced to its text.
func dsnNotice(root *dsnPart) (notice, quoted, format string) {
	var texts []string
	if strings.HasPrefix(root.mediaType, "multipart/") && len(root.parts) == 0 {
		// No usable boundary: the raw body is the best text there is.
		texts = append(texts, dsnToUTF8(root.body, ""))
	}
	root.walk(func(p *dsnPart) bool {
		disp, _, _ := strings.Cut(p.header.get("Content-Disposition"), ";")
		if strings.EqualFold(strings.TrimSpace(disp), "attachment") {
			return true
		}
		switch p.mediaType {
		case "text/plain":
			texts = append(texts, dsnToUTF8(p.body, p.params["charset"]))
		case "text/html":
			texts = append(texts, dsnHTMLText(dsnToUTF8(p.body, p.params["charset"])))
		}
		return len(texts) < dsnMaxTexts
	})
	for i, t := range texts {
		t = strings.ReplaceAll(strings.ReplaceAll(t, "\r\n", "\n"), "\r", "\n")
		n, q := dsnSplitCopy(t)
		f := dsnTextFormat(n)
		if i == 0 || f != "" {
			notice, quoted, format = n, q, f
		}
		if f != "" {
			break
		}
	}
	return notice, quoted, format
}

// dsnCopyMarkers introduce the copy of the original in a notice's text, lower case.
var dsnCopyMarkers = []string{
	"this is a copy of the message",              // Exim
	"below this line is a copy of the message",   // qmail, Yahoo
	"original message headers",                   // Exchange
	"original message follows",                   // sendmail
	"unsent message follows",                     // sendmail
	"message header follows",                     // sendmail
	"----- original message -----",               // Gmail
	"headers of the original message",            // various
	"a copy of the original message is attached", // various
}

// dsnSplitCopy cuts text at the first line that introduces a copy of the original.
func dsnSplitCopy(text string) (notice, quoted string) {
	for pos := 0; pos < len(text); {
		end := strings.IndexByte(text[pos:], '\n')
		if end < 0 {
			end = len(text)
		} else {
			end += pos
		}
		if line := text[pos:end]; len(line) < 200 && dsnContainsAny(strings.ToLower(line), dsnCopyMarkers) {
			return text[:pos], text[min(end+1, len(text)):]
		}
		pos = end + 1
	}
	return text, ""
}

// dsnTextFormat names the MTA whose notice text this is, by the fixed phrases each one
// uses, or returns "" for a text in no known shape.
func dsnTextFormat(notice string) string {
	low := strings.ToLower(notice)
	switch {
	case strings.Contains(low, "qmail-send program"):
		return "qmail"
	case strings.Contains(low, "we were unable to deliver your message to the following address"):
		return "yahoo"
	case strings.Contains(low, "created automatically by mail delivery software"):
		return "exim"
	case strings.Contains(low, "this is the mail system at host"):
		return "postfix"
	case strings.Contains(low, "the following addresses had permanent fatal errors"),
		strings.Contains(low, "the following addresses had transient non-fatal errors"):
		return "sendmail"
	case strings.Contains(low, "delivery has failed to these recipients"),
		strings.Contains(low, "diagnostic information for administrators"),
		strings.Contains(low, "the following recipient(s) cannot be reached"):
		return "exchange"
	case strings.Contains(low, "wasn't delivered to"),
		strings.Contains(low, "temporary problem delivering your message"),
		strings.Contains(low, "delivery to the following recipient"),
		strings.Contains(low, "** address not found **"),
		strings.Contains(low, "** message blocked **"),
		strings.Contains(low, "** message not delivered"),
		strings.Contains(low, "** delivery incomplete **"):
		return "gmail"
	}
	return ""
}

// dsnHTMLText reduces HTML to text: tags go, block elements end lines, style and script
// contents are dropped and entities decoded; line breaks count only inside <pre>. Enough
// for reading Exchange notices.
func dsnHTMLText(s string) string {
	var b strings.Builder
	skip, pre := "", false
	for i := 0; i < len(s); {
		c := s[i]
		if c != '<' {
			if skip == "" {
				if !pre && (c == '\n' || c == '\r') {
					c = ' '
				}
				b.WriteByte(c)
			}
			i++
			continue
		}
		j := strings.IndexByte(s[i:], '>')
		if j < 0 {
			break
		}
		tag := strings.ToLower(s[i+1 : i+j])
		i += j + 1
		closing := strings.HasPrefix(tag, "/")
		name := strings.TrimLeft(tag, "/")
		if k := strings.IndexAny(name, " \t\r\n/"); k >= 0 {
			name = name[:k]
		}
		if skip != "" {
			if closing && name == skip {
				skip = ""
			}
			continue
		}
		switch name {
		case "style", "script", "title":
			if !closing {
				skip = name
			}
		case "pre":
			pre = !closing
			b.WriteByte('\n')
		case "br", "p", "div", "tr", "li", "table", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote":
			b.WriteByte('\n')
		case "td", "th":
			b.WriteByte(' ')
		}
	}
	return strings.ReplaceAll(html.UnescapeString(b.String()), "\u00a0", " ")
}

// dsnEnrich fills in a diagnostic the delivery-status part lacks from the text.
func dsnEnrich(rcpts, fromText []BouncedRecipient) {
	for i := range rcpts {
		if rcpts[i].Diagnostic != "" {
			continue
		}
		for _, t := range fromText {
			if strings.EqualFold(t.Recipient, rcpts[i].Recipient) && t.Diagnostic != "" {
				rcpts[i].Diagnostic = t.Diagnostic
				if rcpts[i].Status == "" {
					rcpts[i].Status = t.Status
				}
				if rcpts[i].RemoteMTA == "" {
					rcpts[i].RemoteMTA = t.RemoteMTA
				}
				break
			}
		}
	}
}

// dsnFailedRecipients is the last resort for a bounce in no known shape: the addresses in
// X-Failed-Recipients (Exim, Gmail), each with the first line of the notice that carries
// an SMTP reply code as its diagnostic.
func dsnFailedRecipients(h dsnHeader, notice string) []BouncedRecipient {
	var diag string
	for _, l := range strings.Split(notice, "\n") {
		if m := dsnReplyInTextRE.FindStringIndex(l); m != nil {
			diag = l[m[0]:]
			break
		}
	}
	var out []BouncedRecipient
	for _, v := range h.all("X-Failed-Recipients") {
		for _, a := range strings.Split(v, ",") {
			if a = dsnCleanAddress(a); strings.Contains(a, "@") {
				out = dsnAdd(out, dsnRecipient(a, "failed", diag, ""))
			}
		}
	}
	return out
}

var dsnReplyInTextRE = regexp.MustCompile(`\b[45][0-9][0-9][ -][245]\.[0-9]{1,3}\.[0-9]{1,3}\b`)

// ---- non-standard notices ----

// dsnParseText reads the recipients out of a notice in the given format, and the name of
// the reporting host where the text gives it.
func dsnParseText(format, notice string) ([]BouncedRecipient, string) {
	lines := strings.Split(notice, "\n")
	switch format {
	case "qmail", "yahoo", "postfix":
		return dsnParseAngleBlocks(notice, lines), dsnReportingHost(notice)
	case "exim":
		return dsnParseExim(lines), ""
	case "sendmail":
		return dsnParseSendmail(lines), ""
	case "exchange":
		return dsnParseExchange(lines)
	case "gmail":
		return dsnParseGmail(notice, lines), ""
	}
	return nil, ""
}

var dsnReportingHostRE = regexp.MustCompile(`(?i)(?:qmail-send program at|this is the mail system at host) ([A-Za-z0-9.-]+)`)

// dsnReportingHost finds the host qmail and Postfix name in their first sentence.
func dsnReportingHost(notice string) string {
	if m := dsnReportingHostRE.FindStringSubmatch(notice[:min(len(notice), 4096)]); m != nil {
		return strings.TrimSuffix(m[1], ".")
	}
	return ""
}

var dsnAngleRE = regexp.MustCompile(`^<([^<>\s]*@[^<>\s]*)>(?:\s*\([^)]*\))?\s*:\s*(.*)$`)

// dsnParseAngleBlocks reads the notices of qmail, Yahoo (a qmail descendant) and
// Postfix's human part: one block per recipient, starting "<address>:" at the start of a
// line, then its text until an empty line.
//
//	<x@y>:
//	1.2.3.4 does not like recipient.
//	Remote host said: 550 5.1.1 <x@y>: no such user
//	Giving up on 1.2.3.4.
//
//	<x@y>: host mx.y[1.2.3.4] said: 550 5.1.1 <x@y>: no such user (in reply to
//	    RCPT TO command)
func dsnParseAngleBlocks(notice string, lines []string) []BouncedRecipient {
	action := "failed"
	if strings.Contains(notice, "THIS IS A WARNING ONLY") { // Postfix delay notice
		action = "delayed"
	}
	var out []BouncedRecipient
	var addr string
	var block []string
	flush := func() {
		if addr != "" {
			diag, remote := dsnAngleDiagnostic(block)
			out = dsnAdd(out, dsnRecipient(addr, action, diag, remote))
		}
		addr, block = "", block[:0]
	}
	for _, l := range lines {
		if len(out) >= dsnMaxRecipients {
			break
		}
		if strings.HasPrefix(l, "<") {
			if m := dsnAngleRE.FindStringSubmatch(l); m != nil {
				flush()
				addr = m[1]
				if m[2] != "" {
					block = append(block, strings.TrimSpace(m[2]))
				}
				continue
			}
		}
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "---") {
			flush()
		} else if addr != "" && len(block) < 200 {
			block = append(block, t)
		}
	}
	flush()
	return out
}

var (
	dsnPostfixSaidRE = regexp.MustCompile(`(?i)\bhost (\S+?)\[[^\]]*\] said:\s*`)
	dsnInReplyToRE   = regexp.MustCompile(`(?i)\s*\(in reply to [^()]*\)\s*$`)
	dsnQmailHostRE   = regexp.MustCompile(`^(?:Giving up on|Connected to) ([0-9A-Fa-f.:]+[0-9A-Fa-f])|^([0-9A-Fa-f.:]+[0-9A-Fa-f]) does not like`)
)

// dsnAngleDiagnostic picks the remote server's reply out of a block: after qmail's
// "Remote host said:" or Postfix's "host NAME[IP] said:", else the whole block.
func dsnAngleDiagnostic(block []string) (diag, remote string) {
	for _, l := range block {
		if m := dsnQmailHostRE.FindStringSubmatch(l); m != nil {
			remote = m[1] + m[2]
			break
		}
	}
	for i, l := range block {
		rest, ok := dsnCutPrefixFold(l, "Remote host said:")
		if !ok {
			continue
		}
		d := []string{rest}
		for _, n := range block[i+1:] {
			if dsnHasPrefixFold(n, "Giving up") || dsnHasPrefixFold(n, "I'm not going to try again") {
				break
			}
			d = append(d, n)
		}
		return strings.Join(d, " "), remote
	}
	joined := strings.Join(block, " ")
	if m := dsnPostfixSaidRE.FindStringSubmatchIndex(joined); m != nil {
		remote = joined[m[2]:m[3]]
		joined = dsnInReplyToRE.ReplaceAllString(joined[m[1]:], "")
	}
	return joined, remote
}

func dsnHasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

func dsnCutPrefixFold(s, prefix string) (string, bool) {
	if !dsnHasPrefixFold(s, prefix) {
		return s, false
	}
	return strings.TrimSpace(s[len(prefix):]), true
}

// dsnFirstAddress returns the first word of line if it is an address ("x@y", "<x@y>",
// "x@y:"), else "".
func dsnFirstAddress(line string) string {
	f := strings.Fields(line)
	if len(f) == 0 {
		return ""
	}
	a := dsnCleanAddress(f[0])
	if !strings.Contains(a, "@") || strings.ContainsAny(a, "<>()\"") {
		return ""
	}
	return a
}

var dsnEximHostRE = regexp.MustCompile(`^host\s+(\S+)\s+\[[^\]]*\]:?\s*`)

// dsnParseExim reads Exim's notice: after "The following address(es) failed:" (or, in a
// delay warning, "have not yet been delivered:"), each address indented by two spaces,
// followed by its explanation indented further:
//
//	x@y
//	  host mx.y [1.2.3.4]
//	  SMTP error from remote mail server after RCPT TO:<x@y>:
//	  550 5.1.1 User unknown
func dsnParseExim(lines []string) []BouncedRecipient {
	action, i := "", 0
	for ; i < len(lines) && action == ""; i++ {
		l := strings.ToLower(strings.TrimSpace(lines[i]))
		switch {
		case !strings.HasSuffix(l, ":"):
		case strings.Contains(l, "not yet been delivered"), strings.Contains(l, "delayed"):
			action = "delayed"
		case strings.Contains(l, "failed") && (strings.Contains(l, "address") || strings.Contains(l, "recipient")):
			action = "failed"
		}
	}
	var out []BouncedRecipient
	var addr string
	var details []string
	flush := func() {
		if addr != "" {
			diag, remote := dsnEximDiagnostic(details)
			out = dsnAdd(out, dsnRecipient(addr, action, diag, remote))
		}
		addr, details = "", details[:0]
	}
	for ; i < len(lines) && action != "" && len(out) < dsnMaxRecipients; i++ {
		l := lines[i]
		t := strings.TrimSpace(l)
		switch {
		case t == "":
		case l[0] != ' ' && l[0] != '\t':
			i = len(lines) // the list ends at the first unindented line
		case dsnIndent(l) < 4 && dsnFirstAddress(t) != "":
			flush()
			addr = dsnFirstAddress(t)
			if _, rest, ok := strings.Cut(t, ":"); ok && strings.TrimSpace(rest) != "" {
				details = append(details, strings.TrimSpace(rest))
			}
		case addr != "" && len(details) < 200:
			details = append(details, t)
		}
	}
	flush()
	return out
}

// dsnIndent returns the width of the white space that starts l, a tab counting as eight.
func dsnIndent(l string) int {
	n := 0
	for _, c := range []byte(l) {
		switch c {
		case ' ':
			n++
		case '\t':
			n += 8
		default:
			return n
		}
	}
	return n
}

// dsnEximDiagnostic returns the reply after "SMTP error from remote mail server after
// ...:" if there is one, else the explanation lines; and the host Exim names.
func dsnEximDiagnostic(details []string) (diag, remote string) {
	var keep []string
	for _, d := range details {
		if m := dsnEximHostRE.FindStringSubmatch(d); m != nil {
			remote = m[1]
			if d = d[len(m[0]):]; d == "" {
				continue
			}
		}
		if rest, ok := dsnCutPrefixFold(d, "Delay reason:"); ok {
			d = rest
		}
		switch {
		case dsnHasPrefixFold(d, "SMTP error from remote mail"):
			keep = keep[:0] // the reply follows; what came before was context
		case strings.HasPrefix(d, "(generated from"), strings.HasPrefix(d, "(ultimately generated from"):
		default:
			keep = append(keep, d)
		}
	}
	return strings.Join(keep, " "), remote
}

var dsnTalkingToRE = regexp.MustCompile(`(?i)while talking to ([A-Za-z0-9.-]+?)\.?:`)

// dsnParseSendmail reads sendmail's notice: under "----- The following addresses had
// permanent fatal errors -----" (or "transient non-fatal errors" in a warning), each
// address on a line of its own with "(reason: ...)" indented below it. The transcript
// names the remote host and, if a reason is missing, the reply.
func dsnParseSendmail(lines []string) []BouncedRecipient {
	var out []BouncedRecipient
	action, addr, reason := "", "", ""
	var hosts []string
	firstReply := ""
	flush := func() {
		if addr != "" {
			out = dsnAdd(out, dsnRecipient(addr, action, reason, ""))
		}
		addr, reason = "", ""
	}
	for _, l := range lines {
		if len(out) >= dsnMaxRecipients {
			break
		}
		t := strings.TrimSpace(l)
		low := strings.ToLower(t)
		switch {
		case strings.HasPrefix(t, "-----"):
			flush()
			switch {
			case strings.Contains(low, "permanent fatal errors"):
				action = "failed"
			case strings.Contains(low, "transient non-fatal errors"):
				action = "delayed"
			default:
				action = ""
			}
		case action == "":
			if m := dsnTalkingToRE.FindStringSubmatch(t); m != nil && len(hosts) < 100 {
				hosts = append(hosts, m[1])
			}
			if r, ok := strings.CutPrefix(t, "<<< "); ok && firstReply == "" && (strings.HasPrefix(r, "5") || strings.HasPrefix(r, "4")) {
				firstReply = r
			}
		case t == "":
			flush()
		case l[0] != ' ' && l[0] != '\t' && dsnFirstAddress(t) != "":
			flush()
			addr = dsnFirstAddress(t)
			if r, ok := dsnReason(t); ok {
				reason = r
			}
		case addr != "":
			if r, ok := dsnReason(t); ok {
				reason = r
			}
		}
	}
	flush()
	for i := range out {
		if out[i].Diagnostic == "" && firstReply != "" {
			out[i].Diagnostic = dsnCleanDiagnostic(firstReply)
			out[i].Status = dsnFindStatus(out[i].Diagnostic)
		}
		if len(hosts) == 1 {
			out[i].RemoteMTA = hosts[0]
		}
	}
	return out
}

// dsnReason returns the inside of sendmail's "(reason: ...)".
func dsnReason(t string) (string, bool) {
	i := strings.Index(strings.ToLower(t), "(reason:")
	if i < 0 {
		return "", false
	}
	r := t[i+len("(reason:"):]
	if j := strings.LastIndexByte(r, ')'); j >= 0 {
		r = r[:j]
	}
	return strings.TrimSpace(r), true
}

var dsnLineAddressRE = regexp.MustCompile(`^(?:[^:<>()]{0,100}[(<])?(?:mailto:)?([^\s<>()@]+@[^\s<>()@]+?)[)>]?\.?$`)

// dsnLineAddress returns the address when a line holds only an address, in forms such as
// "x@y", "<x@y>", "Name (x@y)" or "Name <x@y>"; else "".
func dsnLineAddress(t string) string {
	if len(t) > 400 || !strings.Contains(t, "@") {
		return ""
	}
	if m := dsnLineAddressRE.FindStringSubmatch(t); m != nil {
		return dsnCleanAddress(m[1])
	}
	return ""
}

var dsnExchangeOldRE = regexp.MustCompile(`<([^\s<>#]+)\s+#([245]\.[0-9]{1,3}\.[0-9]{1,3})\s*(?:smtp;\s*)?([^>]*)>`)

// dsnParseExchange reads a Microsoft Exchange or Office 365 notice. The section for
// administrators is preferred, since it quotes the reply verbatim:
//
//	Generating server: AM6PR01MB1234.eurprd01.prod.outlook.com
//
//	x@y
//	Remote Server returned '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup'
//
// Failing that, the section for users ("Delivery has failed to these recipients or
// groups:" or, from older servers, "The following recipient(s) cannot be reached:"),
// whose text explains the failure in words.
func dsnParseExchange(lines []string) ([]BouncedRecipient, string) {
	var mta string
	for _, l := range lines {
		if rest, ok := dsnCutPrefixFold(strings.TrimSpace(l), "Generating server:"); ok {
			mta = dsnCap(rest)
			break
		}
	}
	var out []BouncedRecipient
	if i := dsnFindLine(lines, "diagnostic information for administrators"); i >= 0 {
		out = dsnExchangeAdmin(lines[i+1:])
	}
	if len(out) == 0 {
		if i := dsnFindLine(lines, "delivery has failed to these recipients"); i >= 0 {
			out = dsnExchangeUser(lines[i+1:])
		} else if i := dsnFindLine(lines, "the following recipient(s) cannot be reached"); i >= 0 {
			out = dsnExchangeUser(lines[i+1:])
		}
	}
	return out, mta
}

// dsnFindLine returns the index of the first line containing sub (lower case), or -1.
func dsnFindLine(lines []string, sub string) int {
	for i, l := range lines {
		if len(l) < 300 && strings.Contains(strings.ToLower(l), sub) {
			return i
		}
	}
	return -1
}

// dsnExchangeAdmin reads the "Diagnostic information for administrators" section.
func dsnExchangeAdmin(lines []string) []BouncedRecipient {
	var out []BouncedRecipient
	addr, diag := "", ""
	flush := func() {
		if addr != "" {
			out = dsnAdd(out, dsnRecipient(addr, "failed", diag, ""))
		}
		addr, diag = "", ""
	}
	for _, l := range lines {
		if len(out) >= dsnMaxRecipients {
			break
		}
		t := strings.TrimSpace(l)
		low := strings.ToLower(t)
		switch {
		case strings.HasPrefix(low, "original message headers"):
			flush()
			return out
		case t == "" || strings.HasPrefix(low, "generating server:"):
		case dsnLineAddress(t) != "" || strings.Contains(t, "@") && strings.Contains(low, " on ") && dsnFirstAddress(t) != "" && !strings.Contains(t, "'"):
			flush()
			addr = dsnLineAddress(t)
			if addr == "" {
				addr = dsnFirstAddress(t)
			}
		case addr != "" && strings.HasPrefix(low, "remote server returned"):
			if i, j := strings.IndexByte(t, '\''), strings.LastIndexByte(t, '\''); i >= 0 && j > i {
				diag = t[i+1 : j]
			} else {
				diag = t[len("remote server returned"):]
			}
		case addr != "" && strings.HasPrefix(t, "#") && diag == "":
			diag = strings.TrimRight(strings.TrimLeft(t, "#< "), "#> ")
		}
	}
	flush()
	return out
}

// dsnExchangeUser reads the section for users: an address line (possibly "Name
// (x@y)"), then its explanation until an empty line.
func dsnExchangeUser(lines []string) []BouncedRecipient {
	var out []BouncedRecipient
	addr, remote := "", ""
	var text []string
	flush := func() {
		if addr != "" {
			diag := strings.Join(text, " ")
			if m := dsnExchangeOldRE.FindStringSubmatch(diag); m != nil {
				remote, diag = m[1], m[2]+" "+m[3]
				if r := strings.TrimSpace(m[3]); dsnFindStatus(r) != "" {
					diag = r
				}
			}
			out = dsnAdd(out, dsnRecipient(addr, "failed", diag, remote))
		}
		addr, remote, text = "", "", text[:0]
	}
	for _, l := range lines {
		if len(out) >= dsnMaxRecipients {
			break
		}
		t := strings.TrimSpace(l)
		low := strings.ToLower(t)
		switch {
		case strings.HasPrefix(low, "diagnostic information for administrators"),
			strings.HasPrefix(low, "original message headers"), strings.HasPrefix(t, "____"):
			flush()
			return out
		case t == "":
			if len(text) > 0 {
				flush()
			}
		case addr == "" || len(text) == 0 && dsnLineAddress(t) != "":
			if a := dsnLineAddress(t); a != "" {
				flush()
				addr = a
			} else if a := dsnFirstAddress(t); a != "" && strings.Contains(low, " on ") {
				flush()
				addr = a // older Exchange: "x@y on 1/2/2024 10:00 AM"
			}
		case len(text) < 50:
			text = append(text, t)
		}
	}
	flush()
	return out
}

var (
	dsnGmailRcptRE = regexp.MustCompile(`(?i)(?:delivered to|delivering your message to|your message to)\s+<?([^\s<>@]+@[^\s<>@]+?)>?(?:[.,]?\s|[.,]?$)`)
	dsnGmailReply  = []string{"the response from the remote server was:", "the response was:", "the error that the other server returned was:"}
)

// dsnParseGmail reads Gmail's notice: "Your message wasn't delivered to x@y because ..."
// (or "There was a temporary problem delivering your message to x@y", a delay), followed
// by "The response from the remote server was:" and the reply. Older notices list the
// address under "Delivery to the following recipient failed permanently:".
func dsnParseGmail(notice string, lines []string) []BouncedRecipient {
	low := strings.ToLower(notice)
	action := "failed"
	if strings.Contains(low, "temporary problem") || strings.Contains(low, "has been delayed") || strings.Contains(low, "will retry") {
		action = "delayed"
	}
	var addrs []string
	var sentence, reply string
	replied := false
	for i, l := range lines {
		if len(addrs) >= dsnMaxRecipients {
			break
		}
		t := strings.TrimSpace(l)
		lowT := strings.ToLower(t)
		if m := dsnGmailRcptRE.FindStringSubmatch(t); m != nil && len(addrs) < dsnMaxRecipients {
			addrs = append(addrs, m[1])
			if sentence == "" {
				sentence = t
			}
		}
		if strings.HasPrefix(lowT, "delivery to the following recipient") {
			for _, n := range lines[i+1:] {
				if n = strings.TrimSpace(n); n != "" {
					if a := dsnLineAddress(n); a != "" {
						addrs = append(addrs, a)
					}
					break
				}
			}
		}
		if !replied && dsnContainsAny(lowT, dsnGmailReply) {
			replied = true
			var r []string
			for _, n := range lines[i+1:] {
				n = strings.TrimSpace(n)
				if n == "" && len(r) > 0 || len(r) >= 50 {
					break
				}
				if n != "" {
					r = append(r, n)
				}
			}
			reply = strings.Join(r, " ")
		}
	}
	if reply == "" {
		reply = sentence
	}
	var out []BouncedRecipient
	for _, a := range addrs {
		out = dsnAdd(out, dsnRecipient(a, action, reply, ""))
	}
	return out
}
