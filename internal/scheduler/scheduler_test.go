package scheduler

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/repute-mail/repute/internal/delivery"
	"github.com/repute-mail/repute/internal/outcome"
	"github.com/repute-mail/repute/internal/route"
	"github.com/repute-mail/repute/internal/store"
)

// scripted is a Deliverer whose answer per recipient domain is set by the test.
type scripted struct {
	mu      sync.Mutex
	answer  func(rcpt string) delivery.Attempt
	calls   atomic.Int64
	active  atomic.Int64
	maxSeen atomic.Int64
	hold    chan struct{}           // if set, Deliver waits for it
	holdFor string                  // if set, only deliveries to this domain wait
	seen    func(*delivery.Message) // if set, shown every message offered
}

func (d *scripted) Deliver(ctx context.Context, rt route.Route, _ netip.Addr, msgs []*delivery.Message, report func([]delivery.Attempt)) {
	domain := rt.Domain
	d.calls.Add(1)
	n := d.active.Add(1)
	defer d.active.Add(-1)
	for {
		m := d.maxSeen.Load()
		if n <= m || d.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	if d.hold != nil && (d.holdFor == "" || d.holdFor == domain) {
		select {
		case <-d.hold:
		case <-ctx.Done():
		}
	}
	for _, m := range msgs {
		if d.seen != nil {
			d.seen(m)
		}
		var out []delivery.Attempt
		for _, r := range m.Rcpts {
			a := d.answer(r.Address)
			a.QueueID, a.Rcpt = r.QueueID, r.Address
			out = append(out, a)
		}
		report(out)
	}
}

type fixture struct {
	db    *store.DB
	rec   *outcome.Recorder
	alice store.User
	now   time.Time
	mu    sync.Mutex
	sched *Scheduler
}

func newFixture(t *testing.T, d delivery.Deliverer) *fixture {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, store.Options{Path: filepath.Join(t.TempDir(), "r.db"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	db.AddDomain(ctx, "a.test")
	f := &fixture{db: db, now: time.Now()}
	if f.alice, err = db.AddUser(ctx, "alice@a.test", "pw"); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	bus := &outcome.Bus{}
	bus.Subscribe(outcome.Counts(db, log))
	bus.Subscribe(outcome.Suppressions(db, bus, log))
	f.rec = &outcome.Recorder{Bus: bus}
	f.sched = &Scheduler{DB: db, Deliverer: d, Hostname: "mx.a.test", Logger: log, Outcomes: f.rec,
		Policy:      Policy{RetryMin: time.Minute, RetryMax: time.Hour, MaxAge: 24 * time.Hour, DelayWarning: 4 * time.Hour},
		Concurrency: 4, PerDomain: 2, BatchSize: 3, ScanInterval: 50 * time.Millisecond,
		Now: func() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now }, Jitter: func() float64 { return 0.5 }}
	return f
}

func (f *fixture) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.sched.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func (f *fixture) queue(t *testing.T, from string, rcpts ...string) {
	t.Helper()
	_, err := f.db.Accept(context.Background(), &store.Delivery{MsgID: store.NewID(f.now), From: from,
		Body: []byte("Subject: hello\r\nMessage-ID: <m@a.test>\r\n\r\nbody\r\n"), Remote: rcpts, Received: f.now})
	if err != nil {
		t.Fatal(err)
	}
	f.sched.Wake()
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (f *fixture) entries(t *testing.T) []store.QueueEntry {
	q, err := f.db.Queue(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func (f *fixture) inbox(t *testing.T) []string {
	rows, err := f.db.Read().Query(`SELECT b.data FROM messages m JOIN mailboxes x ON x.id = m.mailbox_id
		JOIN blobs b ON b.id = m.blob_id WHERE x.user_id = ? AND x.name = 'INBOX'`, f.alice.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var b []byte
		rows.Scan(&b)
		out = append(out, string(b))
	}
	return out
}

func answers(m map[string]delivery.Attempt) func(string) delivery.Attempt {
	return func(rcpt string) delivery.Attempt {
		return m[rcpt[strings.IndexByte(rcpt, '@')+1:]]
	}
}

func TestOutcomes(t *testing.T) {
	d := &scripted{answer: answers(map[string]delivery.Attempt{
		"ok.test":   {Code: 250, Enhanced: "2.0.0", Text: "queued", MX: "mx.ok.test"},
		"slow.test": {Code: 451, Enhanced: "4.7.1", Text: "greylisted, try again in 10 minutes", RetryAfter: 10 * time.Minute, MX: "mx.slow.test"},
		"down.test": {Text: "dial tcp 127.0.0.9:25: connection refused"},
		"bad.test":  {Code: 550, Enhanced: "5.1.1", Text: "<u@bad.test>: no such user", Permanent: true, MX: "mx.bad.test"},
	})}
	f := newFixture(t, d)
	f.run(t)
	f.queue(t, "alice@a.test", "u@ok.test", "v@ok.test", "u@slow.test", "u@down.test", "u@bad.test")
	waitFor(t, "outcomes", func() bool {
		q := f.entries(t)
		return len(q) == 2 && q[0].Attempts == 1 && q[1].Attempts == 1
	})
	for _, e := range f.entries(t) {
		wait := time.Unix(e.NextAttempt, 0).Sub(f.now.Truncate(time.Second))
		switch e.Domain {
		case "slow.test":
			if wait < 10*time.Minute || e.LastCode != 451 || !strings.Contains(e.LastError, "greylisted") || e.LastMX != "mx.slow.test" {
				t.Errorf("slow.test entry %+v (wait %v): want the 10-minute hint honoured", e, wait)
			}
		case "down.test":
			if wait < time.Minute || wait > 2*time.Minute || !strings.Contains(e.LastError, "connection refused") {
				t.Errorf("down.test entry %+v (wait %v): want retry_min", e, wait)
			}
		default:
			t.Errorf("unexpected entry left: %+v", e)
		}
	}
	waitFor(t, "the failure notice", func() bool { return len(f.inbox(t)) == 1 })
	dsn := f.inbox(t)[0]
	for _, want := range []string{"multipart/report", "u@bad.test", "550 5.1.1 <u@bad.test>: no such user", "Status: 5.1.1"} {
		if !strings.Contains(dsn, want) {
			t.Errorf("notice lacks %q:\n%s", want, dsn)
		}
	}
	if strings.Contains(dsn, "u@ok.test") {
		t.Error("notice mentions a delivered recipient")
	}
}

func TestExpiryAndWarning(t *testing.T) {
	d := &scripted{answer: func(string) delivery.Attempt { return delivery.Attempt{Code: 421, Enhanced: "4.3.2", Text: "busy"} }}
	f := newFixture(t, d)
	f.queue(t, "alice@a.test", "u@late.test")
	f.mu.Lock()
	f.now = f.now.Add(5 * time.Hour) // past delay_warning
	f.mu.Unlock()
	f.run(t)
	waitFor(t, "the delay notice", func() bool { return len(f.inbox(t)) == 1 })
	if n := f.inbox(t)[0]; !strings.Contains(n, "delayed") {
		t.Errorf("delay notice:\n%s", n)
	}
	q := f.entries(t)
	if len(q) != 1 || !q[0].Warned {
		t.Fatalf("entry after warning: %+v", q)
	}
	// A day later: the entry expires and bounces.
	f.mu.Lock()
	f.now = f.now.Add(24 * time.Hour)
	f.mu.Unlock()
	f.db.QueueRetry(context.Background(), store.QueueSelector{All: true})
	f.sched.Wake()
	waitFor(t, "the expiry bounce", func() bool { return len(f.entries(t)) == 0 && len(f.inbox(t)) == 2 })
	var expired string
	for _, m := range f.inbox(t) {
		if strings.Contains(m, "Status: 4.4.7") || strings.Contains(m, "Status: 4.3.2") {
			expired = m
		}
	}
	if expired == "" {
		t.Errorf("no expiry notice with the last status among:\n%v", f.inbox(t))
	}
}

func TestNullSenderGetsNoNotice(t *testing.T) {
	d := &scripted{answer: func(string) delivery.Attempt {
		return delivery.Attempt{Code: 550, Enhanced: "5.1.1", Text: "no", Permanent: true}
	}}
	f := newFixture(t, d)
	f.run(t)
	f.queue(t, "", "u@bad.test")
	waitFor(t, "the bounce", func() bool { return len(f.entries(t)) == 0 })
	time.Sleep(100 * time.Millisecond)
	if n := len(f.inbox(t)); n != 0 {
		t.Errorf("%d notices for a null-sender message", n)
	}
	var queued int
	f.db.Read().QueryRow(`SELECT count(*) FROM queue`).Scan(&queued)
	if queued != 0 {
		t.Errorf("a notice about a notice was queued")
	}
}

func TestConcurrencyBounds(t *testing.T) {
	d := &scripted{hold: make(chan struct{}), answer: func(string) delivery.Attempt { return delivery.Attempt{Code: 250} }}
	f := newFixture(t, d)
	f.run(t)
	var rcpts []string
	for _, dom := range []string{"one.test", "two.test", "three.test"} {
		for i := 0; i < 9; i++ {
			rcpts = append(rcpts, string(rune('a'+i))+"@"+dom)
		}
	}
	f.queue(t, "alice@a.test", rcpts...)
	waitFor(t, "workers to start", func() bool { return d.active.Load() == 4 })
	time.Sleep(100 * time.Millisecond)
	if got := d.active.Load(); got != 4 {
		t.Errorf("%d deliveries at once, want the concurrency limit 4", got)
	}
	close(d.hold)
	waitFor(t, "the queue to drain", func() bool { return len(f.entries(t)) == 0 })
	if max := d.maxSeen.Load(); max > 4 {
		t.Errorf("max concurrency %d > 4", max)
	}
	// 27 recipients in batches of at most 3: at least 9 calls.
	if c := d.calls.Load(); c < 9 {
		t.Errorf("%d Deliver calls for 27 recipients in batches of 3", c)
	}
}

// A destination with a backlog larger than it can take must not hold up the others.
func TestNoStarvation(t *testing.T) {
	d := &scripted{hold: make(chan struct{}), holdFor: "big.test", answer: func(string) delivery.Attempt { return delivery.Attempt{Code: 250} }}
	f := newFixture(t, d)
	f.sched.PerDomain = 1
	var big []string
	for i := 0; i < 40; i++ {
		big = append(big, fmt.Sprintf("u%d@big.test", i))
	}
	f.queue(t, "alice@a.test", big...)
	f.queue(t, "alice@a.test", "v@small.test")
	f.run(t)
	waitFor(t, "small.test to be delivered while big.test is stuck", func() bool {
		for _, e := range f.entries(t) {
			if e.Domain == "small.test" {
				return false
			}
		}
		return d.active.Load() == 1 // big.test's one connection has started
	})
	if got := d.active.Load(); got != 1 {
		t.Errorf("%d deliveries to big.test at once, want its limit 1", got)
	}
	close(d.hold)
	waitFor(t, "the queue to drain", func() bool { return len(f.entries(t)) == 0 })
}

var _ = sql.ErrNoRows
