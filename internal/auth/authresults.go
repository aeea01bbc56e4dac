package auth

// Authentication-Results header fields (RFC 8601): rendering the field Repute adds to
// incoming mail, and removing forged copies that claim to come from Repute.

import (
	"bytes"
	"strings"
)

// AuthResultsHeader renders a complete Authentication-Results header field (RFC 8601
// §2.2), CRLF-terminated, with one method per continuation line so that no line comes
// near the 78-character recommendation of RFC 5322 §2.1.1 just because many checks ran:
//
//	Authentication-Results: mx.example.org;
//		spf=pass smtp.mailfrom=example.net;
//		dkim=pass header.d=example.net
//
// The methods are the strings of the AuthResults methods (SPFResult, DKIMResult,
// DMARCResult, IPRevResult). Empty ones are skipped; without any the field says
// "none" (§2.2, no-result). CR and LF inside the arguments are turned into spaces so a
// caller passing text from the network cannot inject header fields.
func AuthResultsHeader(authservID string, methods ...string) string {
	var b strings.Builder
	b.WriteString("Authentication-Results: ")
	b.WriteString(authResultsValue(arOneLine(strings.TrimSpace(authservID))))
	n := 0
	for _, m := range methods {
		m = strings.TrimSpace(arOneLine(m))
		if m == "" {
			continue
		}
		b.WriteString(";\r\n\t")
		b.WriteString(m)
		n++
	}
	if n == 0 {
		b.WriteString("; none")
	}
	b.WriteString("\r\n")
	return b.String()
}

// arOneLine replaces CR and LF by spaces.
func arOneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return ' '
		}
		return r
	}, s)
}

// arComment returns s as an RFC 5322 comment, parentheses included: "(" , ")"
// and "\" are escaped as quoted-pairs, control and non-ASCII characters become "?"
// (the text may come from DNS, e.g. a PTR name).
func arComment(s string) string { return arDelimited(s, '(', ')', `()\`) }

// arDelimited puts s between open and close, backslash-escaping the bytes in special and
// replacing control and non-ASCII bytes with '?', so that text from outside cannot end
// the comment or quoted string early or start a new header line.
func arDelimited(s string, open, close byte, special string) string {
	var b strings.Builder
	b.WriteByte(open)
	for _, c := range []byte(s) {
		switch {
		case strings.IndexByte(special, c) >= 0:
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c >= 0x7f:
			b.WriteByte('?')
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte(close)
	return b.String()
}

// StripAuthResults removes every Authentication-Results field of msg's header whose
// authserv-id is authservID, and returns msg itself (the same slice) when there is none.
//
// RFC 8601 §5 requires this of a border MTA: a field with our authserv-id that arrives
// from outside is a forgery meant to make our own users' clients, which trust fields
// with our id, believe checks passed that never ran. The comparison ignores case and a
// trailing dot, and tolerates what the grammar allows around the id (§2.2): folding
// whitespace, comments, a quoted-string and a version number ("id 1;"). Fields of
// other authserv-ids stay, as does ARC-Authentication-Results (ARC seals it; removing
// it would break the chain) and any field whose name merely starts with
// "Authentication-Results". The header ends at the first empty line; a message
// without one is all header. The body is never looked at. msg is not modified.
func StripAuthResults(msg []byte, authservID string) []byte {
	want := arNormalizeID(authservID)
	fields, _ := arScanHeader(msg)
	var out []byte
	last := 0 // msg[last:] is not yet copied to out
	for _, f := range fields {
		if !strings.EqualFold(f.name, "Authentication-Results") {
			continue
		}
		id, ok := arAuthservID(f.value(msg))
		if !ok || arNormalizeID(id) != want {
			continue
		}
		if out == nil {
			out = make([]byte, 0, len(msg))
		}
		out = append(out, msg[last:f.start]...)
		last = f.end
	}
	if out == nil {
		return msg
	}
	return append(out, msg[last:]...)
}

func arNormalizeID(id string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(id), "."))
}

// arField is the position of one raw header field in a message: msg[start:end] is
// the whole field, continuation lines and line endings included.
type arField struct {
	name       string // as written, without the colon and whitespace before it; "" for a line without a colon
	start, end int
	colon      int // index of the colon, or -1
}

// value returns the field's body after the colon, unfolded: line breaks removed, the
// whitespace that followed them kept (RFC 5322 §2.2.3).
func (f arField) value(msg []byte) string {
	if f.colon < 0 {
		return ""
	}
	v := msg[f.colon+1 : f.end]
	if bytes.IndexByte(v, '\n') < 0 {
		return string(v)
	}
	v = bytes.ReplaceAll(v, []byte("\r\n"), nil)
	return string(bytes.ReplaceAll(v, []byte("\n"), nil))
}

// arScanHeader splits the header of msg into fields, tolerantly: lines may end in CRLF or
// a bare LF, the last line need not end at all, lines starting with a space or tab
// continue the field before them, and a line without a colon becomes a field with an
// empty name rather than an error. headerEnd is the offset of the empty line that ends
// the header, or len(msg) when there is none.
func arScanHeader(msg []byte) (fields []arField, headerEnd int) {
	pos := 0
	for pos < len(msg) {
		end := len(msg)
		if i := bytes.IndexByte(msg[pos:], '\n'); i >= 0 {
			end = pos + i + 1
		}
		line := bytes.TrimRight(msg[pos:end], "\r\n")
		if len(line) == 0 {
			return fields, pos
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			fields[len(fields)-1].end = end
			pos = end
			continue
		}
		f := arField{start: pos, end: end, colon: -1}
		if i := bytes.IndexByte(line, ':'); i >= 0 {
			f.colon = pos + i
			f.name = strings.TrimRight(string(line[:i]), " \t")
		}
		fields = append(fields, f)
		pos = end
	}
	return fields, len(msg)
}

// arAuthservID returns the authserv-id at the start of an Authentication-Results value
// (RFC 8601 §2.2: [CFWS] value, where value is an RFC 2045 token or a quoted-string).
func arAuthservID(v string) (string, bool) {
	v = arSkipCFWS(v)
	if v == "" {
		return "", false
	}
	if v[0] == '"' {
		var b strings.Builder
		for i := 1; i < len(v); i++ {
			switch c := v[i]; c {
			case '"':
				return b.String(), true
			case '\\':
				if i+1 < len(v) {
					i++
					b.WriteByte(v[i])
				}
			default:
				b.WriteByte(c)
			}
		}
		return "", false // unterminated
	}
	end := strings.IndexFunc(v, func(r rune) bool {
		return r <= ' ' || r == 0x7f || strings.ContainsRune(`()<>@,;:\"/[]?=`, r)
	})
	if end == 0 {
		return "", false
	}
	if end < 0 {
		end = len(v)
	}
	return v[:end], true
}

// arSkipCFWS skips whitespace and (nested) comments (RFC 5322 §3.2.2). An unterminated
// comment swallows the rest.
func arSkipCFWS(v string) string {
	for {
		v = strings.TrimLeft(v, " \t\r\n")
		if v == "" || v[0] != '(' {
			return v
		}
		depth := 0
		i := 0
		for ; i < len(v); i++ {
			switch v[i] {
			case '\\':
				i++
			case '(':
				depth++
			case ')':
				depth--
			}
			if depth == 0 {
				break
			}
		}
		if i >= len(v) {
			return ""
		}
		v = v[i+1:]
	}
}
