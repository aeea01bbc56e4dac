package smtp

import "testing"

// FuzzParsePath checks that no input crashes the path parser, that limits hold, and that a
// parsed address formats to something that parses back to the same address.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"<a@b.example>", "<>", `<"x y"@z.example> SIZE=1`, "<@r.example:u@d.example>",
		"<u@[IPv6:::1]>", "<jörg@bücher.example>", "<a@@b>", "<\"\\", "<" + string([]byte{0xff}) + "@x>"} {
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, utf8 bool) {
		a, _, err := ParsePath(s, true, utf8)
		if err != nil || a.IsZero() {
			return
		}
		if len(a.Local) > MaxLocalPart || len(a.Domain) > MaxDomain {
			t.Fatalf("limits exceeded: %q", a)
		}
		b, _, err := ParsePath("<"+a.String()+">", false, true)
		if err != nil {
			t.Fatalf("String() of %q = %q does not parse: %v", s, a.String(), err)
		}
		if b != a {
			t.Fatalf("round trip %q -> %+v -> %+v", s, a, b)
		}
	})
}
