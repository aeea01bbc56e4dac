package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestBounceIntelligence runs two Repute hosts, a.test and b.test. From a's point of view
// b is "the remote provider". It checks that a 550 5.1.1 from b suppresses the recipient
// (a second submission is refused at RCPT), that a bounce coming back days later to the
// tagged envelope sender is matched to the original message, classified and consumed, and
// that an ARF complaint at the feedback address suppresses its recipient.
func TestBounceIntelligence(t *testing.T) {
	t.Parallel()
	z := newZone(t)
	a, b := hostPair(t, z, serverOptions{Queue: fastQueue, Web: true,
		BounceExtra: "feedback_addresses = [\"fbl@a.test\"]\n"}, serverOptions{Queue: fastQueue})
	a.start()
	b.start()

	t.Run("550 5.1.1 suppresses", func(t *testing.T) {
		const rcpt = "nosuch@b.test"
		a.submit(t, "alice", []string{rcpt}, "to nobody "+uniqueID())
		ev := a.waitEvent(t, "bounced", rcpt)
		if ev.Category != "bad_mailbox" {
			t.Errorf("bounced event: category %q, want bad_mailbox (%s)", ev.Category, ev)
		}
		a.waitEvent(t, "suppressed", rcpt)
		sup := suppressionsOf(t, a)
		if s, ok := sup[rcpt]; !ok || s["reason"] != "bad_mailbox" || s["sender_domain"] != "a.test" {
			t.Fatalf("suppression list: %v", sup)
		}
		// The second submission is refused at RCPT.
		c := a.dialSubmissionRaw(t, "alice")
		c.expect("MAIL FROM:<alice@a.test>", 250, "")
		r := c.cmd("RCPT TO:<" + rcpt + ">")
		checkReply(t, "RCPT of a suppressed recipient", r, 550, "5.1.1")
		if !strings.Contains(r.String(), "suppressed") {
			t.Errorf("the refusal should say why: %v", r)
		}
	})

	var tagged string // alice's tagged envelope sender, as b saw it
	t.Run("late bounce to the tagged sender", func(t *testing.T) {
		subj := "accepted first " + uniqueID()
		a.submit(t, "alice", []string{"carol@b.test"}, subj)
		b.waitForMessage(t, "carol", deliveryTimeout, fmt.Sprintf("%q", subj), withSubject(subj))
		// What b saw as the envelope sender is the tagged bounce address.
		envFrom := b.waitEvent(t, "received", "carol@b.test").From
		if !strings.HasPrefix(envFrom, "alice+rb-") {
			t.Fatalf("b received the message from <%s>, want a tagged alice+rb-…@a.test", envFrom)
		}
		tagged = envFrom
		msgID := a.waitEvent(t, "delivered", "carol@b.test").MsgID
		if !strings.Contains(envFrom, msgID) {
			t.Fatalf("tag %s does not name the message %s", envFrom, msgID)
		}
		// Days later, b's postmaster sends a DSN (RFC 3464) to that address.
		c := dialRawGreeted(t, a.SMTP())
		c.expect("EHLO mx.b.test", 250, "")
		c.expect("MAIL FROM:<>", 250, "")
		c.expect("RCPT TO:<"+envFrom+">", 250, "")
		c.expect("DATA", 354, "")
		c.write(lateDSN(envFrom, "carol@b.test", subj) + ".\r\n")
		checkReply(t, "end of the DSN", c.read(), 250, "2.0.0")
		c.expect("QUIT", 221, "")

		ev := a.waitEvent(t, "bounced", "carol@b.test")
		if ev.MsgID != msgID || ev.Category != "inactive_mailbox" {
			t.Errorf("bounced event %s: want msg %s, category inactive_mailbox", ev, msgID)
		}
		if s, ok := suppressionsOf(t, a)["carol@b.test"]; !ok || s["source"] != "dsn" {
			t.Errorf("carol not suppressed from the DSN: %v", s)
		}
		notice := a.waitForMessage(t, "alice", deliveryTimeout, "a notice about carol", dsnFor("carol@b.test"))
		if strings.Contains(notice.Body, "X-Late-Bounce-Marker") {
			t.Error("the raw bounce landed in the INBOX instead of a notice")
		}
	})

	t.Run("one-click unsubscribe", func(t *testing.T) { oneClickUnsubscribe(t, a, b) })

	t.Run("ARF complaint suppresses", func(t *testing.T) {
		if tagged == "" {
			t.Skip("needs the tagged sender of the previous subtest")
		}
		report := func(sender, rcpt string) {
			t.Helper()
			c := dialRawGreeted(t, a.SMTP())
			defer c.close()
			c.expect("EHLO feedback.b.test", 250, "")
			c.expect("MAIL FROM:<>", 250, "")
			c.expect("RCPT TO:<fbl@a.test>", 250, "")
			c.expect("DATA", 354, "")
			c.write(arfReport(sender, rcpt) + ".\r\n")
			checkReply(t, "end of the report", c.read(), 250, "2.0.0")
		}
		// A report naming an untagged sender could come from anyone: it suppresses nothing.
		report("alice@a.test", "frank@b.test")
		report(tagged, "erin@b.test")
		waitFor(t, 10*time.Second, "erin@b.test suppressed", func() (bool, string) {
			s, ok := suppressionsOf(t, a)["erin@b.test"]
			return ok && s["reason"] == "complaint" && s["source"] == "arf", fmt.Sprint(s)
		})
		if s, ok := suppressionsOf(t, a)["frank@b.test"]; ok {
			t.Errorf("an unverifiable report suppressed frank: %v", s)
		}
	})

	t.Run("rates", func(t *testing.T) {
		var rs []struct {
			SenderDomain string         `json:"sender_domain"`
			Delivered    int            `json:"delivered"`
			Bounced      int            `json:"bounced"`
			Complaints   int            `json:"complaints"`
			ByCategory   map[string]int `json:"bounced_by_category"`
			BounceRate   float64        `json:"bounce_rate"`
		}
		out := a.mustCLI("", "bounce", "rates", "--by", "domain", "--json")
		if err := json.Unmarshal([]byte(out), &rs); err != nil || len(rs) != 1 {
			t.Fatalf("bounce rates --json: %v\n%s", err, out)
		}
		r := rs[0]
		// Delivered: carol and dave; bounced: nosuch (550 5.1.1) and carol's late DSN.
		if r.SenderDomain != "a.test" || r.Delivered < 2 || r.ByCategory["bad_mailbox"] < 1 || r.ByCategory["inactive_mailbox"] != 1 ||
			r.Complaints != 1 || r.BounceRate <= 0 {
			t.Errorf("rates of a.test: %+v", r)
		}
	})
}

// one-click unsubscribe: tested as part of TestBounceIntelligence (below).
func oneClickUnsubscribe(t *testing.T, a, b *server) {
	subj := "weekly news " + uniqueID()
	c, err := a.dialSubmission("alice", a.tlsConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	msg := "From: <alice@a.test>\r\nTo: <dave@b.test>\r\nSubject: " + subj + "\r\nPrecedence: bulk\r\n\r\nNews.\r\n"
	if err := sendMessage(c, "alice@a.test", []string{"dave@b.test"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	m := b.waitForMessage(t, "dave", deliveryTimeout, fmt.Sprintf("%q", subj), withSubject(subj))
	var link string
	signed := false
	for _, f := range headerFields(m.Body) {
		name, value, _ := strings.Cut(f, ":")
		switch strings.ToLower(name) {
		case "list-unsubscribe": // <https://…>, <mailto:…>
			for _, u := range strings.Split(value, ",") {
				u = strings.Trim(strings.TrimSpace(u), "<>")
				if strings.HasPrefix(u, "https:") {
					link = u
				} else if !strings.HasPrefix(u, "mailto:alice+unsubscribe@a.test?subject=unsubscribe%20") {
					t.Errorf("List-Unsubscribe URI %q", u)
				}
			}
		case "list-unsubscribe-post":
			if strings.TrimSpace(value) != "List-Unsubscribe=One-Click" {
				t.Errorf("List-Unsubscribe-Post: %q", value)
			}
		case "dkim-signature":
			signed = signed || strings.Contains(strings.ToLower(strings.ReplaceAll(value, " ", "")), "list-unsubscribe:list-unsubscribe-post")
		}
	}
	if !strings.HasPrefix(link, "https://mx.a.test/unsubscribe/") || !signed {
		t.Fatalf("List-Unsubscribe %q (DKIM covers it: %v) in\n%s", link, signed, headerBlock(m.Body))
	}
	// The link's host is a's https listener.
	cl := &http.Client{Timeout: wireTimeout, Transport: &http.Transport{TLSClientConfig: a.tlsConfig(t),
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, a.HTTPS())
		}}}
	resp, err := cl.Get(link) // a link scanner: must not unsubscribe
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if _, ok := suppressionsOf(t, a)["dave@b.test"]; ok || resp.StatusCode != 200 {
		t.Fatalf("GET: status %d, and it suppressed dave: %v", resp.StatusCode, ok)
	}
	resp, err = cl.Post(link, "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if s, ok := suppressionsOf(t, a)["dave@b.test"]; !ok || resp.StatusCode != 200 || s["reason"] != "unsubscribe" {
		t.Fatalf("POST: status %d, suppression %v", resp.StatusCode, s)
	}
	if resp, err := cl.Post(strings.Replace(link, "/unsubscribe/", "/unsubscribe/x", 1), "", nil); err != nil || resp.StatusCode != 404 {
		t.Errorf("a forged token: %v %v, want 404", resp, err)
	}
}

// suppressionsOf returns `repute suppression list --json` by address.
func suppressionsOf(t *testing.T, s *server) map[string]map[string]any {
	t.Helper()
	var list []map[string]any
	out := s.mustCLI("", "suppression", "list", "--json")
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("suppression list --json: %v\n%s", err, out)
	}
	m := map[string]map[string]any{}
	for _, e := range list {
		m[fmt.Sprint(e["address"])] = e
	}
	return m
}

// lateDSN is an RFC 3464 report, as b.test's MTA would send it after the message had
// been accepted and then could not be delivered onward.
func lateDSN(to, rcpt, subject string) string {
	return strings.ReplaceAll(fmt.Sprintf(`From: Mail Delivery System <MAILER-DAEMON@mx.b.test>
To: <%s>
Subject: Undelivered Mail Returned to Sender
Date: %s
Message-ID: <late-%s@mx.b.test>
X-Late-Bounce-Marker: yes
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="BOUNDARY"

--BOUNDARY
Content-Type: text/plain

Your message to <%s> could not be delivered: the mailbox is disabled.

--BOUNDARY
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.b.test

Final-Recipient: rfc822; %s
Action: failed
Status: 5.2.1
Remote-MTA: dns; store.b.test
Diagnostic-Code: smtp; 550 5.2.1 The email account that you tried to reach is disabled

--BOUNDARY
Content-Type: text/rfc822-headers

From: <alice@a.test>
To: <%s>
Subject: %s

--BOUNDARY--
`, to, time.Now().Format(time.RFC1123Z), uniqueID(), rcpt, rcpt, rcpt, subject), "\n", "\r\n")
}

// arfReport is a feedback-loop complaint (RFC 5965) about a message from sender to rcpt.
func arfReport(sender, rcpt string) string {
	return strings.ReplaceAll(fmt.Sprintf(`From: <feedback@b.test>
To: <fbl@a.test>
Subject: FW: an abuse report
Date: %s
Message-ID: <arf-%s@b.test>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="PART"

--PART
Content-Type: text/plain

This is an email abuse report for an email message received from IP 127.0.0.2.

--PART
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: b.test-FBL/1.0
Version: 1
Original-Mail-From: <%s>
Original-Rcpt-To: <%s>
Reported-Domain: a.test
Source-IP: 127.0.0.2

--PART
Content-Type: message/rfc822

From: <%s>
To: <%s>
Subject: an offer
Message-ID: <offer-%s@a.test>

Buy now.

--PART--
`, time.Now().Format(time.RFC1123Z), uniqueID(), sender, rcpt, sender, rcpt, uniqueID()), "\n", "\r\n")
}
