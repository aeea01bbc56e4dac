package dns

import (
	"context"
	"errors"
	"fmt"
)

// ErrNotValidating means the resolver's answer for a name in a signed zone was not
// authentic: the resolver does not validate DNSSEC, or its AD bit is not trusted (it is
// not on loopback and, for the system resolver, resolv.conf lacks "options trust-ad").
var ErrNotValidating = errors.New("resolver does not validate DNSSEC")

// CheckDNSSEC tells whether r gives authentic (DNSSEC-validated, trusted) answers, by
// asking for the NS records of name, which must lie in a signed zone: the root "." (the
// default, for "") on the internet, or the test zone on a lab resolver that only knows its
// own trust anchor. A signed zone's denial of existence counts too. It returns nil,
// ErrNotValidating (wrapped with the name), or the lookup error.
func CheckDNSSEC(ctx context.Context, r Resolver, name string) error {
	if name == "" {
		name = "."
	}
	if name[len(name)-1] != '.' {
		name += "."
	}
	_, result, err := r.LookupNS(ctx, name)
	if err != nil && !IsNotFound(err) {
		return fmt.Errorf("dnssec check: NS %s: %w", name, err)
	}
	if !result.Authentic {
		return fmt.Errorf("dnssec check: answer for NS %s not authentic: %w", name, ErrNotValidating)
	}
	return nil
}
