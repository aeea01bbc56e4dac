package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/repute-mail/repute/internal/classify"
	"github.com/repute-mail/repute/internal/config"
	"github.com/repute-mail/repute/internal/store"
)

// maxDSNFile bounds the bounce message read by "bounce classify --dsn".
const maxDSNFile = 10 << 20

// cmdBounceClassify reads SMTP replies, one per line, or with --dsn a whole bounce
// message, and says what each means. It needs no running server and no store; with a
// config file that names bounce.rules_file, the admin's rules apply too.
func cmdBounceClassify(e *env, args []string) error {
	fs := stdFlags(e, "bounce classify", true)
	dsnFile := fs.String("dsn", "", "classify the recipients of this bounce message (\"-\" for standard input)")
	pos, err := parseFlags(fs, args)
	if err != nil || len(pos) != 0 {
		return errUsage
	}
	c, err := loadClassifier(e)
	if err != nil {
		return err
	}
	if *dsnFile != "" {
		return classifyDSN(e, c, *dsnFile)
	}
	sc := bufio.NewScanner(e.stdin)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	enc := json.NewEncoder(e.stdout)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		r := c.Classify(line)
		if e.json {
			if err := enc.Encode(r); err != nil {
				return err
			}
			continue
		}
		printResult(e.stdout, "", r)
	}
	return sc.Err()
}

// loadClassifier returns the built-in rules plus the admin's, when the config file
// (if there is one) names them.
func loadClassifier(e *env) (*classify.Classifier, error) {
	if _, err := os.Stat(e.configPath); err != nil {
		return classify.Default(), nil // no config: built-in rules
	}
	cfg, err := config.Load(e.configPath)
	if err != nil {
		return nil, err
	}
	if cfg.Bounce.RulesFile == "" {
		return classify.Default(), nil
	}
	return classify.Load(cfg.Bounce.RulesFile)
}

// dsnRecipientResult is the --json output of --dsn: one object per recipient, the
// classification fields plus which recipient and what the report said.
type dsnRecipientResult struct {
	Recipient  string `json:"recipient"`
	Action     string `json:"dsn_action"`
	Status     string `json:"status"`
	Diagnostic string `json:"diagnostic"`
	classify.Result
}

func classifyDSN(e *env, c *classify.Classifier, path string) error {
	var r io.Reader = e.stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	msg, err := io.ReadAll(io.LimitReader(r, maxDSNFile+1))
	if err != nil {
		return err
	}
	if len(msg) > maxDSNFile {
		return fmt.Errorf("%s: larger than %d bytes", path, maxDSNFile)
	}
	rep, err := classify.ParseDSN(msg)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	enc := json.NewEncoder(e.stdout)
	if !e.json {
		fmt.Fprintf(e.stdout, "bounce format %s, reporting MTA %q, original message %s\n", rep.Format, rep.ReportingMTA, rep.OriginalMessageID)
	}
	for _, br := range rep.Recipients {
		res := c.ClassifyFrom(dsnReplyText(br), br.RemoteMTA)
		if e.json {
			if err := enc.Encode(dsnRecipientResult{Recipient: br.Recipient, Action: br.Action, Status: br.Status,
				Diagnostic: br.Diagnostic, Result: res}); err != nil {
				return err
			}
			continue
		}
		printResult(e.stdout, br.Recipient+" ("+br.Action+" "+br.Status+"): ", res)
	}
	return nil
}

// dsnReplyText is what to classify for a recipient: the remote reply, with the status
// code in front when the reply text lacks one.
func dsnReplyText(br classify.BouncedRecipient) string {
	d := strings.TrimSpace(br.Diagnostic)
	if br.Status != "" && !strings.Contains(d, br.Status) {
		return strings.TrimSpace(br.Status + " " + d)
	}
	return d
}

func printResult(w io.Writer, prefix string, r classify.Result) {
	kind := "permanent"
	if r.Temporary {
		kind = "temporary"
	}
	provider := r.Provider
	if provider == "" {
		provider = "unknown provider"
	}
	fmt.Fprintf(w, "%s%s (%s, %s), action %s: %s", prefix, r.Category, kind, provider, r.Action, r.Advice)
	if r.URL != "" {
		fmt.Fprintf(w, " %s", r.URL)
	}
	fmt.Fprintln(w)
}

// cmdBounceRates prints bounce and complaint rates over a rolling window.
func cmdBounceRates(e *env, args []string) error {
	fs := stdFlags(e, "bounce rates", true)
	window := fs.Duration("window", 24*time.Hour, "how far back (e.g. 24h, 168h)")
	by := fs.String("by", "domain,provider", "group by: domain, provider, both or none (\"\")")
	pos, err := parseFlags(fs, args)
	if err != nil || len(pos) != 0 || *window <= 0 {
		return errUsage
	}
	byDomain, byProvider := strings.Contains(*by, "domain"), strings.Contains(*by, "provider")
	return withStore(e, func(ctx context.Context, db *store.DB) error {
		rs, err := db.Rates(ctx, time.Now().Add(-*window), byDomain, byProvider)
		if err != nil {
			return err
		}
		if e.json {
			return printJSON(e.stdout, nonNil(rs))
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SENDER DOMAIN\tPROVIDER\tDELIVERED\tBOUNCED\tBOUNCE RATE\tCOMPLAINTS\tCOMPLAINT RATE\tDEFERRED\tBOUNCES BY CATEGORY")
		for _, r := range rs {
			var cats []string
			for c, n := range r.ByCategory {
				cats = append(cats, fmt.Sprintf("%s %d", c, n))
			}
			sort.Strings(cats)
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%.2f%%\t%d\t%.3f%%\t%d\t%s\n", orAll(r.SenderDomain, byDomain), orAll(r.Provider, byProvider),
				r.Delivered, r.Bounced, 100*r.BounceRate, r.Complaints, 100*r.ComplaintRate, r.Deferred, strings.Join(cats, ", "))
		}
		return tw.Flush()
	})
}

func orAll(s string, grouped bool) string {
	if !grouped {
		return "(all)"
	}
	return s
}
