package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// wireTimeout bounds every read and write of the raw-socket clients.
const wireTimeout = 15 * time.Second

// reply is one SMTP reply: the code and the text of every line (without the code).
type reply struct {
	Code  int
	Lines []string
}

// Enhanced returns the RFC 3463 enhanced status code at the start of the first line.
func (r reply) Enhanced() string {
	if len(r.Lines) == 0 {
		return ""
	}
	f := strings.Fields(r.Lines[0])
	if len(f) == 0 || strings.Count(f[0], ".") != 2 {
		return ""
	}
	return f[0]
}

func (r reply) String() string {
	var b strings.Builder
	for i, l := range r.Lines {
		sep := "-"
		if i == len(r.Lines)-1 {
			sep = " "
		}
		fmt.Fprintf(&b, "%d%s%s", r.Code, sep, l)
		if i < len(r.Lines)-1 {
			b.WriteString(" | ")
		}
	}
	return b.String()
}

// rawSMTP is an SMTP client on a bare socket, for checking exact replies to input that
// well-behaved client libraries refuse to send.
type rawSMTP struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawSMTP {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, wireTimeout)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawSMTP{t: t, conn: c, r: bufio.NewReader(c)}
}

// dialRawGreeted dials and checks the 220 banner.
func dialRawGreeted(t *testing.T, addr string) *rawSMTP {
	t.Helper()
	c := dialRaw(t, addr)
	if r := c.read(); r.Code != 220 {
		t.Fatalf("%s banner: %v", addr, r)
	}
	return c
}

func (c *rawSMTP) close() { c.conn.Close() }

// startTLS upgrades the connection after a 220 reply to STARTTLS.
func (c *rawSMTP) startTLS(cfg *tls.Config) {
	c.t.Helper()
	c.expect("STARTTLS", 220, "")
	tc := tls.Client(c.conn, cfg)
	_ = tc.SetDeadline(time.Now().Add(wireTimeout))
	if err := tc.Handshake(); err != nil {
		c.t.Fatalf("TLS handshake after STARTTLS: %v", err)
	}
	c.conn = tc
	c.r = bufio.NewReader(tc)
}

// write sends raw bytes.
func (c *rawSMTP) write(s string) {
	c.t.Helper()
	_ = c.conn.SetWriteDeadline(time.Now().Add(wireTimeout))
	if _, err := c.conn.Write([]byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// readReply reads one (possibly multi-line) reply.
func (c *rawSMTP) readReply() (reply, error) {
	var r reply
	_ = c.conn.SetReadDeadline(time.Now().Add(wireTimeout))
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return r, fmt.Errorf("after %v: %w", r.Lines, err)
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 3 {
			return r, fmt.Errorf("malformed reply line %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil {
			return r, fmt.Errorf("malformed reply line %q", line)
		}
		r.Code = code
		more := len(line) > 3 && line[3] == '-'
		if len(line) > 4 {
			r.Lines = append(r.Lines, line[4:])
		} else {
			r.Lines = append(r.Lines, "")
		}
		if !more {
			return r, nil
		}
	}
}

func (c *rawSMTP) read() reply {
	c.t.Helper()
	r, err := c.readReply()
	if err != nil {
		c.t.Fatalf("reading reply: %v", err)
	}
	return r
}

// cmd sends one command line and returns the reply.
func (c *rawSMTP) cmd(line string) reply {
	c.t.Helper()
	c.write(line + "\r\n")
	return c.read()
}

// expect sends a command and fails the test unless the reply has the code and, when
// enhanced is not empty, starts with that enhanced status code.
func (c *rawSMTP) expect(line string, code int, enhanced string) reply {
	c.t.Helper()
	r := c.cmd(line)
	checkReply(c.t, abbreviate(line), r, code, enhanced)
	return r
}

func checkReply(t *testing.T, what string, r reply, code int, enhanced string) {
	t.Helper()
	if r.Code != code || (enhanced != "" && r.Enhanced() != enhanced) {
		want := strconv.Itoa(code)
		if enhanced != "" {
			want += " " + enhanced
		}
		t.Errorf("%s: got %q, want %s", what, r.String(), want)
	}
}

// ehlo sends EHLO and returns the advertised extension keywords (upper case) with
// their parameters.
func (c *rawSMTP) ehlo(name string) map[string]string {
	c.t.Helper()
	r := c.expect("EHLO "+name, 250, "")
	ext := map[string]string{}
	for _, l := range r.Lines[1:] {
		k, v, _ := strings.Cut(l, " ")
		ext[strings.ToUpper(k)] = v
	}
	return ext
}

// abbreviate shortens long command lines for messages.
func abbreviate(s string) string {
	if len(s) > 60 {
		return fmt.Sprintf("%s… (%d bytes)", s[:40], len(s))
	}
	return s
}

// message builds a small RFC 5322 message with CRLF line endings.
func message(from, to, subject, body string) string {
	return fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: %s\r\nDate: %s\r\nMessage-ID: <%s@%s>\r\n\r\n%s\r\n",
		from, to, subject, time.Now().Format(time.RFC1123Z), strings.ReplaceAll(subject, " ", "-"), remoteDomain, body)
}
