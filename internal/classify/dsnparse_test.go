package classify

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/repute-mail/repute/internal/dsn"
)

// dsnWant is what a test expects of one recipient; diag is a substring of Diagnostic.
type dsnWant struct {
	rcpt, action, status, diag, remote string
}

// dsnCase is the expected reading of one file in testdata/dsn.
type dsnCase struct {
	file                      string
	format, mta, envID, msgID string
	from                      string
	rcpts                     []dsnWant
	exactDiag                 map[int]string // recipient index → whole Diagnostic, where it matters
}

var dsnCases = []dsnCase{
	{file: "rfc3464-simple.eml", format: "rfc3464", mta: "cs.utk.edu",
		rcpts: []dsnWant{{"louisl@larry.slip.umd.edu", "failed", "4.0.0", "426 connection timed out", ""}}},
	{file: "rfc3464-multi.eml", format: "rfc3464", mta: "nic.example.net", envID: "QQ314159",
		msgID: "<report-42.sender@example.com>", from: "sender@example.com",
		rcpts: []dsnWant{
			{"nobody@example.org", "failed", "5.1.1", "does not exist. Please try double-checking", "mx.example.org"},
			{"busy@example.org", "delayed", "4.2.2", "452 4.2.2 Mailbox full", "mx.example.org"},
			{"list@example.net", "expanded", "2.0.0", "", ""},
			{"fine@example.net", "delivered", "2.0.0", "250 2.0.0 Ok", "mail.example.net"},
		},
		exactDiag: map[int]string{0: "550 5.1.1 The email account that you tried to reach does not exist. " +
			"Please try double-checking the recipient's email address for typos or unnecessary spaces. " +
			"For more information, go to the help page."}},
	{file: "global-utf8.eml", format: "rfc3464", mta: "mx.example.de", msgID: "<grüße-1@example.com>", from: "alice@example.com",
		rcpts: []dsnWant{
			{"jörg@bücher.de", "failed", "5.1.1", "550 5.1.1 Benutzer „jörg“ unbekannt", "mx.bücher.de"},
			{"用户@例子.广告", "failed", "5.1.2", "Host or domain name not found", ""},
		}},
	{file: "postfix.eml", format: "postfix", mta: "mail.example.net",
		msgID: "<newsletter-2025-03.77@example.com>", from: "news@example.com",
		rcpts: []dsnWant{
			{"ghost@example.org", "failed", "5.1.1", "Recipient address rejected: User unknown in virtual mailbox table", "mx1.example.org"},
			{"full@example.org", "failed", "5.2.2", "552 5.2.2 <full@example.org>: Mailbox full", "mx1.example.org"},
		},
		exactDiag: map[int]string{1: "552 5.2.2 <full@example.org>: Mailbox full"}},
	{file: "postfix-delay.eml", format: "postfix", mta: "mail.example.net", msgID: "<slow-1@example.com>", from: "news@example.com",
		rcpts: []dsnWant{{"slow@example.org", "delayed", "4.7.1", "451 4.7.1 Please try again later", "mx.example.org"}}},
	{file: "exim.eml", format: "exim", mta: "mx.example.net", msgID: "<offers-9@example.com>", from: "news@example.com",
		rcpts: []dsnWant{
			{"nosuch@example.org", "failed", "5.1.1", "Recipient address rejected: User unknown in local recipient table", "mx.example.org"},
			{"gone@example.org", "failed", "", "Unrouteable address", ""},
		},
		exactDiag: map[int]string{0: "550 5.1.1 <nosuch@example.org>: Recipient address rejected: User unknown in local recipient table"}},
	{file: "exim-delay.eml", format: "exim", mta: "mx.example.net",
		rcpts:     []dsnWant{{"queued@example.org", "delayed", "4.7.1", "451 4.7.1 Greylisted", "mx.example.org"}},
		exactDiag: map[int]string{0: "451 4.7.1 Greylisted, please try again later"}},
	{file: "qmail.eml", format: "qmail", mta: "mail.example.net", msgID: "<qmail-orig-1@example.com>", from: "news@example.com",
		rcpts: []dsnWant{
			{"nobody@example.org", "failed", "5.1.1", "550 5.1.1 <nobody@example.org>: Recipient address rejected: User unknown", "192.0.2.77"},
			{"lost@nxdomain.example", "failed", "5.1.2", "couldn't find any host named nxdomain.example", ""},
		}},
	{file: "yahoo.eml", format: "yahoo", mta: "yahoo.com", msgID: "<yahoo-orig-5@example.com>", from: "news@example.com",
		rcpts: []dsnWant{{"gone@yahoo.com", "failed", "", "554: delivery error: dd This user doesn't have a yahoo.com account", ""}}},
	{file: "sendmail.eml", format: "sendmail", mta: "smtp.example.edu", msgID: "<course-news-3@example.com>", from: "news@example.com",
		rcpts: []dsnWant{{"student@example.edu", "failed", "5.1.1", "550 5.1.1 <student@example.edu>... User unknown", "mail.example.edu"}}},
	{file: "sendmail-textonly.eml", format: "sendmail", mta: "old.example.edu", msgID: "<seminar-7@example.com>", from: "news@example.com",
		rcpts: []dsnWant{{"prof@old.example.edu", "failed", "5.1.1", "550 5.1.1 prof@old.example.edu... User unknown", "inbox.old.example.edu"}}},
	{file: "exchange.eml", format: "exchange", mta: "AM6PR01MB1234.eurprd01.prod.outlook.com",
		msgID: "<promo-2025-03@example.com>", from: "news@example.com",
		rcpts: []dsnWant{{"nobody@contoso.com", "failed", "5.1.10", "RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup", ""}}},
	{file: "exchange-nodsn.eml", format: "exchange", mta: "EXCH01.fabrikam.example",
		msgID: "<promo-fabrikam@example.com>", from: "news@example.com",
		rcpts:     []dsnWant{{"pat@fabrikam.example", "failed", "5.1.1", "550 5.1.1 RESOLVER.ADR.RecipNotFound; not found", ""}},
		exactDiag: map[int]string{0: "550 5.1.1 RESOLVER.ADR.RecipNotFound; not found"}},
	{file: "exchange-legacy.eml", format: "exchange", mta: "corp.example",
		rcpts: []dsnWant{{"j.müller@corp.example", "failed", "5.1.1", "550 5.1.1 User unknown", "mx.corp.example"}}},
	{file: "gmail.eml", format: "gmail", mta: "googlemail.com", msgID: "<gmail-orig-8@example.com>", from: "news@example.com",
		rcpts: []dsnWant{{"no.such.user.4711@gmail.com", "failed", "5.1.1",
			"550 5.1.1 The email account that you tried to reach does not exist. Please try double-checking", "gmail-smtp-in.l.google.com"}}},
	{file: "gmail-delay.eml", format: "gmail", mta: "googlemail.com",
		rcpts: []dsnWant{{"greylist@example.org", "delayed", "4.7.1", "Greylisting in action", "mx.example.org"}}},
	{file: "gmail-textonly.eml", format: "gmail", mta: "googlemail.com", msgID: "<gmail-textonly-orig@example.com>", from: "news@example.com",
		rcpts: []dsnWant{{"closed@example.org", "failed", "5.2.1", "552 5.2.1 The email account that you tried to reach is disabled.", ""}}},
	{file: "truncated.eml", format: "rfc3464", mta: "relay.example.net",
		rcpts: []dsnWant{
			{"first@example.org", "failed", "5.1.1", "550 5.1.1 no such user", ""},
			{"second@example.org", "failed", "", "", ""},
		}},
	{file: "broken-mime.eml", format: "postfix", mta: "mail.example.net",
		rcpts:     []dsnWant{{"quota@example.org", "failed", "5.2.2", "552 5.2.2 Quota exceeded", "mx.example.org"}},
		exactDiag: map[int]string{0: "552 5.2.2 Quota exceeded"}},
	{file: "unknown.eml", format: "unknown", mta: "legacy.example",
		rcpts: []dsnWant{{"retired@legacy.example", "failed", "5.2.1", "550 5.2.1 <retired@legacy.example>... Mailbox disabled", ""}}},
}

// dsnNotBounces are files in testdata/dsn that ParseDSN must refuse.
var dsnNotBounces = []string{"vacation.eml", "vacation-daemon.eml", "normal.eml"}

// dsnToCRLF turns LF line endings into CRLF, leaving existing CRLFs alone.
func dsnToCRLF(b []byte) []byte {
	return bytes.ReplaceAll(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")), []byte("\n"), []byte("\r\n"))
}

// eachLineEnding runs fn on testdata/dir/file as written (LF) and with CRLF line endings.
func eachLineEnding(t *testing.T, dir, file string, fn func(t *testing.T, data []byte)) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", dir, file))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range []struct {
		name string
		data []byte
	}{{"lf", data}, {"crlf", dsnToCRLF(data)}} {
		t.Run(file+"/"+v.name, func(t *testing.T) { fn(t, v.data) })
	}
}

func TestParseDSNTestdata(t *testing.T) {
	for _, tc := range dsnCases {
		eachLineEnding(t, "dsn", tc.file, func(t *testing.T, data []byte) {
			rep, err := ParseDSN(data)
			if err != nil {
				t.Fatalf("ParseDSN: %v", err)
			}
			dsnCheckReport(t, rep, tc)
		})
	}
}

func dsnCheckReport(t *testing.T, rep *BounceReport, tc dsnCase) {
	t.Helper()
	check := func(what, got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %q, want %q", what, got, want)
		}
	}
	check("Format", rep.Format, tc.format)
	check("ReportingMTA", rep.ReportingMTA, tc.mta)
	check("OriginalEnvelopeID", rep.OriginalEnvelopeID, tc.envID)
	check("OriginalMessageID", rep.OriginalMessageID, tc.msgID)
	check("OriginalFrom", rep.OriginalFrom, tc.from)
	if len(rep.Recipients) != len(tc.rcpts) {
		t.Fatalf("got %d recipients, want %d: %+v", len(rep.Recipients), len(tc.rcpts), rep.Recipients)
	}
	for i, w := range tc.rcpts {
		r := rep.Recipients[i]
		check(fmt.Sprintf("[%d].Recipient", i), r.Recipient, w.rcpt)
		check(fmt.Sprintf("[%d].Action", i), r.Action, w.action)
		check(fmt.Sprintf("[%d].Status", i), r.Status, w.status)
		check(fmt.Sprintf("[%d].RemoteMTA", i), r.RemoteMTA, w.remote)
		if !strings.Contains(r.Diagnostic, w.diag) || w.diag == "" && r.Diagnostic != "" {
			t.Errorf("[%d].Diagnostic = %q, want it to contain %q", i, r.Diagnostic, w.diag)
		}
		if want, ok := tc.exactDiag[i]; ok {
			check(fmt.Sprintf("[%d].Diagnostic", i), r.Diagnostic, want)
		}
	}
}

// TestParseDSNTestdataCovered keeps the table in step with the directory.
func TestParseDSNTestdataCovered(t *testing.T) {
	known := map[string]bool{}
	for _, tc := range dsnCases {
		known[tc.file] = true
	}
	for _, f := range dsnNotBounces {
		known[f] = true
	}
	files, err := filepath.Glob(filepath.Join("testdata", "dsn", "*.eml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !known[filepath.Base(f)] {
			t.Errorf("%s has no expectation in dsnCases or dsnNotBounces", f)
		}
	}
}

func TestParseDSNNotBounce(t *testing.T) {
	inputs := map[string][]byte{
		"empty":       nil,
		"no header":   []byte("just some text\nwithout a header\n"),
		"blank first": []byte("\nSubject: x\n\nbody"),
		"plain mail":  []byte("From: a@example.com\nTo: b@example.org\nSubject: hello\n\nHello."),
		// A DSN forwarded as an attachment is the forwarder's message, not a bounce.
		"forwarded dsn": []byte("From: Carol <carol@example.org>\nSubject: Fwd: bounce\nContent-Type: multipart/mixed; boundary=b\n\n" +
			"--b\nContent-Type: text/plain\n\nsee attached\n--b\nContent-Type: message/rfc822\n\n" +
			"From: MAILER-DAEMON@x.example\nContent-Type: multipart/report; report-type=delivery-status; boundary=c\n\n" +
			"--c\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; x.example\n\nFinal-Recipient: rfc822; a@b.example\nAction: failed\n--c--\n--b--\n"),
		// A daemon's notice in no known shape and without a bounce subject.
		"daemon notice": []byte("From: postmaster@example.org\nSubject: Your mailbox is almost full\n\nPlease clean up."),
	}
	for _, f := range dsnNotBounces {
		data, err := os.ReadFile(filepath.Join("testdata", "dsn", f))
		if err != nil {
			t.Fatal(err)
		}
		inputs[f] = data
	}
	arfs, _ := filepath.Glob(filepath.Join("testdata", "arf", "*.eml"))
	for _, f := range arfs {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inputs["arf/"+filepath.Base(f)] = data
	}
	for name, data := range inputs {
		t.Run(name, func(t *testing.T) {
			rep, err := ParseDSN(data)
			if !errors.Is(err, ErrNotBounce) {
				t.Fatalf("ParseDSN = %+v, %v; want ErrNotBounce", rep, err)
			}
			if rep != nil {
				t.Errorf("report %+v returned with an error", rep)
			}
		})
	}
}

// TestParseDSNOwnNotices reads what internal/dsn composes: Repute must understand its
// own bounces, for example when one comes back through a forwarding address.
func TestParseDSNOwnNotices(t *testing.T) {
	now := time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)
	orig := []byte("From: alice@example.com\r\nTo: bob@example.org\r\nSubject: hi\r\nMessage-ID: <own-1@example.com>\r\n\r\nHello\r\n")
	tests := []struct {
		name    string
		m       dsn.Message
		want    []dsnWant
		msgID   string
		subject string
	}{
		{
			name: "failed with original",
			m: dsn.Message{ReportingMTA: "mail.example.com", To: "alice@example.com", OriginalID: "q1",
				Recipients: []dsn.Recipient{{Address: "bob@example.org", Action: dsn.Failed, Status: "5.1.1",
					RemoteMTA: "mx.example.org", Diagnostic: "550-5.1.1 no such user\r\n550 5.1.1 try again never"}},
				Original: orig},
			want:  []dsnWant{{"bob@example.org", "failed", "5.1.1", "550 5.1.1 no such user try again never", "mx.example.org"}},
			msgID: "<own-1@example.com>",
		},
		{
			name: "delayed, header only, two recipients",
			m: dsn.Message{ReportingMTA: "mail.example.com", To: "alice@example.com",
				Recipients: []dsn.Recipient{
					{Address: "c@example.org", Action: dsn.Delayed, Status: "4.2.1", Diagnostic: "421 4.2.1 busy", WillRetryUntil: now.Add(48 * time.Hour)},
					{Address: "d@example.org", Action: dsn.Delayed, Diagnostic: "connection refused"},
				},
				Original: orig},
			want: []dsnWant{
				{"c@example.org", "delayed", "4.2.1", "421 4.2.1 busy", ""},
				{"d@example.org", "delayed", "4.0.0", "connection refused", ""},
			},
			msgID: "<own-1@example.com>",
		},
		{
			name: "utf-8 recipient, no original",
			m: dsn.Message{ReportingMTA: "mail.example.com", To: "alice@example.com",
				Recipients: []dsn.Recipient{{Address: "jörg+news@bücher.de", Action: dsn.Failed, Status: "5.1.1",
					RemoteMTA: "mx.bücher.de", Diagnostic: "550 5.1.1 Benutzer „jörg“ unbekannt"}}},
			want: []dsnWant{{"jörg+news@xn--bcher-kva.de", "failed", "5.1.1", "550 5.1.1 Benutzer „jörg“ unbekannt", "mx.xn--bcher-kva.de"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := dsn.Compose(tc.m, now)
			if err != nil {
				t.Fatal(err)
			}
			rep, err := ParseDSN(out)
			if err != nil {
				t.Fatalf("ParseDSN: %v\n%s", err, out)
			}
			dsnCheckReport(t, rep, dsnCase{format: "rfc3464", mta: "mail.example.com", msgID: tc.msgID,
				from: map[bool]string{true: "alice@example.com"}[tc.msgID != ""], rcpts: tc.want})
		})
	}
}

// TestParseDSNReputeGoldens reads every golden notice of internal/dsn.
func TestParseDSNReputeGoldens(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "dsn", "testdata", "*.eml"))
	if len(files) == 0 {
		t.Skip("no golden notices in ../dsn/testdata")
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rep, err := ParseDSN(data)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if rep.Format != "rfc3464" || len(rep.Recipients) == 0 || rep.ReportingMTA == "" {
			t.Errorf("%s: %+v", f, rep)
		}
		for _, r := range rep.Recipients {
			if r.Recipient == "" || (r.Action != "failed" && r.Action != "delayed") || r.Status == "" {
				t.Errorf("%s: recipient %+v", f, r)
			}
		}
	}
}

// TestParseDSNConformance runs the shared real-world report samples through ParseDSN:
// none of them is a bounce (they are DMARC and TLS reports), and none may be taken for one.
func TestParseDSNConformance(t *testing.T) {
	files := dsnConformanceFiles(t)
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if rep, err := ParseDSN(data); !errors.Is(err, ErrNotBounce) {
			t.Errorf("%s: got %+v, %v; want ErrNotBounce", filepath.Base(f), rep, err)
		}
	}
}

// dsnConformanceFiles lists the .eml samples in shared/conformance, which lies beside the
// repository; the test is skipped where it is absent.
func dsnConformanceFiles(t *testing.T) []string {
	t.Helper()
	dir := filepath.Join("..", "..", "..", "shared", "conformance", "dmarc-tlsrpt-samples")
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("shared conformance samples not found at %s (they live beside the repository): %v", dir, err)
	}
	var files []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".eml") {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Skipf("no .eml samples under %s", dir)
	}
	return files
}

// dsnReport builds a multipart/report around a delivery-status body.
func dsnReport(status string) []byte {
	return []byte("From: MAILER-DAEMON@mx.example\nSubject: Undelivered Mail\n" +
		"Content-Type: multipart/report; report-type=delivery-status; boundary=\"BB\"\n\n" +
		"--BB\nContent-Type: text/plain\n\nfailed\n--BB\nContent-Type: message/delivery-status\n\n" +
		status + "\n--BB--\n")
}

func TestParseDSNRobustness(t *testing.T) {
	tests := []struct {
		name string
		msg  []byte
		want []dsnWant
	}{
		{"no empty line between groups", dsnReport("Reporting-MTA: dns; mx.example\nFinal-Recipient: rfc822; a@x.example\nAction: failed\nStatus: 5.1.1\n" +
			"Final-Recipient: rfc822; b@x.example\nAction: failed\nStatus: 5.2.2"),
			[]dsnWant{{"a@x.example", "failed", "5.1.1", "", ""}, {"b@x.example", "failed", "5.2.2", "", ""}}},
		{"unindented continuation", dsnReport("Reporting-MTA: dns; mx.example\n\nFinal-Recipient: rfc822; a@x.example\nAction: failed\nStatus: 5.1.1\n" +
			"Diagnostic-Code: smtp; 550-5.1.1 first line\n550 5.1.1 second line"),
			[]dsnWant{{"a@x.example", "failed", "5.1.1", "550 5.1.1 first line second line", ""}}},
		{"action inferred, status from diagnostic", dsnReport("Final-Recipient: rfc822;<a@x.example>\nDiagnostic-Code: smtp; 452 4.2.2 over quota, host 10.4.5.6"),
			[]dsnWant{{"a@x.example", "delayed", "4.2.2", "over quota", ""}}},
		{"status is not an IP address", dsnReport("Final-Recipient: rfc822; a@x.example\nAction: failed\nDiagnostic-Code: smtp; rejected by 5.6.7.8 policy"),
			[]dsnWant{{"a@x.example", "failed", "", "rejected by 5.6.7.8", ""}}},
		{"original-recipient only", dsnReport("Original-Recipient: rfc822; orig@x.example\nAction: failed\nStatus: 5.0.0"),
			[]dsnWant{{"orig@x.example", "failed", "5.0.0", "", ""}}},
		{"base64 status part", []byte("From: MAILER-DAEMON@mx.example\nContent-Type: multipart/report; boundary=q\n\n--q\n" +
			"Content-Type: message/delivery-status\nContent-Transfer-Encoding: base64\n\n" +
			"RmluYWwtUmVjaXBpZW50OiByZmM4MjI7IGFAeC5leGFtcGxlDQpBY3Rpb246IGZhaWxlZA0KU3Rh\ndHVzOiA1LjQuNA0K\n--q--\n"),
			[]dsnWant{{"a@x.example", "failed", "5.4.4", "", ""}}},
		{"bare CR line ends are not needed", []byte(strings.ReplaceAll(string(dsnReport("Final-Recipient: rfc822; a@x.example\nAction: failed")), "\n", "\r\n")),
			[]dsnWant{{"a@x.example", "failed", "", "", ""}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := ParseDSN(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			dsnCheckReport(t, rep, dsnCase{format: rep.Format, mta: rep.ReportingMTA, rcpts: tc.want})
		})
	}
}

// TestParseDSNLimits feeds oversized and pathological input: the parser must keep to its
// caps and finish quickly.
func TestParseDSNLimits(t *testing.T) {
	var many strings.Builder
	for i := range 1500 {
		fmt.Fprintf(&many, "\nFinal-Recipient: rfc822; r%d@x.example\nAction: failed\nStatus: 5.1.1\n", i)
	}
	longDiag := "Final-Recipient: rfc822; a@x.example\nAction: failed\nDiagnostic-Code: smtp; 550 " +
		strings.Repeat("very long text ", 20000) + "\n"
	deep := "From: MAILER-DAEMON@mx.example\nSubject: Returned mail\n"
	for i := range 200 {
		deep += fmt.Sprintf("Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n", i, i)
	}
	deep += "Content-Type: message/delivery-status\n\nFinal-Recipient: rfc822; deep@x.example\nAction: failed\n"
	huge := append(dsnReport("Final-Recipient: rfc822; a@x.example\nAction: failed"), bytes.Repeat([]byte("x"), dsnMaxInput)...)

	tests := []struct {
		name  string
		msg   []byte
		check func(t *testing.T, rep *BounceReport, err error)
	}{
		{"many recipients", dsnReport(many.String()), func(t *testing.T, rep *BounceReport, err error) {
			if err != nil || len(rep.Recipients) != dsnMaxRecipients {
				t.Fatalf("got %v recipients, err %v; want %d", len(rep.Recipients), err, dsnMaxRecipients)
			}
		}},
		{"long diagnostic", dsnReport(longDiag), func(t *testing.T, rep *BounceReport, err error) {
			if err != nil || len(rep.Recipients) != 1 || len(rep.Recipients[0].Diagnostic) > dsnMaxField || len(rep.Recipients[0].Diagnostic) < 1000 {
				t.Fatalf("err %v, report %.200v", err, rep)
			}
		}},
		{"deep nesting", []byte(deep), func(t *testing.T, rep *BounceReport, err error) {
			// The status part lies below the depth limit, so it is not seen; what remains
			// is a daemon's message with a bounce subject.
			if err != nil || len(rep.Recipients) != 0 || rep.Format != "unknown" {
				t.Fatalf("got %+v, %v", rep, err)
			}
		}},
		{"larger than the input limit", huge, func(t *testing.T, rep *BounceReport, err error) {
			if err != nil || len(rep.Recipients) != 1 {
				t.Fatalf("got %+v, %v", rep, err)
			}
		}},
		{"many boundaries", append([]byte("From: MAILER-DAEMON@x\nSubject: Returned mail\nContent-Type: multipart/mixed; boundary=z\n\n"),
			bytes.Repeat([]byte("--z\n\n"), 1<<20)...), func(t *testing.T, rep *BounceReport, err error) {
			if err != nil {
				t.Fatal(err)
			}
		}},
		{"many unterminated tags", append([]byte("From: MAILER-DAEMON@x\nSubject: Returned mail\nContent-Type: text/html\n\n"),
			bytes.Repeat([]byte("<a <b \x00"), 1<<20)...), func(t *testing.T, rep *BounceReport, err error) {
			if err != nil {
				t.Fatal(err)
			}
		}},
		{"many angle lines", append([]byte("From: MAILER-DAEMON@x\nSubject: failure notice\n\nHi. This is the qmail-send program at x.\n\n"),
			bytes.Repeat([]byte("<a@b>:\nRemote host said: 550 5.1.1 no\n"), 200000)...), func(t *testing.T, rep *BounceReport, err error) {
			if err != nil || len(rep.Recipients) != dsnMaxRecipients {
				t.Fatalf("got %d recipients, %v", len(rep.Recipients), err)
			}
		}},
		{"many folded lines", append([]byte("From: MAILER-DAEMON@x\nSubject: Returned mail\nX-Long: a\n"),
			bytes.Repeat([]byte(" folded\n"), 1<<20)...), func(t *testing.T, rep *BounceReport, err error) {
			if err != nil {
				t.Fatal(err)
			}
		}},
		{"many unicode escapes", dsnReport("Final-Recipient: utf-8; a@x\nAction: failed\nDiagnostic-Code: smtp; 550 " +
			strings.Repeat(`\x{`, 30000)), func(t *testing.T, rep *BounceReport, err error) {
			if err != nil || len(rep.Recipients) != 1 {
				t.Fatalf("got %+v, %v", rep, err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			rep, err := ParseDSN(tc.msg)
			tc.check(t, rep, err)
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

func TestDSNFindStatus(t *testing.T) {
	tests := map[string]string{
		"550 5.1.1 user unknown":          "5.1.1",
		"550-5.1.1 x":                     "5.1.1",
		"Sorry (#5.1.2)":                  "5.1.2",
		"host [5.6.7.8] said 550":         "",
		"from 10.2.3.4 then 4.4.1 later":  "4.4.1",
		"5.1.10 RESOLVER":                 "5.1.10",
		"version 2.6.32.1 and 5.7.1 deny": "5.7.1",
		"6.1.1 not a class":               "",
		"":                                "",
	}
	for in, want := range tests {
		if got := dsnFindStatus(in); got != want {
			t.Errorf("dsnFindStatus(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDSNCleanDiagnostic(t *testing.T) {
	tests := map[string]string{
		"550-5.1.1 a\n 550-5.1.1 b\n 550 5.1.1 c": "550 5.1.1 a b c",
		"550-first\n 550-second\n 550 third":      "550 first second third",
		"  554   delivery\terror ":                "554 delivery error",
		"421 4.7.0 try 421 later":                 "421 4.7.0 try 421 later",
		"no code at all":                          "no code at all",
	}
	for in, want := range tests {
		if got := dsnCleanDiagnostic(in); got != want {
			t.Errorf("dsnCleanDiagnostic(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDSNSplitMultipart(t *testing.T) {
	tests := []struct {
		body string
		want []string
	}{
		{"pre\n--b\nA\n--b\nB\n--b--\nepilogue", []string{"A", "B"}},
		{"--b\r\nA\r\n--b--\r\n", []string{"A"}},
		{"--b\nA\n--bb\nstill A\n--b\nB", []string{"A\n--bb\nstill A", "B"}}, // unterminated
		{"x--b\nno delimiter", nil},
		{"--b   \nA\n--b--", []string{"A"}},
	}
	for _, tc := range tests {
		got := dsnSplitMultipart([]byte(tc.body), "b")
		var gs []string
		for _, g := range got {
			gs = append(gs, string(g))
		}
		if fmt.Sprint(gs) != fmt.Sprint(tc.want) {
			t.Errorf("dsnSplitMultipart(%q) = %q, want %q", tc.body, gs, tc.want)
		}
	}
}

func TestDSNDecoders(t *testing.T) {
	if got := string(dsnDecodeQP([]byte("a=3Db=\r\nc=ZZ=4"))); got != "a=bc=ZZ=4" {
		t.Errorf("dsnDecodeQP = %q", got)
	}
	if got := string(dsnDecodeBase64([]byte("aGVs\nbG8*gd29y!bGQ=\n"))); got != "hello world" {
		t.Errorf("dsnDecodeBase64 = %q", got)
	}
	if got := dsnDecodeUnicode(`j\x{F6}rg\x{2B}x \x{ZZ} \x{110000} \x{`); got != `jörg+x \x{ZZ} \x{110000} \x{` {
		t.Errorf("dsnDecodeUnicode = %q", got)
	}
	if got := dsnHTMLText("<p>a&amp;b</p><style>x{}</style><pre>l1\nl2</pre>c\nd"); got != "\na&b\n\nl1\nl2\nc d" {
		t.Errorf("dsnHTMLText = %q", got)
	}
}
