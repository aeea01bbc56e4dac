package imapsrv

import (
	"slices"
	"sort"

	"github.com/emersion/go-imap/v2"
)

// rng is an inclusive range of sequence numbers or UIDs.
type rng struct{ lo, hi uint32 }

// ranges is a sorted set of disjoint ranges with "*" already resolved.
type ranges []rng

// staticRanges resolves a sequence set or UID set against a mailbox whose largest sequence
// number or UID is max: "*" is max, and "n:*" with n above max is max:n, so that it still
// contains the last message (RFC 9051 §9, seq-range).
func staticRanges(set imap.NumSet, max uint32) ranges {
	var raw []rng
	switch set := set.(type) {
	case imap.SeqSet:
		for _, r := range set {
			raw = append(raw, rng{r.Start, r.Stop})
		}
	case imap.UIDSet:
		for _, r := range set {
			raw = append(raw, rng{uint32(r.Start), uint32(r.Stop)})
		}
	}
	for i := range raw {
		if raw[i].lo == 0 {
			raw[i].lo = max
		}
		if raw[i].hi == 0 {
			raw[i].hi = max
		}
		if raw[i].lo > raw[i].hi {
			raw[i].lo, raw[i].hi = raw[i].hi, raw[i].lo
		}
	}
	return normalize(raw)
}

// rangesOf makes ranges from a list of numbers.
func rangesOf(nums []uint32) ranges {
	raw := make([]rng, len(nums))
	for i, n := range nums {
		raw[i] = rng{n, n}
	}
	return normalize(raw)
}

func normalize(raw []rng) ranges {
	slices.SortFunc(raw, func(a, b rng) int {
		switch {
		case a.lo < b.lo:
			return -1
		case a.lo > b.lo:
			return 1
		}
		return 0
	})
	var out ranges
	for _, r := range raw {
		if r.lo == 0 && r.hi == 0 {
			continue // "*" in an empty mailbox
		}
		if n := len(out); n > 0 && uint64(r.lo) <= uint64(out[n-1].hi)+1 {
			out[n-1].hi = max(out[n-1].hi, r.hi)
			continue
		}
		out = append(out, r)
	}
	return out
}

func (rs ranges) contains(n uint32) bool {
	i := sort.Search(len(rs), func(i int) bool { return rs[i].hi >= n })
	return i < len(rs) && rs[i].lo <= n
}

// uidSet turns a sorted list of UIDs into a UIDSet for COPYUID, SEARCH and ESEARCH.
func uidSet(uids []uint32) imap.UIDSet {
	var set imap.UIDSet
	for _, r := range rangesOf(uids) {
		set = append(set, imap.UIDRange{Start: imap.UID(r.lo), Stop: imap.UID(r.hi)})
	}
	return set
}

func seqSet(seqs []uint32) imap.SeqSet {
	var set imap.SeqSet
	for _, r := range rangesOf(seqs) {
		set = append(set, imap.SeqRange{Start: r.lo, Stop: r.hi})
	}
	return set
}
