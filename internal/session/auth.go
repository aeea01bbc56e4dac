package session

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"time"

	"github.com/repute-mail/repute/internal/authguard"
	"github.com/repute-mail/repute/internal/smtp"
	"github.com/repute-mail/repute/internal/store"
)

// cmdAuth implements RFC 4954 AUTH with the PLAIN (RFC 4616) and LOGIN mechanisms, only on
// submission listeners and only over TLS: a password must never cross the network in clear.
func (c *conn) cmdAuth(arg string) {
	switch {
	case c.srv.Mode != Submission:
		c.protocolError(smtp.Errorf(502, "5.5.1", "AUTH not available on this port; use submission (587 or 465)"))
		return
	case !c.requireGreeting():
		return
	case c.tls == nil:
		c.protocolError(smtp.Errorf(538, "5.7.11", "Encryption required: issue STARTTLS first"))
		return
	case c.user != nil:
		c.protocolError(smtp.Errorf(503, "5.5.1", "Already authenticated"))
		return
	case c.tx != nil:
		c.protocolError(smtp.Errorf(503, "5.5.1", "AUTH not allowed during a mail transaction"))
		return
	}
	mech, initial, _ := strings.Cut(arg, " ")
	var user, pass string
	var err error
	switch strings.ToUpper(mech) {
	case "PLAIN":
		user, pass, err = c.authPlain(initial)
	case "LOGIN":
		user, pass, err = c.authLogin(initial)
	default:
		c.protocolError(smtp.Errorf(504, "5.5.4", "Unsupported authentication mechanism; use PLAIN or LOGIN"))
		return
	}
	if err != nil {
		c.replyErr(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	u, err := c.srv.Authenticate(ctx, user, pass, c.remote)
	if err != nil {
		var r *smtp.Reply
		if errors.As(err, &r) {
			c.protocolError(r)
		} else if errors.Is(err, authguard.ErrLockedOut) {
			// RFC 4954 §6: a temporary failure; the client may try again later.
			c.protocolError(smtp.Wrap(454, "4.7.0", "Too many failed logins from your address; try again later", err))
		} else if errors.Is(err, store.ErrBadCredentials) {
			c.log.Info("smtp: authentication failed", "user", user)
			c.protocolError(smtp.Errorf(535, "5.7.8", "Authentication credentials invalid"))
		} else {
			c.replyErr(err)
		}
		return
	}
	c.user = &u
	c.log = c.log.With("user", u.Address)
	c.log.Info("smtp: authenticated")
	c.reply(smtp.Errorf(235, "2.7.0", "Authentication successful"))
}

var errAuthCancelled = smtp.Errorf(501, "5.0.0", "Authentication cancelled")

// challenge sends a 334 continuation and returns the client's decoded answer.
func (c *conn) challenge(prompt string) ([]byte, error) {
	c.reply(&smtp.Reply{Code: 334, Text: base64.StdEncoding.EncodeToString([]byte(prompt))})
	if err := c.flush(); err != nil {
		return nil, err
	}
	c.nc.SetReadDeadline(c.srv.Now().Add(c.srv.CommandTimeout))
	line, err := c.readLine(maxCommandLine)
	if err != nil {
		if errors.Is(err, errLineTooLong) {
			return nil, smtp.Errorf(500, "5.5.6", "Authentication exchange line too long")
		}
		c.closing = true
		return nil, smtp.Wrap(421, "4.4.2", "Connection problem during authentication", err)
	}
	if line == "*" {
		return nil, errAuthCancelled
	}
	return decode64(line)
}

func decode64(s string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, smtp.Errorf(501, "5.5.2", "Invalid base64 data")
	}
	return b, nil
}

func (c *conn) authPlain(initial string) (user, pass string, err error) {
	var resp []byte
	switch initial {
	case "":
		resp, err = c.challenge("")
	case "=":
		resp = nil
	default:
		resp, err = decode64(initial)
	}
	if err != nil {
		return "", "", err
	}
	parts := strings.Split(string(resp), "\x00")
	if len(parts) != 3 || parts[1] == "" {
		return "", "", smtp.Errorf(501, "5.5.2", "Malformed PLAIN response")
	}
	if parts[0] != "" && parts[0] != parts[1] {
		return "", "", smtp.Errorf(535, "5.7.8", "Authorization identity must be empty or equal the user name")
	}
	return parts[1], parts[2], nil
}

func (c *conn) authLogin(initial string) (user, pass string, err error) {
	var u []byte
	if initial != "" {
		u, err = decode64(initial)
	} else {
		u, err = c.challenge("Username:")
	}
	if err != nil {
		return "", "", err
	}
	p, err := c.challenge("Password:")
	if err != nil {
		return "", "", err
	}
	return string(u), string(p), nil
}
