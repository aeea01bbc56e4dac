package classify

// This file is the small MIME reader shared by ParseDSN (dsnparse.go) and ParseARF
// (arf.go): header sections, Content-Type, multipart bodies, base64 and quoted-printable
// transfer encodings, charsets and RFC 2047 encoded words.
//
// It exists because bounces and feedback reports are often broken MIME: cut off in the
// middle of a part, missing their closing boundary, mis-declaring their parts, folding
// header lines without indenting them, carrying damaged base64. net/mail and
// mime/multipart reject such input outright, yet what it still holds (the delivery-status
// or feedback-report part) is what matters. dsnParser therefore reads tolerantly and never
// fails: what it cannot make sense of is kept as it is or dropped. Because the input comes
// from strangers, the reader is also bounded by the dsnMax constants (dsnparse.go): the
// nesting depth, the fields per header section, the parts and the bytes decoded per
// message, and the length of every field are capped; past a cap, the excess is ignored.

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"strings"
	"unicode/utf8"
)

// dsnField is one header field: its name as written and its value unfolded and trimmed.
type dsnField struct{ name, value string }

// dsnHeader is a header section in order.
type dsnHeader []dsnField

// get returns the value of the first field called name (case-insensitive), or "".
func (h dsnHeader) get(name string) string {
	for _, f := range h {
		if strings.EqualFold(f.name, name) {
			return f.value
		}
	}
	return ""
}

// has reports whether h has a field called name.
func (h dsnHeader) has(name string) bool {
	for _, f := range h {
		if strings.EqualFold(f.name, name) {
			return true
		}
	}
	return false
}

// all returns the values of every field called name.
func (h dsnHeader) all(name string) []string {
	var out []string
	for _, f := range h {
		if strings.EqualFold(f.name, name) {
			out = append(out, f.value)
		}
	}
	return out
}

// dsnCutLine splits b after its first line, dropping the CRLF or LF.
func dsnCutLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return bytes.TrimSuffix(b, []byte("\r")), nil
	}
	return bytes.TrimSuffix(b[:i], []byte("\r")), b[i+1:]
}

// dsnParseHeader reads the header section at the start of data (RFC 5322 §2.2) and
// returns it with the rest of data after the empty line that ends it. It never fails.
// A leading mbox "From " line is skipped. An invalid line ends the section and starts the
// body (a section of only invalid lines is no header at all, and data is returned whole),
// unless lenient is set: then it continues the previous field. The delivery-status and
// feedback-report bodies are read leniently, because some MTAs forget to indent folded
// Diagnostic-Code lines. A line of only white space counts as empty.
func dsnParseHeader(data []byte, lenient bool) (dsnHeader, []byte) {
	var (
		h    dsnHeader
		name string
		val  []byte
		open bool
	)
	flush := func() {
		if open && len(h) < dsnMaxFields {
			h = append(h, dsnField{name, strings.TrimSpace(string(val))})
		}
		open, val = false, val[:0]
	}
	rest := data
	for first := true; len(rest) > 0; first = false {
		line, next := dsnCutLine(rest)
		switch {
		case len(bytes.TrimSpace(line)) == 0:
			flush()
			return h, next
		case line[0] == ' ' || line[0] == '\t':
			if open {
				val = dsnAppendCapped(val, line)
			} else if !lenient {
				return nil, data
			}
		default:
			if n, v, ok := dsnSplitField(line); ok {
				flush()
				name, open = n, true
				val = dsnAppendCapped(val, v)
			} else if first && bytes.HasPrefix(line, []byte("From ")) {
				// mbox separator
			} else if lenient {
				if open {
					val = dsnAppendCapped(dsnAppendCapped(val, []byte{' '}), line)
				}
			} else {
				flush()
				if len(h) == 0 {
					return nil, data
				}
				return h, rest
			}
		}
		rest = next
	}
	flush()
	return h, nil
}

// dsnSplitField splits "Name: value" where Name is printable ASCII without spaces.
func dsnSplitField(line []byte) (string, []byte, bool) {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return "", nil, false
	}
	n := bytes.TrimRight(line[:i], " \t")
	if len(n) == 0 {
		return "", nil, false
	}
	for _, c := range n {
		if c <= ' ' || c >= 0x7f {
			return "", nil, false
		}
	}
	return string(n), line[i+1:], true
}

// dsnAppendCapped appends src to dst up to dsnMaxField bytes in all.
func dsnAppendCapped(dst, src []byte) []byte {
	room := dsnMaxField - len(dst)
	if room <= 0 {
		return dst
	}
	return append(dst, src[:min(len(src), room)]...)
}

// dsnPart is one MIME entity, read tolerantly.
type dsnPart struct {
	header    dsnHeader
	mediaType string            // lower case "type/subtype"; "text/plain" when absent or unusable
	params    map[string]string // Content-Type parameters, names in lower case
	body      []byte            // the body with its transfer encoding undone
	parts     []*dsnPart        // the parts of a multipart
	enclosed  dsnHeader         // the header of an enclosed message (see dsnEnclosing)
	encloses  bool              // the part is an enclosed message or header
}

// dsnEnclosing lists the media types that carry a returned message or its header
// (RFC 2046 §5.2.1, RFC 6522 §4, RFC 6532 §3.7, RFC 6533 §6.3). Their content is not
// searched for report parts: a returned message may itself be a bounce or a report.
var dsnEnclosing = map[string]bool{
	"message/rfc822":         true,
	"message/global":         true,
	"text/rfc822-headers":    true,
	"message/rfc822-headers": true,
	"message/global-headers": true,
}

// dsnParser reads one message and counts the parts and decoded bytes it allowed.
type dsnParser struct {
	parts   int
	decoded int
}

// parse reads the entity in data at nesting depth depth.
func (p *dsnParser) parse(data []byte, depth int) *dsnPart {
	p.parts++
	h, body := dsnParseHeader(data, false)
	part := &dsnPart{header: h}
	part.mediaType, part.params = dsnContentType(h.get("Content-Type"))
	part.body = p.decode(body, strings.ToLower(strings.TrimSpace(h.get("Content-Transfer-Encoding"))))
	switch {
	case strings.HasPrefix(part.mediaType, "multipart/"):
		b := part.params["boundary"]
		if depth >= dsnMaxDepth || b == "" || len(b) > 200 {
			break
		}
		for _, raw := range dsnSplitMultipart(part.body, b) {
			if p.parts >= dsnMaxParts {
				break
			}
			part.parts = append(part.parts, p.parse(raw, depth+1))
		}
	case dsnEnclosing[part.mediaType]:
		part.encloses = true
		part.enclosed, _ = dsnParseHeader(part.body, false)
	}
	return part
}

// decode undoes a base64 or quoted-printable transfer encoding, as long as the message's
// budget of decoded bytes lasts; past it, and for any other encoding, body is returned as is.
func (p *dsnParser) decode(body []byte, cte string) []byte {
	if cte != "base64" && cte != "quoted-printable" {
		return body
	}
	if p.decoded+len(body) > dsnMaxDecoded {
		return body
	}
	p.decoded += len(body)
	if cte == "base64" {
		return dsnDecodeBase64(body)
	}
	return dsnDecodeQP(body)
}

// walk calls fn for p and its descendants in document order until fn returns false. It
// does not enter enclosed messages, which are not parsed beyond their header.
func (p *dsnPart) walk(fn func(*dsnPart) bool) bool {
	if !fn(p) {
		return false
	}
	for _, c := range p.parts {
		if !c.walk(fn) {
			return false
		}
	}
	return true
}

// find returns the first part for which match is true, or nil.
func (p *dsnPart) find(match func(*dsnPart) bool) *dsnPart {
	var found *dsnPart
	p.walk(func(q *dsnPart) bool {
		if match(q) {
			found = q
			return false
		}
		return true
	})
	return found
}

// dsnContentType parses a Content-Type value, falling back to a forgiving split at
// semicolons when mime.ParseMediaType refuses it. A missing or unusable type is
// text/plain (RFC 2045 §5.2).
func dsnContentType(v string) (string, map[string]string) {
	if v == "" {
		return "text/plain", nil
	}
	if len(v) <= 8<<10 {
		if mt, params, err := mime.ParseMediaType(v); err == nil && strings.Contains(mt, "/") {
			return strings.ToLower(mt), params
		}
	}
	mt, rest, _ := strings.Cut(v, ";")
	mt = strings.ToLower(strings.TrimSpace(mt))
	if !strings.Contains(mt, "/") || strings.ContainsAny(mt, " \t\"") {
		mt = "text/plain"
	}
	params := map[string]string{}
	for _, kv := range strings.Split(rest, ";") {
		k, val, ok := strings.Cut(kv, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		if !ok || k == "" {
			continue
		}
		if _, dup := params[k]; !dup {
			params[k] = strings.Trim(strings.TrimSpace(val), `"`)
		}
	}
	return mt, params
}

// dsnSplitMultipart returns the bodies of the parts of a multipart body (RFC 2046
// §5.1.1). A missing closing delimiter is forgiven: the last part then runs to the end,
// which is how a truncated bounce still yields its delivery-status part. Every delimiter
// is searched for once, so the work is linear in the body.
func dsnSplitMultipart(body []byte, boundary string) [][]byte {
	delim := []byte("--" + boundary)
	var parts [][]byte
	start := -1 // where the current part's content starts; -1 in the preamble
	for pos := 0; pos < len(body); {
		i := bytes.Index(body[pos:], delim)
		if i < 0 {
			break
		}
		i += pos
		pos = i + len(delim)
		if i > 0 && body[i-1] != '\n' {
			continue
		}
		after := body[pos:]
		closing := bytes.HasPrefix(after, []byte("--"))
		line, rest := dsnCutLine(after)
		if !closing && len(bytes.TrimSpace(line)) != 0 {
			continue // a longer boundary, or text that starts like this one
		}
		if start >= 0 {
			end := i
			// The line break before a delimiter belongs to the delimiter.
			if end > start && body[end-1] == '\n' {
				end--
				if end > start && body[end-1] == '\r' {
					end--
				}
			}
			parts = append(parts, body[start:end])
			if len(parts) >= dsnMaxParts {
				return parts
			}
		}
		if closing {
			return parts
		}
		start = len(body) - len(rest)
		pos = start
	}
	if start >= 0 && start < len(body) {
		parts = append(parts, body[start:])
	}
	return parts
}

// dsnDecodeBase64 decodes base64, skipping anything outside the alphabet and a dangling
// last character, so a damaged part still yields most of its content.
func dsnDecodeBase64(b []byte) []byte {
	clean := make([]byte, 0, len(b))
	for _, c := range b {
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/' {
			clean = append(clean, c)
		}
	}
	if len(clean)%4 == 1 {
		clean = clean[:len(clean)-1]
	}
	out := make([]byte, base64.RawStdEncoding.DecodedLen(len(clean)))
	n, _ := base64.RawStdEncoding.Decode(out, clean)
	return out[:n]
}

// dsnDecodeQP decodes quoted-printable (RFC 2045 §6.7), keeping an "=" that starts no
// valid escape instead of failing as mime/quotedprintable does.
func dsnDecodeQP(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != '=' {
			out = append(out, c)
			continue
		}
		switch {
		case i+1 < len(b) && b[i+1] == '\n':
			i++
		case i+2 < len(b) && b[i+1] == '\r' && b[i+2] == '\n':
			i += 2
		case i+2 < len(b) && dsnUnhex(b[i+1]) >= 0 && dsnUnhex(b[i+2]) >= 0:
			out = append(out, byte(dsnUnhex(b[i+1])<<4|dsnUnhex(b[i+2])))
			i += 2
		default:
			out = append(out, c)
		}
	}
	return out
}

func dsnUnhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// dsnToUTF8 returns text in UTF-8. Only the Latin-1 family is converted: bounce texts are
// almost always ASCII or UTF-8, and the parsers look for ASCII markers anyway; anything
// else keeps its bytes, with invalid sequences replaced.
func dsnToUTF8(b []byte, charset string) string {
	switch strings.ToLower(strings.Trim(charset, `" `)) {
	case "iso-8859-1", "iso8859-1", "latin1", "latin-1", "windows-1252", "cp1252", "iso-8859-15":
		if !utf8.Valid(b) {
			rs := make([]rune, len(b))
			for i, c := range b {
				rs[i] = rune(c)
			}
			return string(rs)
		}
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// dsnDecodeWords decodes RFC 2047 encoded words in a header value, leaving it as it is
// when a charset is unknown.
func dsnDecodeWords(v string) string {
	d := mime.WordDecoder{CharsetReader: func(charset string, r io.Reader) (io.Reader, error) {
		b, err := io.ReadAll(io.LimitReader(r, dsnMaxField))
		if err != nil {
			return nil, err
		}
		return strings.NewReader(dsnToUTF8(b, charset)), nil
	}}
	if s, err := d.DecodeHeader(v); err == nil {
		return s
	}
	return v
}
