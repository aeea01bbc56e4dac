// Package imapsrv is Repute's IMAP server (RFC 9051, and RFC 3501 for older clients):
// go-imap's imapserver speaks the protocol, and this package implements its Session on top
// of internal/mailstore.
//
// One Server serves both a plaintext listener, where STARTTLS is offered and LOGIN and
// AUTHENTICATE are refused until TLS is on (LOGINDISABLED is advertised, RFC 9051 §6.2.3),
// and an implicit-TLS listener (RFC 8314), which is simply a tls.NewListener.
//
// Sequence numbers are per session: each selected session holds a mailstore.View, and
// changes made elsewhere reach the client only through Poll and Idle (untagged EXISTS,
// EXPUNGE and FETCH FLAGS), never in the middle of a FETCH, STORE or SEARCH.
//
// Upstream: internal/app (wires the Server, its listeners and Authenticate).
// Downstream: internal/mailstore (mailboxes and live updates), internal/store (types).
package imapsrv

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/repute-mail/repute/internal/mailstore"
	"github.com/repute-mail/repute/internal/store"
)

// ErrServerClosed is returned by Serve after Shutdown. It wraps net.ErrClosed.
var ErrServerClosed = fmt.Errorf("imapsrv: server closed: %w", net.ErrClosed)

const (
	defaultIdleTimeout    = 30 * time.Minute // RFC 9051 §5.4: at least 30 minutes
	defaultMaxMessageSize = 64 << 20
)

// Server is an IMAP server. Set its fields, then call Serve for each listener. The zero
// value of every field but Mailstore is usable.
type Server struct {
	Mailstore *mailstore.Mailstore
	TLSConfig *tls.Config // for STARTTLS; nil = no STARTTLS
	Logger    *slog.Logger
	// Authenticate checks a login; remote is the client address (for brute-force limits).
	// It returns store.ErrBadCredentials for a wrong user or password. Nil means the
	// Mailstore's store, without limits.
	Authenticate        func(ctx context.Context, username, password string, remote net.Addr) (store.User, error)
	MaxConnectionsPerIP int           // 0 = unlimited; over it: greet with BYE and close
	IdleTimeout         time.Duration // after login; 0 = 30 minutes (imapserver itself allows 35)
	MaxMessageSize      int64         // largest APPEND, advertised as APPENDLIMIT; 0 = 64 MiB

	initOnce sync.Once
	srv      *imapserver.Server
	log      *slog.Logger
	nextID   atomic.Uint64

	searchParses atomic.Int64 // messages SEARCH has read and parsed (for tests)

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	sessions  map[*session]struct{}
	perIP     map[string]int
	closing   bool
	wg        sync.WaitGroup // one per session
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.log = s.Logger
		if s.log == nil {
			s.log = slog.Default()
		}
		s.listeners = make(map[net.Listener]struct{})
		s.sessions = make(map[*session]struct{})
		s.perIP = make(map[string]int)
		s.srv = imapserver.New(&imapserver.Options{
			NewSession:   s.newSession,
			Caps:         capabilities,
			Logger:       libLogger{s.log},
			TLSConfig:    s.TLSConfig,
			InsecureAuth: false, // RFC 8314 §5.1 / RFC 9051 §11.1: no passwords in clear text
		})
	})
}

// capabilities beyond what imapserver adds by connection state (STARTTLS, LOGINDISABLED,
// AUTH=PLAIN, IDLE, UNSELECT, ENABLE, APPENDLIMIT).
var capabilities = imap.CapSet{
	imap.CapIMAP4rev1:        {},
	imap.CapIMAP4rev2:        {},
	imap.CapNamespace:        {},
	imap.CapUIDPlus:          {},
	imap.CapESearch:          {},
	imap.CapSearchRes:        {},
	imap.CapListExtended:     {},
	imap.CapListStatus:       {},
	imap.CapMove:             {},
	imap.CapStatusSize:       {},
	imap.CapBinary:           {},
	imap.CapChildren:         {},
	imap.CapSpecialUse:       {},
	imap.CapCreateSpecialUse: {},
	imap.CapLiteralPlus:      {},
}

func (s *Server) idleTimeout() time.Duration {
	if s.IdleTimeout > 0 {
		return s.IdleTimeout
	}
	return defaultIdleTimeout
}

func (s *Server) maxMessageSize() int64 {
	if s.MaxMessageSize > 0 && s.MaxMessageSize < 1<<32 {
		return s.MaxMessageSize
	}
	return defaultMaxMessageSize
}

// Serve accepts connections on l until Shutdown. A listener that yields *tls.Conn (from
// tls.NewListener) serves implicit TLS; any other offers STARTTLS if TLSConfig is set.
func (s *Server) Serve(l net.Listener) error {
	s.init()
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	err := s.srv.Serve(l)
	s.mu.Lock()
	delete(s.listeners, l)
	closing := s.closing
	s.mu.Unlock()
	if closing {
		return ErrServerClosed
	}
	return err
}

// Shutdown stops accepting connections, says BYE to every session and closes it, and
// returns when all sessions have ended or ctx is done (then it closes what is left).
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		l.Close()
	}
	sessions := make([]*session, 0, len(s.sessions))
	for sess := range s.sessions {
		sessions = append(sessions, sess)
	}
	s.mu.Unlock()
	for _, sess := range sessions {
		go sess.bye("Server shutting down")
	}
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.srv.Close() // closes the connections still open; an error only says it ran before
	return err
}

// newSession is imapserver's hook for a new connection, before the greeting.
func (s *Server) newSession(c *imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
	remote := c.NetConn().RemoteAddr()
	host := remote.String()
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	id := s.nextID.Add(1)
	log := s.log.With("proto", "imap", "conn", id, "remote", remote.String())
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return nil, nil, &imap.Error{Type: imap.StatusResponseTypeBye, Text: "Server shutting down"}
	}
	if s.MaxConnectionsPerIP > 0 && s.perIP[host] >= s.MaxConnectionsPerIP {
		s.mu.Unlock()
		log.Warn("imap connection refused: too many from this address", "limit", s.MaxConnectionsPerIP)
		return nil, nil, &imap.Error{Type: imap.StatusResponseTypeBye, Text: "Too many connections from your address"}
	}
	s.perIP[host]++
	sess := &session{srv: s, conn: c, remote: remote, host: host, log: log}
	sess.ctx, sess.cancel = context.WithCancel(context.Background())
	s.sessions[sess] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	_, isTLS := c.NetConn().(*tls.Conn)
	log.Debug("imap connection", "tls", isTLS)
	return sess, nil, nil
}

// release forgets a session that ended.
func (s *Server) release(sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.sessions[sess]; !ok {
		return
	}
	delete(s.sessions, sess)
	if s.perIP[sess.host]--; s.perIP[sess.host] <= 0 {
		delete(s.perIP, sess.host)
	}
	s.wg.Done()
}

func (s *Server) authenticate(ctx context.Context, username, password string, remote net.Addr) (store.User, error) {
	if s.Authenticate != nil {
		return s.Authenticate(ctx, username, password, remote)
	}
	if s.Mailstore == nil {
		return store.User{}, errors.New("imapsrv: no Mailstore")
	}
	return s.Mailstore.Authenticate(ctx, username, password)
}

// libLogger routes imapserver's messages (read errors, recovered panics) to slog.
type libLogger struct{ log *slog.Logger }

func (l libLogger) Printf(format string, args ...any) {
	l.log.Warn("imap: " + fmt.Sprintf(format, args...))
}
