package auth

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"net/mail"
	"strings"
	"sync"
	"time"
)

// Signer signs outgoing messages with the DKIM keys of their author's domain (the From:
// header's), so that DMARC alignment holds (RFC 7489 §3.1.1). Keys come from Keys and are
// cached for a minute, so a rotation reaches signing within a minute.
type Signer struct {
	Keys func(ctx context.Context, domain string) ([]DKIMKey, error) // the domain's signing keys
	Now  func() time.Time

	mu    sync.Mutex
	cache map[string]cachedKeys
}

type cachedKeys struct {
	keys    []DKIMKey
	fetched time.Time
}

const keyCacheTTL = time.Minute

// Sign returns msg with DKIM-Signature fields prepended, or msg unchanged when its author's
// domain has no keys (it is not ours, or has none yet).
func (s *Signer) Sign(ctx context.Context, msg []byte) ([]byte, error) {
	domain := AuthorDomain(msg)
	if domain == "" {
		return msg, nil
	}
	keys, err := s.keys(ctx, domain)
	if err != nil || len(keys) == 0 {
		return msg, err
	}
	now := time.Now()
	if s.Now != nil {
		now = s.Now()
	}
	sig, err := SignDKIM(keys, msg, now)
	if err != nil {
		return nil, fmt.Errorf("DKIM-sign for %s: %w", domain, err)
	}
	out := make([]byte, 0, len(sig)+len(msg))
	return append(append(out, sig...), msg...), nil
}

func (s *Signer) keys(ctx context.Context, domain string) ([]DKIMKey, error) {
	now := time.Now()
	s.mu.Lock()
	c, ok := s.cache[domain]
	s.mu.Unlock()
	if ok && now.Sub(c.fetched) < keyCacheTTL {
		return c.keys, nil
	}
	keys, err := s.Keys(ctx, domain)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.cache == nil {
		s.cache = map[string]cachedKeys{}
	}
	s.cache[domain] = cachedKeys{keys, now}
	s.mu.Unlock()
	return keys, nil
}

// authorParser reads From fields. Only the address matters, so a display name in a
// charset net/mail cannot decode (ISO-2022-JP, say) is left encoded rather than making
// the whole field unreadable, which left such mail unsigned.
var authorParser = &mail.AddressParser{WordDecoder: &mime.WordDecoder{
	CharsetReader: func(_ string, r io.Reader) (io.Reader, error) { return r, nil },
}}

// AuthorDomain returns the lower-cased domain of the first address in the message's From:
// header (RFC 5322 §3.6.2), or "" if there is none or it does not parse.
func AuthorDomain(msg []byte) string {
	end := bytes.Index(msg, []byte("\r\n\r\n"))
	if end < 0 {
		end = len(msg)
	}
	m, err := mail.ReadMessage(bytes.NewReader(append(append([]byte{}, msg[:end]...), "\r\n\r\n"...)))
	if err != nil {
		return ""
	}
	list, err := authorParser.ParseList(m.Header.Get("From"))
	if err != nil || len(list) == 0 {
		return ""
	}
	a := list[0].Address
	return strings.ToLower(a[strings.LastIndexByte(a, '@')+1:])
}
