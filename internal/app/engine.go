package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/repute-mail/repute/internal/alert"
	"github.com/repute-mail/repute/internal/config"
	"github.com/repute-mail/repute/internal/obs"
	"github.com/repute-mail/repute/internal/outcome"
	"github.com/repute-mail/repute/internal/route"
	"github.com/repute-mail/repute/internal/shaper"
	"github.com/repute-mail/repute/internal/smtp"
	"github.com/repute-mail/repute/internal/store"
)

// buildEngine makes the deliverability engine from the configuration: the built-in
// provider profiles with the admin's overrides, the warm-up schedule and first-use
// dates, the pause cool-downs, and time_scale (the engine divides its durations).
func buildEngine(cfg config.Config, sources []netip.Addr, concurrency int) *shaper.Engine {
	profiles := shaper.DefaultProfiles()
	for id, o := range cfg.Shaping.Provider {
		p, ok := profiles[id]
		if !ok {
			p = profiles[shaper.DefaultProvider]
		}
		setInt := func(dst *int, v int) {
			if v > 0 {
				*dst = v
			}
		}
		setFloat := func(dst *float64, v float64) {
			if v > 0 {
				*dst = v
			}
		}
		setInt(&p.MaxConnections, o.MaxConnections)
		setInt(&p.MessagesPerConnection, o.MessagesPerConnection)
		setFloat(&p.MessagesPerMinute, o.MessagesPerMinute)
		setFloat(&p.StartPerMinute, o.StartPerMinute)
		setInt(&p.MessagesPerHour, o.MessagesPerHour)
		setInt(&p.MessagesPerDay, o.MessagesPerDay)
		setFloat(&p.ConnectionsPerMinute, o.ConnectionsPerMinute)
		if o.RequireTLS != nil {
			p.RequireTLS = *o.RequireTLS
		}
		if o.WarmupStart != nil {
			p.WarmupStart = *o.WarmupStart
		}
		if o.FallbackRelay != "" {
			p.FallbackRelay = o.FallbackRelay
		}
		if p.StartPerMinute > p.MessagesPerMinute && p.MessagesPerMinute > 0 {
			p.StartPerMinute = p.MessagesPerMinute
		}
		profiles[id] = p
	}
	first := map[netip.Addr]time.Time{}
	for k, t := range cfg.Warmup.FirstUse {
		if k == "default" {
			first[netip.Addr{}] = t
			continue
		}
		if ip, err := netip.ParseAddr(k); err == nil {
			first[ip.Unmap()] = t
		}
	}
	sh := cfg.Shaping
	return &shaper.Engine{Profiles: profiles, MaxConnections: concurrency, SourceIPs: sources, FirstUse: first,
		Warmup:        shaper.Warmup{Enabled: cfg.Warmup.Enabled, Days: cfg.Warmup.Days, DoublingDays: cfg.Warmup.DoublingDays},
		FallbackRelay: cfg.Outbound.FallbackRelay, CoolDown: sh.CoolDown.Duration, MaxCoolDown: sh.MaxCoolDown.Duration,
		Round: sh.Round.Duration, TimeScale: sh.TimeScale}
}

// fallbackRelays lists every fallback relay of the configuration: outbound's and the
// providers' own.
func fallbackRelays(cfg config.Config) []string {
	var out []string
	if r := cfg.Outbound.FallbackRelay; r != "" {
		out = append(out, r)
	}
	for _, p := range cfg.Shaping.Provider {
		if p.FallbackRelay != "" && !slices.Contains(out, p.FallbackRelay) {
			out = append(out, p.FallbackRelay)
		}
	}
	return out
}

// restoreEngine loads the engine's saved state. A state that cannot be read is logged
// and ignored: the engine then starts from its profiles, as on a new server.
func (a *App) restoreEngine(ctx context.Context) {
	doc, err := a.db.ShaperState(ctx)
	if err != nil || doc == nil {
		if err != nil {
			a.log.Error("engine: reading its saved state failed; starting afresh", "err", err)
		}
		return
	}
	var snap shaper.Snapshot
	if err := json.Unmarshal(doc, &snap); err != nil {
		a.log.Error("engine: its saved state is unreadable; starting afresh", "err", err)
		return
	}
	a.engine.Import(snap)
}

// saveEngine writes the engine's state to the store.
func (a *App) saveEngine(ctx context.Context) {
	doc, err := json.Marshal(a.engine.Export(time.Now()))
	if err == nil {
		err = a.db.SaveShaperState(ctx, doc, time.Now())
	}
	if err != nil {
		a.log.Error("engine: saving its state failed; it is tried again", "err", err)
	}
}

// engineSaver saves the engine's state every interval, at once after a pause or a
// resumption, and a last time when ctx ends.
func (a *App) engineSaver(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			a.saveEngine(c)
			cancel()
			return
		case <-t.C:
		case <-a.engineDirty:
		}
		a.saveEngine(ctx)
	}
}

// onTransition records a pause or resumption in the mail-event log, alerts the admin,
// saves the state, and, for a resumption, makes the waiting mail due.
func (a *App) onTransition(t shaper.Transition) {
	kind := obs.Paused
	if t.Kind == "resumed" {
		kind = obs.Resumed
	}
	ev := outcome.Event{Source: "delivery", Detail: t.Advice, Event: obs.Event{Time: t.Time, Event: kind,
		Provider: t.Provider, SourceIP: t.SourceIP, Text: t.Reply, Category: t.Category, Reason: t.Kind,
		Advice: t.Advice, URL: t.URL, NextAttempt: t.Until}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.outcomes.Record(ctx, ev); err != nil {
		a.log.Error("engine: recording a pause failed", "err", err)
	}
	a.log.Warn("engine: "+t.Kind, "provider", t.Provider, "source_ip", t.SourceIP, "category", t.Category,
		"reply", t.Reply, "until", t.Until, "advice", t.Advice)
	if a.alerts != nil {
		a.alerts(t)
	}
	select {
	case a.engineDirty <- struct{}{}:
	default:
	}
	if t.Kind == "resumed" {
		go a.sched.Resumed(context.Background(), t.Group)
	}
}

// providerCommand serves provider status, pause and resume on the control socket.
func (a *App) providerCommand(_ context.Context, args []string) (string, error) {
	if len(args) == 0 {
		return "", errors.New("provider: status, pause or resume")
	}
	now := time.Now()
	switch args[0] {
	case "status":
		b, err := json.Marshal(a.engine.Status(now))
		return string(b), err
	case "pause", "resume":
		if len(args) < 2 || len(args) > 3 {
			return "", fmt.Errorf("provider %s PROVIDER [IP]", args[0])
		}
		var ip netip.Addr
		if len(args) == 3 && args[2] != "" {
			var err error
			if ip, err = netip.ParseAddr(args[2]); err != nil {
				return "", fmt.Errorf("%q is not an IP address", args[2])
			}
		}
		f := a.engine.Pause
		if args[0] == "resume" {
			f = a.engine.Resume
		}
		n, err := f(args[1], ip, now)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%d", n), nil
	}
	return "", fmt.Errorf("provider: unknown subcommand %q", args[0])
}

// buildAlerts makes the notifier that tells the admin of pauses and resumptions: a mail
// to postmaster@ the hostname's domain (alerts.postmaster) and a JSON webhook
// (alerts.webhook_url).
func (a *App) buildAlerts() {
	cfg := a.cfg
	if !cfg.Alerts.Postmaster && cfg.Alerts.WebhookURL == "" {
		return
	}
	n := &alert.Notifier{Hostname: cfg.Hostname, Webhook: cfg.Alerts.WebhookURL, Logger: a.log}
	if cfg.Alerts.Postmaster {
		n.Postmaster = a.mailPostmaster
	}
	a.notifier = n
	a.alerts = func(t shaper.Transition) {
		n.Notify(alert.Notice{Kind: t.Kind, Time: t.Time, Provider: t.Provider, SourceIP: t.SourceIP,
			Category: t.Category, Reply: t.Reply, Advice: t.Advice, URL: t.URL, Until: t.Until,
			Fallback: cfg.Outbound.FallbackRelay})
	}
}

// mailPostmaster stores an alert for postmaster@ the server's domain: in the local
// mailbox it reaches, or queued when it is an outside address.
func (a *App) mailPostmaster(ctx context.Context, msg []byte) error {
	domain := postmasterDomain(a.cfg.Hostname)
	addr, err := smtp.ParseAddress("postmaster@" + domain)
	if err != nil {
		return err
	}
	d := &store.Delivery{MsgID: store.NewID(time.Now()), From: "", Body: msg, Received: time.Now()}
	targets, err := a.db.Resolve(ctx, addr)
	switch {
	case err == nil:
		d.AddTargets(targets)
	default:
		return fmt.Errorf("postmaster@%s: %w", domain, err)
	}
	stored, err := a.db.Accept(ctx, d)
	if err != nil {
		return err
	}
	a.mailstore.Delivered(stored)
	if len(d.Remote) > 0 {
		a.sched.Wake()
	}
	return nil
}

// postmasterDomain is the server's own domain: the hostname without its first label
// (mx.example.com → example.com), as for the bare "<postmaster>" of RFC 5321 §4.5.1.
func postmasterDomain(hostname string) string {
	if i := strings.IndexByte(hostname, '.'); i >= 0 && strings.Count(hostname, ".") > 1 {
		return strings.ToLower(hostname[i+1:])
	}
	return strings.ToLower(hostname)
}

// queueSummary serves "queue summary" on the control socket: the store's summary by
// domain, with each domain's provider as the server routes it (looked up, a few at a
// time and briefly, for domains it has not routed lately).
func (a *App) queueSummary(ctx context.Context, _ []string) (string, error) {
	sum, err := a.db.QueueSummary(ctx)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range sum {
		if rt, ok := a.routes.Cached(sum[i].Domain); ok {
			sum[i].Provider = providerOf(rt)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			sum[i].Provider = providerOf(a.routes.Resolve(ctx, sum[i].Domain))
		}()
	}
	wg.Wait()
	b, err := json.Marshal(sum)
	return string(b), err
}

// providerOf names a route's destination: its provider, or its group for the rest.
func providerOf(rt route.Route) string {
	if rt.Provider != "" {
		return rt.Provider
	}
	return rt.Group
}
