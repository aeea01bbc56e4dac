package imapsrv

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"

	"github.com/repute-mail/repute/internal/mailstore"
	"github.com/repute-mail/repute/internal/store"
)

const delim = '/'

// codeUseAttr is RFC 6154 §3's response code for a special-use attribute the server refuses.
const codeUseAttr imap.ResponseCode = "USEATTR"

// session is one IMAP connection. imapserver calls its methods from the connection's
// goroutine, one command at a time (Idle runs on a second goroutine while the first waits).
type session struct {
	srv    *Server
	conn   *imapserver.Conn
	remote net.Addr
	host   string
	ctx    context.Context // ends with the connection
	cancel context.CancelFunc

	mu    sync.Mutex // guards log, user, timer against bye and Close
	log   *slog.Logger
	user  store.User // zero until login
	timer *time.Timer

	view  *mailstore.View
	saved []uint32 // SEARCH RETURN (SAVE) result, by UID (RFC 5182)

	closeOnce sync.Once
}

var (
	_ imapserver.SessionIMAP4rev2   = (*session)(nil)
	_ imapserver.SessionAppendLimit = (*session)(nil)
	_ imapserver.SessionNamespace   = (*session)(nil)
	_ imapserver.SessionMove        = (*session)(nil)
)

func (s *session) logger() *slog.Logger {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log
}

// active restarts the inactivity timer (after login) at the start of every command.
func (s *session) active() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.timer != nil {
		s.timer.Reset(s.srv.idleTimeout())
	}
}

// bye ends the session with an untagged BYE (RFC 9051 §7.1.5). Before login the connection
// is closed without one: the greeting phase may be swapping in TLS.
func (s *session) bye(text string) {
	s.mu.Lock()
	loggedIn := s.user.ID != 0
	s.mu.Unlock()
	if loggedIn {
		s.conn.Bye(text)
		return
	}
	s.conn.NetConn().Close()
}

// Close is called by imapserver when the connection ends.
func (s *session) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		if s.timer != nil {
			s.timer.Stop()
		}
		s.mu.Unlock()
		// s.view stays set: an IDLE goroutine may still be reading it. Closing the View and
		// cancelling the context end that goroutine.
		if s.view != nil {
			s.view.Close()
		}
		s.cancel()
		s.srv.release(s)
		s.logger().Debug("imap connection closed")
	})
	return nil
}

// Login checks a LOGIN or AUTHENTICATE PLAIN; imapserver has already refused it unless the
// connection is TLS.
func (s *session) Login(username, password string) error {
	u, err := s.srv.authenticate(s.ctx, username, password, s.remote)
	if err != nil {
		log := s.logger()
		var ie *imap.Error
		switch {
		case errors.Is(err, store.ErrBadCredentials):
			log.Warn("imap login failed", "user", username)
			return imapserver.ErrAuthFailed
		case errors.As(err, &ie):
			log.Warn("imap login refused", "user", username, "err", err)
			return ie
		default:
			log.Warn("imap login error", "user", username, "err", err)
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeUnavailable,
				Text: "Login temporarily unavailable, try again later"}
		}
	}
	s.mu.Lock()
	s.user = u
	s.log = s.log.With("user", u.Address)
	s.timer = time.AfterFunc(s.srv.idleTimeout(), func() {
		s.logger().Info("imap session idle too long")
		s.bye("Idle for too long")
	})
	log := s.log
	s.mu.Unlock()
	log.Info("imap login")
	return nil
}

func (s *session) userID() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.user.ID
}

// AppendLimit is advertised as APPENDLIMIT (RFC 7889).
func (s *session) AppendLimit() uint32 { return uint32(s.srv.maxMessageSize()) }

// Namespace: one personal namespace, "/" separated (RFC 2342).
func (s *session) Namespace() (*imap.NamespaceData, error) {
	return &imap.NamespaceData{Personal: []imap.NamespaceDescriptor{{Prefix: "", Delim: delim}}}, nil
}

func (s *session) Create(name string, options *imap.CreateOptions) error {
	s.active()
	var use string
	if options != nil && len(options.SpecialUse) > 0 {
		if len(options.SpecialUse) > 1 {
			return &imap.Error{Type: imap.StatusResponseTypeNo, Code: codeUseAttr, Text: "One special-use attribute per mailbox"}
		}
		use = string(options.SpecialUse[0])
	}
	return s.imapError("create", s.srv.Mailstore.Create(s.ctx, s.userID(), name, use), false)
}

func (s *session) Delete(name string) error {
	s.active()
	return s.imapError("delete", s.srv.Mailstore.Delete(s.ctx, s.userID(), name), false)
}

func (s *session) Rename(oldName, newName string, _ *imap.RenameOptions) error {
	s.active()
	return s.imapError("rename", s.srv.Mailstore.Rename(s.ctx, s.userID(), oldName, newName), false)
}

func (s *session) Subscribe(name string) error {
	s.active()
	return s.imapError("subscribe", s.srv.Mailstore.Subscribe(s.ctx, s.userID(), name, true), false)
}

func (s *session) Unsubscribe(name string) error {
	s.active()
	return s.imapError("unsubscribe", s.srv.Mailstore.Subscribe(s.ctx, s.userID(), name, false), false)
}

func (s *session) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	s.active()
	mb, err := s.srv.Mailstore.Mailbox(s.ctx, s.userID(), name)
	if err != nil {
		return nil, s.imapError("status", err, false)
	}
	data, err := s.status(mb, options)
	return data, s.imapError("status", err, false)
}

// status answers STATUS, and the STATUS part of LIST-STATUS (RFC 5819). Every counter the
// client may ask for is filled: imapserver writes them without checking.
func (s *session) status(mb store.Mailbox, options *imap.StatusOptions) (*imap.StatusData, error) {
	data := &imap.StatusData{Mailbox: mb.Name, UIDNext: imap.UID(mb.UIDNext), UIDValidity: mb.UIDValidity}
	if options.NumMessages || options.NumUnseen || options.NumDeleted || options.Size || options.DeletedStorage {
		st, err := s.srv.Mailstore.Status(s.ctx, mb.ID)
		if err != nil {
			return nil, err
		}
		data.NumMessages, data.NumUnseen, data.NumDeleted = &st.Messages, &st.Unseen, &st.Deleted
		data.Size, data.DeletedStorage = &st.Size, &st.DeletedSize
	}
	var recent uint32
	data.NumRecent = &recent
	limit := s.AppendLimit()
	data.AppendLimit = &limit
	return data, nil
}

func (s *session) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	s.active()
	if len(patterns) == 0 {
		// LIST "" "": the hierarchy delimiter (RFC 9051 §6.3.9).
		return w.WriteList(&imap.ListData{Attrs: []imap.MailboxAttr{imap.MailboxAttrNoSelect}, Delim: delim})
	}
	mbs, err := s.srv.Mailstore.Mailboxes(s.ctx, s.userID())
	if err != nil {
		return s.imapError("list", err, false)
	}
	ref = inboxPrefix(ref)
	for i := range patterns {
		patterns[i] = inboxPrefix(patterns[i])
	}
	for i, mb := range mbs {
		if !slices.ContainsFunc(patterns, func(p string) bool { return imapserver.MatchList(mb.Name, delim, ref, p) }) {
			continue
		}
		data := listData(mbs, i, options)
		if data == nil {
			continue
		}
		if options.ReturnStatus != nil {
			if data.Status, err = s.status(mb, options.ReturnStatus); err != nil {
				return s.imapError("list", err, false)
			}
		}
		if err := w.WriteList(data); err != nil {
			return err
		}
	}
	return nil
}

// listData describes mbs[i] for LIST, or returns nil if the selection options exclude it.
// Special-use attributes are always included (RFC 6154 §2 allows it; clients rely on it).
func listData(mbs []store.Mailbox, i int, options *imap.ListOptions) *imap.ListData {
	mb := mbs[i]
	prefix := mb.Name + string(delim)
	hasChildren, subscribedChild := false, false
	for _, c := range mbs[i+1:] {
		if !strings.HasPrefix(c.Name, prefix) {
			continue
		}
		hasChildren = true
		subscribedChild = subscribedChild || c.Subscribed
	}
	if options.SelectSpecialUse && mb.SpecialUse == "" {
		return nil
	}
	data := &imap.ListData{Mailbox: mb.Name, Delim: delim}
	if options.SelectSubscribed && !mb.Subscribed {
		if !options.SelectRecursiveMatch || !subscribedChild {
			return nil
		}
		data.ChildInfo = &imap.ListDataChildInfo{Subscribed: true}
	}
	if hasChildren {
		data.Attrs = append(data.Attrs, imap.MailboxAttrHasChildren)
	} else {
		data.Attrs = append(data.Attrs, imap.MailboxAttrHasNoChildren)
	}
	if mb.Subscribed && (options.SelectSubscribed || options.ReturnSubscribed) {
		data.Attrs = append(data.Attrs, imap.MailboxAttrSubscribed)
	}
	if mb.SpecialUse != "" {
		data.Attrs = append(data.Attrs, imap.MailboxAttr(mb.SpecialUse))
	}
	if options.SelectSubscribed && options.SelectRecursiveMatch && subscribedChild && data.ChildInfo == nil {
		data.ChildInfo = &imap.ListDataChildInfo{Subscribed: true}
	}
	return data
}

// inboxPrefix spells a leading "INBOX" level in capitals: it matches case-insensitively.
func inboxPrefix(s string) string {
	if len(s) >= 5 && strings.EqualFold(s[:5], "INBOX") && (len(s) == 5 || s[5] == delim) {
		return "INBOX" + s[5:]
	}
	return s
}

func (s *session) Append(name string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	s.active()
	max := s.srv.maxMessageSize()
	if r.Size() > max {
		return nil, &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeTooBig, Text: "Message too big"}
	}
	var buf bytes.Buffer
	buf.Grow(int(r.Size()))
	if _, err := io.Copy(&buf, io.LimitReader(r, max+1)); err != nil {
		return nil, err
	}
	flags := make([]string, len(options.Flags))
	for i, f := range options.Flags {
		flags[i] = string(f)
	}
	validity, uid, err := s.srv.Mailstore.Append(s.ctx, s.userID(), name, buf.Bytes(), flags, options.Time)
	if err != nil {
		return nil, s.imapError("append", err, true)
	}
	s.logger().Debug("imap append", "mailbox", name, "uid", uid, "size", buf.Len())
	return &imap.AppendData{UIDValidity: validity, UID: imap.UID(uid)}, nil
}

func (s *session) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	s.active()
	if s.view != nil {
		s.view.Close()
		s.view = nil
	}
	s.saved = nil
	v, err := s.srv.Mailstore.Select(s.ctx, s.userID(), name, options.ReadOnly)
	if err != nil {
		return nil, s.imapError("select", err, false)
	}
	keywords, err := v.Keywords(s.ctx)
	if err == nil {
		var first uint32
		if first, err = v.FirstUnseen(s.ctx); err == nil {
			s.view = v
			mb := v.Mailbox()
			data := &imap.SelectData{
				Flags:             toFlags(keywords),
				PermanentFlags:    []imap.Flag{},
				NumMessages:       v.Len(),
				FirstUnseenSeqNum: first,
				UIDNext:           imap.UID(mb.UIDNext),
				UIDValidity:       mb.UIDValidity,
			}
			if !v.ReadOnly() {
				data.PermanentFlags = append(toFlags(keywords), imap.FlagWildcard)
			}
			return data, nil
		}
	}
	v.Close()
	return nil, s.imapError("select", err, false)
}

func (s *session) Unselect() error {
	s.active()
	if s.view != nil {
		s.view.Close()
		s.view = nil
	}
	s.saved = nil
	return nil
}

// Poll sends the changes made elsewhere to the selected mailbox; imapserver calls it after
// every command.
func (s *session) Poll(w *imapserver.UpdateWriter, allowExpunge bool) error {
	s.active()
	if s.view == nil {
		return nil
	}
	updates, err := s.view.Sync(s.ctx, allowExpunge)
	if err != nil {
		return s.imapError("poll", err, false)
	}
	return writeUpdates(w, updates)
}

// Idle streams changes until the client says DONE (RFC 2177). The inactivity timer keeps
// running: clients restart IDLE before 30 minutes (RFC 9051 §6.3.13).
func (s *session) Idle(w *imapserver.UpdateWriter, stop <-chan struct{}) error {
	s.active()
	v := s.view
	if v == nil {
		<-stop
		return nil
	}
	for {
		updates, err := v.Sync(s.ctx, true)
		if err != nil {
			return s.imapError("idle", err, false)
		}
		if err := writeUpdates(w, updates); err != nil {
			return err
		}
		select {
		case <-v.Changed():
		case <-stop:
			return nil
		case <-s.ctx.Done():
			return nil
		}
	}
}

func writeUpdates(w *imapserver.UpdateWriter, updates []mailstore.Update) error {
	for _, u := range updates {
		var err error
		switch u.Kind {
		case mailstore.UpdateExists:
			err = w.WriteNumMessages(u.Count)
		case mailstore.UpdateExpunge:
			err = w.WriteExpunge(u.Seq)
		case mailstore.UpdateFlags:
			err = w.WriteMessageFlags(u.Seq, imap.UID(u.UID), toFlags(u.Flags))
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func toFlags(flags []string) []imap.Flag {
	out := make([]imap.Flag, len(flags))
	for i, f := range flags {
		out[i] = imap.Flag(f)
	}
	return out
}

func fromFlags(flags []imap.Flag) []string {
	out := make([]string, len(flags))
	for i, f := range flags {
		out[i] = string(f)
	}
	return out
}

// imapError turns an error from the mailbox layer into the response the client sees, in
// this one place; anything unexpected is logged and answered without internal detail.
func (s *session) imapError(op string, err error, tryCreate bool) error {
	no := func(code imap.ResponseCode, text string) error {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: code, Text: text}
	}
	var ie *imap.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ie):
		return ie
	case errors.Is(err, store.ErrNotFound) && tryCreate:
		return no(imap.ResponseCodeTryCreate, "No such mailbox")
	case errors.Is(err, store.ErrNotFound):
		return no(imap.ResponseCodeNonExistent, "No such mailbox")
	case errors.Is(err, store.ErrExists):
		return no(imap.ResponseCodeAlreadyExists, "Mailbox already exists")
	case errors.Is(err, store.ErrHasChildren):
		return no(imap.ResponseCodeHasChildren, "Mailbox has children: delete them first")
	case errors.Is(err, store.ErrInboxDelete):
		return no(imap.ResponseCodeCannot, "The INBOX cannot be deleted")
	case errors.Is(err, mailstore.ErrInvalidName):
		return no(imap.ResponseCodeCannot, "Invalid mailbox name")
	case errors.Is(err, mailstore.ErrReadOnly):
		return no(imap.ResponseCodeCannot, "Mailbox is read-only (selected with EXAMINE)")
	case errors.Is(err, store.ErrRenameIntoItself):
		return no(imap.ResponseCodeCannot, "Cannot rename a mailbox into itself")
	case errors.Is(err, mailstore.ErrSpecialUse):
		return no(codeUseAttr, "Unsupported special-use attribute")
	case errors.Is(err, mailstore.ErrSameMailbox):
		return no(imap.ResponseCodeCannot, "Source and destination are the same mailbox")
	case errors.Is(err, mailstore.ErrMailboxGone):
		return no(imap.ResponseCodeNonExistent, "Mailbox was deleted")
	case errors.Is(err, store.ErrDiskFull):
		s.logger().Error("imap "+op+" failed", "err", err)
		return no(imap.ResponseCodeUnavailable, "Server out of disk space, try again later")
	case errors.Is(err, context.Canceled), errors.Is(err, store.ErrClosed):
		return no(imap.ResponseCodeUnavailable, "Server shutting down")
	default:
		s.logger().Error("imap "+op+" failed", "err", err)
		return no(imap.ResponseCodeServerBug, "Internal error")
	}
}
