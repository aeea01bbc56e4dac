// Package mailstore is the mailbox layer between the IMAP server and the database: it
// names and checks mailboxes, and it keeps every IMAP session that has a mailbox selected
// up to date with what other sessions and incoming mail do to it.
//
// The database is the only source of truth. What this package adds is the live state of
// each open mailbox (one shared value per mailbox, created when the first session selects
// it and dropped when the last one leaves) and, for each selected session, a View: the
// list of UIDs that session's client knows, in sequence-number order, plus a queue of
// changes the client has not been told about yet. Every committed write (an APPEND, a STORE,
// an EXPUNGE, a COPY or MOVE, a delivery over SMTP) is turned into an event by UID and
// queued on every View of that mailbox; a View applies its events only when its session
// asks (RFC 9051 §7.5.1 and §5.5: EXPUNGE may not be sent during FETCH, STORE or SEARCH),
// so sequence numbers stay consistent until the client has been told of expunges.
//
// imapserver's MailboxTracker is not used: its per-session queue is opaque, so a session
// could not resolve "*" against its own view of the mailbox, and it counts new messages one
// at a time. A View keeps the whole client-side list instead (4 bytes per message).
//
// Upstream: internal/imapsrv (sessions), internal/session through Delivered (mail accepted
// by SMTP). Downstream: internal/store.
package mailstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/repute-mail/repute/internal/store"
)

// ErrReadOnly is returned for a change to a mailbox selected with EXAMINE.
var ErrReadOnly = errors.New("mailbox is read-only")

// ErrMailboxGone is returned by a View whose mailbox was deleted by another session.
var ErrMailboxGone = errors.New("mailbox was deleted")

// ErrSpecialUse is returned for a special-use attribute not in SpecialUses.
var ErrSpecialUse = errors.New("unsupported special-use attribute")

// ErrSameMailbox is returned for a MOVE into the mailbox the messages are in.
var ErrSameMailbox = errors.New("source and destination are the same mailbox")

// refreshTimeout bounds the database read that follows a delivery.
const refreshTimeout = 30 * time.Second

// Mailstore gives IMAP sessions access to users' mailboxes. Its methods are safe for
// concurrent use.
type Mailstore struct {
	db  *store.DB
	log *slog.Logger

	mu   sync.Mutex
	open map[int64]*shared // by mailbox id
}

// shared is the live state of one mailbox that at least one session has selected.
type shared struct {
	id int64

	// syncMu orders the reads of new UIDs from the database with the broadcast of events,
	// so that every View sees a message appear before it sees it expunged.
	syncMu  sync.Mutex
	lastUID uint32 // highest UID announced to the Views; guarded by syncMu

	mu     sync.Mutex
	views  map[*View]struct{}
	kicked bool // a refresh goroutine is queued
}

// New returns a Mailstore on db. It starts nothing.
func New(db *store.DB, log *slog.Logger) *Mailstore {
	if log == nil {
		log = slog.Default()
	}
	return &Mailstore{db: db, log: log, open: make(map[int64]*shared)}
}

// Authenticate checks a login against the store (the default for the IMAP server).
func (m *Mailstore) Authenticate(ctx context.Context, username, password string) (store.User, error) {
	return m.db.Authenticate(ctx, username, password)
}

// Delivered tells open IMAP sessions about messages that db.Accept just stored. It only
// looks up which of the mailboxes are open and hands the database read to a goroutine
// (at most one waiting per mailbox), so it never blocks on the database.
func (m *Mailstore) Delivered(stored []store.Stored) {
	for _, s := range stored {
		m.kick(s.MailboxID)
	}
}

func (m *Mailstore) lookup(mailboxID int64) *shared {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.open[mailboxID]
}

func (m *Mailstore) kick(mailboxID int64) {
	sh := m.lookup(mailboxID)
	if sh == nil {
		return
	}
	sh.mu.Lock()
	if sh.kicked {
		// The queued goroutine has not read the database yet, so it will see this message.
		sh.mu.Unlock()
		return
	}
	sh.kicked = true
	sh.mu.Unlock()
	go func() {
		defer func() {
			if p := recover(); p != nil {
				m.log.Error("mailstore: panic refreshing mailbox", "mailbox", mailboxID, "panic", p, "stack", string(debug.Stack()))
			}
		}()
		ctx, cancel := context.WithTimeout(context.Background(), refreshTimeout)
		defer cancel()
		sh.syncMu.Lock()
		defer sh.syncMu.Unlock()
		sh.mu.Lock()
		sh.kicked = false
		sh.mu.Unlock()
		if err := m.refreshLocked(ctx, sh); err != nil {
			m.log.Warn("mailstore: reading new messages", "mailbox", mailboxID, "err", err)
		}
	}()
}

// refresh announces messages added to a mailbox to the sessions that have it selected.
// Callers that just committed an addition call it before answering their client, so that
// the client's next poll includes the new message.
func (m *Mailstore) refresh(ctx context.Context, mailboxID int64) {
	sh := m.lookup(mailboxID)
	if sh == nil {
		return
	}
	sh.syncMu.Lock()
	defer sh.syncMu.Unlock()
	if err := m.refreshLocked(ctx, sh); err != nil {
		m.log.Warn("mailstore: reading new messages", "mailbox", mailboxID, "err", err)
	}
}

// refreshLocked reads the UIDs above the last announced one and queues them on every View.
// sh.syncMu must be held.
func (m *Mailstore) refreshLocked(ctx context.Context, sh *shared) error {
	uids, err := m.db.MessageUIDs(ctx, sh.id, sh.lastUID)
	if err != nil {
		return err
	}
	if len(uids) == 0 {
		return nil
	}
	sh.lastUID = uids[len(uids)-1]
	sh.broadcast(event{kind: evExists, uids: uids}, nil)
	return nil
}

// broadcast queues ev on every View of the mailbox but except.
func (sh *shared) broadcast(ev event, except *View) {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	for v := range sh.views {
		if v != except {
			v.enqueue(ev)
		}
	}
}

// expunged tells the sessions of a mailbox that messages left it.
func (m *Mailstore) expunged(mailboxID int64, uids []uint32) {
	if len(uids) == 0 {
		return
	}
	sh := m.lookup(mailboxID)
	if sh == nil {
		return
	}
	sh.syncMu.Lock()
	defer sh.syncMu.Unlock()
	sh.broadcast(event{kind: evExpunge, uids: uids}, nil)
}

// flagsChanged tells the sessions of a mailbox, but the one that made the change, that
// flags changed.
func (m *Mailstore) flagsChanged(mailboxID int64, uids []uint32, except *View) {
	if len(uids) == 0 {
		return
	}
	if sh := m.lookup(mailboxID); sh != nil {
		sh.broadcast(event{kind: evFlags, uids: uids}, except)
	}
}

// deleted tells the sessions of a deleted mailbox, and forgets it: SQLite may give its id
// to the next mailbox created.
func (m *Mailstore) deleted(mailboxID int64) {
	m.mu.Lock()
	sh := m.open[mailboxID]
	delete(m.open, mailboxID)
	m.mu.Unlock()
	if sh == nil {
		return
	}
	sh.syncMu.Lock()
	defer sh.syncMu.Unlock()
	sh.broadcast(event{kind: evGone}, nil)
}

// register adds a new View of mailboxID, creating the shared state if needed.
func (m *Mailstore) register(v *View, mailboxID int64) *shared {
	m.mu.Lock()
	defer m.mu.Unlock()
	sh := m.open[mailboxID]
	if sh == nil {
		sh = &shared{id: mailboxID, views: make(map[*View]struct{})}
		m.open[mailboxID] = sh
	}
	sh.mu.Lock()
	sh.views[v] = struct{}{}
	sh.mu.Unlock()
	return sh
}

// unregister removes a View and drops the shared state with the last one.
func (m *Mailstore) unregister(v *View) {
	m.mu.Lock()
	defer m.mu.Unlock()
	sh := v.sh
	sh.mu.Lock()
	delete(sh.views, v)
	empty := len(sh.views) == 0
	sh.mu.Unlock()
	if empty && m.open[sh.id] == sh {
		delete(m.open, sh.id)
	}
}

// Mailboxes lists a user's mailboxes by name.
func (m *Mailstore) Mailboxes(ctx context.Context, userID int64) ([]store.Mailbox, error) {
	return m.db.Mailboxes(ctx, userID)
}

// Mailbox finds a user's mailbox by a name as a client gives it.
func (m *Mailstore) Mailbox(ctx context.Context, userID int64, name string) (store.Mailbox, error) {
	name, err := NormalizeName(name)
	if err != nil {
		return store.Mailbox{}, err
	}
	return m.db.MailboxByName(ctx, userID, name)
}

// Status counts the messages of a mailbox.
func (m *Mailstore) Status(ctx context.Context, mailboxID int64) (store.MailboxStatus, error) {
	return m.db.MailboxStatus(ctx, mailboxID)
}

// Create creates a mailbox (and the levels above it). specialUse is "" or one of
// SpecialUses (RFC 6154 §3).
func (m *Mailstore) Create(ctx context.Context, userID int64, name, specialUse string) error {
	name, err := NormalizeName(name)
	if err != nil {
		return err
	}
	if name == "INBOX" {
		return fmt.Errorf("mailbox INBOX: %w", store.ErrExists)
	}
	if specialUse != "" {
		i := slices.IndexFunc(SpecialUses, func(s string) bool { return strings.EqualFold(s, specialUse) })
		if i < 0 {
			return fmt.Errorf("%w: %s", ErrSpecialUse, specialUse)
		}
		specialUse = SpecialUses[i]
	}
	_, err = m.db.CreateMailbox(ctx, userID, name, specialUse)
	return err
}

// Delete deletes a mailbox and its messages. Sessions that have it selected see every
// message expunged, then fail every command on it.
func (m *Mailstore) Delete(ctx context.Context, userID int64, name string) error {
	name, err := NormalizeName(name)
	if err != nil {
		return err
	}
	mb, err := m.db.DeleteMailbox(ctx, userID, name)
	if err != nil {
		return err
	}
	m.deleted(mb.ID)
	return nil
}

// Rename renames a mailbox and those below it. Renaming the INBOX moves its messages to a
// new mailbox (RFC 3501 §6.3.5); sessions with the INBOX selected see them expunged.
func (m *Mailstore) Rename(ctx context.Context, userID int64, oldName, newName string) error {
	oldName, err := NormalizeName(oldName)
	if err != nil {
		return err
	}
	if newName, err = NormalizeName(newName); err != nil {
		return err
	}
	if newName == "INBOX" {
		return fmt.Errorf("mailbox INBOX: %w", store.ErrExists)
	}
	res, err := m.db.RenameMailbox(ctx, userID, oldName, newName)
	if err != nil {
		return err
	}
	m.expunged(res.MovedFrom, res.Moved)
	return nil
}

// Subscribe sets or clears a mailbox's subscription.
func (m *Mailstore) Subscribe(ctx context.Context, userID int64, name string, on bool) error {
	name, err := NormalizeName(name)
	if err != nil {
		return err
	}
	return m.db.SetSubscribed(ctx, userID, name, on)
}

// Append stores a message in a mailbox and returns the mailbox's UIDVALIDITY and the new
// message's UID (RFC 4315 APPENDUID). A zero date means now.
func (m *Mailstore) Append(ctx context.Context, userID int64, name string, body []byte, flags []string, date time.Time) (uidValidity, uid uint32, err error) {
	mb, err := m.Mailbox(ctx, userID, name)
	if err != nil {
		return 0, 0, err
	}
	if date.IsZero() {
		date = m.db.Now()
	}
	uid, err = m.db.AppendMessage(ctx, mb.ID, body, CanonicalFlags(flags), date)
	if err != nil {
		return 0, 0, fmt.Errorf("append to %s: %w", mb.Name, err)
	}
	m.refresh(ctx, mb.ID)
	return mb.UIDValidity, uid, nil
}
