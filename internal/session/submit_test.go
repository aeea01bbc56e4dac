package session

import (
	"bufio"
	"crypto/tls"
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

// TestSubmissionAuthors checks that the header's authors are checked at the end of DATA
// (internal/submit decides; the session answers) and that the session stays usable.
func TestSubmissionAuthors(t *testing.T) {
	e := start(t, nil)
	tc, err := tls.Dial("tcp", e.subs, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	c := &client{t: t, nc: tc, br: bufio.NewReader(tc)}
	tc.SetDeadline(time.Now().Add(20 * time.Second))
	c.expect("220")
	c.cmd("EHLO c.test", "250")
	c.cmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00alice@a.test\x00secret")), "235")
	send := func(header, want string) string {
		t.Helper()
		c.cmd("MAIL FROM:<alice@a.test>", "250")
		c.cmd("RCPT TO:<carol@remote.test>", "250")
		c.cmd("DATA", "354")
		return c.cmd(header+"\r\nbody\r\n.", want)
	}
	if got := send("From: Bob <bob@a.test>\r\n", "553 5.7.1"); !strings.Contains(got, "<bob@a.test>") {
		t.Errorf("refusal %q does not name the address", got)
	}
	send("From: alice@a.test\r\nFrom: alice@a.test\r\n", "550 5.7.1")
	send("From: alice@a.test, sales@a.test\r\n", "550 5.7.1")
	send("From: Sales <sales@a.test>\r\nSubject: ok\r\n", "250 2.0.0")
	// MAIL and RCPT are checked by internal/submit too.
	c.cmd("MAIL FROM:<bob@a.test>", "553 5.7.1")
	c.cmd("MAIL FROM:<alice@a.test>", "250")
	c.cmd("RCPT TO:<x@[192.0.2.1]>", "550 5.1.2")
	c.cmd("RCPT TO:<nobody@nowhere.a.test>", "250")
	c.cmd("QUIT", "221")

	var body string
	e.db.Read().QueryRow(`SELECT data FROM blobs`).Scan(&body)
	if !strings.HasPrefix(body, "Received: from c.test ([127.0.0.1])\r\n\tby mx.a.test (Repute) with ESMTPSA id ") ||
		!strings.Contains(body, "\r\nFrom: Sales <sales@a.test>\r\nSubject: ok\r\n\r\nbody\r\n") {
		t.Errorf("stored message:\n%s", body)
	}
}
