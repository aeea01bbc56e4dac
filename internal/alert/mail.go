package alert

import (
	"bytes"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits on the text taken from a Notice, so that no input makes an unbounded message.
const (
	maxReply = 2048 // the reply, quoted in the body
	maxField = 256  // advice, URL, fallback
	maxWord  = 64   // provider, source IP, category: they also appear in the subject
	maxLine  = 900  // a body line is split here (RFC 5322 §2.1.1: 998 octets at most)
)

// Compose returns the mail to postmaster@hostname for x, dated now: a plain-text
// RFC 5322 message, 7-bit (quoted-printable when the text holds UTF-8), every line ending
// in CRLF and at most 998 octets long. It is a pure function of its arguments.
func Compose(hostname string, x Notice, now time.Time) ([]byte, error) {
	if err := validHostname(hostname); err != nil {
		return nil, err
	}
	x = clean(x)
	subject, err := subjectOf(hostname, x)
	if err != nil {
		return nil, err
	}
	cte, text := textPart(bodyOf(hostname, x))

	var b bytes.Buffer
	b.Grow(len(text) + 1024)
	writeField(&b, "From", `"Repute" <postmaster@`+hostname+">")
	writeField(&b, "To", "<postmaster@"+hostname+">")
	writeField(&b, "Subject", mime.QEncoding.Encode("utf-8", subject))
	writeField(&b, "Date", now.Format(time.RFC1123Z))
	writeField(&b, "Message-ID", "<alert."+messageID(hostname, x, now)+"@"+hostname+">")
	writeField(&b, "Auto-Submitted", "auto-generated") // RFC 3834 §5: never auto-reply to it
	writeField(&b, "X-Repute-Alert", x.Kind)           // for the admin's filters
	writeField(&b, "MIME-Version", "1.0")
	writeField(&b, "Content-Type", "text/plain; charset=utf-8")
	writeField(&b, "Content-Transfer-Encoding", cte)
	b.WriteString("\r\n")
	b.Write(text)
	return b.Bytes(), nil
}

// validHostname accepts a domain name in ASCII (an IDN in its A-label form).
func validHostname(h string) error {
	if h == "" || len(h) > 253 {
		return fmt.Errorf("alert: invalid hostname %q", h)
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("alert: invalid hostname %q", h)
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("alert: invalid hostname %q", h)
			}
		}
	}
	return nil
}

// clean bounds every text of x and removes control characters from all but the reply,
// whose line breaks are kept (quote handles them).
func clean(x Notice) Notice {
	x.Provider = oneLine(x.Provider, maxWord)
	x.SourceIP = oneLine(x.SourceIP, maxWord)
	x.Category = oneLine(x.Category, maxWord)
	x.Advice = oneLine(x.Advice, maxField*4)
	x.URL = oneLine(x.URL, maxField)
	x.Fallback = oneLine(x.Fallback, maxField)
	x.Check = oneLine(x.Check, maxWord)
	x.Target = oneLine(x.Target, maxField)
	x.Reply = truncate(strings.ToValidUTF8(x.Reply, "\uFFFD"), maxReply)
	return x
}

// oneLine returns s as valid UTF-8 without control characters (CR and LF included: they
// become spaces), trimmed and cut to at most max bytes.
func oneLine(s string, max int) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || 0x80 <= r && r < 0xa0 || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	return strings.TrimSpace(truncate(s, max))
}

// truncate cuts s to at most max bytes at a rune boundary, marking the cut.
func truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	const mark = " [...]"
	cut := max - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// subjectOf says in one line what happened, e.g. "[repute mx.example.com] Sending to
// microsoft paused for 203.0.113.5 (ip_reputation)".
func subjectOf(hostname string, x Notice) (string, error) {
	var what, why string
	switch x.Kind {
	case CheckFailed, CheckFixed:
		s := "[repute " + hostname + "] Check " + x.Check + " failed for " + x.Target
		if x.Kind == CheckFixed {
			s = "[repute " + hostname + "] Check " + x.Check + " passes again for " + x.Target
		}
		return strings.ReplaceAll(s, "=?", "= ?"), nil
	case Paused:
		what = "paused"
	case ProbeFailed:
		what, why = "still paused", ": probe refused"
	case Resumed:
		what = "resumed"
	default:
		return "", fmt.Errorf("alert: unknown kind %q", x.Kind)
	}
	s := "[repute " + hostname + "] Sending to " + orUnknown(x.Provider) + " " + what + " for " + ipOrDefault(x.SourceIP) + why
	if x.Category != "" && x.Kind != Resumed {
		s += " (" + x.Category + ")"
	}
	// Text that looks like an RFC 2047 encoded-word would be decoded by mail readers,
	// its CR LF included: break it.
	return strings.ReplaceAll(s, "=?", "= ?"), nil
}

func orUnknown(provider string) string {
	if provider == "" {
		return "an unknown provider"
	}
	return provider
}

func ipOrDefault(ip string) string {
	if ip == "" {
		return "the default address"
	}
	return ip
}

// bodyOf is the text of the mail: what happened, why, what Repute does meanwhile, what to
// do. Lines end in LF here; textPart makes them CRLF.
func bodyOf(hostname string, x Notice) string {
	if x.Kind == CheckFailed || x.Kind == CheckFixed {
		return checkBody(hostname, x)
	}
	var b strings.Builder
	prov, from := orUnknown(x.Provider), "from "+ipOrDefault(x.SourceIP)
	if x.SourceIP == "" {
		from = "from this server's default address"
	}
	when := stamp(x.Time)

	switch x.Kind {
	case Paused:
		wrap(&b, "Repute has paused sending to "+prov+" "+from+".")
		b.WriteString("\n")
		heading(&b, "What happened")
		wrap(&b, "At "+when+", "+prov+" refused our mail with a reply that Repute reads as "+category(x)+
			". Sending more now would only make our reputation there worse.")
	case ProbeFailed:
		wrap(&b, "Sending to "+prov+" "+from+" stays paused: the probe message was refused again.")
		b.WriteString("\n")
		heading(&b, "What happened")
		wrap(&b, "At "+when+", Repute tried one message to "+prov+" to see whether the block had ended. "+
			"It was refused with a reply that Repute reads as "+category(x)+".")
	case Resumed:
		wrap(&b, "Repute has resumed sending to "+prov+" "+from+".")
		b.WriteString("\n")
		heading(&b, "What happened")
		wrap(&b, "At "+when+", the pause ended: a probe message was accepted, or the pause was ended by hand.")
	}
	if x.Reply != "" {
		b.WriteString("\nThe reply, as received:\n\n")
		quote(&b, x.Reply)
	}
	b.WriteString("\n")

	heading(&b, "What Repute is doing meanwhile")
	waiting, are, stay := "The mail for "+prov, "is", "stays"
	if x.Queued > 0 {
		waiting, are, stay = "The "+strconv.Itoa(x.Queued)+" messages waiting for "+prov, "are", "stay"
	}
	if x.Kind == Resumed {
		wrap(&b, waiting+" "+are+" being sent again, at a gentle pace at first. Nothing was lost.")
	} else {
		wrap(&b, waiting+" "+stay+" in the queue: nothing is lost or bounced because of the pause.")
		b.WriteString("\n")
		if x.Fallback != "" {
			wrap(&b, "Meanwhile the fallback relay "+x.Fallback+" carries the mail for "+prov+".")
		} else {
			wrap(&b, "No fallback relay is configured, so that mail waits.")
		}
		if !x.Until.IsZero() {
			b.WriteString("\n")
			wrap(&b, "At "+stamp(x.Until)+inHowLong(x.Time, x.Until)+", Repute will try one message (a probe). "+
				"If it is accepted, sending resumes by itself and you get another notice.")
		}
	}
	b.WriteString("\n")

	heading(&b, "What to do")
	switch {
	case x.Advice != "":
		wrap(&b, x.Advice)
	case x.Kind == Resumed:
		wrap(&b, "Nothing, unless it happens again soon: then look for the cause before resuming.")
	default:
		wrap(&b, "Find out why "+prov+" refuses our mail before sending more.")
	}
	if x.URL != "" {
		b.WriteString("\n")
		line(&b, "  "+x.URL)
	}
	b.WriteString("\nThe state of every provider and address:\n\n    repute provider status\n")
	if x.Kind != Resumed && x.Provider != "" {
		b.WriteString("\nTo resume sending now (for example once the delisting is confirmed):\n\n")
		cmd := "    repute provider resume " + shellWord(x.Provider)
		if x.SourceIP != "" {
			cmd += " --ip " + shellWord(x.SourceIP)
		}
		line(&b, cmd)
	}
	b.WriteString("\n-- \nRepute on " + hostname + "\n")
	return b.String()
}

// checkBody is the text of a check notice: which check, what it found, what to do.
func checkBody(hostname string, x Notice) string {
	var b strings.Builder
	if x.Kind == CheckFixed {
		wrap(&b, "The check "+x.Check+" of "+x.Target+" passes again (at "+stamp(x.Time)+").")
	} else {
		wrap(&b, "The check "+x.Check+" of "+x.Target+" started failing at "+stamp(x.Time)+
			". Until it is fixed, mail from this server is more likely to be refused or sent to spam.")
	}
	if x.Reply != "" {
		b.WriteString("\nWhat the check found:\n\n")
		quote(&b, x.Reply)
	}
	if x.Kind == CheckFailed {
		b.WriteString("\n")
		heading(&b, "What to do")
		if x.Advice != "" {
			wrap(&b, x.Advice)
		} else {
			wrap(&b, "Run repute check for the details.")
		}
		if x.URL != "" {
			b.WriteString("\n")
			line(&b, "  "+x.URL)
		}
	}
	b.WriteString("\nEvery check, with what to fix:\n\n    repute check\n")
	b.WriteString("\n-- \nRepute on " + hostname + "\n")
	return b.String()
}

func category(x Notice) string {
	if x.Category == "" {
		return "a block"
	}
	return x.Category
}

func heading(b *strings.Builder, h string) {
	b.WriteString(h + "\n")
	b.WriteString(strings.Repeat("-", len(h)) + "\n")
}

// stamp formats t for a reader anywhere: in UTC, unambiguous.
func stamp(t time.Time) string {
	return t.UTC().Format("Mon 2 Jan 2006 15:04:05 UTC")
}

// inHowLong says how long after from until is, e.g. " (in 1h30m)".
func inHowLong(from, until time.Time) string {
	d := until.Sub(from).Round(time.Minute)
	if from.IsZero() || d <= 0 {
		return ""
	}
	s := d.String()
	s = strings.TrimSuffix(s, "0s")
	s = strings.TrimSuffix(s, "h0m")
	if strings.HasSuffix(d.String(), "h0m0s") {
		s += "h"
	}
	return " (in " + s + ")"
}

// shellWord quotes s for a POSIX shell unless it is plainly safe.
func shellWord(s string) string {
	safe := s != ""
	for _, c := range []byte(s) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("._-:/@%+=,", c) >= 0) {
			safe = false
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// wrap writes a paragraph wrapped at 72 columns; a word too long for a line is split.
func wrap(b *strings.Builder, para string) {
	col := 0
	for _, w := range strings.Fields(para) {
		for len(w) > maxLine {
			cut := maxLine
			for !utf8.RuneStart(w[cut]) {
				cut--
			}
			if col > 0 {
				b.WriteString("\n")
			}
			b.WriteString(w[:cut])
			w, col = w[cut:], maxLine
		}
		n := utf8.RuneCountInString(w)
		switch {
		case col == 0:
		case col+1+n > 72:
			b.WriteString("\n")
			col = 0
		default:
			b.WriteString(" ")
			col++
		}
		b.WriteString(w)
		col += n
	}
	b.WriteString("\n")
}

// line writes s as one line, split if it is longer than maxLine bytes.
func line(b *strings.Builder, s string) {
	for len(s) > maxLine {
		cut := maxLine
		for !utf8.RuneStart(s[cut]) {
			cut--
		}
		b.WriteString(s[:cut] + "\n")
		s = s[cut:]
	}
	b.WriteString(s + "\n")
}

// quote indents each line of a reply, control characters replaced by spaces.
func quote(b *strings.Builder, text string) {
	text = strings.NewReplacer("\r\n", "\n", "\r", "\n").Replace(text)
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		line(b, "    > "+strings.TrimRight(oneLine(l, maxReply), " \t"))
	}
}

// textPart makes the body's line ends CRLF and chooses its transfer encoding: 7bit for
// ASCII, quoted-printable for UTF-8.
func textPart(text string) (cte string, body []byte) {
	crlf := []byte(strings.ReplaceAll(text, "\n", "\r\n"))
	ascii := true
	for _, c := range crlf {
		ascii = ascii && c < 0x80
	}
	if ascii {
		return "7bit", crlf
	}
	var out bytes.Buffer
	w := quotedprintable.NewWriter(&out)
	w.Write(crlf) // writes to a bytes.Buffer do not fail
	w.Close()
	return "quoted-printable", out.Bytes()
}

// writeField writes a header field folded at spaces to lines of about 78 characters.
// Values are ASCII here, built from cleaned, bounded parts, so no line reaches 998.
func writeField(b *bytes.Buffer, name, value string) {
	col := len(name) + 1
	b.WriteString(name + ":")
	for _, w := range strings.Split(value, " ") {
		if w == "" {
			continue
		}
		if col+1+len(w) > 78 && col > len(name)+1 {
			b.WriteString("\r\n")
			col = 0
		}
		b.WriteString(" " + w)
		col += 1 + len(w)
	}
	b.WriteString("\r\n")
}

var idEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// messageID derives the local part of the Message-ID from the notice and the time, so
// that it is stable for equal input and differs between notices.
func messageID(hostname string, x Notice, now time.Time) string {
	h := sha256.New()
	for _, s := range []string{hostname, x.Kind, x.Time.UTC().Format(time.RFC3339Nano), x.Provider, x.SourceIP,
		x.Category, x.Reply, x.Advice, x.URL, x.Until.UTC().Format(time.RFC3339Nano), strconv.Itoa(x.Queued),
		x.Fallback, now.UTC().Format(time.RFC3339Nano)} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	return idEncoding.EncodeToString(h.Sum(nil)[:20])
}
