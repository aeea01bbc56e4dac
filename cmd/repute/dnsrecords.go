package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/repute-mail/repute/internal/auth"
	"github.com/repute-mail/repute/internal/store"
)

// addDomainKeys generates and stores the DKIM keys of a new domain: RSA-2048 always, and an
// Ed25519 key (RFC 8463) as well when asked for; every message is then signed with each.
func addDomainKeys(ctx context.Context, db *store.DB, domain string, ed25519 bool, now time.Time) ([]auth.DKIMKey, error) {
	algs := []auth.KeyAlgorithm{auth.KeyRSA}
	if ed25519 {
		algs = append(algs, auth.KeyEd25519)
	}
	var keys []auth.DKIMKey
	for _, alg := range algs {
		k, err := auth.GenerateDKIMKey(domain, alg, now)
		if err != nil {
			return nil, err
		}
		pem, err := k.MarshalPrivate()
		if err != nil {
			return nil, err
		}
		if err := db.AddDKIMKey(ctx, store.DKIMKey{Domain: domain, Selector: k.Selector, Algorithm: string(alg), PrivatePEM: pem}); err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// cmdDNSRecords prints, as a zone-file snippet, the DNS records a domain needs. This
// version covers MX, SPF and DKIM; the list grows with the features that need records.
func cmdDNSRecords(e *env, args []string) error {
	pos, err := parseFlags(stdFlags(e, "dns records", false), args)
	if err != nil || len(pos) != 1 {
		return errUsage
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	domain := strings.ToLower(strings.TrimSuffix(pos[0], "."))
	return withStore(e, func(ctx context.Context, db *store.DB) error {
		if ok, err := db.IsLocalDomain(ctx, domain); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("%s is not a local domain (add it with 'repute domain add %s')", domain, domain)
		}
		keys, err := db.DKIMKeys(ctx, domain)
		if err != nil {
			return err
		}
		w := e.stdout
		fmt.Fprintf(w, "; DNS records for %s (mail server %s)\n", domain, cfg.Hostname)
		fmt.Fprintf(w, "%s.\t3600\tIN\tMX\t10 %s.\n", domain, cfg.Hostname)
		fmt.Fprintf(w, "; SPF: only this domain's MX hosts send its mail\n")
		fmt.Fprintf(w, "%s.\t3600\tIN\tTXT\t\"v=spf1 mx -all\"\n", domain)
		for _, k := range keys {
			until := time.Unix(k.Changed, 0).Add(retiredGrace)
			if k.State == store.KeyRetired && time.Now().After(until) {
				continue // past its grace period: the record can go
			}
			dk, err := auth.ParseDKIMKey(k.Domain, k.Selector, k.PrivatePEM)
			if err != nil {
				return fmt.Errorf("DKIM key %s: %w", k.Selector, err)
			}
			switch k.State {
			case store.KeyRetired:
				fmt.Fprintf(w, "; DKIM %s key %s (retired: keep published until %s)\n", k.Algorithm, k.Selector, until.UTC().Format("2006-01-02"))
			case store.KeyPending:
				fmt.Fprintf(w, "; DKIM %s key %s (pending: publish, then run 'repute dkim rotate %s' again)\n", k.Algorithm, k.Selector, domain)
			default:
				fmt.Fprintf(w, "; DKIM %s key %s (%s)\n", k.Algorithm, k.Selector, k.State)
			}
			fmt.Fprintln(w, dk.ZoneLine())
		}
		if len(keys) == 0 {
			fmt.Fprintf(w, "; no DKIM key: this domain was added without one\n")
		}
		return nil
	})
}
