package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/repute-mail/repute/internal/obs"
)

// Helpers of the outbound tests: the queue tools, submission, mailboxes of any local
// domain, the mail-event log and delivery status notifications.

const (
	deliveryTimeout = 30 * time.Second // a deliverable message reaches the next hop
	dsnSubject      = "Undelivered Mail Returned to Sender"
)

// queueEntry is one entry of `repute queue list --json` (and `queue show --json`).
type queueEntry struct {
	ID          queueID         `json:"id"`
	MsgID       string          `json:"msg_id"`
	From        string          `json:"from"`
	Rcpt        string          `json:"rcpt"`
	Domain      string          `json:"domain"`
	Size        int64           `json:"size"`
	Created     json.RawMessage `json:"created"`
	NextAttempt json.RawMessage `json:"next_attempt"`
	Attempts    int             `json:"attempts"`
	State       string          `json:"state"`
	LastError   string          `json:"last_error"`
	LastCode    int             `json:"last_code"`
	LastMX      string          `json:"last_mx"`
}

func (e queueEntry) String() string {
	return fmt.Sprintf("id %s <%s> → <%s> state %s attempts %d last %d %q via %q",
		e.ID, e.From, e.Rcpt, e.State, e.Attempts, e.LastCode, e.LastError, e.LastMX)
}

// queueID is a queue entry's id as the CLI takes it, whether the JSON has a number or
// a string.
type queueID string

func (q *queueID) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*q = queueID(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("queue id %s: neither string nor number", b)
	}
	*q = queueID(n.String())
	return nil
}

// cliJSON runs `repute ARGS... --json --config FILE`, fails the test unless it exits 0,
// and decodes its standard output (JSON only, by contract) into v.
func (s *server) cliJSON(t *testing.T, v any, args ...string) {
	t.Helper()
	args = append(args, "--json", "--config", s.cfgPath)
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, reputeBin, args...)
	cmd.Dir = s.dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("repute %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	if err := json.Unmarshal(stdout.Bytes(), v); err != nil {
		t.Fatalf("repute %s: standard output is not the expected JSON (%v):\n%s\nstderr: %s",
			strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
}

// cliT is mustCLI for the given test (the server's own t belongs to the test that
// created it).
func (s *server) cliT(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := s.cli(stdin, args...)
	if err != nil {
		t.Fatalf("repute %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// queueList is `repute queue list --json`.
func (s *server) queueList(t *testing.T) []queueEntry {
	t.Helper()
	var q []queueEntry
	s.cliJSON(t, &q, "queue", "list")
	return q
}

// queueFor returns the queue entries for a recipient.
func (s *server) queueFor(t *testing.T, rcpt string) []queueEntry {
	t.Helper()
	var out []queueEntry
	for _, e := range s.queueList(t) {
		if strings.EqualFold(e.Rcpt, rcpt) {
			out = append(out, e)
		}
	}
	return out
}

// waitQueueEntry polls the queue until the recipient's entry satisfies ok.
func (s *server) waitQueueEntry(t *testing.T, rcpt string, timeout time.Duration, what string, ok func(queueEntry) bool) queueEntry {
	t.Helper()
	var found queueEntry
	waitFor(t, timeout, what, func() (bool, string) {
		es := s.queueFor(t, rcpt)
		if len(es) == 0 {
			return false, "no queue entry for " + rcpt
		}
		found = es[0]
		return ok(found), found.String()
	})
	return found
}

// waitQueueEmpty polls until `queue list` is empty and returns how long that took.
func (s *server) waitQueueEmpty(t *testing.T, timeout time.Duration) time.Duration {
	t.Helper()
	return waitFor(t, timeout, "the queue to be empty", func() (bool, string) {
		q := s.queueList(t)
		if len(q) == 0 {
			return true, ""
		}
		return false, fmt.Sprintf("%d entries, first: %s", len(q), q[0])
	})
}

// waitFor polls cond until it reports done, and fails the test with cond's last status
// after timeout. It returns the time it waited.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (done bool, status string)) time.Duration {
	t.Helper()
	start := time.Now()
	interval := 100 * time.Millisecond
	for {
		done, status := cond()
		if done {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("waited %v for %s; last: %s", timeout, what, status)
		}
		time.Sleep(interval)
		if interval < time.Second {
			interval += 100 * time.Millisecond
		}
	}
}

// uniqueID returns a random token for Message-IDs and subjects.
func uniqueID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// outboundMessage builds a message from one address to some; id is the Message-ID's
// local part.
func outboundMessage(from string, to []string, subject, id, body string) []byte {
	domain := from[strings.LastIndex(from, "@")+1:]
	return []byte(fmt.Sprintf("From: <%s>\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s@%s>\r\n\r\n%s\r\n",
		from, "<"+strings.Join(to, ">, <")+">", subject, time.Now().Format(time.RFC1123Z), id, domain, body))
}

// dialSubmission opens an authenticated submission session (STARTTLS, AUTH PLAIN) as a
// default user of the server's domain; cfg is s.tlsConfig (made before, since it may
// fail the test and this may run on another goroutine).
func (s *server) dialSubmission(local string, cfg *tls.Config) (*smtp.Client, error) {
	c, err := smtp.DialStartTLS(s.Submission(), cfg)
	if err != nil {
		return nil, err
	}
	c.CommandTimeout, c.SubmissionTimeout = wireTimeout, wireTimeout
	if err := c.Auth(sasl.NewPlainClient("", s.mailAddr(local), password(local))); err != nil {
		c.Close()
		return nil, fmt.Errorf("AUTH PLAIN as %s: %w", s.mailAddr(local), err)
	}
	return c, nil
}

// sendMessage runs one transaction; nil means 250 after DATA.
func sendMessage(c *smtp.Client, from string, rcpts []string, msg []byte) error {
	if err := c.Mail(from, nil); err != nil {
		return fmt.Errorf("MAIL FROM:<%s>: %w", from, err)
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r, nil); err != nil {
			return fmt.Errorf("RCPT TO:<%s>: %w", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		w.Close()
		return fmt.Errorf("DATA write: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("end of DATA: %w", err)
	}
	return nil
}

// submit sends one message from a default user through the submission port and returns
// its Message-ID (without angle brackets).
func (s *server) submit(t *testing.T, local string, rcpts []string, subject string) string {
	t.Helper()
	c, err := s.dialSubmission(local, s.tlsConfig(t))
	if err != nil {
		t.Fatalf("submission on %s: %v", s.Submission(), err)
	}
	defer c.Close()
	id := uniqueID()
	from := s.mailAddr(local)
	if err := sendMessage(c, from, rcpts, outboundMessage(from, rcpts, subject, id, "Hello from "+from+".")); err != nil {
		t.Fatalf("submitting %q to %v on %s: %v", subject, rcpts, s.Submission(), err)
	}
	_ = c.Quit()
	return id + "@" + s.domain
}

// messages lists a mailbox of a default user of the server's domain (bodies included
// with withBody), sorted by UID.
func (s *server) messages(t *testing.T, local, mailbox string, withBody bool) []storedMessage {
	t.Helper()
	_, msgs := s.mailbox(t, local, mailbox, withBody)
	return msgs
}

// waitForMessage polls the INBOX of a default user until a message satisfies match.
func (s *server) waitForMessage(t *testing.T, local string, timeout time.Duration, what string, match func(storedMessage) bool) storedMessage {
	t.Helper()
	var found storedMessage
	waitFor(t, timeout, what+" in the INBOX of "+s.mailAddr(local)+" on "+s.hostname, func() (bool, string) {
		msgs := s.messages(t, local, "INBOX", true)
		for _, m := range msgs {
			if match(m) {
				found = m
				return true, ""
			}
		}
		return false, fmt.Sprintf("subjects %q", subjects(msgs))
	})
	return found
}

func withSubject(subject string) func(storedMessage) bool {
	return func(m storedMessage) bool { return m.Subject == subject }
}

// dsnFor matches a delivery status notification about the recipient.
func dsnFor(rcpt string) func(storedMessage) bool {
	return func(m storedMessage) bool {
		return m.Subject == dsnSubject && strings.Contains(strings.ToLower(decodedText([]byte(m.Body))), strings.ToLower(rcpt))
	}
}

// checkDSN asserts that raw is an RFC 3464 delivery status notification reporting the
// recipient as failed, and that it quotes each of the texts (the remote reply).
func checkDSN(t *testing.T, raw, rcpt string, quotes ...string) {
	t.Helper()
	msg, err := mail.ReadMessage(strings.NewReader(raw))
	if err != nil {
		t.Errorf("DSN: %v\n%s", err, raw)
		return
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || !strings.EqualFold(params["report-type"], "delivery-status") {
		t.Errorf("DSN Content-Type %q, want multipart/report; report-type=delivery-status", msg.Header.Get("Content-Type"))
	}
	text := decodedText([]byte(raw))
	for _, re := range []string{
		`(?i)message/delivery-status`,
		`(?im)^Final-Recipient:\s*rfc822;\s*<?` + regexp.QuoteMeta(rcpt) + `>?\s*$`,
		`(?im)^Action:\s*failed\s*$`,
		`(?im)^Status:\s*5\.\d{1,3}\.\d{1,3}`,
	} {
		if !regexp.MustCompile(re).MatchString(text) {
			t.Errorf("DSN for %s lacks %s:\n%s", rcpt, re, abbreviateLong(text))
		}
	}
	for _, q := range quotes {
		if !strings.Contains(strings.ToLower(text), strings.ToLower(q)) {
			t.Errorf("DSN for %s does not quote %q:\n%s", rcpt, q, abbreviateLong(text))
		}
	}
}

// decodedText returns a MIME message's headers and the decoded content of every part
// (quoted-printable and base64 undone), parts of multiparts included.
func decodedText(raw []byte) string {
	var b strings.Builder
	appendDecoded(&b, raw, 0)
	return b.String()
}

func appendDecoded(b *strings.Builder, raw []byte, depth int) {
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil || depth > 5 {
		b.Write(raw)
		return
	}
	for k, vs := range msg.Header {
		for _, v := range vs {
			fmt.Fprintf(b, "%s: %s\n", k, v)
		}
	}
	b.WriteString("\n")
	appendBody(b, msg.Header.Get, msg.Body, depth)
}

func appendBody(b *strings.Builder, get func(string) string, body io.Reader, depth int) {
	var r io.Reader = body
	switch strings.ToLower(strings.TrimSpace(get("Content-Transfer-Encoding"))) {
	case "quoted-printable":
		r = quotedprintable.NewReader(body)
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, body) // skips line breaks
	}
	mt, params, _ := mime.ParseMediaType(get("Content-Type"))
	switch {
	case strings.HasPrefix(mt, "multipart/") && params["boundary"] != "":
		mr := multipart.NewReader(r, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err != nil {
				return
			}
			for k, vs := range p.Header {
				for _, v := range vs {
					fmt.Fprintf(b, "%s: %s\n", k, v)
				}
			}
			b.WriteString("\n")
			appendBody(b, p.Header.Get, p, depth+1)
			b.WriteString("\n")
		}
	case mt == "message/rfc822" || mt == "message/global":
		data, _ := io.ReadAll(r)
		appendDecoded(b, data, depth+1)
	default:
		data, _ := io.ReadAll(r)
		b.Write(data)
	}
}

func abbreviateLong(s string) string {
	const max = 4000
	if len(s) > max {
		return s[:max] + "\n…"
	}
	return s
}

// mailEvent is one line of data_dir/events.log (docs/CONTRACTS.md §5).
type mailEvent struct {
	Time         string  `json:"time"`
	Event        string  `json:"event"`
	MsgID        string  `json:"msg_id"`
	From         string  `json:"from"`
	Rcpt         string  `json:"rcpt"`
	MX           string  `json:"mx"`
	Code         int     `json:"code"`
	EnhancedCode string  `json:"enhanced_code"`
	Text         string  `json:"text"`
	DelayS       float64 `json:"delay_s"`
	Category     string  `json:"category"`
	Provider     string  `json:"provider"`
}

func (e mailEvent) String() string {
	return fmt.Sprintf("%s msg %s <%s> → <%s> mx %q %d %s %q delay %.1fs", e.Event, e.MsgID, e.From, e.Rcpt, e.MX, e.Code, e.EnhancedCode, e.Text, e.DelayS)
}

// events reads the server's mail-event log with the reader the project offers
// (obs.ReadEvents: a line still being written at the end is left for the next read);
// any other line that is not an event fails the test.
func (s *server) events(t *testing.T) []mailEvent {
	t.Helper()
	f, err := os.Open(filepath.Join(s.dataDir, "events.log"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []mailEvent
	err = obs.ReadEvents(f, func(e obs.Event) error {
		out = append(out, mailEvent{Time: e.Time.Format(time.RFC3339Nano), Event: e.Event, MsgID: e.MsgID, From: e.From,
			Rcpt: e.Rcpt, MX: e.MX, Code: e.Code, EnhancedCode: e.EnhancedCode, Text: e.Text, DelayS: e.DelayS,
			Category: e.Category, Provider: e.Provider})
		return nil
	})
	if err != nil {
		t.Errorf("events.log: %v", err)
	}
	return out
}

// eventsFor returns the events of one kind for the recipient.
func eventsFor(evs []mailEvent, kind, rcpt string) []mailEvent {
	var out []mailEvent
	for _, e := range evs {
		if e.Event == kind && strings.EqualFold(e.Rcpt, rcpt) {
			out = append(out, e)
		}
	}
	return out
}

// waitEvent polls events.log (each event is written whole as it happens) until an event of the kind
// for the recipient is there, and returns the first.
func (s *server) waitEvent(t *testing.T, kind, rcpt string) mailEvent {
	t.Helper()
	var found mailEvent
	waitFor(t, 10*time.Second, fmt.Sprintf("a %q event for %s in %s's events.log", kind, rcpt, s.hostname), func() (bool, string) {
		evs := s.events(t)
		if m := eventsFor(evs, kind, rcpt); len(m) > 0 {
			found = m[0]
			return true, ""
		}
		var kinds []string
		for _, e := range evs {
			kinds = append(kinds, e.Event+":"+e.Rcpt)
		}
		return false, fmt.Sprintf("events %v", kinds)
	})
	return found
}

// runSendmail runs `repute sendmail ARGS... --config FILE` (or, with argv0 set, that
// program, a symlink named sendmail, with $REPUTE_CONFIG) with the message on stdin.
func (s *server) runSendmail(t *testing.T, argv0 string, msg []byte, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	var cmd *exec.Cmd
	if argv0 == "" {
		cmd = exec.CommandContext(ctx, reputeBin, append(append([]string{"sendmail"}, args...), "--config", s.cfgPath)...)
	} else {
		cmd = exec.CommandContext(ctx, argv0, args...)
		cmd.Env = append(os.Environ(), "REPUTE_CONFIG="+s.cfgPath)
	}
	cmd.Dir = s.dir
	cmd.Stdin = bytes.NewReader(msg)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", cmd.Path, strings.Join(cmd.Args[1:], " "), err, out)
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago (for daemons
// that take a port number in their configuration).
func freePort(t *testing.T) int {
	t.Helper()
	for i := 0; i < 20; i++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		pc, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no free port on 127.0.0.1")
	return 0
}
