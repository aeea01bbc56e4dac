package submit

import (
	"context"
	"fmt"

	"github.com/repute-mail/repute/internal/auth"
	"github.com/repute-mail/repute/internal/store"
)

// KeyStore holds the domains' DKIM keys.
type KeyStore interface {
	DKIMKeys(ctx context.Context, domain string) ([]store.DKIMKey, error)
}

// ActiveKeys returns a function that reads a domain's active DKIM keys, parsed: what
// signs (auth.Signer) and what seals forwarded mail (ARC).
func ActiveKeys(ks KeyStore) func(ctx context.Context, domain string) ([]auth.DKIMKey, error) {
	return func(ctx context.Context, domain string) ([]auth.DKIMKey, error) {
		recs, err := ks.DKIMKeys(ctx, domain)
		if err != nil {
			return nil, err
		}
		var keys []auth.DKIMKey
		for _, r := range recs {
			if r.State != store.KeyActive {
				continue
			}
			k, err := auth.ParseDKIMKey(r.Domain, r.Selector, r.PrivatePEM)
			if err != nil {
				return nil, fmt.Errorf("DKIM key %s of %s: %w", r.Selector, domain, err)
			}
			keys = append(keys, k)
		}
		return keys, nil
	}
}

// NewSigner signs with the active keys of ks (cached by auth.Signer for a minute).
func NewSigner(ks KeyStore) *auth.Signer {
	return &auth.Signer{Keys: ActiveKeys(ks)}
}
