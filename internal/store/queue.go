package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// QueueEntry is one outbound queue row: one message for one remote recipient.
type QueueEntry struct {
	ID          int64  `json:"id"`
	MsgID       string `json:"msg_id"`
	From        string `json:"from"`
	Rcpt        string `json:"rcpt"`
	Domain      string `json:"domain"`
	Size        int64  `json:"size"`
	Created     int64  `json:"created"`
	NextAttempt int64  `json:"next_attempt"`
	LastAttempt int64  `json:"last_attempt"`
	Attempts    int    `json:"attempts"`
	State       string `json:"state"` // "queued" or "hold"
	LastCode    int    `json:"last_code"`
	LastError   string `json:"last_error"`
	LastMX      string `json:"last_mx"`
	Warned      bool   `json:"warned"`
	RequireTLS  bool   `json:"requiretls"`
	Class       string `json:"class"` // "transactional" or "bulk"
	BlobID      int64  `json:"-"`
	UserID      int64  `json:"-"`
}

// Queue states.
const (
	StateQueued = "queued"
	StateHold   = "hold"
)

const queueColumns = `q.id, q.msg_id, q.mail_from, q.rcpt, q.domain, b.size, q.created, q.next_attempt,
	q.last_attempt, q.attempts, q.state, q.last_code, q.last_error, q.last_mx, q.warned, q.requiretls, q.class, q.blob_id,
	COALESCE(q.user_id, 0)`

func scanQueue(rows *sql.Rows) ([]QueueEntry, error) {
	defer rows.Close()
	var out []QueueEntry
	for rows.Next() {
		var e QueueEntry
		if err := rows.Scan(&e.ID, &e.MsgID, &e.From, &e.Rcpt, &e.Domain, &e.Size, &e.Created, &e.NextAttempt,
			&e.LastAttempt, &e.Attempts, &e.State, &e.LastCode, &e.LastError, &e.LastMX, &e.Warned, &e.RequireTLS,
			&e.Class, &e.BlobID, &e.UserID); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Queue lists the outbound queue, oldest first.
func (db *DB) Queue(ctx context.Context) ([]QueueEntry, error) {
	rows, err := db.rdb.QueryContext(ctx, `SELECT `+queueColumns+` FROM queue q JOIN blobs b ON b.id = q.blob_id ORDER BY q.id`)
	if err != nil {
		return nil, fmt.Errorf("list queue: %w", err)
	}
	return scanQueue(rows)
}

// QueueGet returns one queue entry.
func (db *DB) QueueGet(ctx context.Context, id int64) (QueueEntry, error) {
	rows, err := db.rdb.QueryContext(ctx, `SELECT `+queueColumns+` FROM queue q JOIN blobs b ON b.id = q.blob_id WHERE q.id = ?`, id)
	if err != nil {
		return QueueEntry{}, fmt.Errorf("queue entry %d: %w", id, err)
	}
	es, err := scanQueue(rows)
	if err != nil {
		return QueueEntry{}, err
	}
	if len(es) == 0 {
		return QueueEntry{}, fmt.Errorf("queue entry %d: %w", id, ErrNotFound)
	}
	return es[0], nil
}

// QueueClaim leases up to limit queued (not held, not leased) entries of a class
// (ClassTransactional or ClassBulk) whose next attempt is due at now to node until
// now+lease, soonest first, and returns them, in one statement: two nodes (or two
// claimers of one node) never receive the same entry. A leased entry's next attempt moves
// to the lease's end, so that the due index (state, class, next_attempt) serves the claim
// directly however long the queue is, and a lease that is never ended (its node died)
// expires by itself. Recording an outcome or QueueRequeue ends the lease. Size is not
// filled in. Each class is claimed on its own so that a bulk backlog never stands in the
// way of transactional mail.
func (db *DB) QueueClaim(ctx context.Context, node, class string, now time.Time, limit int, lease time.Duration) ([]QueueEntry, error) {
	if limit <= 0 {
		return nil, nil
	}
	until := now.Add(lease).Unix()
	var out []QueueEntry
	err := db.Write(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `UPDATE queue SET lease = ?1, lease_node = ?2, next_attempt = ?1
			WHERE id IN (SELECT id FROM queue WHERE state = 'queued' AND class = ?5 AND next_attempt <= ?3
				ORDER BY next_attempt, id LIMIT ?4)
			RETURNING `+claimColumns, until, node, now.Unix(), limit, class)
		if err != nil {
			return err
		}
		out, err = scanQueue(rows)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("claim due %s queue entries: %w", class, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// QueueNextDueClass returns when the next queued entry of a class is due, and false if
// there is none.
func (db *DB) QueueNextDueClass(ctx context.Context, class string) (time.Time, bool, error) {
	var next sql.NullInt64
	err := db.rdb.QueryRowContext(ctx, `SELECT MIN(next_attempt) FROM queue WHERE state = 'queued' AND class = ?`, class).Scan(&next)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next due: %w", err)
	}
	if !next.Valid {
		return time.Time{}, false, nil
	}
	return time.Unix(next.Int64, 0), true, nil
}

// QueueCountDue counts the queued entries of a class due at now (held ones excluded).
func (db *DB) QueueCountDue(ctx context.Context, class string, now time.Time) (int, error) {
	var n int
	err := db.rdb.QueryRowContext(ctx, `SELECT COUNT(*) FROM queue WHERE state = 'queued' AND class = ? AND next_attempt <= ?`,
		class, now.Unix()).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count due %s entries: %w", class, err)
	}
	return n, nil
}

// claimColumns are queueColumns as RETURNING can name them (no join: Size is 0).
var claimColumns = strings.NewReplacer("q.", "", "b.size", "0").Replace(queueColumns)

// QueueRequeue ends the leases of entries that were claimed but not attempted (the
// traffic shaper held them back, or the node is shutting down) and makes them due at
// next. It is not an attempt: the attempt count and last error stay as they were.
func (db *DB) QueueRequeue(ctx context.Context, ids []int64, next time.Time) error {
	return db.Write(ctx, func(tx *sql.Tx) error {
		st := db.wstmt(tx, qQueueRequeue)
		for _, id := range ids {
			if _, err := st.Exec(next.Unix(), id); err != nil {
				return fmt.Errorf("requeue queue entry %d: %w", id, err)
			}
		}
		return nil
	})
}

// QueueClearLeases makes node's leased entries due now. On start-up nothing of this
// node's is being delivered, and what was in flight when it last stopped is tried again
// at once; other nodes' leases are theirs to end (or to expire).
func (db *DB) QueueClearLeases(ctx context.Context, node string) error {
	return db.Write(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`UPDATE queue SET lease = 0, lease_node = '', next_attempt = MIN(next_attempt, ?)
			WHERE lease != 0 AND lease_node = ?`, db.now().Unix(), node)
		return err
	})
}

// Blob returns a message body.
func (db *DB) Blob(ctx context.Context, id int64) ([]byte, error) {
	var data []byte
	err := db.rdb.QueryRowContext(ctx, `SELECT data FROM blobs WHERE id = ?`, id).Scan(&data)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("body %d: %w", id, ErrNotFound)
	}
	return data, err
}

// Outcome is what happened to one queue entry in a delivery attempt.
type Outcome struct {
	ID          int64
	Delivered   bool      // remove the entry
	NextAttempt time.Time // for a deferral
	Code        int
	Text        string
	MX          string
}

// QueueRecord applies the outcomes of delivery attempts made at now: delivered entries are
// removed, deferred ones get their next attempt and last error.
func (db *DB) QueueRecord(ctx context.Context, now time.Time, outs []Outcome) error {
	return db.Write(ctx, func(tx *sql.Tx) error {
		del, def := db.wstmt(tx, qQueueDelete), db.wstmt(tx, qQueueDefer)
		for _, o := range outs {
			var err error
			if o.Delivered {
				_, err = del.Exec(o.ID)
			} else {
				_, err = def.Exec(now.Unix(), o.NextAttempt.Unix(), o.Code, o.Text, o.MX, o.ID)
			}
			if err != nil {
				return fmt.Errorf("record outcome of queue entry %d: %w", o.ID, err)
			}
		}
		return nil
	})
}

// QueueBounce removes entries that failed for good and, in the same transaction, stores
// the delivery status notification for their sender (dsn may be nil: no notice, e.g. for
// a null-sender message). Either both happen or neither does.
func (db *DB) QueueBounce(ctx context.Context, ids []int64, dsn *Delivery) ([]Stored, error) {
	return db.queueWithNotice(ctx, `DELETE FROM queue WHERE id = ?`, ids, dsn)
}

// QueueWarn marks entries whose sender was told of the delay and stores that notice.
func (db *DB) QueueWarn(ctx context.Context, ids []int64, notice *Delivery) ([]Stored, error) {
	return db.queueWithNotice(ctx, `UPDATE queue SET warned = 1 WHERE id = ?`, ids, notice)
}

// queueWithNotice runs stmt for each id and stores notice, in one transaction.
func (db *DB) queueWithNotice(ctx context.Context, stmt string, ids []int64, notice *Delivery) ([]Stored, error) {
	var stored []Stored
	err := db.Write(ctx, func(tx *sql.Tx) error {
		stored = nil
		for _, id := range ids {
			if _, err := tx.Exec(stmt, id); err != nil {
				return fmt.Errorf("queue entry %d: %w", id, err)
			}
		}
		if notice == nil {
			return nil
		}
		var err error
		stored, err = db.acceptTx(tx, notice)
		return err
	})
	return stored, err
}

// QueueSelector picks entries for the admin operations: by id, by domain, or all.
type QueueSelector struct {
	ID     int64
	Domain string
	All    bool
}

func (s QueueSelector) where() (string, []any, error) {
	switch {
	case s.ID != 0:
		return "id = ?", []any{s.ID}, nil
	case s.Domain != "":
		return "domain = ?", []any{strings.ToLower(s.Domain)}, nil
	case s.All:
		return "1 = 1", nil, nil
	}
	return "", nil, errors.New("select entries by id, by domain or all")
}

func (db *DB) queueUpdate(ctx context.Context, sel QueueSelector, set string, args ...any) (int64, error) {
	return db.queueExec(ctx, sel, `UPDATE queue SET `+set, args...)
}

// queueExec runs stmt (an UPDATE or DELETE of queue) on the selected entries and returns
// how many it touched; ErrNotFound for a single entry that does not exist.
func (db *DB) queueExec(ctx context.Context, sel QueueSelector, stmt string, args ...any) (int64, error) {
	where, wargs, err := sel.where()
	if err != nil {
		return 0, err
	}
	var n int64
	err = db.Write(ctx, func(tx *sql.Tx) error {
		res, err := tx.Exec(stmt+` WHERE `+where, append(args, wargs...)...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err == nil && n == 0 && sel.ID != 0 {
		return 0, fmt.Errorf("queue entry %d: %w", sel.ID, ErrNotFound)
	}
	return n, err
}

// QueueRetry makes the selected queued entries due now.
func (db *DB) QueueRetry(ctx context.Context, sel QueueSelector) (int64, error) {
	return db.queueUpdate(ctx, sel, "next_attempt = ?", db.now().Unix())
}

// QueueHold stops delivery attempts for the selected entries until released.
func (db *DB) QueueHold(ctx context.Context, sel QueueSelector) (int64, error) {
	return db.queueUpdate(ctx, sel, "state = 'hold'")
}

// QueueRelease puts held entries back in the queue, due now.
func (db *DB) QueueRelease(ctx context.Context, sel QueueSelector) (int64, error) {
	return db.queueUpdate(ctx, sel, "state = 'queued', next_attempt = ?", db.now().Unix())
}

// QueueDrop deletes the selected entries without a notice to the sender.
func (db *DB) QueueDrop(ctx context.Context, sel QueueSelector) (int64, error) {
	return db.queueExec(ctx, sel, `DELETE FROM queue`)
}

// DomainSummary is one line of the queue summary: how many entries wait for a domain and
// how old they are (like Postfix's qshape).
type DomainSummary struct {
	Domain string `json:"domain"`
	// Provider is the destination's provider (or group) as the running server routes
	// it; the store does not know it ("" from QueueSummary).
	Provider string         `json:"provider"`
	Total    int            `json:"total"`
	Held     int            `json:"held"`
	Bulk     int            `json:"bulk"` // of Total, bulk mail (the rest is transactional)
	Ages     map[string]int `json:"ages"` // bucket label ("5m", "1h", "4h", "1d", "older") -> count
}

// AgeBuckets are the upper bounds of the summary's age columns.
var AgeBuckets = []struct {
	Label string
	Max   time.Duration
}{{"5m", 5 * time.Minute}, {"1h", time.Hour}, {"4h", 4 * time.Hour}, {"1d", 24 * time.Hour}, {"older", 1 << 62}}

// QueueSummary counts entries per destination domain, most first, with age buckets.
func (db *DB) QueueSummary(ctx context.Context) ([]DomainSummary, error) {
	rows, err := db.rdb.QueryContext(ctx, `SELECT domain, created, state, class FROM queue`)
	if err != nil {
		return nil, fmt.Errorf("queue summary: %w", err)
	}
	defer rows.Close()
	now := db.now()
	by := map[string]*DomainSummary{}
	var order []string
	for rows.Next() {
		var d, state, class string
		var created int64
		if err := rows.Scan(&d, &created, &state, &class); err != nil {
			return nil, err
		}
		s := by[d]
		if s == nil {
			s = &DomainSummary{Domain: d, Ages: map[string]int{}}
			by[d] = s
			order = append(order, d)
		}
		s.Total++
		if state == StateHold {
			s.Held++
		}
		if class == ClassBulk {
			s.Bulk++
		}
		age := now.Sub(time.Unix(created, 0))
		for _, b := range AgeBuckets {
			if age <= b.Max {
				s.Ages[b.Label]++
				break
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]DomainSummary, 0, len(order))
	for _, d := range order {
		out = append(out, *by[d])
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Total != out[j].Total {
			return out[i].Total > out[j].Total
		}
		return out[i].Domain < out[j].Domain
	})
	return out, nil
}
