package provsim

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/smtp"
	"strings"
	"testing"
	"time"

	"github.com/mjl-/mox/dns"
	"github.com/mjl-/mox/smtpclient"

	"github.com/repute-mail/repute/internal/testcert"
)

// TestEngineClient drives each provider with the SMTP client the delivery engine uses
// (mox's smtpclient, which pipelines MAIL, RCPT and DATA) over STARTTLS, and checks that
// it reads the rate reply with the provider's status: for the transaction (Gmail at the
// end of DATA, Yahoo at MAIL, where the client has pipelined RCPT and DATA behind it) or
// for each recipient (Microsoft at RCPT).
func TestEngineClient(t *testing.T) {
	tests := []struct {
		p      Provider
		code   int
		secode string
	}{
		{Google, 421, "7.28"},
		{Microsoft, 451, "7.650"},
		{Yahoo, 421, "7.0"},
	}
	for _, tt := range tests {
		t.Run(string(tt.p), func(t *testing.T) {
			host := "mx." + string(tt.p) + ".provsim.test"
			srvTLS, cliTLS := testcert.SelfSigned(t, host)
			s, _ := start(t, Profile{Provider: tt.p, RatePerMinute: 60, Burst: 2, BlockAfter: -1}, func(c *Config) {
				c.TLS, c.Hostname, c.KeepBodies = srvTLS, host, 1<<20
			})
			ctx, cancel := context.WithTimeout(context.Background(), clientTimeout)
			defer cancel()
			deliver := func(c *smtpclient.Client) ([]smtpclient.Response, error) {
				msg := "Subject: hi\r\n\r\n.leading dot\r\nbody\r\n"
				return c.DeliverMultiple(ctx, "sender@example.com", []string{"a@example.net", "b@example.net"}, int64(len(msg)), strings.NewReader(msg), false, false, false)
			}
			c := newEngineClient(t, ctx, s, host, cliTLS)
			for i := range 2 {
				if _, err := deliver(c); err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
			}
			if c.TLSConnectionState() == nil {
				t.Error("no TLS after STARTTLS")
			}
			rcpts, err := deliver(c)
			var got []smtpclient.Error
			if tt.p == Microsoft {
				for _, r := range rcpts {
					got = append(got, smtpclient.Error(r))
				}
			} else if se := (smtpclient.Error{}); errors.As(err, &se) {
				got = append(got, se)
			}
			if len(got) == 0 {
				t.Fatalf("over the rate: %v, %+v: no SMTP status", err, rcpts)
			}
			for _, se := range got {
				if se.Code != tt.code || se.Secode != tt.secode || se.Permanent {
					t.Errorf("over the rate: code %d secode %s permanent %v (%v), want %d %s",
						se.Code, se.Secode, se.Permanent, se.Line, tt.code, tt.secode)
				}
			}
			c.Close()
			msgs := s.Messages()
			if len(msgs) != 2 || string(msgs[0].Body) != "Subject: hi\r\n\r\n.leading dot\r\nbody\r\n" || len(msgs[0].To) != 2 {
				t.Errorf("messages %+v", msgs)
			}
		})
	}
}

func newEngineClient(t *testing.T, ctx context.Context, s *Server, host string, cliTLS *tls.Config) *smtpclient.Client {
	t.Helper()
	conn, err := (&net.Dialer{Timeout: clientTimeout}).DialContext(ctx, "tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(clientTimeout))
	log := slog.New(slog.DiscardHandler)
	c, err := smtpclient.New(ctx, log, conn, smtpclient.TLSRequiredStartTLS, true,
		dns.Domain{ASCII: "client.example"}, dns.Domain{ASCII: host}, smtpclient.Opts{RootCAs: cliTLS.RootCAs})
	if err != nil {
		conn.Close()
		t.Fatal(err)
	}
	return c
}

// TestStandardLibraryClient sends a message with net/smtp over STARTTLS: dot-stuffed
// lines arrive unstuffed.
func TestStandardLibraryClient(t *testing.T) {
	const host = "gmail-smtp-in.provsim.test"
	srvTLS, cliTLS := testcert.SelfSigned(t, host)
	cliTLS.ServerName = host
	s, _ := start(t, DefaultProfile(Google), func(c *Config) { c.TLS, c.KeepBodies = srvTLS, 1<<20 })
	conn, err := net.DialTimeout("tcp", s.Addr(), clientTimeout)
	if err != nil {
		t.Fatal(err)
	}
	conn.SetDeadline(time.Now().Add(clientTimeout))
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example"); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("STARTTLS"); !ok {
		t.Fatal("STARTTLS not offered")
	}
	if err := c.StartTLS(cliTLS); err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS offered again inside TLS")
	}
	body := "Subject: dots\r\n\r\n.\r\n..two\r\nplain\r\n"
	if err := c.Mail("from@example.com"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("to@example.net"); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, body)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	msgs := s.Messages()
	if len(msgs) != 1 || string(msgs[0].Body) != body || msgs[0].Size != int64(len(body)) {
		t.Fatalf("messages %+v, want body %q", msgs, body)
	}
}

// TestPipelining sends a whole transaction in one write, as PIPELINING (RFC 2920)
// allows, and gets every reply in order.
func TestPipelining(t *testing.T) {
	s, _ := start(t, DefaultProfile(Microsoft))
	c := dial(t, s.Addr(), "127.0.0.71")
	c.hello()
	c.write("MAIL FROM:<a@example.com> SIZE=20 BODY=8BITMIME\r\nRCPT TO:<b@example.net>\r\nRCPT TO:<c@example.net>\r\nDATA\r\n")
	for _, want := range []string{"250 2.1.0", "250 2.1.5", "250 2.1.5", "354 "} {
		if got := c.mustRead(); !strings.HasPrefix(got, want) {
			t.Fatalf("got %q, want %s…", got, want)
		}
	}
	c.write("hello\r\n.\r\nNOOP\r\nQUIT\r\n")
	for _, want := range []string{"250 2.6.0", "250 2.0.0", "221 "} {
		if got := c.mustRead(); !strings.HasPrefix(got, want) {
			t.Fatalf("got %q, want %s…", got, want)
		}
	}
	c.closed()
}

// TestDataEnd checks dot-unstuffing and that only CRLF "." CRLF ends the data: a "."
// line ended by a bare LF, or after a line ended by a bare LF, is data.
func TestDataEnd(t *testing.T) {
	s, _ := start(t, DefaultProfile(Yahoo), func(c *Config) { c.KeepBodies = 1 << 10 })
	c := dial(t, s.Addr(), "127.0.0.72")
	c.hello()
	c.expect("MAIL FROM:<a@example.com>", "250")
	c.expect("RCPT TO:<b@example.net>", "250")
	c.expect("DATA", "354")
	c.write("a\r\n.\nb\n.\r\n..c\r\n.d\r\n")
	c.write(strings.Repeat("x", 10000) + "\r\n") // a line longer than the read buffer
	c.write(".\r\n")
	if got := c.mustRead(); !strings.HasPrefix(got, "250 ") {
		t.Fatalf("end of data: %q", got)
	}
	c.expect("NOOP", "250")
	msgs := s.Messages()
	want := "a\r\n\nb\n\r\n.c\r\nd\r\n" + strings.Repeat("x", 10000) + "\r\n"
	if len(msgs) != 1 || msgs[0].Size != int64(len(want)) || msgs[0].Body != nil {
		t.Fatalf("messages %+v, want size %d and no body over KeepBodies", msgs, len(want))
	}
}

// TestSequenceAndSyntax checks the replies to commands out of order or malformed.
func TestSequenceAndSyntax(t *testing.T) {
	s, _ := start(t, DefaultProfile(Google), func(c *Config) { c.MaxMessageSize = 100 })
	c := dial(t, s.Addr(), "127.0.0.73")
	if b := c.mustRead(); !strings.HasPrefix(b, "220 ") || !strings.HasSuffix(b, " - gsmtp") {
		t.Fatalf("banner %q", b)
	}
	c.expect("MAIL FROM:<a@example.com>", "503 5.5.1")
	c.expect("EHLO", "501 5.5.4")
	ehlo := c.expect("EHLO client.example", "250-")
	for _, ext := range []string{"250-SIZE 100", "250-8BITMIME", "250-PIPELINING", "250 ENHANCEDSTATUSCODES"} {
		if !strings.Contains(ehlo, ext) {
			t.Errorf("EHLO reply %q lacks %q", ehlo, ext)
		}
	}
	if strings.Contains(ehlo, "STARTTLS") {
		t.Error("STARTTLS offered without a TLS configuration")
	}
	c.expect("STARTTLS", "502")
	c.expect("RCPT TO:<b@example.net>", "503 5.5.1")
	c.expect("DATA", "503 5.5.1")
	c.expect("MAIL FROM:a@example.com", "501 5.5.4")
	c.expect("MAIL FROM:<a@example.com> SIZE=101", "552 5.3.4")
	c.expect("MAIL FROM:<a@example.com> FOO=BAR", "555 5.5.4")
	c.expect("MAIL FROM:<>", "250")
	c.expect("MAIL FROM:<a@example.com>", "503 5.5.1")
	c.expect("DATA", "554 5.5.1")
	c.expect("RCPT TO:<>", "501 5.5.4")
	c.expect("RCPT TO:<b@example.net>", "250")
	c.expect("RSET", "250")
	c.expect("DATA", "503 5.5.1")
	c.expect("VRFY x", "252")
	c.expect("NOOP", "250")
	c.expect("FOO", "500 5.5.1")
	c.expect(strings.Repeat("N", 2000), "500 5.5.2")
	// Data over MaxMessageSize is refused after the end of data, the session goes on.
	c.expect("MAIL FROM:<a@example.com>", "250")
	c.expect("RCPT TO:<b@example.net>", "250")
	c.expect("DATA", "354")
	c.write(strings.Repeat("y", 200) + "\r\n.\r\n")
	if got := c.mustRead(); !strings.HasPrefix(got, "552 5.3.4") {
		t.Errorf("oversized data: %q", got)
	}
	c.expect("NOOP", "250")
	if st := s.Total(); st.Accepted != 0 {
		t.Errorf("accepted %d", st.Accepted)
	}
	// Too many bad commands end the session.
	for i := 0; ; i++ {
		r := c.cmd("BAD")
		if strings.HasPrefix(r, "421 ") {
			break
		}
		if i > maxBadCommands {
			t.Fatal("no 421 after many bad commands")
		}
	}
	c.closed()
}

// TestFarTooLargeDataCloses checks that a client streaming data far beyond the size
// limit is cut off instead of being read forever: the server answers 552 and closes
// (the client may see the reply or, as the server leaves data unread, a reset).
func TestFarTooLargeDataCloses(t *testing.T) {
	s, _ := start(t, DefaultProfile(Yahoo), func(c *Config) { c.MaxMessageSize = 1000 })
	c := dial(t, s.Addr(), "127.0.0.74")
	c.hello()
	c.expect("MAIL FROM:<a@example.com>", "250")
	c.expect("RCPT TO:<b@example.net>", "250")
	c.expect("DATA", "354")
	chunk := strings.Repeat(strings.Repeat("z", 998)+"\r\n", 64)
	for range 48 { // 3 MiB at most; the server stops reading after 1 MiB over the limit
		if _, err := io.WriteString(c.c, chunk); err != nil {
			break
		}
	}
	got, err := c.read()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the server is still reading")
	}
	if err == nil && !strings.HasPrefix(got, "552 5.3.4") {
		t.Fatalf("reply %q", got)
	}
	if st := s.Total(); st.Accepted != 0 {
		t.Errorf("accepted %d", st.Accepted)
	}
}

// TestCloseIsBounded checks that Close ends idle sessions at once.
func TestCloseIsBounded(t *testing.T) {
	clock := NewManualClock(epoch)
	s, err := Start(Config{Addr: "127.0.0.1:0", Profile: DefaultProfile(Google), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, s.Addr(), "127.0.0.75")
	c.hello()
	began := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(began); d >= closeWait {
		t.Errorf("Close took %v", d)
	}
	c.closed()
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := net.DialTimeout("tcp", s.Addr(), time.Second); err == nil {
		t.Error("still listening after Close")
	}
}

// TestStartRejectsBadConfig checks the configuration errors.
func TestStartRejectsBadConfig(t *testing.T) {
	for name, cfg := range map[string]Config{
		"unknown provider": {Addr: "127.0.0.1:0", Profile: Profile{Provider: "aol"}},
		"negative limit":   {Addr: "127.0.0.1:0", Profile: Profile{Provider: Google, MaxConnections: -1}},
		"negative rate":    {Addr: "127.0.0.1:0", Profile: Profile{Provider: Google, RatePerMinute: -1}},
		"negative scale":   {Addr: "127.0.0.1:0", Profile: Profile{Provider: Google}, TimeScale: -2},
		"bad address":      {Addr: "127.0.0.1:x", Profile: Profile{Provider: Google}},
		"no port":          {Addr: "127.0.0.1", Profile: Profile{Provider: Google}},
		"all interfaces":   {Addr: ":0", Profile: Profile{Provider: Google}},
		"not loopback":     {Addr: "192.0.2.1:0", Profile: Profile{Provider: Google}},
	} {
		if s, err := Start(cfg); err == nil {
			s.Close()
			t.Errorf("%s: no error", name)
		}
	}
}

// TestRepliesAreWellFormed checks every reply of every provider: the right basic and
// enhanced code on every line, "-" on all lines but the last, no line over the 512
// bytes of RFC 5321 §4.5.3.1.5, the sender IP where the provider names it, and a
// temporary code exactly for deferrals.
func TestRepliesAreWellFormed(t *testing.T) {
	const ip = "192.0.2.7"
	for _, p := range Providers() {
		for _, e := range []Event{EventRate, EventConnections, EventPerConnection, EventBlock} {
			r := ReplyFor(p, e, ip, "mx.provsim.test")
			lines := strings.Split(r.Text, "\r\n")
			for i, l := range lines {
				sep := byte('-')
				if i == len(lines)-1 {
					sep = ' '
				}
				if len(l) < 4 || l[:3] != r.Code() || l[3] != sep || len(l)+2 > 512 {
					t.Errorf("%s %s line %d: %q", p, e, i, l)
				}
			}
			if wantTemp := e != EventBlock; (r.Code()[0] == '4') != wantTemp {
				t.Errorf("%s %s: code %s", p, e, r.Code())
			}
			if e != EventPerConnection && !(e == EventConnections && p != Yahoo) && !strings.Contains(r.Text, ip) {
				t.Errorf("%s %s: no sender IP in %q", p, e, r.Text)
			}
			if strings.HasPrefix(r.Code(), "421") && !r.Close {
				t.Errorf("%s %s: a 421 that does not close", p, e)
			}
		}
	}
	if n := strings.Count(ReplyFor(Google, EventRate, ip, "h").Text, "\r\n"); n != 5 {
		t.Errorf("Gmail's 4.7.28 reply has %d line breaks, want 5 (six lines)", n)
	}
}
