package imapsrv

import (
	"testing"

	"github.com/emersion/go-imap/v2"
)

func TestStaticRanges(t *testing.T) {
	star := uint32(0)
	tests := []struct {
		name string
		set  imap.NumSet
		max  uint32
		in   []uint32
		out  []uint32
	}{
		{"single", imap.SeqSetNum(2), 5, []uint32{2}, []uint32{1, 3}},
		{"star is the last", imap.SeqSet{{Start: star, Stop: star}}, 5, []uint32{5}, []uint32{4, 6}},
		{"n:*", imap.SeqSet{{Start: 3, Stop: star}}, 5, []uint32{3, 4, 5}, []uint32{2, 6}},
		{"n:* past the end holds the last", imap.UIDSet{{Start: 10, Stop: 0}}, 7, []uint32{7, 8, 10}, []uint32{6, 11}},
		{"reversed", imap.UIDSet{{Start: 9, Stop: 4}}, 20, []uint32{4, 9}, []uint32{3, 10}},
		{"merged", imap.SeqSet{{Start: 1, Stop: 3}, {Start: 2, Stop: 6}, {Start: 8, Stop: 8}}, 9, []uint32{1, 6, 8}, []uint32{7, 9}},
		{"empty mailbox", imap.SeqSet{{Start: star, Stop: star}}, 0, nil, []uint32{1}},
	}
	for _, tc := range tests {
		r := staticRanges(tc.set, tc.max)
		for _, n := range tc.in {
			if !r.contains(n) {
				t.Errorf("%s: %v does not contain %d", tc.name, r, n)
			}
		}
		for _, n := range tc.out {
			if r.contains(n) {
				t.Errorf("%s: %v contains %d", tc.name, r, n)
			}
		}
	}
	if got := uidSet([]uint32{1, 2, 3, 7, 9, 10}).String(); got != "1:3,7,9:10" {
		t.Errorf("uidSet = %s", got)
	}
}

func FuzzRanges(f *testing.F) {
	f.Add(uint32(1), uint32(5), uint32(7), uint32(0), uint32(9), uint32(4))
	f.Add(uint32(0), uint32(0), uint32(3), uint32(3), uint32(0), uint32(2))
	f.Fuzz(func(t *testing.T, a, b, c, d, max, probe uint32) {
		set := imap.UIDSet{{Start: imap.UID(a), Stop: imap.UID(b)}, {Start: imap.UID(c), Stop: imap.UID(d)}}
		r := staticRanges(set, max)
		naive := false
		for _, p := range [][2]uint32{{a, b}, {c, d}} {
			lo, hi := p[0], p[1]
			if lo == 0 {
				lo = max
			}
			if hi == 0 {
				hi = max
			}
			if lo > hi {
				lo, hi = hi, lo
			}
			naive = naive || (probe >= lo && probe <= hi && hi != 0)
		}
		if r.contains(probe) != naive {
			t.Errorf("set %v max %d: contains(%d) = %v, want %v (%v)", set, max, probe, r.contains(probe), naive, r)
		}
	})
}
