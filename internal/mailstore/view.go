package mailstore

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/repute-mail/repute/internal/store"
)

type eventKind uint8

const (
	evExists  eventKind = iota + 1 // uids were added (ascending)
	evExpunge                      // uids were removed
	evFlags                        // the flags of uids changed
	evGone                         // the mailbox was deleted
)

// event is a committed change to a mailbox, by UID, waiting for a View to apply it.
type event struct {
	kind eventKind
	uids []uint32
}

// UpdateKind says what an Update reports.
type UpdateKind int

// The untagged responses a session sends for changes made elsewhere (RFC 9051 §7.4).
const (
	UpdateExists  UpdateKind = iota + 1 // "* n EXISTS"; Count is n
	UpdateExpunge                       // "* n EXPUNGE"; Seq is n
	UpdateFlags                         // "* n FETCH (UID u FLAGS (...))"
)

// Update is one change for a client, numbered against that client's view.
type Update struct {
	Kind  UpdateKind
	Count uint32 // UpdateExists
	Seq   uint32 // UpdateExpunge, UpdateFlags
	UID   uint32 // UpdateFlags
	Flags []string
}

// View is one session's view of a selected mailbox: the UIDs its client knows, in
// sequence-number order, and the changes it has not been told of yet. A View's methods
// must be called from one session at a time (IDLE may run Sync on another goroutine while
// the session waits).
type View struct {
	m        *Mailstore
	sh       *shared
	mailbox  store.Mailbox
	readOnly bool
	notify   chan struct{}

	mu     sync.Mutex
	uids   []uint32 // ascending; UID of sequence number i is uids[i-1]
	queue  []event
	gone   bool
	closed bool
}

// Select opens a mailbox for a session (SELECT, or EXAMINE when readOnly). Close the View
// when the session leaves the mailbox.
func (m *Mailstore) Select(ctx context.Context, userID int64, name string, readOnly bool) (*View, error) {
	mb, err := m.Mailbox(ctx, userID, name)
	if err != nil {
		return nil, err
	}
	v := &View{m: m, readOnly: readOnly, notify: make(chan struct{}, 1)}
	// Register before reading, so that no change committed after the read is missed;
	// events about changes the read already saw are ignored when applied.
	v.sh = m.register(v, mb.ID)
	sh := v.sh
	sh.syncMu.Lock()
	defer sh.syncMu.Unlock()
	uids, err := m.db.MessageUIDs(ctx, mb.ID, 0)
	if err == nil {
		// Read the mailbox again after the UIDs, so that UIDNEXT is above all of them.
		mb, err = m.db.MailboxByName(ctx, userID, mb.Name)
	}
	if err == nil && mb.ID != sh.id {
		err = fmt.Errorf("mailbox %s: %w", mb.Name, ErrMailboxGone)
	}
	if err != nil {
		m.unregister(v)
		return nil, err
	}
	v.mailbox, v.uids = mb, uids
	if n := len(uids); n > 0 && uids[n-1] > sh.lastUID {
		// Messages other sessions of this mailbox have not been told of yet.
		i, _ := slices.BinarySearch(uids, sh.lastUID+1)
		sh.lastUID = uids[n-1]
		sh.broadcast(event{kind: evExists, uids: slices.Clone(uids[i:])}, v)
	}
	return v, nil
}

// Close leaves the mailbox.
func (v *View) Close() {
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return
	}
	v.closed = true
	v.queue = nil
	v.mu.Unlock()
	v.m.unregister(v)
}

func (v *View) enqueue(ev event) {
	v.mu.Lock()
	if !v.closed {
		v.queue = append(v.queue, ev)
	}
	v.mu.Unlock()
	select {
	case v.notify <- struct{}{}:
	default:
	}
}

// Mailbox is the selected mailbox as it was when selected.
func (v *View) Mailbox() store.Mailbox { return v.mailbox }

// ReadOnly reports whether the mailbox was opened with EXAMINE.
func (v *View) ReadOnly() bool { return v.readOnly }

// Changed is signalled when changes are queued for Sync (used by IDLE).
func (v *View) Changed() <-chan struct{} { return v.notify }

// Len is the number of messages the client knows of.
func (v *View) Len() uint32 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return uint32(len(v.uids))
}

// MaxUID is the highest UID the client knows of, or 0.
func (v *View) MaxUID() uint32 {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.uids) == 0 {
		return 0
	}
	return v.uids[len(v.uids)-1]
}

// Seq returns the sequence number of uid in the client's view, or 0.
func (v *View) Seq(uid uint32) uint32 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.seqLocked(uid)
}

func (v *View) seqLocked(uid uint32) uint32 {
	i, ok := slices.BinarySearch(v.uids, uid)
	if !ok {
		return 0
	}
	return uint32(i + 1)
}

// Each calls fn for every message of the client's view, in order, until fn returns false.
// fn must not call the View's methods.
func (v *View) Each(fn func(seq, uid uint32) bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	for i, uid := range v.uids {
		if !fn(uint32(i+1), uid) {
			return
		}
	}
}

func (v *View) check(write bool) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.gone {
		return fmt.Errorf("mailbox %s: %w", v.mailbox.Name, ErrMailboxGone)
	}
	if write && v.readOnly {
		return ErrReadOnly
	}
	return nil
}

// Sync applies the queued changes to the client's view and returns them as updates to
// send, in order. Unless allowExpunge, it stops before the first expunge (RFC 9051 §7.5.1:
// no EXPUNGE during FETCH, STORE or SEARCH), keeping it and what follows for later.
func (v *View) Sync(ctx context.Context, allowExpunge bool) ([]Update, error) {
	v.mu.Lock()
	var out []Update
	var flagUIDs []uint32
	n := 0
	for _, ev := range v.queue {
		if !allowExpunge && (ev.kind == evExpunge || ev.kind == evGone) {
			break
		}
		n++
		switch ev.kind {
		case evExists:
			out = v.applyExists(ev.uids, out)
		case evExpunge:
			out = v.applyExpunge(ev.uids, out)
		case evGone:
			out = v.applyExpunge(slices.Clone(v.uids), out)
			v.gone = true
		case evFlags:
			for _, uid := range ev.uids {
				if seq := v.seqLocked(uid); seq != 0 && !slices.Contains(flagUIDs, uid) {
					flagUIDs = append(flagUIDs, uid)
					out = append(out, Update{Kind: UpdateFlags, Seq: seq, UID: uid})
				}
			}
		}
	}
	v.queue = slices.Delete(v.queue, 0, n)
	v.mu.Unlock()
	if len(flagUIDs) == 0 {
		return out, nil
	}
	return v.fillFlags(ctx, out, flagUIDs)
}

func (v *View) applyExists(uids []uint32, out []Update) []Update {
	added := false
	for _, uid := range uids {
		if len(v.uids) == 0 || uid > v.uids[len(v.uids)-1] {
			v.uids = append(v.uids, uid)
			added = true
		}
	}
	if !added {
		return out
	}
	if k := len(out) - 1; k >= 0 && out[k].Kind == UpdateExists {
		out[k].Count = uint32(len(v.uids))
		return out
	}
	return append(out, Update{Kind: UpdateExists, Count: uint32(len(v.uids))})
}

// applyExpunge removes uids from the view, reporting them from the highest sequence number
// down so that each number is valid when the client reads it.
func (v *View) applyExpunge(uids []uint32, out []Update) []Update {
	var seqs []uint32
	for _, uid := range uids {
		if seq := v.seqLocked(uid); seq != 0 {
			seqs = append(seqs, seq)
		}
	}
	if len(seqs) == 0 {
		return out
	}
	slices.Sort(seqs)
	for i := len(seqs) - 1; i >= 0; i-- {
		out = append(out, Update{Kind: UpdateExpunge, Seq: seqs[i]})
	}
	kept := v.uids[:0]
	j := 0
	for i, uid := range v.uids {
		if j < len(seqs) && uint32(i+1) == seqs[j] {
			j++
			continue
		}
		kept = append(kept, uid)
	}
	v.uids = kept
	return out
}

// fillFlags reads the current flags of the messages in flag updates; the newest flags are
// what the client needs, whichever order the changes were broadcast in. Messages no longer
// in the database are left out: their expunge is queued.
func (v *View) fillFlags(ctx context.Context, out []Update, uids []uint32) ([]Update, error) {
	msgs, err := v.m.db.Messages(ctx, v.mailbox.ID, uids)
	if err != nil {
		return nil, err
	}
	flags := make(map[uint32][]string, len(msgs))
	for _, msg := range msgs {
		flags[msg.UID] = msg.Flags
	}
	kept := out[:0]
	for _, u := range out {
		if u.Kind == UpdateFlags {
			f, ok := flags[u.UID]
			if !ok {
				continue
			}
			u.Flags = f
		}
		kept = append(kept, u)
	}
	return kept, nil
}

// Keywords returns the flags to announce for the mailbox (the FLAGS response of SELECT).
func (v *View) Keywords(ctx context.Context) ([]string, error) {
	kw, err := v.m.db.Keywords(ctx, v.mailbox.ID)
	if err != nil {
		return nil, err
	}
	return MailboxFlags(kw), nil
}

// FirstUnseen returns the sequence number of the first message without \Seen, or 0.
func (v *View) FirstUnseen(ctx context.Context) (uint32, error) {
	uid, err := v.m.db.FirstUnseen(ctx, v.mailbox.ID)
	if err != nil || uid == 0 {
		return 0, err
	}
	return v.Seq(uid), nil
}

// Messages returns the metadata of the listed messages that still exist, by UID.
func (v *View) Messages(ctx context.Context, uids []uint32) ([]store.Message, error) {
	if err := v.check(false); err != nil {
		return nil, err
	}
	return v.m.db.Messages(ctx, v.mailbox.ID, uids)
}

// Body reads one message's body.
func (v *View) Body(ctx context.Context, msg store.Message) ([]byte, error) {
	return v.m.db.Body(ctx, msg.BlobID)
}

// Store changes the flags of the listed messages (STORE) and tells the mailbox's other
// sessions. It returns every listed message that exists with its new flags.
func (v *View) Store(ctx context.Context, uids []uint32, op store.FlagOp, flags []string) ([]store.FlagChange, error) {
	if err := v.check(true); err != nil {
		return nil, err
	}
	changes, err := v.m.db.UpdateFlags(ctx, v.mailbox.ID, uids, op, CanonicalFlags(flags))
	if err != nil {
		return nil, err
	}
	var changed []uint32
	for _, c := range changes {
		if c.Changed {
			changed = append(changed, c.UID)
		}
	}
	v.m.flagsChanged(v.mailbox.ID, changed, v)
	return changes, nil
}

// Expunge deletes the messages of the client's view that have \Deleted, limited to uids
// unless it is nil (EXPUNGE, UID EXPUNGE, CLOSE). The expunges reach this session, like any
// other, through Sync.
func (v *View) Expunge(ctx context.Context, uids []uint32) ([]uint32, error) {
	if err := v.check(true); err != nil {
		return nil, err
	}
	if uids != nil {
		uids = slices.Clone(uids)
		slices.Sort(uids)
	}
	var known []uint32
	v.Each(func(_, uid uint32) bool {
		if _, ok := slices.BinarySearch(uids, uid); ok || uids == nil {
			known = append(known, uid)
		}
		return true
	})
	if len(known) == 0 {
		return nil, nil
	}
	gone, err := v.m.db.Expunge(ctx, v.mailbox.ID, known)
	if err != nil {
		return nil, err
	}
	v.m.expunged(v.mailbox.ID, gone)
	return gone, nil
}

// Copy copies the listed messages to the user's mailbox dest (COPY).
func (v *View) Copy(ctx context.Context, uids []uint32, dest string) (store.CopyResult, error) {
	if err := v.check(false); err != nil {
		return store.CopyResult{}, err
	}
	to, err := v.m.Mailbox(ctx, v.mailbox.UserID, dest)
	if err != nil {
		return store.CopyResult{}, err
	}
	res, err := v.m.db.CopyMessages(ctx, v.mailbox.ID, uids, to.ID)
	if err != nil {
		return store.CopyResult{}, err
	}
	v.m.refresh(ctx, to.ID)
	return res, nil
}

// Move moves the listed messages to the user's mailbox dest (MOVE, RFC 6851). The expunges
// reach this session through Sync.
func (v *View) Move(ctx context.Context, uids []uint32, dest string) (store.CopyResult, error) {
	if err := v.check(true); err != nil {
		return store.CopyResult{}, err
	}
	to, err := v.m.Mailbox(ctx, v.mailbox.UserID, dest)
	if err != nil {
		return store.CopyResult{}, err
	}
	if to.ID == v.mailbox.ID {
		return store.CopyResult{}, ErrSameMailbox
	}
	res, err := v.m.db.MoveMessages(ctx, v.mailbox.ID, uids, to.ID)
	if err != nil {
		return store.CopyResult{}, err
	}
	v.m.refresh(ctx, to.ID)
	v.m.expunged(v.mailbox.ID, res.SourceUIDs)
	return res, nil
}
