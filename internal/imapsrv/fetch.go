package imapsrv

import (
	"bufio"
	"bytes"
	"errors"
	"io"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-message/textproto"

	"github.com/repute-mail/repute/internal/mailstore"
	"github.com/repute-mail/repute/internal/store"
)

// chunk bounds how many messages' metadata a FETCH or SEARCH holds at once.
const chunk = 256

// Fetch implements FETCH and UID FETCH (RFC 9051 §6.4.5). Metadata comes from the messages
// table in chunks; a body is read, one message at a time, only when an item needs it. A
// BODY[...] fetch without .PEEK sets \Seen, durably, unless the mailbox is read-only.
func (s *session) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	s.active()
	refs := s.resolve(numSet)
	markSeen := false
	if !s.view.ReadOnly() {
		for _, bs := range options.BodySection {
			markSeen = markSeen || !bs.Peek
		}
		for _, bs := range options.BinarySection {
			markSeen = markSeen || !bs.Peek
		}
	}
	for len(refs) > 0 {
		n := min(len(refs), chunk)
		if err := s.fetchChunk(w, refs[:n], options, markSeen); err != nil {
			return err
		}
		refs = refs[n:]
	}
	return nil
}

func (s *session) fetchChunk(w *imapserver.FetchWriter, refs []msgRef, options *imap.FetchOptions, markSeen bool) error {
	msgs, err := s.view.Messages(s.ctx, uidsOf(refs))
	if err != nil {
		return s.imapError("fetch", err, false)
	}
	byUID := make(map[uint32]*store.Message, len(msgs))
	var unseen []uint32
	for i := range msgs {
		byUID[msgs[i].UID] = &msgs[i]
		if markSeen && !mailstore.HasFlag(msgs[i].Flags, mailstore.FlagSeen) {
			unseen = append(unseen, msgs[i].UID)
		}
	}
	seenNow := make(map[uint32]bool, len(unseen))
	if len(unseen) > 0 {
		changes, err := s.view.Store(s.ctx, unseen, store.FlagsAdd, []string{mailstore.FlagSeen})
		if err != nil {
			return s.imapError("fetch", err, false)
		}
		for _, c := range changes {
			if m := byUID[c.UID]; m != nil && c.Changed {
				m.Flags = c.Flags
				seenNow[c.UID] = true
			}
		}
	}
	for _, r := range refs {
		m := byUID[r.uid]
		if m == nil {
			continue // expunged by another session; the client hears of it at the next poll
		}
		if err := s.fetchOne(w, r.seq, m, options, seenNow[r.uid]); err != nil {
			return err
		}
	}
	return nil
}

func needsBody(o *imap.FetchOptions) bool {
	return o.Envelope || o.BodyStructure != nil || len(o.BodySection) > 0 ||
		len(o.BinarySection) > 0 || len(o.BinarySectionSize) > 0
}

// fetchOne writes one FETCH response. Everything that can fail is read before the response
// starts: once started, imapserver holds the connection's writer until it is closed.
func (s *session) fetchOne(w *imapserver.FetchWriter, seq uint32, m *store.Message, o *imap.FetchOptions, flagsChanged bool) error {
	var body []byte
	if needsBody(o) {
		var err error
		if body, err = s.view.Body(s.ctx, *m); errors.Is(err, store.ErrNotFound) {
			return nil
		} else if err != nil {
			return s.imapError("fetch", err, false)
		}
	}
	sections := make([][]byte, len(o.BodySection))
	for i, bs := range o.BodySection {
		sections[i] = bodySection(body, bs)
	}
	binaries := make([][]byte, len(o.BinarySection))
	for i, bs := range o.BinarySection {
		binaries[i] = imapserver.ExtractBinarySection(bytes.NewReader(body), bs)
	}

	rw := w.CreateMessage(seq)
	rw.WriteUID(imap.UID(m.UID))
	if o.Flags || flagsChanged {
		rw.WriteFlags(toFlags(m.Flags))
	}
	if o.InternalDate {
		rw.WriteInternalDate(m.InternalDate)
	}
	if o.RFC822Size {
		rw.WriteRFC822Size(m.Size)
	}
	if o.Envelope {
		rw.WriteEnvelope(envelope(body))
	}
	if o.BodyStructure != nil {
		rw.WriteBodyStructure(imapserver.ExtractBodyStructure(bytes.NewReader(body)))
	}
	var err error
	for i, bs := range o.BodySection {
		if err == nil {
			err = writeLiteral(rw.WriteBodySection(bs, int64(len(sections[i]))), sections[i])
		}
	}
	for i, bs := range o.BinarySection {
		if err == nil {
			err = writeLiteral(rw.WriteBinarySection(bs, int64(len(binaries[i]))), binaries[i])
		}
	}
	for _, bss := range o.BinarySectionSize {
		if err == nil {
			rw.WriteBinarySectionSize(bss, imapserver.ExtractBinarySectionSize(bytes.NewReader(body), bss))
		}
	}
	if cerr := rw.Close(); err == nil {
		err = cerr
	}
	return err
}

func writeLiteral(wc io.WriteCloser, data []byte) error {
	_, err := wc.Write(data)
	if cerr := wc.Close(); err == nil {
		err = cerr
	}
	return err
}

// bodySection extracts a BODY[...] section. The whole message is returned as stored:
// re-parsing it would lose a message without a header/body separator.
func bodySection(body []byte, bs *imap.FetchItemBodySection) []byte {
	if bs.Specifier == imap.PartSpecifierNone && len(bs.Part) == 0 {
		return partial(body, bs.Partial)
	}
	return imapserver.ExtractBodySection(bytes.NewReader(body), bs)
}

func partial(b []byte, p *imap.SectionPartial) []byte {
	if p == nil {
		return b
	}
	if p.Offset >= int64(len(b)) || p.Offset < 0 {
		return nil
	}
	end := min(p.Offset+p.Size, int64(len(b)))
	return b[p.Offset:end]
}

func envelope(body []byte) *imap.Envelope {
	// A malformed header still yields the fields read before the error.
	h, _ := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(body)))
	return imapserver.ExtractEnvelope(h)
}
