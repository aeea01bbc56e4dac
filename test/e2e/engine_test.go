package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/repute-mail/repute/internal/store"
	"github.com/repute-mail/repute/test/provsim"
)

// webhookSink collects the JSON alerts POSTed to it, on loopback.
type webhookSink struct {
	mu    sync.Mutex
	posts []map[string]any
	srv   *httptest.Server
}

func newWebhookSink(t *testing.T) *webhookSink {
	w := &webhookSink{}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var m map[string]any
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if r.Method != http.MethodPost || json.Unmarshal(body, &m) != nil {
			http.Error(rw, "want a JSON POST", http.StatusBadRequest)
			return
		}
		w.mu.Lock()
		w.posts = append(w.posts, m)
		w.mu.Unlock()
	}))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *webhookSink) find(kind, provider string) map[string]any {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, p := range w.posts {
		if p["kind"] == kind && p["provider"] == provider {
			return p
		}
	}
	return nil
}

// TestProviderBlock: in the middle of a campaign, the simulated Microsoft blocks
// Repute's IP ("550 5.7.1 ... (S3140)" at MAIL). Repute must stop sending to Microsoft
// from that IP at once (the simulator counts every transaction after its block reply),
// tell the admin by mail and webhook, send Microsoft's mail through the fallback relay
// (a private Postfix on loopback, sending from its own address) while Gmail and Yahoo
// keep flowing from the blocked IP, and after the cool-down resume with one probe.
func TestProviderBlock(t *testing.T) {
	needTool(t, "/usr/sbin/postfix", "postfix")
	needTool(t, "unshare", "util-linux")
	if os.Geteuid() != 0 {
		t.Skip("the fallback relay is a private Postfix: its master runs as root, on port 25")
	}
	const timeScale = 60
	dnsIP := allocAddr(t, true, 53)
	pfIP := allocAddr(t, false, 25)
	z := newZone(t)
	z.listen(dnsIP)
	hook := newWebhookSink(t)
	a := campaignServer(t, z, timeScale, serverOptions{
		OutboundExtra: fmt.Sprintf("fallback_relay = %q\nrelay_tls = \"none\"\n", pfIP+":25"),
		ShapingExtra:  "cool_down = \"10m\"\n",
		Extra:         fmt.Sprintf("\n[alerts]\nwebhook_url = %q\n", hook.srv.URL),
	})
	if a.opts.RemotePort != 25 {
		t.Skipf("Postfix delivers to port 25 and the test servers use %d", a.opts.RemotePort)
	}
	a.mustCLI("", "alias", "add", "postmaster@a.test", "alice@a.test")
	ms := provsim.DefaultProfile(provsim.Microsoft)
	ms.RatePerMinute, ms.MaxConnections = 100000, 50 // only the block matters here
	ps := startSims(t, z, 25, timeScale, provsim.DefaultProfile(provsim.Google), ms, provsim.DefaultProfile(provsim.Yahoo))
	ca := newTestCA(t)
	startPostfix(t, postfixOptions{IP: pfIP, Domain: "c.test", Nameserver: dnsIP, Cert: ca.issue(t, "mx.c.test"), BindAddress: pfIP})
	mix := map[provsim.Provider]int{provsim.Google: 300, provsim.Microsoft: 400, provsim.Yahoo: 150}
	n := fillQueue(t, a, "news@a.test", store.ClassBulk, mix)
	a.start()

	msSim := ps.sims[provsim.Microsoft]
	waitFor(t, 30*time.Second, "a quarter of Microsoft's mail", func() (bool, string) {
		c := msSim.Stats(a.ip)
		return c.Accepted >= 100, fmt.Sprintf("%d accepted", c.Accepted)
	})
	msSim.Block(a.ip, 5*time.Minute) // shorter than the cool-down: the first probe succeeds
	blockedAt := time.Now()
	waitFor(t, 2*time.Minute, "every message to arrive", func() (bool, string) {
		got := ps.accepted()
		return got >= int64(n), fmt.Sprintf("%d of %d; Microsoft from the relay: %d", got, n, msSim.Stats(pfIP).Accepted)
	})
	direct, relayed := msSim.Stats(a.ip), msSim.Stats(pfIP)
	t.Logf("Microsoft: %d accepted from Repute (%d block replies, %d transactions and %d connections after one, %d and %d racing it), %d through the fallback relay; all in %v after the block",
		direct.Accepted, direct.BlockReplies, direct.TransactionsAfterBlock, direct.ConnectionsAfterBlock,
		direct.TransactionsRacingBlock, direct.ConnectionsRacingBlock, relayed.Accepted,
		time.Since(blockedAt).Round(10*time.Millisecond))
	if direct.BlockReplies == 0 {
		t.Fatal("Repute never met the block: the test shows nothing")
	}
	// A connection being opened at that moment may still arrive (it then sends nothing);
	// a transaction may not.
	if direct.TransactionsAfterBlock != 0 || direct.ConnectionsAfterBlock > 2 {
		t.Errorf("after the block reply Repute started %d transactions and %d connections from the blocked IP",
			direct.TransactionsAfterBlock, direct.ConnectionsAfterBlock)
	}
	if relayed.Accepted == 0 || direct.Accepted+relayed.Accepted != int64(mix[provsim.Microsoft]) {
		t.Errorf("Microsoft's mail: %d direct and %d through the fallback relay, want %d in all, some relayed",
			direct.Accepted, relayed.Accepted, mix[provsim.Microsoft])
	}
	for _, p := range []provsim.Provider{provsim.Google, provsim.Yahoo} {
		if c := ps.sims[p].Stats(a.ip); c.Accepted != int64(mix[p]) || c.BlocksTriggered != 0 {
			t.Errorf("%s: %d accepted from Repute, %d blocks; want %d, none", p, c.Accepted, c.BlocksTriggered, mix[p])
		}
	}
	if ev := eventsOfKind(a.events(t), "bounced"); len(ev) != 0 {
		t.Errorf("%d messages bounced because of the block: %v", len(ev), ev[0])
	}

	// The admin is told: a webhook POST and a mail to the postmaster.
	waitFor(t, 10*time.Second, "the webhook POST about the pause", func() (bool, string) {
		return hook.find("paused", "microsoft") != nil, fmt.Sprintf("%d posts", len(hook.posts))
	})
	p := hook.find("paused", "microsoft")
	if p["source_ip"] != a.ip || p["category"] != "ip_reputation" || !strings.Contains(fmt.Sprint(p["reply"]), "S3140") ||
		p["url"] == "" || p["until"] == nil {
		t.Errorf("webhook alert: %v", p)
	}
	alertMail := a.waitForMessage(t, "alice", 10*time.Second, "the alert to the postmaster", func(m storedMessage) bool {
		return strings.Contains(m.Subject, "microsoft") && strings.Contains(m.Subject, "paused")
	})
	if !strings.Contains(alertMail.Body, "S3140") || !strings.Contains(alertMail.Body, "repute provider resume") {
		t.Errorf("the alert mail does not quote the reply or say what to do:\n%s", alertMail.Body)
	}
	var status []map[string]any
	a.cliJSON(t, &status, "provider", "status", "--json")
	paused := false
	for _, s := range status {
		paused = paused || s["provider"] == "microsoft" && s["state"] == "paused" && s["source_ip"] == a.ip && s["paused_until"] != nil
	}
	if !paused {
		t.Errorf("provider status does not show the pause: %v", status)
	}
	// The pause survives a restart (the engine's state is in the store).
	a.stop()
	a.start()
	status = nil
	a.cliJSON(t, &status, "provider", "status", "--json")
	paused = false
	for _, s := range status {
		paused = paused || s["provider"] == "microsoft" && s["state"] == "paused" && s["source_ip"] == a.ip
	}
	if !paused {
		t.Errorf("after a restart the pause is gone: %v", status)
	}

	// After the cool-down (ten simulated minutes), the next message to Microsoft is the
	// probe: it goes directly, is accepted (the block has ended), and sending resumes.
	if wait := 10*time.Second - time.Since(blockedAt) + time.Second; wait > 0 {
		time.Sleep(wait)
	}
	subj := "probe " + uniqueID()
	a.submit(t, "alice", []string{"someone@outlook.test"}, subj)
	waitFor(t, 20*time.Second, "the probe to be accepted from Repute's own IP", func() (bool, string) {
		c := msSim.Stats(a.ip)
		return c.Accepted > direct.Accepted, fmt.Sprintf("%d accepted directly", c.Accepted)
	})
	waitFor(t, 10*time.Second, "the resumed alert", func() (bool, string) {
		return hook.find("resumed", "microsoft") != nil && len(eventsOfKind(a.events(t), "resumed")) > 0, ""
	})
}

// TestTransactionalFirst: at real time (time_scale 1), a bulk backlog to Yahoo is paced
// at the rate Yahoo allows; a password reset submitted meanwhile must not wait behind
// it: it reaches Yahoo within five seconds.
func TestTransactionalFirst(t *testing.T) {
	t.Parallel()
	z := newZone(t)
	a := campaignServer(t, z, 1, serverOptions{})
	yahoo := provsim.DefaultProfile(provsim.Yahoo)
	ps := startSims(t, z, a.opts.RemotePort, 1, yahoo)
	sim := ps.sims[provsim.Yahoo]
	fillQueue(t, a, "news@a.test", store.ClassBulk, map[provsim.Provider]int{provsim.Yahoo: 600})
	a.start()
	waitFor(t, 30*time.Second, "the bulk mail to be flowing", func() (bool, string) {
		c := sim.Total()
		return c.Accepted >= 20, fmt.Sprintf("%d accepted", c.Accepted)
	})
	var summary []struct {
		Domain, Provider string
		Total, Bulk      int
	}
	a.cliJSON(t, &summary, "queue", "summary")
	if len(summary) != 1 || summary[0].Provider != "yahoo" || summary[0].Bulk == 0 || summary[0].Bulk != summary[0].Total {
		t.Errorf("queue summary during the campaign: %+v; want yahoo.test, provider yahoo, all bulk", summary)
	}
	if out := a.mustCLI("", "queue", "summary"); !regexp.MustCompile(`yahoo\s+bulk\s+\d+`).MatchString(out) {
		t.Errorf("queue summary has no line for Yahoo's bulk mail:\n%s", out)
	}
	before := sim.Total().Accepted
	subj := "password reset " + uniqueID()
	sent := time.Now()
	a.submit(t, "alice", []string{"customer@yahoo.test"}, subj)
	took := waitFor(t, 30*time.Second, "the transactional message at Yahoo", func() (bool, string) {
		for _, m := range sim.Messages() {
			for _, to := range m.To {
				if to == "customer@yahoo.test" {
					return true, ""
				}
			}
		}
		return false, ""
	})
	bulkMeanwhile := sim.Total().Accepted - before
	t.Logf("the transactional message reached Yahoo %v after its submission (%v with the submission); %d bulk messages were accepted meanwhile, %d of 600 bulk in all",
		took.Round(time.Millisecond), time.Since(sent).Round(time.Millisecond), bulkMeanwhile, sim.Total().Accepted)
	if took > 5*time.Second {
		t.Errorf("the transactional message waited %v behind the bulk backlog, want at most 5 s", took)
	}
	if sim.Total().Accepted >= 600 {
		t.Error("the backlog was gone before the transactional message: the test shows nothing")
	}
}

// TestProviderPauseResume: the admin pauses a provider on the running server; mail to it
// waits (a throttled event says why) while other mail flows; resume sends it at once.
func TestProviderPauseResume(t *testing.T) {
	t.Parallel()
	z := newZone(t)
	a := campaignServer(t, z, 1, serverOptions{})
	ps := startSims(t, z, a.opts.RemotePort, 1, provsim.DefaultProfile(provsim.Yahoo), provsim.DefaultProfile(provsim.Google))
	a.start()
	if out := a.mustCLI("", "provider", "pause", "yahoo"); !strings.Contains(out, "paused yahoo") {
		t.Fatalf("provider pause: %q", out)
	}
	a.submit(t, "alice", []string{"friend@yahoo.test", "friend@gmail.test"}, "while paused "+uniqueID())
	waitFor(t, 10*time.Second, "Gmail's copy", func() (bool, string) { return ps.sims[provsim.Google].Total().Accepted == 1, "" })
	time.Sleep(time.Second)
	if n := ps.sims[provsim.Yahoo].Total().Connections; n != 0 {
		t.Fatalf("%d connections to the paused Yahoo", n)
	}
	var status []map[string]any
	a.cliJSON(t, &status, "provider", "status", "--json")
	found := false
	for _, s := range status {
		found = found || s["provider"] == "yahoo" && s["state"] == "paused" && s["reason"] == "admin"
	}
	if !found {
		t.Errorf("status does not show the admin's pause: %v", status)
	}
	if evs := eventsFor(a.events(t), "throttled", "friend@yahoo.test"); len(evs) == 0 {
		t.Error("no throttled event for the mail held by the pause")
	}
	resumed := time.Now()
	a.mustCLI("", "provider", "resume", "yahoo")
	took := waitFor(t, 10*time.Second, "Yahoo's copy after the resume", func() (bool, string) {
		return ps.sims[provsim.Yahoo].Total().Accepted == 1, ""
	})
	t.Logf("delivered %v after the resume (%v)", took.Round(time.Millisecond), time.Since(resumed).Round(time.Millisecond))
	if took > 5*time.Second {
		t.Errorf("the resume took %v to act", took)
	}
}
