package provsim

import (
	"strings"
)

// Stage is the step of the SMTP dialogue at which a reply is given.
type Stage string

// The stages.
const (
	StageGreeting Stage = "greeting" // instead of the 220 banner
	StageHelo     Stage = "helo"     // in reply to EHLO or HELO
	StageMail     Stage = "mail"     // in reply to MAIL FROM
	StageRcpt     Stage = "rcpt"     // in reply to RCPT TO
	StageData     Stage = "data"     // after the end of the message data
)

// Event is what a reply is about.
type Event string

// The events with a provider-specific reply. The first three are deferrals and count in
// Counters by kind.
const (
	EventRate          Event = "rate"           // the sender IP is over RatePerMinute
	EventConnections   Event = "connections"    // the sender IP is over MaxConnections
	EventPerConnection Event = "per_connection" // the connection is over MaxMessagesPerConnection
	EventBlock         Event = "block"          // the sender IP is blocked
)

// Reply is a provider's answer to an event.
type Reply struct {
	Stage Stage
	// Text is the reply as sent, without the final CRLF: one line, or several separated
	// by CRLF (continuation lines "421-…", the last "421 …").
	Text string
	// Close says the server closes the connection after the reply.
	Close bool
}

// Code is the reply's basic status code.
func (r Reply) Code() string { return r.Text[:3] }

// ReplyFor is provider p's reply to event e for a sender at ip, from a server with the
// given host name (Microsoft puts it in brackets at the end of its replies). The texts
// and stages come from the providers' documentation and from their replies as seen in
// senders' logs:
//
// Google. The Gmail help page "SMTP errors and codes" (Google Workspace admin help)
// documents "421 4.7.0 Try again later, closing connection." for a Denial of Service at
// the HELO stage, which is where the simulator refuses a connection over the cap. The
// 4.7.28 rate limit ("unusual rate of unsolicited mail originating from your IP
// address … temporarily rate limited", with the UnsolicitedRateLimitError link) and the
// 5.7.1 block (same words, "has been blocked", UnsolicitedIPError link) come as
// multi-line replies after the end of DATA: Gmail judges the message first, and senders'
// logs show the 4.7.28 reply "in reply to end of DATA command" and the block "after end
// of data". A 421 closes the connection (RFC 5321 §3.8).
//
// Microsoft. The 4.7.650 reply ("The mail server [IP] has been temporarily rate limited
// due to IP reputation", S775) is given to RCPT TO in senders' Postfix logs of the
// 4.7.65x family ("in reply to RCPT TO command"); the S3140 block list reply is given to
// MAIL FROM, after which Outlook.com closes the connection without answering the
// pipelined commands (as noted by MTAs that had to handle it, and in Postfix logs "in
// reply to MAIL FROM command"). "421 4.3.2 The maximum number of concurrent server
// connections has exceeded a limit, closing transmission channel" is Exchange's
// connection-limit reply, given instead of the banner.
//
// Yahoo. Yahoo's Sender Hub page "SMTP Error Codes" describes the [TSS04] deferral
// ("temporarily deferred due to unexpected volume or user complaints", its current
// wording) and the [TSS09] "permanently deferred; Retrying will NOT succeed" block.
// Senders' logs show the TSS04 deferral, and the 553 5.7.2 permanent deferrals of the
// same family, "in reply to MAIL FROM command", the connection closed after the 421;
// Yahoo's deferrals also come at the initial connection, which is where the simulator
// refuses connections over the cap.
//
// EventPerConnection has no documented reply at any of them; its text is the
// simulator's own, a 421 at MAIL that closes the connection.
func ReplyFor(p Provider, e Event, ip, host string) Reply {
	return replyFor(p, e, ip, host, "", "")
}

// replyFor is ReplyFor with the session id Gmail appends to its replies and the command
// ("EHLO" or "HELO") a Gmail connection refusal answers.
func replyFor(p Provider, e Event, ip, host, id, cmd string) Reply {
	if id == "" {
		id = "provsim"
	}
	gsmtp := id + " - gsmtp"
	if e == EventPerConnection {
		return Reply{StageMail, "421 4.7.0 " + host + " Too many messages in one session, closing connection", true}
	}
	switch p {
	case Google:
		switch e {
		case EventRate:
			return Reply{StageData, lines("421", "4.7.28",
				"["+ip+"] Our system has detected an unusual rate of",
				"unsolicited mail originating from your IP address. To protect our",
				"users from spam, mail sent from your IP address has been temporarily",
				"rate limited. Please visit",
				" https://support.google.com/mail/?p=UnsolicitedRateLimitError to",
				"review our Bulk Email Senders Guidelines. "+gsmtp), true}
		case EventConnections:
			if cmd == "" {
				cmd = "EHLO"
			}
			return Reply{StageHelo, "421 4.7.0 Try again later, closing connection. (" + cmd + ") " + gsmtp, true}
		case EventBlock:
			return Reply{StageData, lines("550", "5.7.1",
				"["+ip+"] Our system has detected an unusual rate of",
				"unsolicited mail originating from your IP address. To protect our",
				"users from spam, mail sent from your IP address has been blocked.",
				"Please visit",
				" https://support.google.com/mail/?p=UnsolicitedIPError to review our",
				"Bulk Email Senders Guidelines. "+gsmtp), false}
		}
	case Microsoft:
		switch e {
		case EventRate:
			return Reply{StageRcpt, "451 4.7.650 The mail server [" + ip + "] has been temporarily rate limited due to IP reputation. " +
				"For e-mail delivery information, see https://postmaster.live.com (S775) [" + host + "]", false}
		case EventConnections:
			return Reply{StageGreeting, "421 4.3.2 The maximum number of concurrent server connections has exceeded a limit, " +
				"closing transmission channel [" + host + "]", true}
		case EventBlock:
			return Reply{StageMail, "550 5.7.1 Unfortunately, messages from [" + ip + "] weren't sent. " +
				"Please contact your Internet service provider since part of their network is on our block list (S3140). " +
				"You can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors. [" + host + "]", true}
		}
	case Yahoo:
		switch e {
		case EventRate:
			return Reply{StageMail, yahooDeferral(ip), true}
		case EventConnections:
			return Reply{StageGreeting, yahooDeferral(ip), true}
		case EventBlock:
			return Reply{StageMail, "553 5.7.2 [TSS09] All messages from " + ip +
				" will be permanently deferred; Retrying will NOT succeed. See https://postmaster.yahooinc.com/error-codes", false}
		}
	}
	return Reply{StageMail, "451 4.3.0 " + host + " no reply for " + string(p) + " " + string(e), false}
}

func yahooDeferral(ip string) string {
	return "421 4.7.0 [TSS04] Messages from " + ip +
		" temporarily deferred due to unexpected volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes"
}

// lines builds a multi-line reply: every line starts with the code and the enhanced
// code, with "-" after the basic code on all lines but the last.
func lines(code, enhanced string, texts ...string) string {
	var b strings.Builder
	for i, t := range texts {
		if i > 0 {
			b.WriteString("\r\n")
		}
		sep := "-"
		if i == len(texts)-1 {
			sep = " "
		}
		b.WriteString(code + sep + enhanced + " " + t)
	}
	return b.String()
}
