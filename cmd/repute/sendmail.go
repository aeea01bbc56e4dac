package main

// `repute sendmail` is the local injection path: cron, scripts and programs that expect a
// sendmail binary hand a message to Repute on standard input. It speaks the command line
// of Sendmail and Postfix (the de facto interface; there is no RFC for it), turns the input
// into CRLF lines with an RFC 5321 §4.4 Received trace field, and hands it to the same
// internal/submit path as the submission listeners: missing From/Date/Message-ID fields
// are added, bulk mail gets List-Unsubscribe, mail from a local domain is DKIM-signed, and
// one store.Accept stores it, so the local copies and queue rows exist once it exits 0.
// The running server is then told over its control socket, so queued mail leaves at once.
//
// It opens the store directly, like the admin commands, so it needs write access to
// data_dir: it is meant for root and the account that runs Repute, not for every local
// user (there is no setgid drop-off directory as in Postfix). Because its caller could
// write the store anyway, it is trusted like Postfix's local pickup: any envelope sender
// and any From are taken (see internal/submit); only a From at a local domain with DKIM
// keys is signed.
//
// Unqualified addresses ("root", "-f backup") are completed with a local domain: the
// configured hostname when it is itself a local domain, else the first local domain by
// name. Mail for root@ the server's own name would otherwise be relayed to an MX that is
// probably this very server, which does not accept it.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/repute-mail/repute/internal/app"
	"github.com/repute-mail/repute/internal/config"
	"github.com/repute-mail/repute/internal/control"
	"github.com/repute-mail/repute/internal/obs"
	"github.com/repute-mail/repute/internal/smtp"
	"github.com/repute-mail/repute/internal/store"
	"github.com/repute-mail/repute/internal/submit"
)

// Exit codes of sysexits.h, which sendmail callers (cron, mail(1), scripts) interpret.
const (
	exUsage    = 64 // EX_USAGE: bad command line
	exDataErr  = 65 // EX_DATAERR: bad input message or address
	exNoUser   = 67 // EX_NOUSER: a local recipient does not exist
	exSoftware = 70 // EX_SOFTWARE: internal error
	exTempFail = 75 // EX_TEMPFAIL: try again later (store or configuration unavailable)
)

const sendmailUsage = "sendmail [-t] [-i] [-f FROM] [-F NAME] [--config FILE] [RCPT...]: send a message read from standard input"

// exitError carries the sysexits code for sendmailMain.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitErrorf(code int, format string, args ...any) error {
	return &exitError{code: code, err: fmt.Errorf(format, args...)}
}

// usageError is a bad command line; it matches errUsage so `repute sendmail` prints its
// usage line, and sendmailMain prints the message too.
type usageError struct{ msg string }

func (e *usageError) Error() string   { return e.msg }
func (e *usageError) Is(t error) bool { return t == errUsage }

// sendmailMain runs a binary invoked as "sendmail" (a symlink to repute). It prints
// errors as sendmail does and returns a sysexits code.
func sendmailMain(e *env, args []string) int {
	return sendmailExit(e, cmdSendmail(e, args))
}

// sendmailExit reports err on standard error the way sendmail does and maps it to the
// exit code.
func sendmailExit(e *env, err error) int {
	if err == nil {
		return 0
	}
	fmt.Fprintf(e.stderr, "sendmail: %v\n", err)
	var xe *exitError
	switch {
	case errors.Is(err, errUsage):
		fmt.Fprintf(e.stderr, "usage: %s\n", sendmailUsage)
		return exUsage
	case errors.As(err, &xe):
		return xe.code
	}
	return exSoftware
}

// cmdSendmail reads a message from standard input and stores it for its recipients.
func cmdSendmail(e *env, args []string) error {
	return sendmail(e, args, currentInvoker(), time.Now)
}

// invoker is the local account running sendmail.
type invoker struct {
	name     string // login name: the local part of the default sender
	uid      string
	fullName string // for a generated From field
}

// currentInvoker identifies the caller by uid (as Postfix does, so a changed $USER cannot
// pick the sender), falling back to $USER and $LOGNAME.
func currentInvoker() invoker {
	inv := invoker{uid: strconv.Itoa(os.Getuid())}
	if u, err := user.Current(); err == nil {
		inv.name, inv.fullName = u.Username, u.Name
	}
	for _, v := range []string{"USER", "LOGNAME"} {
		if inv.name == "" {
			inv.name = os.Getenv(v)
		}
	}
	return inv
}

type sendmailOpts struct {
	// -t: recipients also come from the To, Cc and Bcc fields. Command-line recipients
	// are added to them, as Postfix does (Sendmail 8 would remove them instead).
	// Resent-* fields are not consulted.
	extract    bool
	ignoreDots bool    // -i, -oi: a line with a single dot does not end the input
	from       *string // -f (or -r); nil: the invoking user
	fullName   *string // -F; nil: the invoking user's full name
	rcpts      []string
}

// parseSendmailArgs understands the sendmail/Postfix command line. Options that only
// tune Sendmail's own behaviour are accepted and ignored; modes other than "deliver a
// message" are refused with a pointer to the Repute command that does the job.
func parseSendmailArgs(e *env, args []string) (sendmailOpts, error) {
	e.configPath = defaultConfigPath()
	var o sendmailOpts
	for i := 0; i < len(args); i++ {
		a := args[i]
		// value returns the option's argument, attached ("-fuser") or separate ("-f user").
		value := func(opt string) (string, error) {
			if len(a) > len(opt) {
				return a[len(opt):], nil
			}
			if i+1 >= len(args) {
				return "", &usageError{fmt.Sprintf("option %s needs a value", opt)}
			}
			i++
			return args[i], nil
		}
		var err error
		switch {
		case a == "--":
			o.rcpts = append(o.rcpts, args[i+1:]...)
			i = len(args)
		case a == "--config" || a == "-C":
			e.configPath, err = value(a)
		case strings.HasPrefix(a, "--config="):
			e.configPath = strings.TrimPrefix(a, "--config=")
		case !strings.HasPrefix(a, "-") || a == "-":
			o.rcpts = append(o.rcpts, a)
		case strings.HasPrefix(a, "-f"), strings.HasPrefix(a, "-r"): // -r: obsolete synonym
			var v string
			v, err = value(a[:2])
			o.from = &v
		case strings.HasPrefix(a, "-F"):
			var v string
			v, err = value("-F")
			o.fullName = &v
		case a == "-oi":
			o.ignoreDots = true
		case a == "-bm": // the default mode: deliver a message
		case strings.HasPrefix(a, "-b"), strings.HasPrefix(a, "-q"), a == "-I":
			return o, unsupportedMode(a)
		case a == "-o":
			_, err = value("-o")
		case strings.HasPrefix(a, "-o"): // -oem, -odi, -oQdir ...: Sendmail tuning
		case strings.HasPrefix(a, "-B"), strings.HasPrefix(a, "-N"), strings.HasPrefix(a, "-R"),
			strings.HasPrefix(a, "-V"), strings.HasPrefix(a, "-X"), strings.HasPrefix(a, "-h"),
			strings.HasPrefix(a, "-L"):
			// Body type, DSN NOTIFY/RET/ENVID, logging, hop count, syslog label: ignored.
			_, err = value(a[:2])
		case strings.Trim(a[1:], "tivmnUG") == "": // boolean flags, possibly grouped: -ti
			o.extract = o.extract || strings.Contains(a, "t")
			o.ignoreDots = o.ignoreDots || strings.Contains(a, "i")
		default:
			err = &usageError{fmt.Sprintf("unknown option %s", a)}
		}
		if err != nil {
			return o, err
		}
	}
	if !o.extract && len(o.rcpts) == 0 {
		return o, &usageError{"no recipients: give them as arguments or use -t to read them from the header"}
	}
	return o, nil
}

func unsupportedMode(a string) error {
	hint := ""
	switch {
	case a == "-bp":
		hint = "; use 'repute queue list'"
	case a == "-bi" || a == "-I":
		hint = "; aliases live in the store: use 'repute alias'"
	case a == "-bd":
		hint = "; use 'repute serve'"
	case a == "-bs":
		hint = "; submit over SMTP to the submission port instead"
	case strings.HasPrefix(a, "-q"):
		hint = "; the server's scheduler runs the queue (see 'repute queue')"
	}
	return exitErrorf(exUsage, "option %s is not supported%s", a, hint)
}

// sendmail is cmdSendmail with the caller's identity and the clock passed in.
func sendmail(e *env, args []string, inv invoker, now func() time.Time) error {
	opts, err := parseSendmailArgs(e, args)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return &exitError{exTempFail, err}
	}
	data, err := readMessage(e.stdin, cfg.SMTP.MaxMessageSize, opts.ignoreDots)
	if err != nil {
		return err
	}
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	db, err := app.OpenStore(ctx, cfg, quiet)
	if err != nil {
		return &exitError{exTempFail, err}
	}
	defer db.Close()
	// The event log is a record, not the source of truth: when it cannot be opened the
	// message is still delivered, and Emit on a nil log does nothing.
	events, _ := obs.OpenEventLog(cfg.EventsLogPath(), quiet)
	defer events.Close()
	sub, err := app.NewSubmitter(ctx, cfg, db, events, quiet)
	if err != nil {
		return &exitError{exTempFail, err}
	}
	// Mail queued for remote recipients leaves at once: the running server is told over
	// its control socket (without one, it finds the queue rows when it starts).
	sub.Queued = func() { control.Send(cfg.DataDir, "wake") }
	in := &injection{cfg: cfg, db: db, sub: sub, inv: inv, now: now()}
	return in.run(ctx, opts, data)
}

// injection is one message being injected.
type injection struct {
	cfg    config.Config
	db     *store.DB
	sub    *submit.Submitter
	inv    invoker
	now    time.Time
	domain string // for unqualified addresses; "" when there is no local domain
}

func (in *injection) run(ctx context.Context, opts sendmailOpts, data []byte) error {
	var err error
	if in.domain, err = qualifyingDomain(ctx, in.db, in.cfg.Hostname); err != nil {
		return &exitError{exTempFail, err}
	}
	sender, err := in.sender(opts.from)
	if err != nil {
		return err
	}
	// A leading mbox "From " line is dropped, as Sendmail and Postfix do.
	if bytes.HasPrefix(data, []byte("From ")) {
		if i := bytes.Index(data, []byte("\r\n")); i >= 0 {
			data = data[i+2:]
		}
	}
	h, body, err := submit.SplitHeader(data)
	if err != nil {
		return refusal(smtp.Address{}, err)
	}
	var list []string
	for _, arg := range opts.rcpts {
		list = append(list, addressList(arg)...)
	}
	if opts.extract {
		for _, name := range []string{"To", "Cc", "Bcc"} {
			for _, v := range h.Values(name) {
				list = append(list, addressList(v)...)
			}
		}
	}
	h.Remove("Bcc") // blind copies stay blind, with or without -t
	addrs, err := in.recipients(list)
	if err != nil {
		return err
	}
	if len(addrs) == 0 {
		return exitErrorf(exUsage, "no recipient addresses found in the message header")
	}
	rcpts, err := in.resolve(ctx, sender, addrs)
	if err != nil {
		return err
	}
	var msg bytes.Buffer
	msg.Grow(h.Size() + 2 + len(body))
	h.WriteFields(&msg)
	msg.WriteString("\r\n")
	msg.Write(body)
	msgID := store.NewID(in.now)
	env := submit.Envelope{MsgID: msgID, From: sender, Rcpts: rcpts, Received: in.now, AuthorName: in.displayName(opts),
		Trace: fmt.Sprintf("Received: from local (uid %s)\r\n\tby %s (Repute) with local id %s;\r\n\t%s\r\n",
			in.inv.uid, in.cfg.Hostname, msgID, in.now.Format(time.RFC1123Z))}
	if _, err := in.sub.Submit(ctx, env, msg.Bytes(), submit.Local("uid "+in.inv.uid)); err != nil {
		return refusal(smtp.Address{}, err)
	}
	return nil
}

// refusal turns an error of internal/submit (about a recipient, or the message when
// rcpt is zero) into the sysexits code a sendmail caller understands: a temporary
// failure or an internal error is EX_TEMPFAIL, a suppressed recipient EX_NOUSER, any
// other refusal EX_DATAERR.
func refusal(rcpt smtp.Address, err error) error {
	var r *smtp.Reply
	if !errors.As(err, &r) || r.Temporary() {
		return &exitError{exTempFail, err}
	}
	code := exDataErr
	if errors.Is(err, submit.ErrSuppressed) {
		code = exNoUser
	}
	about := ""
	if !rcpt.IsZero() && !strings.Contains(r.Text, "<"+rcpt.String()+">") {
		about = "<" + rcpt.String() + ">: "
	}
	return exitErrorf(code, "%s%s (%d %s)", about, lowerFirst(r.Text), r.Code, r.Enhanced)
}

func lowerFirst(s string) string {
	if s == "" || s[0] < 'A' || s[0] > 'Z' {
		return s
	}
	return string(s[0]+'a'-'A') + s[1:]
}

// qualifyingDomain picks the domain for unqualified addresses (see the file comment).
func qualifyingDomain(ctx context.Context, db *store.DB, hostname string) (string, error) {
	local, err := db.IsLocalDomain(ctx, hostname)
	if err != nil {
		return "", fmt.Errorf("read local domains: %w", err)
	}
	if local {
		return hostname, nil
	}
	ds, err := db.Domains(ctx)
	if err != nil {
		return "", err
	}
	if len(ds) == 0 {
		return "", nil
	}
	return ds[0].Name, nil
}

// qualify parses an address, adding the local domain to a bare name.
func (in *injection) qualify(s string) (smtp.Address, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "<") && strings.HasSuffix(s, ">") {
		s = s[1 : len(s)-1]
	}
	if !strings.Contains(s, "@") {
		if in.domain == "" {
			return smtp.Address{}, exitErrorf(exDataErr, "cannot qualify %q: there is no local domain (add one with 'repute domain add')", s)
		}
		s += "@" + in.domain
	}
	a, err := smtp.ParseAddress(s)
	if err != nil {
		return smtp.Address{}, exitErrorf(exDataErr, "%q: %v", s, err)
	}
	return a, nil
}

// sender is the envelope sender: -f (empty or <> for the null sender), else the invoking
// user at the local domain.
func (in *injection) sender(from *string) (smtp.Address, error) {
	if from != nil {
		if f := strings.TrimSpace(*from); f == "" || f == "<>" {
			return smtp.Address{}, nil
		}
		return in.qualify(*from)
	}
	if in.inv.name == "" {
		return smtp.Address{}, exitErrorf(exDataErr, "cannot tell who is sending (uid %s has no user name): use -f", in.inv.uid)
	}
	a, err := in.qualify(in.inv.name)
	if err != nil {
		return a, fmt.Errorf("sender from user name: %w (use -f)", err)
	}
	return a, nil
}

// recipients qualifies and parses each address, dropping duplicates.
func (in *injection) recipients(list []string) ([]smtp.Address, error) {
	seen := map[string]bool{}
	var out []smtp.Address
	for _, s := range list {
		a, err := in.qualify(s)
		if err != nil {
			return nil, err
		}
		if !seen[a.Key()] {
			seen[a.Key()] = true
			out = append(out, a)
		}
	}
	return out, nil
}

// resolve asks internal/submit about each recipient, as the SMTP session does at RCPT.
// Unknown local users fail the whole message (EX_NOUSER), named all at once, so that
// nothing is half-sent; so does any other refusal.
func (in *injection) resolve(ctx context.Context, sender smtp.Address, addrs []smtp.Address) ([]submit.Recipient, error) {
	var rcpts []submit.Recipient
	var unknown []string
	for _, a := range addrs {
		r, err := in.sub.Recipient(ctx, sender, a)
		switch {
		case errors.Is(err, store.ErrNoSuchUser):
			unknown = append(unknown, a.String())
		case err != nil:
			return nil, refusal(a, err)
		default:
			rcpts = append(rcpts, r)
		}
	}
	if len(unknown) > 0 {
		return nil, exitErrorf(exNoUser, "no such local user: %s (add one with 'repute user add' or 'repute alias add'); nothing was sent",
			strings.Join(unknown, ", "))
	}
	return rcpts, nil
}

// displayName is the name for a generated From field: -F, else the invoking user's full
// name when the message is sent as that user.
func (in *injection) displayName(opts sendmailOpts) string {
	switch {
	case opts.fullName != nil:
		return *opts.fullName
	case opts.from == nil:
		return in.inv.fullName
	}
	return ""
}

// readMessage reads the message from r: line endings become CRLF, a bare CR is refused
// (RFC 5322 §2.3), and unless ignoreDots a line holding a single dot ends the input (the
// traditional sendmail behaviour; no dot-unstuffing is done). It stops with EX_DATAERR as
// soon as the message exceeds limit.
func readMessage(r io.Reader, limit int64, ignoreDots bool) ([]byte, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var out bytes.Buffer
	var line []byte
	tooBig := func() error {
		return exitErrorf(exDataErr, "message is larger than the limit of %d bytes (smtp.max_message_size)", limit)
	}
	for n := 1; ; n++ {
		frag, err := br.ReadSlice('\n')
		line = append(line, frag...)
		if errors.Is(err, bufio.ErrBufferFull) {
			if int64(out.Len()+len(line)) > limit {
				return nil, tooBig()
			}
			n--
			continue
		}
		if err != nil && err != io.EOF {
			return nil, exitErrorf(exTempFail, "read message: %v", err)
		}
		if len(line) > 0 {
			text := bytes.TrimSuffix(line, []byte("\n"))
			text = bytes.TrimSuffix(text, []byte("\r"))
			if !ignoreDots && string(text) == "." {
				break
			}
			if bytes.IndexByte(text, '\r') >= 0 {
				return nil, exitErrorf(exDataErr, "line %d contains a bare carriage return (CR not followed by LF)", n)
			}
			out.Write(text)
			out.WriteString("\r\n")
			if int64(out.Len()) > limit {
				return nil, tooBig()
			}
			line = line[:0]
		}
		if err == io.EOF {
			break
		}
	}
	return out.Bytes(), nil
}

// addressList splits an address list (a header value or a command-line argument) into
// addresses. RFC 5322 syntax is parsed properly (display names, comments, groups, RFC
// 2047); what it rejects, such as a bare "root", is split at commas instead.
func addressList(s string) []string {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	if list, err := submit.ParseAddressList(s); err == nil {
		return list
	}
	var out []string
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if lt := strings.LastIndexByte(item, '<'); lt >= 0 && strings.HasSuffix(item, ">") {
			item = item[lt:]
		}
		if item != "" {
			out = append(out, item)
		}
	}
	return out
}
