package delivery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/mjl-/mox/smtpclient"
)

// sendAll sends msgs over s, one transaction per message (more if the server limits
// recipients per transaction), reporting each message's outcome as it is known, until the
// connection breaks or LIMITS MAILMAX is reached; rest is what was not attempted. The
// first message is always attempted.
//
// A 421 reply closes the connection (RFC 5321 §3.8: the server is closing the
// transmission channel), and it is the outcome of the connection, not only of that
// transaction: the messages not yet sent get the same reply, and nothing more is sent on
// that connection or on a new one in this delivery. Gmail's 421 4.7.28 and Microsoft's
// 421 4.3.2 are how a receiver says "slow down"; opening the next connection at once is
// what gets a sender blocked.
func (d *delivery) sendAll(ctx context.Context, s *session, msgs []*Message) (rest []*Message) {
	for i, m := range msgs {
		if stopped(ctx) {
			return msgs[i:]
		}
		if i > 0 && (s.client.Botched() || ctx.Err() != nil || s.atMailLimit()) {
			return msgs[i:]
		}
		out := d.sendOne(ctx, s, m)
		d.report(out)
		if rp, closing := closingReply(out); closing {
			d.fail(msgs[i+1:], failure{hop: s.hop, reply: rp, stage: StageNotSent})
			s.closed = true
			return nil
		}
	}
	return nil
}

// closingReply returns the 421 among a message's attempts, if the server sent one.
func closingReply(out []Attempt) (reply, bool) {
	for _, a := range out {
		if a.Code == 421 {
			return reply{code: a.Code, enhanced: a.Enhanced, text: a.Text}, true
		}
	}
	return reply{}, false
}

func (d *delivery) sendOne(ctx context.Context, s *session, m *Message) []Attempt {
	t0 := d.c.now()
	var out []Attempt
	if rp, refused := requireTLSRefusal(s, m); refused {
		for _, r := range m.Rcpts {
			out = append(out, newAttempt(r, s.hop, rp, s.setup))
		}
		return out
	}
	for chunk := range slices.Chunk(m.Rcpts, rcptChunk(s, len(m.Rcpts))) {
		out = append(out, d.transaction(ctx, s, m, chunk)...)
		s.mails++
	}
	dur := s.setup + d.c.now().Sub(t0)
	for i := range out {
		out[i].Duration = dur
	}
	return out
}

// rcptChunk is how many recipients go in one transaction: all, unless the server
// announced LIMITS RCPTMAX (RFC 9422).
func rcptChunk(s *session, n int) int {
	if limit := s.client.ExtLimitRcptMax; limit > 0 && limit < n {
		return limit
	}
	return max(n, 1)
}

// requireTLSRefusal applies RFC 8689 §4.2.1: a REQUIRETLS message goes only over TLS
// verified by DANE or by PKIX for an MX name from DNSSEC or MTA-STS, and only to a
// server that announces REQUIRETLS. Otherwise it fails permanently with 5.7.10.
func requireTLSRefusal(s *session, m *Message) (reply, bool) {
	switch {
	case !m.RequireTLS:
		return reply{}, false
	case s.hop.verified == "":
		return reply{enhanced: "5.7.10", permanent: true,
			text: fmt.Sprintf("REQUIRETLS: TLS to %s is not verified by DANE or MTA-STS", s.hop.mx)}, true
	case !s.client.SupportsRequireTLS():
		return reply{enhanced: "5.7.10", permanent: true,
			text: fmt.Sprintf("REQUIRETLS not supported by %s", s.hop.mx)}, true
	}
	return reply{}, false
}

// transaction runs MAIL, RCPT for each recipient, and DATA. A recipient refused at RCPT
// gets its own reply; the others get the outcome of the transaction as a whole.
func (d *delivery) transaction(ctx context.Context, s *session, m *Message, rcpts []Recipient) []Attempt {
	addrs := make([]string, len(rcpts))
	for i, r := range rcpts {
		addrs[i] = r.Address
	}
	resps, err := s.client.DeliverMultiple(ctx, m.From, addrs, int64(len(m.Body)), bytes.NewReader(m.Body),
		has8bit(m.Body), needsSMTPUTF8(m.From, addrs), m.RequireTLS)
	var tx reply
	if err != nil {
		tx = replyFromErr(err)
	}
	mailRefused := mailFromRefused(err, resps)
	out := make([]Attempt, len(rcpts))
	for i, r := range rcpts {
		rp := tx
		if !mailRefused && i < len(resps) && resps[i].Code != 0 && (err == nil || resps[i].Code/100 != 2) {
			rp = replyFromResponse(resps[i])
		}
		out[i] = newAttempt(r, s.hop, rp, 0)
	}
	return out
}

// mailFromRefused reports whether a pipelined transaction failed at MAIL FROM. That
// reply is then the outcome for every recipient: the replies to the RCPTs sent after it
// ("503 5.5.1 MAIL first") only echo it, and a block reply must not be recorded as a
// protocol error. smtpclient does not say which command failed, but a refused MAIL FROM
// leaves every RCPT refused and is a reply of its own, where a failed DATA follows at
// least one accepted RCPT and a failure of the only RCPT is that RCPT's own reply.
func mailFromRefused(err error, resps []smtpclient.Response) bool {
	var se smtpclient.Error
	if !errors.As(err, &se) || se.Code < 400 {
		return false
	}
	for _, r := range resps {
		if r.Code/100 == 2 || r.Line == se.Line {
			return false
		}
	}
	return true
}

func has8bit(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return true
		}
	}
	return false
}

// needsSMTPUTF8 reports non-ASCII envelope addresses (RFC 6531).
func needsSMTPUTF8(from string, rcpts []string) bool {
	for _, s := range append([]string{from}, rcpts...) {
		for i := range len(s) {
			if s[i] >= 0x80 {
				return true
			}
		}
	}
	return false
}
