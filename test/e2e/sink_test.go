package e2e

import (
	"bytes"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/mail"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// sink is an SMTP server in the test process standing in for a remote MX: it accepts
// every message, offers STARTTLS when given a certificate, and records what arrived by
// Message-ID. With a gate, every transaction waits at MAIL FROM until the gate opens.
type sink struct {
	t    *testing.T
	addr string
	srv  *smtp.Server

	gateOnce sync.Once
	gate     chan struct{} // nil: no gate

	mu   sync.Mutex
	msgs []sinkMessage
	byID map[string]int // Message-ID (without <>) → times received
}

// sinkMessage is one accepted message.
type sinkMessage struct {
	From      string
	Rcpts     []string
	Helo      string
	TLS       bool
	MessageID string
	Data      []byte
}

// startSink listens on addr ("IP:PORT"); cert may be nil (no STARTTLS).
func startSink(t *testing.T, addr string, cert *tls.Certificate, gated bool) *sink {
	t.Helper()
	k := &sink{t: t, addr: addr, byID: map[string]int{}}
	if gated {
		k.gate = make(chan struct{})
	}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &sinkSession{k: k, conn: c}, nil
	}))
	srv.Domain = "sink.invalid"
	srv.ReadTimeout, srv.WriteTimeout = time.Minute, time.Minute
	srv.MaxMessageBytes = 20 << 20
	srv.MaxRecipients = 1000
	srv.ErrorLog = log.New(io.Discard, "", 0)
	if cert != nil {
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("SMTP sink on %s: %v", addr, err)
	}
	k.srv = srv
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		k.open()
		_ = srv.Close()
	})
	return k
}

// open lets waiting transactions go on.
func (k *sink) open() {
	if k.gate != nil {
		k.gateOnce.Do(func() { close(k.gate) })
	}
}

// received returns a copy of every accepted message, in order of arrival.
func (k *sink) received() []sinkMessage {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]sinkMessage(nil), k.msgs...)
}

// counts returns how often each Message-ID arrived, and the number of messages.
func (k *sink) counts() (byID map[string]int, total int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	byID = make(map[string]int, len(k.byID))
	for id, n := range k.byID {
		byID[id] = n
	}
	return byID, len(k.msgs)
}

// unique is the number of distinct Message-IDs received.
func (k *sink) unique() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.byID)
}

// find returns the messages with a recipient in the domain.
func (k *sink) find(domain string) []sinkMessage {
	var out []sinkMessage
	for _, m := range k.received() {
		for _, r := range m.Rcpts {
			if strings.HasSuffix(strings.ToLower(r), "@"+domain) {
				out = append(out, m)
				break
			}
		}
	}
	return out
}

// summary describes what arrived, for failure messages.
func (k *sink) summary() string {
	var lines []string
	for _, m := range k.received() {
		lines = append(lines, "<"+m.From+"> → "+strings.Join(m.Rcpts, ",")+" ("+m.MessageID+")")
	}
	sort.Strings(lines)
	if len(lines) > 20 {
		lines = append(lines[:20], "…")
	}
	return strings.Join(lines, "\n")
}

type sinkSession struct {
	k     *sink
	conn  *smtp.Conn
	from  string
	rcpts []string
}

func (s *sinkSession) Reset()        { s.from, s.rcpts = "", nil }
func (s *sinkSession) Logout() error { return nil }

func (s *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	if s.k.gate != nil {
		select {
		case <-s.k.gate:
		case <-time.After(2 * time.Minute):
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "sink gate still closed"}
		}
	}
	s.from = from
	return nil
}

func (s *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.rcpts = append(s.rcpts, to)
	return nil
}

func (s *sinkSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m := sinkMessage{From: s.from, Rcpts: s.rcpts, Helo: s.conn.Hostname(), Data: data}
	_, m.TLS = s.conn.TLSConnectionState()
	if msg, err := mail.ReadMessage(bytes.NewReader(data)); err == nil {
		m.MessageID = strings.Trim(strings.TrimSpace(msg.Header.Get("Message-Id")), "<>")
	}
	s.k.mu.Lock()
	s.k.msgs = append(s.k.msgs, m)
	s.k.byID[m.MessageID]++
	s.k.mu.Unlock()
	return nil
}
