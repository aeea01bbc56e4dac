package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/repute-mail/repute/internal/control"
	"github.com/repute-mail/repute/internal/shaper"
)

// providerCall sends one provider command to the running server: the engine's state
// lives there, and a pause or resumption must act on it at once.
func providerCall(e *env, args ...string) (string, error) {
	cfg, err := loadConfig(e)
	if err != nil {
		return "", err
	}
	out, err := control.Send(cfg.DataDir, append([]string{"provider"}, args...)...)
	if errors.Is(err, control.ErrNotRunning) {
		return "", fmt.Errorf("the server is not running (no %s in %s): the engine's state lives in the running server", control.SocketName, cfg.DataDir)
	}
	return out, err
}

func cmdProviderStatus(e *env, args []string) error {
	if pos, err := parseFlags(stdFlags(e, "provider status", true), args); err != nil || len(pos) != 0 {
		return errUsage
	}
	out, err := providerCall(e, "status")
	if err != nil {
		return err
	}
	var rows []shaper.Status
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		return fmt.Errorf("the server's reply: %w", err)
	}
	if e.json {
		return printJSON(e.stdout, nonNil(rows))
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROVIDER\tSOURCE IP\tSTATE\tAGE\tCAP\tSENT\tRATE/MIN\tTREND\tCONNS\tPAUSED UNTIL\tREASON")
	for _, r := range rows {
		ip := r.SourceIP
		if ip == "" {
			ip = "(default)"
		}
		capText, rate, until := "-", "-", "-"
		if r.DailyCap != nil {
			capText = strconv.Itoa(*r.DailyCap)
		}
		if r.RatePerMinute != nil {
			rate = strconv.FormatFloat(*r.RatePerMinute, 'f', 1, 64)
		}
		if r.PausedUntil != nil {
			until = r.PausedUntil.Local().Format(time.DateTime)
		} else if r.State == shaper.StatePaused {
			until = "resume"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%dd\t%s\t%d\t%s\t%s\t%d/%d\t%s\t%s\n", termSafe(r.Provider), ip, r.State, r.IPAgeDays,
			capText, r.SentToday, rate, r.Trend, r.OpenConnections, r.MaxConnections, until, termSafe(r.Reason))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rows {
		if r.State == shaper.StatePaused && r.Reason != "admin" {
			fmt.Fprintf(e.stdout, "\n%s from %s: %s\n  %s\n", r.Provider, orDefault(r.SourceIP), termSafe(r.Reply), termSafe(r.Advice))
			if r.URL != "" {
				fmt.Fprintf(e.stdout, "  %s\n", termSafe(r.URL))
			}
		}
	}
	return nil
}

func orDefault(ip string) string {
	if ip == "" {
		return "the default address"
	}
	return ip
}

// providerAct is provider pause and provider resume.
func providerAct(verb string) func(*env, []string) error {
	return func(e *env, args []string) error {
		fs := stdFlags(e, "provider "+verb, false)
		ip := fs.String("ip", "", "only this source IP (default: every source IP)")
		pos, err := parseFlags(fs, args)
		if err != nil || len(pos) != 1 || strings.ContainsAny(pos[0], " \t") {
			return errUsage
		}
		if *ip != "" {
			if _, err := netip.ParseAddr(*ip); err != nil {
				return fmt.Errorf("--ip %q: not an IP address", *ip)
			}
		}
		call := []string{verb, pos[0]}
		if *ip != "" {
			call = append(call, *ip)
		}
		out, err := providerCall(e, call...)
		if err != nil {
			return err
		}
		past := map[string]string{"pause": "paused", "resume": "resumed"}[verb]
		fmt.Fprintf(e.stdout, "%s %s (%s source IPs)\n", past, pos[0], out)
		return nil
	}
}
