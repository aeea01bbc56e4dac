package verp

import (
	"strings"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	tagged := Encode(key, "alice@a.test", "06h0ci1j2h83d91c")
	if !strings.HasPrefix(tagged, "alice+rb-06h0ci1j2h83d91c-") || !strings.HasSuffix(tagged, "@a.test") {
		t.Fatalf("Encode = %q", tagged)
	}
	for _, addr := range []string{tagged, strings.ToUpper(tagged)} {
		from, id, ok := Decode(key, addr)
		if !ok || !strings.EqualFold(from, "alice@a.test") || id != "06h0ci1j2h83d91c" {
			t.Errorf("Decode(%q) = %q %q %v", addr, from, id, ok)
		}
	}
	bad := []string{
		"alice@a.test",                                                     // no tag
		"alice+rb-06h0ci1j2h83d91c@a.test",                                 // no MAC
		strings.Replace(tagged, "alice", "mallory", 1),                     // other sender
		strings.Replace(tagged, "06h0ci1j2h83d91c", "06h0ci1j2h83d91d", 1), // other message
		strings.Replace(tagged, "@a.test", "@b.test", 1),                   // other domain
		"+rb-x-y@a.test", "@", "",
	}
	for _, addr := range bad {
		if _, _, ok := Decode(key, addr); ok {
			t.Errorf("Decode(%q) verified", addr)
		}
	}
	if _, _, ok := Decode([]byte("another key"), tagged); ok {
		t.Error("a tag verified under another key")
	}
}

func TestEncodeLeavesUntaggable(t *testing.T) {
	key := []byte("k")
	for _, from := range []string{"", "nodomain", "@a.test", strings.Repeat("x", 50) + "@a.test", "a+rb-x-y@a.test"} {
		if got := Encode(key, from, "06h0ci1j2h83d91c"); got != from {
			t.Errorf("Encode(%q) = %q, want it unchanged", from, got)
		}
	}
	if got := Encode(key, "a@a.test", "Bad ID"); got != "a@a.test" {
		t.Errorf("bad id: %q", got)
	}
}
