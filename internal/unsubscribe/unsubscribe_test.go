package unsubscribe

import (
	"strings"
	"testing"
)

func TestToken(t *testing.T) {
	key := []byte("secret")
	tok := Token(key, "A.test", "Bob@Remote.test")
	d, r, err := Parse(key, tok)
	if err != nil || d != "a.test" || r != "bob@remote.test" {
		t.Fatalf("Parse(Token) = %q %q %v", d, r, err)
	}
	enc, sum, _ := strings.Cut(tok, ".")
	other := Token(key, "a.test", "carol@remote.test")
	oenc, _, _ := strings.Cut(other, ".")
	for _, bad := range []string{"", "x", enc, enc + ".", oenc + "." + sum, tok + "x", strings.Repeat("a", 2000)} {
		if _, _, err := Parse(key, bad); err == nil {
			t.Errorf("Parse(%.40q) verified", bad)
		}
	}
	if _, _, err := Parse([]byte("other"), tok); err == nil {
		t.Error("verified under another key")
	}
}

func TestFieldsAndBulk(t *testing.T) {
	f := Fields([]byte("k"), "https://mx.a.test/", "news@a.test", "bob@remote.test")
	tok := Token([]byte("k"), "a.test", "bob@remote.test")
	if !strings.HasPrefix(f, "List-Unsubscribe: <https://mx.a.test/unsubscribe/"+tok+">,\r\n <mailto:news+unsubscribe@a.test?subject=unsubscribe%20"+tok+">") ||
		!strings.HasSuffix(f, ">\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n") {
		t.Errorf("Fields = %q", f)
	}
	if s, ok := IsMailtoAddress("News+Unsubscribe@a.test"); !ok || s != "News@a.test" {
		t.Errorf("IsMailtoAddress = %q %v", s, ok)
	}
	for _, a := range []string{"news@a.test", "+unsubscribe@a.test", "x"} {
		if _, ok := IsMailtoAddress(a); ok {
			t.Errorf("IsMailtoAddress(%q) matched", a)
		}
	}
	if got := SubjectToken("Re: UNSUBSCRIBE  " + tok); got != tok {
		t.Errorf("SubjectToken = %q", got)
	}
	tests := []struct {
		header string
		bulk   bool
	}{
		{"Subject: hi\r\nPrecedence: bulk\r\n\r\n", true},
		{"Subject: hi\r\nPrecedence:\r\n list\r\n\r\nPrecedence: bulk\r\n", true},
		{"List-Id: News <news.a.test>\r\n\r\n", true},
		{"Subject: hi\r\n\r\nPrecedence: bulk\r\n", false}, // in the body
		{"Subject: hi\r\nPrecedence: first-class\r\n\r\n", false},
	}
	for _, tt := range tests {
		if got := IsBulk([]byte(tt.header)); got != tt.bulk {
			t.Errorf("IsBulk(%q) = %v", tt.header, got)
		}
	}
	if !HasField([]byte("list-unsubscribe: <x>\r\n\r\n"), "List-Unsubscribe") || HasField([]byte("Subject: x\r\n\r\nList-Unsubscribe: y\r\n"), "List-Unsubscribe") {
		t.Error("HasField")
	}
}
