package imapsrv

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"

	"github.com/repute-mail/repute/internal/store"
)

func TestLoginRefusedWithoutTLS(t *testing.T) {
	h := start(t, "", nil)
	c, err := imapclient.DialInsecure(h.plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	caps, err := c.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	if !caps.Has(imap.CapLoginDisabled) || !caps.Has(imap.CapStartTLS) || caps.Has("AUTH=PLAIN") {
		t.Errorf("plaintext capabilities = %v, want LOGINDISABLED and STARTTLS without AUTH=PLAIN", caps)
	}
	if err := c.Login(testUser, testPass).Wait(); imapCode(err) != imap.ResponseCodePrivacyRequired {
		t.Errorf("LOGIN without TLS: %v, want NO [PRIVACYREQUIRED]", err)
	}
	if err := c.Authenticate(sasl.NewPlainClient("", testUser, testPass)); imapCode(err) != imap.ResponseCodePrivacyRequired {
		t.Errorf("AUTHENTICATE PLAIN without TLS: %v, want NO [PRIVACYREQUIRED]", err)
	}
	if _, err := c.List("", "*", nil).Collect(); err == nil {
		t.Error("LIST worked without login")
	}
}

func TestLogin(t *testing.T) {
	var mu sync.Mutex
	var remotes []net.Addr
	h := start(t, "", func(s *Server) {
		s.Authenticate = func(ctx context.Context, user, pass string, remote net.Addr) (store.User, error) {
			mu.Lock()
			remotes = append(remotes, remote)
			mu.Unlock()
			return s.Mailstore.Authenticate(ctx, user, pass)
		}
	})
	dialStartTLS := func() (*imapclient.Client, error) { return imapclient.DialStartTLS(h.plain, h.options(nil)) }
	dialTLS := func() (*imapclient.Client, error) { return imapclient.DialTLS(h.implicit, h.options(nil)) }
	tests := []struct {
		name  string
		dial  func() (*imapclient.Client, error)
		user  string
		pass  string
		plain bool // AUTHENTICATE PLAIN instead of LOGIN
		ok    bool
	}{
		{"starttls login", dialStartTLS, testUser, testPass, false, true},
		{"starttls authenticate", dialStartTLS, testUser, testPass, true, true},
		{"implicit tls login", dialTLS, testUser, testPass, false, true},
		{"implicit tls authenticate", dialTLS, "Alice@Example.TEST", testPass, true, true},
		{"wrong password", dialTLS, testUser, "wrong", false, false},
		{"unknown user", dialTLS, "bob@example.test", testPass, true, false},
		{"not an address", dialTLS, "alice", testPass, false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.dial()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			caps, err := c.Capability().Wait()
			if err != nil || caps.Has(imap.CapLoginDisabled) || caps.Has(imap.CapStartTLS) || !caps.Has("AUTH=PLAIN") {
				t.Errorf("capabilities over TLS = %v, %v", caps, err)
			}
			if tc.plain {
				err = c.Authenticate(sasl.NewPlainClient("", tc.user, tc.pass))
			} else {
				err = c.Login(tc.user, tc.pass).Wait()
			}
			if (err == nil) != tc.ok {
				t.Fatalf("login: %v, want ok=%v", err, tc.ok)
			}
			if !tc.ok && imapCode(err) != imap.ResponseCodeAuthenticationFailed {
				t.Errorf("failed login answered %v", err)
			}
			if tc.ok {
				if _, err := c.Select("INBOX", nil).Wait(); err != nil {
					t.Errorf("select after login: %v", err)
				}
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if len(remotes) != len(tests) || !strings.HasPrefix(remotes[0].String(), "127.0.0.1:") {
		t.Errorf("Authenticate saw remotes %v", remotes)
	}
}

func TestMaxConnectionsPerIP(t *testing.T) {
	h := start(t, "", func(s *Server) { s.MaxConnectionsPerIP = 2 })
	a, b := h.login(nil), h.login(nil)
	conn, err := tls.Dial("tcp", h.implicit, h.clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "* BYE") {
		t.Errorf("third connection greeted with %q, %v; want BYE", line, err)
	}
	// A slot frees up when a connection ends.
	if err := a.Logout().Wait(); err != nil {
		t.Fatal(err)
	}
	a.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := imapclient.DialTLS(h.implicit, h.options(nil))
		if err != nil {
			t.Fatal(err)
		}
		err = c.Login(testUser, testPass).Wait()
		c.Close()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no slot after a logout: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := b.Noop().Wait(); err != nil {
		t.Error(err)
	}
}

func TestIdleTimeout(t *testing.T) {
	h := start(t, "", func(s *Server) { s.IdleTimeout = 300 * time.Millisecond })
	c := h.login(nil)
	mustSelect(t, c, "INBOX", false)
	select {
	case <-c.Closed():
	case <-time.After(10 * time.Second):
		t.Fatal("an inactive session was not closed")
	}
}

func TestShutdownEndsSessions(t *testing.T) {
	h := start(t, "", nil)
	c := h.login(nil)
	mustSelect(t, c, "INBOX", false)
	idle, err := c.Idle()
	if err != nil {
		t.Fatal(err)
	}
	pre, err := imapclient.DialInsecure(h.plain, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pre.Close()
	if _, err := pre.Capability().Wait(); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	h.stop()
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("shutdown took %v", d)
	}
	select {
	case <-c.Closed():
	case <-time.After(5 * time.Second):
		t.Error("session still open after shutdown")
	}
	idle.Close()
	if err := h.srv.Serve(nil); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Shutdown = %v", err)
	}
}

// Malformed and hostile commands get BAD or NO; the server keeps serving.
func TestBadInput(t *testing.T) {
	h := start(t, "", nil)
	c := h.login(nil)
	appendMsg(t, c, "INBOX", simpleMsg("one", "body"), nil)
	conn, err := tls.Dial("tcp", h.implicit, h.clientTLS)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(conn)
	if _, err := r.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	// imapserver answers its own parse failures of a number set or a modified-UTF-7 name
	// with NO [SERVERBUG]; every other line must get a proper answer.
	lines := []struct {
		cmd      string
		parseBug bool
	}{
		{"a0 LOGIN " + testUser + ` "` + testPass + `"`, false},
		{"a1 FETCH 1 BODY[]", false},
		{"a2 SELECT INBOX", false},
		{"a3 FETCH 1:* (BODY.PEEK[1.2.3.4.5.6.7.8] BODY.PEEK[HEADER.FIELDS ()] BINARY.PEEK[9] BINARY.SIZE[1])", false},
		{"a4 FETCH 4294967295:* FLAGS", false},
		{"a5 UID FETCH 0:* FLAGS", true},
		{"a6 SEARCH OR", false},
		{"a7 SEARCH NOT NOT NOT (((((ALL)))))", false},
		{"a8 SEARCH LARGER 99999999999999999999", false},
		{"a9 STORE 1 +FLAGS (\\Bogus $ok)", false},
		{"b0 STORE * FLAGS.SILENT ()", false},
		{"b1 CREATE \"a\x7fb\"", true},
		{"b2 CREATE /", false},
		{"b3 RENAME INBOX INBOX", false},
		{"b4 STATUS INBOX (MESSAGES UNSEEN DELETED SIZE DELETED-STORAGE RECENT APPENDLIMIT)", false},
		{"b5 LIST (SPECIAL-USE SUBSCRIBED RECURSIVEMATCH) \"\" (\"*\" \"%\") RETURN (CHILDREN STATUS (MESSAGES))", false},
		{"b6 LSUB \"\" *", false},
		{"b7 COPY 1:* \"No such\"", false},
		{"b8 UID MOVE $ INBOX", false},
		{"b9 SEARCH RETURN (SAVE) ALL", false},
		{"c0 FETCH $ (UID)", false},
		{"c1 EXAMINE INBOX", false},
		{"c2 EXPUNGE", false},
		{"c3 STORE 1 +FLAGS (\\Seen)", false},
		{"c4 CLOSE", false},
	}
	for _, l := range lines {
		fmt.Fprintf(conn, "%s\r\n", l.cmd)
		tag := strings.Fields(l.cmd)[0]
		for {
			resp, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("after %q: %v", l.cmd, err)
			}
			if strings.HasPrefix(resp, tag+" ") {
				t.Logf("%s -> %s", l.cmd, strings.TrimSpace(resp))
				if strings.Contains(resp, "SERVERBUG") && !l.parseBug {
					t.Errorf("%q -> %s", l.cmd, resp)
				}
				break
			}
		}
	}
	// A command over imapserver's 50 KiB limit ends the connection, and only it.
	fmt.Fprintf(conn, "c5 %s\r\n", strings.Repeat("x", 60000))
	if _, err := io.Copy(io.Discard, r); err != nil {
		t.Logf("oversized command: %v", err)
	}
	// The other session is unaffected and the message intact.
	mustSelect(t, c, "INBOX", false)
	msgs := fetch(t, c, imap.SeqSetNum(1), &imap.FetchOptions{Flags: true})
	if len(msgs) != 1 {
		t.Fatalf("fetch after bad input: %+v", msgs)
	}
}
