package app

import (
	"context"

	"github.com/repute-mail/repute/internal/route"
	"github.com/repute-mail/repute/internal/store"
)

// mtastsCache keeps the MTA-STS policies of routes in the store, so policies in force survive
// a restart (RFC 8461 §5.1: a cached policy protects against a blocked policy fetch).
type mtastsCache struct{ db *store.DB }

func (c mtastsCache) Get(ctx context.Context, domain string) (route.CachedPolicy, bool, error) {
	p, ok, err := c.db.MTASTSGet(ctx, domain)
	return route.CachedPolicy{RecordID: p.RecordID, Policy: p.Policy, Expires: p.Expires}, ok, err
}

func (c mtastsCache) Put(ctx context.Context, domain string, p route.CachedPolicy) error {
	return c.db.MTASTSPut(ctx, domain, store.MTASTSPolicy{RecordID: p.RecordID, Policy: p.Policy, Expires: p.Expires})
}
