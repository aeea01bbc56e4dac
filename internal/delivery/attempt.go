package delivery

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/mjl-/mox/smtpclient"
)

// hop says where an attempt went and how it was protected.
type hop struct {
	mx, ip, source string
	tls            string // "TLS 1.3", "" for plaintext
	verified       string // "dane", "pkix" or ""
	tlsrpt         string // TLS-RPT result type, "" when nothing to report
}

// reply is the outcome for a recipient: an SMTP reply, or a failure described in text.
type reply struct {
	code      int
	enhanced  string
	text      string
	permanent bool
}

// failure is why no session to the destination could be opened, with where it was last
// tried. err is the underlying error, when there is one.
type failure struct {
	hop
	reply
	err   error
	stage string // StageConnect when no session could be opened
}

// connector opens a session to the destination or says why it could not.
type connector func(ctx context.Context) (*session, *failure)

// delivery is one Deliver call.
type delivery struct {
	c      *Client
	start  time.Time
	report func([]Attempt) // one call per message
}

// run opens a session and sends messages over it; when the server drops the connection
// or refuses more transactions (LIMITS MAILMAX) it opens another for the rest. Every
// session sends at least one message, so this ends.
func (d *delivery) run(ctx context.Context, msgs []*Message, connect connector) {
	pending := msgs
	connStart := d.start
	for len(pending) > 0 {
		if stopped(ctx) {
			d.fail(pending, failure{reply: reply{text: "not sent: the destination is paused"}, stage: StageHeld})
			return
		}
		s, f := connect(ctx)
		if s == nil {
			f.stage = StageConnect
			d.fail(pending, *f)
			return
		}
		s.setup = d.c.now().Sub(connStart)
		pending = d.sendAll(ctx, s, pending)
		s.close(d.c.log)
		connStart = d.c.now()
	}
}

// fail reports the same failure for every recipient of msgs.
func (d *delivery) fail(msgs []*Message, f failure) {
	dur := d.c.now().Sub(d.start)
	for _, m := range msgs {
		out := make([]Attempt, 0, len(m.Rcpts))
		for _, r := range m.Rcpts {
			a := newAttempt(r, f.hop, f.reply, dur)
			a.Stage = f.stage
			out = append(out, a)
		}
		d.report(out)
	}
}

func newAttempt(r Recipient, h hop, rp reply, dur time.Duration) Attempt {
	a := Attempt{
		QueueID:     r.QueueID,
		Rcpt:        r.Address,
		MX:          h.mx,
		IP:          h.ip,
		SourceIP:    h.source,
		TLS:         h.tls,
		TLSVerified: h.verified,
		Code:        rp.code,
		Enhanced:    rp.enhanced,
		Text:        rp.text,
		Permanent:   rp.permanent,
		Duration:    dur,
		TLSRPT:      h.tlsrpt,
	}
	if !rp.permanent && rp.code/100 != 2 {
		a.RetryAfter = retryAfter(rp.text)
	}
	return a
}

// ctxFailure is the outcome when Deliver's context ends before a session was opened.
func ctxFailure(err error) *failure {
	return &failure{reply: reply{text: "delivery interrupted: " + err.Error()}, err: err}
}

// replyFromErr turns an smtpclient error into a reply; any other error becomes a
// temporary failure with the error as text.
func replyFromErr(err error) reply {
	var se smtpclient.Error
	if errors.As(err, &se) {
		return replyFromResponse(smtpclient.Response(se))
	}
	return reply{text: err.Error()}
}

// describe is an error's text without smtpclient's ", transient"/", permanent" suffix,
// with the server's reply line if there was one.
func describe(err error) string {
	var se smtpclient.Error
	if !errors.As(err, &se) {
		return err.Error()
	}
	var parts []string
	if se.Err != nil {
		parts = append(parts, se.Err.Error())
	}
	if se.Line != "" {
		parts = append(parts, se.Line)
	}
	return strings.Join(parts, ": ")
}

func replyFromResponse(r smtpclient.Response) reply {
	rp := reply{code: r.Code, permanent: r.Permanent}
	if r.Line == "" {
		if r.Err != nil {
			rp.text = r.Err.Error()
		}
		return rp
	}
	enhanced, text := replyText(r.Line, r.MoreLines)
	rp.text = text
	rp.enhanced = enhanced
	if r.Secode != "" && r.Code >= 200 {
		rp.enhanced = fmt.Sprintf("%d.%s", r.Code/100, r.Secode)
	}
	return rp
}

var enhancedPrefix = regexp.MustCompile(`^([245]\.\d{1,3}\.\d{1,3})(?: |$)`)

// replyText strips the reply code and the enhanced status code (RFC 3463) from each line
// of a reply and joins the lines with spaces. It returns the enhanced code of the first
// line, which smtpclient does not parse for the greeting and EHLO replies.
func replyText(first string, more []string) (enhanced, text string) {
	var parts []string
	for i, line := range append([]string{first}, more...) {
		if len(line) >= 3 {
			line = line[3:]
		}
		if line != "" && (line[0] == ' ' || line[0] == '-') {
			line = line[1:]
		}
		if m := enhancedPrefix.FindStringSubmatch(line); m != nil {
			if i == 0 {
				enhanced = m[1]
			}
			line = line[len(m[0]):]
		}
		if line = strings.TrimSpace(line); line != "" {
			parts = append(parts, line)
		}
	}
	return enhanced, strings.Join(parts, " ")
}
