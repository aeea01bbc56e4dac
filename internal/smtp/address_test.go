package smtp

import (
	"errors"
	"strings"
	"testing"
)

func TestParsePath(t *testing.T) {
	tests := []struct {
		in        string
		null      bool
		utf8      bool
		want      string // Key(); "" with ok for the null path
		rest      string
		wantError bool
	}{
		{in: "<alice@example.org>", want: "alice@example.org"},
		{in: "<Alice@EXAMPLE.org> SIZE=100 BODY=8BITMIME", want: "alice@example.org", rest: "SIZE=100 BODY=8BITMIME"},
		{in: "<>", null: true, want: ""},
		{in: "<>", null: false, wantError: true},
		{in: "alice@example.org", want: "alice@example.org"},
		{in: "<@relay.example,@b.example:bob@example.org>", want: "bob@example.org"},
		{in: `<"john doe"@example.org>`, want: "john doe@example.org"},
		{in: `<"a\"b"@example.org>`, want: `a"b@example.org`},
		{in: "<user@[192.0.2.1]>", want: "user@[192.0.2.1]"},
		{in: "<user@[IPv6:2001:db8::1]>", want: "user@[IPv6:2001:db8::1]"},
		{in: "<jörg@bücher.example>", utf8: true, want: "jörg@xn--bcher-kva.example"},
		{in: "<jörg@example.org>", utf8: false, wantError: true},
		{in: "<a@@b>", wantError: true},
		{in: "<a@>", wantError: true},
		{in: "<@b.example>", wantError: true},
		{in: "<a..b@example.org>", wantError: true},
		{in: "<.a@example.org>", wantError: true},
		{in: "<a b@example.org>", wantError: true},
		{in: "<a@-bad.example>", wantError: true},
		{in: "<a@exa mple.org>", wantError: true},
		{in: "<a@example.org", wantError: true},
		{in: "<" + strings.Repeat("a", 65) + "@example.org>", wantError: true},
		{in: "<a@" + strings.Repeat("b", 64) + ".org>", wantError: true},
		{in: "<a@[300.1.1.1]>", wantError: true},
		{in: "", wantError: true},
		{in: "<\"unterminated@example.org>", wantError: true},
	}
	for _, tc := range tests {
		a, rest, err := ParsePath(tc.in, tc.null, tc.utf8)
		if tc.wantError {
			if err == nil {
				t.Errorf("ParsePath(%q) = %+v, want error", tc.in, a)
			} else if !errors.Is(err, ErrBadAddress) {
				t.Errorf("ParsePath(%q) error %v does not wrap ErrBadAddress", tc.in, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParsePath(%q): %v", tc.in, err)
			continue
		}
		if a.Key() != tc.want || rest != tc.rest {
			t.Errorf("ParsePath(%q) = %q rest %q, want %q rest %q", tc.in, a.Key(), rest, tc.want, tc.rest)
		}
	}
}

func TestAddressStringQuotes(t *testing.T) {
	for _, tc := range []struct{ local, want string }{
		{"alice", "alice@x.test"},
		{"john doe", `"john doe"@x.test`},
		{`a"b`, `"a\"b"@x.test`},
		{"a..b", `"a..b"@x.test`},
	} {
		if got := (Address{Local: tc.local, Domain: "x.test"}).String(); got != tc.want {
			t.Errorf("String(%q) = %q, want %q", tc.local, got, tc.want)
		}
	}
}

func TestReplyLines(t *testing.T) {
	r := Errorf(550, "5.7.1", "first\nsecond")
	got := strings.Join(r.Lines(), "|")
	if got != "550-5.7.1 first|550 5.7.1 second" {
		t.Errorf("Lines = %q", got)
	}
	if ReplyFor(errors.New("disk on fire")).Code != 451 {
		t.Error("unknown errors must become 451")
	}
	if ReplyFor(Wrap(452, "4.3.1", "full", errors.New("x"))).Code != 452 {
		t.Error("a wrapped Reply must be kept")
	}
}
