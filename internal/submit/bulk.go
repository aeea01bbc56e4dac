package submit

import (
	"bytes"
	"strings"

	"github.com/repute-mail/repute/internal/smtp"
	"github.com/repute-mail/repute/internal/unsubscribe"
)

// Bulk adds the one-click unsubscribe fields (RFC 8058) to bulk mail: mail from a
// configured bulk sender, or marked bulk by its own header (Precedence, List-Id).
type Bulk struct {
	Key     []byte          // the server's unsubscribe secret
	BaseURL string          // where the links point, e.g. "https://mail.example.org"
	Senders map[string]bool // bounce.bulk_senders: lower-case addresses and "@domain"s
}

// fields returns the List-Unsubscribe fields for a message, or "". The link names the
// recipient, so a message to several remote recipients (one body for all) cannot carry
// one; bulk senders send one message per recipient. A message that has its own
// List-Unsubscribe keeps it.
func (b *Bulk) fields(from smtp.Address, remote []string, h *Header) string {
	if len(remote) != 1 || from.Domain == "" {
		return ""
	}
	if !b.isBulk(from, h) || h.Has("List-Unsubscribe") {
		return ""
	}
	return unsubscribe.Fields(b.Key, b.BaseURL, from.String(), remote[0])
}

// isBulk reports whether a message is bulk mail: from a configured bulk sender, or
// marked bulk by its own header. b may be nil (no bulk senders configured).
func (b *Bulk) isBulk(from smtp.Address, h *Header) bool {
	if b != nil && from.Domain != "" && (b.Senders[strings.ToLower(from.String())] || b.Senders["@"+from.Domain]) {
		return true
	}
	return h.isBulk() || h.Has("List-Unsubscribe")
}

// isBulk reports whether the header marks the message as bulk mail.
func (h *Header) isBulk() bool {
	var b bytes.Buffer
	h.WriteFields(&b)
	return unsubscribe.IsBulk(b.Bytes())
}
