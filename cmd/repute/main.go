// Command repute is the Repute mail server and its administration tool. main only parses
// flags and dispatches to a subcommand; the server itself is built in internal/app.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/repute-mail/repute/internal/store"
)

// command is one entry of the subcommand table. Groups (domain, user, ...) have subs.
type command struct {
	usage string
	run   func(env *env, args []string) error
	subs  map[string]*command
}

// env carries what every command needs; tests can swap the streams.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	configPath     string
	json           bool
}

var errUsage = errors.New("usage")

func commands() map[string]*command {
	return map[string]*command{
		"serve": {usage: "serve [--config FILE]: run every configured listener until SIGTERM", run: cmdServe},
		"dev":   {usage: "dev [--listen IP]: create ./repute-dev/ (config, data, a domain and a user) and serve on loopback", run: cmdDev},
		"sendmail": {usage: "sendmail [-t] [-i] [-f FROM] [-F NAME] [RCPT...]: queue a message from standard input (also as a symlink named sendmail)",
			run: cmdSendmail},
		"check": {usage: "check [DOMAIN...] [--json] [--timeout 5s]: live checks of every deliverability prerequisite (reverse DNS, SPF, DKIM, DMARC, MTA-STS, TLS-RPT, DANE, certificates, ports, blocklists); exit 1 when one fails",
			run: cmdCheck},
		"quickstart": {usage: "quickstart DOMAIN [--hostname H] [--ip IP...] [--acme-email E] [--config FILE] [--data-dir DIR] [--systemd-dir DIR] [--force]: set up a production server: config, domain, postmaster and reports mailboxes, systemd unit, and the DNS records and PTR to publish",
			run: cmdQuickstart},
		"config": {subs: map[string]*command{
			"check": {usage: "config check [--config FILE]: validate the configuration file", run: cmdConfigCheck},
		}},
		"domain": {subs: map[string]*command{
			"add":  {usage: "domain add DOMAIN [--ed25519]: add a local domain and generate its DKIM keys", run: cmdDomainAdd},
			"list": {usage: "domain list [--json]", run: cmdDomainList},
			"del":  {usage: "domain del DOMAIN", run: cmdDomainDel},
		}},
		"user": {subs: map[string]*command{
			"add":    {usage: "user add ADDRESS [--password-stdin]", run: cmdUserAdd},
			"list":   {usage: "user list [--json]", run: cmdUserList},
			"del":    {usage: "user del ADDRESS", run: cmdUserDel},
			"passwd": {usage: "user passwd ADDRESS [--password-stdin]", run: cmdUserPasswd},
			"grant":  {usage: "user grant USER ADDRESS|@DOMAIN: let USER send as ADDRESS, or as any address of DOMAIN", run: cmdUserGrant},
			"revoke": {usage: "user revoke USER ADDRESS|@DOMAIN: take a grant back", run: cmdUserRevoke},
			"grants": {usage: "user grants [--json]: what users may send as beyond their addresses and aliases", run: cmdUserGrants},
		}},
		"alias": {subs: map[string]*command{
			"add":  {usage: "alias add ALIAS TARGET...   (ALIAS may be @domain: a catch-all)", run: cmdAliasAdd},
			"list": {usage: "alias list [--json]", run: cmdAliasList},
			"del":  {usage: "alias del ALIAS [TARGET...]", run: cmdAliasDel},
		}},
		"dkim": {subs: map[string]*command{
			"list":   {usage: "dkim list [--json]: DKIM keys of every domain and their state", run: cmdDKIMList},
			"rotate": {usage: "dkim rotate DOMAIN [--algorithm rsa|ed25519]: new key (pending); run again to switch once its record is visible", run: cmdDKIMRotate},
		}},
		"dns": {subs: map[string]*command{
			"records": {usage: "dns records [DOMAIN...] [--json]: every DNS record the domains (default: all local domains) need, as a zone-file snippet", run: cmdDNSRecords},
			"push": {usage: "dns push --server IP:PORT --tsig-key FILE [--zone ZONE] [DOMAIN...]: publish those records by RFC 2136 dynamic update",
				run: cmdDNSPush},
		}},
		"bounce": {subs: map[string]*command{
			"classify": {usage: "bounce classify [--json] [--dsn FILE]: what SMTP replies (one per line on standard input) or a bounce message mean", run: cmdBounceClassify},
			"rates":    {usage: "bounce rates [--window 24h] [--by domain,provider] [--json]: bounce and complaint rates per sending domain and provider", run: cmdBounceRates},
		}},
		"suppression": {subs: map[string]*command{
			"list":   {usage: "suppression list [--domain D] [--json]: recipients that sending domains no longer mail", run: cmdSuppressionList},
			"add":    {usage: "suppression add ADDRESS... [--domain D] [--note TEXT]: stop mailing these recipients from D", run: cmdSuppressionAdd},
			"remove": {usage: "suppression remove ADDRESS... [--domain D]: allow mailing them again", run: cmdSuppressionRemove},
		}},
		"provider": {subs: map[string]*command{
			"status": {usage: "provider status [--json]: per source IP and provider: warm-up, rate, connections, pauses", run: cmdProviderStatus},
			"pause":  {usage: "provider pause PROVIDER [--ip IP]: stop sending to a provider now, until resumed", run: providerAct("pause")},
			"resume": {usage: "provider resume PROVIDER [--ip IP]: end a pause now", run: providerAct("resume")},
		}},
		"queue": {subs: map[string]*command{
			"list":    {usage: "queue list [--json]: messages waiting for outbound delivery", run: cmdQueueList},
			"show":    {usage: "queue show ID [--json]", run: cmdQueueShow},
			"summary": {usage: "queue summary [--json]: entries per destination domain by age", run: cmdQueueSummary},
			"retry":   {usage: "queue retry ID|--all|--domain D: try again now", run: queueOp("queue retry", "made due now", true, (*store.DB).QueueRetry)},
			"hold":    {usage: "queue hold ID|--all|--domain D: stop delivery attempts", run: queueOp("queue hold", "held", true, (*store.DB).QueueHold)},
			"release": {usage: "queue release ID|--all|--domain D: resume held entries", run: queueOp("queue release", "released", true, (*store.DB).QueueRelease)},
			"drop":    {usage: "queue drop ID|--domain D: delete entries without notifying the sender", run: queueOp("queue drop", "dropped", false, (*store.DB).QueueDrop)},
		}},
	}
}

func main() {
	e := &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr}
	if filepath.Base(os.Args[0]) == "sendmail" {
		// Invoked through a symlink named sendmail (cron, scripts, /usr/sbin/sendmail).
		os.Exit(sendmailMain(e, os.Args[1:]))
	}
	os.Exit(run(context.Background(), e, os.Args[1:]))
}

func run(ctx context.Context, e *env, args []string) int {
	cmds := commands()
	var path []string
	cur := &command{subs: cmds}
	if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		printUsage(e.stdout, path, cur)
		return 0
	}
	var global []string
	for cur.subs != nil {
		g, rest, err := splitGlobalFlags(args)
		if err != nil {
			fmt.Fprintf(e.stderr, "repute: %v\n", err)
			printUsage(e.stderr, path, cur)
			return 2
		}
		global, args = append(global, g...), rest
		if len(args) == 0 || strings.HasPrefix(args[0], "-") {
			printUsage(e.stderr, path, cur)
			return 2
		}
		next := cur.subs[args[0]]
		if next == nil {
			fmt.Fprintf(e.stderr, "repute: unknown command %q\n", strings.Join(append(path, args[0]), " "))
			printUsage(e.stderr, path, cur)
			return 2
		}
		path = append(path, args[0])
		args = args[1:]
		cur = next
	}
	// The global flags go first: the command's own parser takes flags anywhere, and in
	// front of its arguments they cannot end up after a "--".
	err := cur.run(e, append(global, args...))
	if errors.Is(err, errUsage) {
		fmt.Fprintf(e.stderr, "usage: repute %s\n", cur.usage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "repute %s: %v\n", strings.Join(path, " "), err)
		return 1
	}
	return 0
}

func printUsage(w io.Writer, path []string, c *command) {
	fmt.Fprintln(w, "usage: repute [--config FILE] [--json] COMMAND [ARGS]")
	var lines []string
	var walk func(prefix []string, c *command)
	walk = func(prefix []string, c *command) {
		if c.run != nil {
			lines = append(lines, "  repute "+c.usage)
		}
		for name, s := range c.subs {
			walk(append(append([]string{}, prefix...), name), s)
		}
	}
	walk(path, c)
	sort.Strings(lines)
	fmt.Fprintln(w, strings.Join(lines, "\n"))
}

// parseFlags parses fs from args, allowing flags before, between and after positional
// arguments ("user add a@b --password-stdin"), and returns the positional ones.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// globalFlags are the flags every command accepts before its name as well as after it
// ("repute --config F queue list"), with whether each takes a value.
var globalFlags = map[string]bool{"config": true, "json": false}

// splitGlobalFlags takes the global flags in front of a command name off args, in the
// forms the flag package accepts ("--config F", "--config=F", "-config F", "--json",
// "--json=false"), and returns them and the rest. The command parses them again with its
// own flag set, so a flag it does not take (--json on a command that prints no listing)
// is a usage error there, wherever it was written.
func splitGlobalFlags(args []string) (global, rest []string, err error) {
	for len(args) > 0 && strings.HasPrefix(args[0], "-") && args[0] != "-" && args[0] != "--" {
		name, _, hasValue := strings.Cut(strings.TrimLeft(args[0], "-"), "=")
		takesValue, ok := globalFlags[name]
		switch {
		case !ok:
			return nil, nil, fmt.Errorf("unknown flag %s before the command", args[0])
		case takesValue && !hasValue:
			if len(args) < 2 {
				return nil, nil, fmt.Errorf("flag %s needs a value", args[0])
			}
			global, args = append(global, args[0], args[1]), args[2:]
		default:
			global, args = append(global, args[0]), args[1:]
		}
	}
	return global, args, nil
}

// stdFlags adds --config and, for listings, --json.
func stdFlags(e *env, name string, listing bool) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.StringVar(&e.configPath, "config", defaultConfigPath(), "configuration file")
	if listing {
		fs.BoolVar(&e.json, "json", false, "print JSON")
	}
	return fs
}

// systemConfigPath is the configuration file of an installed server (a variable for the
// tests).
var systemConfigPath = "/etc/repute/repute.toml"

// devConfigPath is the configuration `repute dev` writes, relative to the directory it
// runs in.
var devConfigPath = filepath.Join(devDir, "repute.toml")

// defaultConfigPath is the configuration file used without --config: $REPUTE_CONFIG if
// set, else /etc/repute/repute.toml if it exists, else ./repute-dev/repute.toml if it
// exists, so that admin commands run where `repute dev` runs manage its server without
// flags. "" means there is none: loadConfig then fails with errNoConfig.
func defaultConfigPath() string {
	if p := os.Getenv("REPUTE_CONFIG"); p != "" {
		return p
	}
	for _, p := range []string{systemConfigPath, devConfigPath} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// errNoConfig is loadConfig's error when defaultConfigPath found no file.
var errNoConfig = errors.New("no configuration file")

// noConfigError names every place a configuration file was looked for.
func noConfigError() error {
	return fmt.Errorf("%w: no --config FILE, $REPUTE_CONFIG not set, and neither %s nor ./%s exists "+
		"(`repute dev` creates the latter)", errNoConfig, systemConfigPath, devConfigPath)
}
