package store

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"
)

// directory is an in-memory snapshot of the tables recipient resolution reads: local
// domains, user addresses and aliases. Resolving from memory keeps database reads (a WAL
// read transaction each, with its locking system calls) off the RCPT path, which runs for
// every recipient of every message.
//
// The snapshot is reloaded when generation.accounts has changed; that is checked at most
// once per directoryTTL, so a change made by another process (repute user add) is seen
// within a second.
type directory struct {
	gen     int64
	domains map[string]bool
	users   map[string]int64    // address (lower-case) -> user id
	aliases map[string][]string // address or "@domain" -> targets
	grants  map[int64][]string  // user id -> addresses and "@domain"s granted to send as
}

const directoryTTL = time.Second

type dirCache struct {
	mu      sync.Mutex
	cur     *directory
	checked time.Time
}

// dir returns a current snapshot of the account directory.
func (db *DB) dir(ctx context.Context) (*directory, error) {
	c := &db.dircache
	c.mu.Lock()
	defer c.mu.Unlock()
	now := db.now()
	if c.cur != nil && now.Sub(c.checked) < directoryTTL && now.After(c.checked) {
		return c.cur, nil
	}
	var gen int64
	if err := db.rstmt(qGeneration).QueryRowContext(ctx).Scan(&gen); err != nil {
		return nil, fmt.Errorf("read accounts generation: %w", err)
	}
	if c.cur == nil || gen != c.cur.gen {
		d, err := db.loadDirectory(ctx, gen)
		if err != nil {
			return nil, err
		}
		c.cur = d
	}
	c.checked = now
	return c.cur, nil
}

// invalidate makes the next dir call re-check the generation (after our own changes).
func (db *DB) invalidateDir() {
	db.dircache.mu.Lock()
	db.dircache.checked = time.Time{}
	db.dircache.mu.Unlock()
}

func (db *DB) loadDirectory(ctx context.Context, gen int64) (*directory, error) {
	d := &directory{gen: gen, domains: map[string]bool{}, users: map[string]int64{}, aliases: map[string][]string{},
		grants: map[int64][]string{}}
	// One read transaction, so the snapshot is consistent with gen... or newer, which is
	// harmless: the next check reloads again.
	tx, err := db.rdb.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("load directory: %w", err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `SELECT name FROM domains`)
	if err != nil {
		return nil, fmt.Errorf("load domains: %w", err)
	}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, err
		}
		d.domains[n] = true
	}
	rows.Close()
	rows, err = tx.QueryContext(ctx, `SELECT address, id FROM users`)
	if err != nil {
		return nil, fmt.Errorf("load users: %w", err)
	}
	for rows.Next() {
		var a string
		var id int64
		if err := rows.Scan(&a, &id); err != nil {
			rows.Close()
			return nil, err
		}
		d.users[a] = id
	}
	rows.Close()
	rows, err = tx.QueryContext(ctx, `SELECT address, target FROM aliases ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("load aliases: %w", err)
	}
	for rows.Next() {
		var a, t string
		if err := rows.Scan(&a, &t); err != nil {
			rows.Close()
			return nil, err
		}
		d.aliases[a] = append(d.aliases[a], t)
	}
	rows.Close()
	rows, err = tx.QueryContext(ctx, `SELECT user_id, address FROM grants ORDER BY user_id, address`)
	if err != nil {
		return nil, fmt.Errorf("load grants: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var a string
		if err := rows.Scan(&id, &a); err != nil {
			return nil, err
		}
		d.grants[id] = append(d.grants[id], a)
	}
	return d, rows.Err()
}

// writeAccounts is Write for changes to domains, users or aliases: afterwards this
// process's directory is re-checked at once rather than within a second.
func (db *DB) writeAccounts(ctx context.Context, fn func(tx *sql.Tx) error) error {
	err := db.Write(ctx, fn)
	db.invalidateDir()
	return err
}
