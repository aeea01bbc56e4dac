package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/repute-mail/repute/internal/control"
	"github.com/repute-mail/repute/internal/store"
)

func cmdQueueList(e *env, args []string) error {
	return listing(e, "queue list", args, (*store.DB).Queue, "ID\tMSG\tFROM\tTO\tSIZE\tQUEUED\tATTEMPTS\tSTATE\tLAST ERROR",
		func(m store.QueueEntry) string {
			return fmt.Sprintf("%d\t%s\t<%s>\t<%s>\t%d\t%s\t%d\t%s\t%s", m.ID, m.MsgID, m.From, m.Rcpt, m.Size,
				unix(m.Created), m.Attempts, m.State, shorten(m.LastError, 60))
		})
}

func shorten(s string, n int) string {
	s = termSafe(s)
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

// termSafe makes text that came from outside (a remote server's reply) safe to print on
// a terminal: control characters (escape sequences, carriage returns) become "?".
func termSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 && r != '\t' || r == 0x7f || r >= 0x80 && r < 0xa0 {
			return '?'
		}
		return r
	}, s)
}

func cmdQueueShow(e *env, args []string) error {
	pos, err := parseFlags(stdFlags(e, "queue show", true), args)
	if err != nil || len(pos) != 1 {
		return errUsage
	}
	id, err := strconv.ParseInt(pos[0], 10, 64)
	if err != nil {
		return errUsage
	}
	return withStore(e, func(ctx context.Context, db *store.DB) error {
		q, err := db.QueueGet(ctx, id)
		if err != nil {
			return err
		}
		if e.json {
			return printJSON(e.stdout, q)
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		next := unix(q.NextAttempt)
		if q.State == store.StateHold {
			next = "on hold"
		}
		for _, kv := range [][2]string{{"id", strconv.FormatInt(q.ID, 10)}, {"message", q.MsgID}, {"from", "<" + q.From + ">"},
			{"to", "<" + q.Rcpt + ">"}, {"size", strconv.FormatInt(q.Size, 10)}, {"queued", unix(q.Created)},
			{"attempts", strconv.Itoa(q.Attempts)}, {"next attempt", next}, {"last MX", termSafe(q.LastMX)}, {"last error", termSafe(q.LastError)}} {
			fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
		}
		return tw.Flush()
	})
}

// queueSelector parses "ID", "--all" or "--domain D" for the queue operations.
func queueSelector(e *env, name string, args []string, allowAll bool) (store.QueueSelector, error) {
	fs := stdFlags(e, name, false)
	all := fs.Bool("all", false, "every entry")
	domain := fs.String("domain", "", "every entry for this recipient domain")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return store.QueueSelector{}, errUsage
	}
	var sel store.QueueSelector
	switch {
	case len(pos) == 1 && !*all && *domain == "":
		if sel.ID, err = strconv.ParseInt(pos[0], 10, 64); err != nil || sel.ID <= 0 {
			return sel, errUsage
		}
	case len(pos) == 0 && *all && *domain == "" && allowAll:
		sel.All = true
	case len(pos) == 0 && !*all && *domain != "":
		sel.Domain = *domain
	default:
		return sel, errUsage
	}
	return sel, nil
}

// queueOp runs one of the queue operations and reports how many entries it touched. The
// change is made in the store, so it works whether or not the server runs; a running
// server is then told over its control socket to look at the queue at once.
func queueOp(name, verb string, allowAll bool, op func(*store.DB, context.Context, store.QueueSelector) (int64, error)) func(*env, []string) error {
	return func(e *env, args []string) error {
		sel, err := queueSelector(e, name, args, allowAll)
		if err != nil {
			return err
		}
		err = withStore(e, func(ctx context.Context, db *store.DB) error {
			n, err := op(db, ctx, sel)
			if err == nil {
				fmt.Fprintf(e.stdout, "%d entries %s\n", n, verb)
			}
			return err
		})
		if err == nil {
			wakeServer(e)
		}
		return err
	}
}

// wakeServer tells a running server that the queue changed. Without one there is
// nothing to tell: the server reads the queue when it starts.
func wakeServer(e *env) {
	cfg, err := loadConfig(e)
	if err != nil {
		return
	}
	if _, err := control.Send(cfg.DataDir, "wake"); err != nil && !errors.Is(err, control.ErrNotRunning) {
		fmt.Fprintf(e.stderr, "repute: the running server could not be told (%v); it acts at its next queue scan\n", err)
	}
}

func cmdQueueSummary(e *env, args []string) error {
	if pos, err := parseFlags(stdFlags(e, "queue summary", true), args); err != nil || len(pos) != 0 {
		return errUsage
	}
	sum, fromServer, err := queueSummary(e)
	if err != nil {
		return err
	}
	if e.json {
		return printJSON(e.stdout, nonNil(sum))
	}
	labels := make([]string, len(store.AgeBuckets))
	for i, b := range store.AgeBuckets {
		labels[i] = "≤" + b.Label
	}
	labels[len(labels)-1] = "older"
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
	if fromServer {
		// Per provider and class: what each provider's lanes have in front of them.
		type key struct{ provider, class string }
		byProv := map[key]int{}
		var keys []key
		for _, s := range sum {
			p := s.Provider
			if p == "" {
				p = "(unknown)"
			}
			for _, c := range []struct {
				class string
				n     int
			}{{store.ClassTransactional, s.Total - s.Bulk}, {store.ClassBulk, s.Bulk}} {
				if c.n == 0 {
					continue
				}
				k := key{p, c.class}
				if _, ok := byProv[k]; !ok {
					keys = append(keys, k)
				}
				byProv[k] += c.n
			}
		}
		sort.Slice(keys, func(i, j int) bool {
			if keys[i].provider != keys[j].provider {
				return keys[i].provider < keys[j].provider
			}
			return keys[i].class > keys[j].class
		})
		fmt.Fprintf(tw, "PROVIDER\tCLASS\tQUEUED\t\n")
		for _, k := range keys {
			fmt.Fprintf(tw, "%s\t%s\t%d\t\n", k.provider, k.class, byProv[k])
		}
		fmt.Fprintf(tw, "\t\t\t\n")
	}
	fmt.Fprintf(tw, "DOMAIN\tPROVIDER\tTOTAL\tHELD\tBULK\t%s\t\n", strings.Join(labels, "\t"))
	total := 0
	for _, s := range sum {
		cells := make([]string, len(store.AgeBuckets))
		for i, b := range store.AgeBuckets {
			cells[i] = strconv.Itoa(s.Ages[b.Label])
		}
		p := s.Provider
		if p == "" {
			p = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t\n", s.Domain, p, s.Total, s.Held, s.Bulk, strings.Join(cells, "\t"))
		total += s.Total
	}
	fmt.Fprintf(tw, "TOTAL\t\t%d\t\t\t\t\t\t\t\t\n", total)
	if err := tw.Flush(); err != nil {
		return err
	}
	if !fromServer && len(sum) > 0 {
		fmt.Fprintln(e.stdout, "(providers are shown while the server runs: it knows where each domain's mail goes)")
	}
	return nil
}

// queueSummary asks the running server for the summary (with each domain's provider),
// or reads it from the store when no server runs.
func queueSummary(e *env) ([]store.DomainSummary, bool, error) {
	cfg, err := loadConfig(e)
	if err != nil {
		return nil, false, err
	}
	if out, err := control.Send(cfg.DataDir, "queue", "summary"); err == nil {
		var sum []store.DomainSummary
		if err := json.Unmarshal([]byte(out), &sum); err == nil {
			return sum, true, nil
		}
	}
	var sum []store.DomainSummary
	err = withStore(e, func(ctx context.Context, db *store.DB) error {
		var err error
		sum, err = db.QueueSummary(ctx)
		return err
	})
	return sum, false, err
}
