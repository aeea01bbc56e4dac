package e2e

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// TestSMTPProtocol checks the MX listener's replies to protocol errors and its
// extensions, on raw connections so that the exact codes are visible.
func TestSMTPProtocol(t *testing.T) {
	t.Parallel()
	const maxSize = 200_000
	s := startServer(t, serverOptions{MaxRecipients: 3, MaxMessageSize: maxSize})
	sender := "sender@" + remoteDomain

	t.Run("Errors", func(t *testing.T) {
		c := dialRawGreeted(t, s.SMTP())
		ext := c.ehlo("client.remote.test")
		for _, want := range []string{"PIPELINING", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "SIZE", "STARTTLS", "CHUNKING"} {
			if _, ok := ext[want]; !ok {
				t.Errorf("EHLO does not advertise %s (got %v)", want, ext)
			}
		}
		if got := ext["SIZE"]; got != fmt.Sprint(maxSize) {
			t.Errorf("EHLO SIZE %q, want %d (smtp.max_message_size)", got, maxSize)
		}

		// RFC 3463 §3.2: X.1.7 is a bad sender address, X.1.3 a bad destination address;
		// either says "address syntax" for MAIL FROM.
		r := c.cmd("MAIL FROM:<a@@b>")
		if r.Code != 501 || (r.Enhanced() != "5.1.3" && r.Enhanced() != "5.1.7") {
			t.Errorf("MAIL FROM:<a@@b>: got %q, want 501 5.1.3 (or 5.1.7, RFC 3463's code for a sender)", r)
		}
		c.expect("MAIL FROM:<"+sender+">", 250, "")
		c.expect("RCPT TO:<a@@b>", 501, "5.1.3")
		c.expect("RSET", 250, "")
		c.expect("NOOP", 250, "")

		long := "NOOP " + strings.Repeat("x", 5000-len("NOOP "))
		c.expect(long, 500, "5.5.2")
		c.expect("NOOP", 250, "") // the connection survives the long line

		c.expect("DATA", 503, "5.5.1")
		c.expect("RCPT TO:<"+address("alice")+">", 503, "5.5.1")

		c.expect("MAIL FROM:<"+sender+">", 250, "")
		c.expect("MAIL FROM:<"+sender+">", 503, "5.5.1") // nested MAIL
		for _, u := range []string{"alice", "bob", "carol"} {
			c.expect("RCPT TO:<"+address(u)+">", 250, "")
		}
		c.expect("RCPT TO:<"+address("dave")+">", 452, "4.5.3")
		c.expect("RSET", 250, "")

		c.expect(fmt.Sprintf("MAIL FROM:<%s> SIZE=%d", sender, maxSize+1), 552, "5.3.4")
		c.expect("RSET", 250, "")

		c.expect("MAIL FROM:<"+sender+">", 250, "")
		c.expect("RCPT TO:<"+address("dave")+">", 250, "")
		c.expect("DATA", 354, "")
		big := message(sender, address("dave"), "too big", strings.Repeat(strings.Repeat("y", 98)+"\r\n", (maxSize+50_000)/100))
		_ = c.conn.SetWriteDeadline(time.Now().Add(wireTimeout))
		_, _ = c.conn.Write([]byte(big + ".\r\n")) // the server may stop reading early
		checkReply(t, "end of an oversized DATA", c.read(), 552, "5.3.4")
	})

	t.Run("BareLF", func(t *testing.T) {
		c := dialRawGreeted(t, s.SMTP())
		c.ehlo("client.remote.test")
		c.expect("MAIL FROM:<"+sender+">", 250, "")
		c.expect("RCPT TO:<"+address("dave")+">", 250, "")
		c.expect("DATA", 354, "")
		// "\n.\r\n" is the bare-LF end-of-data that SMTP smuggling relies on; a proper
		// end follows. Either way the message must be refused.
		c.write("Subject: bare LF\n\nbody\n.\r\nsmuggled line\r\n.\r\n")
		r := c.read()
		if r.Code < 500 || r.Code > 599 {
			t.Errorf("DATA with bare LF: got %q, want 5xx", r)
		} else {
			t.Logf("DATA with bare LF: %s", r)
		}
	})

	t.Run("SMTPUTF8", func(t *testing.T) {
		c := dialRawGreeted(t, s.SMTP())
		c.ehlo("client.remote.test")
		c.expect("MAIL FROM:<jörg@"+remoteDomain+"> BODY=8BITMIME SMTPUTF8", 250, "")
		c.expect("RCPT TO:<"+address("bob")+">", 250, "")
		c.expect("DATA", 354, "")
		c.write(message("jörg@"+remoteDomain, address("bob"), "utf8 Grüße", "8-bit body: Grüße, ½ €") + ".\r\n")
		checkReply(t, "end of DATA (SMTPUTF8)", c.read(), 250, "")
	})

	t.Run("BDAT", func(t *testing.T) {
		c := dialRawGreeted(t, s.SMTP())
		c.ehlo("client.remote.test")
		msg := message(sender, address("carol"), "chunked", "first chunk and\r\nsecond chunk of the body")
		part1, part2 := msg[:len(msg)/2], msg[len(msg)/2:]
		// MAIL, RCPT and the first chunk pipelined in one write (RFC 2920, RFC 3030).
		c.write(fmt.Sprintf("MAIL FROM:<%s>\r\nRCPT TO:<%s>\r\nBDAT %d\r\n%s", sender, address("carol"), len(part1), part1))
		checkReply(t, "MAIL (pipelined)", c.read(), 250, "")
		checkReply(t, "RCPT (pipelined)", c.read(), 250, "")
		checkReply(t, "BDAT chunk 1", c.read(), 250, "")
		c.write(fmt.Sprintf("BDAT %d LAST\r\n%s", len(part2), part2))
		checkReply(t, "BDAT LAST", c.read(), 250, "")
		c.expect("QUIT", 221, "")
	})

	t.Run("StalledClients", func(t *testing.T) {
		stalledClients(t, s)
	})

	t.Run("Stored", func(t *testing.T) {
		if msgs := s.inbox(t, "dave"); len(msgs) != 0 {
			t.Errorf("dave's INBOX should be empty (oversized and bare-LF messages refused), has %q", subjects(msgs))
		}
		_, carol := s.mailbox(t, "carol", "INBOX", true)
		if len(carol) != 1 || carol[0].Subject != "chunked" || !strings.Contains(carol[0].Body, "first chunk and\r\nsecond chunk of the body") {
			t.Errorf("carol's INBOX after BDAT: %+v", carol)
		}
		bob := s.inbox(t, "bob")
		if !hasSubject(bob, "utf8 Grüße") {
			t.Errorf("bob's INBOX after SMTPUTF8: %q", subjects(bob))
		}
		alice := s.inbox(t, "alice")
		if !hasSubject(alice, "while others stall") {
			t.Errorf("alice's INBOX: %q", subjects(alice))
		}
	})
}

// stalledClients opens connections that stop mid-handshake (silent after connect,
// silent after STARTTLS, half a TLS ClientHello on the implicit-TLS ports) and checks
// that other clients are served promptly meanwhile.
func stalledClients(t *testing.T, s *server) {
	const prompt = 5 * time.Second
	var stalled []net.Conn
	defer func() {
		for _, c := range stalled {
			c.Close()
		}
	}()
	dial := func(addr string) net.Conn {
		c, err := net.DialTimeout("tcp", addr, wireTimeout)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		stalled = append(stalled, c)
		return c
	}
	partialHello := []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01} // record header promising 512 bytes
	dial(s.SMTP())                                                         // connects, says nothing
	dial(s.Submissions())                                                  // never starts TLS
	dial(s.IMAPS())
	dial(s.Submissions()).Write(partialHello)
	dial(s.IMAPS()).Write(partialHello)
	{
		c := dialRawGreeted(t, s.SMTP())
		c.ehlo("staller.remote.test")
		c.expect("STARTTLS", 220, "")
		c.write(string(partialHello))
		stalled = append(stalled, c.conn)
	}
	time.Sleep(200 * time.Millisecond)

	start := time.Now()
	c, err := smtp.Dial(s.SMTP())
	if err != nil {
		t.Fatal(err)
	}
	c.CommandTimeout, c.SubmissionTimeout = prompt, prompt
	sendOne(t, c, "sender@"+remoteDomain, address("alice"), "while others stall")
	_ = c.Quit()
	if d := time.Since(start); d > prompt {
		t.Errorf("MX session took %v while other clients stall", d)
	}

	start = time.Now()
	sc := submitClient(t, s, s.Submissions(), true, "bob")
	if err := sc.Noop(); err != nil {
		t.Errorf("NOOP on 465: %v", err)
	}
	_ = sc.Quit()
	if d := time.Since(start); d > prompt {
		t.Errorf("implicit-TLS submission session took %v while other clients stall", d)
	}

	start = time.Now()
	ic, err := tls.DialWithDialer(&net.Dialer{Timeout: prompt}, "tcp", s.IMAPS(), s.tlsConfig(t))
	if err != nil {
		t.Errorf("IMAPS handshake while other clients stall: %v", err)
	} else {
		ic.Close()
	}
	if d := time.Since(start); d > prompt {
		t.Errorf("IMAPS handshake took %v while other clients stall", d)
	}
}
