package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"github.com/repute-mail/repute/internal/app"
	"github.com/repute-mail/repute/internal/store"
)

// sendmailFixture is a configured data directory with a local domain a.test (the
// hostname mx.a.test is not local, so bare names are qualified with a.test), users u and
// v, an alias root -> u and an alias fwd -> ext@remote.test.
func sendmailFixture(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "r.toml")
	conf := "hostname = \"mx.a.test\"\ndata_dir = \"" + filepath.Join(dir, "data") + "\"\n[smtp]\nmax_message_size = 20000\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"domain", "add", "a.test"},
		{"user", "add", "u@a.test", "--password-stdin"},
		{"user", "add", "v@a.test", "--password-stdin"},
		{"alias", "add", "root@a.test", "u@a.test"},
		{"alias", "add", "fwd@a.test", "ext@remote.test"},
	} {
		if code, _, errs := runCLI(t, "pw\n", append(args, "--config", cfg)...); code != 0 {
			t.Fatalf("repute %s: %s", strings.Join(args, " "), errs)
		}
	}
	return cfg
}

var testInvoker = invoker{name: "cron", uid: "1000", fullName: "Cron Daemon"}

var testNow = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

// runSendmail runs the command as the symlinked binary would, with a fixed caller and
// clock, and returns the exit code and standard error.
func runSendmail(t *testing.T, stdin string, args ...string) (int, string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb}
	code := sendmailExit(e, sendmail(e, args, testInvoker, func() time.Time { return testNow }))
	if out.Len() > 0 {
		t.Errorf("sendmail wrote to standard output: %q", out.String())
	}
	return code, errb.String()
}

// stored is what a test finds in the store afterwards.
type stored struct {
	inbox  map[string][]string // user -> bodies in INBOX
	queue  []store.QueueEntry
	queued []string // bodies of the queue rows
}

func readStore(t *testing.T, cfgPath string) stored {
	t.Helper()
	e := &env{configPath: cfgPath}
	cfg, err := loadConfig(e)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	db, err := app.OpenStore(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s := stored{inbox: map[string][]string{}}
	for _, addr := range []string{"u@a.test", "v@a.test"} {
		u, err := db.UserByAddress(ctx, addr)
		if err != nil {
			t.Fatal(err)
		}
		mb, err := db.MailboxByName(ctx, u.ID, "INBOX")
		if err != nil {
			t.Fatal(err)
		}
		uids, err := db.MessageUIDs(ctx, mb.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		msgs, err := db.Messages(ctx, mb.ID, uids)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			body, err := db.Body(ctx, m.BlobID)
			if err != nil {
				t.Fatal(err)
			}
			s.inbox[addr] = append(s.inbox[addr], string(body))
		}
	}
	if s.queue, err = db.Queue(ctx); err != nil {
		t.Fatal(err)
	}
	for _, q := range s.queue {
		body, err := db.Body(ctx, q.BlobID)
		if err != nil {
			t.Fatal(err)
		}
		s.queued = append(s.queued, string(body))
	}
	return s
}

func TestSendmail(t *testing.T) {
	const simple = "Subject: hi\n\nhello\n"
	tests := []struct {
		name      string
		args      []string
		stdin     string
		code      int
		stderr    string            // substring, for failures
		local     []string          // users whose INBOX gets the message
		queued    []string          // remote recipients queued
		queueFrom string            // envelope sender of queue rows
		has       []string          // regexps the stored message matches
		hasNot    []string          // substrings it must not contain
		count     map[string]int    // field -> number of occurrences
		env       map[string]string // environment for the run
	}{
		{
			name: "command-line recipients", args: []string{"-f", "sender@a.test", "u@a.test", "ext@remote.test"}, stdin: simple,
			local: []string{"u@a.test"}, queued: []string{"ext@remote.test"}, queueFrom: "sender@a.test",
			has: []string{`^Received: from local \(uid 1000\)\r\n\tby mx\.a\.test \(Repute\) with local id [0-9a-v]{16};\r\n\tTue, 04 Mar 2025 05:06:07 \+0000\r\n`,
				"\r\nFrom: <sender@a.test>\r\n", "\r\nDate: Tue, 04 Mar 2025 05:06:07 \\+0000\r\n", "\r\nMessage-ID: <[0-9a-v]{16}@mx\\.a\\.test>\r\n",
				"\r\nSubject: hi\r\n\r\nhello\r\n$"},
		},
		{
			name: "-t reads To Cc Bcc and strips Bcc", args: []string{"-t", "-f", "sender@a.test"},
			stdin: "From: Sender <sender@a.test>\nTo: u@a.test\nCc: Other <ext@remote.test>,\n  root\nBcc: v@a.test\nSubject: t\n\nbody\n",
			local: []string{"u@a.test", "v@a.test"}, queued: []string{"ext@remote.test"}, queueFrom: "sender@a.test",
			has:    []string{"\r\nCc: Other <ext@remote.test>,\r\n  root\r\nSubject: t\r\n"},
			hasNot: []string{"Bcc", "v@a.test"},
			count:  map[string]int{"From": 1},
		},
		{
			name: "Bcc stripped without -t too", args: []string{"-f", "sender@a.test", "u@a.test"},
			stdin: "To: u@a.test\nBcc: secret@remote.test\n\nbody\n", local: []string{"u@a.test"},
			hasNot: []string{"Bcc", "secret"},
		},
		{
			name: "-t adds to command-line recipients", args: []string{"-ti", "root"}, stdin: "To: ext@remote.test\n\nbody\n",
			local: []string{"u@a.test"}, queued: []string{"ext@remote.test"}, queueFrom: "cron@a.test",
		},
		{
			name: "bare name qualified with the local domain, default sender from the caller", args: []string{"root"}, stdin: simple,
			local: []string{"u@a.test"}, has: []string{"\r\nFrom: \"Cron Daemon\" <cron@a\\.test>\r\n"},
		},
		{
			name: "alias forwarding elsewhere is queued", args: []string{"-f", "sender@a.test", "fwd@a.test"}, stdin: simple,
			queued: []string{"ext@remote.test"}, queueFrom: "sender@a.test",
		},
		{
			name: "null sender", args: []string{"-f", "<>", "ext@remote.test"}, stdin: simple,
			queued: []string{"ext@remote.test"}, queueFrom: "", has: []string{"\r\nFrom: <MAILER-DAEMON@mx\\.a\\.test>\r\n"},
		},
		{
			name: "empty -f is the null sender, attached -f qualified", args: []string{"-f", "", "-fbackup", "u@a.test"}, stdin: simple,
			local: []string{"u@a.test"}, has: []string{"\r\nFrom: <backup@a\\.test>\r\n"},
		},
		{
			name: "-F names the generated From", args: []string{"-F", "Jörg Backup", "-f", "backup@a.test", "u@a.test"}, stdin: simple,
			local: []string{"u@a.test"}, has: []string{"\r\nFrom: =\\?utf-8\\?q\\?J=C3=B6rg_Backup\\?= <backup@a\\.test>\r\n"},
		},
		{
			name: "existing From Date Message-ID kept", args: []string{"u@a.test"},
			stdin: "From: me@elsewhere.test\nDate: Mon, 3 Mar 2025 00:00:00 +0000\nMessage-ID: <keep@elsewhere.test>\n\nx\n",
			local: []string{"u@a.test"}, count: map[string]int{"From": 1, "Date": 1, "Message-ID": 1},
			has: []string{"Message-ID: <keep@elsewhere.test>"},
		},
		{
			name: "a lone dot ends the input", args: []string{"u@a.test"}, stdin: "Subject: d\n\nline1\n.\nline2\n",
			local: []string{"u@a.test"}, has: []string{"\r\nline1\r\n$"}, hasNot: []string{"line2"},
		},
		{
			name: "-i keeps the dot", args: []string{"-i", "u@a.test"}, stdin: "Subject: d\n\nline1\n.\nline2\n",
			local: []string{"u@a.test"}, has: []string{"\r\nline1\r\n\\.\r\nline2\r\n$"},
		},
		{
			name: "-oi keeps the dot, ignored options accepted", args: []string{"-oi", "-oem", "-B8BITMIME", "-v", "-bm", "-N", "never", "-R", "hdrs", "u@a.test"},
			stdin: "Subject: d\r\n\r\n.\r\nafter\r\n", local: []string{"u@a.test"}, has: []string{"\r\n\\.\r\nafter\r\n$"},
		},
		{
			name: "no header: all body, last line without newline", args: []string{"u@a.test"}, stdin: "just a line\nand another",
			local: []string{"u@a.test"}, has: []string{"\r\n\r\njust a line\r\nand another\r\n$"},
		},
		{
			name: "mbox From line dropped", args: []string{"u@a.test"}, stdin: "From cron Tue Mar  4 05:06:07 2025\nSubject: s\n\nb\n",
			local: []string{"u@a.test"}, hasNot: []string{"From cron"}, has: []string{"\r\nSubject: s\r\n"},
		},
		{
			name: "config from REPUTE_CONFIG", args: []string{"u@a.test"}, stdin: simple, local: []string{"u@a.test"},
			env: map[string]string{"REPUTE_CONFIG": "FIXTURE"},
		},
		{name: "unknown local user", args: []string{"u@a.test", "nobody@a.test", "nobody2"}, stdin: simple, code: exNoUser,
			stderr: "sendmail: no such local user: nobody@a.test, nobody2@a.test"},
		{name: "bare CR", args: []string{"u@a.test"}, stdin: "Subject: x\n\nbad\rline\n", code: exDataErr, stderr: "bare carriage return"},
		{name: "NUL", args: []string{"u@a.test"}, stdin: "Subject: x\n\nhello\n\x00.\nMAIL FROM:<x@a.test>\n", code: exDataErr, stderr: "NUL character"},
		{name: "oversize", args: []string{"u@a.test"}, stdin: "Subject: big\n\n" + strings.Repeat("0123456789012345678\n", 1100), code: exDataErr,
			stderr: "larger than the limit of 20000 bytes"},
		{name: "oversize single line", args: []string{"u@a.test"}, stdin: strings.Repeat("x", 200000), code: exDataErr, stderr: "larger than"},
		{name: "no recipients", args: []string{"-f", "a@a.test"}, stdin: simple, code: exUsage, stderr: "no recipients"},
		{name: "-t but no recipient fields", args: []string{"-t"}, stdin: "To: undisclosed-recipients:;\n\nx\n", code: exUsage, stderr: "no recipient addresses"},
		{name: "queue listing not supported", args: []string{"-bp"}, code: exUsage, stderr: "repute queue list"},
		{name: "SMTP mode not supported", args: []string{"-bs"}, code: exUsage, stderr: "-bs is not supported"},
		{name: "unknown option", args: []string{"-Z", "u@a.test"}, stdin: simple, code: exUsage, stderr: "unknown option -Z"},
		{name: "missing option value", args: []string{"u@a.test", "-f"}, stdin: simple, code: exUsage, stderr: "-f needs a value"},
		{name: "malformed recipient", args: []string{"u@@a.test"}, stdin: simple, code: exDataErr, stderr: "malformed"},
		{name: "address literal", args: []string{"x@[192.0.2.1]"}, stdin: simple, code: exDataErr, stderr: "address literals"},
		{name: "bad config", args: []string{"--config", "/nonexistent/repute.toml", "u@a.test"}, stdin: simple, code: exTempFail},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := sendmailFixture(t)
			args := tc.args
			if tc.env == nil {
				args = append([]string{"--config", cfg}, args...)
			}
			for k, v := range tc.env {
				t.Setenv(k, strings.ReplaceAll(v, "FIXTURE", cfg))
			}
			code, errs := runSendmail(t, tc.stdin, args...)
			if code != tc.code || !strings.Contains(errs, tc.stderr) {
				t.Fatalf("exit %d, stderr %q; want %d and %q", code, errs, tc.code, tc.stderr)
			}
			if tc.code != 0 {
				if !strings.HasPrefix(errs, "sendmail: ") {
					t.Errorf("stderr %q does not start with \"sendmail: \"", errs)
				}
				if s := readStore(t, cfg); len(s.inbox) != 0 || len(s.queue) != 0 {
					t.Errorf("a failed run stored mail: %v, %v", s.inbox, s.queue)
				}
				return
			}
			checkStored(t, readStore(t, cfg), tc.local, tc.queued, tc.queueFrom, tc.has, tc.hasNot, tc.count)
		})
	}
}

func checkStored(t *testing.T, s stored, local, queued []string, queueFrom string, has, hasNot []string, count map[string]int) {
	t.Helper()
	var msgs []string
	for _, u := range []string{"u@a.test", "v@a.test"} {
		want := 0
		for _, l := range local {
			if l == u {
				want = 1
			}
		}
		if len(s.inbox[u]) != want {
			t.Errorf("INBOX of %s has %d messages, want %d", u, len(s.inbox[u]), want)
		}
		msgs = append(msgs, s.inbox[u]...)
	}
	var rcpts []string
	for _, q := range s.queue {
		rcpts = append(rcpts, q.Rcpt)
		if q.From != queueFrom {
			t.Errorf("queue row for %s has sender %q, want %q", q.Rcpt, q.From, queueFrom)
		}
	}
	if strings.Join(rcpts, ",") != strings.Join(queued, ",") {
		t.Errorf("queued for %v, want %v", rcpts, queued)
	}
	for _, m := range append(msgs, s.queued...) {
		if bare := regexp.MustCompile(`[^\r]\n|\r[^\n]`).FindString(m); bare != "" {
			t.Errorf("stored message has a bare line ending: %q", bare)
		}
		for _, re := range has {
			if !regexp.MustCompile(re).MatchString(m) {
				t.Errorf("stored message does not match %q:\n%s", re, m)
			}
		}
		for _, s := range hasNot {
			if strings.Contains(m, s) {
				t.Errorf("stored message contains %q:\n%s", s, m)
			}
		}
		for field, n := range count {
			if got := len(regexp.MustCompile(`(?m)^`+field+`:`).FindAllString(m, -1)); got != n {
				t.Errorf("stored message has %d %s fields, want %d", got, field, n)
			}
		}
		for _, f := range []string{"From", "Date", "Message-ID", "Received"} {
			if !regexp.MustCompile(`(?m)^` + f + `:`).MatchString(m) {
				t.Errorf("stored message has no %s field", f)
			}
		}
	}
}

// TestSendmailMain runs the symlink entry point with the real caller identity.
func TestSendmailMain(t *testing.T) {
	cfg := sendmailFixture(t)
	var errb bytes.Buffer
	e := &env{stdin: strings.NewReader("Subject: main\n\nx\n"), stdout: io.Discard, stderr: &errb}
	if code := sendmailMain(e, []string{"--config=" + cfg, "-f", "ops@a.test", "v@a.test"}); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	s := readStore(t, cfg)
	if len(s.inbox["v@a.test"]) != 1 || !strings.Contains(s.inbox["v@a.test"][0], "Received: from local (uid ") {
		t.Errorf("v's INBOX = %q", s.inbox["v@a.test"])
	}
	e = &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: &errb}
	errb.Reset()
	if code := sendmailMain(e, []string{"--config", cfg, "-q"}); code != exUsage || !strings.Contains(errb.String(), "sendmail: option -q is not supported") {
		t.Errorf("-q: exit %d, %q", code, errb.String())
	}
}

func TestReadMessage(t *testing.T) {
	tests := []struct {
		in         string
		ignoreDots bool
		want       string
		code       int
	}{
		{"a\nb\n", false, "a\r\nb\r\n", 0},
		{"a\r\nb", false, "a\r\nb\r\n", 0},
		{"a\n.\nb\n", false, "a\r\n", 0},
		{"a\n.\r\nb\n", false, "a\r\n", 0},
		{"a\n..\nb\n", false, "a\r\n..\r\nb\r\n", 0}, // no dot-unstuffing
		{"a\n.\nb\n", true, "a\r\n.\r\nb\r\n", 0},
		{"a\r\r\nb\n", false, "", exDataErr},
		{"", false, "", 0},
		{strings.Repeat("y", 101), false, "", exDataErr},
		{strings.Repeat("y\n", 51), false, "", exDataErr},
	}
	for _, tc := range tests {
		got, err := readMessage(strings.NewReader(tc.in), 100, tc.ignoreDots)
		code := 0
		if err != nil {
			code = sendmailExit(&env{stderr: io.Discard}, err)
		}
		if code != tc.code || string(got) != tc.want {
			t.Errorf("readMessage(%.20q, %v) = %q, exit %d; want %q, %d", tc.in, tc.ignoreDots, got, code, tc.want, tc.code)
		}
	}
}

func TestAddressList(t *testing.T) {
	tests := []struct{ in, want string }{
		{"a@b.test", "a@b.test"},
		{`"Doe, J" <j@d.test>, k@d.test`, "j@d.test k@d.test"},
		{"root", "root"},
		{"root, Admin <admin>", "root <admin>"},
		{"undisclosed-recipients:;", ""},
		{"Team: x@y.test, z@y.test;", "x@y.test z@y.test"},
		{"  ", ""},
	}
	for _, tc := range tests {
		if got := strings.Join(addressList(tc.in), " "); got != tc.want {
			t.Errorf("addressList(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestSendmailSubmitPath checks that sendmail mail takes the submission path: mail from
// a local domain leaves DKIM-signed, and the authorship and suppression rules apply.
func TestSendmailSubmitPath(t *testing.T) {
	cfg := sendmailFixture(t)
	_, records, _ := runCLI(t, "", "dns", "records", "a.test", "--config", cfg)
	keys := map[string]string{} // "selector._domainkey.a.test" -> TXT text
	for _, line := range strings.Split(records, "\n") {
		if f := strings.Fields(line); len(f) > 3 && strings.Contains(f[0], "._domainkey.") && !strings.HasPrefix(line, ";") {
			keys[strings.TrimSuffix(f[0], ".")] = strings.Join(strings.Split(strings.Trim(strings.Join(f[3:], ""), `"`), `""`), "")
		}
	}
	if len(keys) == 0 {
		t.Fatalf("no DKIM record in:\n%s", records)
	}
	signer := func(msg string) string {
		vs, err := dkim.VerifyWithOptions(strings.NewReader(msg), &dkim.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
			if txt, ok := keys[strings.TrimSuffix(name, ".")]; ok {
				return []string{txt}, nil
			}
			return nil, fmt.Errorf("no key at %s", name)
		}})
		if err != nil {
			t.Fatal(err)
		}
		d := ""
		for _, v := range vs {
			if v.Err != nil {
				t.Errorf("signature d=%s: %v\n%s", v.Domain, v.Err, msg)
			}
			d = v.Domain
		}
		return d
	}
	code, errs := runSendmail(t, "From: Cron <cron@a.test>\nSubject: signed\n\nbody\n", "--config", cfg, "-f", "cron@a.test", "ext@remote.test", "u@a.test")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	code, errs = runSendmail(t, "From: me@elsewhere.test\nSubject: foreign\n\nbody\n", "--config", cfg, "v@a.test")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	s := readStore(t, cfg)
	if len(s.queued) != 1 || len(s.inbox["u@a.test"]) != 1 || len(s.inbox["v@a.test"]) != 1 {
		t.Fatalf("stored: %v, queued %d", s.inbox, len(s.queued))
	}
	for _, m := range []string{s.queued[0], s.inbox["u@a.test"][0]} {
		if d := signer(m); d != "a.test" {
			t.Errorf("message from cron@a.test signed by %q, want a.test:\n%s", d, m)
		}
		if !strings.HasPrefix(m, "Received: from local (uid 1000)") {
			t.Errorf("the trace field is not on top:\n%s", m)
		}
	}
	if d := signer(s.inbox["v@a.test"][0]); d != "" {
		t.Errorf("a message from a foreign domain was signed by %s", d)
	}

	e := &env{configPath: cfg}
	c, _ := loadConfig(e)
	db, err := app.OpenStore(context.Background(), c, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	db.Suppress(context.Background(), store.Suppression{SenderDomain: "a.test", Address: "gone@remote.test", Reason: "bad_mailbox", Source: "delivery"})
	db.Close()
	for _, tc := range []struct {
		stdin, args, stderr string
		code                int
	}{
		{"From: a@a.test\nFrom: b@a.test\n\nx\n", "u@a.test", "2 From fields", exDataErr},
		{"From: a@a.test, b@a.test\n\nx\n", "u@a.test", "2 addresses", exDataErr},
		{"Subject: x\n\nx\n", "gone@remote.test", "sendmail: <gone@remote.test> suppressed: bad_mailbox", exNoUser},
	} {
		code, errs := runSendmail(t, tc.stdin, "--config", cfg, "-f", "cron@a.test", tc.args)
		if code != tc.code || !strings.Contains(errs, tc.stderr) {
			t.Errorf("%q to %s: exit %d, %q; want %d and %q", tc.stdin, tc.args, code, errs, tc.code, tc.stderr)
		}
	}
	if s := readStore(t, cfg); len(s.queued) != 1 || len(s.inbox["u@a.test"]) != 1 {
		t.Errorf("refused messages were stored: %v, %d queued", s.inbox, len(s.queued))
	}
}
