// Package delivery sends queued messages to other mail servers: MX resolution (RFC 5321
// §5), connection from the configured source addresses, opportunistic STARTTLS, MTA-STS
// and DANE, an optional smarthost, and one connection carrying several messages to the same
// destination. It reports every attempt as data (Attempt) and decides nothing about
// retries: that is the scheduler's job, and judging what a reply means is classify's.
//
// The route (MX hosts, MTA-STS policy, relay) is resolved by internal/route before
// delivery, and the source address is chosen by the traffic shaper; delivery looks up only
// what a connection needs: host addresses and, for DANE, TLSA records.
//
// Upstream: internal/scheduler calls Deliverer.Deliver. Downstream: the network, through
// internal/dns for every lookup.
package delivery

import (
	"context"
	"net/netip"
	"time"

	"github.com/repute-mail/repute/internal/route"
)

// Recipient is one queue entry's recipient.
type Recipient struct {
	QueueID int64
	Address string // "local@domain", domain in ASCII
}

// Message is one queued message with its recipients in one destination domain.
type Message struct {
	ID         string // Repute's message id (events.log msg_id)
	From       string // envelope sender; "" is the null sender
	Rcpts      []Recipient
	Body       []byte
	RequireTLS bool // RFC 8689: deliver only over verified TLS, and pass it on
}

// Attempt is the outcome of trying one recipient once. The scheduler stores it, logs it as
// a mail event and decides what happens next.
type Attempt struct {
	QueueID     int64
	Rcpt        string
	MX          string        // host name tried last ("" if none was reached)
	IP          string        // its address
	SourceIP    string        // our address the connection came from
	TLS         string        // negotiated TLS version ("" = plaintext)
	TLSVerified string        // "dane", "pkix" (incl. MTA-STS) or "" (unverified or no TLS)
	Code        int           // SMTP reply code, 0 if no reply (network, DNS or TLS failure)
	Enhanced    string        // RFC 3463 code from the reply, "" if none
	Text        string        // reply text, or a description of the failure
	Permanent   bool          // a 5xx reply, or a failure no retry can fix (null MX, no such domain)
	RetryAfter  time.Duration // a hint from the reply ("try again in 10 minutes"), 0 if none
	Duration    time.Duration
	TLSRPT      string // TLS-RPT result type for the attempt ("" when nothing to report)
	// Stage is StageConnect when the failure came before any transaction: no session
	// could be opened (a refused TCP connection, a 421 greeting such as "too many
	// connections", a failed EHLO, STARTTLS or AUTH); StageNotSent or StageHeld when the
	// message was never offered. "" otherwise.
	Stage string
}

// Stages of a failed attempt (Attempt.Stage).
const (
	// StageConnect marks attempts that failed before a session was open.
	StageConnect = "connect"
	// StageNotSent marks messages never offered: an earlier message's 421 closed the
	// connection, and the reply is the connection's, not theirs.
	StageNotSent = "not_sent"
	// StageHeld marks messages not sent because the caller stopped the delivery (see
	// WithStop): the shaper paused their destination.
	StageHeld = "held"
)

type stopKey struct{}

// WithStop returns a context under which a delivery asks stop before every transaction
// and every connection: once it returns true, nothing more is sent, and the messages
// left are reported at StageHeld. It is how a block on one connection stops the rest of
// the batch in hand, and the other connections to the same provider, at once.
func WithStop(ctx context.Context, stop func() bool) context.Context {
	return context.WithValue(ctx, stopKey{}, stop)
}

func stopped(ctx context.Context) bool {
	f, _ := ctx.Value(stopKey{}).(func() bool)
	return f != nil && f()
}

// Deliverer delivers messages to one destination domain, on the route the scheduler
// resolved and from the source address the shaper chose (the zero Addr: the kernel's
// choice); it never picks a source address itself. It calls report once per message,
// as soon as that message's outcome is known, with one Attempt per recipient of it; so a
// crash in the middle of a long batch repeats at most the messages in flight. report is
// called from Deliver's goroutine, and Deliver returns once every message was reported. It
// must return (with temporary failures) when ctx ends.
type Deliverer interface {
	Deliver(ctx context.Context, rt route.Route, source netip.Addr, msgs []*Message, report func([]Attempt))
}
