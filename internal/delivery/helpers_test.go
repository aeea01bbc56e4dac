package delivery

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/repute-mail/repute/internal/dns"
	"github.com/repute-mail/repute/internal/dns/dnstest"
	"github.com/repute-mail/repute/internal/route"
	"github.com/repute-mail/repute/internal/testcert"
)

// testCA issues certificates for test servers.
type testCA struct{ *testcert.CA }

func newCA(t *testing.T) *testCA { return &testCA{testcert.NewCA(t, "Repute test CA")} }

// leaf issues a server certificate for DNS names or IP addresses.
func (ca *testCA) leaf(t *testing.T, names ...string) tls.Certificate {
	return ca.Issue(t, false, names...)
}

func serverTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// received is one message as the sink got it.
type received struct {
	from       string
	rcpts      []string
	body       string
	tls        bool
	requireTLS bool
	user       string // AUTH identity
	remote     string // client IP
}

// sinkConfig shapes a sink's behaviour.
type sinkConfig struct {
	tls        *tls.Config
	requireTLS bool                       // announce REQUIRETLS (after STARTTLS)
	rcpt       map[string]*smtp.SMTPError // reply for these recipients
	auth       *RelayAuth                 // require AUTH PLAIN with these credentials
	implicit   bool                       // TLS from the first byte
}

// sink is an SMTP server (go-smtp) that keeps what it receives.
type sink struct {
	cfg   sinkConfig
	mu    sync.Mutex
	msgs  []received
	conns int
}

func startSink(t *testing.T, addr string, cfg sinkConfig) *sink {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.implicit {
		ln = tls.NewListener(ln, cfg.tls)
	}
	sk := &sink{cfg: cfg}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		_, isTLS := c.TLSConnectionState()
		host, _, _ := net.SplitHostPort(c.Conn().RemoteAddr().String())
		return &sinkSession{sink: sk, tls: isTLS || cfg.implicit, remote: host}, nil
	}))
	srv.Domain = "sink.test"
	if !cfg.implicit {
		srv.TLSConfig = cfg.tls
	}
	srv.EnableREQUIRETLS = cfg.requireTLS
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	srv.ErrorLog = quietLogger{}
	go srv.Serve(&countingListener{Listener: ln, sink: sk}) //nolint:errcheck // ends at Close
	t.Cleanup(func() { srv.Close() })
	return sk
}

func (sk *sink) received() []received {
	sk.mu.Lock()
	defer sk.mu.Unlock()
	return append([]received(nil), sk.msgs...)
}

func (sk *sink) connections() int {
	sk.mu.Lock()
	defer sk.mu.Unlock()
	return sk.conns
}

type countingListener struct {
	net.Listener
	sink *sink
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.sink.mu.Lock()
		l.sink.conns++
		l.sink.mu.Unlock()
	}
	return c, err
}

type quietLogger struct{}

func (quietLogger) Printf(string, ...any) {}
func (quietLogger) Println(...any)        {}

type sinkSession struct {
	sink       *sink
	tls        bool
	remote     string
	user       string
	from       string
	requireTLS bool
	rcpts      []string
}

func (s *sinkSession) Reset()        { s.from, s.rcpts, s.requireTLS = "", nil, false }
func (s *sinkSession) Logout() error { return nil }

func (s *sinkSession) Mail(from string, opts *smtp.MailOptions) error {
	if s.sink.cfg.auth != nil && s.user == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "authentication required"}
	}
	s.from, s.requireTLS = from, opts != nil && opts.RequireTLS
	return nil
}

func (s *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if e := s.sink.cfg.rcpt[to]; e != nil {
		return e
	}
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.sink.mu.Lock()
	defer s.sink.mu.Unlock()
	s.sink.msgs = append(s.sink.msgs, received{from: s.from, rcpts: s.rcpts, body: string(b), tls: s.tls,
		requireTLS: s.requireTLS, user: s.user, remote: s.remote})
	return nil
}

func (s *sinkSession) AuthMechanisms() []string {
	if s.sink.cfg.auth == nil {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *sinkSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if a := s.sink.cfg.auth; a == nil || user != a.Username || pass != a.Password {
			return errors.New("invalid credentials")
		}
		s.user = user
		return nil
	}), nil
}

// refuser answers every connection with a fixed greeting and closes it.
func refuser(t *testing.T, addr, greeting string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, greeting+"\r\n") //nolint:errcheck // best effort
			c.Close()
		}
	}()
}

// env is a test world: a DNS server, a test CA, a port shared by every MX host (each on
// its own 127.0.0.x address) and a Client pointed at them.
type env struct {
	t      *testing.T
	dns    *dnstest.Server
	ca     *testCA
	port   int
	c      *Client
	sts    *route.STS // the MTA-STS policies of the routes env.deliver resolves
	source netip.Addr // the source address deliveries are given (the zero Addr: the kernel's choice)
}

func newEnv(t *testing.T, records ...string) *env {
	t.Helper()
	srv, err := dnstest.Start(records...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	log := testLogger()
	r, err := dns.New(srv.Addr, log)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dns: srv, ca: newCA(t), port: freePort(t)}
	e.c = &Client{
		Resolver:       r,
		Hostname:       "mx.a.test",
		RemotePort:     e.port,
		Logger:         log,
		RootCAs:        e.ca.Pool,
		DialTimeout:    5 * time.Second,
		CommandTimeout: 10 * time.Second,
		DNSSECProbe:    "test.",
	}
	e.sts = &route.STS{DNS: r, RootCAs: e.ca.Pool, Logger: log}
	return e
}

// addr is ip with the env's SMTP port.
func (e *env) addr(ip string) string {
	return net.JoinHostPort(ip, strconv.Itoa(e.port))
}

func (e *env) add(records ...string) {
	e.t.Helper()
	if err := e.dns.Add(records...); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) deliver(domain string, msgs ...*Message) []Attempt {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rt := (&route.Resolver{DNS: e.c.Resolver, STS: e.sts}).Resolve(ctx, domain) // resolved anew each time
	return collectRoute(ctx, e.c, rt, e.source, msgs)
}

// freePort finds a TCP port free on 127.0.0.1, to be used on other 127/8 addresses too.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func msg(id, from string, rcpts ...string) *Message {
	m := &Message{ID: id, From: from, Body: []byte("Subject: test " + id + "\r\n\r\nHello.\r\n")}
	for i, r := range rcpts {
		m.Rcpts = append(m.Rcpts, Recipient{QueueID: int64(i + 1), Address: r})
	}
	return m
}

// testLogger logs to stderr with REPUTE_TEST_LOG=1, else nowhere.
func testLogger() *slog.Logger {
	if os.Getenv("REPUTE_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// want describes an expected Attempt; empty fields are not checked except where noted.
type want struct {
	rcpt       string
	code       int // checked always
	enhanced   string
	permanent  bool // checked always
	mx         string
	text       string // substring
	tls        bool   // checked always: TLS non-empty
	verified   string // checked always
	retryAfter time.Duration
}

func check(t *testing.T, got []Attempt, wants []want) {
	t.Helper()
	if len(got) != len(wants) {
		t.Fatalf("got %d attempts, want %d: %+v", len(got), len(wants), got)
	}
	byRcpt := map[string]Attempt{}
	for _, a := range got {
		byRcpt[a.Rcpt] = a
		if a.Duration < 0 {
			t.Errorf("%s: duration %v, want >= 0", a.Rcpt, a.Duration)
		}
	}
	for _, w := range wants {
		a, ok := byRcpt[w.rcpt]
		if !ok {
			t.Errorf("no attempt for %s", w.rcpt)
			continue
		}
		if a.Code != w.code || a.Permanent != w.permanent || (a.TLS != "") != w.tls || a.TLSVerified != w.verified ||
			w.enhanced != "" && a.Enhanced != w.enhanced || w.mx != "" && a.MX != w.mx ||
			!strings.Contains(a.Text, w.text) || w.retryAfter != 0 && a.RetryAfter != w.retryAfter {
			t.Errorf("%s:\n got %+v\nwant %+v", w.rcpt, a, w)
		}
	}
}

// collect runs Deliver and gathers the reported attempts, checking that every message is
// reported exactly once.
func collect(ctx context.Context, d Deliverer, domain string, msgs []*Message) []Attempt {
	var r dns.Resolver
	if c, ok := d.(*Client); ok {
		r = c.Resolver
	}
	return collectRoute(ctx, d, (&route.Resolver{DNS: r}).Resolve(ctx, domain), netip.Addr{}, msgs)
}

// collectRoute is collect on a resolved route from a given source address.
func collectRoute(ctx context.Context, d Deliverer, rt route.Route, source netip.Addr, msgs []*Message) []Attempt {
	var out []Attempt
	reports := 0
	d.Deliver(ctx, rt, source, msgs, func(as []Attempt) {
		reports++
		out = append(out, as...)
	})
	if reports != len(msgs) {
		panic(fmt.Sprintf("Deliver reported %d times for %d messages", reports, len(msgs)))
	}
	return out
}
