package session

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/textproto"
	"strings"
	"time"

	"github.com/repute-mail/repute/internal/obs"
	"github.com/repute-mail/repute/internal/policy"
	"github.com/repute-mail/repute/internal/smtp"
	"github.com/repute-mail/repute/internal/store"
	"github.com/repute-mail/repute/internal/submit"
)

// maxHops is the Received-header count above which a message is taken to be looping
// (RFC 5321 §6.3 suggests 100; Postfix uses 50).
const maxHops = 50

var errDiskFull = smtp.Errorf(452, "4.3.1", "Insufficient system storage, try again later")

// checkSpace refuses new mail early when the store's disk is nearly full, so that what was
// already accepted can still be delivered and read.
func (c *conn) checkSpace(size int64) error {
	if c.srv.FreeSpace == nil {
		return nil
	}
	free, err := c.srv.FreeSpace()
	if err != nil {
		c.log.Warn("smtp: cannot read free disk space", "err", err)
		return nil
	}
	if free < c.srv.MinFreeDisk+2*size {
		c.log.Warn("smtp: refusing mail: disk nearly full", "free", free, "min_free_disk", c.srv.MinFreeDisk)
		return errDiskFull
	}
	return nil
}

// who is the authenticated submission user, as internal/submit knows them.
func (c *conn) who() submit.Who { return submit.User(*c.user, c.remote) }

// checkSender enforces at MAIL that a submission user sends only as themselves (the rules
// are internal/submit's).
func (c *conn) checkSender(from smtp.Address) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return c.srv.Submit.Sender(ctx, c.who(), from)
}

// resolve decides at RCPT whether a recipient is accepted and where its mail goes. On
// submission internal/submit decides.
func (c *conn) resolve(addr smtp.Address) (recipient, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if c.srv.Mode == Submission {
		r, err := c.srv.Submit.Recipient(ctx, c.tx.from, addr)
		return recipient{addr: addr, sub: r}, err
	}
	if c.srv.Bounces != nil && c.srv.Bounces.Match(addr) {
		return recipient{addr: addr, sink: true}, nil
	}
	targets, err := c.srv.DB.Resolve(ctx, addr)
	switch {
	case err == nil:
		return recipient{addr: addr, local: targets}, nil
	case errors.Is(err, store.ErrNotLocal):
		return recipient{}, smtp.Errorf(550, "5.7.1", "Relay access denied: <%s> is not a local domain", addr)
	case errors.Is(err, store.ErrNoSuchUser):
		return recipient{}, smtp.Errorf(550, "5.1.1", "Mailbox <%s> does not exist", addr)
	}
	return recipient{}, fmt.Errorf("resolve %s: %w", addr, err)
}

// finish turns received data into a stored message and answers the transaction.
func (c *conn) finish(data []byte) {
	defer c.resetTx()
	tx := c.tx
	msgID := newID(c.srv.Now())
	if len(data) > 0 && !bytes.HasSuffix(data, []byte("\r\n")) {
		data = append(data, '\r', '\n')
	}
	if err := checkHeader(data); err != nil {
		c.replyErr(err)
		c.srv.Metrics.Message(c.srv.Mode.String(), "rejected")
		return
	}
	if c.srv.Mode == Submission {
		c.submit(tx, msgID, data)
		return
	}
	var verdict *policy.Verdict
	if c.checks != nil {
		data = c.srv.Verifier.Clean(data)
		vd := c.checks.Verify(data)
		verdict = &vd
		vd.Each(c.srv.Metrics.Auth)
		if err := c.actOn(vd, tx, msgID); err != nil {
			c.replyErr(err)
			return
		}
	}
	var b bytes.Buffer
	b.Grow(len(data) + 1024)
	if verdict != nil {
		b.WriteString(c.srv.Verifier.Header(*verdict, c.remote))
	}
	b.WriteString(c.received(tx, msgID))
	b.Write(data)
	body := b.Bytes()
	if verdict != nil {
		body = c.sealForwards(tx, body, *verdict)
	}
	if int64(len(body)) > c.srv.MaxMessageSize+8192 {
		c.replyErr(smtp.Errorf(552, "5.3.4", "Message size exceeds fixed maximum message size"))
		return
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	consumed := 0
	for _, r := range tx.rcpts {
		if !r.sink {
			continue
		}
		if err := c.srv.Bounces.Consume(ctx, r.addr, body); err != nil {
			c.replyErr(err)
			return
		}
		consumed++
	}
	if consumed == len(tx.rcpts) {
		c.log.Info("smtp: report consumed", "msg_id", msgID, "from", tx.from.String(), "rcpts", consumed)
		c.srv.Metrics.Message(c.srv.Mode.String(), "consumed")
		c.reply(smtp.Errorf(250, "2.0.0", "OK consumed as %s", msgID))
		return
	}

	d := &store.Delivery{MsgID: msgID, From: tx.from.String(), Body: body, Received: tx.received, RequireTLS: tx.requireTLS}
	seenUser := map[int64]bool{}
	var remote []string
	for _, r := range tx.rcpts {
		if r.sink {
			continue
		}
		for _, t := range r.local {
			if t.UserID == 0 {
				remote = append(remote, t.Address) // alias forwarding elsewhere
				continue
			}
			if !seenUser[t.UserID] {
				seenUser[t.UserID] = true
				lt := store.LocalTarget{UserID: t.UserID}
				if verdict != nil && verdict.Action == policy.Junk {
					lt.Mailbox = "Junk"
				}
				d.Local = append(d.Local, lt)
			}
		}
	}
	d.Remote = dedupe(remote)
	stored, err := c.srv.DB.Accept(ctx, d)
	if err != nil {
		if errors.Is(err, store.ErrDiskFull) {
			err = smtp.Wrap(452, "4.3.1", "Insufficient system storage, try again later", err)
		}
		c.replyErr(err)
		c.srv.Metrics.Message(c.srv.Mode.String(), "deferred")
		return
	}
	result := "accepted"
	if verdict != nil && verdict.Action == policy.Junk {
		result = "junk"
	}
	c.srv.Metrics.Message(c.srv.Mode.String(), result)
	if c.srv.Delivered != nil && len(stored) > 0 {
		c.srv.Delivered(stored)
	}
	if c.srv.Queued != nil && len(d.Remote) > 0 {
		c.srv.Queued()
	}
	c.logAccepted(tx, d)
	c.reply(smtp.Errorf(250, "2.0.0", "OK queued as %s", msgID))
}

// submit hands a submission user's message to internal/submit, which checks its
// authors, completes, signs and stores it; the session adds only its trace field.
func (c *conn) submit(tx *transaction, msgID string, data []byte) {
	rcpts := make([]submit.Recipient, len(tx.rcpts))
	for i, r := range tx.rcpts {
		rcpts[i] = r.sub
	}
	env := submit.Envelope{MsgID: msgID, From: tx.from, Rcpts: rcpts, RequireTLS: tx.requireTLS,
		Received: tx.received, Trace: c.received(tx, msgID)}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := c.srv.Submit.Submit(ctx, env, data, c.who()); err != nil {
		result := "rejected"
		if r := smtp.ReplyFor(err); r.Temporary() {
			result = "deferred"
		}
		c.replyErr(err)
		c.srv.Metrics.Message(c.srv.Mode.String(), result)
		return
	}
	c.log.Info("smtp: message submitted", "msg_id", msgID, "from", tx.from.String(), "rcpts", len(tx.rcpts))
	c.srv.Metrics.Message(c.srv.Mode.String(), "accepted")
	c.reply(smtp.Errorf(250, "2.0.0", "OK queued as %s", msgID))
}

// actOn answers a message that the sender checks refuse, and logs the verdict.
func (c *conn) actOn(vd policy.Verdict, tx *transaction, msgID string) error {
	c.log.Info("smtp: sender checks", "msg_id", msgID, "from", tx.from.String(), "action", vd.Action.String(),
		"spf", vd.SPF.Result, "dmarc", vd.DMARC.Result, "dmarc_domain", vd.DMARC.Domain, "arc", vd.ARC.Result, "iprev", vd.IPRev.Result,
		"detail", vd.Detail)
	switch vd.Action {
	case policy.Reject:
		c.srv.Metrics.Message(c.srv.Mode.String(), "rejected")
		return smtp.Errorf(550, "5.7.1", "%s", vd.Reason)
	case policy.Defer:
		c.srv.Metrics.Message(c.srv.Mode.String(), "deferred")
		return smtp.Errorf(451, "4.4.3", "%s", vd.Reason)
	}
	return nil
}

// sealForwards adds an ARC set when the message goes on to another host through a local
// alias, so that the next hop can see how it was authenticated here (RFC 8617). Sealing
// is best effort: a message that cannot be sealed is forwarded without.
func (c *conn) sealForwards(tx *transaction, body []byte, vd policy.Verdict) []byte {
	domain := ""
	for _, r := range tx.rcpts {
		for _, t := range r.local {
			if t.UserID == 0 && domain == "" {
				domain = r.addr.Domain
			}
		}
	}
	if domain == "" {
		return body
	}
	sealed, err := c.srv.Verifier.SealForward(domain, body, vd, c.remote)
	if err != nil {
		c.log.Warn("smtp: cannot ARC-seal forwarded message; forwarding without", "domain", domain, "err", err)
		return body
	}
	return sealed
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	out := in[:0]
	for _, s := range in {
		if k := strings.ToLower(s); !seen[k] {
			seen[k] = true
			out = append(out, s)
		}
	}
	return out
}

// logAccepted records a message received on the MX listener (submitted mail is
// recorded by internal/submit).
func (c *conn) logAccepted(tx *transaction, d *store.Delivery) {
	c.log.Info("smtp: message accepted", "msg_id", d.MsgID, "from", d.From, "rcpts", len(tx.rcpts),
		"local", len(d.Local), "remote", len(d.Remote), "size", len(d.Body))
	for _, r := range tx.rcpts {
		c.srv.Events.Emit(obs.Event{Time: tx.received, Event: obs.Received, MsgID: d.MsgID, From: d.From,
			Rcpt: r.addr.String(), Size: int64(len(d.Body)), ClientIP: c.remote.String()})
	}
	for _, r := range d.Remote {
		c.srv.Events.Emit(obs.Event{Time: tx.received, Event: obs.Queued, MsgID: d.MsgID, From: d.From,
			Rcpt: r, Size: int64(len(d.Body))})
	}
}

// received is the trace field of RFC 5321 §4.4 that goes on top of the message.
func (c *conn) received(tx *transaction, msgID string) string {
	var b strings.Builder
	proto := "SMTP"
	if c.esmtp {
		proto = "ESMTP"
		if c.tls != nil {
			proto += "S"
		}
		if c.user != nil {
			proto += "A"
		}
	}
	if tx.utf8 {
		proto = "UTF8" + proto // RFC 6531 §3.7.3
	}
	fmt.Fprintf(&b, "Received: from %s ([%s])\r\n\tby %s (Repute) with %s id %s", sanitize(c.helo), c.remote, c.srv.Hostname, proto, msgID)
	if c.tls != nil {
		fmt.Fprintf(&b, "\r\n\t(using %s with cipher %s)", tlsVersion(c.tls.Version), tlsCipher(c.tls.CipherSuite))
	}
	if len(tx.rcpts) == 1 {
		fmt.Fprintf(&b, "\r\n\tfor <%s>", tx.rcpts[0].addr)
	}
	fmt.Fprintf(&b, ";\r\n\t%s\r\n", tx.received.Format(time.RFC1123Z))
	return b.String()
}

// checkHeader refuses looping messages (too many Received fields).
func checkHeader(data []byte) error {
	hops := 0
	for len(data) > 0 {
		i := bytes.Index(data, []byte("\r\n"))
		if i <= 0 {
			break
		}
		if len(data) > 9 && strings.EqualFold(string(data[:9]), "received:") {
			hops++
		}
		data = data[i+2:]
	}
	if hops > maxHops {
		return smtp.Errorf(554, "5.4.6", "Too many hops (%d Received headers): mail loop?", hops)
	}
	return nil
}

func sanitize(s string) string {
	s = textproto.TrimString(s)
	var b strings.Builder
	for _, r := range s {
		if r < 32 || r == 127 || r == '(' || r == ')' || r == ';' {
			r = '_'
		}
		b.WriteRune(r)
	}
	if b.Len() > 255 {
		return b.String()[:255]
	}
	return b.String()
}
