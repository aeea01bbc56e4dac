// Package unsubscribe makes and checks the one-click unsubscribe links of RFC 8058 that
// Repute puts into bulk mail: List-Unsubscribe with an https URL and List-Unsubscribe-Post.
// Gmail and Yahoo require them of bulk senders, and a recipient who can leave with one
// click does not press "report spam" instead.
//
// The token in the URL is stateless: the sending domain and the recipient, encoded, and an
// HMAC-SHA256 over them under a server secret (truncated to 80 bits), so a link cannot be
// made up for someone else's address and nothing needs to be stored per message.
//
// It is a leaf. Upstream: internal/app (adds the fields at submission), internal/web
// (handles the POST).
package unsubscribe

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// maxToken bounds what Parse looks at.
const maxToken = 1024

var macEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// ErrBadToken is returned for a token that does not parse or verify.
var ErrBadToken = errors.New("invalid unsubscribe token")

// Token returns the token for a recipient of a sending domain.
func Token(key []byte, senderDomain, rcpt string) string {
	payload := strings.ToLower(senderDomain) + "\n" + strings.ToLower(rcpt)
	return base64.RawURLEncoding.EncodeToString([]byte(payload)) + "." + mac(key, payload)
}

// Parse verifies a token and returns what it names.
func Parse(key []byte, token string) (senderDomain, rcpt string, err error) {
	if len(token) > maxToken {
		return "", "", ErrBadToken
	}
	enc, sum, ok := strings.Cut(token, ".")
	if !ok {
		return "", "", ErrBadToken
	}
	payload, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil || !hmac.Equal([]byte(sum), []byte(mac(key, string(payload)))) {
		return "", "", ErrBadToken
	}
	d, r, ok := strings.Cut(string(payload), "\n")
	if !ok || d == "" || !strings.Contains(r, "@") {
		return "", "", ErrBadToken
	}
	return d, r, nil
}

func mac(key []byte, payload string) string {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(payload))
	return macEncoding.EncodeToString(h.Sum(nil)[:10])
}

// MailtoTag is the plus-tag of the mailto address in List-Unsubscribe: mail to
// sender+unsubscribe@domain whose Subject carries a valid token unsubscribes; other mail
// to it reaches the sender through plus-addressing, so nothing is lost.
const MailtoTag = "+unsubscribe"

// Fields returns the two header fields for a recipient (CRLF-terminated): the https URL
// under baseURL (e.g. "https://mail.example.org") and a mailto address with the token in
// the subject (RFC 2369), and the one-click marker (RFC 8058).
func Fields(key []byte, baseURL, sender, rcpt string) string {
	at := strings.LastIndexByte(sender, '@')
	domain := sender[at+1:]
	tok := Token(key, domain, rcpt)
	u := strings.TrimRight(baseURL, "/") + "/unsubscribe/" + tok
	mailto := "mailto:" + sender[:at] + MailtoTag + "@" + domain + "?subject=unsubscribe%20" + tok
	return fmt.Sprintf("List-Unsubscribe: <%s>,\r\n <%s>\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", u, mailto)
}

// IsMailtoAddress reports whether addr is a sender's unsubscribe mailto address, and
// returns the sender.
func IsMailtoAddress(addr string) (sender string, ok bool) {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 || !strings.HasSuffix(strings.ToLower(addr[:at]), MailtoTag) || at == len(MailtoTag) {
		return "", false
	}
	return addr[:at-len(MailtoTag)] + addr[at:], true
}

// SubjectToken finds a token in a Subject such as "unsubscribe TOKEN" (mail programs
// may add "Re:" or change the case of the word).
func SubjectToken(subject string) string {
	f := strings.Fields(subject)
	if len(f) == 0 {
		return ""
	}
	return f[len(f)-1]
}

// IsBulk reports whether a message's header marks it as bulk mail: a Precedence of bulk,
// list or junk, or a List-Id (RFC 2919).
func IsBulk(header []byte) bool {
	for _, f := range fields(header) {
		name, value, _ := strings.Cut(f, ":")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "precedence":
			switch strings.ToLower(strings.TrimSpace(value)) {
			case "bulk", "list", "junk":
				return true
			}
		case "list-id":
			return true
		}
	}
	return false
}

// HasField reports whether the header already has a field called name.
func HasField(header []byte, name string) bool {
	for _, f := range fields(header) {
		n, _, _ := strings.Cut(f, ":")
		if strings.EqualFold(strings.TrimSpace(n), name) {
			return true
		}
	}
	return false
}

// fields returns the unfolded header fields of msg (up to the empty line).
func fields(msg []byte) []string {
	var out []string
	for len(msg) > 0 {
		i := bytes.IndexByte(msg, '\n')
		line := msg
		if i >= 0 {
			line, msg = msg[:i], msg[i+1:]
		} else {
			msg = nil
		}
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			break
		}
		if (line[0] == ' ' || line[0] == '\t') && len(out) > 0 {
			out[len(out)-1] += " " + string(bytes.TrimSpace(line))
			continue
		}
		out = append(out, string(line))
	}
	return out
}
