package e2e

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/repute-mail/repute/internal/obs"
	"github.com/repute-mail/repute/internal/store"
	"github.com/repute-mail/repute/internal/testcert"
	"github.com/repute-mail/repute/test/provsim"
)

// providerSims are the three simulated providers of a test, each on its own loopback
// address behind MX names with the provider's real suffixes: gmail.test (Google),
// outlook.test and hotmail.test (Microsoft: two domains, one receiver), yahoo.test.
type providerSims struct {
	sims map[provsim.Provider]*provsim.Server
}

// campaignDomains are the recipient domains of each simulated provider.
var campaignDomains = map[provsim.Provider][]string{
	provsim.Google:    {"gmail.test"},
	provsim.Microsoft: {"outlook.test", "hotmail.test"},
	provsim.Yahoo:     {"yahoo.test"},
}

func startSims(t *testing.T, z *zone, port int, timeScale float64, profiles ...provsim.Profile) *providerSims {
	t.Helper()
	srvTLS, _ := testcert.SelfSigned(t, "mx.provsim.test")
	ps := &providerSims{sims: map[provsim.Provider]*provsim.Server{}}
	for _, p := range profiles {
		ip := allocAddr(t, false, port)
		sim, err := provsim.Start(provsim.Config{Addr: net.JoinHostPort(ip, strconv.Itoa(port)), Profile: p,
			TimeScale: timeScale, TLS: srvTLS})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sim.Close() })
		ps.sims[p.Provider] = sim
		switch p.Provider {
		case provsim.Google:
			z.add("gmail.test. MX 5 gmail-smtp-in.l.google.com.", "gmail-smtp-in.l.google.com. A "+ip)
		case provsim.Microsoft:
			z.add("outlook.test. MX 0 outlook-test.mail.protection.outlook.com.",
				"outlook-test.mail.protection.outlook.com. A "+ip,
				"hotmail.test. MX 2 hotmail-test.olc.protection.outlook.com.",
				"hotmail-test.olc.protection.outlook.com. A "+ip)
		case provsim.Yahoo:
			z.add("yahoo.test. MX 1 mta5.am0.yahoodns.net.", "mta5.am0.yahoodns.net. A "+ip)
		}
	}
	return ps
}

func (ps *providerSims) accepted() int64 {
	var n int64
	for _, s := range ps.sims {
		n += s.Total().Accepted
	}
	return n
}

// fillQueue queues n messages to each recipient domain of mix (messages per provider),
// one message per recipient, of class class, straight into the stopped server's store
// (as a campaign's mail would be after its submission), many writers at once.
func fillQueue(t *testing.T, s *server, from, class string, mix map[provsim.Provider]int) int {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, store.Options{Path: filepath.Join(s.dataDir, "repute.db"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rcpts []string
	for p, n := range mix {
		ds := campaignDomains[p]
		for i := range n {
			rcpts = append(rcpts, fmt.Sprintf("user%d@%s", i, ds[i%len(ds)]))
		}
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 32)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(rcpts) {
					return
				}
				now := time.Now()
				body := fmt.Sprintf("From: <%s>\r\nTo: <%s>\r\nSubject: campaign %d\r\nMessage-ID: <c%d.%d@a.test>\r\nDate: %s\r\n"+
					"List-Unsubscribe: <mailto:unsub@a.test>\r\n\r\nHello %d.\r\n", from, rcpts[i], i, i, now.UnixNano(),
					now.Format(time.RFC1123Z), i)
				d := &store.Delivery{MsgID: store.NewID(now), From: from, Body: []byte(body), Remote: []string{rcpts[i]},
					Received: now, Class: class}
				if _, err := db.Accept(ctx, d); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	return len(rcpts)
}

// campaignServer is a Repute server sending from one source IP that has been in use for
// a year (warm: no warm-up caps), with time compressed by timeScale.
func campaignServer(t *testing.T, z *zone, timeScale float64, extra serverOptions) *server {
	t.Helper()
	opts := extra
	opts.Extra = "" // added below, after the warm-up table
	opts.Domain, opts.DNS, opts.TimeScale = "a.test", z.addr, timeScale
	opts.Queue = queueOpts{RetryMin: "5m", RetryMax: "1h", ScanInterval: "30s", DelayWarning: "0s", Concurrency: 40}
	a := newServer(t, opts)
	a.opts.OutboundExtra += fmt.Sprintf("source_ips = [%q]\n", a.ip)
	a.opts.Extra += fmt.Sprintf("\n[warmup]\nfirst_use = { %q = 2025-01-01 }\n", a.ip) + extra.Extra
	a.writeConfig()
	z.mailDomain("a.test", "mx.a.test", a.ip)
	return a
}

// TestCampaign: a campaign of 3,000 messages to Gmail, Microsoft (two domains) and
// Yahoo, simulated with their real limits, replies and escalation to a block. Repute
// is not told the limits: with the same configuration, against limits halved, as they
// are and doubled, it must deliver everything, never be blocked, and finish within 1.3
// times the ideal time (what a sender knowing the limits would need).
func TestCampaign(t *testing.T) {
	if testing.Short() {
		t.Skip("a campaign of 3,000 messages, three times")
	}
	const timeScale = 60
	mix := map[provsim.Provider]int{provsim.Google: 1200, provsim.Microsoft: 1000, provsim.Yahoo: 800}
	for _, factor := range []float64{0.5, 1, 2} {
		t.Run(fmt.Sprintf("limits×%v", factor), func(t *testing.T) {
			z := newZone(t)
			a := campaignServer(t, z, timeScale, serverOptions{})
			var profiles []provsim.Profile
			var loads []provsim.Load
			for _, p := range provsim.Providers() {
				prof := provsim.DefaultProfile(p)
				prof.RatePerMinute *= factor
				prof.MaxConnections = max(1, int(float64(prof.MaxConnections)*factor))
				profiles = append(profiles, prof)
				loads = append(loads, provsim.Load{Profile: prof, Messages: mix[p]})
			}
			ps := startSims(t, z, a.opts.RemotePort, timeScale, profiles...)
			n := fillQueue(t, a, "news@a.test", store.ClassBulk, mix)
			ideal := provsim.IdealTime(timeScale, loads...)
			a.start()
			start := time.Now()
			deadline := start.Add(3*ideal + 30*time.Second)
			var progress []string
			lastLog := start
			for ps.accepted() < int64(n) && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
				if time.Since(lastLog) >= time.Second {
					lastLog = time.Now()
					progress = append(progress, fmt.Sprintf("%.0fs g%d m%d y%d", time.Since(start).Seconds(),
						ps.sims[provsim.Google].Total().Accepted, ps.sims[provsim.Microsoft].Total().Accepted,
						ps.sims[provsim.Yahoo].Total().Accepted))
				}
			}
			t.Logf("progress: %v", progress)
			took := time.Since(start)
			for _, p := range provsim.Providers() {
				c := ps.sims[p].Total()
				t.Logf("%s: accepted %d of %d, %d connections, deferrals: %d rate, %d connections; blocks %d, transactions after a block %d",
					p, c.Accepted, mix[p], c.Connections, c.DeferredRate, c.DeferredConnections, c.BlocksTriggered, c.TransactionsAfterBlock)
				if c.BlocksTriggered != 0 || c.BlockReplies != 0 {
					t.Errorf("%s blocked Repute", p)
				}
				if c.Accepted != int64(mix[p]) {
					t.Errorf("%s accepted %d of %d", p, c.Accepted, mix[p])
				}
			}
			// Every delay Repute imposed on itself is explained: a throttled event with a
			// reason and the time the message may go.
			reasons := map[string]int{}
			for _, ev := range a.rawEvents(t) {
				if ev.Event == "throttled" {
					reasons[ev.Reason]++
					if ev.NextAttempt.IsZero() || !strings.Contains("cap rate backoff paused connections", ev.Reason) {
						t.Errorf("throttled event without a reason or a time: %+v", ev)
						break
					}
				}
			}
			t.Logf("throttled events by reason: %v", reasons)
			if reasons["rate"]+reasons["backoff"] == 0 {
				t.Error("no throttled event for the pacing")
			}
			ratio := took.Seconds() / ideal.Seconds()
			t.Logf("limits×%v: %d messages in %v; ideal %v; %.2f× the ideal", factor, n, took.Round(10*time.Millisecond), ideal.Round(10*time.Millisecond), ratio)
			if ratio > 1.3 {
				t.Errorf("%.2f× the ideal time, want at most 1.3×", ratio)
			}
			if out := a.mustCLI("", "provider", "status"); t.Failed() || testing.Verbose() {
				t.Logf("provider status: %s", out)
			}
		})
	}
}

// rawEvents reads the server's mail-event log whole, every field.
func (s *server) rawEvents(t *testing.T) []obs.Event {
	t.Helper()
	f, err := os.Open(filepath.Join(s.dataDir, "events.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []obs.Event
	if err := obs.ReadEvents(f, func(e obs.Event) error { out = append(out, e); return nil }); err != nil {
		t.Errorf("events.log: %v", err)
	}
	return out
}
