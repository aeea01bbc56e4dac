package e2e

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

// TestQuickstart: `repute quickstart` on a fresh machine followed by `repute serve` yields
// a server that passes the end-to-end mail test.
//
// The machine is a network namespace of its own, so the default listen addresses
// (0.0.0.0:25, 587, 465, 143, 993, 80, 443) are free, with 45.33.32.1 (the server) and
// 45.33.32.2 (another domain's MX) on its loopback. Its resolver is an unbound on
// 127.0.0.1 that serves the records quickstart tells the operator to publish, the PTR it
// tells them to ask for, and the other domain; the server sees it as /etc/resolv.conf.
// The configuration is used as quickstart wrote it. Both timings are logged.
func TestQuickstart(t *testing.T) {
	needBinary(t)
	for _, tool := range []struct{ path, pkg string }{
		{"/usr/sbin/ip", "iproute2"}, {"/usr/bin/python3", "python3"},
		{"/usr/sbin/unbound", "unbound"}, {"/usr/bin/kdig", "knot-dnsutils"},
	} {
		needTool(t, tool.path, tool.pkg)
	}
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	l := newLab(t, "quickstart", 2)
	dir := l.dir
	cfg := filepath.Join(dir, "etc", "repute.toml")
	data := filepath.Join(dir, "data")
	unitDir := filepath.Join(dir, "systemd")
	if err := os.MkdirAll(unitDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// As root, quickstart creates the system user repute; on a test machine that user
	// is not ours to add, so useradd is one that only records how it was called.
	stubs := filepath.Join(dir, "stubs")
	if err := os.MkdirAll(stubs, 0o755); err != nil {
		t.Fatal(err)
	}
	useraddLog := filepath.Join(dir, "useradd.args")
	writeFile(t, filepath.Join(stubs, "useradd"), fmt.Sprintf("#!/bin/sh\necho \"$@\" >> %s\n", useraddLog))
	if err := os.Chmod(filepath.Join(stubs, "useradd"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := "PATH=" + stubs + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	args := []string{"quickstart", "example.test", "--ip", "45.33.32.1", "--config", cfg, "--data-dir", data, "--systemd-dir", unitDir}

	start := time.Now()
	out, errOut, err := l.nsOutput(time.Minute, path, reputeBin, args...)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("repute quickstart: %v\n%s\n%s", err, out, errOut)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("repute quickstart output:\n%s", out)
		}
	})
	qs := checkQuickstartOutput(t, out, cfg, data)
	checkQuickstartUnit(t, filepath.Join(unitDir, "repute.service"), cfg, useraddLog, data)

	// A second run would overwrite a working set-up: it must refuse and say how to insist.
	out2, errOut2, err := l.nsOutput(time.Minute, path, reputeBin, args...)
	if err == nil || !strings.Contains(out2+errOut2, "--force") {
		t.Errorf("quickstart again without --force: err %v, output does not name --force:\n%s%s", err, out2, errOut2)
	}
	if out, err := l.nsRun(time.Minute, "", reputeBin, "config", "check", "--config", cfg); err != nil {
		t.Fatalf("repute config check: %v\n%s", err, out)
	}

	l.startResolver(qs)
	serveLog := filepath.Join(dir, "serve.log")
	start = time.Now()
	resolv := withResolvConf(t, "127.0.0.1")
	l.daemon("repute", serveLog, resolv[0], append(resolv[1:], reputeBin, "serve", "--config", cfg)...)
	if out, err := l.nsRun(40*time.Second, "", "/usr/bin/python3", "-c", quickstartPy, "greet", "45.33.32.1", "25", "30"); err != nil {
		t.Fatalf("repute serve does not greet on 45.33.32.1:25: %v\n%s\nlog:\n%s", err, out, readTail(serveLog+".out"))
	}
	ready := time.Since(start)

	// (a) As another domain's MTA, from its own address, to the MX.
	inbound := "quickstart inbound " + uniqueID()
	if out, err := l.nsRun(time.Minute, "", "/usr/bin/python3", "-c", quickstartPy, "mx",
		"45.33.32.1", "45.33.32.2", "mx.other.example", "someone@other.example", "postmaster@example.test", inbound); err != nil {
		t.Fatalf("delivery to the MX: %v\n%s\nlog:\n%s", err, out, readTail(serveLog+".out"))
	}
	// (b) As postmaster's mail program: submission with STARTTLS and the password quickstart printed.
	submitted := "quickstart submitted " + uniqueID()
	if out, err := l.nsRun(time.Minute, "", "/usr/bin/python3", "-c", quickstartPy, "submit",
		"45.33.32.1", "postmaster@example.test", qs.passwords["postmaster@example.test"], "reports@example.test", submitted); err != nil {
		t.Fatalf("submission on 587: %v\n%s\nlog:\n%s", err, out, readTail(serveLog+".out"))
	}
	// (c) Each mailbox over IMAPS finds its message.
	for _, m := range []struct{ user, subject string }{
		{"postmaster@example.test", inbound}, {"reports@example.test", submitted},
	} {
		waitFor(t, 30*time.Second, m.user+" to find "+m.subject+" over IMAPS", func() (bool, string) {
			out, err := l.nsRun(time.Minute, "", "/usr/bin/python3", "-c", quickstartPy, "imap",
				"45.33.32.1", m.user, qs.passwords[m.user], m.subject)
			return err == nil && strings.TrimSpace(out) == "found", fmt.Sprintf("%v %s", err, out)
		})
	}
	t.Logf("quickstart took %v; serve ready after %v", took.Round(time.Millisecond), ready.Round(time.Millisecond))
}

// quickstartResult is what the test takes from quickstart's output.
type quickstartResult struct {
	records   []zoneRecord
	ptr       string            // the PTR line's target for 45.33.32.1
	passwords map[string]string // mailbox -> password
}

type zoneRecord struct{ name, ttl, typ, value string }

var (
	zoneLineRE = regexp.MustCompile(`^(\S+)\s+(\d+)\s+IN\s+([A-Z]+)\s+(.+)$`)
	mailboxRE  = regexp.MustCompile(`(?m)^\s+(\S+@example\.test)\s+(\S+)\s*$`)
	ptrRE      = regexp.MustCompile(`(?m)^ *45\.33\.32\.1\s+PTR\s+(\S+)$`)
)

// checkQuickstartOutput checks the records, the PTR, the mailboxes and the next step
// that quickstart printed.
func checkQuickstartOutput(t *testing.T, out, cfg, data string) quickstartResult {
	t.Helper()
	var r quickstartResult
	for line := range strings.Lines(out) {
		if m := zoneLineRE.FindStringSubmatch(strings.TrimSpace(line)); m != nil {
			r.records = append(r.records, zoneRecord{m[1], m[2], m[3], m[4]})
		}
	}
	is := func(want string) func(string) bool { return func(v string) bool { return v == want } }
	txt := func(prefix string, parts ...string) func(string) bool {
		return func(v string) bool {
			if !strings.HasPrefix(v, `"`+prefix) {
				return false
			}
			for _, p := range parts {
				if !strings.Contains(v, p) {
					return false
				}
			}
			return true
		}
	}
	const dkim = "SELECTOR._domainkey.example.test."
	for _, want := range []struct {
		what, name, typ string
		ok              func(string) bool
	}{
		{"MX", "example.test.", "MX", is("10 mail.example.test.")},
		{"A of the host", "mail.example.test.", "A", is("45.33.32.1")},
		{"SPF", "example.test.", "TXT", is(`"v=spf1 ip4:45.33.32.1 -all"`)},
		{"DKIM RSA", dkim, "TXT", txt("v=DKIM1; k=rsa; p=")},
		{"DKIM Ed25519", dkim, "TXT", txt("v=DKIM1; k=ed25519; p=")},
		{"DMARC", "_dmarc.example.test.", "TXT", txt("v=DMARC1;", "rua=mailto:reports@example.test")},
		{"MTA-STS", "_mta-sts.example.test.", "TXT", txt("v=STSv1; id=")},
		{"TLS-RPT", "_smtp._tls.example.test.", "TXT", txt("v=TLSRPTv1;", "rua=mailto:reports@example.test")},
		{"MTA-STS host", "mta-sts.example.test.", "CNAME", is("mail.example.test.")},
	} {
		found := slices.ContainsFunc(r.records, func(z zoneRecord) bool {
			name := z.name
			if want.name == dkim && strings.HasSuffix(name, "._domainkey.example.test.") {
				name = dkim
			}
			return name == want.name && z.typ == want.typ && want.ok(z.value)
		})
		if !found {
			t.Errorf("no %s record (%s %s)", want.what, want.name, want.typ)
		}
	}
	if m := ptrRE.FindStringSubmatch(out); m == nil || strings.TrimSpace(m[0]) != "45.33.32.1  PTR  mail.example.test." {
		t.Fatalf("no PTR line %q: %q", "45.33.32.1  PTR  mail.example.test.", m)
	} else {
		r.ptr = strings.TrimSuffix(m[1], ".")
	}
	r.passwords = map[string]string{}
	_, mailboxes, _ := strings.Cut(out, "Mailboxes")
	mailboxes, _, _ = strings.Cut(mailboxes, "\n\n")
	for _, m := range mailboxRE.FindAllStringSubmatch(mailboxes, -1) {
		r.passwords[m[1]] = m[2]
	}
	creds, err := os.ReadFile(filepath.Join(data, "credentials.txt"))
	if err != nil {
		t.Errorf("credentials file: %v", err)
	}
	for _, mb := range []string{"postmaster@example.test", "reports@example.test"} {
		pw := r.passwords[mb]
		if len(pw) < 12 || strings.HasPrefix(pw, "(") {
			t.Fatalf("no password printed for %s (%q) in:\n%s", mb, pw, mailboxes)
		}
		if !regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(mb) + `\s+` + regexp.QuoteMeta(pw) + `\s*$`).Match(creds) {
			t.Errorf("%s: the password printed is not the one in credentials.txt", mb)
		}
	}
	if next := "repute check --config " + cfg; !strings.Contains(out, next) {
		t.Errorf("the next steps do not name %q", next)
	}
	return r
}

// checkQuickstartUnit checks the systemd unit quickstart installed, and that it asked for
// the repute user when the machine has none.
func checkQuickstartUnit(t *testing.T, unit, cfg, useraddLog, data string) {
	t.Helper()
	text, err := os.ReadFile(unit)
	if err != nil {
		t.Fatalf("the systemd unit: %v", err)
	}
	bin, err := filepath.EvalSymlinks(reputeBin)
	if err != nil {
		t.Fatal(err)
	}
	if bin, err = filepath.Abs(bin); err != nil {
		t.Fatal(err)
	}
	if want := "ExecStart=" + bin + " serve --config " + cfg + "\n"; !strings.Contains(string(text), want) {
		t.Errorf("%s has no line %q:\n%s", unit, strings.TrimSpace(want), text)
	}
	if sa, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Logf("systemd-analyze not installed; the unit is not verified")
	} else if out, err := exec.Command(sa, "verify", unit).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
	}
	if _, err := user.Lookup("repute"); err == nil {
		return // a machine with the user: quickstart has nothing to create
	}
	got, err := os.ReadFile(useraddLog)
	want := "--system --home-dir " + data + " --shell /usr/sbin/nologin repute\n"
	if err != nil || string(got) != want {
		t.Errorf("useradd called with %q (%v), want %q", got, err, want)
	}
}

// startResolver runs unbound on 127.0.0.1:53 in the namespace, serving the records
// quickstart printed, its PTR, and other.example (MX 45.33.32.2, SPF, PTR), and answering
// NXDOMAIN for everything else.
func (l *doctorLab) startResolver(qs quickstartResult) {
	t := l.t
	d := filepath.Join(l.dir, "unbound")
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	var data strings.Builder
	for _, r := range qs.records {
		fmt.Fprintf(&data, "    local-data: '%s %s IN %s %s'\n", r.name, r.ttl, r.typ, r.value)
	}
	for _, rr := range []string{
		"other.example. 300 IN MX 10 mx.other.example.",
		`other.example. 300 IN TXT "v=spf1 ip4:45.33.32.2 -all"`,
		`_dmarc.other.example. 300 IN TXT "v=DMARC1; p=reject"`,
		"mx.other.example. 300 IN A 45.33.32.2",
	} {
		fmt.Fprintf(&data, "    local-data: '%s'\n", rr)
	}
	fmt.Fprintf(&data, "    local-data-ptr: \"45.33.32.1 %s\"\n    local-data-ptr: \"45.33.32.2 mx.other.example\"\n", qs.ptr)
	conf := fmt.Sprintf(`server:
    interface: 127.0.0.1
    port: 53
    do-ip6: no
    access-control: 127.0.0.0/8 allow
    username: ""
    chroot: ""
    directory: "%[1]s"
    pidfile: "%[1]s/unbound.pid"
    logfile: "%[1]s/unbound.log"
    use-syslog: no
    verbosity: 1
    module-config: "iterator"
    local-zone: "." static
%[2]sremote-control:
    control-enable: no
`, d, data.String())
	confPath := filepath.Join(d, "unbound.conf")
	writeFile(t, confPath, conf)
	if out, err := exec.Command("/usr/sbin/unbound-checkconf", confPath).CombinedOutput(); err != nil {
		t.Fatalf("unbound-checkconf (the records quickstart printed):\n%s\n%v\n%s", conf, err, out)
	}
	l.daemon("unbound", filepath.Join(d, "unbound.log"), "/usr/sbin/unbound", "-d", "-c", confPath)
	waitFor(t, 30*time.Second, "unbound to answer", func() (bool, string) {
		out := l.dig("127.0.0.1", "53", "example.test", "MX")
		return strings.Contains(out, "mail.example.test."), out
	})
}

// newLab creates the network namespace repute-NAME-PID with its loopback up and
// 45.33.32.1 to 45.33.32.N on it, set up as newDoctorLab sets up the doctor's; the
// namespace is removed when the test ends, after the daemons started in it.
func newLab(t *testing.T, name string, n int) *doctorLab {
	l := &doctorLab{t: t, dir: tempDir(t), zones: map[string]*labZone{}}
	l.ns = fmt.Sprintf("repute-%s-%d", name, os.Getpid())
	run := func(args ...string) {
		if out, err := exec.Command("/usr/sbin/ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	run("netns", "add", l.ns)
	t.Cleanup(func() { exec.Command("/usr/sbin/ip", "netns", "del", l.ns).Run() })
	run("-n", l.ns, "link", "set", "lo", "up")
	for i := 1; i <= n; i++ {
		run("-n", l.ns, "addr", "add", fmt.Sprintf("45.33.32.%d/32", i), "dev", "lo")
	}
	return l
}

// quickstartPy is the mail program and the remote MTA of TestQuickstart (Python's
// smtplib and imaplib). The server's certificate is the self-signed one it generated,
// so TLS is not verified.
const quickstartPy = `import imaplib, smtplib, socket, ssl, sys, time
from email.message import EmailMessage

def unverified():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx

def message(frm, to, subject):
    m = EmailMessage()
    m["From"], m["To"], m["Subject"] = frm, to, subject
    m.set_content("A message of the end-to-end test: %s\n" % subject)
    return m

mode, host = sys.argv[1], sys.argv[2]
if mode == "greet":
    port, limit = int(sys.argv[3]), float(sys.argv[4])
    deadline = time.monotonic() + limit
    while True:
        try:
            with socket.create_connection((host, port), timeout=2) as s:
                s.settimeout(5)
                line = s.makefile("rb").readline()
                if line.startswith(b"220"):
                    print(line.decode().strip())
                    break
                last = line
        except OSError as e:
            last = e
        if time.monotonic() > deadline:
            sys.exit("no greeting within %s s: %s" % (limit, last))
        time.sleep(0.01)
elif mode == "mx":
    source, helo, frm, to, subject = sys.argv[3:8]
    with smtplib.SMTP(host, 25, local_hostname=helo, timeout=30, source_address=(source, 0)) as s:
        s.starttls(context=unverified())
        s.ehlo(helo)
        refused = s.send_message(message(frm, to, subject))
    if refused:
        sys.exit("refused: %s" % refused)
    print("sent")
elif mode == "submit":
    user, password, to, subject = sys.argv[3:7]
    with smtplib.SMTP(host, 587, timeout=30) as s:
        s.starttls(context=unverified())
        s.login(user, password)
        refused = s.send_message(message(user, to, subject))
    if refused:
        sys.exit("refused: %s" % refused)
    print("sent")
elif mode == "imap":
    user, password, subject = sys.argv[3:6]
    c = imaplib.IMAP4_SSL(host, 993, ssl_context=unverified(), timeout=30)
    c.login(user, password)
    typ, data = c.select("INBOX", readonly=True)
    found = False
    if typ == "OK" and int(data[0]) > 0:
        typ, data = c.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        found = any(isinstance(d, tuple) and subject.encode() in d[1] for d in data)
    c.logout()
    print("found" if found else "missing")
`

// TestACMEServe: a certificate obtained from pebble is served on 465, 993, 443 and with
// STARTTLS on 25, and renewed.
//
// In a network namespace, pebble-challtestsrv is pebble's DNS and points every name at
// 45.33.32.1, where repute serve answers HTTP-01 on port 80 and TLS-ALPN-01 on port 443.
// The test waits until every listener serves a certificate that verifies against pebble's
// root for the host name (and on 443 for mta-sts and autoconfig of the domain), fetches
// the MTA-STS policy through it, then waits for the renewal: a new certificate for the
// same key, served by the same process.
//
// Renewal happens when certmagic's maintenance next looks at the certificates, which in
// repute serve is every 10 minutes divided by shaping.time_scale: the test runs the
// server at time_scale 60, so it looks every 10 seconds, and pebble issues certificates
// that are due for renewal at the first look.
func TestACMEServe(t *testing.T) {
	needBinary(t)
	for _, tool := range []struct{ path, pkg string }{
		{"/usr/sbin/ip", "iproute2"}, {"/usr/bin/python3", "python3"}, {"/usr/bin/kdig", "knot-dnsutils"},
		{"/usr/bin/pebble", "pebble"}, {"/usr/bin/pebble-challtestsrv", "pebble"},
	} {
		needTool(t, tool.path, tool.pkg)
	}
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	l := newLab(t, "acme", 1)
	dir := l.dir
	// The certificate pebble's API (and management interface) presents; Repute trusts it
	// through tls.acme_ca_file, the test's Python through the same file.
	ca := newTestCA(t)
	apiCert, apiKey := writeCertFiles(t, dir, "pebble-api", ca.issue(t, "127.0.0.1"))
	apiCA := filepath.Join(dir, "pebble-api-ca.pem")
	writeFile(t, apiCA, string(ca.PEM))

	l.daemon("pebble-challtestsrv", filepath.Join(dir, "challtestsrv.log"), "/usr/bin/pebble-challtestsrv",
		"-defaultIPv4", "45.33.32.1", "-defaultIPv6", "", "-dns01", "127.0.0.1:8053", "-management", "127.0.0.1:8055",
		"-http01", "", "-https01", "", "-tlsalpn01", "")
	waitFor(t, 30*time.Second, "pebble-challtestsrv to answer DNS", func() (bool, string) {
		out := l.dig("127.0.0.1", "8053", "mta-sts.example.test", "A")
		return strings.Contains(out, "45.33.32.1"), out
	})

	// Certificates live long enough to be served until the maintenance renews them, and
	// short enough that it does (at the latest 5 renewal-check intervals before expiry).
	const timeScale = 60
	renewCheck := certmagic.DefaultRenewCheckInterval / timeScale
	validity := 5*renewCheck + 30*time.Second
	pebbleCfg, _ := json.Marshal(map[string]any{"pebble": map[string]any{
		"listenAddress": "127.0.0.1:14000", "managementListenAddress": "127.0.0.1:15000",
		"certificate": apiCert, "privateKey": apiKey, "httpPort": 80, "tlsPort": 443,
		"ocspResponderURL": "", "externalAccountBindingRequired": false,
		"certificateValidityPeriod": int(validity.Seconds()),
	}})
	writeFile(t, filepath.Join(dir, "pebble.json"), string(pebbleCfg))
	// No artificial validation delay, no rejected nonces, fresh authorisations each order.
	l.daemon("pebble", filepath.Join(dir, "pebble.log"), "/usr/bin/env", "PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0",
		"PEBBLE_AUTHZREUSE=0", "/usr/bin/pebble", "-config", filepath.Join(dir, "pebble.json"), "-dnsserver", "127.0.0.1:8053")
	var rootPEM string
	waitFor(t, 30*time.Second, "pebble's management interface to give its root", func() (bool, string) {
		out, err := l.nsRun(10*time.Second, "", "/usr/bin/python3", "-c", acmePy, "get", apiCA, "https://127.0.0.1:15000/roots/0")
		rootPEM = out
		return err == nil && strings.Contains(out, "BEGIN CERTIFICATE"), fmt.Sprintf("%v %s", err, out)
	})
	root := filepath.Join(dir, "pebble-root.pem")
	writeFile(t, root, rootPEM)

	data := filepath.Join(dir, "data")
	cfg := filepath.Join(dir, "repute.toml")
	writeFile(t, cfg, fmt.Sprintf(`hostname = "mail.example.test"
data_dir = %q

[listen]
smtp = "45.33.32.1:25"
submission = "45.33.32.1:587"
submissions = "45.33.32.1:465"
imap = ""
imaps = "45.33.32.1:993"
http = "45.33.32.1:80"
https = "45.33.32.1:443"

[tls]
acme_email = "postmaster@example.test"
acme_directory = "https://127.0.0.1:14000/dir"
acme_ca_file = %q

[check]
interval = "0s"

[shaping]
time_scale = %d

[smtp]
min_free_disk = 1048576
`, data, apiCA, timeScale))
	if out, err := l.nsRun(time.Minute, "", reputeBin, "domain", "add", "example.test", "--config", cfg); err != nil {
		t.Fatalf("repute domain add: %v\n%s", err, out)
	}
	serveLog := filepath.Join(dir, "serve.log")
	start := time.Now()
	l.daemon("repute", serveLog, reputeBin, "serve", "--config", cfg)

	targets := []string{
		"45.33.32.1:465:mail.example.test:tls",
		"45.33.32.1:993:mail.example.test:tls",
		"45.33.32.1:443:mail.example.test:tls",
		"45.33.32.1:443:mta-sts.example.test:tls",
		"45.33.32.1:443:autoconfig.example.test:tls",
		"45.33.32.1:25:mail.example.test:smtp",
	}
	var first map[string]*x509.Certificate
	waitFor(t, 90*time.Second, "certificates from pebble on every listener", func() (bool, string) {
		var status string
		first, status = l.servedCerts(root, targets)
		return first != nil, status + "\nlog:\n" + readTail(serveLog+".out")
	})
	obtained := time.Since(start)
	key := currentKeySPKI(t, data)
	for _, tg := range targets {
		c := first[tg]
		t.Logf("%s: %s", tg, certSummary(c))
		if got := spkiHash(c); got != key {
			t.Errorf("%s: the certificate's key %s is not data_dir/tls/current-key.pem's %s", tg, got, key)
		}
	}
	l.checkPolicy(t, root)
	t.Logf("first certificates after %v (pebble certificates valid %v)", obtained.Round(time.Millisecond), validity)

	t.Run("renewal", func(t *testing.T) {
		// The first maintenance pass after start renews (the certificates are within 5
		// check intervals of expiry by then); allow it until the first ones expire.
		due := start.Add(validity + 30*time.Second)
		tg := "45.33.32.1:465:mail.example.test:tls"
		var renewed *x509.Certificate
		waitFor(t, time.Until(due), "the renewed certificate on 465", func() (bool, string) {
			certs, status := l.servedCerts(root, []string{tg})
			if certs == nil {
				return false, status
			}
			renewed = certs[tg]
			return renewed.SerialNumber.Cmp(first[tg].SerialNumber) != 0, "still " + certSummary(renewed)
		})
		t.Logf("renewed after %v: %s", time.Since(start).Round(time.Millisecond), certSummary(renewed))
		if spkiHash(renewed) != spkiHash(first[tg]) {
			t.Errorf("the renewed certificate has another key: %s, first %s", spkiHash(renewed), spkiHash(first[tg]))
		}
		logText, _ := os.ReadFile(serveLog + ".out")
		if n := strings.Count(string(logText), `msg="repute started"`); n != 1 {
			t.Errorf("the server started %d times, want once", n)
		}
		if !strings.Contains(string(logText), "ACME: renewed a certificate") {
			t.Errorf("the renewal is not logged")
		}
		l.checkPolicy(t, root)
	})
}

// servedCerts returns the leaf certificate each target serves, when all of them verify
// against root for their name; otherwise nil and what failed. A target is
// IP:PORT:NAME:KIND, KIND tls (implicit TLS) or smtp (STARTTLS).
func (l *doctorLab) servedCerts(root string, targets []string) (map[string]*x509.Certificate, string) {
	out, err := l.nsRun(time.Minute, "", "/usr/bin/python3", append([]string{"-c", acmePy, "certs", root}, targets...)...)
	if err != nil {
		return nil, fmt.Sprintf("%v %s", err, out)
	}
	var results []struct {
		Target, DER, Error string
	}
	if err := json.Unmarshal([]byte(out), &results); err != nil {
		return nil, fmt.Sprintf("%v: %s", err, out)
	}
	certs := map[string]*x509.Certificate{}
	var failed []string
	for _, r := range results {
		if r.Error != "" {
			failed = append(failed, r.Target+": "+r.Error)
			continue
		}
		der, err := base64.StdEncoding.DecodeString(r.DER)
		if err != nil {
			return nil, err.Error()
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, err.Error()
		}
		certs[r.Target] = c
	}
	if len(failed) > 0 || len(certs) != len(targets) {
		return nil, strings.Join(failed, "\n")
	}
	return certs, ""
}

// checkPolicy fetches the MTA-STS policy over HTTPS, verifying the certificate against
// root, and checks that it parses as one (RFC 8461 §3.2).
func (l *doctorLab) checkPolicy(t *testing.T, root string) {
	t.Helper()
	out, err := l.nsRun(time.Minute, "", "/usr/bin/python3", "-c", acmePy, "policy", root, "45.33.32.1", "mta-sts.example.test")
	if err != nil {
		t.Fatalf("MTA-STS policy: %v\n%s", err, out)
	}
	fields := map[string][]string{}
	for line := range strings.Lines(out) {
		k, v, ok := strings.Cut(strings.TrimRight(line, "\r\n"), ":")
		if !ok {
			t.Errorf("MTA-STS policy line %q is not key: value", line)
			continue
		}
		fields[k] = append(fields[k], strings.TrimSpace(v))
	}
	if !strings.HasPrefix(out, "version: STSv1\r\n") && !strings.HasPrefix(out, "version: STSv1\n") {
		t.Errorf("the policy does not start with version: STSv1:\n%s", out)
	}
	if len(fields["mode"]) != 1 || len(fields["max_age"]) != 1 || !slices.Contains(fields["mx"], "mail.example.test") {
		t.Errorf("the policy lacks mode, max_age or mx: mail.example.test:\n%s", out)
	}
	t.Logf("MTA-STS policy:\n%s", out)
}

// currentKeySPKI is the hex SHA-256 of the public key of data_dir/tls/current-key.pem.
func currentKeySPKI(t *testing.T, data string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(data, "tls", "current-key.pem"))
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatal("current-key.pem holds no PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		t.Fatalf("current-key.pem: a %T is no signing key", k)
	}
	pub, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:])
}

func spkiHash(c *x509.Certificate) string {
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(sum[:])
}

func certSummary(c *x509.Certificate) string {
	return fmt.Sprintf("subject %q names %v issuer %q serial %x valid to %s SPKI sha256 %s",
		c.Subject.CommonName, c.DNSNames, c.Issuer.CommonName, c.SerialNumber, c.NotAfter.UTC().Format(time.TimeOnly), spkiHash(c))
}

// acmePy is TestACMEServe's client: it fetches over HTTPS and reads the certificates the
// server presents, verifying each against a given root for its name.
const acmePy = `import base64, http.client, json, socket, ssl, sys, urllib.request

def leaf(ip, port, name, kind, ctx):
    sock = socket.create_connection((ip, int(port)), timeout=10)
    try:
        if kind == "smtp":
            f = sock.makefile("rb")
            def reply(want):
                while True:
                    line = f.readline()
                    if not line.startswith(want):
                        raise OSError("SMTP: %r" % line)
                    if line[3:4] != b"-":
                        return
            reply(b"220")
            sock.sendall(b"EHLO probe.example\r\n")
            reply(b"250")
            sock.sendall(b"STARTTLS\r\n")
            reply(b"220")
        with ctx.wrap_socket(sock, server_hostname=name) as s:
            return s.getpeercert(binary_form=True)
    finally:
        sock.close()

class Conn(http.client.HTTPSConnection):
    """Connects to an address of its own but sends the name (SNI, Host)."""
    def __init__(self, ip, name, ctx):
        super().__init__(name, 443, context=ctx, timeout=10)
        self.ip = ip
    def connect(self):
        sock = socket.create_connection((self.ip, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)

mode = sys.argv[1]
if mode == "get":
    ctx = ssl.create_default_context(cafile=sys.argv[2])
    with urllib.request.urlopen(sys.argv[3], context=ctx, timeout=10) as r:
        sys.stdout.write(r.read().decode())
elif mode == "certs":
    ctx = ssl.create_default_context(cafile=sys.argv[2])
    out = []
    for t in sys.argv[3:]:
        ip, port, name, kind = t.split(":")
        try:
            out.append({"target": t, "der": base64.b64encode(leaf(ip, port, name, kind, ctx)).decode()})
        except (OSError, ssl.SSLError) as e:
            out.append({"target": t, "error": str(e)})
    print(json.dumps(out))
elif mode == "policy":
    ctx = ssl.create_default_context(cafile=sys.argv[2])
    c = Conn(sys.argv[3], sys.argv[4], ctx)
    c.request("GET", "/.well-known/mta-sts.txt")
    r = c.getresponse()
    body = r.read().decode()
    if r.status != 200:
        sys.exit("HTTP %d: %s" % (r.status, body))
    sys.stdout.write(body)
`
