package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDoctorChecks runs `repute check --json` against real DNS: Knot serving and signing
// one zone per set-up, a validating unbound in front of it (dns.resolver), rbldnsd serving
// the blocklist zones, and `repute serve` presenting certificates on 25/465/993 and the
// MTA-STS policy on 443. Everything runs in a network namespace the test creates, where
// the sending addresses (45.33.32.N, public addresses as far as the checks can tell) are
// local, so no packet leaves the machine.
//
// Each set-up's zone is what `repute dns records --json` prints for it, then broken in
// one way; the test asserts that the correct set-up passes everything that can pass
// offline, and that each broken one fails exactly the check that covers it, with a fix
// that names the record.
func TestDoctorChecks(t *testing.T) {
	needBinary(t)
	for _, tool := range []struct{ path, pkg string }{
		{"/usr/sbin/knotd", "knot"}, {"/usr/sbin/keymgr", "knot"}, {"/usr/sbin/knotc", "knot"},
		{"/usr/sbin/unbound", "unbound"}, {"/usr/sbin/rbldnsd", "rbldnsd"}, {"/usr/bin/kdig", "knot-dnsutils"},
		{"/usr/sbin/ip", "iproute2"},
	} {
		needTool(t, tool.path, tool.pkg)
	}
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	lab := newDoctorLab(t)
	cases := doctorCases()
	var mx []string
	for i := range cases {
		h := cases[i].hostname
		if h == "" {
			h = "mail." + cases[i].domain()
		}
		mx = append(mx, fmt.Sprintf("%q", h))
	}
	lab.policyMX = strings.Join(mx, ", ")
	for i := range cases {
		lab.prepare(&cases[i])
	}
	lab.startDNS(cases)
	lab.startServers(cases)

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rep := lab.check(t, c)
			var failed, errored []string
			for _, r := range rep.Checks {
				switch r.Status {
				case "fail":
					failed = append(failed, r.ID)
				case "error":
					errored = append(errored, r.ID)
				}
			}
			if c.fail == "" {
				unexpected := slices.DeleteFunc(slices.Clone(errored), func(id string) bool { return slices.Contains(c.mayError, id) })
				if len(failed) > 0 || len(unexpected) > 0 {
					t.Errorf("failures %v and errors %v:\n%s", failed, unexpected, rep.text())
				}
				for _, id := range c.mayError {
					// A list that answers with its error code is an error, never a failure.
					if !slices.Contains(errored, id) {
						t.Errorf("%s is not reported as an error:\n%s", id, rep.text())
					}
				}
				for _, r := range rep.Checks {
					if r.Status == "warn" && !slices.Contains(c.mayWarn, r.ID) {
						t.Errorf("unexpected warning: %s %s: %s", r.ID, r.Target, r.Found)
					}
				}
				return
			}
			for _, id := range failed {
				if id != c.fail {
					t.Errorf("%s failed too, only %s should:\n%s", id, c.fail, rep.text())
				}
			}
			for _, id := range errored {
				if !slices.Contains(c.mayError, id) {
					t.Errorf("%s could not run:\n%s", id, rep.text())
				}
			}
			var got []doctorResult
			for _, r := range rep.Checks {
				if r.ID == c.fail && r.Status == "fail" {
					got = append(got, r)
				}
			}
			if len(got) == 0 {
				t.Fatalf("%s did not fail:\n%s", c.fail, rep.text())
			}
			for _, r := range got {
				if !strings.Contains(r.Fix+" "+r.URL, c.fixHas) {
					t.Errorf("%s %s: fix %q (url %q) does not name %q", r.ID, r.Target, r.Fix, r.URL, c.fixHas)
				}
			}
			t.Logf("%s: %s — fix: %s", got[0].Target, got[0].Found, got[0].Fix)
		})
	}
	t.Run("self-check", func(t *testing.T) { lab.selfCheck(t, cases[0]) })
}

// selfCheck runs a server whose self-check runs every second (check.interval 1m at
// time_scale 60), breaks the SPF record of its domain in Knot, and expects exactly one
// check_changed event and one check_failed webhook for it, then, with the record back,
// a check_fixed notice.
func (l *doctorLab) selfCheck(t *testing.T, c doctorCase) {
	dir := filepath.Join(l.dir, "watch")
	os.MkdirAll(dir, 0o755)
	hooks := filepath.Join(dir, "hooks.jsonl")
	l.daemon("webhook", filepath.Join(dir, "webhook.log"), "/usr/bin/python3", "-c", `import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open(sys.argv[1], "ab") as f: f.write(body + b"\n")
        self.send_response(200); self.end_headers()
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", 8099), H).serve_forever()`, hooks)
	cfg := filepath.Join(dir, "repute.toml")
	writeFile(t, cfg, fmt.Sprintf(`hostname = %q
data_dir = %q

[listen]
smtp = "%[3]s:2525"
submission = ""
submissions = "%[3]s:2465"
imap = ""
imaps = "%[3]s:2993"
http = ""
https = ""

[tls]
cert_file = %[4]q
key_file = %[5]q

[dns]
resolver = "127.0.0.1:53"
dnssec_probe = "d00.test"

[mta_sts]
mx = [%[6]s]

[outbound]
public_ips = [%[7]q]

[check]
port25_probe = "127.0.0.1:25"
blocklists = ["zen.spamhaus.org"]
domain_blocklists = []
interval = "1m"

[shaping]
time_scale = 60

[alerts]
postmaster = false
webhook_url = "http://127.0.0.1:8099/hook"

[smtp]
min_free_disk = 1048576
`, c.hostname, filepath.Join(dir, "data"), c.ip(), l.certFile, l.keyFile, l.policyMX, c.ip()))
	if out, err := l.nsRun(time.Minute, "", reputeBin, "domain", "add", c.domain(), "--config", cfg); err != nil {
		t.Fatalf("domain add: %v\n%s", err, out)
	}
	events := filepath.Join(dir, "data", "events.log")
	l.serve("watch", cfg, c.ip()+":2525")
	// The first run is the baseline: its failures (this server's DKIM keys are not the
	// published ones) are logged, not announced.
	waitFor(t, 30*time.Second, "the first self-check", func() (bool, string) {
		data, _ := os.ReadFile(filepath.Join(dir, "data", "checks.json"))
		return len(data) > 0, readTail(filepath.Join(l.dir, "serve-watch.log.out"))
	})
	knotc := func(args ...string) {
		out, err := exec.Command("/usr/sbin/knotc", append([]string{"-c", filepath.Join(l.dir, "dns", "knot.conf")}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("knotc %v: %v\n%s", args, err, out)
		}
	}
	zone := c.domain() + "."
	good := fmt.Sprintf(`"v=spf1 ip4:%s -all"`, c.ip())
	setSPF := func(value string) {
		knotc("zone-begin", zone)
		knotc("zone-unset", zone, "@", "TXT")
		knotc("zone-set", zone, "@", "60", "TXT", value)
		knotc("zone-commit", zone)
	}
	setSPF(`"v=spf1 ip4:45.33.32.250 -all"`)
	count := func(path, substr string) int {
		data, _ := os.ReadFile(path)
		return strings.Count(string(data), substr)
	}
	waitFor(t, 60*time.Second, "a check_changed event and a check_failed webhook for spf", func() (bool, string) {
		return count(events, `"event":"check_changed"`) >= 1 && count(hooks, `"kind":"check_failed"`) >= 1,
			readTail(events) + "\nhooks: " + readTail(hooks)
	})
	hookText, _ := os.ReadFile(hooks)
	if n := strings.Count(string(hookText), `"check":"spf"`); n != 1 || !strings.Contains(string(hookText), `"target":"`+c.domain()+`"`) {
		t.Errorf("want one check_failed webhook for spf of %s, got:\n%s", c.domain(), hookText)
	}
	setSPF(good)
	waitFor(t, 60*time.Second, "a check_fixed webhook", func() (bool, string) {
		return count(hooks, `"kind":"check_fixed"`) >= 1, readTail(hooks)
	})
	if n := count(hooks, `"kind":"check_failed"`); n != 1 {
		t.Errorf("%d check_failed webhooks, want 1 (no repeats while the check keeps failing)", n)
	}
}

// doctorCase is one set-up: domain dNN.test, sending address 45.33.32.N, hostname
// mail.dNN.test unless changed.
type doctorCase struct {
	name     string
	n        int
	fail     string   // the check that must fail; "" for the correct set-up
	fixHas   string   // what the fix (or its URL) must name
	mayError []string // checks allowed to be error (they depend on what is broken)
	mayWarn  []string // for the correct set-up: warnings it may have

	hostname string // default mail.dNN.test
	unsigned bool   // the zone is not signed
	certFile string // set by startDNS: the certificate the set-up's server presents
	keyFile  string
	special  string // "expired" or "othername": a server of its own with that certificate
	probe    string // check.port25_probe; default the lab's own MX
	zone     func(z *labZone, l *doctorLab)
	ptr      func(c *doctorCase) string // the PTR of the sending address; default the hostname
}

func (c *doctorCase) domain() string { return fmt.Sprintf("d%02d.test", c.n) }
func (c *doctorCase) ip() string     { return fmt.Sprintf("45.33.32.%d", c.n+1) }

func doctorCases() []doctorCase {
	cases := doctorCaseList()
	for i := range cases {
		cases[i].n = i
	}
	return cases
}

func doctorCaseList() []doctorCase {
	host := func(c *doctorCase) string { return c.hostname }
	return []doctorCase{
		{name: "correct", fail: "", mayWarn: []string{}, zone: func(z *labZone, l *doctorLab) {
			// The generated DMARC record starts at p=none, a warning by design; a domain
			// whose reports are clean has moved on.
			z.replace("_dmarc", "TXT", "v=DMARC1; p=reject; rua=mailto:reports@"+z.origin)
		}},
		{name: "no PTR", fail: "ptr", fixHas: "PTR", mayError: []string{"fcrdns", "helo"}, ptr: func(*doctorCase) string { return "" }},
		{name: "PTR not forward-confirming", fail: "fcrdns", fixHas: "A", zone: func(z *labZone, l *doctorLab) {
			z.replace("mail", "A", "45.33.32.200") // the hostname points elsewhere (also a local address, so probes still work)
		}},
		{name: "PTR is not the hostname", fail: "helo", fixHas: "PTR", ptr: func(c *doctorCase) string { return "other." + c.domain() },
			zone: func(z *labZone, l *doctorLab) { z.add("other", "A", "45.33.32.4") }},
		{name: "generic PTR", fail: "ip_type", fixHas: "PTR", hostname: "45-33-32-5.dyn.d04.test", ptr: host},
		{name: "two SPF records", fail: "spf", fixHas: "v=spf1", zone: func(z *labZone, l *doctorLab) {
			z.add("@", "TXT", "v=spf1 mx -all")
		}},
		{name: "SPF with 11 lookups", fail: "spf", fixHas: "v=spf1", zone: func(z *labZone, l *doctorLab) {
			var terms []string
			for i := range 11 {
				terms = append(terms, fmt.Sprintf("a:h%d.%s", i, z.origin))
			}
			z.add("spf1", "TXT", "v=spf1 "+strings.Join(terms, " ")+" -all")
			z.replace("@", "TXT", "v=spf1 ip4:45.33.32.7 include:spf1."+z.origin+" -all")
		}},
		{name: "SPF without our IP", fail: "spf", fixHas: "ip4:45.33.32.8", zone: func(z *labZone, l *doctorLab) {
			z.replace("@", "TXT", "v=spf1 ip4:45.33.32.250 -all")
		}},
		{name: "SPF +all", fail: "spf", fixHas: "-all", zone: func(z *labZone, l *doctorLab) {
			z.replace("@", "TXT", "v=spf1 ip4:45.33.32.9 +all")
		}},
		{name: "stale DKIM key", fail: "dkim", fixHas: "_domainkey", zone: func(z *labZone, l *doctorLab) {
			for _, r := range z.records {
				if r.typ == "TXT" && strings.Contains(r.name, "._domainkey") && strings.Contains(r.value, "k=rsa") {
					z.replace(r.name, "TXT", "v=DKIM1; k=rsa; p="+l.staleKey)
					return
				}
			}
		}},
		{name: "missing DKIM selector", fail: "dkim", fixHas: "_domainkey", zone: func(z *labZone, l *doctorLab) {
			for _, r := range z.records {
				if r.typ == "TXT" && strings.Contains(r.name, "._domainkey") && strings.Contains(r.value, "k=ed25519") {
					z.remove(r.name, "TXT")
					return
				}
			}
		}},
		{name: "DMARC syntax error", fail: "dmarc", fixHas: "_dmarc", zone: func(z *labZone, l *doctorLab) {
			z.replace("_dmarc", "TXT", "v=DMARC1; p=bogus; rua=mailto:reports@"+z.origin)
		}},
		{name: "DMARC rua to an unauthorised domain", fail: "dmarc", fixHas: "rua=mailto:reports@d12.test", zone: func(z *labZone, l *doctorLab) {
			z.replace("_dmarc", "TXT", "v=DMARC1; p=reject; rua=mailto:dmarc@reports.example.net")
		}},
		{name: "MTA-STS id without policy", fail: "mta_sts", fixHas: "mta-sts.d13.test", zone: func(z *labZone, l *doctorLab) {
			z.remove("mta-sts", "CNAME")
		}},
		{name: "MTA-STS policy MX mismatch", fail: "mta_sts", fixHas: "mx", zone: func(z *labZone, l *doctorLab) {
			// The MX is another name of this server, which the served policy does not list.
			z.replace("@", "MX", "10 mx2."+z.origin+".")
			z.add("mx2", "A", "45.33.32.15")
		}},
		{name: "TLSA mismatch", fail: "tlsa", fixHas: "TLSA", zone: func(z *labZone, l *doctorLab) {
			for _, r := range z.records {
				if r.typ == "TLSA" {
					z.replace(r.name, "TLSA", "3 1 1 "+strings.Repeat("ab", 32))
					return
				}
			}
		}},
		{name: "unsigned zone with TLSA", fail: "dnssec", fixHas: "TLSA", unsigned: true},
		{name: "IP listed", fail: "blocklist_ip", fixHas: "spamhaus"},
		{name: "domain listed", fail: "blocklist_domain", fixHas: "spamhaus"},
		{name: "list error code", fail: "", mayWarn: []string{}, mayError: []string{"blocklist_ip"}, zone: func(z *labZone, l *doctorLab) {
			z.replace("_dmarc", "TXT", "v=DMARC1; p=reject; rua=mailto:reports@"+z.origin)
		}},
		{name: "certificate expired", fail: "cert", fixHas: "tls.acme_email", special: "expired", mayError: []string{"tlsa"}},
		{name: "certificate for another name", fail: "cert", fixHas: "tls.acme_email", special: "othername"},
		{name: "port 25 blocked", fail: "port25_out", fixHas: "port 25", probe: "45.33.32.250:25"},
	}
}

// doctorLab is the namespace with its DNS servers, certificates and Repute servers.
type doctorLab struct {
	t        *testing.T
	dir      string
	ns       string
	store    string // the shared data_dir
	caFile   string
	certFile string // for every set-up's hostname
	keyFile  string
	staleKey string // a DKIM public key nobody signs with
	policyMX string // mta_sts.mx: every set-up's hostname (one server serves all their policies)
	zones    map[string]*labZone
	ca       *testCA
}

func newDoctorLab(t *testing.T) *doctorLab {
	l := &doctorLab{t: t, dir: tempDir(t), zones: map[string]*labZone{}}
	l.ns = fmt.Sprintf("repute-doctor-%d", os.Getpid())
	l.store = filepath.Join(l.dir, "store")
	run := func(args ...string) {
		if out, err := exec.Command("/usr/sbin/ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	run("netns", "add", l.ns)
	t.Cleanup(func() { exec.Command("/usr/sbin/ip", "netns", "del", l.ns).Run() })
	run("-n", l.ns, "link", "set", "lo", "up")
	for i := 1; i <= 30; i++ {
		run("-n", l.ns, "addr", "add", fmt.Sprintf("45.33.32.%d/32", i), "dev", "lo")
	}
	run("-n", l.ns, "addr", "add", "45.33.32.200/32", "dev", "lo")
	l.ca = newTestCA(t)
	l.caFile = l.ca.PEMPath
	// A DKIM key that is nobody's, for the stale record.
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(&k.PublicKey)
	l.staleKey = strings.TrimSpace(string(pemBase64(der)))
	return l
}

// prepare creates the set-up's domain in the shared store and its zone from the records
// repute prints for it.
func (l *doctorLab) prepare(c *doctorCase) {
	t := l.t
	if c.hostname == "" {
		c.hostname = "mail." + c.domain()
	}
	// The first call creates the store with the config's data_dir.
	if out, err := l.nsRun(time.Minute, "", reputeBin, "domain", "add", c.domain(), "--ed25519", "--config", l.configPath(c, false)); err != nil {
		t.Fatalf("domain add %s: %v\n%s", c.domain(), err, out)
	}
}

// configPath writes (once) and returns the config a set-up is checked with.
func (l *doctorLab) configPath(c *doctorCase, serve bool) string {
	path := filepath.Join(l.dir, c.domain()+".toml")
	if serve {
		path = filepath.Join(l.dir, c.domain()+"-serve.toml")
	}
	dataDir := l.store
	listen := `smtp = "0.0.0.0:25"
submission = "0.0.0.0:587"
submissions = "0.0.0.0:465"
imap = ""
imaps = "0.0.0.0:993"
http = ""
https = "0.0.0.0:443"`
	if c.special != "" {
		// A server of its own on other ports; the MTA-STS policy still comes from 443.
		ip := c.ip()
		listen = fmt.Sprintf(`smtp = "%[1]s:2525"
submission = ""
submissions = "%[1]s:2465"
imap = ""
imaps = "%[1]s:2993"
http = ""
https = "0.0.0.0:443"`, ip)
		if serve {
			listen = strings.Replace(listen, `https = "0.0.0.0:443"`, `https = ""`, 1)
			dataDir = filepath.Join(l.dir, "store-"+c.special)
		}
	}
	cert := l.certFile
	key := l.keyFile
	if c.certFile != "" {
		cert, key = c.certFile, c.keyFile
	}
	tlsKeys := ""
	if cert != "" {
		tlsKeys = fmt.Sprintf("cert_file = %q\nkey_file = %q\n", cert, key)
	}
	probe := c.probe
	if probe == "" {
		probe = "127.0.0.1:25"
	}
	cfg := fmt.Sprintf(`hostname = %q
data_dir = %q

[listen]
%s

[tls]
%s
[dns]
resolver = "127.0.0.1:53"
dnssec_probe = "d00.test"

[mta_sts]
mx = [%s]

[outbound]
public_ips = [%q]

[check]
port25_probe = %q
blocklists = ["zen.spamhaus.org", "bl.spamcop.net"]
domain_blocklists = ["dbl.spamhaus.org"]
interval = "0s"

[smtp]
min_free_disk = 1048576
`, c.hostname, dataDir, listen, tlsKeys, l.policyMX, c.ip(), probe)
	writeFile(l.t, path, cfg)
	return path
}

// startDNS writes every zone, starts Knot (signing all but the unsigned ones), rbldnsd
// with the lists, and a validating unbound with the signed zones' trust anchors.
func (l *doctorLab) startDNS(cases []doctorCase) {
	t := l.t
	// Certificates first: the TLSA records are computed from them.
	l.certFile, l.keyFile = l.issue("main", cases, time.Now().Add(-time.Hour), time.Now().Add(90*24*time.Hour), nil)
	for i := range cases {
		c := &cases[i]
		switch c.special {
		case "expired":
			c.certFile, c.keyFile = l.issue("expired", []doctorCase{*c}, time.Now().Add(-100*24*time.Hour), time.Now().Add(-10*24*time.Hour), nil)
		case "othername":
			c.certFile, c.keyFile = l.issue("othername", nil, time.Now().Add(-time.Hour), time.Now().Add(90*24*time.Hour), []string{"mail.elsewhere.example"})
		}
	}
	rev := &labZone{origin: "32.33.45.in-addr.arpa"}
	for i := range cases {
		c := &cases[i]
		out, err := l.nsRun(time.Minute, "", reputeBin, "dns", "records", c.domain(), "--json", "--config", l.configPath(c, false))
		if err != nil {
			t.Fatalf("dns records %s: %v\n%s", c.domain(), err, out)
		}
		var recs []struct {
			Name, Type, Value string
			TTL               int
		}
		if err := json.Unmarshal([]byte(out), &recs); err != nil {
			t.Fatalf("dns records %s --json: %v\n%s", c.domain(), err, out)
		}
		z := &labZone{origin: c.domain(), unsigned: c.unsigned}
		for _, r := range recs {
			name := strings.TrimSuffix(r.Name, ".")
			if name != c.domain() && !strings.HasSuffix(name, "."+c.domain()) {
				continue // the hostname of a set-up lives in its own zone
			}
			z.add(name, r.Type, r.Value)
		}
		if c.zone != nil {
			c.zone(z, l)
		}
		l.zones[c.domain()] = z
		ptr := c.hostname
		if c.ptr != nil {
			ptr = c.ptr(c)
		}
		if ptr != "" {
			rev.add(fmt.Sprintf("%d", c.n+1), "PTR", ptr+".")
		}
	}
	rev.unsigned = true
	l.zones[rev.origin] = rev
	// reports.example.net: the external DMARC report domain, with no authorisation records.
	l.zones["example.net"] = &labZone{origin: "example.net", unsigned: true}
	l.zones["example.net"].add("reports", "MX", "10 mail.d00.test.")

	d := filepath.Join(l.dir, "dns")
	for _, sub := range []string{"zones", "db", "run", "rbl"} {
		os.MkdirAll(filepath.Join(d, sub), 0o755)
	}
	var zones []knotZone
	var names []string
	for name, z := range l.zones {
		names = append(names, name)
		writeFile(t, filepath.Join(d, "zones", name+".zone"), z.file())
		zones = append(zones, knotZone{name, !z.unsigned})
	}
	slices.Sort(names)
	knotConf := knotConfig(d, 5301, zones)
	knotConfPath := filepath.Join(d, "knot.conf")
	writeFile(t, knotConfPath, knotConf)
	if out, err := exec.Command("/usr/sbin/knotc", "-c", knotConfPath, "conf-check").CombinedOutput(); err != nil {
		t.Fatalf("knotc conf-check: %v\n%s", err, out)
	}
	l.daemon("knotd", filepath.Join(d, "knot.log"), "/usr/sbin/knotd", "-c", knotConfPath)
	var anchors strings.Builder
	for _, name := range names {
		if l.zones[name].unsigned {
			continue
		}
		waitFor(t, 30*time.Second, "Knot to sign "+name, func() (bool, string) {
			out, err := exec.Command("/usr/sbin/keymgr", "-c", knotConfPath, name+".", "ds").CombinedOutput()
			if err != nil || !strings.Contains(string(out), " DS ") {
				return false, fmt.Sprintf("keymgr ds: %v %s", err, out)
			}
			if !strings.Contains(l.dig("127.0.0.1", "5301", name, "DNSKEY", "+dnssec"), "RRSIG") {
				return false, "no signed DNSKEY yet"
			}
			anchors.Write(out)
			return true, ""
		})
	}
	writeFile(t, filepath.Join(d, "anchors.ds"), anchors.String())

	// rbldnsd: 45.33.32.18 (IP listed) on Spamhaus ZEN, 45.33.32.20 (list error code)
	// answered with Spamhaus's "query refused" code; d18.test (domain listed) on the DBL.
	writeFile(t, filepath.Join(d, "rbl", "zen.txt"), ":127.0.0.2:Listed by the test list, see https://check.spamhaus.org/\n45.33.32.18\n45.33.32.20 :127.255.255.254:Query refused\n")
	writeFile(t, filepath.Join(d, "rbl", "spamcop.txt"), ":127.0.0.2:Blocked - see https://www.spamcop.net/bl.shtml?$\n192.0.2.99\n")
	writeFile(t, filepath.Join(d, "rbl", "dbl.txt"), ":127.0.1.2:Listed in the test DBL\nd18.test\n")
	l.daemon("rbldnsd", filepath.Join(d, "rbldnsd.log"), "/usr/sbin/rbldnsd", "-n", "-b", "127.0.0.1/5302", "-w", filepath.Join(d, "rbl"),
		"zen.spamhaus.org:ip4set:zen.txt", "bl.spamcop.net:ip4set:spamcop.txt", "dbl.spamhaus.org:dnset:dbl.txt")

	var stubs []unboundStub
	for _, name := range names {
		stubs = append(stubs, unboundStub{name, "127.0.0.1@5301", false})
	}
	for _, name := range []string{"zen.spamhaus.org", "bl.spamcop.net", "dbl.spamhaus.org"} {
		stubs = append(stubs, unboundStub{name, "127.0.0.1@5302", true})
	}
	unboundConf := unboundConfig(d, 53, filepath.Join(d, "anchors.ds"), stubs)
	writeFile(t, filepath.Join(d, "unbound.conf"), unboundConf)
	if out, err := exec.Command("/usr/sbin/unbound-checkconf", filepath.Join(d, "unbound.conf")).CombinedOutput(); err != nil {
		t.Fatalf("unbound-checkconf: %v\n%s", err, out)
	}
	l.daemon("unbound", filepath.Join(d, "unbound.log"), "/usr/sbin/unbound", "-d", "-c", filepath.Join(d, "unbound.conf"))
	waitFor(t, 30*time.Second, "unbound to validate d00.test", func() (bool, string) {
		out := l.dig("127.0.0.1", "53", "d00.test", "MX", "+dnssec")
		return strings.Contains(out, " ad") || strings.Contains(out, " ad;"), out
	})
}

// startServers starts the main Repute server (every set-up's hostname, all addresses)
// and the servers with broken certificates.
func (l *doctorLab) startServers(cases []doctorCase) {
	main := cases[0]
	l.serve("main", l.configPath(&main, true), "127.0.0.1:25")
	for i := range cases {
		c := &cases[i]
		if c.special != "" {
			cfg := l.configPath(c, true)
			if out, err := l.nsRun(time.Minute, "", reputeBin, "config", "check", "--config", cfg); err != nil {
				l.t.Fatalf("config of the %s server: %v\n%s", c.special, err, out)
			}
			l.serve(c.special, cfg, c.ip()+":2525")
		}
	}
}

func (l *doctorLab) serve(name, cfg, smtp string) {
	t := l.t
	l.daemon("repute-"+name, filepath.Join(l.dir, "serve-"+name+".log"), reputeBin, "serve", "--config", cfg)
	waitFor(t, 30*time.Second, "repute serve ("+name+") to greet on "+smtp, func() (bool, string) {
		out, err := l.nsRun(5*time.Second, "", "/usr/bin/python3", "-c", `import smtplib,sys
h,p=sys.argv[1].rsplit(":",1)
s=smtplib.SMTP(h,int(p),timeout=3); print(s.ehlo()); s.quit()`, smtp)
		return err == nil, fmt.Sprintf("%v %s; log: %s", err, out, readTail(filepath.Join(l.dir, "serve-"+name+".log")))
	})
}

// check runs repute check --json for a set-up inside the namespace.
func (l *doctorLab) check(t *testing.T, c doctorCase) *doctorReport {
	out, errOut, err := l.nsOutput(2*time.Minute, "SSL_CERT_FILE="+l.caFile, reputeBin, "check", "--json", c.domain(), "--config", l.configPath(&c, false))
	var rep doctorReport
	if jerr := json.Unmarshal([]byte(out), &rep); jerr != nil {
		t.Fatalf("repute check: %v, output not JSON (%v):\n%s\n%s", err, jerr, out, errOut)
	}
	wantExit := 0
	if c.fail != "" {
		wantExit = 1
	}
	if code := exitCode(err); code != wantExit {
		t.Errorf("repute check exited %d, want %d", code, wantExit)
	}
	return &rep
}

type doctorResult struct {
	ID, Status, Target, Found, Why, Fix, URL string
}

type doctorReport struct {
	Checks  []doctorResult
	Summary map[string]int
}

func (r *doctorReport) text() string {
	var b strings.Builder
	for _, c := range r.Checks {
		fmt.Fprintf(&b, "  %-5s %-17s %-40s %s\n", c.Status, c.ID, c.Target, c.Found)
	}
	return b.String()
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// nsRun runs a command inside the namespace and returns its standard output (standard
// error is appended when it fails).
func (l *doctorLab) nsRun(timeout time.Duration, env, path string, args ...string) (string, error) {
	out, errOut, err := l.nsOutput(timeout, env, path, args...)
	if err != nil {
		return out + errOut, err
	}
	return out, nil
}

// nsOutput runs a command inside the namespace and returns its standard output and error.
func (l *doctorLab) nsOutput(timeout time.Duration, env, path string, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	full := []string{"netns", "exec", l.ns}
	if env != "" {
		full = append(full, "env", env)
	}
	full = append(append(full, path), args...)
	cmd := exec.CommandContext(ctx, "/usr/sbin/ip", full...)
	cmd.Dir = l.dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

func (l *doctorLab) dig(server, port, name, qtype string, flags ...string) string {
	args := append([]string{"@" + server, "-p", port, name, qtype, "+time=2", "+retry=0"}, flags...)
	out, _ := l.nsRun(10*time.Second, "", "/usr/bin/kdig", args...)
	return out
}

// daemon runs a program inside the namespace for the rest of the test.
func (l *doctorLab) daemon(name, logPath, path string, args ...string) {
	startDaemon(l.t, name, logPath, "/usr/sbin/ip", append([]string{"netns", "exec", l.ns, path}, args...)...)
}

// issue writes a certificate and key signed by the test CA for the hostnames (and
// mta-sts names) of the set-ups, or for names when given, and returns their paths.
func (l *doctorLab) issue(name string, cases []doctorCase, notBefore, notAfter time.Time, names []string) (string, string) {
	if names == nil {
		for _, c := range cases {
			h := c.hostname
			if h == "" {
				h = "mail." + c.domain()
			}
			names = append(names, h, "mta-sts."+c.domain(), "autoconfig."+c.domain(), "autodiscover."+c.domain())
		}
	}
	return writeCertFiles(l.t, l.dir, name, l.ca.IssueValid(l.t, notBefore, notAfter, false, names...))
}

// labZone is a zone's records, relative names ("@", "mail") or absolute ones.
type labZone struct {
	origin   string
	unsigned bool
	records  []labRecord
}

type labRecord struct{ name, typ, value string }

func (z *labZone) abs(name string) string {
	name = strings.TrimSuffix(name, ".")
	switch {
	case name == "@" || name == z.origin:
		return z.origin
	case strings.HasSuffix(name, "."+z.origin):
		return name
	}
	return name + "." + z.origin
}

func (z *labZone) add(name, typ, value string) {
	r := labRecord{z.abs(name), typ, value}
	if !slices.Contains(z.records, r) {
		z.records = append(z.records, r)
	}
}

func (z *labZone) remove(name, typ string) {
	name = z.abs(name)
	z.records = slices.DeleteFunc(z.records, func(r labRecord) bool {
		// Every TXT at the name that is of the same kind: SPF with SPF, DMARC with DMARC.
		return r.name == name && r.typ == typ
	})
}

// replace swaps the records of a type at a name; for TXT only those of the same kind
// (an SPF record replaces the SPF record, not a verification record beside it).
func (z *labZone) replace(name, typ, value string) {
	name = z.abs(name)
	kind := txtKind(value)
	z.records = slices.DeleteFunc(z.records, func(r labRecord) bool {
		return r.name == name && r.typ == typ && (typ != "TXT" || txtKind(r.value) == kind)
	})
	z.records = append(z.records, labRecord{name, typ, value})
}

func txtKind(v string) string {
	f, _, _ := strings.Cut(strings.ToLower(v), ";")
	f, _, _ = strings.Cut(f, " ")
	return f
}

func (z *labZone) file() string {
	var b strings.Builder
	fmt.Fprintf(&b, "$ORIGIN %s.\n$TTL 60\n@ SOA ns.%s. hostmaster.%s. %d 3600 600 86400 60\n@ NS ns.%s.\nns A 127.0.0.1\n",
		z.origin, z.origin, z.origin, time.Now().Unix(), z.origin)
	for _, r := range z.records {
		v := r.value
		if r.typ == "TXT" {
			v = zoneTXT(v)
		}
		fmt.Fprintf(&b, "%s. 60 IN %s %s\n", r.name, r.typ, v)
	}
	return b.String()
}

// zoneTXT quotes a TXT value as 255-byte character-strings.
func zoneTXT(v string) string {
	var parts []string
	for len(v) > 0 {
		n := min(len(v), 255)
		parts = append(parts, `"`+strings.ReplaceAll(strings.ReplaceAll(v[:n], `\`, `\\`), `"`, `\"`)+`"`)
		v = v[n:]
	}
	return strings.Join(parts, " ")
}

// pemBase64 is the base64 body of DER, as a DKIM p= value.
func pemBase64(der []byte) []byte {
	block := pem.EncodeToMemory(&pem.Block{Type: "X", Bytes: der})
	lines := strings.Split(string(block), "\n")
	return []byte(strings.Join(lines[1:len(lines)-2], ""))
}
