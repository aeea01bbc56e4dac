// Package verp tags the envelope sender of outgoing mail so that a bounce coming back
// days later can be tied to the message it is about (variable envelope return path).
//
// The tag goes after a plus in the sender's local part: alice@example.org sends as
// alice+rb-<message id>-<mac>@example.org. The domain does not change, so SPF and DMARC
// alignment stay as they were, and a bounce that is not consumed still reaches Alice
// through plus-addressing. The tag names the message, not the recipient: VERP per
// recipient would cost one SMTP transaction per recipient, and bounces name the failed
// recipient themselves (RFC 3464 Final-Recipient, or the text of the other formats). The
// MAC (HMAC-SHA256 under a server secret, truncated to 40 bits) keeps outsiders from
// forging bounces that would suppress recipients of their choice.
//
// It is a leaf: no imports of Repute's. Upstream: internal/scheduler (Encode, when a
// message leaves) and internal/bounce (Decode, when a bounce arrives).
package verp

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"strings"
)

// marker starts the tag in the local part.
const marker = "+rb-"

// maxLocal is the longest local part RFC 5321 §4.5.3.1.1 allows; a sender whose tagged
// local part would be longer keeps its address untagged.
const maxLocal = 64

var macEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// Encode returns the tagged envelope sender for msgID, or from unchanged when it cannot
// be tagged (null sender, no domain, already tagged, too long, an ID with characters
// outside [0-9a-z]).
func Encode(key []byte, from, msgID string) string {
	at := strings.LastIndexByte(from, '@')
	if at <= 0 || msgID == "" || strings.Contains(from[:at], marker) || !idChars(msgID) {
		return from
	}
	local, domain := from[:at], from[at+1:]
	tagged := local + marker + msgID + "-" + mac(key, local, domain, msgID)
	if len(tagged) > maxLocal {
		return from
	}
	return tagged + "@" + domain
}

// Decode returns the original sender and message ID of a tagged address, with ok false
// when the address carries no tag or its MAC does not verify.
func Decode(key []byte, addr string) (from, msgID string, ok bool) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 {
		return "", "", false
	}
	local, domain := addr[:at], addr[at+1:]
	i := strings.LastIndex(strings.ToLower(local), marker)
	if i <= 0 {
		return "", "", false
	}
	tag := strings.ToLower(local[i+len(marker):])
	id, sum, found := strings.Cut(tag, "-")
	if !found || !idChars(id) {
		return "", "", false
	}
	orig := local[:i]
	// Local parts are case-sensitive in principle but lower-cased in practice by some
	// relays; the MAC is over the lower-case form, so either verifies.
	if !hmac.Equal([]byte(sum), []byte(mac(key, orig, domain, id))) {
		return "", "", false
	}
	return orig + "@" + domain, id, true
}

func mac(key []byte, local, domain, msgID string) string {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(strings.ToLower(local) + "@" + strings.ToLower(domain) + "\x00" + msgID))
	return macEncoding.EncodeToString(h.Sum(nil)[:5])
}

func idChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return len(s) > 0 && len(s) <= 32
}

// Tagger tags the envelope senders of our own domains' mail as it leaves; forwarded mail
// of other domains keeps its sender (a tag would not come back to us, and the sender's
// own domain decides its SPF).
type Tagger struct {
	Key     []byte
	IsLocal func(ctx context.Context, domain string) (bool, error)
}

// Tag returns the envelope sender msgID leaves with.
func (t *Tagger) Tag(from, msgID string) string {
	at := strings.LastIndexByte(from, '@')
	if at < 0 {
		return from
	}
	if local, err := t.IsLocal(context.Background(), strings.ToLower(from[at+1:])); err != nil || !local {
		return from
	}
	return Encode(t.Key, from, msgID)
}
