// Package submit is what happens to mail from our own users, whichever way it comes in:
// the SMTP submission listeners (587, 465), `repute sendmail`, and later an HTTP API. Each
// of them only speaks its protocol and calls the same three methods, so that a rule for
// outgoing mail exists once:
//
//   - Sender, when the envelope sender is known (MAIL FROM): may this party send as it?
//   - Recipient, for each recipient (RCPT TO): does it exist, is it local or remote, and
//     has the sending domain stopped mailing it (the suppression list)?
//   - Submit, with the message: the header's From and Sender must belong to the party
//     too; missing From, Date and Message-ID fields are added (RFC 6409 §8); bulk mail
//     gets its List-Unsubscribe fields (RFC 8058); the message is DKIM-signed with the
//     keys of its From domain; it is stored with one store.Accept; then the scheduler,
//     the IMAP sessions and the event log are told.
//
// Who may send as what (one rule for the envelope sender, From and Sender):
//
//   - An authenticated user owns their own address (with any +tag), every alias whose
//     expansion reaches them (not through a catch-all: a catch-all receives every address
//     of its domain but lets its owner send as none of them), and what the admin granted
//     them (`repute user grant USER ADDRESS|@DOMAIN`, table grants).
//   - A local invoker of `repute sendmail` is trusted like Postfix's local pickup: it can
//     write the store itself, so checking it would be theatre. Any envelope sender and any
//     From are taken; only mail whose From is a local domain with DKIM keys is signed
//     (the signer has keys for nothing else).
//
// Authorship must be unambiguous for everyone: a message with several From fields, or
// several addresses in its From field, is refused with 550 5.7.1, permanently (before this
// package existed such a message failed DKIM signing and got 451, and the client retried
// it for days). A receiver's DMARC check would reject it anyway (RFC 7489 §6.6.1). A
// message without a From gets one (RFC 6409 §8.1 lets the MSA add it from the
// authenticated identity): the envelope sender, which the checks above have proven to be
// the user's.
//
// Upstream: internal/session (submission listeners), cmd/repute (sendmail), built by
// internal/app. Downstream: the store through the small interfaces below, internal/auth
// (DKIM signing), internal/unsubscribe, internal/obs (event log).
package submit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"net/netip"
	"strings"
	"time"

	"github.com/repute-mail/repute/internal/obs"
	"github.com/repute-mail/repute/internal/smtp"
	"github.com/repute-mail/repute/internal/store"
)

// Directory answers who an address is (the in-memory account directory of the store).
type Directory interface {
	// Resolve expands a recipient, catch-alls included.
	Resolve(ctx context.Context, a smtp.Address) ([]store.Target, error)
	// ResolveExplicit expands an address without catch-alls: who owns it as a sender.
	ResolveExplicit(ctx context.Context, a smtp.Address) ([]store.Target, error)
	// UserGrants lists the addresses and "@domain"s a user was granted to send as.
	UserGrants(ctx context.Context, userID int64) ([]string, error)
}

// Suppressions is the list of recipients a sending domain no longer mails.
type Suppressions interface {
	Suppressed(ctx context.Context, senderDomain, address string) (*store.Suppression, error)
}

// Acceptor stores a message durably for its local and remote recipients.
type Acceptor interface {
	Accept(ctx context.Context, d *store.Delivery) ([]store.Stored, error)
}

// Store is everything Submitter needs of the store; *store.DB is one.
type Store interface {
	Directory
	Suppressions
	Acceptor
}

// Signer adds DKIM signatures for the message's From domain (auth.Signer). A message
// whose domain has no keys comes back unchanged.
type Signer interface {
	Sign(ctx context.Context, msg []byte) ([]byte, error)
}

// Submitter takes mail from local users. Fields must not change after first use.
type Submitter struct {
	Store    Store
	Signer   Signer // nil: nothing is signed
	Bulk     *Bulk  // nil: no List-Unsubscribe fields
	Hostname string // the server's name: Message-IDs of local injections, MAILER-DAEMON@Hostname
	MaxSize  int64  // bytes a message may have once fields and signatures are added (plus 8 KiB); 0 = no limit

	Queued    func()               // told after mail was queued for remote recipients
	Delivered func([]store.Stored) // told after local copies were stored (IMAP)
	Events    *obs.EventLog
	Logger    *slog.Logger
	Now       func() time.Time
}

// Who is the party a message comes from. The zero Who is nobody: Submit refuses it.
type Who struct {
	user    store.User
	local   bool
	invoker string     // local injection: who ran it, for the log ("uid 1000")
	client  netip.Addr // the client's address, for the event log
}

// User is an account that has authenticated (SMTP AUTH, an API login) from client.
func User(u store.User, client netip.Addr) Who { return Who{user: u, client: client} }

// Local is a trusted local injection (`repute sendmail`) by invoker, e.g. "uid 1000".
func Local(invoker string) Who { return Who{local: true, invoker: invoker} }

func (w Who) valid() bool { return w.local || w.user.ID != 0 }

func (w Who) String() string {
	if w.local {
		return "local " + w.invoker
	}
	return w.user.Address
}

// domain is the right-hand side of the Message-IDs made for this party's mail.
func (w Who) domain(hostname string) string {
	if w.local {
		return hostname
	}
	return w.user.Address[strings.LastIndexByte(w.user.Address, '@')+1:]
}

// Recipient is one accepted recipient, as Recipient decided it; only Recipient makes them.
type Recipient struct {
	addr   smtp.Address
	local  []store.Target // local users, and remote addresses an alias forwards to
	remote bool           // a remote address: queued as is
}

// Addr is the recipient's address as given.
func (r Recipient) Addr() smtp.Address { return r.addr }

// Envelope is a message's envelope and what the caller's protocol adds to it.
type Envelope struct {
	MsgID      string // Repute's id for the message; "" makes one (the trace field should name it)
	From       smtp.Address
	Rcpts      []Recipient
	RequireTLS bool      // RFC 8689: onward only over verified TLS
	Received   time.Time // zero: now
	// Trace is put first: the caller's Received field(s), CRLF-terminated, with what only
	// the protocol knows (client name, TLS).
	Trace string
	// AuthorName is the display name of a From field Submit adds (sendmail -F).
	AuthorName string
}

// ErrSuppressed is the cause of Recipient's refusal of a suppressed recipient.
var ErrSuppressed = errors.New("recipient suppressed")

// Sender checks that who may use from as the envelope sender (MAIL FROM).
func (s *Submitter) Sender(ctx context.Context, who Who, from smtp.Address) error {
	if who.local {
		return nil
	}
	ok, err := s.owns(ctx, who, from)
	if err != nil {
		return err
	}
	if !ok {
		return smtp.Errorf(553, "5.7.1", "Sender address <%s> not owned by authenticated user %s", from, who.user.Address)
	}
	return nil
}

// Recipient decides whether mail from the envelope sender from may go to addr, and where:
// local users and aliases, or a remote address that the sending domain has not
// suppressed. Refusals are smtp.Replies; an unknown local user's wraps
// store.ErrNoSuchUser, a suppressed recipient's ErrSuppressed.
func (s *Submitter) Recipient(ctx context.Context, from, addr smtp.Address) (Recipient, error) {
	targets, err := s.Store.Resolve(ctx, addr)
	switch {
	case err == nil:
		return Recipient{addr: addr, local: targets}, nil
	case errors.Is(err, store.ErrNoSuchUser):
		return Recipient{}, smtp.Wrap(550, "5.1.1", fmt.Sprintf("Mailbox <%s> does not exist", addr), err)
	case !errors.Is(err, store.ErrNotLocal):
		return Recipient{}, fmt.Errorf("resolve %s: %w", addr, err)
	}
	if strings.HasPrefix(addr.Domain, "[") {
		return Recipient{}, smtp.Errorf(550, "5.1.2", "Address literals are not accepted as destinations")
	}
	if err := s.checkSuppressed(ctx, from, addr); err != nil {
		return Recipient{}, err
	}
	return Recipient{addr: addr, remote: true}, nil
}

// checkSuppressed refuses a recipient that the sender's domain no longer mails (a hard
// bounce, a complaint, an unsubscribe): mailing it again would only cost reputation.
func (s *Submitter) checkSuppressed(ctx context.Context, from, addr smtp.Address) error {
	sup, err := s.Store.Suppressed(ctx, from.Domain, addr.String())
	if err != nil {
		return fmt.Errorf("check suppression: %w", err)
	}
	if sup == nil {
		return nil
	}
	detail := ""
	if sup.Detail != "" {
		detail = " (" + printable(sup.Detail, 200) + ")"
	}
	return smtp.Wrap(550, "5.1.1", fmt.Sprintf("<%s> suppressed: %s since %s%s; the admin can lift it with 'repute suppression remove'",
		addr, sup.Reason, sup.Created.UTC().Format("2006-01-02"), detail), ErrSuppressed)
}

// Submit checks the message's authors, completes and signs it, and stores it for its
// recipients (from Recipient). It returns Repute's message id once the message is on
// disk. Refusals are smtp.Replies; other errors are temporary failures.
func (s *Submitter) Submit(ctx context.Context, env Envelope, msg []byte, who Who) (string, error) {
	if !who.valid() {
		return "", errors.New("submit: message without a submitter")
	}
	if len(env.Rcpts) == 0 {
		return "", errors.New("submit: message without recipients")
	}
	if env.Received.IsZero() {
		env.Received = s.now()
	}
	if env.MsgID == "" {
		env.MsgID = store.NewID(env.Received)
	}
	if err := s.Sender(ctx, who, env.From); err != nil {
		return "", err
	}
	if len(msg) > 0 && !bytes.HasSuffix(msg, []byte("\r\n")) {
		msg = append(msg[:len(msg):len(msg)], '\r', '\n')
	}
	if err := checkText(msg); err != nil {
		return "", err
	}
	h, body, err := SplitHeader(msg)
	if err != nil {
		return "", err
	}
	if err := s.checkAuthors(ctx, who, h); err != nil {
		return "", err
	}
	d := s.delivery(env, who)
	if s.Bulk.isBulk(env.From, h) {
		d.Class = store.ClassBulk // sent after transactional mail, never before it
	}
	full, err := s.assemble(ctx, env, who, h, body, d.Remote)
	if err != nil {
		return "", err
	}
	d.Body = full
	stored, err := s.Store.Accept(ctx, d)
	if err != nil {
		if errors.Is(err, store.ErrDiskFull) {
			err = smtp.Wrap(452, "4.3.1", "Insufficient system storage, try again later", err)
		}
		return "", err
	}
	if s.Delivered != nil && len(stored) > 0 {
		s.Delivered(stored)
	}
	if s.Queued != nil && len(d.Remote) > 0 {
		s.Queued()
	}
	s.logAccepted(env, who, d)
	return env.MsgID, nil
}

// delivery lays out where the message goes: each local user once, every remote address
// (given, or an alias forward) once.
func (s *Submitter) delivery(env Envelope, who Who) *store.Delivery {
	d := &store.Delivery{MsgID: env.MsgID, From: env.From.String(), Received: env.Received,
		RequireTLS: env.RequireTLS, UserID: who.user.ID}
	seenUser := map[int64]bool{}
	seenRemote := map[string]bool{}
	addRemote := func(a string) {
		if k := strings.ToLower(a); !seenRemote[k] {
			seenRemote[k] = true
			d.Remote = append(d.Remote, a)
		}
	}
	for _, r := range env.Rcpts {
		if r.remote {
			addRemote(r.addr.String())
			continue
		}
		for _, t := range r.local {
			switch {
			case t.UserID == 0:
				addRemote(t.Address) // an alias forwarding elsewhere
			case !seenUser[t.UserID]:
				seenUser[t.UserID] = true
				d.Local = append(d.Local, store.LocalTarget{UserID: t.UserID})
			}
		}
	}
	return d
}

// assemble builds the message as stored: the caller's trace fields on top (RFC 5321
// §4.4), then the DKIM signatures, over the fields RFC 5322 §3.6 requires when the input
// lacks them, the List-Unsubscribe fields of bulk mail, and the input's header and body
// (with the empty line between them the input may lack).
func (s *Submitter) assemble(ctx context.Context, env Envelope, who Who, h *Header, body []byte, remote []string) ([]byte, error) {
	var b bytes.Buffer
	b.Grow(h.Size() + len(body) + 1024)
	if !h.Has("From") {
		fmt.Fprintf(&b, "From: %s\r\n", s.author(env, who))
	}
	if !h.Has("Date") {
		fmt.Fprintf(&b, "Date: %s\r\n", env.Received.Format(time.RFC1123Z))
	}
	if !h.Has("Message-ID") {
		fmt.Fprintf(&b, "Message-ID: <%s@%s>\r\n", env.MsgID, who.domain(s.Hostname))
	}
	if s.Bulk != nil {
		b.WriteString(s.Bulk.fields(env.From, remote, h))
	}
	h.WriteFields(&b)
	b.WriteString("\r\n")
	b.Write(body)
	msg := b.Bytes()
	if s.Signer != nil {
		signed, err := s.Signer.Sign(ctx, msg)
		if err != nil {
			return nil, smtp.Wrap(451, "4.7.0", "Cannot sign the message now, try again later", err)
		}
		msg = signed
	}
	if s.MaxSize > 0 && int64(len(env.Trace)+len(msg)) > s.MaxSize+8192 {
		return nil, smtp.Errorf(552, "5.3.4", "Message size exceeds fixed maximum message size")
	}
	return append([]byte(env.Trace), msg...), nil
}

// author is the From field's value for a message that has none: the envelope sender
// (already checked to be the submitter's), or for the null sender of a local injection
// the mailer daemon.
func (s *Submitter) author(env Envelope, who Who) string {
	addr := env.From.String()
	if env.From.IsZero() {
		addr = who.user.Address
		if who.local {
			addr = "MAILER-DAEMON@" + s.Hostname
		}
	}
	// net/mail quotes the name as needed and encodes non-ASCII (RFC 2047).
	return (&mail.Address{Name: env.AuthorName, Address: addr}).String()
}

func (s *Submitter) logAccepted(env Envelope, who Who, d *store.Delivery) {
	s.logger().Info("submit: message accepted", "msg_id", d.MsgID, "by", who.String(), "from", d.From,
		"rcpts", len(env.Rcpts), "local", len(d.Local), "remote", len(d.Remote), "size", len(d.Body))
	size := int64(len(d.Body))
	user, client := "", ""
	if !who.local {
		user = who.user.Address
	}
	if who.client.IsValid() {
		client = who.client.String()
	}
	for _, r := range env.Rcpts {
		s.Events.Emit(obs.Event{Time: env.Received, Event: obs.Received, MsgID: d.MsgID, From: d.From,
			Rcpt: r.addr.String(), Size: size, ClientIP: client, User: user})
	}
	for _, r := range d.Remote {
		s.Events.Emit(obs.Event{Time: env.Received, Event: obs.Queued, MsgID: d.MsgID, From: d.From,
			Rcpt: r, Size: size, User: user})
	}
}

func (s *Submitter) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Submitter) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// printable shortens s to at most n bytes and replaces control characters, for text
// that goes into a reply.
func printable(s string, n int) string {
	if len(s) > n {
		s = s[:n] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 32 || r == 127 {
			return '_'
		}
		return r
	}, s)
}

// checkText refuses what no injection path may hand on to another server: a bare CR or
// LF (a receiver that reads either as a line end would find an end of data, or commands,
// where we sent message text) and NUL bytes (a receiver that strips them would read
// "\r\n\x00.\r\n" as the end of the data). The SMTP listeners refuse both while reading
// DATA; this guards every other way into the queue (sendmail, the HTTP API) the same way.
func checkText(msg []byte) error {
	if bytes.IndexByte(msg, 0) >= 0 {
		return smtp.Errorf(554, "5.6.0", "Message refused: NUL character in message data (RFC 5322 section 2.3)")
	}
	for rest := msg; len(rest) > 0; {
		i := bytes.IndexAny(rest, "\r\n")
		if i < 0 {
			break
		}
		if rest[i] == '\n' || i+1 >= len(rest) || rest[i+1] != '\n' {
			return smtp.Errorf(554, "5.5.2", "Message refused: bare LF or CR in message data; lines must end with CRLF (RFC 5321 section 2.3.8)")
		}
		rest = rest[i+2:]
	}
	return nil
}
