package e2e

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// TestOutboundPostfix exchanges mail with a real Postfix both ways through MX records.
// Postfix (Debian's package, a private instance in a temp directory) is mx.c.test on
// 127.0.0.w:25, accepting c.test into a Maildir; it resolves through the test's DNS
// server on 127.0.0.x:53, named by a private /etc/resolv.conf (a mount namespace).
//
//   - Repute → Postfix: alice@a.test submits to carol@c.test; the message lands in the
//     Maildir, received from mx.a.test over STARTTLS (Postfix offers it with a
//     certificate from the test's CA).
//   - Postfix → Repute: a message handed to Postfix's smtpd for alice@a.test is relayed
//     by Postfix via a.test's MX to Repute and appears in alice's INBOX.
func TestOutboundPostfix(t *testing.T) {
	t.Parallel()
	needTool(t, "/usr/sbin/postfix", "postfix")
	needTool(t, "unshare", "util-linux")
	if os.Geteuid() != 0 {
		t.Skip("Postfix's master runs as root, and its private /etc/resolv.conf needs a mount namespace")
	}
	dnsIP := allocAddr(t, true, 53)
	pfIP := allocAddr(t, false, 25)
	z := newZone(t)
	z.listen(dnsIP)
	a := newServer(t, serverOptions{DNS: z.addr, Queue: fastQueue})
	if a.opts.RemotePort != 25 {
		t.Skipf("Postfix delivers to port 25 and the test servers use %d", a.opts.RemotePort)
	}
	z.mailDomain("a.test", "mx.a.test", a.ip)
	z.mailDomain("c.test", "mx.c.test", pfIP)
	ca := newTestCA(t)
	pf := startPostfix(t, postfixOptions{IP: pfIP, Domain: "c.test", Nameserver: dnsIP, Cert: ca.issue(t, "mx.c.test")})
	a.start()

	// Repute → Postfix.
	subj := "repute to postfix " + uniqueID()
	a.submit(t, "alice", []string{"carol@c.test"}, subj)
	var got string
	waitFor(t, deliveryTimeout, fmt.Sprintf("%q in Postfix's Maildir", subj), func() (bool, string) {
		for _, m := range pf.maildir(t) {
			if strings.Contains(m, "Subject: "+subj) {
				got = m
				return true, ""
			}
		}
		return false, fmt.Sprintf("%d messages in the Maildir; a's queue: %v; Postfix log: %s", len(pf.maildir(t)), a.queueList(t), pf.logTail())
	})
	if !regexp.MustCompile(`Received: from mx\.a\.test \(`).MatchString(got) {
		t.Errorf("Postfix did not record EHLO mx.a.test:\n%s", headerBlock(got))
	}
	if !regexp.MustCompile(`by mx\.c\.test \(Postfix\) with ESMTPS`).MatchString(got) {
		t.Errorf("Repute delivered to Postfix without STARTTLS:\n%s", headerBlock(got))
	}

	// Postfix → Repute: Postfix relays for its network (127.0.0.0/8) via a.test's MX.
	subj = "postfix to repute " + uniqueID()
	c, err := smtp.Dial(net.JoinHostPort(pfIP, "25"))
	if err != nil {
		t.Fatalf("Postfix smtpd: %v", err)
	}
	c.CommandTimeout, c.SubmissionTimeout = wireTimeout, wireTimeout
	if err := c.Hello("client.c.test"); err != nil {
		t.Fatal(err)
	}
	msg := outboundMessage("carol@c.test", []string{"alice@a.test"}, subj, uniqueID(), "relayed by Postfix")
	if err := sendMessage(c, "carol@c.test", []string{"alice@a.test"}, msg); err != nil {
		t.Fatalf("handing a message for alice@a.test to Postfix: %v", err)
	}
	_ = c.Quit()
	c.Close()
	var m storedMessage
	func() {
		defer func() {
			if t.Failed() {
				t.Logf("Postfix log:\n%s", pf.logTail())
			}
		}()
		m = a.waitForMessage(t, "alice", deliveryTimeout, fmt.Sprintf("%q from Postfix", subj), withSubject(subj))
	}()
	if !regexp.MustCompile(`Received: from mx\.c\.test \(\[[0-9.]+\]\)\s+by mx\.a\.test \(Repute\)`).MatchString(m.Body) {
		t.Errorf("message from Postfix lacks Repute's Received header for EHLO mx.c.test:\n%s", headerBlock(m.Body))
	}
}

// postfixOptions describe a private Postfix instance.
type postfixOptions struct {
	IP         string          // smtpd listens on IP:25
	Domain     string          // accepted into one Maildir; myhostname is mx.DOMAIN
	Nameserver string          // the IP Postfix's private /etc/resolv.conf names
	Cert       tls.Certificate // smtpd's STARTTLS certificate
	// BindAddress is the source address of Postfix's own deliveries (smtp_bind_address);
	// "" lets the kernel choose.
	BindAddress string
}

// postfix is a running private Postfix: its own config_directory, queue_directory and
// data_directory under a temp dir; never /etc/postfix.
type postfix struct {
	dir  string
	etc  string
	pid  int
	opts postfixOptions
}

func startPostfix(t *testing.T, o postfixOptions) *postfix {
	t.Helper()
	// Postfix's unprivileged users (postfix, nobody for the Maildir) must reach the
	// directories: t.TempDir is private to root.
	dir, err := os.MkdirTemp("", "repute-e2e-postfix-")
	if err != nil {
		t.Fatal(err)
	}
	pf := &postfix{dir: dir, etc: filepath.Join(dir, "etc"), opts: o}
	t.Cleanup(func() {
		pf.stop(t)
		if os.Getenv("REPUTE_E2E_KEEP") != "" || t.Failed() {
			t.Logf("Postfix directory kept: %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	for _, d := range []string{"etc", "spool", "data", "mail"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	chown(t, filepath.Join(dir, "data"), "postfix", "")
	chown(t, filepath.Join(dir, "mail"), "nobody", "nogroup")
	cert, key := writeCertFiles(t, pf.etc, "smtpd", o.Cert)

	mainCF := fmt.Sprintf(`compatibility_level = 3.6
queue_directory = %[1]s/spool
data_directory = %[1]s/data
mail_owner = postfix
setgid_group = postdrop
myhostname = mx.%[2]s
mydomain = %[2]s
myorigin = $mydomain
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
virtual_mailbox_domains = %[2]s
virtual_mailbox_base = %[1]s/mail
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_minimum_uid = 100
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
smtpd_banner = $myhostname ESMTP
smtpd_tls_cert_file = %[3]s
smtpd_tls_key_file = %[4]s
smtpd_tls_security_level = may
smtp_tls_security_level = may
biff = no
append_dot_mydomain = no
maillog_file_prefixes = %[1]s
maillog_file = %[1]s/maillog
`, dir, o.Domain, cert, key)
	if o.BindAddress != "" {
		mainCF += "smtp_bind_address = " + o.BindAddress + "\n"
	}
	services, err := os.ReadFile(filepath.Join("..", "postfix", "master.cf"))
	if err != nil {
		t.Fatal(err)
	}
	masterCF := o.IP + ":25 inet n - n - - smtpd\n" + string(services)
	resolv := filepath.Join(dir, "resolv.conf")
	for name, text := range map[string]string{
		filepath.Join(pf.etc, "main.cf"):   mainCF,
		filepath.Join(pf.etc, "master.cf"): masterCF,
		resolv:                             "nameserver " + o.Nameserver + "\noptions timeout:2 attempts:2\n",
	} {
		if err := os.WriteFile(name, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("/usr/sbin/postfix", "-c", pf.etc, "check").CombinedOutput(); err != nil {
		t.Fatalf("postfix check: %v\n%s\n%s", err, out, pf.logTail())
	}
	// The master and every daemon it starts see only the test's DNS server.
	start := exec.Command("unshare", "-m", "sh", "-c",
		`mount --bind "$1" /etc/resolv.conf && exec /usr/sbin/postfix -c "$2" start`, "sh", resolv, pf.etc)
	if out, err := start.CombinedOutput(); err != nil {
		t.Fatalf("postfix start: %v\n%s\n%s", err, out, pf.logTail())
	}
	deadline := time.Now().Add(startTimeout)
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "spool", "pid", "master.pid")); err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
				pf.pid = pid
			}
		}
		if pf.pid != 0 {
			if c, err := net.DialTimeout("tcp", net.JoinHostPort(o.IP, "25"), time.Second); err == nil {
				c.Close()
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Postfix (master pid %d) not accepting on %s:25 after %v\n%s", pf.pid, o.IP, startTimeout, pf.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("Postfix master pid %d, smtpd on %s:25, directory %s", pf.pid, o.IP, dir)
	return pf
}

// stop ends the master by PID (SIGTERM, then SIGKILL after 20 s); its children follow.
func (pf *postfix) stop(t *testing.T) {
	if pf.pid == 0 {
		return
	}
	p, err := os.FindProcess(pf.pid)
	if err != nil {
		return
	}
	_ = p.Signal(syscall.SIGTERM)
	for i := 0; i < 200; i++ {
		if p.Signal(syscall.Signal(0)) != nil {
			pf.pid = 0
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("Postfix master %d still running 20 s after SIGTERM: SIGKILL", pf.pid)
	_ = p.Signal(syscall.SIGKILL)
	pf.pid = 0
}

// maildir returns every message delivered into the Maildir.
func (pf *postfix) maildir(t *testing.T) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(pf.dir, "mail", "inbox", "new", "*"))
	var out []string
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil {
			out = append(out, string(b))
		}
	}
	return out
}

// logTail returns the end of Postfix's log.
func (pf *postfix) logTail() string {
	b, err := os.ReadFile(filepath.Join(pf.dir, "maillog"))
	if err != nil {
		return "(no maillog: " + err.Error() + ")"
	}
	const max = 16 << 10
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

// chown gives path to a user (and group) of this system, by name.
func chown(t *testing.T, path, user, group string) {
	t.Helper()
	spec := user
	if group != "" {
		spec += ":" + group
	}
	if out, err := exec.Command("chown", spec, path).CombinedOutput(); err != nil {
		t.Fatalf("chown %s %s: %v\n%s", spec, path, err, out)
	}
}
