package app

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/repute-mail/repute/internal/alert"
	"github.com/repute-mail/repute/internal/doctor"
	"github.com/repute-mail/repute/internal/obs"
	"github.com/repute-mail/repute/internal/outcome"
)

// foundationChecks are the checks that must pass before a server with
// outbound.direct_when = "checks_pass" delivers directly: without them its mail is
// refused or junked, and every refusal costs the new IP reputation.
var foundationChecks = []string{doctor.IDPort25Out, doctor.IDPTR, doctor.IDFCrDNS, doctor.IDSPF, doctor.IDDKIM, doctor.IDBlocklistIP}

// selfCheck runs repute check inside the server: at start, every check.interval, and
// every few minutes while direct delivery waits for the foundation checks. A check that
// goes from passing (or never run) to failing is a check_changed mail-event and an alert;
// one that passes again is an event and a notice. The last statuses are kept in
// data_dir/checks.json, so a restart does not announce old failures again.
type selfCheck struct {
	a        *App
	interval time.Duration // 0: only while direct delivery waits
	retry    time.Duration // re-check while direct delivery waits
	gate     bool          // outbound.direct_when = "checks_pass"
	direct   atomic.Bool   // the foundation checks passed in the last run
	// check runs the checks once (doctor's Checker in the server; tests replace it).
	check    func(ctx context.Context) (*doctor.Report, error)
	announce func(ctx context.Context, r doctor.Result, kind string) // a change the admin is told of
	mu       sync.Mutex
	last     map[string]doctor.Status // by "id target"
	path     string
	stop     context.CancelFunc
	done     chan struct{}
}

// startSelfCheck starts the loop when the self-check is on or direct delivery is gated.
func (a *App) startSelfCheck() {
	cfg := a.cfg
	sc := &selfCheck{a: a, interval: cfg.Scaled(cfg.Check.Interval.Duration), retry: cfg.Scaled(5 * time.Minute),
		gate: cfg.Outbound.DirectWhen == "checks_pass", path: filepath.Join(cfg.DataDir, "checks.json")}
	sc.check = func(ctx context.Context) (*doctor.Report, error) {
		setup, err := doctor.SetupFrom(ctx, a.cfg, a.db)
		if err != nil {
			return nil, err
		}
		c := doctor.CheckerFor(a.cfg, setup)
		c.Resolver, c.Log = a.resolver, a.log
		return c.Run(ctx), nil
	}
	sc.announce = sc.notify
	a.selfCheck = sc
	if sc.interval == 0 && !sc.gate {
		return
	}
	sc.load()
	ctx, cancel := context.WithCancel(context.Background())
	sc.stop, sc.done = cancel, make(chan struct{})
	go sc.loop(ctx)
}

// Direct reports whether mail may go directly to the recipients' servers; when not, the
// scheduler sends it through outbound.fallback_relay.
func (sc *selfCheck) Direct() bool { return sc == nil || !sc.gate || sc.direct.Load() }

func (sc *selfCheck) close() {
	if sc != nil && sc.stop != nil {
		sc.stop()
		<-sc.done
	}
}

func (sc *selfCheck) loop(ctx context.Context) {
	defer close(sc.done)
	// The listeners are up when Start returns; give them a moment before probing them.
	t := time.NewTimer(sc.a.cfg.Scaled(10 * time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		sc.run(ctx)
		next := sc.interval
		if sc.gate && !sc.direct.Load() && (next == 0 || sc.retry < next) {
			next = sc.retry
		}
		if next == 0 {
			return
		}
		t.Reset(next)
	}
}

// run runs every check once and acts on what changed.
func (sc *selfCheck) run(ctx context.Context) {
	a := sc.a
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	rep, err := sc.check(ctx)
	if err != nil {
		a.log.Error("self-check: reading the set-up failed", "err", err)
		return
	}
	if ctx.Err() != nil {
		return
	}
	direct := true
	for _, r := range rep.Checks {
		if r.Status == doctor.Fail && slices.Contains(foundationChecks, r.ID) {
			direct = false
		}
	}
	was := sc.direct.Swap(direct)
	if sc.gate && was != direct {
		if direct {
			a.log.Info("self-check: the foundation checks pass; delivering directly from now on")
		} else {
			a.log.Warn("self-check: a foundation check fails; mail goes through outbound.fallback_relay until it is fixed (repute check)")
		}
	}
	if direct && !was && sc.gate && a.sched != nil && a.sched.DB != nil {
		a.sched.Wake()
	}

	sc.mu.Lock()
	first := sc.last == nil
	prev := sc.last
	sc.last = map[string]doctor.Status{}
	var changes []doctor.Result
	var fixed []doctor.Result
	for _, r := range rep.Checks {
		key := r.ID + " " + r.Target
		sc.last[key] = r.Status
		old, seen := prev[key]
		switch {
		case r.Status == doctor.Fail && (!seen || old != doctor.Fail):
			changes = append(changes, r)
		case r.Status == doctor.Pass && seen && old == doctor.Fail:
			fixed = append(fixed, r)
		}
	}
	sc.save()
	sc.mu.Unlock()
	a.log.Info("self-check done", "pass", rep.Summary.Pass, "warn", rep.Summary.Warn, "fail", rep.Summary.Fail, "error", rep.Summary.Error)
	for _, r := range changes {
		a.log.Warn("self-check: check failing", "check", r.ID, "target", r.Target, "found", r.Found, "fix", r.Fix)
		if first {
			continue // failing since before this server remembers: logged, not announced
		}
		sc.announce(ctx, r, alert.CheckFailed)
	}
	for _, r := range fixed {
		a.log.Info("self-check: check passes again", "check", r.ID, "target", r.Target)
		sc.announce(ctx, r, alert.CheckFixed)
	}
}

// notify records a check's change in the mail-event log (check_changed) and tells the
// admin.
func (sc *selfCheck) notify(ctx context.Context, r doctor.Result, kind string) {
	a := sc.a
	now := time.Now()
	ev := outcome.Event{Source: "self-check", Detail: r.Fix, Event: obs.Event{Time: now, Event: obs.CheckChanged,
		Text: r.ID + " " + r.Target + ": " + string(r.Status) + ": " + r.Found, Category: r.ID, Reason: string(r.Status),
		Advice: r.Fix, URL: r.URL}}
	if err := a.outcomes.Record(ctx, ev); err != nil {
		a.log.Error("self-check: recording a check change failed", "err", err)
	}
	if a.notifier != nil {
		a.notifier.Notify(alert.Notice{Kind: kind, Time: now, Check: r.ID, Target: r.Target, Reply: r.Found, Advice: r.Fix, URL: r.URL})
	}
}

// load reads the statuses of the last run before a restart.
func (sc *selfCheck) load() {
	data, err := os.ReadFile(sc.path)
	if err != nil {
		return
	}
	var m map[string]doctor.Status
	if json.Unmarshal(data, &m) == nil {
		sc.last = m
	}
}

// save writes the statuses (temp file, then rename, so a crash leaves the old or the new).
func (sc *selfCheck) save() {
	data, err := json.Marshal(sc.last)
	if err != nil {
		return
	}
	tmp := sc.path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		sc.a.log.Warn("self-check: saving the statuses failed", "err", err)
		return
	}
	if err := os.Rename(tmp, sc.path); err != nil {
		sc.a.log.Warn("self-check: saving the statuses failed", "err", err)
	}
}
