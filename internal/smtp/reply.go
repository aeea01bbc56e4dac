// Package smtp holds the wire-level leaves every SMTP component shares: the Reply error type
// (a reply code, an RFC 3463 enhanced status code, the text the peer may see and the
// internal cause it must not), and RFC 5321 mailbox/path parsing.
//
// It imports nothing from Repute. Upstream: internal/session (server side), the outbound
// client and the bounce classifier.
package smtp

import (
	"errors"
	"fmt"
	"strings"
)

// Reply is an SMTP reply that can travel as an error. Text is what the peer sees; Cause is
// logged but never sent.
type Reply struct {
	Code     int    // e.g. 550
	Enhanced string // RFC 3463 "class.subject.detail", e.g. "5.1.1"; "" for none (220, 354, 334)
	Text     string // one or more lines separated by "\n"
	Cause    error  // internal detail for the log
}

func (r *Reply) Error() string {
	s := fmt.Sprintf("%d %s %s", r.Code, r.Enhanced, r.Text)
	if r.Cause != nil {
		s += ": " + r.Cause.Error()
	}
	return s
}

// Unwrap returns the internal cause.
func (r *Reply) Unwrap() error { return r.Cause }

// Temporary reports whether the reply is a 4xx.
func (r *Reply) Temporary() bool { return r.Code >= 400 && r.Code < 500 }

// Lines returns the reply as wire lines without CRLF: "550-first", "550 5.1.1 last".
// Every line carries the enhanced code, as RFC 2034 §4 asks.
func (r *Reply) Lines() []string {
	text := strings.Split(strings.ReplaceAll(r.Text, "\r", ""), "\n")
	out := make([]string, len(text))
	for i, t := range text {
		sep := "-"
		if i == len(text)-1 {
			sep = " "
		}
		if r.Enhanced != "" {
			out[i] = fmt.Sprintf("%d%s%s %s", r.Code, sep, r.Enhanced, t)
		} else {
			out[i] = fmt.Sprintf("%d%s%s", r.Code, sep, t)
		}
	}
	return out
}

// Errorf builds a Reply with a formatted peer-visible text.
func Errorf(code int, enhanced, format string, args ...any) *Reply {
	return &Reply{Code: code, Enhanced: enhanced, Text: fmt.Sprintf(format, args...)}
}

// Wrap builds a Reply that carries an internal cause.
func Wrap(code int, enhanced, text string, cause error) *Reply {
	return &Reply{Code: code, Enhanced: enhanced, Text: text, Cause: cause}
}

// ReplyFor turns any error into the reply the peer sees. A *Reply anywhere in the chain is
// used as is; anything else is an internal error, answered "451 4.3.0" without its text.
func ReplyFor(err error) *Reply {
	var r *Reply
	if errors.As(err, &r) {
		return r
	}
	return &Reply{Code: 451, Enhanced: "4.3.0", Text: "Internal error, please try again later", Cause: err}
}
