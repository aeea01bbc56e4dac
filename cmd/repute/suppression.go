package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/repute-mail/repute/internal/store"
)

// suppressionFlags parses the flags shared by the suppression commands. --domain names
// the sending domain; with only one local domain it may be left out.
func suppressionFlags(e *env, name string, listing bool, args []string) (pos []string, domain, note string, err error) {
	fs := stdFlags(e, name, listing)
	fs.StringVar(&domain, "domain", "", "sending domain")
	if name == "suppression add" {
		fs.StringVar(&note, "note", "", "why (stored with the entry)")
	}
	pos, err = parseFlags(fs, args)
	return pos, strings.ToLower(domain), note, err
}

// senderDomain returns domain, or the only local domain when domain is empty.
func senderDomain(ctx context.Context, db *store.DB, domain string) (string, error) {
	if domain != "" {
		return domain, nil
	}
	ds, err := db.Domains(ctx)
	if err != nil {
		return "", err
	}
	if len(ds) != 1 {
		return "", fmt.Errorf("%w: name the sending domain with --domain (there are %d local domains)", errUsage, len(ds))
	}
	return ds[0].Name, nil
}

func cmdSuppressionList(e *env, args []string) error {
	pos, domain, _, err := suppressionFlags(e, "suppression list", true, args)
	if err != nil || len(pos) != 0 {
		return errUsage
	}
	return withStore(e, func(ctx context.Context, db *store.DB) error {
		rows, err := db.Suppressions(ctx, domain)
		if err != nil {
			return err
		}
		if e.json {
			return printJSON(e.stdout, nonNil(rows))
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SENDER DOMAIN\tADDRESS\tREASON\tSOURCE\tSINCE\tDETAIL")
		for _, s := range rows {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.SenderDomain, s.Address, s.Reason, s.Source,
				s.Created.UTC().Format("2006-01-02 15:04"), abbreviate(s.Detail, 60))
		}
		return tw.Flush()
	})
}

func cmdSuppressionAdd(e *env, args []string) error {
	var note string
	return forEachAddress(e, "suppression add", args, &note, func(ctx context.Context, db *store.DB, domain, a string) error {
		if !strings.Contains(a, "@") {
			return fmt.Errorf("%q is not an address", a)
		}
		added, err := db.Suppress(ctx, store.Suppression{SenderDomain: domain, Address: a, Reason: "manual", Source: "admin", Detail: note})
		if err != nil {
			return err
		}
		verb := "suppressed"
		if !added {
			verb = "was already suppressed; entry updated"
		}
		fmt.Fprintf(e.stdout, "%s %s for %s\n", a, verb, domain)
		return nil
	})
}

func cmdSuppressionRemove(e *env, args []string) error {
	return forEachAddress(e, "suppression remove", args, nil, func(ctx context.Context, db *store.DB, domain, a string) error {
		if err := db.Unsuppress(ctx, domain, a); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s may be mailed again from %s\n", a, domain)
		return nil
	})
}

// forEachAddress parses the arguments of add and remove (addresses, --domain and, when
// note is not nil, --note) and runs fn for each address with the sending domain.
func forEachAddress(e *env, name string, args []string, note *string,
	fn func(ctx context.Context, db *store.DB, domain, addr string) error) error {
	pos, domain, n, err := suppressionFlags(e, name, false, args)
	if err != nil || len(pos) == 0 {
		return errUsage
	}
	if note != nil {
		*note = n
	}
	return withStore(e, func(ctx context.Context, db *store.DB) error {
		d, err := senderDomain(ctx, db, domain)
		if err != nil {
			return err
		}
		for _, a := range pos {
			if err := fn(ctx, db, d, a); err != nil {
				return err
			}
		}
		return nil
	})
}

// abbreviate shortens s to n characters for a table cell.
func abbreviate(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}
