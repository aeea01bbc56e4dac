package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/repute-mail/repute/internal/auth"
	"github.com/repute-mail/repute/internal/config"
	"github.com/repute-mail/repute/internal/doctor"
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

// cmdDNSRecords prints every DNS record the local domains (those named, or all) need: a
// zone-file snippet with each record's reason as comments, or with --json the records as
// data (docs/CONTRACTS.md §12), notes then going to standard error.
func cmdDNSRecords(e *env, args []string) error {
	pos, err := parseFlags(stdFlags(e, "dns records", true), args)
	if err != nil {
		return errUsage
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	return withStore(e, func(ctx context.Context, db *store.DB) error {
		setup, notes, err := dnsSetup(ctx, cfg, db, pos, time.Now())
		if err != nil {
			return err
		}
		recs := doctor.Records(setup)
		if e.json {
			var out []doctor.Record
			for _, r := range recs {
				if r.IsNote() {
					notes = append(notes, r.Comment)
				} else {
					out = append(out, r)
				}
			}
			for _, n := range notes {
				fmt.Fprintf(e.stderr, "note: %s\n", n)
			}
			return printJSON(e.stdout, nonNil(out))
		}
		names := make([]string, len(setup.Domains))
		for i, d := range setup.Domains {
			names[i] = d.Name
		}
		fmt.Fprintf(e.stdout, "; DNS records for %s (mail server %s).\n", strings.Join(names, ", "), setup.Hostname)
		fmt.Fprintf(e.stdout, "; Publish each in the zone that holds its name ('repute dns push' does it by RFC 2136 update).\n")
		for _, n := range notes {
			fmt.Fprintf(e.stdout, "; Note: %s\n", n)
		}
		fmt.Fprintln(e.stdout)
		return doctor.WriteZone(e.stdout, recs)
	})
}

// cmdDNSPush publishes the records of cmdDNSRecords by RFC 2136 dynamic update, signed
// with a TSIG key, zone by zone: each record goes to the zone that holds it on the server.
func cmdDNSPush(e *env, args []string) error {
	fs := stdFlags(e, "dns push", false)
	server := fs.String("server", "", "IP:PORT of the zone's primary server")
	keyFile := fs.String("tsig-key", "", "TSIG key file (tsig-keygen or keymgr -t output)")
	zoneFlag := fs.String("zone", "", "the zone to update, when the server's SOA answers do not find it")
	pos, err := parseFlags(fs, args)
	if err != nil || *server == "" || *keyFile == "" {
		return errUsage
	}
	addr, err := serverAddr(*server)
	if err != nil {
		return err
	}
	key, err := doctor.ReadTSIGKey(*keyFile)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	return withStore(e, func(ctx context.Context, db *store.DB) error {
		setup, notes, err := dnsSetup(ctx, cfg, db, pos, time.Now())
		if err != nil {
			return err
		}
		for _, n := range notes {
			fmt.Fprintf(e.stderr, "note: %s\n", n)
		}
		ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		zones, order, err := groupByZone(ctx, e, addr, key, *zoneFlag, setup, doctor.Records(setup))
		if err != nil {
			return err
		}
		var errs []error
		for _, z := range order {
			if err := doctor.Push(ctx, addr, key, z, zones[z]); err != nil {
				errs = append(errs, err)
				continue
			}
			fmt.Fprintf(e.stdout, "%s: %d records published at %s\n", z, len(zones[z]), addr)
		}
		return errors.Join(errs...)
	})
}

// groupByZone sorts the records into the zones that hold them on the server (all into
// zoneFlag when it is set). The mail host's own records may live in a zone this server
// does not serve: they are then left out with a warning, not an error.
func groupByZone(ctx context.Context, e *env, server string, key doctor.TSIGKey, zoneFlag string,
	setup doctor.Setup, recs []doctor.Record) (map[string][]doctor.Record, []string, error) {
	zoneOf := map[string]string{}
	zones := map[string][]doctor.Record{}
	var order []string
	for _, r := range recs {
		if r.IsNote() {
			continue
		}
		z, ok := zoneOf[r.Domain]
		if !ok {
			hostOnly := r.Domain == setup.Hostname && !isSetupDomain(setup, r.Domain)
			var err error
			if z = zoneFlag; z == "" {
				z, err = doctor.FindZone(ctx, server, key, r.Domain)
			} else if !inZone(r.Domain, z) {
				err = fmt.Errorf("%s is not in zone %s", r.Domain, z)
			}
			switch {
			case err != nil && hostOnly:
				fmt.Fprintf(e.stderr, "warning: the mail host's records (A/AAAA, SPF and TLSA of %s) are not "+
					"published: %v\n", r.Domain, err)
				z = ""
			case err != nil:
				return nil, nil, err
			}
			zoneOf[r.Domain] = z
		}
		if z == "" {
			continue
		}
		if _, ok := zones[z]; !ok {
			order = append(order, z)
		}
		zones[z] = append(zones[z], r)
	}
	return zones, order, nil
}

// inZone reports whether name is zone or lies under it.
func inZone(name, zone string) bool {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	zone = strings.ToLower(strings.TrimSuffix(zone, "."))
	return name == zone || strings.HasSuffix(name, "."+zone)
}

func isSetupDomain(s doctor.Setup, name string) bool {
	return slices.ContainsFunc(s.Domains, func(d doctor.Domain) bool { return d.Name == name })
}

// serverAddr accepts "IP:PORT", or an IP alone for port 53.
func serverAddr(s string) (string, error) {
	if _, _, err := net.SplitHostPort(s); err == nil {
		return s, nil
	}
	if ip, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return netip.AddrPortFrom(ip, 53).String(), nil
	}
	return "", fmt.Errorf("--server %q: give the primary server as IP:PORT, such as 192.0.2.53:53", s)
}

// dnsSetup reads what the records are computed from: the configuration and the named
// local domains (all of them when names is empty) with the DKIM keys to publish. The notes
// say what could not be known.
func dnsSetup(ctx context.Context, cfg config.Config, db *store.DB, names []string, now time.Time) (doctor.Setup, []string, error) {
	s, err := doctor.SetupAt(ctx, cfg, db, now, names...)
	return s, s.Notes, err
}
