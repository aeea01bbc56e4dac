// Package bounce consumes the mail that reports on mail Repute sent: bounce messages
// that come back, days later, to the tagged envelope sender of internal/verp, ARF
// complaint reports (RFC 5965) sent to a feedback address, and unsubscribe requests sent
// to the mailto address of List-Unsubscribe.
//
// Neither lands in a mailbox as it arrived. A bounce is parsed (internal/classify reads
// RFC 3464 and the common non-standard formats), each failed recipient is classified,
// recorded in the event log against the original message, and suppressed for the
// sending domain when the reply says it is gone; the original sender gets Repute's usual
// human-readable notice in their INBOX. A complaint suppresses the complaining recipient
// for the sending domain if it names a tagged envelope sender whose MAC verifies: the
// feedback address is public, so an unverifiable report must not suppress anyone.
// Anything that turns out not to be a report (an auto-reply to the bounce address, say)
// is delivered to the sender as it is: nothing is lost.
//
// Upstream: internal/session (Match at RCPT, Consume after DATA, on the MX listener).
// Downstream: internal/classify, internal/verp, internal/unsubscribe, internal/dsn,
// internal/store, internal/obs.
package bounce

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"strings"
	"time"

	"github.com/repute-mail/repute/internal/classify"
	"github.com/repute-mail/repute/internal/dsn"
	"github.com/repute-mail/repute/internal/obs"
	"github.com/repute-mail/repute/internal/outcome"
	"github.com/repute-mail/repute/internal/smtp"
	"github.com/repute-mail/repute/internal/store"
	"github.com/repute-mail/repute/internal/unsubscribe"
	"github.com/repute-mail/repute/internal/verp"
)

// Store is what the processor needs of the store: whether a domain is ours, where a
// sender's notices go, and the transaction that stores one.
type Store interface {
	IsLocalDomain(ctx context.Context, domain string) (bool, error)
	Resolve(ctx context.Context, addr smtp.Address) ([]store.Target, error)
	Accept(ctx context.Context, d *store.Delivery) ([]store.Stored, error)
}

// Processor is the session's BounceSink.
type Processor struct {
	DB        Store
	Outcomes  *outcome.Recorder // classifies reports and records what they say
	Key       []byte            // the verp key
	UnsubKey  []byte            // the key of unsubscribe tokens (mailto unsubscribes)
	Feedback  map[string]bool   // feedback addresses, lower case
	Hostname  string            // reporting MTA of the notices
	Logger    *slog.Logger
	Delivered func([]store.Stored) // told about notices stored in mailboxes
	Now       func() time.Time
}

func (p *Processor) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// Match reports whether addr is a tagged bounce address with a valid MAC, or a
// feedback address.
func (p *Processor) Match(addr smtp.Address) bool {
	if p.Feedback[strings.ToLower(addr.String())] {
		return true
	}
	if _, ok := unsubscribe.IsMailtoAddress(addr.String()); ok && p.UnsubKey != nil {
		return true
	}
	_, _, ok := verp.Decode(p.Key, addr.String())
	return ok
}

// Consume handles one message sent to addr.
func (p *Processor) Consume(ctx context.Context, addr smtp.Address, msg []byte) error {
	if p.Feedback[strings.ToLower(addr.String())] {
		return p.complaint(ctx, addr, msg)
	}
	if sender, ok := unsubscribe.IsMailtoAddress(addr.String()); ok {
		return p.mailtoUnsubscribe(ctx, sender, msg)
	}
	from, msgID, ok := verp.Decode(p.Key, addr.String())
	if !ok {
		return fmt.Errorf("bounce address %s no longer verifies", addr)
	}
	rep, err := classify.ParseDSN(msg)
	if err != nil {
		p.Logger.Info("bounce: not a bounce; delivering it to the sender", "rcpt", addr.String(), "err", err)
		return p.deliver(ctx, from, msg)
	}
	now := p.now()
	var failed []dsn.Recipient
	for _, r := range rep.Recipients {
		if r.Action != "failed" && r.Action != "delayed" || !strings.Contains(r.Recipient, "@") {
			continue
		}
		r.RemoteMTA = strings.Trim(r.RemoteMTA, " ;")
		text := replyText(r)
		res := p.Outcomes.ClassifyText(text, r.RemoteMTA)
		ev := outcome.With(outcome.Event{Source: "dsn", Detail: oneLine(text, 1000),
			Event: obs.Event{Time: now, Event: obs.Bounced, MsgID: msgID, From: from, Rcpt: r.Recipient,
				Provider: p.Outcomes.Provider(r.RemoteMTA), MX: r.RemoteMTA, EnhancedCode: r.Status,
				Text: "returned bounce (" + rep.Format + "): " + oneLine(text, 500)}}, res)
		if r.Action == "delayed" {
			ev.Event.Event = obs.Deferred // told late, counted when it was attempted
		} else {
			ev.SenderDomain = domainOf(from)
		}
		p.Logger.Info("bounce: returned bounce matched", "msg_id", msgID, "from", from, "rcpt", r.Recipient,
			"action", r.Action, "category", res.Category, "provider", ev.Provider, "format", rep.Format)
		if err := p.Outcomes.Record(ctx, ev); err != nil {
			return err
		}
		if r.Action != "failed" {
			continue
		}
		status := r.Status
		if status == "" {
			status = "5.0.0"
		}
		failed = append(failed, dsn.Recipient{Address: r.Recipient, Action: dsn.Failed, Status: status,
			RemoteMTA: r.RemoteMTA, Diagnostic: text, LastAttempt: now})
	}
	if len(failed) == 0 {
		return nil
	}
	notice, err := dsn.Compose(dsn.Message{ReportingMTA: p.Hostname, To: from, OriginalID: msgID,
		Arrival: now, Recipients: failed}, now)
	if err != nil {
		// What was learnt is recorded; a retry by the remote would only record it again.
		p.Logger.Warn("bounce: cannot compose the notice; the sender gets none", "sender", from, "msg_id", msgID, "err", err)
		return nil
	}
	return p.deliver(ctx, from, notice)
}

// complaint handles an ARF report at a feedback address.
func (p *Processor) complaint(ctx context.Context, addr smtp.Address, msg []byte) error {
	fb, err := classify.ParseARF(msg)
	if err != nil {
		if errors.Is(err, classify.ErrNotARF) {
			return smtp.Errorf(550, "5.6.0", "<%s> takes only feedback reports (RFC 5965 multipart/report; report-type=feedback-report)", addr)
		}
		return smtp.Wrap(550, "5.6.0", "Feedback report cannot be read", err)
	}
	sender, msgID := p.originalSender(fb)
	rcpt := ""
	if len(fb.OriginalRcptTo) > 0 {
		rcpt = fb.OriginalRcptTo[0]
	} else if len(fb.OriginalTo) > 0 {
		rcpt = fb.OriginalTo[0]
	}
	domain := domainOf(sender)
	local, _ := p.DB.IsLocalDomain(ctx, domain)
	if rcpt == "" || !local {
		p.Logger.Warn("bounce: feedback report without a verified bounce address tag or without recipient; ignored",
			"feedback_type", fb.FeedbackType, "original_mail_from", fb.OriginalMailFrom, "rcpt", rcpt)
		return nil
	}
	detail := fmt.Sprintf("%s report from %s", fb.FeedbackType, firstNonEmpty(fb.ReportingMTA, fb.UserAgent, "unknown reporter"))
	p.Logger.Info("bounce: complaint", "msg_id", msgID, "sender", sender, "rcpt", rcpt, "feedback_type", fb.FeedbackType)
	return p.Outcomes.Record(ctx, outcome.Event{SenderDomain: domain, Source: "arf", Detail: detail,
		Event: obs.Event{Time: p.now(), Event: obs.Complained, MsgID: msgID, From: sender, Rcpt: rcpt, Text: detail}})
}

// mailtoUnsubscribe handles mail to the mailto address of List-Unsubscribe: a valid
// token in the Subject suppresses its recipient for the sender's domain; anything else
// goes to the sender like any plus-addressed mail.
func (p *Processor) mailtoUnsubscribe(ctx context.Context, sender string, msg []byte) error {
	subject := ""
	if m, err := mail.ReadMessage(bytes.NewReader(msg)); err == nil {
		subject = m.Header.Get("Subject")
	}
	domain, rcpt, err := unsubscribe.Parse(p.UnsubKey, unsubscribe.SubjectToken(subject))
	if err != nil || domain != domainOf(sender) {
		return p.deliver(ctx, sender, msg)
	}
	return p.Outcomes.Record(ctx, outcome.Event{SenderDomain: domain, Source: "unsubscribe", Detail: "mailto unsubscribe",
		Event: obs.Event{Time: p.now(), Event: obs.Unsubscribed, From: sender, Rcpt: rcpt, Text: "mailto unsubscribe"}})
}

// originalSender finds who sent the reported message from the tagged bounce address in
// Original-Mail-From or the returned message's Return-Path. Only a tag with a valid MAC
// counts: the feedback address is public, and a report naming an untagged sender could
// come from anyone who wants a recipient suppressed.
func (p *Processor) originalSender(fb *classify.FeedbackReport) (sender, msgID string) {
	returnPath := strings.Trim(strings.TrimSpace(fb.OriginalHeaders.Get("Return-Path")), "<>")
	for _, a := range []string{strings.Trim(fb.OriginalMailFrom, "<>"), returnPath} {
		if from, id, ok := verp.Decode(p.Key, a); ok {
			return from, id
		}
	}
	return "", ""
}

// deliver stores msg in the mailbox of the local sender it concerns.
func (p *Processor) deliver(ctx context.Context, to string, msg []byte) error {
	a, err := smtp.ParseAddress(to)
	if err != nil {
		return fmt.Errorf("sender %q: %w", to, err)
	}
	targets, err := p.DB.Resolve(ctx, a)
	if errors.Is(err, store.ErrNoSuchUser) || errors.Is(err, store.ErrNotLocal) {
		p.Logger.Warn("bounce: the sender no longer exists; report dropped", "sender", to)
		return nil
	}
	if err != nil {
		return err
	}
	now := p.now()
	d := &store.Delivery{MsgID: store.NewID(now), Body: msg, Received: now}
	for _, t := range targets {
		if t.UserID != 0 {
			d.Local = append(d.Local, store.LocalTarget{UserID: t.UserID})
		}
	}
	if len(d.Local) == 0 {
		return nil // the sender only forwards elsewhere: the record and suppression are kept
	}
	stored, err := p.DB.Accept(ctx, d)
	if err != nil {
		return err
	}
	if p.Delivered != nil {
		p.Delivered(stored)
	}
	return nil
}

// replyText is what to classify: the remote reply, with the status code in front when
// the text lacks one.
func replyText(r classify.BouncedRecipient) string {
	d := strings.TrimSpace(r.Diagnostic)
	if r.Status == "" || strings.Contains(d, r.Status) {
		return d
	}
	// After the reply code, where an enhanced code belongs ("550 5.1.1 text"): the
	// classifier reads the basic code at the start.
	if len(d) >= 4 && isDigits(d[:3]) && d[3] == ' ' {
		return d[:4] + r.Status + " " + d[4:]
	}
	return strings.TrimSpace(r.Status + " " + d)
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return ""
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n]
	}
	return s
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
