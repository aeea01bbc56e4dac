package smtp

import (
	"errors"
	"net/netip"
	"strings"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// Limits from RFC 5321 §4.5.3.1.
const (
	MaxLocalPart = 64
	MaxDomain    = 255
	MaxPath      = 256
)

// Address is a mailbox: Local "@" Domain. Domain is stored lower-case in its ASCII form
// (A-labels), or as an address literal "[192.0.2.1]". Local keeps its case (RFC 5321 §2.4:
// only the destination host may interpret it) and is stored unquoted.
type Address struct {
	Local  string
	Domain string
}

// IsZero reports whether a is the null path "<>".
func (a Address) IsZero() bool { return a.Local == "" && a.Domain == "" }

// String formats the address for the wire, quoting the local part when it needs it.
func (a Address) String() string {
	if a.IsZero() {
		return ""
	}
	return quoteLocal(a.Local) + "@" + a.Domain
}

// Key is the lookup form: local part and domain lower-cased.
func (a Address) Key() string {
	if a.IsZero() {
		return ""
	}
	return strings.ToLower(a.Local) + "@" + a.Domain
}

// ErrBadAddress is wrapped by every parse failure.
var ErrBadAddress = errors.New("malformed address")

func badAddr(why string) error { return &addrError{why} }

type addrError struct{ why string }

func (e *addrError) Error() string   { return "malformed address: " + e.why }
func (e *addrError) Is(t error) bool { return t == ErrBadAddress }

// ParsePath parses a reverse-path or forward-path as written after "MAIL FROM:" or "RCPT TO:"
// (RFC 5321 §4.1.2), angle brackets included. "<>" yields the zero Address when allowNull.
// A source route ("<@a,@b:user@c>") is accepted and ignored (§4.1.1.3). UTF-8 is allowed only
// when utf8 is set (SMTPUTF8, RFC 6531). It returns the unparsed rest (the ESMTP
// parameters, leading space trimmed).
func ParsePath(s string, allowNull, utf8ok bool) (Address, string, error) {
	s = strings.TrimLeft(s, " ")
	if !strings.HasPrefix(s, "<") {
		// Some clients omit the brackets; RFC 5321 requires them. Postfix accepts a bare
		// address (strict_rfc821_envelopes=no); so do we, up to the first space.
		end := strings.IndexByte(s, ' ')
		if end < 0 {
			end = len(s)
		}
		if end == 0 {
			return Address{}, "", badAddr("missing address")
		}
		a, err := parseMailbox(s[:end], utf8ok)
		return a, strings.TrimLeft(s[end:], " "), err
	}
	end := closingBracket(s)
	if end < 0 {
		return Address{}, "", badAddr("missing '>'")
	}
	inner, rest := s[1:end], strings.TrimLeft(s[end+1:], " ")
	if len(inner) > MaxPath-2 {
		return Address{}, "", badAddr("path longer than 256 characters")
	}
	if inner == "" {
		if !allowNull {
			return Address{}, "", badAddr("empty path not allowed here")
		}
		return Address{}, rest, nil
	}
	if inner[0] == '@' { // source route
		colon := strings.IndexByte(inner, ':')
		if colon < 0 {
			return Address{}, "", badAddr("source route without ':'")
		}
		for _, hop := range strings.Split(inner[:colon], ",") {
			if !strings.HasPrefix(hop, "@") || validDomain(hop[1:], utf8ok) != nil {
				return Address{}, "", badAddr("bad source route")
			}
		}
		inner = inner[colon+1:]
	}
	a, err := parseMailbox(inner, utf8ok)
	return a, rest, err
}

// ParseAddress parses a bare "local@domain" (as given on a command line or in config).
func ParseAddress(s string) (Address, error) {
	return parseMailbox(strings.TrimSpace(s), true)
}

// closingBracket finds the '>' that ends the path, skipping quoted local parts.
func closingBracket(s string) int {
	quoted := false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == '>':
			return i
		}
	}
	return -1
}

func parseMailbox(s string, utf8ok bool) (Address, error) {
	if !utf8.ValidString(s) {
		return Address{}, badAddr("invalid UTF-8")
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 {
		return Address{}, badAddr("expected local-part@domain")
	}
	local, domain := s[:at], s[at+1:]
	l, err := parseLocal(local, utf8ok)
	if err != nil {
		return Address{}, err
	}
	d, err := normalizeDomain(domain, utf8ok)
	if err != nil {
		return Address{}, err
	}
	return Address{Local: l, Domain: d}, nil
}

func parseLocal(s string, utf8ok bool) (string, error) {
	if strings.HasPrefix(s, `"`) {
		if len(s) < 2 || !strings.HasSuffix(s, `"`) {
			return "", badAddr("unterminated quoted local part")
		}
		var b strings.Builder
		body := s[1 : len(s)-1]
		for i := 0; i < len(body); i++ {
			c := body[i]
			switch {
			case c == '\\':
				if i+1 >= len(body) || body[i+1] < 32 || body[i+1] == 127 {
					return "", badAddr("bad quoted-pair")
				}
				i++
				b.WriteByte(body[i])
			case c == '"':
				return "", badAddr("stray quote in local part")
			case c < 32 || c == 127:
				return "", badAddr("control character in local part")
			case c >= 128 && !utf8ok:
				return "", badAddr("non-ASCII local part without SMTPUTF8")
			default:
				b.WriteByte(c)
			}
		}
		l := b.String()
		if len(l) > MaxLocalPart || l == "" {
			return "", badAddr("local part length")
		}
		return l, nil
	}
	if len(s) > MaxLocalPart {
		return "", badAddr("local part longer than 64 characters")
	}
	if strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") || strings.Contains(s, "..") {
		return "", badAddr("misplaced '.' in local part")
	}
	for _, r := range s {
		if r >= 128 {
			if !utf8ok {
				return "", badAddr("non-ASCII local part without SMTPUTF8")
			}
			continue
		}
		if !isAtext(byte(r)) && r != '.' {
			return "", badAddr("invalid character in local part")
		}
	}
	return s, nil
}

func isAtext(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// NormalizeDomain lower-cases a domain and converts U-labels to A-labels.
func NormalizeDomain(d string) (string, error) { return normalizeDomain(d, true) }

func normalizeDomain(d string, utf8ok bool) (string, error) {
	if strings.HasPrefix(d, "[") {
		if !strings.HasSuffix(d, "]") {
			return "", badAddr("unterminated address literal")
		}
		lit := d[1 : len(d)-1]
		if v6, ok := strings.CutPrefix(lit, "IPv6:"); ok {
			ip, err := netip.ParseAddr(v6)
			if err != nil || !ip.Is6() {
				return "", badAddr("bad IPv6 address literal")
			}
			return "[IPv6:" + ip.String() + "]", nil
		}
		ip, err := netip.ParseAddr(lit)
		if err != nil || !ip.Is4() {
			return "", badAddr("bad address literal")
		}
		return "[" + ip.String() + "]", nil
	}
	if err := validDomain(d, utf8ok); err != nil {
		return "", err
	}
	d = strings.TrimSuffix(d, ".")
	for i := 0; i < len(d); i++ {
		if d[i] >= 128 {
			a, err := idna.Lookup.ToASCII(d)
			if err != nil {
				return "", badAddr("invalid internationalized domain")
			}
			return strings.ToLower(a), nil
		}
	}
	return strings.ToLower(d), nil
}

func validDomain(d string, utf8ok bool) error {
	if d == "" || len(d) > MaxDomain {
		return badAddr("domain length")
	}
	d = strings.TrimSuffix(d, ".")
	for _, label := range strings.Split(d, ".") {
		if label == "" || len(label) > 63 {
			return badAddr("empty or overlong domain label")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return badAddr("domain label starts or ends with '-'")
		}
		for _, r := range label {
			switch {
			case r >= 128:
				if !utf8ok {
					return badAddr("non-ASCII domain without SMTPUTF8")
				}
			case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			default:
				return badAddr("invalid character in domain")
			}
		}
	}
	return nil
}

func quoteLocal(l string) string {
	ok := l != "" && !strings.HasPrefix(l, ".") && !strings.HasSuffix(l, ".") && !strings.Contains(l, "..")
	for i := 0; ok && i < len(l); i++ {
		c := l[i]
		ok = c >= 128 || isAtext(c) || c == '.'
	}
	if ok {
		return l
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(l); i++ {
		if l[i] == '"' || l[i] == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(l[i])
	}
	b.WriteByte('"')
	return b.String()
}
