package verp

import (
	"context"
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

func TestTagger(t *testing.T) {
	tg := &Tagger{Key: []byte("k"), IsLocal: func(_ context.Context, d string) (bool, error) { return d == "a.test", nil }}
	tagged := tg.Tag("alice@A.test", "06h3aiun5kvhg2ga")
	if from, id, ok := Decode([]byte("k"), tagged); !ok || from != "alice@A.test" || id != "06h3aiun5kvhg2ga" {
		t.Errorf("our domain: %q decodes to %q %q %v", tagged, from, id, ok)
	}
	for _, from := range []string{"bob@remote.test", "", "postmaster"} {
		if got := tg.Tag(from, "06h3aiun5kvhg2ga"); got != from {
			t.Errorf("Tag(%q) = %q, want it unchanged", from, got)
		}
	}
}
