package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/repute-mail/repute/internal/app"
	"github.com/repute-mail/repute/internal/config"
	"github.com/repute-mail/repute/internal/control"
	"github.com/repute-mail/repute/internal/store"
)

func loadConfig(e *env) (config.Config, error) {
	if e.configPath == "" {
		return config.Config{}, noConfigError()
	}
	cfg, err := config.Load(e.configPath)
	if err != nil {
		return cfg, err
	}
	if err := cfg.FillDefaults(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// withStore runs fn with the configured store open. Admin commands open the database
// themselves; SQLite's WAL lets them run beside a serving process.
func withStore(e *env, fn func(ctx context.Context, db *store.DB) error) error {
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	ctx := context.Background()
	db, err := app.OpenStore(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		return err
	}
	defer db.Close()
	return fn(ctx, db)
}

func cmdConfigCheck(e *env, args []string) error {
	if pos, err := parseFlags(stdFlags(e, "config check", false), args); err != nil || len(pos) != 0 {
		return errUsage
	}
	if _, err := loadConfig(e); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s: OK\n", e.configPath)
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func unix(t int64) string { return time.Unix(t, 0).UTC().Format(time.RFC3339) }

func cmdDomainAdd(e *env, args []string) error {
	fs := stdFlags(e, "domain add", false)
	ed := fs.Bool("ed25519", false, "also sign with an Ed25519 key (RFC 8463)")
	pos, err := parseFlags(fs, args)
	if err != nil || len(pos) != 1 {
		return errUsage
	}
	return withStore(e, func(ctx context.Context, db *store.DB) error {
		d, err := db.AddDomain(ctx, pos[0])
		if err != nil {
			return err
		}
		keys, err := addDomainKeys(ctx, db, d.Name, *ed, time.Now())
		if err != nil {
			return fmt.Errorf("domain %s added, but its DKIM keys were not: %w", d.Name, err)
		}
		fmt.Fprintf(e.stdout, "domain %s added\n", d.Name)
		for _, k := range keys {
			fmt.Fprintf(e.stdout, "DKIM %s key %s: publish this record (all records: repute dns records %s)\n%s\n",
				k.Algorithm, k.Selector, d.Name, k.ZoneLine())
		}
		domainsChanged(e)
		return nil
	})
}

func cmdDomainList(e *env, args []string) error {
	return listing(e, "domain list", args, (*store.DB).Domains, "DOMAIN\tADDED",
		func(d store.Domain) string { return d.Name + "\t" + unix(d.Created) })
}

// listing runs a listing command: load the rows, then print them as JSON (--json) or as
// a table with the given header and one row per element.
func listing[T any](e *env, name string, args []string, load func(*store.DB, context.Context) ([]T, error),
	header string, row func(T) string) error {
	if pos, err := parseFlags(stdFlags(e, name, true), args); err != nil || len(pos) != 0 {
		return errUsage
	}
	return withStore(e, func(ctx context.Context, db *store.DB) error {
		rows, err := load(db, ctx)
		if err != nil {
			return err
		}
		if e.json {
			return printJSON(e.stdout, nonNil(rows))
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, header)
		for _, r := range rows {
			fmt.Fprintln(tw, row(r))
		}
		return tw.Flush()
	})
}

func cmdDomainDel(e *env, args []string) error {
	pos, err := parseFlags(stdFlags(e, "domain del", false), args)
	if err != nil || len(pos) != 1 {
		return errUsage
	}
	return withStore(e, func(ctx context.Context, db *store.DB) error {
		err := db.DelDomain(ctx, pos[0])
		if err == nil {
			fmt.Fprintf(e.stdout, "domain %s deleted\n", pos[0])
			domainsChanged(e)
		}
		return err
	})
}

// readPassword takes the password from stdin (--password-stdin: first line) or generates one.
func readPassword(e *env, fromStdin bool) (pw string, generated bool, err error) {
	if !fromStdin {
		return randomPassword(), true, nil
	}
	line, err := bufio.NewReader(e.stdin).ReadString('\n')
	if err != nil && err != io.EOF {
		return "", false, fmt.Errorf("read password: %w", err)
	}
	pw = strings.TrimRight(line, "\r\n")
	if pw == "" {
		return "", false, fmt.Errorf("empty password on standard input")
	}
	return pw, false, nil
}

// addressAndPassword parses "ADDRESS [--password-stdin]" and gets the password: from
// standard input, or generated (then printed after success).
func addressAndPassword(e *env, name string, args []string) (addr, pw string, generated bool, err error) {
	fs := stdFlags(e, name, false)
	stdin := fs.Bool("password-stdin", false, "read the password from standard input")
	pos, err := parseFlags(fs, args)
	if err != nil || len(pos) != 1 {
		return "", "", false, errUsage
	}
	pw, generated, err = readPassword(e, *stdin)
	return pos[0], pw, generated, err
}

func cmdUserAdd(e *env, args []string) error {
	addr, pw, generated, err := addressAndPassword(e, "user add", args)
	if err != nil {
		return err
	}
	return withStore(e, func(ctx context.Context, db *store.DB) error {
		u, err := db.AddUser(ctx, addr, pw)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "user %s added\n", u.Address)
		if generated {
			fmt.Fprintf(e.stdout, "password: %s\n", pw)
		}
		return nil
	})
}

func cmdUserList(e *env, args []string) error {
	return listing(e, "user list", args, (*store.DB).Users, "USER\tADDED",
		func(u store.User) string { return u.Address + "\t" + unix(u.Created) })
}

func cmdUserDel(e *env, args []string) error {
	pos, err := parseFlags(stdFlags(e, "user del", false), args)
	if err != nil || len(pos) != 1 {
		return errUsage
	}
	return withStore(e, func(ctx context.Context, db *store.DB) error {
		err := db.DelUser(ctx, pos[0])
		if err == nil {
			fmt.Fprintf(e.stdout, "user %s deleted with all its mail\n", pos[0])
		}
		return err
	})
}

func cmdUserPasswd(e *env, args []string) error {
	addr, pw, generated, err := addressAndPassword(e, "user passwd", args)
	if err != nil {
		return err
	}
	return withStore(e, func(ctx context.Context, db *store.DB) error {
		if err := db.SetPassword(ctx, addr, pw); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "password of %s changed\n", addr)
		if generated {
			fmt.Fprintf(e.stdout, "password: %s\n", pw)
		}
		return nil
	})
}

func cmdAliasAdd(e *env, args []string) error {
	pos, err := parseFlags(stdFlags(e, "alias add", false), args)
	if err != nil || len(pos) < 2 {
		return errUsage
	}
	return withStore(e, func(ctx context.Context, db *store.DB) error {
		err := db.AddAlias(ctx, pos[0], pos[1:]...)
		if err == nil {
			fmt.Fprintf(e.stdout, "alias %s -> %s added\n", pos[0], strings.Join(pos[1:], ", "))
		}
		return err
	})
}

func cmdAliasList(e *env, args []string) error {
	return listing(e, "alias list", args, (*store.DB).Aliases, "ALIAS\tTARGET",
		func(a store.Alias) string { return a.Address + "\t" + a.Target })
}

func cmdAliasDel(e *env, args []string) error {
	pos, err := parseFlags(stdFlags(e, "alias del", false), args)
	if err != nil || len(pos) < 1 {
		return errUsage
	}
	return withStore(e, func(ctx context.Context, db *store.DB) error {
		err := db.DelAlias(ctx, pos[0], pos[1:]...)
		if err == nil {
			fmt.Fprintf(e.stdout, "alias %s deleted\n", pos[0])
		}
		return err
	})
}

// nonNil makes empty listings print as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// domainsChanged tells a running server that the local domains changed, so that it gets
// (or stops renewing) their certificates now rather than within the hour.
func domainsChanged(e *env) {
	cfg, err := loadConfig(e)
	if err != nil {
		return
	}
	control.Send(cfg.DataDir, "domains") // no server running: it reads the domains at start
}
