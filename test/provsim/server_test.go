package provsim

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/repute-mail/repute/internal/classify"
)

// TestClassifierReadsReplies checks that the engine's classifier (internal/classify)
// reads every reply of the simulator the way it reads the providers' own: the same
// category as the real replies in its corpus, temporary exactly for deferrals. When a
// change to either package breaks this, one of the two has drifted from the providers.
func TestClassifierReadsReplies(t *testing.T) {
	want := map[Provider]map[Event]string{
		Google:    {EventRate: classify.RateLimited, EventConnections: classify.Transient, EventBlock: classify.IPReputation},
		Microsoft: {EventRate: classify.IPReputation, EventConnections: classify.RateLimited, EventBlock: classify.IPReputation},
		Yahoo:     {EventRate: classify.RateLimited, EventConnections: classify.RateLimited, EventBlock: classify.IPReputation},
	}
	c := classify.Default()
	for p, events := range want {
		for e, category := range events {
			r := replyFor(p, e, "192.0.2.7", "mx.provsim.test", "ps1a.2", "EHLO")
			got := c.Classify(r.Text)
			if got.Category != category || got.Temporary != (e != EventBlock) {
				t.Errorf("%s %s: %s (temporary %v), want %s\n%s", p, e, got.Category, got.Temporary, category, r.Text)
			}
			if got.Provider != "" && got.Provider != string(p) {
				t.Errorf("%s %s: classified as from %s", p, e, got.Provider)
			}
		}
		if got := c.Classify(ReplyFor(p, EventPerConnection, "192.0.2.7", "mx.provsim.test").Text); !got.Temporary {
			t.Errorf("%s per-connection reply classified permanent", p)
		}
	}
}

// TestConcurrentSenders runs several sending IPs with several connections each against
// all three providers at once and checks that every message is counted once.
func TestConcurrentSenders(t *testing.T) {
	const (
		ips     = 3
		conns   = 2
		perConn = 10
	)
	var servers []*Server
	for _, p := range Providers() {
		s, _ := start(t, Profile{Provider: p, MaxConnections: conns, RatePerMinute: 1000, Burst: 100})
		servers = append(servers, s)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(servers)*ips*conns)
	for _, s := range servers {
		for i := range ips {
			src := fmt.Sprintf("127.0.0.%d", 81+i)
			for range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- sendMany(s.Addr(), src, perConn)
				}()
			}
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	for _, s := range servers {
		if tot := s.Total(); tot.Accepted != ips*conns*perConn || tot.Connections != ips*conns || tot.Deferrals() != 0 {
			t.Errorf("%s totals %+v", s.Provider(), tot)
		}
		for i := range ips {
			if st := s.Stats(fmt.Sprintf("127.0.0.%d", 81+i)); st.Accepted != conns*perConn {
				t.Errorf("%s IP %d: %+v", s.Provider(), i, st)
			}
		}
		if n := len(s.Messages()); n != ips*conns*perConn {
			t.Errorf("%s: %d messages kept", s.Provider(), n)
		}
	}
}

// sendMany sends n messages over one connection from src. It runs in its own
// goroutine, so it returns an error instead of failing the test.
func sendMany(addr, src string, n int) error {
	d := net.Dialer{Timeout: clientTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(clientTimeout))
	r := bufio.NewReader(conn)
	expect := func(prefix string) error {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return fmt.Errorf("%s: waiting for %s: %v", src, prefix, err)
			}
			if !strings.HasPrefix(line, prefix) {
				return fmt.Errorf("%s: got %q, want %s", src, line, prefix)
			}
			if len(line) < 4 || line[3] != '-' {
				return nil
			}
		}
	}
	script := []struct{ send, want string }{{"", "220"}, {"EHLO c.example\r\n", "250"}}
	for i := range n {
		script = append(script,
			struct{ send, want string }{"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\nDATA\r\n", "250"},
			struct{ send, want string }{"", "250"},
			struct{ send, want string }{"", "354"},
			struct{ send, want string }{fmt.Sprintf("Subject: %d\r\n\r\nx\r\n.\r\n", i), "250"})
	}
	script = append(script, struct{ send, want string }{"QUIT\r\n", "221"})
	for _, step := range script {
		if _, err := io.WriteString(conn, step.send); err != nil {
			return err
		}
		if err := expect(step.want); err != nil {
			return err
		}
	}
	return nil
}

// TestKeepLimits checks that Messages keeps at most KeepMessages envelopes and
// KeepBodies bytes of bodies, while the counters count everything.
func TestKeepLimits(t *testing.T) {
	s, _ := start(t, DefaultProfile(Microsoft), func(c *Config) { c.KeepMessages, c.KeepBodies = 3, 10 })
	c := dial(t, s.Addr(), "127.0.0.91")
	c.hello()
	for _, body := range []string{"abcd\r\n", "efgh\r\n", "ij\r\n", "kl\r\n"} {
		if o := c.send("a@example.com", []string{"b@example.net"}, body); o.stage != "" {
			t.Fatalf("%q: %q", body, o.reply)
		}
	}
	msgs := s.Messages()
	if len(msgs) != 3 || string(msgs[0].Body) != "abcd\r\n" || msgs[1].Body != nil || msgs[1].Size != 6 || string(msgs[2].Body) != "ij\r\n" {
		t.Errorf("messages %+v", msgs)
	}
	if st := s.Total(); st.Accepted != 4 {
		t.Errorf("accepted %d", st.Accepted)
	}
}
