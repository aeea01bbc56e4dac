package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// CreateMailboxTx creates a mailbox for a user inside a write transaction and returns its
// id. UIDVALIDITY (RFC 9051 §2.3.1.1) is the current time in seconds, or one more than the
// last value ever handed out if that is larger, so a mailbox deleted and created again under
// the same name never reuses a UIDVALIDITY.
func CreateMailboxTx(tx *sql.Tx, userID int64, name, specialUse string) (int64, error) {
	var v int64
	err := tx.QueryRow(`UPDATE uidvalidity SET last = MAX(last + 1, ?) WHERE id = 1 RETURNING last`,
		time.Now().Unix()&0xffffffff).Scan(&v)
	if err != nil {
		return 0, fmt.Errorf("assign uidvalidity: %w", err)
	}
	res, err := tx.Exec(`INSERT INTO mailboxes (user_id, name, special_use, uidvalidity) VALUES (?, ?, ?, ?)`,
		userID, name, specialUse, v&0xffffffff)
	if IsConstraint(err) {
		return 0, fmt.Errorf("mailbox %s: %w", name, ErrExists)
	}
	if err != nil {
		return 0, fmt.Errorf("create mailbox %s: %w", name, err)
	}
	return res.LastInsertId()
}

// InsertBlobTx stores a message body and returns its id. The body is kept while any message
// or queue row refers to it.
func InsertBlobTx(tx *sql.Tx, data []byte) (int64, error) {
	res, err := tx.Exec(`INSERT INTO blobs (size, data) VALUES (?, ?)`, len(data), data)
	if err != nil {
		return 0, fmt.Errorf("store body: %w", err)
	}
	return res.LastInsertId()
}

// AppendMessageTx adds a message (body blobID) to a mailbox, assigning the mailbox's next
// UID, and returns that UID.
func AppendMessageTx(tx *sql.Tx, mailboxID, blobID, size int64, flags []string, date time.Time) (uint32, error) {
	var uid int64
	err := tx.QueryRow(`UPDATE mailboxes SET uidnext = uidnext + 1 WHERE id = ? RETURNING uidnext - 1`, mailboxID).Scan(&uid)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("mailbox %d: %w", mailboxID, ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("assign uid: %w", err)
	}
	if uid > 0xffffffff {
		return 0, fmt.Errorf("mailbox %d: UIDs exhausted", mailboxID)
	}
	_, err = tx.Exec(`INSERT INTO messages (mailbox_id, uid, blob_id, flags, internal_date, size) VALUES (?, ?, ?, ?, ?, ?)`,
		mailboxID, uid, blobID, strings.Join(flags, " "), date.Unix(), size)
	if err != nil {
		return 0, fmt.Errorf("insert message: %w", err)
	}
	return uint32(uid), nil
}

// LocalTarget is one local mailbox a message goes to.
type LocalTarget struct {
	UserID  int64
	Mailbox string   // "" means INBOX; a missing mailbox also falls back to INBOX
	Flags   []string // initial flags, e.g. \Seen for a copy in Sent
}

// Delivery is one accepted message and everything that must happen to it. It is stored in
// one transaction: either every local copy and every queue entry exists, or none does.
type Delivery struct {
	MsgID    string
	From     string // envelope sender, "" for the null sender
	Body     []byte // complete message, trace headers included
	Local    []LocalTarget
	Remote   []string // remote recipient addresses, queued for delivery
	UserID   int64    // authenticated submitter, 0 for none
	Received time.Time
	// RequireTLS marks queued copies for delivery only over verified TLS (RFC 8689).
	RequireTLS bool
	// Class is the queued copies' class, ClassTransactional ("" too) or ClassBulk.
	Class string
}

// Message classes of the queue.
const (
	ClassTransactional = "transactional"
	ClassBulk          = "bulk"
)

func (d *Delivery) class() string {
	if d.Class == ClassBulk {
		return ClassBulk
	}
	return ClassTransactional
}

// Stored reports where one local copy went.
type Stored struct {
	UserID    int64
	MailboxID int64
	UID       uint32
}

// AddTargets addresses d to what Resolve returned for one recipient: local users'
// mailboxes, and remote addresses (an alias that forwards) through the queue.
func (d *Delivery) AddTargets(targets []Target) {
	for _, t := range targets {
		if t.UserID != 0 {
			d.Local = append(d.Local, LocalTarget{UserID: t.UserID})
		} else {
			d.Remote = append(d.Remote, t.Address)
		}
	}
}

// Accept durably stores a message: its body once, a copy in each local target's mailbox and
// a queue entry per remote recipient. It returns after the group commit is on disk.
func (db *DB) Accept(ctx context.Context, d *Delivery) ([]Stored, error) {
	if len(d.Local) == 0 && len(d.Remote) == 0 {
		return nil, errors.New("accept: message without recipients")
	}
	var stored []Stored
	err := db.Write(ctx, func(tx *sql.Tx) error {
		var err error
		stored, err = db.acceptTx(tx, d)
		return err
	})
	if err != nil {
		return nil, err
	}
	return stored, nil
}

// acceptTx is Accept inside a write transaction (also used to store bounce notices
// atomically with the removal of what they report).
func (db *DB) acceptTx(tx *sql.Tx, d *Delivery) ([]Stored, error) {
	var stored []Stored
	res, err := db.wstmt(tx, qInsertBlob).Exec(len(d.Body), d.Body)
	if err != nil {
		return nil, fmt.Errorf("store body: %w", err)
	}
	blob, err := res.LastInsertId()
	if err != nil {
		return nil, err
	}
	for _, t := range d.Local {
		mbox, err := db.deliveryMailbox(tx, t.UserID, t.Mailbox)
		if err != nil {
			return nil, err
		}
		var uid int64
		if err := db.wstmt(tx, qNextUID).QueryRow(mbox).Scan(&uid); err != nil {
			return nil, fmt.Errorf("assign uid: %w", err)
		}
		if uid > 0xffffffff {
			return nil, fmt.Errorf("mailbox %d: UIDs exhausted", mbox)
		}
		flags := strings.Join(t.Flags, " ")
		if _, err := db.wstmt(tx, qInsertMsg).Exec(mbox, uid, blob, flags, d.Received.Unix(), len(d.Body)); err != nil {
			return nil, fmt.Errorf("insert message: %w", err)
		}
		stored = append(stored, Stored{UserID: t.UserID, MailboxID: mbox, UID: uint32(uid)})
	}
	for _, rcpt := range d.Remote {
		domain := rcpt[strings.LastIndexByte(rcpt, '@')+1:]
		var user any
		if d.UserID != 0 {
			user = d.UserID
		}
		_, err := db.wstmt(tx, qInsertQueue).Exec(blob, d.MsgID, d.From, rcpt, strings.ToLower(domain), user,
			d.Received.Unix(), d.Received.Unix(), d.RequireTLS, d.class())
		if err != nil {
			return nil, fmt.Errorf("queue %s: %w", rcpt, err)
		}
	}
	return stored, nil
}

func (db *DB) deliveryMailbox(tx *sql.Tx, userID int64, name string) (int64, error) {
	var id int64
	if name != "" && name != "INBOX" {
		err := db.wstmt(tx, qMailboxNamed).QueryRow(userID, name).Scan(&id)
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return 0, err
		}
	}
	err := db.wstmt(tx, qMailboxNamed).QueryRow(userID, "INBOX").Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		// The INBOX cannot be deleted over IMAP, but be robust: recreate it.
		return CreateMailboxTx(tx, userID, "INBOX", "")
	}
	return id, err
}
