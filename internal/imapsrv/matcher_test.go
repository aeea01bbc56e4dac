package imapsrv

import (
	"fmt"
	"strings"
	"testing"
)

// The matcher answers, for each string, what strings.Contains(strings.ToLower(text),
// strings.ToLower(string)) would.
func TestMatcher(t *testing.T) {
	var many []string // more than 8 edges from one state: the binary-search path
	for c := 'a'; c <= 'z'; c++ {
		many = append(many, "q"+string(c)+"x")
	}
	tests := []struct {
		name  string
		pats  []string
		texts []string
	}{
		{"classic", []string{"he", "she", "his", "hers"}, []string{"ushers", "HIS", "h", "", "sHe said"}},
		{"nested suffixes", []string{"a", "aa", "aaa", "aaaa", "b"}, []string{"aaaaaaaaaa", "aAa", "ba", "c"}},
		{"failure links", []string{"abcd", "bcx", "cde"}, []string{"abcde", "abcx", "abcbcx", "xcdex"}},
		{"unicode", []string{"straße", "élan", "ǅ", "σ"}, []string{"STRAßE", "ÉLAN vital", "ǆ", "ΣΑΣ", "strasse"}},
		{"invalid utf-8", []string{"\xff", "a\xfeb", "\ufffd"}, []string{"x\xffy", "A\x80B", "plain", "\ufffd"}},
		{"many edges", many, []string{"qmx", "QZX and qax", "qq", "xqbxq"}},
		{"repeated", []string{"dup", "dup", "du"}, []string{"DUP", "du"}},
	}
	for _, tc := range tests {
		pats := make([]string, len(tc.pats))
		for i, p := range tc.pats {
			pats[i] = strings.ToLower(p)
		}
		m := newMatcher(pats)
		for _, text := range tc.texts {
			for _, asBytes := range []bool{false, true} {
				hits := newBitset(len(pats) + 3)
				m.reset()
				if asBytes {
					m.scanBytes([]byte(text), hits, 3)
				} else {
					m.scanString(text, hits, 3)
				}
				for i, p := range pats {
					want := strings.Contains(strings.ToLower(text), p)
					if got := hits.has(3 + i); got != want {
						t.Errorf("%s: %q in %q (bytes %v) = %v, want %v", tc.name, p, text, asBytes, got, want)
					}
				}
				for i := range 3 {
					if hits.has(i) {
						t.Errorf("%s: bit %d below base set", tc.name, i)
					}
				}
			}
		}
	}
}

// Strings never match across two scans of the same message, but what one scan found is
// kept: the reporting of states already seen is skipped, not their results.
func TestMatcherSegments(t *testing.T) {
	m := newMatcher([]string{"ab", "b"})
	hits := newBitset(2)
	m.reset()
	m.scanString("a", hits, 0)
	m.scanString("b", hits, 0)
	if hits.has(0) || !hits.has(1) {
		t.Errorf("across segments: ab=%v b=%v, want false true", hits.has(0), hits.has(1))
	}
	m.scanString("xab", hits, 0)
	if !hits.has(0) {
		t.Error("ab not found in a later segment")
	}
}

func BenchmarkMatcher(b *testing.B) {
	var pats []string
	for i := range 1000 {
		pats = append(pats, fmt.Sprintf("word%d", i))
	}
	m := newMatcher(pats)
	text := []byte(strings.Repeat("The quick brown fox jumps over the lazy dog; wordy words. ", 200))
	hits := newBitset(len(pats))
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		m.reset()
		m.scanBytes(text, hits, 0)
	}
}
