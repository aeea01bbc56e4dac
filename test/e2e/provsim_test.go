package e2e

import (
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/repute-mail/repute/internal/testcert"
	"github.com/repute-mail/repute/test/provsim"
)

// TestProviderConnectionCap: ten Microsoft 365 tenants are one destination (their MX
// hosts are Microsoft's), and Microsoft, simulated, takes at most two connections from
// one IP and refuses more with its real "421 4.3.2 ... concurrent connections" greeting.
// Repute must find that out by itself: it opens fewer connections after the refusals,
// every message arrives, and the simulated provider never escalates to a block.
func TestProviderConnectionCap(t *testing.T) {
	t.Parallel()
	z := newZone(t)
	// The server's address has sent mail for a year: no warm-up caps.
	a := newServer(t, serverOptions{Domain: "a.test", DNS: z.addr, Queue: fastQueue, TimeScale: 60,
		Extra: "\n[warmup]\nfirst_use = { \"default\" = 2025-01-01 }\n"})
	z.mailDomain("a.test", "mx.a.test", a.ip)
	simIP := allocAddr(t, false, a.ports.SMTP)
	profile := provsim.DefaultProfile(provsim.Microsoft)
	profile.MaxConnections = 2
	profile.RatePerMinute = 100000                         // only the connection cap matters here
	srvTLS, _ := testcert.SelfSigned(t, "mx.provsim.test") // Microsoft always offers STARTTLS
	sim, err := provsim.Start(provsim.Config{Addr: net.JoinHostPort(simIP, strconv.Itoa(a.ports.SMTP)), Profile: profile, TLS: srvTLS})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	var rcpts []string
	for i := range 10 {
		tenant := fmt.Sprintf("tenant%d", i)
		z.add(fmt.Sprintf("%s.test. MX 0 %s-test.mail.protection.outlook.com.", tenant, tenant),
			fmt.Sprintf("%s-test.mail.protection.outlook.com. A %s", tenant, simIP))
		for j := range 3 {
			rcpts = append(rcpts, fmt.Sprintf("user%d@%s.test", j, tenant))
		}
	}
	a.start()
	a.submit(t, "alice", rcpts, "to ten tenants "+uniqueID())
	took := a.waitQueueEmpty(t, 2*deliveryTimeout)
	total := sim.Total()
	t.Logf("delivered in %v: %d connections, %d refused at the cap, %d recipients accepted, %d throttled events",
		took.Round(10*time.Millisecond), total.Connections, total.DeferredConnections, total.Recipients,
		len(eventsOfKind(a.events(t), "throttled")))
	if total.Recipients != int64(len(rcpts)) {
		t.Errorf("%d recipients accepted by the simulated Microsoft, want %d", total.Recipients, len(rcpts))
	}
	if total.BlocksTriggered != 0 || total.TransactionsAfterBlock != 0 {
		t.Errorf("Repute was blocked: %+v", total)
	}
	if total.DeferredConnections == 0 {
		t.Error("the connection cap was never hit: the test shows nothing")
	}
	if evs := eventsOfKind(a.events(t), "throttled"); len(evs) == 0 {
		t.Error("no throttled event for the refused connections")
	}
}
