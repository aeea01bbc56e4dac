package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/repute-mail/repute/internal/dns"
	"github.com/repute-mail/repute/internal/doctor"
	"github.com/repute-mail/repute/internal/store"
)

// errChecksFailed makes repute check exit 1 after printing its report.
type errChecksFailed struct{ n int }

func (e errChecksFailed) Error() string {
	if e.n == 1 {
		return "1 check failed"
	}
	return fmt.Sprintf("%d checks failed", e.n)
}

// cmdCheck runs the live checks of every deliverability prerequisite (internal/doctor)
// and prints them; exit status 1 when one fails.
func cmdCheck(e *env, args []string) error {
	fs := stdFlags(e, "check", true)
	timeout := fs.Duration("timeout", 5*time.Second, "time allowed for each probe")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return errUsage
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	for i, d := range pos {
		pos[i] = strings.ToLower(strings.TrimSuffix(d, "."))
	}
	var setup doctor.Setup
	err = withStore(e, func(ctx context.Context, db *store.DB) error {
		var err error
		setup, err = doctor.SetupFrom(ctx, cfg, db, pos...)
		return err
	})
	if err != nil {
		return err
	}
	r, err := dns.New(cfg.DNS.Resolver, nil)
	if err != nil {
		return err
	}
	c := doctor.CheckerFor(cfg, setup)
	c.Resolver = r
	c.Timeout = *timeout
	c.Log = slog.New(slog.DiscardHandler)
	if !e.json && isTerminal(e.stderr) {
		c.Progress = func(id, target string) {
			fmt.Fprintf(e.stderr, "\r\033[Kchecking %s %s", id, target)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep := c.Run(ctx)
	if c.Progress != nil {
		fmt.Fprint(e.stderr, "\r\033[K")
	}
	if e.json {
		if err := printJSON(e.stdout, rep); err != nil {
			return err
		}
	} else {
		printReport(e.stdout, rep)
	}
	if rep.Failed() {
		return errChecksFailed{rep.Summary.Fail}
	}
	return nil
}

// printReport prints the results as a table, problems first with their fix.
func printReport(w io.Writer, rep *doctor.Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STATUS\tCHECK\tTARGET\tFOUND")
	for _, st := range []doctor.Status{doctor.Fail, doctor.Error, doctor.Warn, doctor.Pass} {
		for _, x := range rep.Checks {
			if x.Status == st {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", strings.ToUpper(string(x.Status)), x.ID, termSafe(x.Target), termSafe(x.Found))
			}
		}
	}
	tw.Flush()
	first := true
	for _, x := range rep.Checks {
		if x.Fix == "" || x.Status == doctor.Pass {
			continue
		}
		if first {
			fmt.Fprintln(w, "\nWhat to do:")
			first = false
		}
		fmt.Fprintf(w, "- %s %s: %s\n", x.ID, termSafe(x.Target), termSafe(x.Fix))
		if x.URL != "" {
			fmt.Fprintf(w, "  %s\n", termSafe(x.URL))
		}
	}
	s := rep.Summary
	fmt.Fprintf(w, "\n%d passed, %d warnings, %d failed, %d could not run\n", s.Pass, s.Warn, s.Fail, s.Error)
}

// isTerminal reports whether w is a terminal (a progress line is shown only there).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
