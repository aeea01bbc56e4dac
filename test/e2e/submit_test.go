package e2e

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// TestSubmitAuthors checks over the submission port who a user may send as, in the
// envelope and in the header: her own address and aliases, what the admin granted her,
// but not another user's address (on this or another hosted domain), not an address
// only her catch-all receives, and never several authors at once. Refusals of the header
// come at the end of DATA: 553 5.7.1 naming the address, 550 5.7.1 for several authors
// (permanent: a 4xx would have the client retry for days).
func TestSubmitAuthors(t *testing.T) {
	t.Parallel()
	s := newServer(t, serverOptions{ExtraDomains: []string{"b.test", "c.test"}})
	s.mustCLI("", "alias", "add", "sales@"+testDomain, address("alice"))
	s.mustCLI("", "alias", "add", "@"+testDomain, address("alice")) // alice owns the catch-all
	s.start()
	c := submitClient(t, s, s.Submission(), false, "alice")

	// send submits a message to carol with the given From/Sender fields and envelope
	// sender; it returns the message's subject and the error of the transaction.
	send := func(from, fields string) (string, error) {
		subj := "authors " + uniqueID()
		msg := fmt.Sprintf("%sTo: <%s>\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s@a.test>\r\n\r\nbody\r\n",
			fields, address("carol"), subj, time.Now().Format(time.RFC1123Z), uniqueID())
		err := sendMessage(c, from, []string{address("carol")}, []byte(msg))
		if err != nil {
			_ = c.Reset()
		}
		return subj, err
	}
	alice := address("alice")
	tests := []struct {
		name, from, fields string
		code               int // 0: accepted
		enhanced, text     string
	}{
		{"own address", alice, "From: Alice <alice@a.test>\r\n", 0, "", ""},
		{"+tag", "alice+news@a.test", "From: <alice+news@a.test>\r\n", 0, "", ""},
		{"alias to her", alice, "From: Sales <sales@a.test>\r\n", 0, "", ""},
		{"no From: added from the envelope", alice, "", 0, "", ""},
		{"another user", alice, "From: Bob <bob@a.test>\r\n", 553, "5.7.1", "From address <bob@a.test> not owned by authenticated user alice@a.test"},
		{"another hosted domain", alice, "From: Bob <bob@b.test>\r\n", 553, "5.7.1", "<bob@b.test>"},
		{"Sender of another user", alice, "From: alice@a.test\r\nSender: bob@a.test\r\n", 553, "5.7.1", "Sender address <bob@a.test>"},
		{"catch-all in the header", alice, "From: nobody@a.test\r\n", 553, "5.7.1", "<nobody@a.test>"},
		{"catch-all as envelope sender", "nobody@a.test", "From: alice@a.test\r\n", 553, "5.7.1", "Sender address <nobody@a.test>"},
		{"several From addresses", alice, "From: alice@a.test, sales@a.test\r\n", 550, "5.7.1", "exactly one author"},
		{"several From fields", alice, "From: alice@a.test\r\nFrom: sales@a.test\r\n", 550, "5.7.1", "2 From fields"},
		{"domain not granted yet", alice, "From: news@c.test\r\n", 553, "5.7.1", "<news@c.test>"},
	}
	var accepted, refused []string
	noFrom := ""
	for _, tc := range tests {
		subj, err := send(tc.from, tc.fields)
		if tc.code == 0 {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			accepted = append(accepted, subj)
			if tc.fields == "" {
				noFrom = subj
			}
			continue
		}
		refused = append(refused, subj)
		checkSMTPError(t, tc.name, err, tc.code, tc.enhanced)
		var se *smtp.SMTPError
		if errors.As(err, &se) && !strings.Contains(se.Message, tc.text) {
			t.Errorf("%s: reply %q does not say %q", tc.name, se.Message, tc.text)
		}
	}

	// A grant reaches the running server within a second or two, and so does its end.
	s.mustCLI("", "user", "grant", alice, "@c.test")
	var grantedSubj string
	waitFor(t, 10*time.Second, "the grant of @c.test to take effect", func() (bool, string) {
		subj, err := send(alice, "From: News <news@c.test>\r\n")
		if err != nil {
			refused = append(refused, subj)
			return false, err.Error()
		}
		grantedSubj = subj
		return true, ""
	})
	accepted = append(accepted, grantedSubj)
	s.mustCLI("", "user", "revoke", alice, "@c.test")
	waitFor(t, 10*time.Second, "the revocation of @c.test to take effect", func() (bool, string) {
		subj, err := send(alice, "From: News <news@c.test>\r\n")
		if err == nil {
			accepted = append(accepted, subj)
			return false, "still accepted"
		}
		refused = append(refused, subj)
		checkSMTPError(t, "after revoking", err, 553, "5.7.1")
		return true, ""
	})
	_ = c.Quit()

	msgs := waitForSubjects(t, s, "carol", accepted...)
	for _, m := range msgs {
		for _, r := range refused {
			if m.Subject == r {
				t.Errorf("refused message %q was delivered", r)
			}
		}
	}
	for _, m := range s.messages(t, "carol", "INBOX", true) {
		if m.Subject == noFrom && !strings.Contains(m.Body, "\r\nFrom: <alice@a.test>\r\n") {
			t.Errorf("message without a From did not get the envelope sender's:\n%s", headerBlock(m.Body))
		}
	}
}

// TestSendmailDKIM checks that mail injected with `repute sendmail` leaves DKIM-signed
// with the key of its From domain, as mail submitted over SMTP does, by verifying what
// the receiving host got with Debian's python3-dkim; and that a From of a domain that is
// not ours is delivered unsigned (the local invoker may send as anyone, but only our
// domains are signed).
func TestSendmailDKIM(t *testing.T) {
	t.Parallel()
	z := newZone(t)
	a, b := hostPair(t, z, serverOptions{Queue: fastQueue}, serverOptions{Queue: fastQueue})
	keys := publishDKIM(t, z, a, "a.test")
	a.start()
	b.start()

	subj := "sendmail signed " + uniqueID()
	a.runSendmail(t, "", outboundMessage("alice@a.test", []string{"bob@b.test"}, subj, uniqueID(), "injected locally"),
		"-f", "alice@a.test", "bob@b.test")
	subjNoFrom := "sendmail without From " + uniqueID()
	a.runSendmail(t, "", []byte("Subject: "+subjNoFrom+"\n\nsendmail writes the From\n"), "-f", "cron@a.test", "-F", "Cron", "bob@b.test")
	subjForeign := "sendmail foreign From " + uniqueID()
	a.runSendmail(t, "", outboundMessage("someone@elsewhere.test", []string{"bob@b.test"}, subjForeign, uniqueID(), "not ours"),
		"-f", "alice@a.test", "bob@b.test")

	for _, s := range []string{subj, subjNoFrom} {
		m := b.waitForMessage(t, "bob", deliveryTimeout, fmt.Sprintf("%q", s), withSubject(s))
		if !strings.Contains(m.Body, "DKIM-Signature:") || !strings.Contains(m.Body, "d=a.test") {
			t.Fatalf("sendmail message %q arrived without a signature of a.test:\n%s", s, headerBlock(m.Body))
		}
		pythonVerify(t, []byte(m.Body), keys)
		if !strings.Contains(m.Body, "dkim=pass header.d=a.test") {
			t.Errorf("b's own check of %q did not pass DKIM:\n%s", s, headerBlock(m.Body))
		}
	}
	m := b.waitForMessage(t, "bob", deliveryTimeout, fmt.Sprintf("%q", subjForeign), withSubject(subjForeign))
	if strings.Contains(m.Body, "DKIM-Signature:") {
		t.Errorf("a message from elsewhere.test was signed:\n%s", headerBlock(m.Body))
	}
}
