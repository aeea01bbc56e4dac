package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestOutboundDANE checks DANE (RFC 7672) against a DNSSEC-signed zone. Knot signs b.test
// (ECDSA P-256, NSEC) and serves it on loopback; a validating unbound, with b.test's DS
// as its trust anchor, is the sending Repute's only resolver. Two domains of the zone
// have their MX on one SMTP sink offering STARTTLS:
//
//   - b.test: TLSA 3 1 1 of the sink's key — delivered, over TLS;
//   - bad.b.test: TLSA 3 1 1 of some other key — not delivered; the message stays
//     queued and last_error names DANE or TLSA.
//
// The sink's certificate is from a CA the sender does not trust: only DANE can
// authenticate it (DANE-EE ignores names and chains, RFC 7671 §5.1).
func TestOutboundDANE(t *testing.T) {
	t.Parallel()
	for _, tool := range []struct{ path, pkg string }{
		{"/usr/sbin/knotd", "knot"}, {"/usr/sbin/keymgr", "knot"}, {"/usr/sbin/knotc", "knot"},
		{"/usr/sbin/unbound", "unbound"},
	} {
		needTool(t, tool.path, tool.pkg)
	}
	sinkIP, _ := allocIP(t)
	resolver := reserveDNSSECResolver(t)
	a := newServer(t, serverOptions{DNS: resolver.addr, Queue: fastQueue})
	port := a.opts.RemotePort

	ca := newTestCA(t) // not trusted by the sender
	cert := ca.issue(t, "mx.b.test", "mx.bad.b.test")
	other := ca.issue(t, "mx.bad.b.test")
	k := startSink(t, net.JoinHostPort(sinkIP, strconv.Itoa(port)), &cert, false)

	resolver.start(t, "b.test.", []string{
		"@ MX 10 mx.b.test.",
		"mx A " + sinkIP,
		fmt.Sprintf("_%d._tcp.mx TLSA 3 1 1 %s", port, spkiSHA256(cert)),
		"bad MX 10 mx.bad.b.test.",
		"mx.bad A " + sinkIP,
		fmt.Sprintf("_%d._tcp.mx.bad TLSA 3 1 1 %s", port, spkiSHA256(other)),
	})
	a.start()

	a.submit(t, "alice", []string{"bob@b.test"}, "DANE match "+uniqueID())
	a.submit(t, "alice", []string{"bob@bad.b.test"}, "DANE mismatch "+uniqueID())

	waitFor(t, deliveryTimeout, "the message to b.test (matching TLSA) at the sink", func() (bool, string) {
		return len(k.find("b.test")) > 0, fmt.Sprintf("sink has: %s; a's queue: %v", k.summary(), a.queueList(t))
	})
	if m := k.find("b.test")[0]; !m.TLS {
		t.Errorf("message to b.test (DANE) was delivered without TLS")
	}
	e := a.waitQueueEntry(t, "bob@bad.b.test", deliveryTimeout, "an attempt refused by DANE", func(e queueEntry) bool {
		low := strings.ToLower(e.LastError)
		return e.Attempts >= 1 && (strings.Contains(low, "dane") || strings.Contains(low, "tlsa"))
	})
	t.Logf("bad.b.test: %s", e)
	if got := k.find("bad.b.test"); len(got) > 0 {
		t.Errorf("message to bad.b.test delivered although no TLSA record matches the MX's key: %s", k.summary())
	}
}

// dnssecResolver is Knot (authoritative, signing) behind a validating unbound, both on
// 127.0.0.1 with ports of their own, both children of the test stopped by PID.
type dnssecResolver struct {
	dir       string
	addr      string // unbound, for dns.resolver
	knotPort  int
	resolvPrt int
}

// reserveDNSSECResolver picks the ports, so that the resolver's address can go into a
// server's config before the zone (which may need that server's certificate) exists.
func reserveDNSSECResolver(t *testing.T) *dnssecResolver {
	t.Helper()
	r := &dnssecResolver{dir: tempDir(t), knotPort: freePort(t), resolvPrt: freePort(t)}
	for r.resolvPrt == r.knotPort {
		r.resolvPrt = freePort(t)
	}
	r.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(r.resolvPrt))
	return r
}

// start writes the zone (records relative to origin), lets Knot sign it, exports its
// DS as unbound's trust anchor, starts unbound and waits until it answers with the AD
// bit.
func (r *dnssecResolver) start(t *testing.T, origin string, records []string) {
	t.Helper()
	d := r.dir
	for _, sub := range []string{"zones", "db", "run"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	zone := fmt.Sprintf("$ORIGIN %s\n$TTL 60\n@ SOA ns.%s hostmaster.%s %d 3600 600 86400 60\n@ NS ns.%s\nns A 127.0.0.1\n%s\n",
		origin, origin, origin, time.Now().Unix(), origin, strings.Join(records, "\n"))
	knotConf := knotConfig(d, r.knotPort, []knotZone{{origin, true}})
	knotConfPath := filepath.Join(d, "knot.conf")
	writeFile(t, filepath.Join(d, "zones", strings.TrimSuffix(origin, ".")+".zone"), zone)
	writeFile(t, knotConfPath, knotConf)
	if out, err := exec.Command("/usr/sbin/knotc", "-c", knotConfPath, "conf-check").CombinedOutput(); err != nil {
		t.Fatalf("knotc conf-check: %v\n%s", err, out)
	}
	startDaemon(t, "knotd", filepath.Join(d, "knot.log"), "/usr/sbin/knotd", "-c", knotConfPath)

	// Knot creates the keys and signs the zone at load; its DS is the trust anchor.
	var ds string
	waitFor(t, 20*time.Second, "Knot to sign "+origin, func() (bool, string) {
		out, err := exec.Command("/usr/sbin/keymgr", "-c", knotConfPath, origin, "ds").CombinedOutput()
		ds = string(out)
		if err != nil || !strings.Contains(ds, " DS ") {
			return false, fmt.Sprintf("keymgr ds: %v %s; knot.log: %s", err, out, readTail(filepath.Join(d, "knot.log")))
		}
		m, err := queryDNS(net.JoinHostPort("127.0.0.1", strconv.Itoa(r.knotPort)), origin, dns.TypeDNSKEY)
		if err != nil || !hasType(m, dns.TypeRRSIG) {
			return false, fmt.Sprintf("signed DNSKEY of %s from Knot: %v %v", origin, err, m)
		}
		return true, ""
	})
	anchor := filepath.Join(d, "anchor.ds")
	writeFile(t, anchor, ds)

	unboundConf := unboundConfig(d, r.resolvPrt, anchor, []unboundStub{{origin, fmt.Sprintf("127.0.0.1@%d", r.knotPort), false}})
	unboundConfPath := filepath.Join(d, "unbound.conf")
	writeFile(t, unboundConfPath, unboundConf)
	if out, err := exec.Command("/usr/sbin/unbound-checkconf", unboundConfPath).CombinedOutput(); err != nil {
		t.Fatalf("unbound-checkconf: %v\n%s", err, out)
	}
	startDaemon(t, "unbound", filepath.Join(d, "unbound.log"), "/usr/sbin/unbound", "-d", "-c", unboundConfPath)
	waitFor(t, 20*time.Second, "unbound to validate "+origin, func() (bool, string) {
		m, err := queryDNS(r.addr, origin, dns.TypeMX)
		if err != nil || !m.AuthenticatedData || len(m.Answer) == 0 {
			return false, fmt.Sprintf("MX %s via unbound: %v %v; unbound.log: %s", origin, err, m, readTail(filepath.Join(d, "unbound.log")))
		}
		return true, ""
	})
	t.Logf("DNSSEC: Knot on 127.0.0.1:%d signs %s; validating unbound on %s (trust anchor %s)", r.knotPort, origin, r.addr, anchor)
}

// startDaemon runs a daemon in the foreground as a child of the test and stops it by
// PID (SIGTERM, then SIGKILL after 10 s) when the test ends, printing its log if the
// test failed.
func startDaemon(t *testing.T, name, logPath, path string, args ...string) {
	t.Helper()
	cmd := exec.Command(path, args...)
	out, err := os.OpenFile(logPath+".out", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); out.Close(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("%s (pid %d) log:\n%s\n%s", name, cmd.Process.Pid, readTail(logPath), readTail(logPath+".out"))
		}
	})
}

// queryDNS asks server one question with the DO bit set.
func queryDNS(server, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.SetEdns0(4096, true)
	c := &dns.Client{Timeout: 3 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, _, err := c.ExchangeContext(ctx, m, server)
	return r, err
}

func hasType(m *dns.Msg, t uint16) bool {
	for _, rr := range m.Answer {
		if rr.Header().Rrtype == t {
			return true
		}
	}
	return false
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	const max = 8 << 10
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// knotZone is a zone Knot serves from DIR/zones/NAME.zone, signed (ECDSA P-256, NSEC,
// keys that never roll) or not.
type knotZone struct {
	name   string // absolute or not
	signed bool
}

// knotConfig is the configuration of a Knot serving zones on 127.0.0.1:port, with its
// state under dir.
func knotConfig(dir string, port int, zones []knotZone) string {
	var zs strings.Builder
	for _, z := range zones {
		fmt.Fprintf(&zs, "  - domain: %s.\n", strings.TrimSuffix(z.name, "."))
		if z.signed {
			zs.WriteString("    dnssec-signing: on\n    dnssec-policy: e2e\n")
		}
	}
	return fmt.Sprintf(`server:
    listen: 127.0.0.1@%[2]d
    rundir: %[1]s/run
    pidfile: %[1]s/run/knot.pid
log:
  - target: %[1]s/knot.log
    any: info
database:
    storage: %[1]s/db
control:
    listen: %[1]s/run/knot.sock
policy:
  - id: e2e
    algorithm: ecdsap256sha256
    nsec3: off
    ksk-lifetime: 0
    zsk-lifetime: 0
template:
  - id: default
    storage: %[1]s/zones
    file: "%%s.zone"
    zonefile-sync: -1
    zonefile-load: whole
    journal-content: none
zone:
%[3]s`, dir, port, zs.String())
}

// unboundStub is a zone unbound asks a given server for (addr "127.0.0.1@PORT"); an
// insecure one is validated as unsigned even under a trust anchor.
type unboundStub struct {
	name, addr string
	insecure   bool
}

// unboundConfig is a validating unbound on 127.0.0.1:port with the trust anchors in
// anchorFile, answering only for the stub zones: everything else is NXDOMAIN at once
// instead of a timeout.
func unboundConfig(dir string, port int, anchorFile string, stubs []unboundStub) string {
	var local, stub strings.Builder
	for _, z := range stubs {
		name := strings.TrimSuffix(z.name, ".") + "."
		fmt.Fprintf(&local, "    local-zone: %q transparent\n", name)
		if z.insecure {
			fmt.Fprintf(&local, "    domain-insecure: %q\n", name)
		}
		fmt.Fprintf(&stub, "stub-zone:\n    name: %q\n    stub-addr: %s\n", name, z.addr)
	}
	return fmt.Sprintf(`server:
    interface: 127.0.0.1
    port: %[2]d
    do-ip6: no
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    username: ""
    chroot: ""
    directory: "%[1]s"
    pidfile: "%[1]s/run/unbound.pid"
    logfile: "%[1]s/unbound.log"
    use-syslog: no
    verbosity: 1
    val-log-level: 2
    log-servfail: yes
    trust-anchor-file: "%[3]s"
    local-zone: "." static
%[4]s    cache-max-ttl: 2
    cache-max-negative-ttl: 2
    harden-dnssec-stripped: yes
    module-config: "validator iterator"
%[5]sremote-control:
    control-enable: no
`, dir, port, anchorFile, local.String(), stub.String())
}
