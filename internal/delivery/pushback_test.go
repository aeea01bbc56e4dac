package delivery

import (
	"bufio"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/repute-mail/repute/internal/route"
)

// scriptServer is an SMTP server on addr whose every reply comes from answer: it gets the
// command line (or "." at the end of message data) and the number of the message in the
// connection, and returns the reply lines and whether to close the connection after them.
// It counts the commands it sees.
type scriptServer struct {
	mu       sync.Mutex
	commands []string
}

func startScript(t *testing.T, addr string, answer func(cmd string, msgNo int) (string, bool)) *scriptServer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ss := &scriptServer{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go ss.serve(c, answer)
		}
	}()
	return ss
}

func (ss *scriptServer) serve(c net.Conn, answer func(string, int) (string, bool)) {
	defer c.Close()
	r := bufio.NewReader(c)
	c.Write([]byte("220 mx.b.test ESMTP\r\n"))
	msgNo, inData := 0, false
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		if inData {
			if line != "." {
				continue
			}
			inData, line = false, "."
		}
		ss.mu.Lock()
		ss.commands = append(ss.commands, line)
		ss.mu.Unlock()
		verb := strings.ToUpper(strings.Fields(line + " x")[0])
		var reply string
		var closeAfter bool
		switch verb {
		case "EHLO":
			reply = "250-mx.b.test\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES"
		case "QUIT":
			c.Write([]byte("221 2.0.0 bye\r\n"))
			return
		default:
			if verb == "MAIL" {
				msgNo++
			}
			reply, closeAfter = answer(line, msgNo)
			if verb == "DATA" && strings.HasPrefix(reply, "354") {
				inData = true
			}
		}
		c.Write([]byte(reply + "\r\n"))
		if closeAfter {
			return
		}
	}
}

func (ss *scriptServer) count(prefix string) int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	n := 0
	for _, c := range ss.commands {
		if strings.HasPrefix(strings.ToUpper(c), prefix) {
			n++
		}
	}
	return n
}

// TestMailFromRefusalWins: a provider that refuses MAIL FROM (a block) gets "503 MAIL
// first" for the pipelined RCPTs; every recipient's outcome is the MAIL FROM reply.
func TestMailFromRefusalWins(t *testing.T) {
	e := newEnv(t, twoMX...)
	e.add("mx2.b.test. A 127.0.0.11")
	const block = "550 5.7.1 Unfortunately, messages from [127.0.0.1] weren't sent. (S3140)"
	startScript(t, e.addr("127.0.0.11"), func(cmd string, _ int) (string, bool) {
		switch {
		case strings.HasPrefix(cmd, "MAIL"):
			return block, false
		case strings.HasPrefix(cmd, "RCPT"), strings.HasPrefix(cmd, "DATA"):
			return "503 5.5.1 MAIL first", false
		}
		return "250 2.0.0 OK", false
	})
	got := e.deliver("b.test", msg("1", "alice@a.test", "bob@b.test", "carol@b.test"))
	if len(got) != 2 {
		t.Fatalf("got %d attempts", len(got))
	}
	for _, a := range got {
		if a.Code != 550 || a.Enhanced != "5.7.1" || !strings.Contains(a.Text, "S3140") || !a.Permanent {
			t.Errorf("%s: %d %s %q, want the MAIL FROM reply", a.Rcpt, a.Code, a.Enhanced, a.Text)
		}
	}
}

// TestFourTwentyOneEndsTheConnection: Gmail's 421 4.7.28 at the end of DATA closes the
// connection. It is the outcome of that message and of the rest of the batch: no RSET on
// the dead connection, no new connection in this delivery.
func TestFourTwentyOneEndsTheConnection(t *testing.T) {
	e := newEnv(t, twoMX...)
	e.add("mx2.b.test. A 127.0.0.11")
	const slowDown = "421 4.7.28 Our system has detected an unusual rate of unsolicited mail originating from your IP address."
	ss := startScript(t, e.addr("127.0.0.11"), func(cmd string, msgNo int) (string, bool) {
		switch {
		case strings.HasPrefix(cmd, "DATA"):
			return "354 go ahead", false
		case cmd == "." && msgNo == 2:
			return slowDown, true
		}
		return "250 2.0.0 OK", false
	})
	got := e.deliver("b.test", msg("1", "alice@a.test", "u1@b.test"), msg("2", "alice@a.test", "u2@b.test"),
		msg("3", "alice@a.test", "u3@b.test"), msg("4", "alice@a.test", "u4@b.test"))
	want := map[string]int{"u1@b.test": 250, "u2@b.test": 421, "u3@b.test": 421, "u4@b.test": 421}
	for _, a := range got {
		if a.Code != want[a.Rcpt] || (a.Code == 421 && (a.Enhanced != "4.7.28" || a.Permanent)) {
			t.Errorf("%s: %d %s %q, want %d", a.Rcpt, a.Code, a.Enhanced, a.Text, want[a.Rcpt])
		}
	}
	if n := ss.count("MAIL"); n != 2 {
		t.Errorf("%d transactions, want 2 (none after the 421)", n)
	}
	if n := ss.count("RSET"); n != 0 {
		t.Errorf("%d RSET commands after the 421", n)
	}
}

// TestConnectRefusalStage: a 421 greeting ("too many connections") is reported as a
// failure before any transaction, so the scheduler can lower the connection count
// instead of counting an attempt; a refusal inside a transaction is not.
func TestConnectRefusalStage(t *testing.T) {
	e := newEnv(t, twoMX...)
	e.add("mx2.b.test. A 127.0.0.11")
	refuser(t, e.addr("127.0.0.11"), "421 4.3.2 The maximum number of concurrent server connections has exceeded a limit, closing transmission channel")
	got := e.deliver("b.test", msg("1", "alice@a.test", "bob@b.test"))
	if len(got) != 1 || got[0].Code != 421 || got[0].Stage != StageConnect {
		t.Fatalf("got %+v, want a 421 at the connect stage", got)
	}

	e2 := newEnv(t, twoMX...)
	e2.add("mx2.b.test. A 127.0.0.11")
	startScript(t, e2.addr("127.0.0.11"), func(cmd string, _ int) (string, bool) {
		if strings.HasPrefix(cmd, "MAIL") {
			return "421 4.7.0 Try again later, closing connection", true
		}
		return "250 2.0.0 OK", false
	})
	got = e2.deliver("b.test", msg("1", "alice@a.test", "bob@b.test"))
	if len(got) != 1 || got[0].Code != 421 || got[0].Stage != "" {
		t.Fatalf("got %+v, want a 421 inside the transaction", got)
	}
}

// TestProviderRequiresTLS: a route whose provider always offers STARTTLS (the shaper's
// profile says so) never sends in plain text to a host that does not offer it: the
// offer was stripped on the way, and the message waits.
func TestProviderRequiresTLS(t *testing.T) {
	e := newEnv(t, twoMX...)
	e.add("mx2.b.test. A 127.0.0.11")
	sk := startSink(t, e.addr("127.0.0.11"), sinkConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rt := (&route.Resolver{DNS: e.c.Resolver, STS: e.sts}).Resolve(ctx, "b.test")
	rt.RequireTLS = true
	got := collectRoute(ctx, e.c, rt, e.source, []*Message{msg("1", "alice@a.test", "bob@b.test")})
	if len(got) != 1 || got[0].Code == 250 || got[0].Permanent {
		t.Fatalf("got %+v, want a temporary failure", got)
	}
	if n := len(sk.received()); n != 0 {
		t.Fatalf("%d messages sent in plain text", n)
	}
	rt.RequireTLS = false
	if got := collectRoute(ctx, e.c, rt, e.source, []*Message{msg("2", "alice@a.test", "bob@b.test")}); len(got) != 1 || got[0].Code != 250 {
		t.Fatalf("without the requirement: %+v", got)
	}
}
