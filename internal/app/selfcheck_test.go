package app

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/repute-mail/repute/internal/doctor"
)

// TestSelfCheckChanges runs the self-check over a sequence of reports and checks what is
// announced, when direct delivery is allowed, and that a restart remembers the statuses.
func TestSelfCheckChanges(t *testing.T) {
	dir := t.TempDir()
	a := &App{log: slog.New(slog.DiscardHandler)}
	type change struct{ id, target, kind string }
	var got []change
	reports := []*doctor.Report{}
	newSC := func() *selfCheck {
		sc := &selfCheck{a: a, gate: true, path: filepath.Join(dir, "checks.json")}
		sc.check = func(context.Context) (*doctor.Report, error) {
			r := reports[0]
			reports = reports[1:]
			return r, nil
		}
		sc.announce = func(_ context.Context, r doctor.Result, kind string) {
			got = append(got, change{r.ID, r.Target, kind})
		}
		sc.load()
		return sc
	}
	rep := func(results ...doctor.Result) *doctor.Report {
		r := &doctor.Report{}
		r.Add(results...)
		return r
	}
	spf := func(st doctor.Status) doctor.Result {
		return doctor.Result{ID: doctor.IDSPF, Target: "example.com", Status: st}
	}
	mta := func(st doctor.Status) doctor.Result {
		return doctor.Result{ID: doctor.IDMTASTS, Target: "example.com", Status: st}
	}

	reports = append(reports,
		rep(spf(doctor.Fail), mta(doctor.Pass)),  // first run: failing already, not announced
		rep(spf(doctor.Pass), mta(doctor.Pass)),  // spf fixed
		rep(spf(doctor.Pass), mta(doctor.Fail)),  // mta_sts breaks: announced, not a foundation check
		rep(spf(doctor.Error), mta(doctor.Fail)), // spf cannot run: neither failing nor fixed; mta_sts still failing: not again
	)
	sc := newSC()
	steps := []struct {
		direct bool
		want   []change
	}{
		{false, nil},
		{true, []change{{"spf", "example.com", "check_fixed"}}},
		{true, []change{{"mta_sts", "example.com", "check_failed"}}},
		{true, nil},
	}
	for i, s := range steps {
		got = nil
		sc.run(context.Background())
		if sc.Direct() != s.direct {
			t.Errorf("run %d: direct = %v, want %v", i, sc.Direct(), s.direct)
		}
		if len(got) != len(s.want) || (len(got) > 0 && got[0] != s.want[0]) {
			t.Errorf("run %d: announced %v, want %v", i, got, s.want)
		}
	}

	// After a restart the statuses are remembered: a failure that persists is not
	// announced again, one that is new is.
	reports = append(reports, rep(spf(doctor.Fail), mta(doctor.Fail)))
	got = nil
	sc = newSC()
	sc.run(context.Background())
	if len(got) != 1 || got[0] != (change{"spf", "example.com", "check_failed"}) {
		t.Errorf("after a restart: announced %v, want spf failing only", got)
	}
	if sc.Direct() {
		t.Error("a failing foundation check allows direct delivery")
	}
}
