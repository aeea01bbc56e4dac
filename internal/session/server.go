// Package session is Repute's SMTP server: it speaks RFC 5321 with the ESMTP extensions
// PIPELINING, SIZE, 8BITMIME, SMTPUTF8, ENHANCEDSTATUSCODES, STARTTLS, CHUNKING and (on
// submission) AUTH, and turns each accepted transaction into one durable store.Accept.
//
// The protocol engine is our own rather than go-smtp's server: a production MX must answer
// an overlong command line with "500 5.5.2" and keep the connection, use "503 5.5.1" for
// commands out of order, apply the command-line limit only to commands (not to message
// lines), reject bare LF inside DATA (SMTP smuggling), and send pipelined replies in one
// write instead of one write per reply. Every reply goes through Reply values from
// internal/smtp, and any error that is not a Reply becomes "451 4.3.0" in exactly one place
// (conn.replyErr).
//
// Checks follow the dialogue: connection limits at connect, sender rules at MAIL,
// recipient resolution and relay control at RCPT, size/loop/syntax checks after DATA.
// Nothing is acknowledged with 250 before store.Accept has returned, i.e. before the
// message is fsynced.
//
// On the submission listeners the session only speaks the protocol: whether a user may
// send as an address, where a recipient's mail goes and what happens to the message are
// internal/submit's decisions, shared with `repute sendmail`.
//
// Upstream: internal/app starts one Server per SMTP listener (MX, submission, submissions).
// Downstream: internal/submit (submission), internal/store (resolve, authenticate,
// accept), internal/mailstore (tell IMAP sessions about new mail), internal/obs
// (mail-event log).
package session

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/repute-mail/repute/internal/obs"
	"github.com/repute-mail/repute/internal/policy"
	"github.com/repute-mail/repute/internal/smtp"
	"github.com/repute-mail/repute/internal/store"
	"github.com/repute-mail/repute/internal/submit"
)

// Mode selects what a listener is for.
type Mode int

const (
	// MX receives mail from the world for local recipients only (port 25).
	MX Mode = iota
	// Submission receives mail from authenticated local users for any recipient (587, 465).
	Submission
)

func (m Mode) String() string {
	if m == Submission {
		return "submission"
	}
	return "mx"
}

// Authenticator checks a login; remote is the client address so repeated failures from one
// place can be slowed down and locked out.
type Authenticator func(ctx context.Context, username, password string, remote netip.Addr) (store.User, error)

// Server is one SMTP listener's configuration and state. Fields must not change after Serve.
type Server struct {
	Hostname    string
	Mode        Mode
	ImplicitTLS bool        // the listener is a tls.Listener (port 465): no STARTTLS
	TLSConfig   *tls.Config // nil: no STARTTLS, no AUTH on submission
	DB          Store
	Delivered   func([]store.Stored) // told after every local delivery (IMAP notifications)
	Queued      func()               // told after mail was queued for remote recipients
	// Submit takes the mail of authenticated users (Submission listeners): who may send as
	// what, recipients and suppressions, header fixes, DKIM signing, storing. nil: a
	// Submitter on DB with the hooks above and no signing.
	Submit *submit.Submitter
	// DNSBL, if set (MX listener only), is asked about each client when it connects.
	DNSBL *policy.DNSBL
	// Verifier, if set (MX listener only), authenticates senders: iprev, SPF, DKIM, ARC
	// and DMARC, acts on the DMARC policy and adds Authentication-Results.
	Verifier *policy.Verifier
	// Bounces, if set (MX listener only), takes the mail addressed to tagged bounce
	// addresses and feedback addresses instead of the mailboxes.
	Bounces        BounceSink
	Rates          *RateLimits  // per-IP connection and message rates; nil = unlimited
	Metrics        *obs.Metrics // nil = not counted
	Authenticate   Authenticator
	Events         *obs.EventLog
	Logger         *slog.Logger
	Limits         *Limits // shared by all SMTP listeners; nil = no connection limits
	MaxMessageSize int64   // bytes; 0 = 50 MiB
	MaxRecipients  int     // 0 = 1000
	CommandTimeout time.Duration
	DataTimeout    time.Duration
	// FreeSpace returns the bytes available for the store; below MinFreeDisk new mail is
	// refused with 452 4.3.1. nil disables the check.
	FreeSpace   func() (int64, error)
	MinFreeDisk int64
	Now         func() time.Time

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	shutdown  atomic.Bool
	wg        sync.WaitGroup
	nextID    atomic.Uint64
}

// Store is what the SMTP server needs of the store: recipients resolved at RCPT, and the
// one transaction that stores an accepted message.
type Store interface {
	Resolve(ctx context.Context, addr smtp.Address) ([]store.Target, error)
	Accept(ctx context.Context, d *store.Delivery) ([]store.Stored, error)
}

// BounceSink consumes mail that reports on mail we sent: bounces returning to a tagged
// envelope sender and complaint reports at the feedback address.
type BounceSink interface {
	// Match reports at RCPT whether the sink takes mail for addr.
	Match(addr smtp.Address) bool
	// Consume handles the message for addr; it returns once the outcome is durable. An
	// error that is not an smtp.Reply gets 451 4.3.0, and the sender retries.
	Consume(ctx context.Context, addr smtp.Address, msg []byte) error
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("smtp server closed")

func (s *Server) defaults() {
	if s.MaxMessageSize <= 0 {
		s.MaxMessageSize = 50 << 20
	}
	if s.MaxRecipients <= 0 {
		s.MaxRecipients = 1000
	}
	if s.CommandTimeout <= 0 {
		s.CommandTimeout = 5 * time.Minute
	}
	if s.DataTimeout <= 0 {
		s.DataTimeout = 10 * time.Minute
	}
	if s.Logger == nil {
		s.Logger = slog.Default()
	}
	if s.Now == nil {
		s.Now = time.Now
	}
	if st, ok := s.DB.(submit.Store); ok && s.Mode == Submission && s.Submit == nil {
		s.Submit = &submit.Submitter{Store: st, Hostname: s.Hostname, MaxSize: s.MaxMessageSize,
			Queued: s.Queued, Delivered: s.Delivered, Events: s.Events, Logger: s.Logger, Now: s.Now}
	}
}

// Serve accepts connections on l until Shutdown. Each connection runs in its own goroutine.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	s.defaults()
	if s.listeners == nil {
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[*conn]struct{}{}
	}
	if s.shutdown.Load() {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()

	var delay time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.shutdown.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errTooManyFiles) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.Logger.Warn("smtp: accept failed; retrying", "err", err, "delay", delay)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		s.wg.Add(1)
		go s.handle(nc)
	}
}

func (s *Server) handle(nc net.Conn) {
	defer s.wg.Done()
	remote := addrOf(nc.RemoteAddr())
	c := newConn(s, nc, remote)
	refuse := func(reply *smtp.Reply, result string) {
		c.log.Info("smtp: connection refused", "reason", reply.Text)
		s.Metrics.Connection(s.Mode.String(), result)
		nc.SetWriteDeadline(s.Now().Add(5 * time.Second))
		c.reply(reply)
		c.flush()
		nc.Close()
	}
	if s.Limits != nil {
		release, reply := s.Limits.acquire(remote)
		if reply != nil {
			refuse(reply, "refused_limit")
			return
		}
		defer release()
	}
	if !s.Rates.allowConnection(remote, s.Now()) {
		s.Metrics.RateLimit("connection")
		refuse(smtp.Errorf(421, "4.7.0", "Too many connections from %s in the last minute; slow down and try again later", remote), "refused_rate")
		return
	}
	s.Metrics.Connection(s.Mode.String(), "accepted")
	s.mu.Lock()
	if s.shutdown.Load() {
		s.mu.Unlock()
		nc.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	c.serve()
}

// Shutdown stops accepting, tells idle clients "421 4.3.2" and waits for transactions in
// progress to finish, or for ctx to end (then the rest are closed).
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdown.Store(true)
	s.mu.Lock()
	for l := range s.listeners {
		l.Close()
	}
	for c := range s.conns {
		c.interruptIfIdle()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.nc.Close()
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
