package imapsrv

import (
	"slices"
	"unicode"
	"unicode/utf8"
)

// matcher finds which of a set of lowercased strings occur in a text, case-insensitively,
// in one pass over the text (Aho-Corasick), so that a SEARCH with a thousand TEXT keys
// scans each text once instead of a thousand times. The text is lowercased rune by
// rune as it is read, the way strings.ToLower would (invalid UTF-8 becomes U+FFFD), so
// nothing is allocated per text.
//
// States are stored sparsely (a sorted edge list each, the root as a 256-entry table), so
// memory is proportional to the total length of the strings, whatever bytes they contain.
// A matcher belongs to one SEARCH command and is used from one goroutine: it keeps the
// set of states already reported for the current message (see reset).
type matcher struct {
	root [256]int32 // the root's transitions; 0 = stay at the root
	next [][]edge   // other states' transitions, sorted by byte
	fail []int32    // longest proper suffix of a state that is also a state
	out  []int32    // first state on the failure chain (self included) where strings end; 0 = none
	dict []int32    // for such a state: the next one on its failure chain; 0 = none
	ends [][]int32  // strings ending at a state (indexes into the strings given to newMatcher)
	seen bitset     // states whose strings were reported for the current message
}

type edge struct {
	b  byte
	to int32
}

// newMatcher builds a matcher for pats, which must be lowercased and not empty.
func newMatcher(pats []string) *matcher {
	m := &matcher{next: [][]edge{nil}, fail: []int32{0}, out: []int32{0}, dict: []int32{0}, ends: [][]int32{nil}}
	trie := make(map[int64]int32) // state<<8 | byte -> state, while building
	for i, p := range pats {
		s := int32(0)
		for j := 0; j < len(p); j++ {
			k := int64(s)<<8 | int64(p[j])
			t, ok := trie[k]
			if !ok {
				t = m.newState(s, p[j])
				trie[k] = t
			}
			s = t
		}
		m.ends[s] = append(m.ends[s], int32(i))
	}
	for _, es := range m.next {
		slices.SortFunc(es, func(a, b edge) int { return int(a.b) - int(b.b) })
	}
	// Breadth first, so that every state's failure target (shallower) is complete.
	var queue []int32
	for _, t := range m.root {
		if t != 0 {
			queue = append(queue, t)
		}
	}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		f := m.fail[s]
		m.dict[s] = m.out[f]
		m.out[s] = m.out[f]
		if len(m.ends[s]) > 0 {
			m.out[s] = s
		}
		for _, e := range m.next[s] {
			m.fail[e.to] = m.step(f, e.b)
			queue = append(queue, e.to)
		}
	}
	m.seen = newBitset(len(m.next))
	return m
}

func (m *matcher) newState(parent int32, b byte) int32 {
	t := int32(len(m.next))
	m.next = append(m.next, nil)
	m.fail = append(m.fail, 0)
	m.out = append(m.out, 0)
	m.dict = append(m.dict, 0)
	m.ends = append(m.ends, nil)
	if parent == 0 {
		m.root[b] = t
	} else {
		m.next[parent] = append(m.next[parent], edge{b, t})
	}
	return t
}

// child is the transition from s on b, or 0 if there is none.
func (m *matcher) child(s int32, b byte) int32 {
	if s == 0 {
		return m.root[b]
	}
	es := m.next[s]
	if len(es) <= 8 {
		for _, e := range es {
			if e.b == b {
				return e.to
			}
		}
		return 0
	}
	i, ok := slices.BinarySearchFunc(es, b, func(e edge, b byte) int { return int(e.b) - int(b) })
	if !ok {
		return 0
	}
	return es[i].to
}

// step is the transition of the automaton from s on b, following failure links.
func (m *matcher) step(s int32, b byte) int32 {
	for s != 0 {
		if t := m.child(s, b); t != 0 {
			return t
		}
		s = m.fail[s]
	}
	return m.root[b]
}

// reset forgets what was reported, before the first text of a message.
func (m *matcher) reset() { m.seen.clear() }

// feed advances from state s on byte b and records in hits, at base+index, every string
// that ends there.
func (m *matcher) feed(s int32, b byte, hits bitset, base int) int32 {
	if s == 0 {
		s = m.root[b]
	} else {
		s = m.step(s, b)
	}
	if m.out[s] != 0 {
		m.report(s, hits, base)
	}
	return s
}

// report records the strings ending at s and along its failure chain. A state's chain is
// walked once per message (seen), so reporting costs at most one visit per state however
// often the strings occur.
func (m *matcher) report(s int32, hits bitset, base int) {
	for o := m.out[s]; o != 0 && !m.seen.has(int(o)); o = m.dict[o] {
		m.seen.set(int(o))
		for _, p := range m.ends[o] {
			hits.set(base + int(p))
		}
	}
}

func (m *matcher) feedRune(s int32, r rune, hits bitset, base int) int32 {
	var buf [utf8.UTFMax]byte
	n := utf8.EncodeRune(buf[:], unicode.ToLower(r))
	for _, b := range buf[:n] {
		s = m.feed(s, b, hits, base)
	}
	return s
}

// scanString records in hits which strings occur in the lowercased s. Strings never
// match across two calls.
func (m *matcher) scanString(s string, hits bitset, base int) {
	st := int32(0)
	for _, r := range s { // invalid UTF-8 yields utf8.RuneError, as in strings.ToLower
		if r < utf8.RuneSelf {
			st = m.feed(st, lowerASCII[r], hits, base)
		} else {
			st = m.feedRune(st, r, hits, base)
		}
	}
}

// scanBytes is scanString for a byte slice.
func (m *matcher) scanBytes(b []byte, hits bitset, base int) {
	st := int32(0)
	for i := 0; i < len(b); {
		if c := b[i]; c < utf8.RuneSelf {
			st = m.feed(st, lowerASCII[c], hits, base)
			i++
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		st = m.feedRune(st, r, hits, base)
		i += n
	}
}

// lowerASCII maps A-Z to a-z and every other byte to itself.
var lowerASCII = func() (t [256]byte) {
	for i := range t {
		t[i] = byte(i)
		if 'A' <= i && i <= 'Z' {
			t[i] += 'a' - 'A'
		}
	}
	return t
}()

// bitset is a set of small non-negative integers.
type bitset []uint64

func newBitset(n int) bitset { return make(bitset, (n+63)/64) }

func (s bitset) set(i int)      { s[i/64] |= 1 << (i % 64) }
func (s bitset) has(i int) bool { return s[i/64]&(1<<(i%64)) != 0 }
func (s bitset) clear()         { clear(s) }
