package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
)

// Secret returns the server secret called name, creating 32 random bytes the first time.
// Secrets live in the store so that every process using it (and every node sharing it)
// agrees on them, and a restart does not invalidate what was signed before.
func (db *DB) Secret(ctx context.Context, name string) ([]byte, error) {
	var v []byte
	err := db.rdb.QueryRowContext(ctx, `SELECT value FROM secrets WHERE name = ?`, name).Scan(&v)
	if err == nil {
		return v, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("read secret %s: %w", name, err)
	}
	fresh := make([]byte, 32)
	rand.Read(fresh)
	err = db.Write(ctx, func(tx *sql.Tx) error {
		// Another process may have created it meanwhile: the first one wins.
		if _, err := tx.Exec(`INSERT OR IGNORE INTO secrets (name, value, created) VALUES (?, ?, ?)`,
			name, fresh, db.now().Unix()); err != nil {
			return err
		}
		return tx.QueryRow(`SELECT value FROM secrets WHERE name = ?`, name).Scan(&v)
	})
	if err != nil {
		return nil, fmt.Errorf("create secret %s: %w", name, err)
	}
	return v, nil
}
