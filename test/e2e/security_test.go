package e2e

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// TestSecurity checks the abuse boundaries: no open relay, no AUTH or IMAP LOGIN in
// cleartext, no sending as someone else.
func TestSecurity(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{})
	s.mustCLI("", "alias", "add", "sales@"+testDomain, address("alice"))

	t.Run("MXRefusesRelay", func(t *testing.T) {
		c := dialRawGreeted(t, s.SMTP())
		c.ehlo("client.remote.test")
		c.expect("MAIL FROM:<sender@"+remoteDomain+">", 250, "")
		c.expect("RCPT TO:<victim@elsewhere.example>", 550, "5.7.1")
		c.expect("RCPT TO:<nobody@"+testDomain+">", 550, "5.1.1")
		c.expect("RCPT TO:<"+address("alice")+">", 250, "")
		c.expect("QUIT", 221, "")
	})

	t.Run("NoAuthBeforeSTARTTLS", func(t *testing.T) {
		c := dialRawGreeted(t, s.Submission())
		ext := c.ehlo("client.remote.test")
		if _, ok := ext["AUTH"]; ok {
			t.Errorf("submission advertises AUTH %s before STARTTLS", ext["AUTH"])
		}
		if _, ok := ext["STARTTLS"]; !ok {
			t.Errorf("submission does not advertise STARTTLS: %v", ext)
		}
		ir := base64.StdEncoding.EncodeToString([]byte("\x00" + address("alice") + "\x00" + password("alice")))
		r := c.cmd("AUTH PLAIN " + ir)
		if r.Code < 500 || r.Code > 599 {
			t.Errorf("AUTH PLAIN before STARTTLS: got %q, want a 5xx refusal (e.g. 530 5.7.0)", r)
		} else {
			t.Logf("AUTH PLAIN before STARTTLS: %s", r)
		}
		r = c.cmd("AUTH LOGIN")
		if r.Code < 500 || r.Code > 599 {
			t.Errorf("AUTH LOGIN before STARTTLS: got %q, want a 5xx refusal", r)
		}
		// Mail without authentication is refused on submission.
		r = c.cmd("MAIL FROM:<" + address("alice") + ">")
		if r.Code < 500 || r.Code > 599 {
			t.Errorf("MAIL FROM without AUTH on submission: got %q, want 5xx (530 5.7.0)", r)
		}
		// After STARTTLS, AUTH is offered.
		c.startTLS(s.tlsConfig(t))
		ext = c.ehlo("client.remote.test")
		if !strings.Contains(strings.ToUpper(ext["AUTH"]), "PLAIN") {
			t.Errorf("after STARTTLS: AUTH %q, want PLAIN offered", ext["AUTH"])
		}
		c.expect("AUTH PLAIN "+ir, 235, "2.7.0")
	})

	t.Run("SendAsOtherAddress", func(t *testing.T) {
		c := submitClient(t, s, s.Submission(), false, "alice")
		for _, from := range []string{address("bob"), "ceo@" + remoteDomain} {
			err := c.Mail(from, nil)
			checkSMTPError(t, "MAIL FROM:<"+from+"> as "+address("alice"), err, 553, "5.7.1")
			_ = c.Reset()
		}
		// Her own address and an alias that points to her are allowed.
		for _, from := range []string{address("alice"), "sales@" + testDomain} {
			if err := c.Mail(from, nil); err != nil {
				t.Errorf("MAIL FROM:<%s> as %s: %v", from, address("alice"), err)
			}
			_ = c.Reset()
		}
		sendOne(t, c, address("alice"), address("bob"), "sent by alice on 587")
		_ = c.Quit()
	})

	t.Run("ImplicitTLSSubmission", func(t *testing.T) {
		c := submitClient(t, s, s.Submissions(), true, "carol")
		sendOne(t, c, address("carol"), address("bob"), "sent by carol on 465")
		_ = c.Quit()
		waitForSubjects(t, s, "bob", "sent by alice on 587", "sent by carol on 465")
	})

	t.Run("WrongPassword", func(t *testing.T) {
		c, err := smtp.DialStartTLS(s.Submission(), s.tlsConfig(t))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		err = c.Auth(sasl.NewPlainClient("", address("alice"), "wrong"))
		checkSMTPError(t, "AUTH PLAIN with a wrong password", err, 535, "5.7.8")
	})

	t.Run("NoIMAPLoginBeforeSTARTTLS", func(t *testing.T) {
		conn, err := net.DialTimeout("tcp", s.IMAP(), wireTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(wireTimeout))
		r := bufio.NewReader(conn)
		greeting, _ := r.ReadString('\n')
		if !strings.HasPrefix(greeting, "* OK") {
			t.Fatalf("IMAP greeting %q", greeting)
		}
		caps := imapCommand(t, conn, r, "a1", "CAPABILITY")
		if !strings.Contains(caps, "STARTTLS") {
			t.Errorf("IMAP CAPABILITY before TLS lacks STARTTLS: %q", caps)
		}
		if !strings.Contains(caps, "LOGINDISABLED") {
			t.Errorf("IMAP CAPABILITY before TLS lacks LOGINDISABLED (RFC 9051 §6.2.3): %q", caps)
		}
		resp := imapCommand(t, conn, r, "a2", "LOGIN "+address("alice")+" "+password("alice"))
		last := lastLine(resp)
		if !strings.HasPrefix(last, "a2 NO") && !strings.HasPrefix(last, "a2 BAD") {
			t.Errorf("IMAP LOGIN before STARTTLS: got %q, want a2 NO/BAD", last)
		}
	})

	t.Run("IMAPSLogin", func(t *testing.T) {
		cfg := s.tlsConfig(t)
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: wireTimeout}, "tcp", s.IMAPS(), cfg)
		if err != nil {
			t.Fatalf("IMAPS dial: %v", err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(wireTimeout))
		r := bufio.NewReader(conn)
		if greeting, _ := r.ReadString('\n'); !strings.HasPrefix(greeting, "* OK") {
			t.Fatalf("IMAPS greeting %q", greeting)
		}
		resp := imapCommand(t, conn, r, "a1", "LOGIN "+address("alice")+" "+password("alice"))
		if !strings.HasPrefix(lastLine(resp), "a1 OK") {
			t.Errorf("IMAPS LOGIN: %q", resp)
		}
		resp = imapCommand(t, conn, r, "a2", "LOGIN "+address("alice")+" wrong")
		if strings.HasPrefix(lastLine(resp), "a2 OK") {
			t.Errorf("IMAPS second LOGIN accepted: %q", resp)
		}
	})
}

// imapCommand sends one tagged command and returns every response line up to and
// including the tagged completion.
func imapCommand(t *testing.T, conn net.Conn, r *bufio.Reader, tag, command string) string {
	t.Helper()
	if _, err := conn.Write([]byte(tag + " " + command + "\r\n")); err != nil {
		t.Fatalf("IMAP write: %v", err)
	}
	var b strings.Builder
	for {
		line, err := r.ReadString('\n')
		b.WriteString(line)
		if err != nil {
			t.Fatalf("IMAP %s %s: %v (read %q)", tag, strings.Fields(command)[0], err, b.String())
		}
		if strings.HasPrefix(line, tag+" ") {
			return strings.TrimRight(b.String(), "\r\n")
		}
	}
}

// submitClient opens an authenticated submission session (STARTTLS or implicit TLS).
func submitClient(t *testing.T, s *server, addr string, implicitTLS bool, user string) *smtp.Client {
	t.Helper()
	var c *smtp.Client
	var err error
	if implicitTLS {
		c, err = smtp.DialTLS(addr, s.tlsConfig(t))
	} else {
		c, err = smtp.DialStartTLS(addr, s.tlsConfig(t))
	}
	if err != nil {
		t.Fatalf("submission %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	c.CommandTimeout, c.SubmissionTimeout = wireTimeout, wireTimeout
	if err := c.Auth(sasl.NewPlainClient("", address(user), password(user))); err != nil {
		t.Fatalf("AUTH PLAIN as %s on %s: %v", address(user), addr, err)
	}
	return c
}

// sendOne sends one message in an open session and fails the test unless it is accepted.
func sendOne(t *testing.T, c *smtp.Client, from, to, subject string) {
	t.Helper()
	if err := c.Mail(from, nil); err != nil {
		t.Fatalf("MAIL FROM:<%s>: %v", from, err)
	}
	if err := c.Rcpt(to, nil); err != nil {
		t.Fatalf("RCPT TO:<%s>: %v", to, err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	if _, err := w.Write([]byte(message(from, to, subject, "hello"))); err != nil {
		t.Fatalf("DATA write: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("end of DATA (%q): %v", subject, err)
	}
}

// checkSMTPError asserts a go-smtp error carries the code and enhanced code.
func checkSMTPError(t *testing.T, what string, err error, code int, enhanced string) {
	t.Helper()
	var se *smtp.SMTPError
	if !errors.As(err, &se) {
		t.Errorf("%s: got %v, want %d %s", what, err, code, enhanced)
		return
	}
	gotEnh := ""
	if e := se.EnhancedCode; e != (smtp.EnhancedCode{}) {
		gotEnh = fmt.Sprintf("%d.%d.%d", e[0], e[1], e[2])
	}
	if se.Code != code || gotEnh != enhanced {
		t.Errorf("%s: got %d %s %q, want %d %s", what, se.Code, gotEnh, se.Message, code, enhanced)
	}
}

// waitForSubjects polls the user's INBOX until every subject is there (local delivery
// should be immediate; this tolerates a short hand-off).
func waitForSubjects(t *testing.T, s *server, user string, want ...string) []storedMessage {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		msgs := s.inbox(t, user)
		missing := 0
		for _, w := range want {
			if !hasSubject(msgs, w) {
				missing++
			}
		}
		if missing == 0 {
			return msgs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s INBOX has %q, want also %q", user, subjects(msgs), want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
