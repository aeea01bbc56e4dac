package classify

// This file reads the human-readable part of a bounce. ParseDSN (dsnparse.go) uses it to
// fill in a diagnostic the delivery-status part lacks and, for the many MTAs that send no
// delivery-status part at all, as the only source of recipients.
//
// Such notices have no standard form, only habits: Postfix's and qmail's
// "<address>: reason" blocks (and Yahoo's, a qmail descendant), Exim's indented address
// list, Sendmail's "----- The following addresses had permanent fatal errors -----",
// Exchange's and Office 365's "Diagnostic information for administrators", and Gmail's
// "Your message wasn't delivered to ...". dsnTextFormat recognises each by its fixed
// phrases and a parser per shape reads it; a text in no known shape yields only what
// X-Failed-Recipients says. The parsers work on the notice cut before the copy of the
// original message, so that addresses quoted from the original are not mistaken for
// failed recipients.

import (
	"html"
	"regexp"
	"strings"
)

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
