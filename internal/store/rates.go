package store

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Outcome kinds counted for rates.
const (
	CountDelivered   = "delivered"
	CountBounced     = "bounced"
	CountDeferred    = "deferred"
	CountComplaint   = "complaint"
	CountUnsubscribe = "unsubscribe"
)

// OutcomeCount is one outcome to count: a delivery, a bounce of some category, a
// deferral, a complaint, for a sending domain and a provider.
type OutcomeCount struct {
	Time         time.Time
	SenderDomain string
	Provider     string // provider id, or the recipient domain when the provider is unknown
	Kind         string
	Category     string
}

// CountOutcomes adds outcomes to the hourly counters, in one write.
func (db *DB) CountOutcomes(ctx context.Context, cs []OutcomeCount) error {
	if len(cs) == 0 {
		return nil
	}
	return db.Write(ctx, func(tx *sql.Tx) error {
		for _, c := range cs {
			if _, err := tx.Exec(`INSERT INTO outcome_counts (hour, sender_domain, provider, kind, category, n)
				VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT (hour, sender_domain, provider, kind, category) DO UPDATE SET n = n + 1`,
				c.Time.Unix()/3600, strings.ToLower(c.SenderDomain), c.Provider, c.Kind, c.Category); err != nil {
				return fmt.Errorf("count outcome: %w", err)
			}
		}
		return nil
	})
}

// Rate is what happened to the mail of one sending domain at one provider over a window.
type Rate struct {
	SenderDomain  string           `json:"sender_domain"`
	Provider      string           `json:"provider"`
	Delivered     int64            `json:"delivered"`
	Bounced       int64            `json:"bounced"`
	Deferred      int64            `json:"deferred"`
	Complaints    int64            `json:"complaints"`
	Unsubscribes  int64            `json:"unsubscribes"`
	ByCategory    map[string]int64 `json:"bounced_by_category"`
	BounceRate    float64          `json:"bounce_rate"`    // bounced / (delivered + bounced)
	ComplaintRate float64          `json:"complaint_rate"` // complaints / delivered
}

// Rates sums the counters from since until now per sending domain and provider (both ""
// when group is false for that dimension, for totals).
func (db *DB) Rates(ctx context.Context, since time.Time, byDomain, byProvider bool) ([]Rate, error) {
	rows, err := db.rdb.QueryContext(ctx, `SELECT sender_domain, provider, kind, category, SUM(n) FROM outcome_counts
		WHERE hour >= ? GROUP BY sender_domain, provider, kind, category`, since.Unix()/3600)
	if err != nil {
		return nil, fmt.Errorf("read outcome counts: %w", err)
	}
	defer rows.Close()
	type key struct{ domain, provider string }
	m := map[key]*Rate{}
	for rows.Next() {
		var k key
		var kind, category string
		var n int64
		if err := rows.Scan(&k.domain, &k.provider, &kind, &category, &n); err != nil {
			return nil, fmt.Errorf("read outcome counts: %w", err)
		}
		if !byDomain {
			k.domain = ""
		}
		if !byProvider {
			k.provider = ""
		}
		r := m[k]
		if r == nil {
			r = &Rate{SenderDomain: k.domain, Provider: k.provider, ByCategory: map[string]int64{}}
			m[k] = r
		}
		switch kind {
		case CountDelivered:
			r.Delivered += n
		case CountBounced:
			r.Bounced += n
			r.ByCategory[category] += n
		case CountDeferred:
			r.Deferred += n
		case CountComplaint:
			r.Complaints += n
		case CountUnsubscribe:
			r.Unsubscribes += n
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]Rate, 0, len(m))
	for _, r := range m {
		if sent := r.Delivered + r.Bounced; sent > 0 {
			r.BounceRate = float64(r.Bounced) / float64(sent)
		}
		if r.Delivered > 0 {
			r.ComplaintRate = float64(r.Complaints) / float64(r.Delivered)
		}
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].SenderDomain != out[j].SenderDomain {
			return out[i].SenderDomain < out[j].SenderDomain
		}
		return out[i].Provider < out[j].Provider
	})
	return out, nil
}
