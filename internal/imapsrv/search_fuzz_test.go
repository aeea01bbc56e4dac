package imapsrv

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/repute-mail/repute/internal/mailstore"
	"github.com/repute-mail/repute/internal/store"
)

// The criteria come from the client and the messages from anyone: FuzzSearch builds a
// criteria tree from the first input and evaluates it against the second (and two fixed
// messages). The compiled query must refuse exactly the criteria over a limit, never
// panic, parse each message at most once, and agree with refMatch, a direct evaluation
// that re-reads the message for every key (the implementation before the single parse).
func FuzzSearch(f *testing.F) {
	f.Add([]byte("\x01\x03ab\x03\x02xy"), []byte(fuzzPlain))
	f.Add([]byte("\x0b\x01\x02ca\x00\x01\x01Q\x00\x0a\x02\x02ok"), []byte(fuzzMultipart))
	f.Add([]byte("\x0d\xff\x00"), []byte("Subject: x\r\n\r\nbody"))
	f.Add([]byte("\x0e\x41\x01\x01z"), []byte("no header at all"))
	f.Add([]byte("\x0c\x7d"), []byte(fuzzPlain))
	f.Add([]byte("\x0f\x81"), []byte(fuzzPlain))
	f.Add([]byte("\x03\x01\x00\x06\x01\x09\x03\x04\x05"), []byte(fuzzPlain))
	f.Fuzz(func(t *testing.T, program, message []byte) {
		g := &critGen{data: program}
		crit := g.criteria(0)
		saved := []uint32{2, 3}
		msgs := []refMsg{
			{seq: 1, msg: store.Message{UID: 2, Flags: []string{`\Seen`}, InternalDate: time.Date(2024, 3, 4, 5, 0, 0, 0, time.UTC), Size: int64(len(message))}, raw: message},
			{seq: 2, msg: store.Message{UID: 3, Flags: []string{"$Work"}, InternalDate: time.Date(2024, 5, 6, 0, 0, 0, 0, time.UTC), Size: int64(len(fuzzPlain))}, raw: []byte(fuzzPlain)},
			{seq: 3, msg: store.Message{UID: 7, InternalDate: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), Size: int64(len(fuzzMultipart))}, raw: []byte(fuzzMultipart)},
		}
		q, err := newQuery(&crit, 3, 7, saved)
		keys, depth, text := refLimits(&crit)
		over := keys > maxSearchKeys || depth > maxSearchDepth || text > maxSearchText
		if err != nil {
			if !over || imapCode(err) != imap.ResponseCodeLimit {
				t.Fatalf("refused (keys %d, depth %d, text %d): %v", keys, depth, text, err)
			}
			return
		}
		if over {
			t.Fatalf("accepted keys %d, depth %d, text %d", keys, depth, text)
		}
		bodies := map[uint32][]byte{}
		for _, m := range msgs {
			bodies[m.msg.UID] = m.raw
		}
		q.body = func(m store.Message) ([]byte, error) { return bodies[m.UID], nil }
		for _, m := range msgs {
			c := &candidate{seq: m.seq, msg: &m.msg}
			got := q.match(c)
			if c.err != nil {
				t.Fatal(c.err)
			}
			if want := refMatch(&crit, &m, 3, 7, saved); got != want {
				t.Errorf("message %d: match = %v, want %v\ncriteria %+v\nmessage %q", m.seq, got, want, crit, m.raw)
			}
		}
		if q.parses > len(msgs) {
			t.Errorf("%d parses for %d messages", q.parses, len(msgs))
		}
	})
}

const fuzzPlain = "From: Bob <bob@example.org>\r\nSubject: =?utf-8?q?Caf=C3=A9?= ok\r\nDate: Mon, 06 May 2024 10:00:00 +0000\r\n\r\nThe Quick brown FOX, naïve\r\n"

const fuzzMultipart = "From: Ann <ann@example.net>\r\nSubject: parts\r\nMIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=b1\r\n\r\n" +
	"--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\nc2VjcmV0IHdvcmQ=\r\n" +
	"--b1\r\nContent-Type: application/octet-stream\r\nX-Part: hidden\r\n\r\nbinary zzz\r\n" +
	"--b1\r\nContent-Type: text/html; charset=x-unknown\r\n\r\n<p>Hello ABC</p>\r\n--b1--\r\n"

// critGen makes a criteria tree from bytes. Its own recursion is bounded; the long
// chains that test the limits are built iteratively.
type critGen struct {
	data  []byte
	nodes int
}

func (g *critGen) next() (byte, bool) {
	if len(g.data) == 0 {
		return 0, false
	}
	b := g.data[0]
	g.data = g.data[1:]
	return b, true
}

func (g *critGen) num() int {
	b, _ := g.next()
	return int(b)
}

var fuzzAlphabet = []string{"a", "B", "c", "q", "o", "k", "é", "Ï", "\xff", " ", "=", "z", "x", "é", "ß", "S"}

func (g *critGen) str() string {
	n := g.num() % 6
	var sb strings.Builder
	for range n {
		sb.WriteString(fuzzAlphabet[g.num()%len(fuzzAlphabet)])
	}
	return sb.String()
}

var fuzzFields = []string{"Subject", "from", "X-PART", "Content-Type", "date", "To", ""}

func (g *critGen) criteria(depth int) imap.SearchCriteria {
	var c imap.SearchCriteria
	for g.nodes < 5000 {
		op, ok := g.next()
		if !ok || op%16 == 0 {
			break
		}
		g.nodes++
		day := func() time.Time { return time.Date(2024, time.Month(1+g.num()%14), 1+g.num()%28, 0, 0, 0, 0, time.UTC) }
		switch op % 16 {
		case 1:
			c.Text = append(c.Text, g.str())
		case 2:
			c.Body = append(c.Body, g.str())
		case 3:
			c.Header = append(c.Header, imap.SearchCriteriaHeaderField{Key: fuzzFields[g.num()%len(fuzzFields)], Value: g.str()})
		case 4:
			c.Flag = append(c.Flag, []imap.Flag{imap.FlagSeen, "$work", imap.FlagDeleted}[g.num()%3])
		case 5:
			c.NotFlag = append(c.NotFlag, []imap.Flag{imap.FlagSeen, "$WORK"}[g.num()%2])
		case 6:
			switch g.num() % 4 {
			case 0:
				c.Since = day()
			case 1:
				c.Before = day()
			case 2:
				c.SentSince = day()
			default:
				c.SentBefore = day()
			}
		case 7:
			if n := int64(g.num() * 4); g.num()%2 == 0 {
				c.Larger = n
			} else {
				c.Smaller = n
			}
		case 8:
			c.SeqNum = append(c.SeqNum, imap.SeqSet{{Start: uint32(g.num() % 4), Stop: uint32(g.num() % 4)}})
		case 9:
			if g.num()%3 == 0 {
				c.UID = append(c.UID, imap.SearchRes())
			} else {
				c.UID = append(c.UID, imap.UIDSet{{Start: imap.UID(g.num() % 9), Stop: imap.UID(g.num() % 9)}})
			}
		case 10:
			if depth < 80 {
				c.Not = append(c.Not, g.criteria(depth+1))
			}
		case 11:
			if depth < 80 {
				c.Or = append(c.Or, [2]imap.SearchCriteria{g.criteria(depth + 1), g.criteria(depth + 1)})
			}
		case 12: // many keys at one level
			n, s := g.num()*8, g.str()
			for range n {
				c.Text = append(c.Text, s)
			}
		case 13: // a chain OR TEXT s OR TEXT s ... TEXT s, right or left nested
			n, left, s := g.num()*8, g.num()%2 == 0, g.str()
			chain := imap.SearchCriteria{Text: []string{s}}
			for range n {
				leaf := imap.SearchCriteria{Text: []string{s + "x"}}
				if left {
					chain = imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{chain, leaf}}}
				} else {
					chain = imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{leaf, chain}}}
				}
			}
			c.And(&chain)
		case 14: // NOT NOT ... NOT
			n := g.num()
			inner := g.criteria(depth + 80) // no further nesting inside
			for range n {
				inner = imap.SearchCriteria{Not: []imap.SearchCriteria{inner}}
			}
			c.And(&inner)
		case 15: // a long string
			c.Body = append(c.Body, strings.Repeat("x", g.num()*512))
		}
	}
	return c
}

// refLimits measures criteria as the limits define them, independently of the builder:
// every key counts (each NOT and OR too), an OR operand that is only an OR continues its
// parent's list, and the strings' bytes add up.
func refLimits(c *imap.SearchCriteria) (keys, depth, text int) {
	keys = len(c.SeqNum) + len(c.UID) + len(c.Flag) + len(c.NotFlag) + len(c.Not) + len(c.Or)
	for _, h := range c.Header {
		keys++
		text += len(h.Key) + len(h.Value)
	}
	for _, s := range append(append([]string(nil), c.Body...), c.Text...) {
		keys++
		text += len(s)
	}
	for _, set := range []bool{!c.Since.IsZero(), !c.Before.IsZero(), !c.SentSince.IsZero(), !c.SentBefore.IsZero(), c.Larger > 0, c.Smaller > 0} {
		if set {
			keys++
		}
	}
	var sub []*imap.SearchCriteria
	for i := range c.Not {
		sub = append(sub, &c.Not[i])
	}
	for i := range c.Or {
		sub = append(sub, refAlternatives(&c.Or[i][0], &keys)...)
		sub = append(sub, refAlternatives(&c.Or[i][1], &keys)...)
	}
	for _, s := range sub {
		k, d, tx := refLimits(s)
		keys, text, depth = keys+k, text+tx, max(depth, d+1)
	}
	return keys, depth, text
}

func refAlternatives(c *imap.SearchCriteria, keys *int) []*imap.SearchCriteria {
	if len(c.Or) != 1 || len(c.SeqNum)+len(c.UID)+len(c.Flag)+len(c.NotFlag)+len(c.Not)+len(c.Header)+len(c.Body)+len(c.Text) > 0 ||
		!c.Since.IsZero() || !c.Before.IsZero() || !c.SentSince.IsZero() || !c.SentBefore.IsZero() || c.Larger > 0 || c.Smaller > 0 {
		return []*imap.SearchCriteria{c}
	}
	*keys++
	return append(refAlternatives(&c.Or[0][0], keys), refAlternatives(&c.Or[0][1], keys)...)
}

type refMsg struct {
	seq uint32
	msg store.Message
	raw []byte
}

// refMatch evaluates criteria directly: every content key parses the message again.
func refMatch(c *imap.SearchCriteria, m *refMsg, maxSeq, maxUID uint32, saved []uint32) bool {
	for _, set := range c.SeqNum {
		if !staticRanges(set, maxSeq).contains(m.seq) {
			return false
		}
	}
	for _, set := range c.UID {
		r := staticRanges(set, maxUID)
		if imap.IsSearchRes(set) {
			r = rangesOf(saved)
		}
		if !r.contains(m.msg.UID) {
			return false
		}
	}
	if !matchDate(m.msg.InternalDate, c.Since, c.Before) {
		return false
	}
	for _, f := range c.Flag {
		if !mailstore.HasFlag(m.msg.Flags, string(f)) {
			return false
		}
	}
	for _, f := range c.NotFlag {
		if mailstore.HasFlag(m.msg.Flags, string(f)) {
			return false
		}
	}
	if c.Larger > 0 && m.msg.Size <= c.Larger || c.Smaller > 0 && m.msg.Size >= c.Smaller {
		return false
	}
	header := func() *mail.Header {
		h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(m.raw)))
		return &mail.Header{Header: gomessage.Header{Header: h}}
	}
	for _, f := range c.Header {
		if !refHeader(header(), f.Key, f.Value) {
			return false
		}
	}
	if !c.SentSince.IsZero() || !c.SentBefore.IsZero() {
		t, err := header().Date()
		if err != nil || !matchDate(t, c.SentSince, c.SentBefore) {
			return false
		}
	}
	for _, b := range c.Body {
		if !refText(m.raw, b, false) {
			return false
		}
	}
	for _, s := range c.Text {
		if !refText(m.raw, s, true) {
			return false
		}
	}
	for i := range c.Not {
		if refMatch(&c.Not[i], m, maxSeq, maxUID, saved) {
			return false
		}
	}
	for i := range c.Or {
		if !refMatch(&c.Or[i][0], m, maxSeq, maxUID, saved) && !refMatch(&c.Or[i][1], m, maxSeq, maxUID, saved) {
			return false
		}
	}
	return true
}

func containsFold(s, lowerNeedle string) bool {
	return strings.Contains(strings.ToLower(s), lowerNeedle)
}

func refHeader(h *mail.Header, key, value string) bool {
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

func refText(body []byte, needle string, withHeader bool) bool {
	if needle == "" {
		return true
	}
	needle = strings.ToLower(needle)
	e, err := gomessage.Read(bytes.NewReader(body))
	if e == nil || err != nil && !gomessage.IsUnknownCharset(err) && !gomessage.IsUnknownEncoding(err) {
		return containsFold(string(body), needle)
	}
	return refEntity(e, needle, withHeader, 0)
}

func refEntity(e *gomessage.Entity, needle string, withHeader bool, depth int) bool {
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
			if refEntity(p, needle, withHeader, depth+1) {
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

// The fixed messages of the fuzz target behave as the reference says on a few keys,
// so that the reference itself is known to read them as intended.
func TestSearchReference(t *testing.T) {
	m := &refMsg{seq: 1, msg: store.Message{UID: 1}, raw: []byte(fuzzMultipart)}
	for _, tc := range []struct {
		c    imap.SearchCriteria
		want bool
	}{
		{imap.SearchCriteria{Body: []string{"SECRET word"}}, true},
		{imap.SearchCriteria{Body: []string{"zzz"}}, false},
		{imap.SearchCriteria{Text: []string{"hidden"}}, true},
		{imap.SearchCriteria{Text: []string{"hello abc"}}, true},
		{imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "x-part"}}}, false},
	} {
		if got := refMatch(&tc.c, m, 1, 1, nil); got != tc.want {
			t.Errorf("%+v = %v, want %v", tc.c, got, tc.want)
		}
		q, err := newQuery(&tc.c, 1, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		q.body = func(store.Message) ([]byte, error) { return m.raw, nil }
		if got := q.match(&candidate{seq: 1, msg: &m.msg}); got != tc.want {
			t.Errorf("query %+v = %v, want %v", tc.c, got, tc.want)
		}
	}
}
