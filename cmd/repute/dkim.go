package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/repute-mail/repute/internal/auth"
	"github.com/repute-mail/repute/internal/dns"
	"github.com/repute-mail/repute/internal/doctor"
	"github.com/repute-mail/repute/internal/store"
)

// retiredGrace is how long a retired key's record stays listed by 'dns records': mail
// signed just before a rotation may still be verified for days (queues, forwarding).
const retiredGrace = doctor.RetiredGrace

func cmdDKIMList(e *env, args []string) error {
	return listing(e, "dkim list", args, func(db *store.DB, ctx context.Context) ([]store.DKIMKey, error) {
		return db.DKIMKeys(ctx, "")
	}, "DOMAIN\tSELECTOR\tALGORITHM\tSTATE\tSINCE", func(k store.DKIMKey) string {
		return fmt.Sprintf("%s\t%s\t%s\t%s\t%s", k.Domain, k.Selector, k.Algorithm, k.State, unix(k.Changed))
	})
}

// cmdDKIMRotate replaces a domain's signing key in two runs. The first creates a pending
// key and prints its record; once that record is visible in DNS, the next run switches
// signing to it and retires the old key, whose record stays listed for retiredGrace.
func cmdDKIMRotate(e *env, args []string) error {
	fs := stdFlags(e, "dkim rotate", false)
	alg := fs.String("algorithm", "rsa", `"rsa" or "ed25519"`)
	pos, err := parseFlags(fs, args)
	if err != nil || len(pos) != 1 || (*alg != "rsa" && *alg != "ed25519") {
		return errUsage
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	domain := strings.ToLower(pos[0])
	return withStore(e, func(ctx context.Context, db *store.DB) error {
		keys, err := db.DKIMKeys(ctx, domain)
		if err != nil {
			return err
		}
		for _, k := range keys {
			if k.State == store.KeyPending && k.Algorithm == *alg {
				return activateIfPublished(ctx, e, db, cfg.DNS.Resolver, k)
			}
		}
		k, err := auth.GenerateDKIMKey(domain, auth.KeyAlgorithm(*alg), time.Now())
		if err != nil {
			return err
		}
		k.Selector = freeSelector(k.Selector, keys)
		pem, err := k.MarshalPrivate()
		if err != nil {
			return err
		}
		if err := db.AddDKIMKey(ctx, store.DKIMKey{Domain: domain, Selector: k.Selector, Algorithm: *alg,
			State: store.KeyPending, PrivatePEM: pem}); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "new %s key %s for %s (pending). Publish this record:\n%s\n", *alg, k.Selector, domain, k.ZoneLine())
		fmt.Fprintf(e.stdout, "then run 'repute dkim rotate %s' again: signing switches once the record is visible in DNS.\n", domain)
		return nil
	})
}

// freeSelector returns sel, or sel with a number appended if the domain already has it
// (a second rotation in the same month).
func freeSelector(sel string, keys []store.DKIMKey) string {
	taken := map[string]bool{}
	for _, k := range keys {
		taken[k.Selector] = true
	}
	for n := 2; taken[sel]; n++ {
		sel = fmt.Sprintf("%s%d", strings.TrimRight(sel, "0123456789"), n)
	}
	return sel
}

// activateIfPublished switches signing to the pending key k if its record is visible.
func activateIfPublished(ctx context.Context, e *env, db *store.DB, server string, k store.DKIMKey) error {
	dk, err := auth.ParseDKIMKey(k.Domain, k.Selector, k.PrivatePEM)
	if err != nil {
		return err
	}
	name, want := dk.DNSRecord()
	r, err := dns.New(server, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	txts, _, err := r.LookupTXT(lctx, name)
	if err != nil && !dns.IsNotFound(err) {
		return fmt.Errorf("looking up %s: %w", name, err)
	}
	found := false
	for _, t := range txts {
		found = found || tagP(t) == tagP(want)
	}
	if !found {
		return errors.New("the record of pending key " + k.Selector + " is not visible at " + name +
			" yet (DNS changes can take a while); signing still uses the current key. Publish:\n" + dk.ZoneLine())
	}
	if err := db.ActivateDKIMKey(ctx, k.Domain, k.Selector); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s now signs with %s; the previous %s key is retired: keep its record published until %s.\n",
		k.Domain, k.Selector, k.Algorithm, time.Now().Add(retiredGrace).UTC().Format("2006-01-02"))
	return nil
}

// tagP returns the p= (public key) value of a DKIM key record, spaces removed.
func tagP(record string) string {
	for _, tag := range strings.Split(record, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(tag), "=")
		if ok && strings.TrimSpace(k) == "p" {
			return strings.Join(strings.Fields(v), "")
		}
	}
	return ""
}
