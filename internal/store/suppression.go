package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Suppression is a recipient that a sending domain no longer mails: every address that
// hard-bounced, complained or unsubscribed costs reputation each time it is mailed again.
type Suppression struct {
	SenderDomain string    `json:"sender_domain"`
	Address      string    `json:"address"`
	Reason       string    `json:"reason"` // bounce category, "complaint", "unsubscribe" or "manual"
	Source       string    `json:"source"` // "delivery", "dsn", "arf", "unsubscribe", "admin"
	Detail       string    `json:"detail"`
	MsgID        string    `json:"msg_id"`
	Created      time.Time `json:"created"`
}

// maxSuppressionDetail bounds the stored reply text or note.
const maxSuppressionDetail = 1000

// Suppress adds s, or updates the reason of an existing entry (keeping its first date).
// It reports whether the entry is new.
func (db *DB) Suppress(ctx context.Context, s Suppression) (added bool, err error) {
	return db.suppress(ctx, s, true)
}

// SuppressNew adds s unless the recipient is already suppressed, in which case the entry
// keeps its first cause. It reports whether the entry is new.
func (db *DB) SuppressNew(ctx context.Context, s Suppression) (added bool, err error) {
	return db.suppress(ctx, s, false)
}

func (db *DB) suppress(ctx context.Context, s Suppression, update bool) (added bool, err error) {
	s.SenderDomain = strings.ToLower(strings.TrimSpace(s.SenderDomain))
	s.Address = strings.ToLower(strings.TrimSpace(s.Address))
	if s.SenderDomain == "" || s.Address == "" {
		return false, errors.New("suppress: sender domain and address are required")
	}
	if len(s.Detail) > maxSuppressionDetail {
		s.Detail = s.Detail[:maxSuppressionDetail]
	}
	if s.Created.IsZero() {
		s.Created = db.now()
	}
	err = db.Write(ctx, func(tx *sql.Tx) error {
		var one int
		switch err := tx.QueryRow(`SELECT 1 FROM suppressions WHERE sender_domain = ? AND address = ?`,
			s.SenderDomain, s.Address).Scan(&one); {
		case errors.Is(err, sql.ErrNoRows):
			added = true
			_, err = tx.Exec(`INSERT INTO suppressions (sender_domain, address, reason, source, detail, msg_id, created)
				VALUES (?, ?, ?, ?, ?, ?, ?)`, s.SenderDomain, s.Address, s.Reason, s.Source, s.Detail, s.MsgID, s.Created.Unix())
			return err
		case err != nil:
			return err
		case !update:
			return nil
		}
		_, err := tx.Exec(`UPDATE suppressions SET reason = ?, source = ?, detail = ?, msg_id = ?
			WHERE sender_domain = ? AND address = ?`, s.Reason, s.Source, s.Detail, s.MsgID, s.SenderDomain, s.Address)
		return err
	})
	if err != nil {
		return false, fmt.Errorf("suppress %s for %s: %w", s.Address, s.SenderDomain, err)
	}
	return added, nil
}

// Unsuppress removes an entry; ErrNotFound if there is none.
func (db *DB) Unsuppress(ctx context.Context, senderDomain, address string) error {
	return db.Write(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec(`DELETE FROM suppressions WHERE sender_domain = ? AND address = ?`,
			strings.ToLower(strings.TrimSpace(senderDomain)), strings.ToLower(strings.TrimSpace(address)))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("suppression of %s for %s: %w", address, senderDomain, ErrNotFound)
		}
		return nil
	})
}

// Suppressed returns the entry for a recipient of a sending domain, or nil.
func (db *DB) Suppressed(ctx context.Context, senderDomain, address string) (*Suppression, error) {
	s := Suppression{SenderDomain: strings.ToLower(senderDomain), Address: strings.ToLower(address)}
	var created int64
	err := db.rdb.QueryRowContext(ctx, `SELECT reason, source, detail, msg_id, created FROM suppressions
		WHERE sender_domain = ? AND address = ?`, s.SenderDomain, s.Address).Scan(&s.Reason, &s.Source, &s.Detail, &s.MsgID, &created)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("look up suppression of %s for %s: %w", address, senderDomain, err)
	}
	s.Created = time.Unix(created, 0)
	return &s, nil
}

// Suppressions lists a sending domain's entries (every domain's when senderDomain is ""),
// newest first.
func (db *DB) Suppressions(ctx context.Context, senderDomain string) ([]Suppression, error) {
	q := `SELECT sender_domain, address, reason, source, detail, msg_id, created FROM suppressions`
	var args []any
	if senderDomain != "" {
		q += ` WHERE sender_domain = ?`
		args = append(args, strings.ToLower(senderDomain))
	}
	rows, err := db.rdb.QueryContext(ctx, q+` ORDER BY created DESC, sender_domain, address`, args...)
	if err != nil {
		return nil, fmt.Errorf("list suppressions: %w", err)
	}
	defer rows.Close()
	var out []Suppression
	for rows.Next() {
		var s Suppression
		var created int64
		if err := rows.Scan(&s.SenderDomain, &s.Address, &s.Reason, &s.Source, &s.Detail, &s.MsgID, &created); err != nil {
			return nil, fmt.Errorf("list suppressions: %w", err)
		}
		s.Created = time.Unix(created, 0)
		out = append(out, s)
	}
	return out, rows.Err()
}
