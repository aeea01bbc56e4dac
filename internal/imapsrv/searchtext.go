package imapsrv

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"

	gomessage "github.com/emersion/go-message"
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"

	"github.com/repute-mail/repute/internal/store"
)

// maxPartDepth bounds the nesting of multipart bodies that TEXT and BODY look into.
const maxPartDepth = 20

// parse reads c and parses it, once, the first time a key needs its content, and looks
// for every string of the query in it: afterwards q.hits says which strings occur where.
// A message expunged meanwhile has no content and matches no content key. A message
// whose header cannot be parsed is searched as raw bytes by TEXT and BODY.
func (q *query) parse(c *candidate) {
	if c.parsed {
		return
	}
	c.parsed = true
	q.parses++
	raw, err := q.body(*c.msg)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		c.err = err
		return
	}
	q.hits.clear()
	for i := range q.scopes {
		if m := q.scopes[i].m; m != nil {
			m.reset()
		}
	}
	br := bufio.NewReader(bytes.NewReader(raw))
	h, herr := textproto.ReadHeader(br)
	c.header = gomessage.Header{Header: h}
	if q.needDate {
		c.date, c.dateErr = (&mail.Header{Header: c.header}).Date()
	}
	q.scanFields(c.header)
	text, body := q.scopes[scopeText].m, q.scopes[scopeBody].m
	if text == nil && body == nil {
		return
	}
	if herr != nil {
		q.scanBody(raw)
		return
	}
	// An unknown charset or transfer encoding leaves that part undecoded; it is still searched.
	e, _ := gomessage.New(c.header, br)
	q.walk(e, 0)
}

// scanFields looks for the strings of each HEADER scope in the decoded and the raw values
// of its field.
func (q *query) scanFields(h gomessage.Header) {
	for i := scopeField; i < len(q.scopes); i++ {
		sc := &q.scopes[i]
		for f := h.FieldsByKey(sc.field); f.Next(); {
			if v, err := f.Text(); err == nil {
				sc.m.scanString(v, q.hits, sc.base)
			}
			sc.m.scanString(f.Value(), q.hits, sc.base)
		}
	}
}

// walk looks for the TEXT strings in the header fields of e and of every part below it,
// and for the TEXT and BODY strings in the decoded text of its text and message parts.
func (q *query) walk(e *gomessage.Entity, depth int) {
	if sc := &q.scopes[scopeText]; sc.m != nil {
		for f := e.Header.Fields(); f.Next(); {
			v, err := f.Text()
			if err != nil {
				v = f.Value()
			}
			sc.m.scanString(v, q.hits, sc.base)
		}
	}
	if mr := e.MultipartReader(); mr != nil {
		if depth >= maxPartDepth {
			return
		}
		for {
			p, err := mr.NextPart()
			if err != nil && p == nil {
				return
			}
			q.walk(p, depth+1)
		}
	}
	t, _, _ := e.Header.ContentType()
	if t != "" && !strings.HasPrefix(t, "text/") && !strings.HasPrefix(t, "message/") {
		return
	}
	b, _ := io.ReadAll(e.Body)
	q.scanBody(b)
}

// scanBody looks for the TEXT and BODY strings in b.
func (q *query) scanBody(b []byte) {
	for _, k := range []int{scopeText, scopeBody} {
		if sc := &q.scopes[k]; sc.m != nil {
			sc.m.scanBytes(b, q.hits, sc.base)
		}
	}
}
