package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// maxShaperState bounds the saved engine state read back at start-up.
const maxShaperState = 16 << 20

// ShaperState returns the deliverability engine's saved state (a JSON document the
// engine defines), nil when none was saved.
func (db *DB) ShaperState(ctx context.Context) ([]byte, error) {
	var doc string
	err := db.rdb.QueryRowContext(ctx, `SELECT doc FROM shaper_state WHERE id = 1`).Scan(&doc)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the engine's state: %w", err)
	}
	if len(doc) > maxShaperState {
		return nil, fmt.Errorf("read the engine's state: %d bytes, more than the %d allowed", len(doc), maxShaperState)
	}
	return []byte(doc), nil
}

// SaveShaperState replaces the engine's saved state.
func (db *DB) SaveShaperState(ctx context.Context, doc []byte, now time.Time) error {
	if len(doc) > maxShaperState {
		return fmt.Errorf("save the engine's state: %d bytes, more than the %d allowed", len(doc), maxShaperState)
	}
	return db.Write(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO shaper_state (id, doc, updated) VALUES (1, ?, ?)
			ON CONFLICT (id) DO UPDATE SET doc = excluded.doc, updated = excluded.updated`, string(doc), now.Unix())
		if err != nil {
			return fmt.Errorf("save the engine's state: %w", err)
		}
		return nil
	})
}
