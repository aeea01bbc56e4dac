package imapsrv

import (
	"errors"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/repute-mail/repute/internal/mailstore"
	"github.com/repute-mail/repute/internal/store"
)

// msgRef is a message of the client's view.
type msgRef struct{ seq, uid uint32 }

// resolve lists the messages of the client's view that set names, in sequence order.
// Numbers the client does not know (expunged elsewhere, or not yet announced) are skipped.
func (s *session) resolve(set imap.NumSet) []msgRef {
	v := s.view
	var r ranges
	byUID := false
	switch set := set.(type) {
	case imap.SeqSet:
		r = staticRanges(set, v.Len())
	case imap.UIDSet:
		byUID = true
		if imap.IsSearchRes(set) {
			r = rangesOf(s.saved)
		} else {
			r = staticRanges(set, v.MaxUID())
		}
	}
	var out []msgRef
	if len(r) == 0 {
		return nil
	}
	v.Each(func(seq, uid uint32) bool {
		n := seq
		if byUID {
			n = uid
		}
		if r.contains(n) {
			out = append(out, msgRef{seq, uid})
		}
		return true
	})
	return out
}

func uidsOf(refs []msgRef) []uint32 {
	out := make([]uint32, len(refs))
	for i, r := range refs {
		out[i] = r.uid
	}
	return out
}

// Expunge implements EXPUNGE, UID EXPUNGE (RFC 4315) and the expunge of CLOSE. The
// EXPUNGE responses go out through Poll, which imapserver runs right after. In a read-only
// mailbox, or one deleted meanwhile, there is nothing to expunge: CLOSE must still succeed
// there (RFC 9051 §6.4.1).
func (s *session) Expunge(_ *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	s.active()
	if s.view.ReadOnly() {
		return nil
	}
	var list []uint32
	if uids != nil {
		list = uidsOf(s.resolve(*uids))
		if list == nil {
			return nil
		}
	}
	gone, err := s.view.Expunge(s.ctx, list)
	if errors.Is(err, mailstore.ErrMailboxGone) {
		return nil
	}
	if err != nil {
		return s.imapError("expunge", err, false)
	}
	if len(gone) > 0 {
		s.logger().Debug("imap expunge", "mailbox", s.view.Mailbox().Name, "messages", len(gone))
	}
	return nil
}

// Store implements STORE and UID STORE (RFC 9051 §6.4.6). Other sessions learn of the
// change through their polls; this one gets the new flags now unless .SILENT.
func (s *session) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, _ *imap.StoreOptions) error {
	s.active()
	refs := s.resolve(numSet)
	if len(refs) == 0 {
		return nil
	}
	var op store.FlagOp
	switch flags.Op {
	case imap.StoreFlagsAdd:
		op = store.FlagsAdd
	case imap.StoreFlagsDel:
		op = store.FlagsRemove
	default:
		op = store.FlagsReplace
	}
	changes, err := s.view.Store(s.ctx, uidsOf(refs), op, fromFlags(flags.Flags))
	if err != nil {
		return s.imapError("store", err, false)
	}
	if flags.Silent {
		return nil
	}
	byUID := make(map[uint32][]string, len(changes))
	for _, c := range changes {
		byUID[c.UID] = c.Flags
	}
	for _, r := range refs {
		f, ok := byUID[r.uid]
		if !ok {
			continue // expunged elsewhere
		}
		rw := w.CreateMessage(r.seq)
		rw.WriteUID(imap.UID(r.uid))
		rw.WriteFlags(toFlags(f))
		if err := rw.Close(); err != nil {
			return err
		}
	}
	return nil
}

// Copy implements COPY and UID COPY with COPYUID (RFC 4315).
func (s *session) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	s.active()
	refs := s.resolve(numSet)
	res, err := s.view.Copy(s.ctx, uidsOf(refs), dest)
	if err != nil {
		return nil, s.imapError("copy", err, true)
	}
	if len(res.SourceUIDs) == 0 {
		return nil, nil
	}
	return &imap.CopyData{UIDValidity: res.UIDValidity, SourceUIDs: uidSet(res.SourceUIDs), DestUIDs: uidSet(res.DestUIDs)}, nil
}

// Move implements MOVE and UID MOVE (RFC 6851): COPYUID now, the EXPUNGE responses through
// the Poll that follows.
func (s *session) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	s.active()
	refs := s.resolve(numSet)
	res, err := s.view.Move(s.ctx, uidsOf(refs), dest)
	if err != nil {
		return s.imapError("move", err, true)
	}
	if len(res.SourceUIDs) == 0 {
		return nil
	}
	return w.WriteCopyData(&imap.CopyData{UIDValidity: res.UIDValidity, SourceUIDs: uidSet(res.SourceUIDs), DestUIDs: uidSet(res.DestUIDs)})
}
