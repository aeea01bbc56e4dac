package auth

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

func TestAuthResultsHeader(t *testing.T) {
	ip := netip.MustParseAddr("192.0.2.1")
	tests := []struct {
		name    string
		id      string
		methods []string
		want    string
	}{
		{"none", "mx.example.org", nil,
			"Authentication-Results: mx.example.org; none\r\n"},
		{"only empty methods", "mx.example.org", []string{"", " "},
			"Authentication-Results: mx.example.org; none\r\n"},
		{"one", "mx.example.org", []string{"spf=pass smtp.mailfrom=example.net"},
			"Authentication-Results: mx.example.org;\r\n\tspf=pass smtp.mailfrom=example.net\r\n"},
		{"all kinds", "mx.example.org", []string{
			IPRevResult{Result: "pass", Name: "mail.example.net"}.AuthResults(ip),
			SPFResult{Result: "pass", Domain: "example.net", Identity: "mailfrom"}.AuthResults(),
			DKIMResult{Result: "pass", Domain: "example.net", Selector: "s1", Algorithm: "rsa-sha256"}.AuthResults(),
			DMARCResult{Result: "pass", Domain: "example.net", Policy: "reject", Disposition: "none"}.AuthResults(),
		}, "Authentication-Results: mx.example.org;\r\n" +
			"\tiprev=pass policy.iprev=192.0.2.1 (mail.example.net);\r\n" +
			"\tspf=pass smtp.mailfrom=example.net;\r\n" +
			"\tdkim=pass header.d=example.net header.s=s1 header.a=rsa-sha256;\r\n" +
			"\tdmarc=pass (p=reject dis=none) header.from=example.net\r\n"},
		{"no header injection", "mx.example.org\r\nX-Evil: 1", []string{"spf=pass\r\nX-Evil: 2"},
			"Authentication-Results: \"mx.example.org  X-Evil: 1\";\r\n\tspf=pass  X-Evil: 2\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := AuthResultsHeader(tc.id, tc.methods...)
			if got != tc.want {
				t.Errorf("got\n%q\nwant\n%q", got, tc.want)
			}
			// What we write must be recognized as ours by StripAuthResults.
			msg := []byte(got + "Subject: x\r\n\r\nbody\r\n")
			if stripped := string(StripAuthResults(msg, strings.TrimSpace(arOneLine(tc.id)))); stripped != "Subject: x\r\n\r\nbody\r\n" {
				t.Errorf("StripAuthResults left %q", stripped)
			}
		})
	}
}

func TestStripAuthResults(t *testing.T) {
	const id = "mx.example.org"
	const unchanged = "\x00unchanged" // want: msg itself, the same slice
	tests := []struct {
		name      string
		msg, want string
	}{
		{
			name: "ours removed, others kept",
			msg: "Authentication-Results: mx.example.org; spf=pass smtp.mailfrom=a.test\r\n" +
				"Authentication-Results: other.example; dkim=pass header.d=a.test\r\n" +
				"Subject: hi\r\n\r\nbody\r\n",
			want: "Authentication-Results: other.example; dkim=pass header.d=a.test\r\n" +
				"Subject: hi\r\n\r\nbody\r\n",
		},
		{
			name: "folded, in the middle, several",
			msg: "Received: from a\r\n\tby b\r\n" +
				"Authentication-Results: mx.example.org;\r\n\tspf=pass smtp.mailfrom=a.test;\r\n  dkim=pass header.d=a.test\r\n" +
				"Subject: hi\r\n" +
				"Authentication-Results:\r\n mx.example.org; none\r\n" +
				"To: b@c.test\r\n\r\nbody\r\n",
			want: "Received: from a\r\n\tby b\r\nSubject: hi\r\nTo: b@c.test\r\n\r\nbody\r\n",
		},
		{
			name: "case-insensitive name and id",
			msg:  "authentication-results: MX.Example.ORG; dkim=pass\r\nAUTHENTICATION-RESULTS : mx.example.org;none\r\n\r\n",
			want: "\r\n",
		},
		{
			name: "version number, comments, quoted id, trailing dot",
			msg: "Authentication-Results: mx.example.org 1; spf=pass\r\n" +
				"Authentication-Results: (forged (nested)) mx.example.org (v1) 1 ; spf=pass\r\n" +
				"Authentication-Results: \"mx.example.org\"; spf=pass\r\n" +
				"Authentication-Results: mx.example.org.; spf=pass\r\n" +
				"Authentication-Results: mx.example.org(c);spf=pass\r\n" +
				"X: y\r\n\r\n",
			want: "X: y\r\n\r\n",
		},
		{
			name: "similar names and ids kept",
			msg: "Authentication-Results-Foo: mx.example.org; spf=pass\r\n" +
				"ARC-Authentication-Results: i=1; mx.example.org; spf=pass\r\n" +
				"X-Authentication-Results: mx.example.org; spf=pass\r\n" +
				"Authentication-Results: mx.example.org.evil; spf=pass\r\n" +
				"Authentication-Results: evil.mx.example.org; spf=pass\r\n" +
				"Authentication-Results: \"mx.example.org\\\"x\"; spf=pass\r\n" +
				"Authentication-Results: (mx.example.org) other; spf=pass\r\n" +
				"Authentication-Results: ; spf=pass\r\n" +
				"Authentication-Results: \"mx.example.org\r\n" +
				"Authentication-Results: (mx.example.org\r\n" +
				"Authentication-Results:\r\n" +
				"\r\n",
			want: unchanged,
		},
		{
			name: "header without body, no final line ending",
			msg:  "Subject: hi\r\nAuthentication-Results: mx.example.org; none",
			want: "Subject: hi\r\n",
		},
		{
			name: "header without body, folded last field",
			msg:  "Authentication-Results: mx.example.org;\r\n\tspf=pass\r\n",
			want: "",
		},
		{
			name: "body untouched",
			msg: "Subject: hi\r\n\r\n" +
				"Authentication-Results: mx.example.org; spf=pass\r\n",
			want: unchanged,
		},
		{
			name: "bare LF line endings",
			msg:  "Authentication-Results: mx.example.org;\n\tspf=pass\nSubject: hi\n\nAuthentication-Results: mx.example.org; x\n",
			want: "Subject: hi\n\nAuthentication-Results: mx.example.org; x\n",
		},
		{
			name: "leading continuation line and line without colon",
			msg:  " stray\r\nnot a field\r\nAuthentication-Results: mx.example.org; none\r\n\r\nb",
			want: " stray\r\nnot a field\r\n\r\nb",
		},
		{name: "empty message", msg: "", want: unchanged},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			msg := []byte(tc.msg)
			orig := bytes.Clone(msg)
			got := StripAuthResults(msg, id)
			want := tc.want
			if want == unchanged {
				want = tc.msg
				if len(msg) > 0 && (len(got) != len(msg) || &got[0] != &msg[0]) {
					t.Error("unchanged message not returned as the same slice")
				}
			}
			if string(got) != want {
				t.Errorf("got\n%q\nwant\n%q", got, want)
			}
			if !bytes.Equal(msg, orig) {
				t.Error("msg modified")
			}
		})
	}
}

// FuzzStripAuthResults checks StripAuthResults on arbitrary messages: it never panics,
// only removes whole fields from the header, leaves the body alone and is idempotent.
func FuzzStripAuthResults(f *testing.F) {
	f.Add([]byte("Authentication-Results: mx.example.org;\r\n\tspf=pass\r\nSubject: x\r\n\r\nbody\r\n"))
	f.Add([]byte("Authentication-Results: (c) \"mx.example.org\" 1; none\nA: b\n\nAuthentication-Results: mx.example.org; none\n"))
	f.Add([]byte(" \r\nAuthentication-Results:(\\"))
	f.Fuzz(func(t *testing.T, msg []byte) {
		orig := bytes.Clone(msg)
		got := StripAuthResults(msg, "mx.example.org")
		if !bytes.Equal(msg, orig) {
			t.Fatal("msg modified")
		}
		if len(got) > len(msg) {
			t.Fatal("output longer than input")
		}
		_, end := arScanHeader(msg)
		if !bytes.HasSuffix(got, msg[end:]) {
			t.Fatal("body changed")
		}
		if again := StripAuthResults(got, "mx.example.org"); !bytes.Equal(again, got) {
			t.Fatalf("not idempotent: %q -> %q -> %q", msg, got, again)
		}
	})
}
