package e2e

import (
	"crypto/tls"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestOutboundMTASTS checks MTA-STS (RFC 8461) in enforce mode. Two receiving domains
// share one MX host, an SMTP sink whose certificate (from the test's CA, which the sender
// trusts through SSL_CERT_FILE) is valid for both MX names:
//
//   - d.test's policy lists its MX (mx.d.test): the message is delivered, over TLS;
//   - b.test's policy lists mx.elsewhere.test, not its MX mx.b.test: the message must
//     not be delivered, and the queue entry's last_error says MTA-STS.
//
// The policies are served over HTTPS by the test on 127.0.0.x:443 for
// mta-sts.b.test and mta-sts.d.test.
func TestOutboundMTASTS(t *testing.T) {
	t.Parallel()
	stsIP := allocAddr(t, false, 443) // skips without root: policies are fetched from port 443
	z := newZone(t)
	ca := newTestCA(t)
	a := newServer(t, serverOptions{DNS: z.addr, Queue: fastQueue, Env: []string{"SSL_CERT_FILE=" + ca.PEMPath}})
	sinkIP, _ := allocIP(t)
	mxCert := ca.issue(t, "mx.b.test", "mx.d.test")
	k := startSink(t, net.JoinHostPort(sinkIP, strconv.Itoa(a.opts.RemotePort)), &mxCert, false)

	z.mailDomain("a.test", "mx.a.test", a.ip)
	for _, d := range []string{"b.test", "d.test"} {
		z.mailDomain(d, "mx."+d, sinkIP)
		z.add(`_mta-sts.`+d+`. TXT "v=STSv1; id=1"`, "mta-sts."+d+". A "+stsIP)
	}
	pol := startPolicyServer(t, stsIP, ca.issue(t, "mta-sts.b.test", "mta-sts.d.test"), map[string]string{
		"mta-sts.b.test": "version: STSv1\r\nmode: enforce\r\nmx: mx.elsewhere.test\r\nmax_age: 86400\r\n",
		"mta-sts.d.test": "version: STSv1\r\nmode: enforce\r\nmx: mx.d.test\r\nmax_age: 86400\r\n",
	})
	a.start()

	a.submit(t, "alice", []string{"dan@d.test"}, "to d "+uniqueID())
	a.submit(t, "alice", []string{"bob@b.test"}, "to b "+uniqueID())

	waitFor(t, deliveryTimeout, "the message to d.test at the sink", func() (bool, string) {
		return len(k.find("d.test")) > 0, "sink has: " + k.summary()
	})
	if m := k.find("d.test")[0]; !m.TLS {
		t.Errorf("message to d.test (MTA-STS enforce, matching MX) was delivered without TLS")
	}
	e := a.waitQueueEntry(t, "bob@b.test", deliveryTimeout, "an attempt refused by MTA-STS", func(e queueEntry) bool {
		return e.Attempts >= 1 && strings.Contains(strings.ToLower(e.LastError), "mta-sts")
	})
	t.Logf("b.test: %s", e)
	if got := k.find("b.test"); len(got) > 0 {
		t.Errorf("message to b.test delivered to an MX its MTA-STS policy does not list: %s", k.summary())
	}
	if !pol.wasFetched("mta-sts.b.test") || !pol.wasFetched("mta-sts.d.test") {
		t.Errorf("policies fetched: %v; want both", pol.fetchedHosts())
	}
}

// policyServer serves MTA-STS policies over HTTPS on IP:443, by Host.
type policyServer struct {
	mu      sync.Mutex
	fetched map[string]int
}

func startPolicyServer(t *testing.T, ip string, cert tls.Certificate, policies map[string]string) *policyServer {
	t.Helper()
	p := &policyServer{fetched: map[string]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/mta-sts.txt", func(w http.ResponseWriter, r *http.Request) {
		host := strings.ToLower(r.Host)
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		p.mu.Lock()
		p.fetched[host]++
		p.mu.Unlock()
		body, ok := policies[host]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, body)
	})
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "443"))
	if err != nil {
		t.Fatalf("MTA-STS policy server: %v", err)
	}
	srv := &http.Server{
		Handler:           mux,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() {
		if err := srv.ServeTLS(ln, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Logf("MTA-STS policy server: %v", err)
		}
	}()
	t.Cleanup(func() { _ = srv.Close() })
	return p
}

func (p *policyServer) wasFetched(host string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fetched[host] > 0
}

func (p *policyServer) fetchedHosts() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int{}
	for h, n := range p.fetched {
		out[h] = n
	}
	return out
}
