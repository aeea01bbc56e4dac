package dsn

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// humanText is the first part of the report: what happened to each recipient, in words,
// with the receiving server's reply quoted as it was given, and what happens next. It is
// what most people read, so it avoids jargon; the status code is explained, not only
// printed.
func humanText(m Message, failure bool, orig attachment) string {
	var b strings.Builder
	fmt.Fprintf(&b, "This is the mail server at %s.\n\n", m.ReportingMTA)
	var failed, delayed []Recipient
	for _, r := range m.Recipients {
		if r.Action == Failed {
			failed = append(failed, r)
		} else {
			delayed = append(delayed, r)
		}
	}
	if len(failed) > 0 {
		wrap(&b, "Your message could not be delivered to "+count(len(failed), "recipient")+
			" below. Delivery has been abandoned: no further attempts will be made. "+
			"Check the reason given for each address; once the problem is fixed "+
			"(for example a mistyped address), send the message again.")
		b.WriteString("\n")
		for _, r := range failed {
			recipientText(&b, r)
		}
	}
	if len(delayed) > 0 {
		wrap(&b, "Delivery of your message to "+count(len(delayed), "recipient")+
			" below has been delayed. The message is still queued and will be tried "+
			"again automatically; you do not need to send it again. "+
			"You will be notified if delivery finally fails.")
		b.WriteString("\n")
		for _, r := range delayed {
			recipientText(&b, r)
		}
	}
	b.WriteString("About your message:\n")
	if m.OriginalID != "" {
		fmt.Fprintf(&b, "    Message ID at %s: %s\n", m.ReportingMTA, oneLine(m.OriginalID))
	}
	if !m.Arrival.IsZero() {
		fmt.Fprintf(&b, "    Accepted for delivery: %s\n", m.Arrival.Format(time.RFC1123Z))
	}
	switch {
	case orig.ctype == "":
	case orig.whole:
		wrapIndent(&b, "    ", "A copy of the message is attached.")
	case failure:
		wrapIndent(&b, "    ", fmt.Sprintf("The message (%d bytes) is too large to return whole; its header is attached.", orig.size))
	default:
		wrapIndent(&b, "    ", "The header of the message is attached.")
	}
	b.WriteString("\n")
	wrap(&b, "If you need help, contact your mail administrator and quote the message ID "+
		"and the reasons above. The machine-readable report follows in the next part.")
	return b.String()
}

// recipientText describes the outcome for one recipient.
func recipientText(b *strings.Builder, r Recipient) {
	fmt.Fprintf(b, "<%s>\n", strings.TrimSuffix(strings.TrimPrefix(r.Address, "<"), ">"))
	switch {
	case r.Action == Failed && strings.HasPrefix(r.status(), "4."):
		wrapIndent(b, "    ", "Delivery failed permanently: the temporary problem below lasted until the message expired from the queue.")
	case r.Action == Failed:
		wrapIndent(b, "    ", "Delivery failed permanently.")
	default:
		next := "Not delivered yet."
		if !r.WillRetryUntil.IsZero() {
			next += " Delivery will be retried until " + r.WillRetryUntil.Format(time.RFC1123Z) + "."
		}
		wrapIndent(b, "    ", next)
	}
	diag := strings.TrimSpace(strings.ToValidUTF8(r.Diagnostic, "\uFFFD"))
	when := ""
	if !r.LastAttempt.IsZero() {
		when = " (" + r.LastAttempt.Format(time.RFC1123Z) + ")"
	}
	switch {
	case diag == "" && r.RemoteMTA != "":
		wrapIndent(b, "    ", "Last attempt"+when+": the server "+r.RemoteMTA+" gave no reply.")
	case diag == "":
	case r.RemoteMTA != "":
		wrapIndent(b, "    ", "Last attempt"+when+": the receiving server "+r.RemoteMTA+" replied:")
		quote(b, diag)
	case isSMTPReply(diag):
		wrapIndent(b, "    ", "Last attempt"+when+": the receiving server replied:")
		quote(b, diag)
	default:
		wrapIndent(b, "    ", "Last attempt"+when+" failed:")
		quote(b, diag)
	}
	st := r.status()
	wrapIndent(b, "    ", "Status "+st+": "+describeStatus(st)+".")
	b.WriteString("\n")
}

// quote indents each line of a reply, leaving its text exactly as received.
func quote(b *strings.Builder, text string) {
	text = strings.ReplaceAll(text, "\r\n", "\n")
	for _, line := range strings.Split(text, "\n") {
		line = strings.Map(func(r rune) rune {
			if r < 0x20 && r != '\t' || r == 0x7f {
				return ' '
			}
			return r
		}, line)
		fmt.Fprintf(b, "        > %s\n", strings.TrimRight(line, " \t"))
	}
}

func count(n int, noun string) string {
	if n == 1 {
		return "the " + noun
	}
	return fmt.Sprintf("the %d %ss", n, noun)
}

// wrap writes a paragraph wrapped at 72 columns.
func wrap(b *strings.Builder, para string) { wrapIndent(b, "", para) }

// wrapIndent writes a paragraph wrapped at 72 columns, every line indented.
func wrapIndent(b *strings.Builder, indent, para string) {
	col := 0
	for _, w := range strings.Fields(para) {
		n := utf8.RuneCountInString(w)
		switch {
		case col == 0:
			b.WriteString(indent)
			col = len(indent)
		case col+1+n > 72:
			b.WriteString("\n")
			b.WriteString(indent)
			col = len(indent)
		default:
			b.WriteString(" ")
			col++
		}
		b.WriteString(w)
		col += n
	}
	b.WriteString("\n")
}

// statusDetails explains the subject.detail part of RFC 3463 codes (RFC 3463 §3, with
// the later additions of RFC 7372 and RFC 7505 that receivers commonly use).
var statusDetails = map[string]string{
	"0.0":  "an unspecified problem",
	"1.0":  "a problem with the address",
	"1.1":  "the recipient's mailbox does not exist at the destination",
	"1.2":  "the destination domain does not exist or does not accept mail",
	"1.3":  "the recipient address is malformed",
	"1.4":  "the recipient address is ambiguous",
	"1.6":  "the recipient's mailbox has moved and no forwarding address is known",
	"1.7":  "the sender address is malformed",
	"1.8":  "the sender's domain does not exist or cannot receive replies",
	"1.10": "the recipient's domain declares that it accepts no mail (null MX)",
	"2.0":  "a problem with the recipient's mailbox",
	"2.1":  "the recipient's mailbox is disabled and not accepting messages",
	"2.2":  "the recipient's mailbox is full",
	"2.3":  "the message is larger than the recipient's mailbox accepts",
	"2.4":  "a problem expanding a mailing list",
	"3.0":  "a problem in the receiving mail system",
	"3.1":  "the receiving mail system is out of storage",
	"3.2":  "the receiving mail system is not accepting messages",
	"3.4":  "the message is larger than the receiving mail system accepts",
	"3.5":  "the receiving mail system is misconfigured",
	"4.0":  "a network or routing problem",
	"4.1":  "the destination server did not answer",
	"4.2":  "the connection to the destination server failed",
	"4.3":  "a DNS lookup failed",
	"4.4":  "no route to the destination: its mail servers could not be found",
	"4.5":  "the destination is congested",
	"4.6":  "a mail routing loop was detected",
	"4.7":  "the message was too long in the queue and expired",
	"5.0":  "a problem in the mail protocol exchange",
	"5.1":  "the receiving server did not understand a command",
	"5.2":  "a syntax error in the mail protocol exchange",
	"5.3":  "the message has too many recipients",
	"5.4":  "the receiving server rejected a command argument",
	"6.0":  "a problem with the message content",
	"6.3":  "the message needs a conversion the receiving server does not allow",
	"7.0":  "the receiving server's security or policy rules",
	"7.1":  "the receiving server refused the message by policy",
	"7.2":  "mailing list expansion is prohibited",
	"7.7":  "the message failed an integrity check",
	"7.8":  "authentication failed",
	"7.20": "no valid DKIM signature was found",
	"7.23": "the SPF check of the sender failed",
	"7.25": "the sending server's reverse DNS (PTR) check failed",
	"7.26": "several authentication checks (SPF, DKIM, DMARC) failed",
	"7.27": "the sender's domain declares that it sends no mail (null MX)",
}

var statusSubjects = map[string]string{
	"0": "an unspecified problem",
	"1": "a problem with an address",
	"2": "a problem with the recipient's mailbox",
	"3": "a problem in the receiving mail system",
	"4": "a network or routing problem",
	"5": "a problem in the mail protocol exchange",
	"6": "a problem with the message content",
	"7": "the receiving server's security or policy rules",
}

// describeStatus turns an RFC 3463 code into words, with "temporary" or "permanent" from
// its class (RFC 3463 §3.1).
func describeStatus(code string) string {
	parts := strings.SplitN(code, ".", 3)
	if len(parts) != 3 {
		return "unknown status"
	}
	kind := "permanent failure"
	switch parts[0] {
	case "2":
		kind = "success"
	case "4":
		kind = "temporary failure"
	}
	what, ok := statusDetails[parts[1]+"."+parts[2]]
	if !ok {
		what, ok = statusSubjects[parts[1]]
	}
	if !ok {
		what = "an unknown problem"
	}
	return kind + ", " + what
}
