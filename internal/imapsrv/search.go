package imapsrv

import (
	"fmt"
	"net/textproto"
	"slices"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"

	"github.com/repute-mail/repute/internal/mailstore"
	"github.com/repute-mail/repute/internal/store"
)

// Search implements SEARCH and UID SEARCH (RFC 9051 §6.4.4) with ESEARCH return options
// and SEARCHRES (RFC 5182). Criteria on flags, dates, sizes and numbers use only metadata;
// a message's body is read and parsed at most once, when a header, sent-date, BODY or TEXT
// key first reaches it, and every key of the criteria is answered from that one parse.
// Criteria beyond the limits below are refused with NO [LIMIT] (RFC 5530) before any
// message is read.
func (s *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	s.active()
	v := s.view
	q, err := newQuery(criteria, v.Len(), v.MaxUID(), s.saved)
	if err != nil {
		s.logger().Warn("imap search refused", "err", err)
		return nil, err
	}
	q.body = func(m store.Message) ([]byte, error) { return v.Body(s.ctx, m) }
	defer func() { s.srv.searchParses.Add(int64(q.parses)) }()
	var all []msgRef
	v.Each(func(seq, uid uint32) bool {
		all = append(all, msgRef{seq, uid})
		return true
	})
	var seqs, uids []uint32
	for len(all) > 0 {
		n := min(len(all), chunk)
		msgs, err := v.Messages(s.ctx, uidsOf(all[:n]))
		if err != nil {
			return nil, s.imapError("search", err, false)
		}
		for i := range msgs {
			c := &candidate{seq: v.Seq(msgs[i].UID), msg: &msgs[i]}
			ok := c.seq != 0 && q.match(c)
			if c.err != nil {
				return nil, s.imapError("search", c.err, false)
			}
			if !ok {
				continue
			}
			seqs, uids = append(seqs, c.seq), append(uids, msgs[i].UID)
		}
		all = all[n:]
	}
	data := &imap.SearchData{Count: uint32(len(uids))}
	nums := seqs
	if kind == imapserver.NumKindUID {
		nums = uids
		data.All = uidSet(uids)
	} else {
		data.All = seqSet(seqs)
	}
	if len(nums) > 0 {
		data.Min, data.Max = nums[0], nums[len(nums)-1]
	}
	if options.ReturnSave {
		s.saved = uids
	}
	return data, nil
}

// Limits of one SEARCH. go-imap's parser bounds the command before it reaches Search: at
// most 50 KiB outside literals, each literal at most 4,096 bytes (so a few thousand
// literals, about 14 MiB, at the very most), parentheses nested at most 1,000 deep; NOT and
// OR nesting is bounded only by the 50 KiB. These limits bound what the criteria may ask:
// with them a SEARCH costs one parse and one pass of each string set over each message
// it reaches, plus a walk of at most maxSearchKeys keys per message.
const (
	maxSearchKeys  = 1000     // search keys, counting every NOT and OR as one
	maxSearchDepth = 64       // nesting of NOT and OR; a chain OR a OR b c is one level
	maxSearchText  = 64 << 10 // bytes of all TEXT, BODY and HEADER strings and field names
)

func limitError(format string, args ...any) *imap.Error {
	return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeLimit, Text: fmt.Sprintf(format, args...)}
}

// query is a SEARCH criteria compiled for evaluation: number sets resolved against the
// client's view, chains of OR flattened, and the strings of TEXT, BODY and HEADER keys
// gathered, deduplicated and lowercased, into one matcher per place they are looked for.
type query struct {
	root     *node
	scopes   []scope // scopeText, scopeBody, then one per header field name
	needDate bool    // some key compares the Date field
	body     func(store.Message) ([]byte, error)
	hits     bitset // strings found in the message last parsed, at scope base + index
	parses   int    // messages read and parsed
}

// scope is the set of strings looked for in one place of a message.
type scope struct {
	field string   // the canonical field name, for a HEADER scope
	pats  []string // lowercased and distinct
	index map[string]int
	base  int // position of pats[0] in query.hits
	m     *matcher
}

const (
	scopeText  = iota // TEXT: every header field of every part, and the body
	scopeBody         // BODY: the text of the body
	scopeField        // first HEADER scope
)

// node is one criteria of the tree: all its keys must hold.
type node struct {
	c       *imap.SearchCriteria // flags, dates and sizes are read from it
	seqs    []ranges
	uids    []ranges
	present []string // header fields that must exist (HEADER with an empty string)
	strs    []strRef // strings that must occur
	content bool     // some key of the node needs the message itself
	not     []*node
	or      [][]*node // for each OR (or chain of ORs): at least one must hold
}

type strRef struct{ scope, pat int }

// builder compiles criteria into a query, counting keys, depth and string bytes.
type builder struct {
	q           *query
	maxSeq      uint32
	maxUID      uint32
	saved       []uint32
	savedRanges ranges // of saved, resolved on the first "$"
	savedDone   bool
	keys, text  int
	fields      map[string]int // field name -> scope
}

func newQuery(c *imap.SearchCriteria, maxSeq, maxUID uint32, saved []uint32) (*query, error) {
	q := &query{scopes: make([]scope, scopeField)}
	b := &builder{q: q, maxSeq: maxSeq, maxUID: maxUID, saved: saved}
	root, err := b.build(c, 0)
	if err != nil {
		return nil, err
	}
	q.root = root
	n := 0
	for i := range q.scopes {
		sc := &q.scopes[i]
		sc.base, sc.index = n, nil
		n += len(sc.pats)
		if len(sc.pats) > 0 {
			sc.m = newMatcher(sc.pats)
		}
	}
	q.hits = newBitset(n)
	return q, nil
}

func (b *builder) build(c *imap.SearchCriteria, depth int) (*node, error) {
	if depth > maxSearchDepth {
		return nil, limitError("SEARCH criteria nested more than %d deep", maxSearchDepth)
	}
	if err := b.count(keysOf(c)); err != nil {
		return nil, err
	}
	n := &node{c: c}
	for _, set := range c.SeqNum {
		n.seqs = append(n.seqs, staticRanges(set, b.maxSeq))
	}
	for _, set := range c.UID {
		if imap.IsSearchRes(set) {
			if !b.savedDone {
				b.savedRanges, b.savedDone = rangesOf(b.saved), true
			}
			n.uids = append(n.uids, b.savedRanges)
		} else {
			n.uids = append(n.uids, staticRanges(set, b.maxUID))
		}
	}
	for _, h := range c.Header {
		if err := b.addText(len(h.Key) + len(h.Value)); err != nil {
			return nil, err
		}
		key := textproto.CanonicalMIMEHeaderKey(h.Key)
		if h.Value == "" {
			n.present = append(n.present, key) // RFC 9051 §6.4.4: any message with the field
			continue
		}
		n.strs = append(n.strs, b.str(b.field(key), h.Value))
	}
	for _, strs := range []struct {
		scope int
		list  []string
	}{{scopeBody, c.Body}, {scopeText, c.Text}} {
		for _, s := range strs.list {
			if err := b.addText(len(s)); err != nil {
				return nil, err
			}
			if s != "" { // the empty string is in every message
				n.strs = append(n.strs, b.str(strs.scope, s))
			}
		}
	}
	sentDate := !c.SentSince.IsZero() || !c.SentBefore.IsZero()
	b.q.needDate = b.q.needDate || sentDate
	n.content = sentDate || len(n.present) > 0 || len(n.strs) > 0
	for i := range c.Not {
		not, err := b.build(&c.Not[i], depth+1)
		if err != nil {
			return nil, err
		}
		n.not = append(n.not, not)
	}
	for i := range c.Or {
		alts, err := b.alternatives(&c.Or[i], depth+1)
		if err != nil {
			return nil, err
		}
		n.or = append(n.or, alts)
	}
	return n, nil
}

// alternatives compiles the operands of an OR. An operand that is itself nothing but an
// OR adds its operands to the same list, without recursion: "OR a OR b OR c d", as
// clients write a long disjunction, is one level of nesting however long it is.
func (b *builder) alternatives(pair *[2]imap.SearchCriteria, depth int) ([]*node, error) {
	var alts []*node
	todo := []*imap.SearchCriteria{&pair[1], &pair[0]}
	for len(todo) > 0 {
		c := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if onlyOr(c) {
			if err := b.count(1); err != nil {
				return nil, err
			}
			todo = append(todo, &c.Or[0][1], &c.Or[0][0])
			continue
		}
		n, err := b.build(c, depth)
		if err != nil {
			return nil, err
		}
		alts = append(alts, n)
	}
	return alts, nil
}

// keysOf counts the search keys of c itself, not those inside its NOT and OR keys.
// SINCE, ON and BEFORE (and their SENT forms) were merged by the parser into one range.
func keysOf(c *imap.SearchCriteria) int {
	n := len(c.SeqNum) + len(c.UID) + len(c.Header) + len(c.Body) + len(c.Text) +
		len(c.Flag) + len(c.NotFlag) + len(c.Not) + len(c.Or)
	for _, t := range []time.Time{c.Since, c.Before, c.SentSince, c.SentBefore} {
		if !t.IsZero() {
			n++
		}
	}
	if c.Larger > 0 {
		n++
	}
	if c.Smaller > 0 {
		n++
	}
	return n
}

func onlyOr(c *imap.SearchCriteria) bool {
	return len(c.Or) == 1 && keysOf(c) == 1 && c.ModSeq == nil
}

func (b *builder) count(keys int) error {
	if b.keys += keys; b.keys > maxSearchKeys {
		return limitError("SEARCH has more than %d keys", maxSearchKeys)
	}
	return nil
}

func (b *builder) addText(n int) error {
	if b.text += n; b.text > maxSearchText {
		return limitError("SEARCH strings exceed %d KiB", maxSearchText>>10)
	}
	return nil
}

// field returns the scope of a header field name, canonical as go-message stores it.
func (b *builder) field(key string) int {
	if i, ok := b.fields[key]; ok {
		return i
	}
	if b.fields == nil {
		b.fields = make(map[string]int)
	}
	b.q.scopes = append(b.q.scopes, scope{field: key})
	b.fields[key] = len(b.q.scopes) - 1
	return len(b.q.scopes) - 1
}

// str adds s, lowercased, to a scope's strings once and refers to it.
func (b *builder) str(k int, s string) strRef {
	sc := &b.q.scopes[k]
	low := strings.ToLower(s)
	i, ok := sc.index[low]
	if !ok {
		if sc.index == nil {
			sc.index = make(map[string]int)
		}
		i = len(sc.pats)
		sc.pats = append(sc.pats, low)
		sc.index[low] = i
	}
	return strRef{k, i}
}

// candidate is one message under test.
type candidate struct {
	seq     uint32
	msg     *store.Message
	parsed  bool
	err     error
	header  gomessage.Header // the top-level header (as much as could be read)
	date    time.Time
	dateErr error
}

func (q *query) match(c *candidate) bool { return q.matchNode(q.root, c) }

// matchNode evaluates a node, cheapest keys first.
func (q *query) matchNode(n *node, c *candidate) bool {
	cr := n.c
	for _, r := range n.seqs {
		if !r.contains(c.seq) {
			return false
		}
	}
	for _, r := range n.uids {
		if !r.contains(c.msg.UID) {
			return false
		}
	}
	if !matchDate(c.msg.InternalDate, cr.Since, cr.Before) {
		return false
	}
	for _, f := range cr.Flag {
		if !mailstore.HasFlag(c.msg.Flags, string(f)) {
			return false
		}
	}
	for _, f := range cr.NotFlag {
		if mailstore.HasFlag(c.msg.Flags, string(f)) {
			return false
		}
	}
	if cr.Larger > 0 && c.msg.Size <= cr.Larger || cr.Smaller > 0 && c.msg.Size >= cr.Smaller {
		return false
	}
	return q.matchContent(n, c) && q.matchNested(n, c)
}

func (q *query) matchNested(n *node, c *candidate) bool {
	for _, not := range n.not {
		if q.matchNode(not, c) {
			return false
		}
	}
	for _, alts := range n.or {
		if !slices.ContainsFunc(alts, func(a *node) bool { return q.matchNode(a, c) }) {
			return false
		}
	}
	return true
}

func (q *query) matchContent(n *node, c *candidate) bool {
	if !n.content {
		return true
	}
	if q.parse(c); c.err != nil {
		return false
	}
	for _, f := range n.present {
		if !c.header.Has(f) {
			return false
		}
	}
	if !n.c.SentSince.IsZero() || !n.c.SentBefore.IsZero() {
		if c.dateErr != nil || !matchDate(c.date, n.c.SentSince, n.c.SentBefore) {
			return false
		}
	}
	for _, r := range n.strs {
		if !q.hits.has(q.scopes[r.scope].base + r.pat) {
			return false
		}
	}
	return true
}

// matchDate compares dates only, disregarding time and time zone (RFC 9051 §6.4.4).
func matchDate(t, since, before time.Time) bool {
	if since.IsZero() && before.IsZero() {
		return true
	}
	d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if !since.IsZero() && d.Before(since) {
		return false
	}
	return before.IsZero() || d.Before(before)
}
