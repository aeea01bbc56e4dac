package provsim

import (
	"bufio"
	"errors"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

// epoch is the fake clock's start in every test.
var epoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// clientTimeout bounds every network wait of a test client.
const clientTimeout = 10 * time.Second

// start runs a simulated provider on a free loopback port with a manual clock and
// stops it when the test ends.
func start(t *testing.T, p Profile, tweak ...func(*Config)) (*Server, *ManualClock) {
	t.Helper()
	clock := NewManualClock(epoch)
	cfg := Config{Addr: "127.0.0.1:0", Profile: p, Now: clock.Now, Logf: t.Logf, RaceGrace: -1}
	for _, f := range tweak {
		f(&cfg)
	}
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s, clock
}

// client is a raw SMTP client that sees every reply line.
type client struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

// dial connects to addr from the loopback source address from (as "127.0.0.41").
func dial(t *testing.T, addr, from string) *client {
	t.Helper()
	d := net.Dialer{Timeout: clientTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(clientTimeout))
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, r: bufio.NewReader(c)}
}

// read reads one reply, all its lines joined by CRLF; io.EOF when the server closed
// the connection.
func (c *client) read() (string, error) {
	var lines []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			if len(lines) == 0 && line == "" {
				return "", err
			}
			return strings.Join(lines, "\r\n"), err
		}
		line = strings.TrimRight(line, "\r\n")
		lines = append(lines, line)
		if len(line) < 4 || line[3] != '-' {
			return strings.Join(lines, "\r\n"), nil
		}
	}
}

func (c *client) mustRead() string {
	c.t.Helper()
	r, err := c.read()
	if err != nil {
		c.t.Fatalf("reading reply: %v (got %q)", err, r)
	}
	return r
}

func (c *client) write(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatal(err)
	}
}

// cmd sends a command line and returns the reply.
func (c *client) cmd(line string) string {
	c.t.Helper()
	c.write(line + "\r\n")
	return c.mustRead()
}

// expect sends a command and fails the test unless the reply starts with prefix.
func (c *client) expect(line, prefix string) string {
	c.t.Helper()
	r := c.cmd(line)
	if !strings.HasPrefix(r, prefix) {
		c.t.Fatalf("%s: got %q, want %s…", line, r, prefix)
	}
	return r
}

// closed fails the test unless the server has closed the connection.
func (c *client) closed() {
	c.t.Helper()
	r, err := c.read()
	if !errors.Is(err, io.EOF) {
		c.t.Fatalf("connection still open: read %q, %v", r, err)
	}
}

// hello reads the banner and says EHLO.
func (c *client) hello() {
	c.t.Helper()
	if b := c.mustRead(); !strings.HasPrefix(b, "220 ") {
		c.t.Fatalf("banner %q", b)
	}
	c.expect("EHLO client.example", "250")
}

// outcome is how one attempt to send a message went.
type outcome struct {
	stage Stage  // where the message was refused; "" when accepted
	reply string // the refusal, or the 250 after the data
	open  bool   // the connection was still open afterwards
}

// send runs one transaction on an open, greeted connection.
func (c *client) send(from string, to []string, body string) outcome {
	c.t.Helper()
	step := func(stage Stage, line string, ok string) (outcome, bool) {
		c.write(line + "\r\n")
		r, err := c.read()
		if err != nil {
			c.t.Fatalf("%s: %v", line, err)
		}
		if strings.HasPrefix(r, ok) {
			return outcome{}, true
		}
		return outcome{stage: stage, reply: r, open: !strings.HasPrefix(r, "421") && !c.eof()}, false
	}
	if o, ok := step(StageMail, "MAIL FROM:<"+from+">", "250"); !ok {
		return o
	}
	accepted := 0
	var rcptRefusal outcome
	for _, rc := range to {
		if o, ok := step(StageRcpt, "RCPT TO:<"+rc+">", "250"); ok {
			accepted++
		} else {
			rcptRefusal = o
			if !o.open {
				return o
			}
		}
	}
	if accepted == 0 {
		c.expect("RSET", "250")
		return rcptRefusal
	}
	if o, ok := step(StageData, "DATA", "354"); !ok {
		return o
	}
	c.write(body + ".\r\n")
	r, err := c.read()
	if err != nil {
		c.t.Fatalf("end of data: %v", err)
	}
	if strings.HasPrefix(r, "250") {
		return outcome{reply: r, open: true}
	}
	return outcome{stage: StageData, reply: r, open: !strings.HasPrefix(r, "421") && !c.eof()}
}

// eof says whether the server has closed the connection after a refusal: an open
// connection answers NOOP, a closed one gives an error (end of file, or a reset when the
// NOOP arrived after the server closed).
func (c *client) eof() bool {
	if _, err := io.WriteString(c.c, "NOOP\r\n"); err != nil {
		return true
	}
	r, err := c.read()
	if err != nil {
		return true
	}
	if !strings.HasPrefix(r, "250") {
		c.t.Fatalf("NOOP: %q", r)
	}
	return false
}

// attempt sends one message on a new connection from src and quits when the server
// lets it; the outcome includes a refusal of the connection itself.
func attempt(t *testing.T, s *Server, src string) outcome {
	t.Helper()
	c := dial(t, s.Addr(), src)
	defer c.c.Close()
	banner := c.mustRead()
	if !strings.HasPrefix(banner, "220") {
		return outcome{stage: StageGreeting, reply: banner}
	}
	c.write("EHLO client.example\r\n")
	if r := c.mustRead(); !strings.HasPrefix(r, "250") {
		return outcome{stage: StageHelo, reply: r}
	}
	o := c.send("sender@example.com", []string{"user@" + string(s.Provider()) + ".example"}, "Subject: test\r\n\r\nhello\r\n")
	if o.open {
		c.expect("QUIT", "221")
	}
	return o
}

var sessionID = regexp.MustCompile(`ps[0-9a-f]+\.[0-9]+`)

// sameReply compares a reply from a session with one from ReplyFor, which has
// "provsim" where the session has its id.
func sameReply(got, want string) bool {
	return sessionID.ReplaceAllString(got, "provsim") == want
}
