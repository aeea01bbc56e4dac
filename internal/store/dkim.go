package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// DKIMKey is a stored DKIM key of a local domain.
type DKIMKey struct {
	Domain     string `json:"domain"`
	Selector   string `json:"selector"`
	Algorithm  string `json:"algorithm"` // "rsa" or "ed25519"
	State      string `json:"state"`     // "active", "pending" or "retired"
	Created    int64  `json:"created"`
	Changed    int64  `json:"changed"` // when the state last changed
	PrivatePEM []byte `json:"-"`
}

// DKIM key states.
const (
	KeyActive  = "active"
	KeyPending = "pending"
	KeyRetired = "retired"
)

// AddDKIMKey stores a key for a local domain.
func (db *DB) AddDKIMKey(ctx context.Context, k DKIMKey) error {
	if k.State == "" {
		k.State = KeyActive
	}
	return db.Write(ctx, func(tx *sql.Tx) error {
		did, err := domainID(tx, strings.ToLower(k.Domain))
		if err != nil {
			return err
		}
		now := db.now().Unix()
		_, err = tx.Exec(`INSERT INTO dkim_keys (domain_id, selector, algorithm, private_pem, state, created, changed) VALUES (?, ?, ?, ?, ?, ?, ?)`,
			did, k.Selector, k.Algorithm, k.PrivatePEM, k.State, now, now)
		if IsConstraint(err) {
			return fmt.Errorf("DKIM selector %s for %s: %w", k.Selector, k.Domain, ErrExists)
		}
		return err
	})
}

// DKIMKeys lists a domain's keys (every domain's when domain is ""), oldest first.
func (db *DB) DKIMKeys(ctx context.Context, domain string) ([]DKIMKey, error) {
	q := `SELECT d.name, k.selector, k.algorithm, k.state, k.created, k.changed, k.private_pem FROM dkim_keys k
		JOIN domains d ON d.id = k.domain_id`
	var args []any
	if domain != "" {
		q += ` WHERE d.name = ?`
		args = append(args, strings.ToLower(domain))
	}
	rows, err := db.rdb.QueryContext(ctx, q+` ORDER BY d.name, k.created, k.id`, args...)
	if err != nil {
		return nil, fmt.Errorf("list DKIM keys: %w", err)
	}
	defer rows.Close()
	var out []DKIMKey
	for rows.Next() {
		var k DKIMKey
		if err := rows.Scan(&k.Domain, &k.Selector, &k.Algorithm, &k.State, &k.Created, &k.Changed, &k.PrivatePEM); err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, rows.Err()
}

// ActivateDKIMKey makes a pending key sign and retires the domain's other active keys of
// the same algorithm, in one transaction.
func (db *DB) ActivateDKIMKey(ctx context.Context, domain, selector string) error {
	return db.Write(ctx, func(tx *sql.Tx) error {
		did, err := domainID(tx, strings.ToLower(domain))
		if err != nil {
			return err
		}
		var alg, state string
		err = tx.QueryRow(`SELECT algorithm, state FROM dkim_keys WHERE domain_id = ? AND selector = ?`, did, selector).Scan(&alg, &state)
		if err == sql.ErrNoRows {
			return fmt.Errorf("DKIM key %s of %s: %w", selector, domain, ErrNotFound)
		}
		if err != nil {
			return err
		}
		if state != KeyPending {
			return fmt.Errorf("DKIM key %s of %s is %s, not pending", selector, domain, state)
		}
		now := db.now().Unix()
		if _, err := tx.Exec(`UPDATE dkim_keys SET state = 'retired', changed = ? WHERE domain_id = ? AND algorithm = ? AND state = 'active'`,
			now, did, alg); err != nil {
			return err
		}
		_, err = tx.Exec(`UPDATE dkim_keys SET state = 'active', changed = ? WHERE domain_id = ? AND selector = ?`, now, did, selector)
		return err
	})
}
