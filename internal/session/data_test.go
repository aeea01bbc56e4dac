package session

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/repute-mail/repute/internal/smtp"
)

// smugglingVariants are the end-of-data sequences published for SMTP smuggling (SEC
// Consult, December 2023, and the follow-ups): each is something a lax server takes for
// CRLF.CRLF. All but the NUL one have a bare CR or LF; the NUL one is proper CRLF text,
// but a receiver that strips NULs would see its end of data, so it is refused too.
var smugglingVariants = []struct {
	name    string
	eod     string
	refusal string // the reply to the whole: code and enhanced code
}{
	{"LF.LF", "\n.\n", "554 5.5.2"},
	{"LF.CRLF", "\n.\r\n", "554 5.5.2"},
	{"CR.CR", "\r.\r", "554 5.5.2"},
	{"CRLF.CR", "\r\n.\r", "554 5.5.2"},
	{"CR.CRLF", "\r.\r\n", "554 5.5.2"},
	{"CRLF.LF", "\r\n.\n", "554 5.5.2"},
	{"CRLF.NUL.CRLF", "\r\n\x00.\r\n", "554 5.6.0"},
}

// smuggle returns message data whose first message ends with eod, followed by the
// commands and data of a second, forged message and a real CRLF.CRLF.
func smuggle(eod, from, rcpt string) string {
	return "From: <sender@remote.test>\r\nSubject: first\r\n\r\nhello" + eod +
		"MAIL FROM:<" + from + ">\r\nRCPT TO:<" + rcpt + ">\r\nDATA\r\n" +
		"From: <" + from + ">\r\nSubject: forged\r\n\r\nforged\r\n.\r\n"
}

// verdict describes what readDotData returned: "" for an accepted message, the code and
// enhanced code of a refusal, or "read error".
func verdict(err error) string {
	var re *smtp.Reply
	switch {
	case err == nil:
		return ""
	case errors.As(err, &re):
		return fmt.Sprintf("%d %s", re.Code, re.Enhanced)
	}
	return "read error"
}

func TestReadDotData(t *testing.T) {
	type result struct {
		out   string // the message, when accepted
		reply string // verdict: "" accepted, "552 5.3.4", "554 5.5.2", ...
		rest  string // what is left to read after the data
	}
	type testCase struct {
		name  string
		in    string
		max   int64
		want  result
		small bool // needs the 16-byte read buffer to mean anything
		only  int  // the one read buffer size to run with (0: both)
	}
	const (
		tooBig = "552 5.3.4"
		bare   = "554 5.5.2"
		nul    = "554 5.6.0"
		broken = "read error"
	)
	tests := []testCase{
		{name: "empty", in: ".\r\nQUIT\r\n", want: result{"", "", "QUIT\r\n"}},
		{name: "plain", in: "a\r\nb\r\n.\r\nQUIT\r\n", want: result{"a\r\nb\r\n", "", "QUIT\r\n"}},
		{name: "dot-stuffing undone", in: "..a\r\n..\r\n.\r\n", want: result{".a\r\n.\r\n", "", ""}},
		{name: "dot line not after CRLF is data", in: "a\r\n.x\r\n.\r\n", want: result{"a\r\nx\r\n", "", ""}},
		{name: "over the limit, read to its end", in: "0123456789abc\r\n.\r\nNOOP\r\n", max: 10, want: result{"", tooBig, "NOOP\r\n"}},
		{name: "exactly the limit", in: "01234567\r\n.\r\n", max: 10, want: result{"01234567\r\n", "", ""}},
		{name: "bare LF line", in: "a\nb\r\n.\r\nNOOP\r\n", want: result{"", bare, "NOOP\r\n"}},
		{name: "bare CR before a real CRLF.CRLF", in: "a\r\r\n.\r\nNOOP\r\n", want: result{"", bare, "NOOP\r\n"}},
		{name: "LF.CRLF is not the end", in: "a\n.\r\nMAIL FROM:<x@y>\r\n.\r\nNOOP\r\n", want: result{"", bare, "NOOP\r\n"}},
		{name: "no end", in: "a\r\nb\r\n", want: result{"", broken, ""}},
		{name: "bare LF and no end", in: "a\n.\r\n", want: result{"", broken, ""}},
		{name: "NUL and no end", in: "a\x00\r\n", want: result{"", broken, ""}},
		{name: "CRLF split across pieces", in: "0123456789abcde\r\n.\r\n", small: true,
			want: result{"0123456789abcde\r\n", "", ""}},
		{name: "bare CR at a piece's end", in: "0123456789abcde\rX\r\n.\r\nNOOP\r\n", small: true,
			want: result{"", bare, "NOOP\r\n"}},
		{name: "dot line in a long line's second piece", in: "0123456789abcdef.\r\n.\r\n", small: true,
			want: result{"0123456789abcdef.\r\n", "", ""}},
		{name: "long stuffed line", in: "..23456789abcdefghij\r\n.\r\n", small: true,
			want: result{".23456789abcdefghij\r\n", "", ""}},

		// RFC 5322 §2.3: no NUL anywhere, even in otherwise proper text. The first failure
		// in the order of the data decides the reply; within one piece of it a bare CR or
		// LF comes first, then a NUL, then the size.
		{name: "NUL in a proper message", in: "Subject: a\r\n\r\nbefore\x00after\r\n.\r\nNOOP\r\n",
			want: result{"", nul, "NOOP\r\n"}},
		{name: "NUL line alone", in: "a\r\n\x00\r\nb\r\n.\r\nNOOP\r\n", want: result{"", nul, "NOOP\r\n"}},
		{name: "NUL in a stuffed line", in: "..\x00\r\n.\r\nNOOP\r\n", want: result{"", nul, "NOOP\r\n"}},
		{name: "NUL before a later bare LF", in: "\x00\r\na\nb\r\n.\r\nNOOP\r\n", want: result{"", nul, "NOOP\r\n"}},
		{name: "bare LF before a later NUL", in: "a\nb\r\n\x00\r\n.\r\nNOOP\r\n", want: result{"", bare, "NOOP\r\n"}},
		{name: "bare LF and NUL in one line", in: "\x00a\nb\r\n.\r\nNOOP\r\n", want: result{"", bare, "NOOP\r\n"}},
		{name: "NUL in a line over the limit", in: "0123456789\x00bc\r\n.\r\nNOOP\r\n", max: 10,
			want: result{"", nul, "NOOP\r\n"}},
		{name: "over the limit before a NUL", in: "0123456789abc\r\n\x00\r\n.\r\nNOOP\r\n", max: 10,
			want: result{"", tooBig, "NOOP\r\n"}},
		{name: "NUL before going over the limit", in: "\x00\r\n0123456789abc\r\n.\r\nNOOP\r\n", max: 10,
			want: result{"", nul, "NOOP\r\n"}},
		{name: "NUL in a long line's second piece", in: "0123456789abcdef\x00\r\n.\r\nNOOP\r\n", small: true,
			want: result{"", nul, "NOOP\r\n"}},
		{name: "bare CR at a piece's end, NUL after it", in: "0123456789abcde\r\x00\r\n.\r\nNOOP\r\n", small: true,
			want: result{"", bare, "NOOP\r\n"}},
		// The same bytes, one line with a NUL early and a bare LF late: with a 16-byte
		// buffer they come in different pieces and the NUL's is first; with a large one
		// they share a piece and the bare LF wins.
		{name: "NUL and bare LF in pieces of one line", in: "\x00123456789abcdefg\nx\r\n.\r\nNOOP\r\n", only: 16,
			want: result{"", nul, "NOOP\r\n"}},
		{name: "NUL and bare LF in one piece", in: "\x00123456789abcdefg\nx\r\n.\r\nNOOP\r\n", only: 4096,
			want: result{"", bare, "NOOP\r\n"}},
	}
	for _, v := range smugglingVariants {
		in := smuggle(v.eod, "admin@b.test", "alice@a.test")
		tests = append(tests, testCase{name: "smuggling " + v.name, in: in + "QUIT\r\n", want: result{"", v.refusal, "QUIT\r\n"}})
	}
	for _, tc := range tests {
		for _, size := range []int{16, 4096} {
			if tc.only != 0 && size != tc.only {
				continue
			}
			t.Run(fmt.Sprintf("%s/buffer %d", tc.name, size), func(t *testing.T) {
				max := tc.max
				if max == 0 {
					max = 1 << 20
				}
				br := bufio.NewReaderSize(strings.NewReader(tc.in), size)
				var out bytes.Buffer
				err := readDotData(br, &out, max)
				rest, _ := io.ReadAll(br)
				got := result{reply: verdict(err), rest: string(rest)}
				if err == nil {
					got.out = out.String()
				}
				if got != tc.want {
					t.Errorf("readDotData(%q) = %+v (err %v), want %+v", tc.in, got, err, tc.want)
				}
				if int64(out.Len()) > max {
					t.Errorf("output %d bytes over the limit %d", out.Len(), max)
				}
			})
		}
	}
}

// TestReadDotDataLongLine: a line of any length is stored whole, as long as the message
// fits the size limit; over the limit the message is refused and still read to its end.
func TestReadDotDataLongLine(t *testing.T) {
	line := bytes.Repeat([]byte("abcdefghijklmnopqrstuvwxyz0123456789"), (2<<20)/36+1) // over 2 MiB
	msg := "Subject: long\r\n\r\n" + string(line) + "\r\n.." + string(line) + "\r\nend\r\n"
	want := "Subject: long\r\n\r\n" + string(line) + "\r\n." + string(line) + "\r\nend\r\n"

	var out bytes.Buffer
	br := bufio.NewReaderSize(strings.NewReader(msg+".\r\nNOOP\r\n"), readBufSize)
	if err := readDotData(br, &out, 50<<20); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), []byte(want)) {
		t.Errorf("stored %d bytes, want the %d sent (first difference at %d)", out.Len(), len(want), firstDiff(out.Bytes(), []byte(want)))
	}
	if rest, _ := io.ReadAll(br); string(rest) != "NOOP\r\n" {
		t.Errorf("after the data: %q, want the next command", rest)
	}

	out.Reset()
	br = bufio.NewReaderSize(strings.NewReader(msg+".\r\nNOOP\r\n"), readBufSize)
	err := readDotData(br, &out, 1<<20)
	var re *smtp.Reply
	if !errors.As(err, &re) || re.Code != 552 || re.Enhanced != "5.3.4" {
		t.Errorf("over the limit: %v, want 552 5.3.4", err)
	}
	if out.Len() > 1<<20 {
		t.Errorf("held %d bytes over a limit of %d", out.Len(), 1<<20)
	}
	if rest, _ := io.ReadAll(br); string(rest) != "NOOP\r\n" {
		t.Errorf("after the refused data: %q, want the next command", rest)
	}
}

func firstDiff(a, b []byte) int {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestFits(t *testing.T) {
	tests := []struct {
		have, n, max int64
		want         bool
	}{
		{0, 0, 10, true},
		{0, 10, 10, true},
		{0, 11, 10, false},
		{5, 5, 10, true},
		{5, 6, 10, false},
		{10, 0, 10, true},
		{1, math.MaxInt64, 10, false}, // have+n would wrap to a negative number
		{10, math.MaxInt64, 10, false},
		{0, math.MaxInt64, math.MaxInt64, true},
		{1, math.MaxInt64, math.MaxInt64, false},
		{0, -1, 10, false},
	}
	for _, tc := range tests {
		if got := fits(tc.have, tc.n, tc.max); got != tc.want {
			t.Errorf("fits(%d, %d, %d) = %v, want %v", tc.have, tc.n, tc.max, got, tc.want)
		}
	}
}

func TestParseBdat(t *testing.T) {
	tests := []struct {
		arg      string
		size     int64
		last, ok bool
	}{
		{"0", 0, false, true},
		{"10 LAST", 10, true, true},
		{"10 last", 10, true, true},
		{"9223372036854775807 LAST", math.MaxInt64, true, true},
		{"9223372036854775808", 0, false, false},
		{"-1", 0, false, false},
		{"+5", 0, false, false},
		{"5 FIRST", 0, false, false},
		{"", 0, false, false},
		{"1 LAST x", 0, false, false},
	}
	for _, tc := range tests {
		size, last, ok := parseBdat(tc.arg)
		if size != tc.size || last != tc.last || ok != tc.ok {
			t.Errorf("parseBdat(%q) = %d, %v, %v; want %d, %v, %v", tc.arg, size, last, ok, tc.size, tc.last, tc.ok)
		}
	}
}

// rest reads every reply until the server closes the connection and returns the last
// line of each.
func (c *client) rest() []string {
	var out []string
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			return out
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) >= 4 && line[3] == '-' {
			continue
		}
		out = append(out, line)
	}
}

// checkReplies fails unless got are replies starting with want, one for one.
func checkReplies(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	ok := len(got) == len(want)
	for i := 0; ok && i < len(want); i++ {
		ok = strings.HasPrefix(got[i], want[i])
	}
	if !ok {
		t.Errorf("%s: replies %q, want %q", what, got, want)
	}
}

// startTLSAuth upgrades a fresh submission connection and logs in as alice.
func (c *client) startTLSAuth() {
	c.t.Helper()
	c.cmd("EHLO c.test", "250")
	c.cmd("STARTTLS", "220")
	tc := tls.Client(c.nc, &tls.Config{InsecureSkipVerify: true})
	if err := tc.Handshake(); err != nil {
		c.t.Fatal(err)
	}
	c.nc, c.br = tc, bufio.NewReader(tc)
	c.cmd("EHLO c.test", "250")
	c.cmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00alice@a.test\x00secret")), "235")
}

// TestSmuggling sends every published SMTP-smuggling variant, in DATA and in BDAT, on
// the MX and the submission listener. Each attempt must be one refused message: 554
// 5.5.2 for a bare CR or LF, 554 5.6.0 for the NUL variant, which is proper CRLF text but
// would end the data early at a later hop that strips NULs. The forged second message's
// commands must never run, and nothing may be stored or queued.
func TestSmuggling(t *testing.T) {
	e := start(t, nil)
	listeners := []struct {
		name, addr   string
		from, rcpt   string // the real envelope
		sfrom, srcpt string // the smuggled one
		submission   bool
	}{
		{"mx", e.mx, "sender@remote.test", "alice@a.test", "admin@b.test", "alice@a.test", false},
		// On submission the smuggled envelope is one the server would take from alice: a
		// forged message to a remote address would be queued.
		{"submission", e.sub, "alice@a.test", "bob@a.test", "alice@a.test", "victim@remote.test", true},
	}
	open := func(t *testing.T, addr string, submission bool) *client {
		c := dial(t, addr)
		if submission {
			c.startTLSAuth()
		} else {
			c.cmd("EHLO c.test", "250")
		}
		return c
	}
	for _, l := range listeners {
		for _, v := range smugglingVariants {
			data := smuggle(v.eod, l.sfrom, l.srcpt)
			t.Run(l.name+"/DATA/"+v.name, func(t *testing.T) {
				c := open(t, l.addr, l.submission)
				c.cmd("MAIL FROM:<"+l.from+">", "250")
				c.cmd("RCPT TO:<"+l.rcpt+">", "250")
				c.cmd("DATA", "354")
				c.send(data + "QUIT\r\n")
				checkReplies(t, "end of data, then QUIT", c.rest(), v.refusal, "221")
			})
			t.Run(l.name+"/BDAT/"+v.name, func(t *testing.T) {
				c := open(t, l.addr, l.submission)
				c.cmd("MAIL FROM:<"+l.from+">", "250")
				c.cmd("RCPT TO:<"+l.rcpt+">", "250")
				c.send(fmt.Sprintf("BDAT %d LAST\r\n%sQUIT\r\n", len(data), data))
				checkReplies(t, "BDAT LAST, then QUIT", c.rest(), v.refusal, "221")
			})
			t.Run(l.name+"/BDAT chunks/"+v.name, func(t *testing.T) {
				c := open(t, l.addr, l.submission)
				c.cmd("MAIL FROM:<"+l.from+">", "250")
				c.cmd("RCPT TO:<"+l.rcpt+">", "250")
				c.send(fmt.Sprintf("BDAT %d\r\n%sBDAT 0 LAST\r\nQUIT\r\n", len(data), data))
				checkReplies(t, "BDAT, BDAT 0 LAST, then QUIT", c.rest(), "250 2.0.0", v.refusal, "221")
			})
		}
	}
	if n := count(t, e.db); n != 0 {
		t.Errorf("%d messages stored, want none", n)
	}
	rows, err := e.db.Read().Query(`SELECT data FROM blobs`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			t.Fatal(err)
		}
		head, _, _ := bytes.Cut(b, []byte("\r\n\r\n"))
		if bytes.Contains(head, []byte("Subject: forged")) {
			t.Errorf("a forged message was stored:\n%s", b)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if q, err := e.db.Queue(context.Background()); err != nil || len(q) != 0 {
		t.Errorf("queue = %+v (%v), want empty", q, err)
	}
}

// TestNULRefused: a NUL in an otherwise proper message, with nothing that looks like an
// end of data near it, is refused with 554 5.6.0 in DATA and in BDAT; the session stays
// in step, and the next transaction on the same connection is accepted and stored.
func TestNULRefused(t *testing.T) {
	e := start(t, nil)
	const bad = "From: <x@remote.test>\r\nSubject: nul\r\n\r\nbefore\x00after\r\n"
	modes := []struct {
		name string
		send func(c *client, data string) // sends data as one message, up to its final reply
	}{
		{"DATA", func(c *client, data string) {
			c.cmd("DATA", "354")
			c.send(data + ".\r\n")
		}},
		{"BDAT", func(c *client, data string) {
			c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(data), data))
		}},
		{"BDAT chunks", func(c *client, data string) {
			c.send(fmt.Sprintf("BDAT %d\r\n%s", len(data), data))
			c.expect("250 2.0.0")
			c.send("BDAT 0 LAST\r\n")
		}},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			c := dial(t, e.mx)
			c.cmd("EHLO c.test", "250")
			c.cmd("MAIL FROM:<x@remote.test>", "250")
			c.cmd("RCPT TO:<alice@a.test>", "250")
			m.send(c, bad)
			c.expect("554 5.6.0")
			c.cmd("MAIL FROM:<x@remote.test>", "250")
			c.cmd("RCPT TO:<alice@a.test>", "250")
			m.send(c, "From: <x@remote.test>\r\nSubject: next "+m.name+"\r\n\r\nfine\r\n")
			c.expect("250 2.0.0")
			c.cmd("QUIT", "221")
		})
	}
	if n := count(t, e.db); n != len(modes) {
		t.Errorf("%d messages stored, want %d (the message after each refused one)", n, len(modes))
	}
	rows, err := e.db.Read().Query(`SELECT data FROM blobs`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			t.Fatal(err)
		}
		if bytes.IndexByte(b, 0) >= 0 || !bytes.Contains(b, []byte("Subject: next ")) {
			t.Errorf("stored message is not one of those after the refusals:\n%q", b)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
}

// TestBDATChunkSizeOverflow: a chunk size near MaxInt64 after a first chunk must neither
// overflow the size check nor be buffered: the answer is 552 5.3.4 and the connection
// is closed without reading the chunk.
func TestBDATChunkSizeOverflow(t *testing.T) {
	for _, cmd := range []string{"BDAT 9223372036854775807 LAST", "BDAT 9223372036854775807", "BDAT 9223372036854775798 LAST"} {
		t.Run(cmd, func(t *testing.T) {
			s := &Server{Hostname: "mx.a.test", MaxMessageSize: 10000, Logger: slog.New(slog.DiscardHandler)}
			s.defaults()
			server, client := net.Pipe()
			defer server.Close()
			c := newConn(s, server, netip.MustParseAddr("192.0.2.1"))
			var replies bytes.Buffer
			c.bw = bufio.NewWriter(&replies)
			c.helo, c.esmtp = "c.test", true
			c.tx = &transaction{rcpts: []recipient{{addr: smtp.Address{Local: "alice", Domain: "a.test"}}}}

			// The client sends the first chunk and then, believing in its huge size,
			// up to 4 MiB more until the server hangs up.
			sent := make(chan int)
			go func() {
				n, _ := client.Write([]byte("0123456789"))
				junk := bytes.Repeat([]byte("x"), 64<<10)
				for i := 0; i < 64; i++ {
					m, err := client.Write(junk)
					n += m
					if err != nil {
						break
					}
				}
				client.Close()
				sent <- n
			}()
			c.dispatch("BDAT 10")
			c.dispatch(cmd)
			server.Close()
			<-sent
			c.bw.Flush()

			got := strings.Split(strings.TrimSpace(replies.String()), "\r\n")
			if len(got) != 2 || !strings.HasPrefix(got[0], "250 ") || !strings.HasPrefix(got[1], "552 5.3.4") {
				t.Errorf("replies %q, want 250 for the first chunk and 552 5.3.4", got)
			}
			if !c.closing {
				t.Error("the connection stays open after a chunk that cannot be skipped")
			}
			if c.bdat != nil && c.bdat.Len() > 10 {
				t.Errorf("%d bytes buffered, want at most the first chunk's 10", c.bdat.Len())
			}
		})
	}
}

// TestBDATOverLimitSkipped: a chunk that takes the message over the limit but is no
// larger than a whole message is read and discarded, refused with 552 5.3.4 (and so is
// every further chunk), and the session goes on.
func TestBDATOverLimitSkipped(t *testing.T) {
	e := start(t, nil) // MaxMessageSize 10000
	c := dial(t, e.mx)
	c.cmd("EHLO c.test", "250")
	c.cmd("MAIL FROM:<x@r.test>", "250")
	c.cmd("RCPT TO:<alice@a.test>", "250")
	chunk := strings.Repeat("y", 6000)
	c.send(fmt.Sprintf("BDAT 6000\r\n%sBDAT 6000\r\n%sBDAT 6000 LAST\r\n%sNOOP\r\nQUIT\r\n", chunk, chunk, chunk))
	checkReplies(t, "three 6000-byte chunks", c.rest(), "250 2.0.0", "552 5.3.4", "552 5.3.4", "250 2.0.0", "221")
	if n := count(t, e.db); n != 0 {
		t.Errorf("%d messages stored, want 0", n)
	}
}

// TestDataLongLineStored: a 2 MiB line under a 50 MiB limit reaches the store intact.
func TestDataLongLineStored(t *testing.T) {
	e := start(t, func(s *Server) { s.MaxMessageSize = 50 << 20 })
	line := strings.Repeat("0123456789abcdef", (2<<20)/16) // 2 MiB, no line break
	c := dial(t, e.mx)
	c.nc.SetDeadline(time.Now().Add(60 * time.Second))
	c.cmd("EHLO c.test", "250")
	c.cmd("MAIL FROM:<x@r.test>", "250")
	c.cmd("RCPT TO:<alice@a.test>", "250")
	c.cmd("DATA", "354")
	c.cmd("Subject: long line\r\n\r\n"+line+"\r\nafter\r\n.", "250 2.0.0")
	var body []byte
	if err := e.db.Read().QueryRow(`SELECT data FROM blobs`).Scan(&body); err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(body, []byte("Subject: long line\r\n\r\n"+line+"\r\nafter\r\n")) {
		t.Errorf("stored message (%d bytes) does not hold the 2 MiB line intact", len(body))
	}
}

// FuzzReadDotData checks the DATA reader against a model: data ends at the first
// CRLF.CRLF (the start of data counting as a CRLF) and nowhere else; the message is
// accepted exactly when it is proper CRLF text without a NUL within the limit, and then
// out holds it with the dot-stuffing undone; otherwise the reply is the one modelVerdict
// predicts; out never exceeds the limit; nothing after the end is read. Random input
// must never panic.
func FuzzReadDotData(f *testing.F) {
	for _, v := range smugglingVariants {
		in := []byte(smuggle(v.eod, "admin@b.test", "alice@a.test") + "QUIT\r\n")
		f.Add(in, uint16(4096), false)
		f.Add(in, uint16(4096), true)
		f.Add(in, uint16(40), true)
	}
	f.Add([]byte(".\r\n"), uint16(0), false)
	f.Add([]byte("..\r\n.\r\n"), uint16(1), true)
	f.Add([]byte("0123456789abcde\r\n.\r\n"), uint16(100), true)
	f.Add([]byte("a\x00b\r\n.\r\n"), uint16(100), false)
	f.Add([]byte("\x00123456789abcdefg\nx\r\n.\r\n"), uint16(100), true)
	f.Add([]byte("\x00123456789abcdefg\nx\r\n.\r\n"), uint16(100), false)
	f.Fuzz(func(t *testing.T, in []byte, limit uint16, small bool) {
		size := 4096
		if small {
			size = 16
		}
		max := int64(limit)
		br := bufio.NewReaderSize(bytes.NewReader(in), size)
		var out bytes.Buffer
		err := readDotData(br, &out, max)
		rest, _ := io.ReadAll(br)
		consumed := len(in) - len(rest)
		if int64(out.Len()) > max {
			t.Fatalf("output of %d bytes over the limit %d", out.Len(), max)
		}
		got := verdict(err)
		p := append([]byte("\r\n"), in...)
		j := bytes.Index(p, []byte("\r\n.\r\n"))
		if j < 0 {
			if got != "read error" || consumed != len(in) {
				t.Fatalf("no CRLF.CRLF in the input, yet err = %v after %d of %d bytes", err, consumed, len(in))
			}
			return
		}
		if consumed != j+3 {
			t.Fatalf("end of data after %d bytes, want %d (the first CRLF.CRLF)", consumed, j+3)
		}
		data := p[2 : j+2]
		if want := modelVerdict(data, size, max); got != want {
			t.Fatalf("verdict %q (err %v), want %q", got, err, want)
		}
		if want := unstuff(data); err == nil && !bytes.Equal(out.Bytes(), want) {
			t.Fatalf("accepted message: out %q, want %q", out.Bytes(), want)
		}
	})
}

// modelVerdict predicts readDotData's verdict on data, the bytes before the first
// CRLF.CRLF as sent, read through a buffer of size bytes under a limit of max. The data
// arrives in pieces (modelPieces); the first piece with a failure decides, and within one
// piece a bare CR or LF comes before a NUL and both before going over the limit. A bare
// LF fails the piece that holds it, a bare CR the one that holds the byte after it (a CR
// that ends a piece may yet be followed by LF); the limit is passed in the piece that
// holds the first unstuffed byte beyond it.
func modelVerdict(data []byte, size int, max int64) string {
	piece := modelPieces(data, size)
	dot := stuffingDots(data)
	const none = math.MaxInt
	bare, nul, big := none, none, none
	var kept int64
	for i, b := range data {
		switch {
		case b == '\n' && (i == 0 || data[i-1] != '\r'):
			bare = min(bare, piece[i])
		case b == '\r' && (i+1 == len(data) || data[i+1] != '\n'):
			bare = min(bare, piece[min(i+1, len(data)-1)])
		case b == 0:
			nul = min(nul, piece[i])
		}
		if !dot[i] {
			kept++
			if kept > max {
				big = min(big, piece[i])
			}
		}
	}
	switch first := min(bare, nul, big); {
	case first == none:
		return ""
	case first == bare:
		return "554 5.5.2"
	case first == nul:
		return "554 5.6.0"
	}
	return "552 5.3.4"
}

// modelPieces numbers the pieces bufio.Reader.ReadSlice('\n') cuts data into with a
// buffer of size bytes: a line whole if it fits the buffer, else a buffer's worth of it at
// a time. The result holds, for each byte of data, the number of its piece.
func modelPieces(data []byte, size int) []int {
	piece := make([]int, len(data))
	for s, k := 0, 0; s < len(data); k++ {
		n := size
		if i := bytes.IndexByte(data[s:], '\n'); i >= 0 && i < size {
			n = i + 1
		}
		n = min(n, len(data)-s)
		for i := s; i < s+n; i++ {
			piece[i] = k
		}
		s += n
	}
	return piece
}

// stuffingDots is the model of dot-stuffing: it marks the leading dot of each line that
// follows a CRLF (or starts the data), the dot the sender added and the reader removes.
func stuffingDots(data []byte) []bool {
	dot := make([]bool, len(data))
	after := true
	for s := 0; s < len(data); {
		e := len(data)
		if i := bytes.IndexByte(data[s:], '\n'); i >= 0 {
			e = s + i + 1
		}
		dot[s] = after && data[s] == '.'
		after = bytes.HasSuffix(data[s:e], []byte("\r\n"))
		s = e
	}
	return dot
}

// unstuff undoes the dot-stuffing that stuffingDots finds.
func unstuff(data []byte) []byte {
	out := []byte{}
	dot := stuffingDots(data)
	for i, b := range data {
		if !dot[i] {
			out = append(out, b)
		}
	}
	return out
}
