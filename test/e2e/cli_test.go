package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestConfigCheck runs `repute config check` on a valid file and on files with mistakes.
func TestConfigCheck(t *testing.T) {
	needBinary(t)
	t.Parallel()
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	valid := "hostname = \"mx.a.test\"\ndata_dir = \"" + filepath.Join(dir, "data") + "\"\n\n[smtp]\nmax_recipients = 3\n"
	p := write("valid.toml", valid)
	if out, err := runRepute(dir, "", "config", "check", "--config", p); err != nil {
		t.Errorf("config check on a valid file: %v\n%s", err, out)
	}

	for _, tc := range []struct {
		name, text string
		line       int
	}{
		{"misspelt-key", valid + "max_recipents = 4\n", 6},
		{"misspelt-section-key", "hostname = \"mx.a.test\"\n\n[listen]\nsmpt = \"127.0.0.2:25\"\n", 4},
		{"misspelt-top-level", "hostname = \"mx.a.test\"\ndatadir = \"/tmp/x\"\n", 2},
	} {
		p := write(tc.name+".toml", tc.text)
		out, err := runRepute(dir, "", "config", "check", "--config", p)
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("%s: config check exit %v, want 1\n%s", tc.name, err, out)
		}
		want := regexp.MustCompile(regexp.QuoteMeta(p) + ":" + strconv.Itoa(tc.line) + `:\d+: `)
		if !want.MatchString(out) {
			t.Errorf("%s: config check output lacks %q:\n%s", tc.name, want, out)
		}
	}
}

// TestCLIGlobalFlags runs admin commands with --config and --json before the command
// name, and without any configuration file, where the error must name every place
// looked at.
func TestCLIGlobalFlags(t *testing.T) {
	needBinary(t)
	t.Parallel()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "repute.toml")
	text := "hostname = \"mx.a.test\"\ndata_dir = \"" + filepath.Join(dir, "data") + "\"\n"
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--config", cfg, "domain", "add", "a.test"}, "domain a.test added"},
		{[]string{"--config=" + cfg, "--json", "domain", "list"}, `"a.test"`},
		{[]string{"--json", "queue", "list", "--config", cfg}, "[]"},
		{[]string{"--config", cfg, "queue", "summary"}, ""},
	} {
		if out, err := runRepute(dir, "", tc.args...); err != nil || !strings.Contains(out, tc.want) {
			t.Errorf("repute %s: %v, want %q in\n%s", strings.Join(tc.args, " "), err, tc.want, out)
		}
	}

	if fileExists("/etc/repute/repute.toml") {
		t.Log("not checking the error without a configuration: /etc/repute/repute.toml exists")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, reputeBin, "user", "list")
	cmd.Dir = t.TempDir()
	cmd.Env = withoutEnv(os.Environ(), "REPUTE_CONFIG")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Errorf("user list without a configuration: exit %v, want 1\n%s", err, out)
	}
	for _, want := range []string{"--config", "$REPUTE_CONFIG", "/etc/repute/repute.toml", "./repute-dev/repute.toml"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("user list without a configuration: error does not name %s:\n%s", want, out)
		}
	}
}

// devPorts are the ports `repute dev` listens on (SMTP, submission, submissions, IMAP,
// IMAPS, metrics), on 127.0.0.1 unless told --listen.
var devPorts = []int{2525, 2587, 2465, 2143, 2993, 2925}

// TestDev runs `repute dev` in an empty directory, reads the addresses and the password
// it prints, sends it a message with swaks, reads it with imaplib and lists the users with
// an admin command run in that directory without --config. The server listens on a
// loopback address of this test (--listen), so a developer's own `repute dev` on
// 127.0.0.1 does not get in the way.
func TestDev(t *testing.T) {
	needBinary(t)
	swaks := needTool(t, "swaks", "swaks")
	needTool(t, "/usr/bin/python3", "python3")
	t.Parallel()
	wrap := privateResolver(t)
	ip := allocAddr(t, false, devPorts...)

	dir := t.TempDir()
	cmd := exec.Command(wrap[0], append(wrap[1:], reputeBin, "dev", "--listen", ip)...)
	cmd.Dir = dir
	cmd.Env = withoutEnv(os.Environ(), "REPUTE_CONFIG")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(stopTimeout):
				_ = cmd.Process.Kill()
				<-exited
			}
		}
		if t.Failed() {
			t.Logf("repute dev output:\n%s", out.String())
		}
	})

	// Wait for the banner with the addresses and the credentials.
	var info devInfo
	deadline := time.Now().Add(startTimeout)
	for {
		info = parseDevOutput(out.String())
		if info.complete() {
			break
		}
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("repute dev exited: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("repute dev printed no SMTP/IMAP address, user and password within %v (parsed %+v)", startTimeout, info)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("repute dev: SMTP %s, IMAP %s, user %s", info.SMTP, info.IMAP, info.User)
	for _, a := range []string{info.SMTP, info.IMAP} {
		if host, _, _ := net.SplitHostPort(a); host != ip {
			t.Errorf("repute dev --listen %s printed the address %s", ip, a)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "repute-dev")); err != nil {
		t.Errorf("repute dev did not create ./repute-dev/: %v", err)
	}

	res, err := runTool(t, swaks, "--timeout", "20", "--server", info.SMTP,
		"--from", "someone@"+remoteDomain, "--to", info.User,
		"--header", "Subject: hello dev", "--body", "dev body")
	if err != nil || !regexp.MustCompile(`(?m)^<-  250 .*\n -> QUIT`).MatchString(res) {
		t.Fatalf("swaks to %s: %v\n%s", info.SMTP, err, res)
	}

	host, port, _ := net.SplitHostPort(info.IMAP)
	script := filepath.Join(t.TempDir(), "imap.py")
	if err := os.WriteFile(script, []byte(imaplibScript), 0o644); err != nil {
		t.Fatal(err)
	}
	cert := filepath.Join(dir, "repute-dev", "data", "tls", "selfsigned-cert.pem")
	res, err = runTool(t, "/usr/bin/python3", script, host, port, info.User, info.Password, cert, "read")
	if err != nil || !strings.Contains(res, `"subject": "hello dev"`) {
		t.Fatalf("imaplib as %s on %s: %v\n%s", info.User, info.IMAP, err, res)
	}

	checkDevAdmin(t, dir, info.User)

	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		stopped = true
		if err != nil {
			t.Errorf("repute dev after SIGTERM: %v", err)
		}
	case <-time.After(stopTimeout):
		t.Errorf("repute dev still running %v after SIGTERM", stopTimeout)
	}
}

// checkDevAdmin runs `repute user list` in the directory of a `repute dev` without
// --config or $REPUTE_CONFIG: it must find ./repute-dev/repute.toml (unless this machine
// has a system configuration, which comes first).
func checkDevAdmin(t *testing.T, dir, user string) {
	t.Helper()
	if fileExists("/etc/repute/repute.toml") {
		t.Log("not checking that admin commands find ./repute-dev/repute.toml: /etc/repute/repute.toml exists and comes first")
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, reputeBin, "user", "list")
	cmd.Dir = dir
	cmd.Env = withoutEnv(os.Environ(), "REPUTE_CONFIG")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), user) {
		t.Errorf("repute user list beside repute dev, without --config: %v\n%s", err, out)
	}
}

// withoutEnv returns env without the variable name.
func withoutEnv(env []string, name string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}

// devInfo is what `repute dev` tells its user.
type devInfo struct{ SMTP, IMAP, User, Password string }

func (d devInfo) complete() bool {
	return d.SMTP != "" && d.IMAP != "" && d.User != "" && d.Password != ""
}

var (
	devAddrRE = regexp.MustCompile(`(127\.\d+\.\d+\.\d+|\[::1\]|localhost):(\d+)`)
	devUserRE = regexp.MustCompile(`(?i)^\s*(?:user|login|username|address)\b[\s:=]*(\S+@\S+)`)
	devPassRE = regexp.MustCompile(`(?i)^\s*password\b[\s:=]*(\S+)`)
)

// parseDevOutput finds the MX and IMAP (STARTTLS) addresses and the credentials in the
// banner of `repute dev`, one labelled item per line.
func parseDevOutput(out string) devInfo {
	var d devInfo
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		low := strings.ToLower(strings.TrimSpace(line))
		if m := devUserRE.FindStringSubmatch(line); m != nil && d.User == "" {
			d.User = strings.Trim(m[1], "<>,")
		}
		if m := devPassRE.FindStringSubmatch(line); m != nil && d.Password == "" {
			d.Password = m[1]
		}
		addr := devAddrRE.FindString(line)
		switch {
		case addr == "" || strings.Contains(low, "swaks") || strings.Contains(low, "curl"):
		case strings.HasPrefix(low, "smtp") && d.SMTP == "":
			d.SMTP = addr
		case strings.HasPrefix(low, "imap ") && d.IMAP == "":
			d.IMAP = addr
		}
	}
	return d
}

// privateResolver returns a command prefix that runs a program with its own
// /etc/resolv.conf naming a DNS server of this test on port 53 of a loopback address of
// its own, so that the dev server's lookups (it uses the system resolver) stay on
// loopback.
func privateResolver(t *testing.T) []string {
	t.Helper()
	needUnshare(t)
	ip := allocAddr(t, true, 53)
	pc, err := net.ListenPacket("udp", ip+":53")
	if err != nil {
		t.Fatalf("DNS for repute dev: %v", err)
	}
	ln, err := net.Listen("tcp", ip+":53")
	if err != nil {
		pc.Close()
		t.Fatalf("DNS for repute dev: %v", err)
	}
	t.Cleanup(serveDNS(pc, ln, sharedZone.answer))
	return withResolvConf(t, ip)
}

// needUnshare skips the test unless programs can be given a private /etc/resolv.conf.
func needUnshare(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("unshare"); err != nil || os.Geteuid() != 0 {
		t.Skip("needs root and unshare(1) to give a program a loopback-only /etc/resolv.conf")
	}
}

// withResolvConf returns a command prefix that runs a program in a mount namespace of
// its own whose /etc/resolv.conf names only the DNS server on ip:53.
func withResolvConf(t *testing.T, ip string) []string {
	t.Helper()
	needUnshare(t)
	conf := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(conf, []byte("nameserver "+ip+"\noptions timeout:2 attempts:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{"unshare", "-m", "sh", "-c", `mount --bind "$1" /etc/resolv.conf && shift && exec "$@"`, "sh", conf}
}

// syncBuffer is a bytes.Buffer safe for a writing process and a polling test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var _ io.Writer = (*syncBuffer)(nil)
