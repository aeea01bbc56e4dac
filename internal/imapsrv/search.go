package imapsrv

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/repute-mail/repute/internal/mailstore"
	"github.com/repute-mail/repute/internal/store"
)

// Search implements SEARCH and UID SEARCH (RFC 9051 §6.4.4) with ESEARCH return options
// and SEARCHRES (RFC 5182). Criteria on flags, dates, sizes and numbers use only metadata;
// a message's body is read only when a header, sent-date, BODY or TEXT criterion reaches it.
func (s *session) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	s.active()
	v := s.view
	q := s.compile(criteria, v.Len(), v.MaxUID())
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
			c := &candidate{seq: v.Seq(msgs[i].UID), msg: &msgs[i], s: s}
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

// query is a SEARCH criteria with its number sets resolved against the client's view.
type query struct {
	c    *imap.SearchCriteria
	seqs []ranges
	uids []ranges
	not  []*query
	or   [][2]*query
}

func (s *session) compile(c *imap.SearchCriteria, maxSeq, maxUID uint32) *query {
	q := &query{c: c}
	for _, set := range c.SeqNum {
		q.seqs = append(q.seqs, staticRanges(set, maxSeq))
	}
	for _, set := range c.UID {
		if imap.IsSearchRes(set) {
			q.uids = append(q.uids, rangesOf(s.saved))
		} else {
			q.uids = append(q.uids, staticRanges(set, maxUID))
		}
	}
	for i := range c.Not {
		q.not = append(q.not, s.compile(&c.Not[i], maxSeq, maxUID))
	}
	for i := range c.Or {
		q.or = append(q.or, [2]*query{s.compile(&c.Or[i][0], maxSeq, maxUID), s.compile(&c.Or[i][1], maxSeq, maxUID)})
	}
	return q
}

// candidate is one message under test; its body is read at most once, on first need.
type candidate struct {
	seq    uint32
	msg    *store.Message
	s      *session
	body   []byte
	loaded bool
	err    error
	header *mail.Header
}

func (c *candidate) content() []byte {
	if !c.loaded {
		c.loaded = true
		c.body, c.err = c.s.view.Body(c.s.ctx, *c.msg)
		if errors.Is(c.err, store.ErrNotFound) {
			c.err = nil // expunged meanwhile: it simply matches nothing in its body
		}
	}
	return c.body
}

func (c *candidate) mailHeader() *mail.Header {
	if c.header == nil {
		h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(c.content())))
		c.header = &mail.Header{Header: gomessage.Header{Header: h}}
	}
	return c.header
}

// match evaluates the criteria, cheapest first.
func (q *query) match(c *candidate) bool {
	cr := q.c
	for _, r := range q.seqs {
		if !r.contains(c.seq) {
			return false
		}
	}
	for _, r := range q.uids {
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
	return q.matchContent(c) && q.matchNested(c)
}

func (q *query) matchNested(c *candidate) bool {
	for _, n := range q.not {
		if n.match(c) {
			return false
		}
	}
	for _, or := range q.or {
		if !or[0].match(c) && !or[1].match(c) {
			return false
		}
	}
	return true
}

func (q *query) matchContent(c *candidate) bool {
	cr := q.c
	for _, f := range cr.Header {
		if !matchHeader(c.mailHeader(), f.Key, f.Value) {
			return false
		}
	}
	if !cr.SentSince.IsZero() || !cr.SentBefore.IsZero() {
		t, err := c.mailHeader().Date()
		if err != nil || !matchDate(t, cr.SentSince, cr.SentBefore) {
			return false
		}
	}
	for _, b := range cr.Body {
		if !matchText(c.content(), b, false) {
			return false
		}
	}
	for _, t := range cr.Text {
		if !matchText(c.content(), t, true) {
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

func containsFold(s, lowerNeedle string) bool {
	return strings.Contains(strings.ToLower(s), lowerNeedle)
}

// matchHeader: an empty value matches any message with the field (RFC 9051 §6.4.4 HEADER).
func matchHeader(h *mail.Header, key, value string) bool {
	fields := h.FieldsByKey(key)
	if value == "" {
		return fields.Len() > 0
	}
	needle := strings.ToLower(value)
	for fields.Next() {
		v, err := fields.Text()
		if err != nil {
			v = fields.Value()
		}
		if containsFold(v, needle) || containsFold(fields.Value(), needle) {
			return true
		}
	}
	return false
}

// matchText looks for needle in the decoded text parts of a message (BODY), and in its
// header fields too (TEXT). A message that cannot be parsed is searched as raw bytes.
func matchText(body []byte, needle string, withHeader bool) bool {
	if needle == "" {
		return true
	}
	needle = strings.ToLower(needle)
	e, err := gomessage.Read(bytes.NewReader(body))
	if e == nil || err != nil && !gomessage.IsUnknownCharset(err) && !gomessage.IsUnknownEncoding(err) {
		return containsFold(string(body), needle)
	}
	return matchEntity(e, needle, withHeader, 0)
}

const maxPartDepth = 20

func matchEntity(e *gomessage.Entity, needle string, withHeader bool, depth int) bool {
	if withHeader {
		for f := e.Header.Fields(); f.Next(); {
			v, err := f.Text()
			if err != nil {
				v = f.Value()
			}
			if containsFold(v, needle) {
				return true
			}
		}
	}
	if mr := e.MultipartReader(); mr != nil {
		if depth >= maxPartDepth {
			return false
		}
		for {
			p, err := mr.NextPart()
			if err != nil && p == nil {
				return false
			}
			if matchEntity(p, needle, withHeader, depth+1) {
				return true
			}
		}
	}
	t, _, _ := e.Header.ContentType()
	if t != "" && !strings.HasPrefix(t, "text/") && !strings.HasPrefix(t, "message/") {
		return false
	}
	b, _ := io.ReadAll(e.Body)
	return containsFold(string(b), needle)
}
