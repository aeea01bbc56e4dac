package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// This file holds the SQL behind IMAP (internal/mailstore): mailboxes as a hierarchy of
// "/"-separated names, message metadata, flags, expunge, copy and move. Bodies are read one
// at a time and only on request, so listing flags never touches the blobs table.

// MailboxDelim separates the levels of a mailbox name (RFC 9051 §5.1.1).
const MailboxDelim = "/"

// ErrHasChildren is returned when deleting a mailbox that still has inferior mailboxes.
var ErrHasChildren = errors.New("mailbox has children")

// ErrInboxDelete is returned when deleting the INBOX, which RFC 9051 §6.3.4 forbids.
var ErrInboxDelete = errors.New("the INBOX cannot be deleted")

// ErrRenameIntoItself is returned when renaming a mailbox to a name below its own.
var ErrRenameIntoItself = errors.New("cannot rename a mailbox into itself")

// Mailbox is one of a user's mailboxes.
type Mailbox struct {
	ID          int64
	UserID      int64
	Name        string // full name, e.g. "Archive/2024"; the INBOX is exactly "INBOX"
	SpecialUse  string // RFC 6154 attribute such as `\Sent`, or ""
	UIDValidity uint32
	UIDNext     uint32
	Subscribed  bool
}

// MailboxStatus counts a mailbox's messages (RFC 9051 §6.3.11).
type MailboxStatus struct {
	Messages    uint32
	Unseen      uint32
	Deleted     uint32
	Size        int64 // of all messages
	DeletedSize int64 // of the messages with \Deleted
}

// Message is a message's metadata, without its body.
type Message struct {
	UID          uint32
	Flags        []string
	InternalDate time.Time
	Size         int64
	BlobID       int64
}

// FlagOp says how UpdateFlags combines the given flags with a message's flags.
type FlagOp int

// The three STORE operations of RFC 9051 §6.4.6.
const (
	FlagsAdd FlagOp = iota + 1
	FlagsRemove
	FlagsReplace
)

// FlagChange is a message's flags after UpdateFlags, and whether they changed.
type FlagChange struct {
	UID     uint32
	Flags   []string
	Changed bool
}

// CopyResult maps source UIDs to the UIDs of the copies (RFC 4315 COPYUID).
type CopyResult struct {
	UIDValidity uint32 // of the destination
	SourceUIDs  []uint32
	DestUIDs    []uint32
}

const mailboxColumns = `id, user_id, name, special_use, uidvalidity, uidnext, subscribed`

type rowScanner interface{ Scan(dest ...any) error }

func scanMailbox(r rowScanner) (Mailbox, error) {
	var mb Mailbox
	var validity, next int64
	err := r.Scan(&mb.ID, &mb.UserID, &mb.Name, &mb.SpecialUse, &validity, &next, &mb.Subscribed)
	mb.UIDValidity, mb.UIDNext = uint32(validity), uint32(next)
	return mb, err
}

// Mailboxes lists a user's mailboxes, sorted by name.
func (db *DB) Mailboxes(ctx context.Context, userID int64) ([]Mailbox, error) {
	rows, err := db.rdb.QueryContext(ctx, `SELECT `+mailboxColumns+` FROM mailboxes WHERE user_id = ? ORDER BY name`, userID)
	if err != nil {
		return nil, fmt.Errorf("list mailboxes: %w", err)
	}
	defer rows.Close()
	var out []Mailbox
	for rows.Next() {
		mb, err := scanMailbox(rows)
		if err != nil {
			return nil, fmt.Errorf("list mailboxes: %w", err)
		}
		out = append(out, mb)
	}
	return out, rows.Err()
}

// MailboxByName finds one of a user's mailboxes by its exact name.
func (db *DB) MailboxByName(ctx context.Context, userID int64, name string) (Mailbox, error) {
	mb, err := scanMailbox(db.rdb.QueryRowContext(ctx,
		`SELECT `+mailboxColumns+` FROM mailboxes WHERE user_id = ? AND name = ?`, userID, name))
	if errors.Is(err, sql.ErrNoRows) {
		return Mailbox{}, fmt.Errorf("mailbox %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return Mailbox{}, fmt.Errorf("mailbox %s: %w", name, err)
	}
	return mb, nil
}

func mailboxByNameTx(tx *sql.Tx, userID int64, name string) (Mailbox, error) {
	mb, err := scanMailbox(tx.QueryRow(`SELECT `+mailboxColumns+` FROM mailboxes WHERE user_id = ? AND name = ?`, userID, name))
	if errors.Is(err, sql.ErrNoRows) {
		return Mailbox{}, fmt.Errorf("mailbox %s: %w", name, ErrNotFound)
	}
	return mb, err
}

// flagLike is a LIKE pattern matching a space-separated flags column that holds flag.
// LIKE is case-insensitive for ASCII, as IMAP flags are.
func flagLike(flag string) string { return "% " + flag + " %" }

// MailboxStatus counts the messages of a mailbox.
func (db *DB) MailboxStatus(ctx context.Context, mailboxID int64) (MailboxStatus, error) {
	var st MailboxStatus
	err := db.rdb.QueryRowContext(ctx, `SELECT count(*), COALESCE(SUM(size), 0),
		COALESCE(SUM(' ' || flags || ' ' NOT LIKE ?1), 0), COALESCE(SUM(' ' || flags || ' ' LIKE ?2), 0),
		COALESCE(SUM(CASE WHEN ' ' || flags || ' ' LIKE ?2 THEN size ELSE 0 END), 0)
		FROM messages WHERE mailbox_id = ?3`, flagLike(`\Seen`), flagLike(`\Deleted`), mailboxID).
		Scan(&st.Messages, &st.Size, &st.Unseen, &st.Deleted, &st.DeletedSize)
	if err != nil {
		return MailboxStatus{}, fmt.Errorf("mailbox status: %w", err)
	}
	return st, nil
}

// FirstUnseen returns the lowest UID without \Seen in a mailbox, or 0.
func (db *DB) FirstUnseen(ctx context.Context, mailboxID int64) (uint32, error) {
	var uid sql.NullInt64
	err := db.rdb.QueryRowContext(ctx, `SELECT MIN(uid) FROM messages WHERE mailbox_id = ? AND ' ' || flags || ' ' NOT LIKE ?`,
		mailboxID, flagLike(`\Seen`)).Scan(&uid)
	if err != nil {
		return 0, fmt.Errorf("first unseen: %w", err)
	}
	return uint32(uid.Int64), nil
}

// Keywords lists the distinct flags in use in a mailbox (for the FLAGS response of SELECT).
func (db *DB) Keywords(ctx context.Context, mailboxID int64) ([]string, error) {
	rows, err := db.rdb.QueryContext(ctx, `SELECT DISTINCT flags FROM messages WHERE mailbox_id = ? AND flags != ''`, mailboxID)
	if err != nil {
		return nil, fmt.Errorf("list keywords: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var flags string
		if err := rows.Scan(&flags); err != nil {
			return nil, fmt.Errorf("list keywords: %w", err)
		}
		for _, f := range strings.Fields(flags) {
			if !containsFold(out, f) {
				out = append(out, f)
			}
		}
	}
	slices.Sort(out)
	return out, rows.Err()
}

// parentNames returns the names of the mailboxes above name: "a/b/c" gives "a", "a/b".
func parentNames(name string) []string {
	var out []string
	for i := 1; i < len(name); i++ {
		if strings.HasPrefix(name[i:], MailboxDelim) {
			out = append(out, name[:i])
		}
	}
	return out
}

func createParentsTx(tx *sql.Tx, userID int64, name string) error {
	for _, p := range parentNames(name) {
		_, err := CreateMailboxTx(tx, userID, p, "")
		if err != nil && !errors.Is(err, ErrExists) {
			return err
		}
	}
	return nil
}

// CreateMailbox creates a mailbox, and any missing mailboxes above it in the hierarchy
// (RFC 9051 §6.3.4 "SHOULD create any superior hierarchical names").
func (db *DB) CreateMailbox(ctx context.Context, userID int64, name, specialUse string) (Mailbox, error) {
	var mb Mailbox
	err := db.Write(ctx, func(tx *sql.Tx) error {
		if err := createParentsTx(tx, userID, name); err != nil {
			return err
		}
		if _, err := CreateMailboxTx(tx, userID, name, specialUse); err != nil {
			return err
		}
		var err error
		mb, err = mailboxByNameTx(tx, userID, name)
		return err
	})
	return mb, err
}

// childrenRange bounds the names below parent: parent+"/" <= name < parent+"0" ('0' follows
// '/' in ASCII), which SQLite answers from the (user_id, name) index.
func childrenRange(parent string) (lo, hi string) {
	return parent + MailboxDelim, parent + "0"
}

// DeleteMailbox deletes a mailbox with its messages and returns what it was. It refuses the
// INBOX and mailboxes with children.
func (db *DB) DeleteMailbox(ctx context.Context, userID int64, name string) (Mailbox, error) {
	if name == "INBOX" {
		return Mailbox{}, ErrInboxDelete
	}
	var mb Mailbox
	err := db.Write(ctx, func(tx *sql.Tx) error {
		var err error
		if mb, err = mailboxByNameTx(tx, userID, name); err != nil {
			return err
		}
		lo, hi := childrenRange(name)
		var n int
		if err := tx.QueryRow(`SELECT count(*) FROM mailboxes WHERE user_id = ? AND name >= ? AND name < ?`,
			userID, lo, hi).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("mailbox %s: %w", name, ErrHasChildren)
		}
		if _, err := tx.Exec(`DELETE FROM messages WHERE mailbox_id = ?`, mb.ID); err != nil {
			return fmt.Errorf("delete messages: %w", err)
		}
		_, err = tx.Exec(`DELETE FROM mailboxes WHERE id = ?`, mb.ID)
		return err
	})
	return mb, err
}

// RenameResult says what RenameMailbox did.
type RenameResult struct {
	MailboxID int64 // the renamed mailbox; for the INBOX, the new mailbox
	// MovedFrom and Moved are set when the INBOX was renamed: its messages (these UIDs) moved
	// to the new mailbox, keeping their UIDs, and the INBOX stays, empty (RFC 3501 §6.3.5).
	MovedFrom int64
	Moved     []uint32
}

// RenameMailbox renames a mailbox and the mailboxes below it. Renaming the INBOX creates
// the new mailbox and moves every INBOX message there instead.
func (db *DB) RenameMailbox(ctx context.Context, userID int64, oldName, newName string) (RenameResult, error) {
	if oldName == newName {
		return RenameResult{}, fmt.Errorf("mailbox %s: %w", newName, ErrExists)
	}
	if strings.HasPrefix(newName, oldName+MailboxDelim) {
		return RenameResult{}, fmt.Errorf("rename %s to %s: %w", oldName, newName, ErrRenameIntoItself)
	}
	var res RenameResult
	err := db.Write(ctx, func(tx *sql.Tx) error {
		res = RenameResult{}
		old, err := mailboxByNameTx(tx, userID, oldName)
		if err != nil {
			return err
		}
		if _, err := mailboxByNameTx(tx, userID, newName); err == nil {
			return fmt.Errorf("mailbox %s: %w", newName, ErrExists)
		}
		if err := createParentsTx(tx, userID, newName); err != nil {
			return err
		}
		if oldName == "INBOX" {
			return renameInboxTx(tx, userID, old, newName, &res)
		}
		res.MailboxID = old.ID
		return renameTreeTx(tx, userID, oldName, newName)
	})
	return res, err
}

func renameInboxTx(tx *sql.Tx, userID int64, inbox Mailbox, newName string, res *RenameResult) error {
	id, err := CreateMailboxTx(tx, userID, newName, "")
	if err != nil {
		return err
	}
	rows, err := tx.Query(`UPDATE messages SET mailbox_id = ? WHERE mailbox_id = ? RETURNING uid`, id, inbox.ID)
	if err != nil {
		return fmt.Errorf("move INBOX messages: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var uid uint32
		if err := rows.Scan(&uid); err != nil {
			return err
		}
		res.Moved = append(res.Moved, uid)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	slices.Sort(res.Moved)
	res.MailboxID, res.MovedFrom = id, inbox.ID
	_, err = tx.Exec(`UPDATE mailboxes SET uidnext = ? WHERE id = ?`, inbox.UIDNext, id)
	return err
}

func renameTreeTx(tx *sql.Tx, userID int64, oldName, newName string) error {
	lo, hi := childrenRange(oldName)
	rows, err := tx.Query(`SELECT id, name FROM mailboxes WHERE user_id = ? AND (name = ? OR (name >= ? AND name < ?))`,
		userID, oldName, lo, hi)
	if err != nil {
		return fmt.Errorf("rename %s: %w", oldName, err)
	}
	type rename struct {
		id   int64
		name string
	}
	var todo []rename
	for rows.Next() {
		var r rename
		if err := rows.Scan(&r.id, &r.name); err != nil {
			rows.Close()
			return err
		}
		todo = append(todo, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, r := range todo {
		to := newName + strings.TrimPrefix(r.name, oldName)
		_, err := tx.Exec(`UPDATE mailboxes SET name = ? WHERE id = ?`, to, r.id)
		if IsConstraint(err) {
			return fmt.Errorf("mailbox %s: %w", to, ErrExists)
		}
		if err != nil {
			return fmt.Errorf("rename %s: %w", r.name, err)
		}
	}
	return nil
}

// SetSubscribed records whether the user subscribes to a mailbox (RFC 9051 §6.3.7).
func (db *DB) SetSubscribed(ctx context.Context, userID int64, name string, on bool) error {
	return db.Write(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec(`UPDATE mailboxes SET subscribed = ? WHERE user_id = ? AND name = ?`, on, userID, name)
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", name, err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("mailbox %s: %w", name, ErrNotFound)
		}
		return nil
	})
}

// MessageUIDs lists the UIDs above after in a mailbox, in ascending order.
func (db *DB) MessageUIDs(ctx context.Context, mailboxID int64, after uint32) ([]uint32, error) {
	rows, err := db.rdb.QueryContext(ctx, `SELECT uid FROM messages WHERE mailbox_id = ? AND uid > ? ORDER BY uid`, mailboxID, after)
	if err != nil {
		return nil, fmt.Errorf("list uids: %w", err)
	}
	defer rows.Close()
	var out []uint32
	for rows.Next() {
		var uid uint32
		if err := rows.Scan(&uid); err != nil {
			return nil, fmt.Errorf("list uids: %w", err)
		}
		out = append(out, uid)
	}
	return out, rows.Err()
}

// uidList encodes UIDs for `uid IN (SELECT value FROM json_each(?))`, which keeps a query
// to one statement however many UIDs a client names.
func uidList(uids []uint32) string {
	if len(uids) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(uids)
	return string(b)
}

// Messages returns the metadata of the listed messages of a mailbox that exist, by UID.
func (db *DB) Messages(ctx context.Context, mailboxID int64, uids []uint32) ([]Message, error) {
	if len(uids) == 0 {
		return nil, nil
	}
	lo, hi := slices.Min(uids), slices.Max(uids)
	var rows *sql.Rows
	var err error
	dense := int64(hi)-int64(lo)+1 <= 2*int64(len(uids))
	if dense {
		rows, err = db.rdb.QueryContext(ctx, `SELECT uid, flags, internal_date, size, blob_id FROM messages
			WHERE mailbox_id = ? AND uid BETWEEN ? AND ? ORDER BY uid`, mailboxID, lo, hi)
	} else {
		rows, err = db.rdb.QueryContext(ctx, `SELECT uid, flags, internal_date, size, blob_id FROM messages
			WHERE mailbox_id = ? AND uid IN (SELECT value FROM json_each(?)) ORDER BY uid`, mailboxID, uidList(uids))
	}
	if err != nil {
		return nil, fmt.Errorf("read messages: %w", err)
	}
	defer rows.Close()
	var want map[uint32]bool
	if dense && int64(hi)-int64(lo)+1 != int64(len(uids)) {
		want = make(map[uint32]bool, len(uids))
		for _, u := range uids {
			want[u] = true
		}
	}
	var out []Message
	for rows.Next() {
		var m Message
		var flags string
		var date int64
		if err := rows.Scan(&m.UID, &flags, &date, &m.Size, &m.BlobID); err != nil {
			return nil, fmt.Errorf("read messages: %w", err)
		}
		if want != nil && !want[m.UID] {
			continue
		}
		m.Flags = strings.Fields(flags)
		m.InternalDate = time.Unix(date, 0)
		out = append(out, m)
	}
	return out, rows.Err()
}

// Body returns a message body.
func (db *DB) Body(ctx context.Context, blobID int64) ([]byte, error) {
	var data []byte
	err := db.rdb.QueryRowContext(ctx, `SELECT data FROM blobs WHERE id = ?`, blobID).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("body %d: %w", blobID, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read body %d: %w", blobID, err)
	}
	return data, nil
}

// AppendMessage stores a new message in a mailbox and returns its UID.
func (db *DB) AppendMessage(ctx context.Context, mailboxID int64, body []byte, flags []string, date time.Time) (uint32, error) {
	var uid uint32
	err := db.Write(ctx, func(tx *sql.Tx) error {
		blob, err := InsertBlobTx(tx, body)
		if err != nil {
			return err
		}
		uid, err = AppendMessageTx(tx, mailboxID, blob, int64(len(body)), flags, date)
		return err
	})
	return uid, err
}

func containsFold(list []string, s string) bool {
	return slices.ContainsFunc(list, func(x string) bool { return strings.EqualFold(x, s) })
}

// applyFlags combines flags with cur as op says. Flags compare case-insensitively.
func applyFlags(cur []string, op FlagOp, flags []string) []string {
	var out []string
	switch op {
	case FlagsReplace:
	case FlagsAdd, FlagsRemove:
		for _, f := range cur {
			if op == FlagsAdd || !containsFold(flags, f) {
				out = append(out, f)
			}
		}
	}
	if op != FlagsRemove {
		for _, f := range flags {
			if !containsFold(out, f) {
				out = append(out, f)
			}
		}
	}
	return out
}

func sameFlags(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, f := range a {
		if !containsFold(b, f) {
			return false
		}
	}
	return true
}

// UpdateFlags changes the flags of the listed messages and returns every listed message
// that exists, with its new flags and whether they changed.
func (db *DB) UpdateFlags(ctx context.Context, mailboxID int64, uids []uint32, op FlagOp, flags []string) ([]FlagChange, error) {
	var out []FlagChange
	err := db.Write(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		rows, err := tx.Query(`SELECT uid, flags FROM messages WHERE mailbox_id = ? AND uid IN (SELECT value FROM json_each(?)) ORDER BY uid`,
			mailboxID, uidList(uids))
		if err != nil {
			return fmt.Errorf("read flags: %w", err)
		}
		for rows.Next() {
			var c FlagChange
			var cur string
			if err := rows.Scan(&c.UID, &cur); err != nil {
				rows.Close()
				return err
			}
			old := strings.Fields(cur)
			c.Flags = applyFlags(old, op, flags)
			c.Changed = !sameFlags(old, c.Flags)
			out = append(out, c)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, c := range out {
			if !c.Changed {
				continue
			}
			if _, err := tx.Exec(`UPDATE messages SET flags = ? WHERE mailbox_id = ? AND uid = ?`,
				strings.Join(c.Flags, " "), mailboxID, c.UID); err != nil {
				return fmt.Errorf("update flags: %w", err)
			}
		}
		return nil
	})
	return out, err
}

// Expunge deletes those of the listed messages that have the \Deleted flag and returns
// their UIDs in ascending order.
func (db *DB) Expunge(ctx context.Context, mailboxID int64, uids []uint32) ([]uint32, error) {
	var out []uint32
	err := db.Write(ctx, func(tx *sql.Tx) error {
		out = out[:0]
		rows, err := tx.Query(`DELETE FROM messages WHERE mailbox_id = ? AND uid IN (SELECT value FROM json_each(?))
			AND ' ' || flags || ' ' LIKE ? RETURNING uid`, mailboxID, uidList(uids), flagLike(`\Deleted`))
		if err != nil {
			return fmt.Errorf("expunge: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var uid uint32
			if err := rows.Scan(&uid); err != nil {
				return err
			}
			out = append(out, uid)
		}
		return rows.Err()
	})
	slices.Sort(out)
	return out, err
}

// copyTx appends a copy of each listed message of src to dst, in UID order.
func copyTx(tx *sql.Tx, src int64, uids []uint32, dst int64) (CopyResult, error) {
	var res CopyResult
	if err := tx.QueryRow(`SELECT uidvalidity FROM mailboxes WHERE id = ?`, dst).Scan(&res.UIDValidity); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return res, fmt.Errorf("mailbox %d: %w", dst, ErrNotFound)
		}
		return res, err
	}
	rows, err := tx.Query(`SELECT uid, blob_id, flags, internal_date, size FROM messages
		WHERE mailbox_id = ? AND uid IN (SELECT value FROM json_each(?)) ORDER BY uid`, src, uidList(uids))
	if err != nil {
		return res, fmt.Errorf("read messages to copy: %w", err)
	}
	var msgs []Message
	for rows.Next() {
		var m Message
		var flags string
		var date int64
		if err := rows.Scan(&m.UID, &m.BlobID, &flags, &date, &m.Size); err != nil {
			rows.Close()
			return res, err
		}
		m.Flags, m.InternalDate = strings.Fields(flags), time.Unix(date, 0)
		msgs = append(msgs, m)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return res, err
	}
	for _, m := range msgs {
		uid, err := AppendMessageTx(tx, dst, m.BlobID, m.Size, m.Flags, m.InternalDate)
		if err != nil {
			return res, err
		}
		res.SourceUIDs = append(res.SourceUIDs, m.UID)
		res.DestUIDs = append(res.DestUIDs, uid)
	}
	return res, nil
}

// CopyMessages copies the listed messages of src that exist into dst. Bodies are shared,
// not duplicated.
func (db *DB) CopyMessages(ctx context.Context, src int64, uids []uint32, dst int64) (CopyResult, error) {
	var res CopyResult
	err := db.Write(ctx, func(tx *sql.Tx) error {
		var err error
		res, err = copyTx(tx, src, uids, dst)
		return err
	})
	return res, err
}

// MoveMessages moves the listed messages of src that exist into dst, atomically (RFC 6851).
func (db *DB) MoveMessages(ctx context.Context, src int64, uids []uint32, dst int64) (CopyResult, error) {
	if src == dst {
		return CopyResult{}, errors.New("move: source and destination are the same mailbox")
	}
	var res CopyResult
	err := db.Write(ctx, func(tx *sql.Tx) error {
		var err error
		if res, err = copyTx(tx, src, uids, dst); err != nil {
			return err
		}
		_, err = tx.Exec(`DELETE FROM messages WHERE mailbox_id = ? AND uid IN (SELECT value FROM json_each(?))`,
			src, uidList(res.SourceUIDs))
		if err != nil {
			return fmt.Errorf("move: delete source: %w", err)
		}
		return nil
	})
	return res, err
}
