package submit

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"testing"
)

// FuzzSplitHeader: the parser never panics, never reads past its limits, and cuts the
// input without losing or inventing a byte: the fields as they came, then the body.
func FuzzSplitHeader(f *testing.F) {
	f.Add([]byte("From: a@b.test\r\nSubject: x\r\n\r\nbody\r\n"))
	f.Add([]byte("A: 1\r\n folded\r\nnot a field\r\n"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		h, body, err := SplitHeader(msg)
		if err != nil {
			if len(msg) <= MaxHeaderSize/2 && bytes.Count(msg, []byte("\n")) < MaxHeaderFields {
				t.Fatalf("refused a small header: %v", err)
			}
			return
		}
		var raw []byte
		for _, fl := range h.fields {
			raw = append(raw, fl.raw...)
			if !isFieldStart(fl.raw) {
				t.Fatalf("field %q does not start like one", fl.raw)
			}
		}
		rest, ok := bytes.CutPrefix(msg, raw)
		if !ok {
			t.Fatalf("fields %q are not a prefix of the input %q", raw, msg)
		}
		rest = bytes.TrimPrefix(rest, []byte("\r\n"))
		if !bytes.Equal(rest, body) {
			t.Fatalf("body %q, want %q", body, rest)
		}
		for _, name := range []string{"From", "Sender", "To"} {
			for _, v := range h.Values(name) {
				ParseAddressList(v)
			}
		}
	})
}

// FuzzAuthors: whatever the header, a message from alice that passes the authorship
// check has at most one From field with one address, and she owns every From and Sender
// address.
func FuzzAuthors(f *testing.F) {
	f.Add([]byte("From: Alice <alice@a.test>\r\nSender: sales@a.test\r\n\r\n"))
	f.Add([]byte("From: a@a.test, \"b\" <bob@a.test>\r\n\r\n"))
	fx := newFixture(f)
	alice := User(fx.alice, netip.MustParseAddr("192.0.2.1"))
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, msg []byte) {
		h, _, err := SplitHeader(msg)
		if err != nil {
			return
		}
		if fx.sub.checkAuthors(ctx, alice, h) != nil {
			return
		}
		froms := h.Values("From")
		if len(froms) > 1 {
			t.Fatalf("accepted %d From fields", len(froms))
		}
		for _, name := range []string{"From", "Sender"} {
			for _, v := range h.Values(name) {
				list, err := ParseAddressList(v)
				if err != nil {
					t.Fatalf("accepted an unparseable %s %q", name, v)
				}
				if name == "From" && len(list) != 1 {
					t.Fatalf("accepted From %q with %d addresses", v, len(list))
				}
				for _, a := range list {
					if err := fx.sub.Sender(ctx, alice, addr(t, a)); err != nil {
						t.Fatalf("accepted %s <%s>, which alice may not use: %v", name, a, err)
					}
					if !strings.Contains(a, "@") {
						t.Fatalf("accepted %s without a domain: %q", name, a)
					}
				}
			}
		}
	})
}
