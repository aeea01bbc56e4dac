package submit

import (
	"bytes"
	"strings"

	"github.com/repute-mail/repute/internal/smtp"
)

// Limits of the header parser. A header is read whole into memory and every From and
// Sender field is parsed; real messages have a few kilobytes of header and a few dozen
// fields (Postfix's header_size_limit is 100 KiB).
const (
	MaxHeaderSize   = 1 << 20
	MaxHeaderFields = 10000
)

// Header is a message's header section, field by field and byte for byte.
type Header struct {
	fields []field
}

type field struct {
	name string // as written, without white space before the colon
	raw  []byte // the whole field: continuation lines and the final CRLF included
}

// SplitHeader separates the header fields of msg (CRLF line endings) from its body. The
// header ends at the empty line, or (as in Sendmail and Postfix) at the first line that
// is neither a field nor a continuation: that line starts the body, and the empty line
// the input lacked is added when the message is written out. The fields share msg's
// memory. A header over MaxHeaderSize bytes or MaxHeaderFields fields is refused with
// 552 5.3.4.
func SplitHeader(msg []byte) (*Header, []byte, error) {
	h := &Header{}
	size := 0
	for len(msg) > 0 {
		end := bytes.Index(msg, []byte("\r\n")) + 2
		if end < 2 {
			end = len(msg)
		}
		line := msg[:end]
		switch {
		case bytes.Equal(line, []byte("\r\n")):
			return h, msg[2:], nil
		case (line[0] == ' ' || line[0] == '\t') && len(h.fields) > 0:
			f := &h.fields[len(h.fields)-1]
			f.raw = f.raw[:len(f.raw)+len(line)] // fields are contiguous in msg
		case isFieldStart(line):
			if len(h.fields) == MaxHeaderFields {
				return nil, nil, smtp.Errorf(552, "5.3.4", "Message header has more than %d fields", MaxHeaderFields)
			}
			name := line[:bytes.IndexByte(line, ':')]
			h.fields = append(h.fields, field{name: string(bytes.TrimRight(name, " \t")), raw: line[:len(line):len(msg)]})
		default:
			return h, msg, nil
		}
		if size += len(line); size > MaxHeaderSize {
			return nil, nil, smtp.Errorf(552, "5.3.4", "Message header exceeds %d bytes", MaxHeaderSize)
		}
		msg = msg[end:]
	}
	return h, msg, nil
}

// isFieldStart reports whether line begins a field: a name of printable ASCII, then ':'
// (RFC 5322 §2.2; white space before the colon is obsolete syntax, §4.5.8).
func isFieldStart(line []byte) bool {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return false
	}
	name := bytes.TrimRight(line[:colon], " \t")
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if c < 33 || c > 126 {
			return false
		}
	}
	return true
}

// Has reports whether a field called name (any case) is present.
func (h *Header) Has(name string) bool {
	for _, f := range h.fields {
		if strings.EqualFold(f.name, name) {
			return true
		}
	}
	return false
}

// Values returns the unfolded values of every field called name, in order.
func (h *Header) Values(name string) []string {
	var out []string
	for _, f := range h.fields {
		if strings.EqualFold(f.name, name) {
			v := f.raw[bytes.IndexByte(f.raw, ':')+1:]
			out = append(out, strings.TrimSpace(strings.ReplaceAll(string(v), "\r\n", "")))
		}
	}
	return out
}

// Remove deletes every field called name.
func (h *Header) Remove(name string) {
	kept := h.fields[:0]
	for _, f := range h.fields {
		if !strings.EqualFold(f.name, name) {
			kept = append(kept, f)
		}
	}
	h.fields = kept
}

// Size is the header's length in bytes.
func (h *Header) Size() int {
	n := 0
	for _, f := range h.fields {
		n += len(f.raw)
	}
	return n
}

// WriteFields writes the fields as they came, each ending in CRLF (a last line without one,
// at the very end of the input, gets it). It does not write the empty line after them.
func (h *Header) WriteFields(b *bytes.Buffer) {
	for _, f := range h.fields {
		b.Write(f.raw)
		if !bytes.HasSuffix(f.raw, []byte("\r\n")) {
			b.WriteString("\r\n")
		}
	}
}
