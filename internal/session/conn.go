package session

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/repute-mail/repute/internal/policy"
	"github.com/repute-mail/repute/internal/smtp"
	"github.com/repute-mail/repute/internal/store"
	"github.com/repute-mail/repute/internal/submit"
)

// Protocol limits.
const (
	maxCommandLine = 2048 // RFC 5321 §4.5.3.1.4 says 512; extensions need more (Postfix: 2048)
	maxErrors      = 20   // protocol errors before the connection is closed (421)
	readBufSize    = 2048
	writeBufSize   = 1024
)

// conn is one SMTP connection. Only its own goroutine touches its fields, except idle
// (read by Shutdown) and nc (closed by Shutdown).
type conn struct {
	srv    *Server
	nc     net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	remote netip.Addr
	id     string
	log    *slog.Logger

	idle     atomic.Bool // waiting for a command; Shutdown may interrupt
	tls      *tls.ConnectionState
	helo     string
	esmtp    bool
	user     *store.User     // authenticated submission user
	listed   *policy.Listing // the client is on a DNS blocklist
	checks   *policy.Checks  // sender authentication in progress (MX with a Verifier)
	errors   int
	closing  bool
	tx       *transaction
	bdat     *bytes.Buffer // BDAT chunks so far; nil outside BDAT
	bdatFail *smtp.Reply   // a BDAT chunk was refused: discard until LAST
}

// transaction is the state from MAIL to the end of DATA.
type transaction struct {
	from       smtp.Address
	utf8       bool
	requireTLS bool  // RFC 8689: deliver onward only over verified TLS
	size       int64 // SIZE= parameter, 0 if none
	rcpts      []recipient
	seen       map[string]bool
	received   time.Time
}

type recipient struct {
	addr  smtp.Address
	local []store.Target   // resolved local targets (and alias forwards)
	sub   submit.Recipient // submission: what internal/submit decided
	sink  bool             // a bounce or feedback address: Server.Bounces consumes it
}

// newID returns a unique, time-sortable identifier for connections and messages.
func newID(now time.Time) string { return store.NewID(now) }

func newConn(s *Server, nc net.Conn, remote netip.Addr) *conn {
	c := &conn{srv: s, nc: nc, remote: remote, id: newID(s.Now())}
	c.br = bufio.NewReaderSize(nc, readBufSize)
	c.bw = bufio.NewWriterSize(nc, writeBufSize)
	c.log = s.Logger.With("conn", c.id, "listener", s.Mode.String(), "remote", remote.String())
	return c
}

func (c *conn) serve() {
	defer c.nc.Close()
	defer func() {
		if p := recover(); p != nil {
			c.log.Error("smtp: panic in session", "panic", p)
			c.reply(smtp.Errorf(421, "4.3.0", "Internal error, closing connection"))
			c.flush()
		}
	}()
	if tc, ok := c.nc.(*tls.Conn); ok {
		tc.SetDeadline(c.srv.Now().Add(30 * time.Second))
		if err := tc.Handshake(); err != nil {
			c.log.Info("smtp: TLS handshake failed", "err", err)
			return
		}
		st := tc.ConnectionState()
		c.tls = &st
		tc.SetDeadline(time.Time{})
	}
	c.log.Debug("smtp: connected")
	c.checkDNSBL()
	if c.srv.Verifier != nil && c.srv.Mode == MX {
		c.checks = c.srv.Verifier.Start(c.remote)
	}
	c.reply(&smtp.Reply{Code: 220, Text: c.srv.Hostname + " ESMTP Repute"})
	for !c.closing {
		line, err := c.readCommand()
		if err != nil {
			c.readFailed(err)
			return
		}
		c.dispatch(line)
		if c.srv.shutdown.Load() && c.tx == nil && !c.closing {
			c.reply(smtp.Errorf(421, "4.3.2", "Server shutting down, try again later"))
			break
		}
	}
	c.flush()
}

// checkDNSBL looks the client up in the configured blocklists (MX listener only). A
// listing is remembered and answered at RCPT, so that the client is told why.
func (c *conn) checkDNSBL() {
	if c.srv.DNSBL == nil || len(c.srv.DNSBL.Zones) == 0 || c.srv.Mode != MX {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, errs := c.srv.DNSBL.Check(ctx, c.remote)
	for _, err := range errs {
		c.log.Warn("smtp: blocklist lookup failed; not treated as a listing", "err", err)
	}
	if l != nil {
		c.listed = l
		c.srv.Metrics.Listed(l.Zone)
		c.log.Info("smtp: client on a blocklist", "zone", l.Zone, "codes", fmt.Sprint(l.Codes), "reason", l.Reason)
	}
}

// errLineTooLong is returned by readCommand after discarding the rest of an overlong line.
var errLineTooLong = errors.New("line too long")

// readCommand returns the next command line without its line ending. Replies written so
// far are flushed first unless more pipelined commands are already buffered (RFC 2920).
func (c *conn) readCommand() (string, error) {
	for {
		if c.br.Buffered() == 0 {
			if err := c.flush(); err != nil {
				return "", err
			}
		}
		c.idle.Store(true)
		if c.srv.shutdown.Load() && c.br.Buffered() == 0 {
			c.idle.Store(false)
			return "", errShutdown
		}
		c.nc.SetReadDeadline(c.srv.Now().Add(c.srv.CommandTimeout))
		line, err := c.readLine(maxCommandLine)
		c.idle.Store(false)
		if errors.Is(err, errLineTooLong) {
			if !c.protocolError(smtp.Errorf(500, "5.5.2", "Line too long (maximum %d bytes)", maxCommandLine)) {
				return "", errTooManyErrors
			}
			continue
		}
		return line, err
	}
}

// readLine reads one line of at most limit bytes. Longer lines are consumed to their end
// and reported as errLineTooLong, so the session stays in step with the client.
func (c *conn) readLine(limit int) (string, error) {
	var buf []byte
	overflow := false
	for {
		part, err := c.br.ReadSlice('\n')
		if !overflow && len(buf)+len(part) <= limit+2 {
			buf = append(buf, part...)
		} else {
			overflow, buf = true, nil
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if err != nil {
			return "", err
		}
		break
	}
	if overflow {
		return "", errLineTooLong
	}
	return strings.TrimRight(string(buf), "\r\n"), nil
}

var (
	errShutdown      = errors.New("server shutting down")
	errTooManyErrors = errors.New("too many errors")
)

func (c *conn) readFailed(err error) {
	var ne net.Error
	switch {
	case errors.Is(err, errShutdown):
		c.reply(smtp.Errorf(421, "4.3.2", "Server shutting down, try again later"))
	case errors.Is(err, errTooManyErrors):
	case errors.As(err, &ne) && ne.Timeout():
		if c.srv.shutdown.Load() {
			c.reply(smtp.Errorf(421, "4.3.2", "Server shutting down, try again later"))
		} else {
			c.reply(smtp.Errorf(421, "4.4.2", "Idle timeout, closing connection"))
		}
	case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		c.log.Debug("smtp: client closed the connection")
		return
	default:
		c.log.Info("smtp: read failed", "err", err)
		return
	}
	c.flush()
}

// interruptIfIdle makes a read that waits for the next command return at once.
func (c *conn) interruptIfIdle() {
	if c.idle.Load() {
		c.nc.SetReadDeadline(time.Unix(1, 0))
	}
}

func (c *conn) reply(r *smtp.Reply) {
	if !c.esmtp && r.Enhanced != "" && c.helo != "" {
		// RFC 2034 §3: enhanced codes only after EHLO. Before any greeting, send them
		// anyway: clients that have not greeted cannot have asked either way.
		r = &smtp.Reply{Code: r.Code, Text: r.Text}
	}
	for _, l := range r.Lines() {
		c.bw.WriteString(l)
		c.bw.WriteString("\r\n")
	}
}

func (c *conn) flush() error {
	if c.bw.Buffered() == 0 {
		return nil
	}
	c.nc.SetWriteDeadline(c.srv.Now().Add(c.srv.CommandTimeout))
	return c.bw.Flush()
}

// replyErr sends the reply for err: the one place where errors become SMTP replies.
func (c *conn) replyErr(err error) {
	r := smtp.ReplyFor(err)
	if r.Cause != nil {
		lvl := slog.LevelInfo
		if r.Code == 451 && r.Enhanced == "4.3.0" {
			lvl = slog.LevelError
		}
		c.log.Log(context.Background(), lvl, "smtp: command failed", "reply", r.Code, "enhanced", r.Enhanced, "err", r.Cause)
	}
	c.reply(r)
}

// protocolError replies and counts the error; after maxErrors it closes the connection
// (returning false) so that a confused or hostile client cannot loop forever.
func (c *conn) protocolError(r *smtp.Reply) bool {
	c.reply(r)
	c.errors++
	if c.errors >= maxErrors {
		c.reply(smtp.Errorf(421, "4.7.0", "Too many errors, closing connection"))
		c.flush()
		c.closing = true
		return false
	}
	return true
}

func (c *conn) dispatch(line string) {
	verb, arg, _ := strings.Cut(line, " ")
	verb = strings.ToUpper(verb)
	arg = strings.TrimSpace(arg)
	if c.bdat != nil && verb != "BDAT" && verb != "RSET" && verb != "QUIT" && verb != "NOOP" {
		c.protocolError(smtp.Errorf(503, "5.5.1", "Only BDAT, RSET, NOOP or QUIT allowed during a BDAT transfer"))
		return
	}
	switch verb {
	case "EHLO", "HELO":
		c.cmdHelo(verb, arg)
	case "MAIL":
		c.cmdMail(arg)
	case "RCPT":
		c.cmdRcpt(arg)
	case "DATA":
		c.cmdData(arg)
	case "BDAT":
		c.cmdBdat(arg)
	case "RSET":
		c.resetTx()
		c.reply(smtp.Errorf(250, "2.0.0", "OK"))
	case "NOOP":
		c.reply(smtp.Errorf(250, "2.0.0", "OK"))
	case "QUIT":
		c.reply(smtp.Errorf(221, "2.0.0", "%s closing connection", c.srv.Hostname))
		c.flush()
		c.closing = true
	case "STARTTLS":
		c.cmdStartTLS(arg)
	case "AUTH":
		c.cmdAuth(arg)
	case "VRFY":
		c.reply(smtp.Errorf(252, "2.5.0", "Cannot verify the user; send mail and delivery will be attempted"))
	case "EXPN":
		c.reply(smtp.Errorf(502, "5.5.1", "EXPN not available"))
	case "HELP":
		c.reply(smtp.Errorf(214, "2.0.0", "See RFC 5321: EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT STARTTLS AUTH VRFY"))
	case "":
		c.protocolError(smtp.Errorf(500, "5.5.2", "Empty command"))
	default:
		if looksLikeHTTP(verb) {
			c.reply(smtp.Errorf(421, "5.5.1", "This is an SMTP server; closing connection"))
			c.closing = true
			return
		}
		c.protocolError(smtp.Errorf(500, "5.5.2", "Command not recognized"))
	}
}

// looksLikeHTTP spots web requests sent to the SMTP port (cross-protocol attacks).
func looksLikeHTTP(verb string) bool {
	switch verb {
	case "GET", "POST", "PUT", "HEAD", "CONNECT", "OPTIONS":
		return true
	}
	return false
}

func (c *conn) resetTx() {
	c.tx = nil
	c.bdat = nil
	c.bdatFail = nil
}

func (c *conn) cmdHelo(verb, arg string) {
	if arg == "" {
		c.protocolError(smtp.Errorf(501, "5.5.4", "Syntax: %s hostname", verb))
		return
	}
	c.resetTx()
	c.helo = strings.Fields(arg)[0]
	c.esmtp = verb == "EHLO"
	if !c.esmtp {
		c.reply(&smtp.Reply{Code: 250, Text: c.srv.Hostname})
		return
	}
	lines := []string{c.srv.Hostname + " greets " + c.helo, "PIPELINING",
		"SIZE " + strconv.FormatInt(c.srv.MaxMessageSize, 10), "8BITMIME", "SMTPUTF8",
		"ENHANCEDSTATUSCODES", "CHUNKING"}
	if c.canStartTLS() {
		lines = append(lines, "STARTTLS")
	}
	if c.tls != nil {
		lines = append(lines, "REQUIRETLS") // RFC 8689 §4.1: only offered over TLS
	}
	if c.srv.Mode == Submission && c.tls != nil && c.user == nil {
		lines = append(lines, "AUTH PLAIN LOGIN")
	}
	c.reply(&smtp.Reply{Code: 250, Text: strings.Join(lines, "\n")})
}

func (c *conn) canStartTLS() bool {
	return c.tls == nil && c.srv.TLSConfig != nil && !c.srv.ImplicitTLS
}

func (c *conn) cmdStartTLS(arg string) {
	switch {
	case arg != "":
		c.protocolError(smtp.Errorf(501, "5.5.4", "STARTTLS takes no arguments"))
		return
	case c.tls != nil:
		c.protocolError(smtp.Errorf(503, "5.5.1", "TLS already active"))
		return
	case !c.canStartTLS():
		c.protocolError(smtp.Errorf(502, "5.5.1", "STARTTLS not available"))
		return
	case c.br.Buffered() > 0:
		// RFC 3207 §4.2 / CVE-2011-0411: anything pipelined after STARTTLS would be
		// processed as if it came over TLS. Refuse rather than let it through.
		c.protocolError(smtp.Errorf(503, "5.5.1", "Command pipelined after STARTTLS"))
		c.closing = true
		return
	}
	c.reply(smtp.Errorf(220, "2.0.0", "Ready to start TLS"))
	if err := c.flush(); err != nil {
		c.closing = true
		return
	}
	tc := tls.Server(c.nc, c.srv.TLSConfig)
	tc.SetDeadline(c.srv.Now().Add(30 * time.Second))
	if err := tc.Handshake(); err != nil {
		c.log.Info("smtp: STARTTLS handshake failed", "err", err)
		c.closing = true
		return
	}
	tc.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	c.tls = &st
	c.nc = tc
	c.br.Reset(tc)
	c.bw.Reset(tc)
	// RFC 3207 §4.2: forget everything learnt before TLS.
	c.helo, c.esmtp = "", false
	c.resetTx()
}

func (c *conn) requireGreeting() bool {
	if c.helo == "" {
		c.protocolError(smtp.Errorf(503, "5.5.1", "Send EHLO or HELO first"))
		return false
	}
	return true
}

func (c *conn) cmdMail(arg string) {
	if !c.requireGreeting() {
		return
	}
	if c.tx != nil {
		c.protocolError(smtp.Errorf(503, "5.5.1", "Nested MAIL command"))
		return
	}
	if c.srv.Mode == Submission && c.user == nil {
		if c.tls == nil {
			c.protocolError(smtp.Errorf(530, "5.7.0", "Must issue STARTTLS and authenticate first"))
		} else {
			c.protocolError(smtp.Errorf(530, "5.7.0", "Authentication required"))
		}
		return
	}
	rest, ok := cutPrefixFold(arg, "FROM:")
	if !ok {
		c.protocolError(smtp.Errorf(501, "5.5.4", "Syntax: MAIL FROM:<address>"))
		return
	}
	from, params, err := smtp.ParsePath(rest, true, true)
	if err != nil {
		c.protocolError(smtp.Wrap(501, "5.1.7", "Bad sender address syntax", err))
		return
	}
	tx := &transaction{seen: map[string]bool{}, received: c.srv.Now()}
	if err := c.mailParams(tx, params); err != nil {
		c.replyErr(err)
		return
	}
	if !tx.utf8 && !isASCII(from.Local) {
		c.protocolError(smtp.Errorf(553, "5.6.7", "Non-ASCII address requires SMTPUTF8"))
		return
	}
	tx.from = from
	if err := c.checkSpace(tx.size); err != nil {
		c.replyErr(err)
		return
	}
	if c.srv.Mode == Submission {
		if err := c.checkSender(from); err != nil {
			c.replyErr(err)
			return
		}
	}
	if c.user == nil && !c.srv.Rates.allowMessage(c.remote, c.srv.Now()) {
		c.srv.Metrics.RateLimit("message")
		c.log.Info("smtp: message rate limit reached")
		c.reply(smtp.Errorf(450, "4.7.1", "Too much mail from %s in the last minute; slow down and try again later", c.remote))
		return
	}
	if c.checks != nil {
		c.checks.MailFrom(c.helo, from.String())
	}
	c.tx = tx
	c.reply(smtp.Errorf(250, "2.1.0", "Sender OK"))
}

func (c *conn) mailParams(tx *transaction, params string) error {
	for _, p := range strings.Fields(params) {
		key, val, _ := strings.Cut(p, "=")
		switch strings.ToUpper(key) {
		case "SIZE":
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil || n < 0 {
				return smtp.Errorf(501, "5.5.4", "Bad SIZE parameter")
			}
			if n > c.srv.MaxMessageSize {
				return smtp.Errorf(552, "5.3.4", "Message size exceeds fixed maximum message size (%d bytes)", c.srv.MaxMessageSize)
			}
			tx.size = n
		case "BODY":
			switch strings.ToUpper(val) {
			case "7BIT", "8BITMIME":
			default:
				return smtp.Errorf(555, "5.5.4", "Unsupported BODY value %q", val)
			}
		case "SMTPUTF8":
			if val != "" {
				return smtp.Errorf(501, "5.5.4", "SMTPUTF8 takes no value")
			}
			tx.utf8 = true
		case "REQUIRETLS":
			if c.tls == nil || val != "" {
				return smtp.Errorf(530, "5.7.10", "REQUIRETLS needs a TLS session") // RFC 8689 §5
			}
			tx.requireTLS = true
		case "AUTH":
			// RFC 4954 §5: accepted and, from an unauthenticated client, ignored.
		default:
			return smtp.Errorf(555, "5.5.4", "Unsupported MAIL parameter %s", key)
		}
	}
	return nil
}

func (c *conn) cmdRcpt(arg string) {
	if !c.requireGreeting() {
		return
	}
	if c.tx == nil {
		c.protocolError(smtp.Errorf(503, "5.5.1", "Need MAIL command first"))
		return
	}
	rest, ok := cutPrefixFold(arg, "TO:")
	if !ok {
		c.protocolError(smtp.Errorf(501, "5.5.4", "Syntax: RCPT TO:<address>"))
		return
	}
	addr, params, err := smtp.ParsePath(rest, false, true)
	if err != nil {
		a, ok := postmaster(rest, c.srv.Hostname)
		if !ok {
			c.protocolError(smtp.Wrap(501, "5.1.3", "Bad recipient address syntax", err))
			return
		}
		addr, params = a, ""
	}
	if params != "" {
		c.protocolError(smtp.Errorf(555, "5.5.4", "Unsupported RCPT parameter %s", strings.Fields(params)[0]))
		return
	}
	if !c.tx.utf8 && !isASCII(addr.Local) {
		c.protocolError(smtp.Errorf(553, "5.6.7", "Non-ASCII address requires SMTPUTF8"))
		return
	}
	if c.listed != nil && !strings.EqualFold(addr.Local, "postmaster") {
		l := c.listed
		reason := ""
		if l.Reason != "" {
			reason = ": " + l.Reason
		}
		c.reply(smtp.Errorf(554, "5.7.1", "Service unavailable; client [%s] blocked using %s%s", c.remote, l.Zone, reason))
		return
	}
	if len(c.tx.rcpts) >= c.srv.MaxRecipients {
		c.reply(smtp.Errorf(452, "4.5.3", "Too many recipients (maximum %d per message)", c.srv.MaxRecipients))
		return
	}
	if c.tx.seen[addr.Key()] {
		c.reply(smtp.Errorf(250, "2.1.5", "Recipient OK (duplicate)"))
		return
	}
	r, err := c.resolve(addr)
	if err != nil {
		c.replyErr(err)
		return
	}
	c.tx.seen[addr.Key()] = true
	c.tx.rcpts = append(c.tx.rcpts, r)
	c.reply(smtp.Errorf(250, "2.1.5", "Recipient OK"))
}

// postmaster accepts the bare "<postmaster>" that RFC 5321 §4.5.1 requires every server to
// take, as postmaster at the server's own domain.
func postmaster(path, hostname string) (smtp.Address, bool) {
	p := strings.TrimSpace(path)
	if i := strings.IndexByte(p, '>'); i >= 0 {
		p = p[:i+1]
	}
	if !strings.EqualFold(p, "<postmaster>") {
		return smtp.Address{}, false
	}
	domain := hostname
	if i := strings.IndexByte(hostname, '.'); i >= 0 && strings.Count(hostname, ".") > 1 {
		domain = hostname[i+1:]
	}
	return smtp.Address{Local: "postmaster", Domain: strings.ToLower(domain)}, true
}

func cutPrefixFold(s, prefix string) (string, bool) {
	if len(s) < len(prefix) || !strings.EqualFold(s[:len(prefix)], prefix) {
		return "", false
	}
	return s[len(prefix):], true
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 128 {
			return false
		}
	}
	return true
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}
