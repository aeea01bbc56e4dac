package delivery

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	moxdns "github.com/mjl-/mox/dns"
	"github.com/mjl-/mox/smtpclient"
)

// session is an open SMTP connection, greeted, EHLO'd and (maybe) TLS-protected.
type session struct {
	client *smtpclient.Client
	conn   *deadlineConn
	hop    hop
	setup  time.Duration // DNS, connect, greeting, EHLO and TLS: added to each message's duration
	mails  int           // transactions so far
	stop   func() bool   // stops closing the connection when Deliver's context ends
	closed bool          // the server closed the channel (421): no QUIT
}

// close sends QUIT (with smtpclient's short QUIT timeout) and closes the connection.
func (s *session) close(log *slog.Logger) {
	s.stop()
	if s.closed {
		s.conn.Close()
		return
	}
	s.conn.exact.Store(true)
	if err := s.client.Close(); err != nil {
		log.Debug("closing smtp connection", slog.String("mx", s.hop.mx), slog.Any("err", err))
	}
}

// atMailLimit says whether the server's LIMITS MAILMAX (RFC 9422) is used up.
func (s *session) atMailLimit() bool {
	return s.client.ExtLimitMailMax > 0 && s.mails >= s.client.ExtLimitMailMax
}

// openSession connects to ip:port and runs greeting, EHLO, STARTTLS (per mode) and AUTH
// (per opts). mx names the host in attempts and remote is the name for TLS.
func (c *Client) openSession(ctx context.Context, source netip.Addr, ip net.IP, port int, mx string, mode smtpclient.TLSMode,
	verifyPKIX bool, remote moxdns.Domain, opts smtpclient.Opts) (*session, *failure) {
	h := hop{mx: mx, ip: ip.String()}
	addr := net.JoinHostPort(ip.String(), strconv.Itoa(port))
	conn, err := c.dial(ctx, source, ip, addr)
	if err != nil {
		return nil, &failure{hop: h, reply: reply{text: fmt.Sprintf("connect to %s: %v", addr, err)}, err: err}
	}
	if a, ok := conn.LocalAddr().(*net.TCPAddr); ok {
		h.source = a.AddrPort().Addr().Unmap().String()
	}
	dc := &deadlineConn{Conn: conn, timeout: c.commandTimeout()}
	// smtpclient reads with deadlines, not with ctx: closing the connection ends a blocked read.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	client, err := smtpclient.New(ctx, c.log, dc, mode, verifyPKIX, c.ehlo, remote, opts)
	if err != nil {
		stop()
		conn.Close()
		return nil, &failure{hop: h, reply: replyFromErr(err), err: err}
	}
	if cs := client.TLSConnectionState(); cs != nil {
		h.tls = tls.VersionName(cs.Version)
	}
	c.log.Debug("smtp session open", slog.String("mx", mx), slog.String("ip", h.ip),
		slog.String("source", h.source), slog.String("tls", h.tls))
	return &session{client: client, conn: dc, hop: h, stop: stop}, nil
}

// dial connects from source, the address the shaper chose (the zero Addr: the kernel's
// choice).
func (c *Client) dial(ctx context.Context, source netip.Addr, ip net.IP, addr string) (net.Conn, error) {
	if c.Dial != nil {
		return c.Dial(ctx, "tcp", addr, source)
	}
	d := net.Dialer{Timeout: c.DialTimeout}
	if d.Timeout <= 0 {
		d.Timeout = defaultDialTimeout
	}
	if source.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: source.AsSlice()}
	}
	return d.DialContext(ctx, "tcp", addr)
}

// usableIPs orders a host's addresses IPv4 first (the family every sender can reach and
// the one receivers judge more leniently) and, with a source address given, drops the
// other family: an IPv6 destination needs an IPv6 source and vice versa.
func usableIPs(ips []net.IP, source netip.Addr) []net.IP {
	var have4, have6 bool
	if source.IsValid() {
		have4 = source.Unmap().Is4()
		have6 = !have4
	}
	all := !source.IsValid()
	var v4, v6 []net.IP
	for _, ip := range ips {
		if ip.To4() != nil {
			if all || have4 {
				v4 = append(v4, ip)
			}
		} else if all || have6 {
			v6 = append(v6, ip)
		}
	}
	return append(v4, v6...)
}

// deadlineConn replaces smtpclient's fixed 30-second read and write deadlines with
// CommandTimeout (RFC 5321 §4.5.3.2 asks for minutes, not seconds). Before QUIT, exact is
// set so the short QUIT deadline stays as smtpclient sets it.
type deadlineConn struct {
	net.Conn
	timeout time.Duration
	exact   atomic.Bool
}

func (c *deadlineConn) adjust(t time.Time) time.Time {
	if t.IsZero() || c.exact.Load() {
		return t
	}
	return time.Now().Add(c.timeout)
}

func (c *deadlineConn) SetDeadline(t time.Time) error { return c.Conn.SetDeadline(c.adjust(t)) }

func (c *deadlineConn) SetReadDeadline(t time.Time) error {
	return c.Conn.SetReadDeadline(c.adjust(t))
}

func (c *deadlineConn) SetWriteDeadline(t time.Time) error {
	return c.Conn.SetWriteDeadline(c.adjust(t))
}
