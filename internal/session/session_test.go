package session

import (
	"bufio"
	"context"
	"crypto/tls"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"

	"github.com/repute-mail/repute/internal/store"
	"github.com/repute-mail/repute/internal/testcert"
)

type env struct {
	db    *store.DB
	mx    string // address of the MX listener
	sub   string // submission (STARTTLS)
	subs  string // submissions (implicit TLS)
	tls   *tls.Config
	alice store.User
	mu    sync.Mutex
	notes [][]store.Stored
}

func selfSigned(t testing.TB) *tls.Config {
	server, _ := testcert.SelfSigned(t, "mx.a.test")
	return server
}

func start(t *testing.T, tweak func(*Server)) *env {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, store.Options{Path: filepath.Join(t.TempDir(), "r.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e := &env{db: db, tls: selfSigned(t)}
	db.AddDomain(ctx, "a.test")
	if e.alice, err = db.AddUser(ctx, "alice@a.test", "secret"); err != nil {
		t.Fatal(err)
	}
	db.AddUser(ctx, "bob@a.test", "secret")
	db.AddAlias(ctx, "sales@a.test", "alice@a.test")
	auth := func(ctx context.Context, u, p string, _ netip.Addr) (store.User, error) {
		return db.Authenticate(ctx, u, p)
	}
	limits := &Limits{PerIP: 100}
	mk := func(mode Mode, implicit bool) string {
		s := &Server{Hostname: "mx.a.test", Mode: mode, ImplicitTLS: implicit, TLSConfig: e.tls, DB: db,
			Authenticate: auth, Limits: limits, MaxMessageSize: 10000, MaxRecipients: 3,
			Delivered: func(st []store.Stored) { e.mu.Lock(); e.notes = append(e.notes, st); e.mu.Unlock() }}
		if tweak != nil {
			tweak(s)
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		if implicit {
			l = tls.NewListener(l, e.tls)
		}
		go s.Serve(l)
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s.Shutdown(ctx)
		})
		return l.Addr().String()
	}
	e.mx = mk(MX, false)
	e.sub = mk(Submission, false)
	e.subs = mk(Submission, true)
	return e
}

// dialogue sends each line of script and returns every reply line received, one string per
// complete reply ("code text" of its last line).
type client struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	t.Cleanup(func() { nc.Close() })
	c := &client{t: t, nc: nc, br: bufio.NewReader(nc)}
	c.expect("220")
	return c
}

func (c *client) reply() string {
	c.t.Helper()
	var last string
	for {
		line, err := c.br.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading reply: %v (so far %q)", err, last)
		}
		last = strings.TrimRight(line, "\r\n")
		if len(last) < 4 || last[3] != '-' {
			return last
		}
	}
}

func (c *client) send(s string) { c.nc.Write([]byte(s)) }

func (c *client) cmd(line, want string) string {
	c.t.Helper()
	c.send(line + "\r\n")
	return c.expect(want)
}

func (c *client) expect(want string) string {
	c.t.Helper()
	got := c.reply()
	if !strings.HasPrefix(got, want) {
		c.t.Fatalf("got %q, want prefix %q", got, want)
	}
	return got
}

func count(t *testing.T, db *store.DB) int {
	var n int
	if err := db.Read().QueryRow(`SELECT count(*) FROM messages`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestMXDialogues(t *testing.T) {
	e := start(t, nil)
	long := strings.Repeat("x", 5000)
	tests := []struct {
		name   string
		script [][2]string // command, expected reply prefix
	}{
		{"deliver", [][2]string{{"EHLO c.test", "250"}, {"MAIL FROM:<x@remote.test>", "250 2.1.0"},
			{"RCPT TO:<alice@a.test>", "250 2.1.5"}, {"DATA", "354"}, {"Subject: t\r\n\r\nhi\r\n.", "250 2.0.0"}}},
		{"unknown user", [][2]string{{"EHLO c.test", "250"}, {"MAIL FROM:<x@remote.test>", "250"},
			{"RCPT TO:<nobody@a.test>", "550 5.1.1"}}},
		{"relay denied", [][2]string{{"EHLO c.test", "250"}, {"MAIL FROM:<x@remote.test>", "250"},
			{"RCPT TO:<victim@elsewhere.test>", "550 5.7.1"}}},
		{"malformed recipient", [][2]string{{"EHLO c.test", "250"}, {"MAIL FROM:<x@remote.test>", "250"},
			{"RCPT TO:<a@@b>", "501 5.1.3"}, {"RCPT TO:<alice@a.test>", "250"}}},
		{"malformed sender", [][2]string{{"EHLO c.test", "250"}, {"MAIL FROM:<a@@b>", "501 5.1.7"}, {"NOOP", "250"}}},
		{"overlong line keeps session", [][2]string{{"EHLO c.test", "250"}, {long, "500 5.5.2"}, {"NOOP", "250"}}},
		{"too many recipients", [][2]string{{"EHLO c.test", "250"}, {"MAIL FROM:<>", "250"},
			{"RCPT TO:<alice@a.test>", "250"}, {"RCPT TO:<bob@a.test>", "250"}, {"RCPT TO:<sales@a.test>", "250"},
			{"RCPT TO:<alice+x@a.test>", "452 4.5.3"}}},
		{"data before mail", [][2]string{{"EHLO c.test", "250"}, {"DATA", "503 5.5.1"}, {"RCPT TO:<alice@a.test>", "503 5.5.1"}}},
		{"mail before helo", [][2]string{{"MAIL FROM:<x@remote.test>", "503 5.5.1"}}},
		{"data without rcpt", [][2]string{{"EHLO c.test", "250"}, {"MAIL FROM:<x@r.test>", "250"}, {"DATA", "503 5.5.1"}}},
		{"nested mail", [][2]string{{"EHLO c.test", "250"}, {"MAIL FROM:<x@r.test>", "250"}, {"MAIL FROM:<x@r.test>", "503 5.5.1"}}},
		{"size param too big", [][2]string{{"EHLO c.test", "250"}, {"MAIL FROM:<x@r.test> SIZE=999999", "552 5.3.4"}}},
		{"unknown param", [][2]string{{"EHLO c.test", "250"}, {"MAIL FROM:<x@r.test> FOO=1", "555 5.5.4"}}},
		{"auth on mx", [][2]string{{"EHLO c.test", "250"}, {"AUTH PLAIN AGFsaWNlAHNlY3JldA==", "502 5.5.1"}}},
		{"unknown command", [][2]string{{"FROB", "500 5.5.2"}, {"NOOP", "250"}}},
		{"postmaster", [][2]string{{"EHLO c.test", "250"}, {"MAIL FROM:<x@r.test>", "250"}, {"RCPT TO:<Postmaster>", "550 5.1.1"}}},
		{"over size", [][2]string{{"EHLO c.test", "250"}, {"MAIL FROM:<x@r.test>", "250"}, {"RCPT TO:<bob@a.test>", "250"},
			{"DATA", "354"}, {"Subject: big\r\n\r\n" + strings.Repeat("y", 12000) + "\r\n.", "552 5.3.4"}, {"NOOP", "250"}}},
		{"bare LF refused", [][2]string{{"EHLO c.test", "250"}, {"MAIL FROM:<x@r.test>", "250"}, {"RCPT TO:<bob@a.test>", "250"},
			{"DATA", "354"}, {"Subject: smuggle\n\nbody\n.\nMAIL FROM:<evil@r.test>\r\n.", "554 5.5.2"}, {"NOOP", "250"}}},
		{"helo without arg", [][2]string{{"HELO", "501 5.5.4"}}},
		{"http", [][2]string{{"GET / HTTP/1.1", "421"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, e.mx)
			for _, step := range tc.script {
				c.cmd(step[0], step[1])
			}
		})
	}
	if n := count(t, e.db); n != 1 {
		t.Errorf("%d messages stored, want exactly 1 (only the 'deliver' dialogue may store)", n)
	}
}

func TestEHLOAndPipelining(t *testing.T) {
	e := start(t, nil)
	c := dial(t, e.mx)
	c.send("EHLO c.test\r\n")
	var caps []string
	for {
		line, _ := c.br.ReadString('\n')
		caps = append(caps, strings.TrimSpace(line[4:]))
		if line[3] == ' ' {
			break
		}
	}
	all := strings.Join(caps, "|")
	for _, want := range []string{"PIPELINING", "SIZE 10000", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "STARTTLS", "CHUNKING"} {
		if !strings.Contains(all, want) {
			t.Errorf("EHLO lacks %s: %s", want, all)
		}
	}
	if strings.Contains(all, "AUTH") {
		t.Errorf("MX must not offer AUTH: %s", all)
	}
	// Everything in one write, as a pipelining client does.
	c.send("MAIL FROM:<x@r.test>\r\nRCPT TO:<alice@a.test>\r\nRCPT TO:<nobody@a.test>\r\nRCPT TO:<bob@a.test>\r\nDATA\r\n")
	for _, want := range []string{"250", "250", "550 5.1.1", "250", "354"} {
		c.expect(want)
	}
	c.send("Subject: p\r\n\r\n..dot\r\n.\r\nQUIT\r\n")
	c.expect("250 2.0.0")
	c.expect("221")
	var body []byte
	e.db.Read().QueryRow(`SELECT data FROM blobs`).Scan(&body)
	if !strings.Contains(string(body), "\r\n.dot\r\n") || !strings.HasPrefix(string(body), "Received: from c.test ([127.0.0.1])") {
		t.Errorf("stored body wrong:\n%s", body)
	}
	if n := count(t, e.db); n != 2 {
		t.Errorf("stored %d copies, want 2 (alice and bob share one body)", n)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.notes) != 1 || len(e.notes[0]) != 2 {
		t.Errorf("Delivered notifications = %v", e.notes)
	}
}

func TestBDAT(t *testing.T) {
	e := start(t, nil)
	c := dial(t, e.mx)
	c.cmd("EHLO c.test", "250")
	c.cmd("MAIL FROM:<x@r.test>", "250")
	c.cmd("RCPT TO:<alice@a.test>", "250")
	part1 := "Subject: chunked\r\n\r\n"
	part2 := "line one\r\nline two\r\n"
	c.send(fmt.Sprintf("BDAT %d\r\n%s", len(part1), part1))
	c.expect("250")
	c.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(part2), part2))
	c.expect("250 2.0.0")
	// BDAT without a transaction still consumes its chunk.
	c.send("BDAT 5 LAST\r\nhello")
	c.expect("503 5.5.1")
	c.cmd("NOOP", "250")
	if n := count(t, e.db); n != 1 {
		t.Errorf("stored %d, want 1", n)
	}
}

func TestSubmission(t *testing.T) {
	e := start(t, nil)
	plain := base64.StdEncoding.EncodeToString([]byte("\x00alice@a.test\x00secret"))

	// Before TLS: no AUTH offered, AUTH refused, MAIL refused.
	c := dial(t, e.sub)
	c.cmd("EHLO c.test", "250")
	c.cmd("AUTH PLAIN "+plain, "538 5.7.11")
	c.cmd("MAIL FROM:<alice@a.test>", "530 5.7.0")

	// With go-smtp's client over STARTTLS.
	cl, err := gosmtp.DialStartTLS(e.sub, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Auth(plainAuth("alice@a.test", "wrong")); err == nil || !strings.Contains(err.Error(), "535") {
		t.Fatalf("wrong password: %v", err)
	}
	if err := cl.Auth(plainAuth("alice@a.test", "secret")); err != nil {
		t.Fatal(err)
	}
	if err := cl.Mail("bob@a.test", nil); err == nil || !strings.Contains(err.Error(), "553") {
		t.Fatalf("sending as bob: %v", err)
	}
	for _, from := range []string{"alice@a.test", "Alice+tag@a.test", "sales@a.test"} {
		if err := cl.Mail(from, nil); err != nil {
			t.Fatalf("sending as %s: %v", from, err)
		}
		cl.Reset()
	}
	if err := cl.SendMail("alice@a.test", []string{"bob@a.test", "carol@remote.test"},
		strings.NewReader("Subject: hello\r\n\r\nbody\r\n")); err != nil {
		t.Fatal(err)
	}
	q, _ := e.db.Queue(context.Background())
	if len(q) != 1 || q[0].Rcpt != "carol@remote.test" {
		t.Errorf("queue = %+v, want carol", q)
	}
	var body string
	e.db.Read().QueryRow(`SELECT data FROM blobs`).Scan(&body)
	for _, want := range []string{"with ESMTPSA", "Message-ID: <", "Date: "} {
		if !strings.Contains(body, want) {
			t.Errorf("submitted message lacks %q:\n%s", want, body)
		}
	}

	// Implicit TLS (465) offers AUTH at once.
	tc, err := tls.Dial("tcp", e.subs, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	c2 := &client{t: t, nc: tc, br: bufio.NewReader(tc)}
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	c2.expect("220")
	c2.cmd("EHLO c.test", "250")
	c2.cmd("AUTH PLAIN "+plain, "235 2.7.0")
	c2.cmd("MAIL FROM:<alice@a.test> REQUIRETLS", "250")
	c2.cmd("RCPT TO:<dave@remote.test>", "250")
	c2.cmd("DATA", "354")
	c2.cmd("Subject: secret\r\n\r\nx\r\n.", "250")
	q, _ = e.db.Queue(context.Background())
	if len(q) != 2 || !q[1].RequireTLS || q[0].RequireTLS {
		t.Errorf("REQUIRETLS not carried to the queue: %+v", q)
	}
	// Without TLS the parameter is refused (RFC 8689 §5).
	c3 := dial(t, e.mx)
	c3.cmd("EHLO c.test", "250")
	c3.cmd("MAIL FROM:<x@r.test> REQUIRETLS", "530 5.7.10")
}

type plainAuthClient struct{ user, pass string }

func plainAuth(u, p string) *plainAuthClient { return &plainAuthClient{u, p} }
func (a *plainAuthClient) Start() (string, []byte, error) {
	return "PLAIN", []byte("\x00" + a.user + "\x00" + a.pass), nil
}
func (a *plainAuthClient) Next([]byte) ([]byte, error) {
	return nil, errors.New("unexpected challenge")
}

func TestStalledClientsDoNotBlock(t *testing.T) {
	e := start(t, nil)
	// A client that starts a TLS handshake on 465 and stops, and one that is silent on 25.
	for _, addr := range []string{e.subs, e.mx} {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		if addr == e.subs {
			nc.Write([]byte{0x16, 0x03, 0x01, 0x00, 0x50})
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c := dial(t, e.mx)
		c.cmd("EHLO c.test", "250")
		c.cmd("QUIT", "221")
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("a stalled client blocked another session")
	}
}

func TestConnectionLimitPerIP(t *testing.T) {
	e := start(t, func(s *Server) { s.Limits = &Limits{PerIP: 2} })
	dial(t, e.mx)
	dial(t, e.mx)
	if line := greeting(t, e.mx); !strings.HasPrefix(line, "421 4.7.0") {
		t.Errorf("third connection got %q, want 421 4.7.0", line)
	}
}

// greeting connects to addr and returns the server's first line.
func greeting(t *testing.T, addr string) string {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(nc).ReadString('\n')
	return line
}

func TestDiskFullDefers(t *testing.T) {
	e := start(t, func(s *Server) {
		s.FreeSpace = func() (int64, error) { return 1 << 20, nil }
		s.MinFreeDisk = 100 << 20
	})
	c := dial(t, e.mx)
	c.cmd("EHLO c.test", "250")
	c.cmd("MAIL FROM:<x@r.test>", "452 4.3.1")
}

func TestStoreFailureIs451(t *testing.T) {
	e := start(t, nil)
	// Make every insert of a body fail, as a broken database would.
	e.db.Write(context.Background(), func(tx *sql.Tx) error {
		_, err := tx.Exec(`CREATE TRIGGER fail BEFORE INSERT ON blobs BEGIN SELECT RAISE(ABORT, 'broken'); END`)
		return err
	})
	c := dial(t, e.mx)
	c.cmd("EHLO c.test", "250")
	c.cmd("MAIL FROM:<x@r.test>", "250")
	c.cmd("RCPT TO:<bob@a.test>", "250")
	c.cmd("DATA", "354")
	got := c.cmd("Subject: x\r\n\r\nx\r\n.", "451 4.3.0")
	if strings.Contains(got, "broken") {
		t.Errorf("internal error leaked to the client: %q", got)
	}
}

func TestShutdownDrains(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, store.Options{Path: filepath.Join(t.TempDir(), "r.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.AddDomain(ctx, "a.test")
	db.AddUser(ctx, "bob@a.test", "pw")
	s := &Server{Hostname: "mx.a.test", DB: db}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	go s.Serve(l)
	idle := dial(t, l.Addr().String())
	busy := dial(t, l.Addr().String())
	busy.cmd("EHLO c.test", "250")
	busy.cmd("MAIL FROM:<x@r.test>", "250")
	busy.cmd("RCPT TO:<bob@a.test>", "250")
	busy.cmd("DATA", "354")
	done := make(chan error)
	go func() { done <- s.Shutdown(context.Background()) }()
	idle.expect("421 4.3.2")
	busy.cmd("Subject: x\r\n\r\nx\r\n.", "250") // the transaction in progress completes
	busy.expect("421 4.3.2")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestSuppressedRecipientRefused(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	e.db.Suppress(ctx, store.Suppression{SenderDomain: "a.test", Address: "gone@remote.test", Reason: "bad_mailbox",
		Source: "delivery", Detail: "550 5.1.1 user unknown"})
	tc, err := tls.Dial("tcp", e.subs, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	c := &client{t: t, nc: tc, br: bufio.NewReader(tc)}
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	c.expect("220")
	c.cmd("EHLO c.test", "250")
	c.cmd("AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00alice@a.test\x00secret")), "235")
	c.cmd("MAIL FROM:<alice@a.test>", "250")
	got := c.cmd("RCPT TO:<Gone@remote.test>", "550 5.1.1")
	if !strings.Contains(got, "suppressed: bad_mailbox") || !strings.Contains(got, "user unknown") {
		t.Errorf("refusal %q does not say why", got)
	}
	c.cmd("RCPT TO:<other@remote.test>", "250")
}
