package e2e

import (
	"fmt"
	"strings"
	"testing"
)

// smugglingVariants are the end-of-data sequences published for SMTP smuggling: each is
// something a lax server takes for CRLF.CRLF. All but the NUL one have a bare CR or LF;
// the NUL one is proper CRLF text, but a receiver that strips NULs would see its end of
// data, so it is refused as well.
var smugglingVariants = []struct {
	name     string
	eod      string
	enhanced string // the enhanced code of the 554 refusal
}{
	{"LF.LF", "\n.\n", "5.5.2"},
	{"LF.CRLF", "\n.\r\n", "5.5.2"},
	{"CR.CR", "\r.\r", "5.5.2"},
	{"CRLF.CR", "\r\n.\r", "5.5.2"},
	{"CR.CRLF", "\r.\r\n", "5.5.2"},
	{"CRLF.LF", "\r\n.\n", "5.5.2"},
	{"CRLF.NUL.CRLF", "\r\n\x00.\r\n", "5.6.0"},
}

// smuggledData is message data whose first message ends with eod and is followed by the
// commands and data of a forged second message, ended by a real CRLF.CRLF.
func smuggledData(from, subject, eod, forgedFrom string, forgedRcpts []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: <%s>\r\nSubject: %s\r\n\r\nhello%sMAIL FROM:<%s>\r\n", from, subject, eod, forgedFrom)
	for _, r := range forgedRcpts {
		fmt.Fprintf(&b, "RCPT TO:<%s>\r\n", r)
	}
	fmt.Fprintf(&b, "DATA\r\nFrom: <%s>\r\nSubject: forged %s\r\n\r\nforged\r\n.\r\n", forgedFrom, subject)
	return b.String()
}

// repliesUntilClose reads replies until the server closes the connection.
func (c *rawSMTP) repliesUntilClose() []reply {
	var out []reply
	for {
		r, err := c.readReply()
		if err != nil {
			return out
		}
		out = append(out, r)
	}
}

// checkReplySeq fails unless got has exactly the codes of want, one for one.
func checkReplySeq(t *testing.T, what string, got []reply, want ...int) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = got[i].Code == want[i]
	}
	if !ok {
		var s []string
		for _, r := range got {
			s = append(s, r.String())
		}
		t.Errorf("%s: replies %q, want codes %v", what, s, want)
	}
}

// TestSmuggling sends every published SMTP-smuggling variant, in DATA and in BDAT, to
// the MX port and to the submission port (STARTTLS and AUTH). Each attempt must be one
// message, refused with 554: 5.5.2 for a bare CR or LF, 5.6.0 for the NUL variant. The
// forged second message's MAIL, RCPT and DATA must never run: no other reply, nothing in
// a mailbox, nothing queued.
func TestSmuggling(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	listeners := []struct {
		name        string
		open        func(t *testing.T) *rawSMTP
		from, rcpt  string
		forgedFrom  string
		forgedRcpts []string
	}{
		{
			name: "MX",
			open: func(t *testing.T) *rawSMTP {
				c := dialRawGreeted(t, s.SMTP())
				c.ehlo("client.remote.test")
				return c
			},
			from: "sender@" + remoteDomain, rcpt: address("alice"),
			forgedFrom: "admin@b.test", forgedRcpts: []string{address("alice")},
		},
		{
			// Submission: the forged envelope is one the server would take from bob, so
			// that a forged message, if executed, would be queued and stored.
			name:       "Submission",
			open:       func(t *testing.T) *rawSMTP { return s.dialSubmissionRaw(t, "bob") },
			from:       address("bob"),
			rcpt:       address("carol"),
			forgedFrom: address("bob"), forgedRcpts: []string{"victim@" + remoteDomain, address("alice")},
		},
	}
	modes := []struct {
		name string
		send func(c *rawSMTP, data string) []reply
		want []int // the refusal is the reply before the last, QUIT's
	}{
		{"DATA", func(c *rawSMTP, data string) []reply {
			c.expect("DATA", 354, "")
			c.write(data + "QUIT\r\n")
			return c.repliesUntilClose()
		}, []int{554, 221}},
		{"BDAT", func(c *rawSMTP, data string) []reply {
			c.write(fmt.Sprintf("BDAT %d LAST\r\n%sQUIT\r\n", len(data), data))
			return c.repliesUntilClose()
		}, []int{554, 221}},
		{"BDAT-chunks", func(c *rawSMTP, data string) []reply {
			c.write(fmt.Sprintf("BDAT %d\r\n%sBDAT 0 LAST\r\nQUIT\r\n", len(data), data))
			return c.repliesUntilClose()
		}, []int{250, 554, 221}},
	}
	for _, l := range listeners {
		for _, v := range smugglingVariants {
			for _, m := range modes {
				subject := fmt.Sprintf("smuggling %s %s %s", l.name, m.name, v.name)
				data := smuggledData(l.from, subject, v.eod, l.forgedFrom, l.forgedRcpts)
				t.Run(l.name+"/"+m.name+"/"+v.name, func(t *testing.T) {
					c := l.open(t)
					c.expect("MAIL FROM:<"+l.from+">", 250, "")
					c.expect("RCPT TO:<"+l.rcpt+">", 250, "")
					got := m.send(c, data)
					checkReplySeq(t, "the data and QUIT", got, m.want...)
					if len(got) == len(m.want) {
						if r := got[len(got)-2]; r.Enhanced() != v.enhanced {
							t.Errorf("refusal %v, want 554 %s", r, v.enhanced)
						}
					}
				})
			}
		}
	}

	// A chunk size near 2^63 after a first chunk once wrapped the size check around and
	// was buffered without limit. It is refused at once and the connection closed, without
	// the server waiting for (or keeping) any of it.
	t.Run("BDATSizeOverflow", func(t *testing.T) {
		c := dialRawGreeted(t, s.SMTP())
		c.ehlo("client.remote.test")
		c.expect("MAIL FROM:<sender@"+remoteDomain+">", 250, "")
		c.expect("RCPT TO:<"+address("dave")+">", 250, "")
		c.write("BDAT 10\r\n0123456789")
		checkReply(t, "BDAT 10", c.read(), 250, "")
		c.write("BDAT 9223372036854775807 LAST\r\n")
		got := c.repliesUntilClose()
		checkReplySeq(t, "BDAT 9223372036854775807 LAST", got, 552)
		if len(got) == 1 && got[0].Enhanced() != "5.3.4" {
			t.Errorf("refusal %v, want 552 5.3.4", got[0])
		}
	})

	// A last, ordinary message: once it is in dave's INBOX and in the event log, anything
	// the attempts above caused has been stored and logged too.
	c := dialRawGreeted(t, s.SMTP())
	c.ehlo("client.remote.test")
	c.expect("MAIL FROM:<sender@"+remoteDomain+">", 250, "")
	c.expect("RCPT TO:<"+address("dave")+">", 250, "")
	c.expect("DATA", 354, "")
	c.write(message("sender@"+remoteDomain, address("dave"), "after the smuggling", "sentinel") + ".\r\n")
	checkReply(t, "the sentinel message", c.read(), 250, "")
	c.expect("QUIT", 221, "")
	waitForSubjects(t, s, "dave", "after the smuggling")
	s.waitEvent(t, "received", address("dave"))

	// alice is the forged messages' local recipient, carol the real one on submission
	// (alice the real one on the MX), bob the submission sender.
	for _, user := range []string{"alice", "bob", "carol"} {
		if msgs := s.inbox(t, user); len(msgs) != 0 {
			t.Errorf("%s's INBOX has %q, want it empty: every attempt was refused", user, subjects(msgs))
		}
	}
	if q := s.queueList(t); len(q) != 0 {
		t.Errorf("queue after the smuggling attempts: %v, want empty", q)
	}
	for _, e := range s.events(t) {
		if e.Event == "queued" || e.Event == "received" && !strings.EqualFold(e.Rcpt, address("dave")) {
			t.Errorf("event %v: a refused or forged message got through", e)
		}
	}
}
