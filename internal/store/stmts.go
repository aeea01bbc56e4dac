package store

import (
	"context"
	"database/sql"
	"fmt"
)

// Prepared statements for the hot paths. database/sql with modernc.org/sqlite parses a
// statement's SQL on every Exec/Query; parsing was a fifth of the CPU spent per accepted
// message before these were prepared once, at Open.
//
// Write statements are prepared on the writer's single connection before the writer
// starts (afterwards that connection is always busy); tx.Stmt then reuses them inside each
// batch transaction. Read statements are prepared on the read pool and re-prepared lazily
// by database/sql on each pooled connection.
const (
	qSavepoint    = `SAVEPOINT req`
	qRelease      = `RELEASE req`
	qRollbackTo   = `ROLLBACK TO req`
	qInsertBlob   = `INSERT INTO blobs (size, data) VALUES (?, ?)`
	qNextUID      = `UPDATE mailboxes SET uidnext = uidnext + 1 WHERE id = ? RETURNING uidnext - 1`
	qInsertMsg    = `INSERT INTO messages (mailbox_id, uid, blob_id, flags, internal_date, size) VALUES (?, ?, ?, ?, ?, ?)`
	qMailboxNamed = `SELECT id FROM mailboxes WHERE user_id = ? AND name = ?`
	qQueueDelete  = `DELETE FROM queue WHERE id = ?`
	qQueueDefer   = `UPDATE queue SET attempts = attempts + 1, last_attempt = ?, next_attempt = ?, lease = 0,
		lease_node = '', last_code = ?, last_error = ?, last_mx = ? WHERE id = ?`
	qQueueRequeue = `UPDATE queue SET lease = 0, lease_node = '', next_attempt = ?1 WHERE id = ?2`
	qInsertQueue  = `INSERT INTO queue (blob_id, msg_id, mail_from, rcpt, domain, user_id, created, next_attempt, requiretls, class)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`

	qGeneration = `SELECT accounts FROM generation WHERE id = 1`
	qLogin      = `SELECT id, address, created, password_hash FROM users WHERE address = ?`
)

var (
	writeQueries = []string{qSavepoint, qRelease, qRollbackTo, qInsertBlob, qNextUID, qInsertMsg, qMailboxNamed, qInsertQueue,
		qQueueDelete, qQueueDefer, qQueueRequeue}
	readQueries = []string{qGeneration, qLogin}
)

func prepareAll(ctx context.Context, db *sql.DB, queries []string) (map[string]*sql.Stmt, error) {
	m := make(map[string]*sql.Stmt, len(queries))
	for _, q := range queries {
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("store: prepare %q: %w", q, err)
		}
		m[q] = st
	}
	return m, nil
}

// wstmt returns the prepared form of q bound to the batch transaction tx.
func (db *DB) wstmt(tx *sql.Tx, q string) *sql.Stmt {
	st, ok := db.wst[q]
	if !ok {
		panic("store: write statement not prepared: " + q)
	}
	return tx.Stmt(st)
}

// rstmt returns the prepared read statement for q.
func (db *DB) rstmt(q string) *sql.Stmt {
	st, ok := db.rst[q]
	if !ok {
		panic("store: read statement not prepared: " + q)
	}
	return st
}
