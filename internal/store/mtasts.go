package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// MTASTSPolicy is a cached MTA-STS policy: the text as served and the TXT record id it was
// fetched under.
type MTASTSPolicy struct {
	RecordID string
	Policy   string
	Expires  time.Time
}

// MTASTSGet returns the cached policy of domain, and false if there is none.
func (db *DB) MTASTSGet(ctx context.Context, domain string) (MTASTSPolicy, bool, error) {
	var p MTASTSPolicy
	var exp int64
	err := db.rdb.QueryRowContext(ctx, `SELECT record_id, policy, expires FROM mtasts_policies WHERE domain = ?`,
		strings.ToLower(domain)).Scan(&p.RecordID, &p.Policy, &exp)
	if errors.Is(err, sql.ErrNoRows) {
		return MTASTSPolicy{}, false, nil
	}
	if err != nil {
		return MTASTSPolicy{}, false, fmt.Errorf("read MTA-STS policy of %s: %w", domain, err)
	}
	p.Expires = time.Unix(exp, 0)
	return p, true, nil
}

// MTASTSPut stores (or replaces) the policy of domain.
func (db *DB) MTASTSPut(ctx context.Context, domain string, p MTASTSPolicy) error {
	return db.Write(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`INSERT INTO mtasts_policies (domain, record_id, policy, expires, fetched) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (domain) DO UPDATE SET record_id = excluded.record_id, policy = excluded.policy,
			expires = excluded.expires, fetched = excluded.fetched`,
			strings.ToLower(domain), p.RecordID, p.Policy, p.Expires.Unix(), db.now().Unix())
		if err != nil {
			return fmt.Errorf("store MTA-STS policy of %s: %w", domain, err)
		}
		return nil
	})
}
