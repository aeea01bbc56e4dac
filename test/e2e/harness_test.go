package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	testDomain   = "a.test"
	testHostname = "mx.a.test"
	remoteDomain = "remote.test"

	startTimeout = 30 * time.Second // until every listener accepts connections
	stopTimeout  = 40 * time.Second // graceful drain after SIGTERM (the server allows itself 30 s)
	cliTimeout   = 60 * time.Second
)

// defaultUsers are created in every test server (local parts of testDomain).
var defaultUsers = []string{"alice", "bob", "carol", "dave"}

func address(local string) string { return local + "@" + testDomain }

// password is the password the harness gives a test user.
func password(local string) string { return "Secret-" + local + "-42" }

// portSet holds one port per mail listener.
type portSet struct{ SMTP, Submission, Submissions, IMAP, IMAPS int }

var (
	standardPorts = portSet{25, 587, 465, 143, 993}
	highPorts     = portSet{2525, 2587, 2465, 2143, 2993}
)

func (p portSet) list() []int { return []int{p.SMTP, p.Submission, p.Submissions, p.IMAP, p.IMAPS} }

var ipAlloc struct {
	sync.Mutex
	next       int
	unprivOnly bool // binding a port below 1024 failed with EACCES
}

// allocIP returns a loopback address of its own for one test (127.0.0.2, 127.0.0.3, …;
// all of 127/8 routes to lo on Linux without configuration) and the ports to use on it:
// the standard mail ports when they can be bound, high ports otherwise. An address on
// which any of the ports is taken (another process on this machine) is passed over.
func allocIP(t *testing.T) (string, portSet) {
	t.Helper()
	ipAlloc.Lock()
	defer ipAlloc.Unlock()
	if ipAlloc.next == 0 {
		ipAlloc.next = 2
		ipAlloc.unprivOnly = os.Geteuid() != 0
	}
	for ; ipAlloc.next < 200; ipAlloc.next++ {
		ip := "127.0.0." + strconv.Itoa(ipAlloc.next)
		ports := standardPorts
		if ipAlloc.unprivOnly {
			ports = highPorts
		}
		err := probePorts(ip, ports.list(), false)
		if errors.Is(err, syscall.EACCES) && !ipAlloc.unprivOnly {
			ipAlloc.unprivOnly = true
			ports = highPorts
			err = probePorts(ip, ports.list(), false)
		}
		if err == nil {
			ipAlloc.next++
			return ip, ports
		}
		t.Logf("skipping %s: %v", ip, err)
	}
	t.Fatal("no free loopback address in 127.0.0.2-127.0.0.199")
	return "", portSet{}
}

// allocAddr returns a loopback address of its own for a helper daemon of one test (a DNS
// server on port 53, an HTTPS server on 443) on which every given TCP port, and with udp
// also the same UDP ports, is free. Ports below 1024 need root: the test is skipped
// without it.
func allocAddr(t *testing.T, udp bool, ports ...int) string {
	t.Helper()
	for _, p := range ports {
		if p < 1024 && os.Geteuid() != 0 {
			t.Skipf("needs root to bind port %d on loopback", p)
		}
	}
	ipAlloc.Lock()
	defer ipAlloc.Unlock()
	if ipAlloc.next == 0 {
		ipAlloc.next = 2
		ipAlloc.unprivOnly = os.Geteuid() != 0
	}
	for ; ipAlloc.next < 200; ipAlloc.next++ {
		ip := "127.0.0." + strconv.Itoa(ipAlloc.next)
		if err := probePorts(ip, ports, udp); err != nil {
			t.Logf("skipping %s: %v", ip, err)
			continue
		}
		ipAlloc.next++
		return ip
	}
	t.Fatal("no free loopback address in 127.0.0.2-127.0.0.199")
	return ""
}

func probePorts(ip string, ports []int, udp bool) error {
	for _, p := range ports {
		addr := net.JoinHostPort(ip, strconv.Itoa(p))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		ln.Close()
		if udp {
			pc, err := net.ListenPacket("udp", addr)
			if err != nil {
				return err
			}
			pc.Close()
		}
	}
	return nil
}

// serverOptions are the per-test settings written into the config file.
type serverOptions struct {
	MaxRecipients       int   // smtp.max_recipients (default 100)
	MaxMessageSize      int64 // smtp.max_message_size (default 10 MiB)
	MaxConnectionsPerIP int   // smtp and imap max_connections_per_ip (default 50)
	MinFreeDisk         int64 // smtp.min_free_disk; 0 = the server's default

	// Domain is the local domain created with defaultUsers (default testDomain), and
	// Hostname the server's name (default "mx." + Domain). ExtraDomains are further local
	// domains, each also with defaultUsers.
	Domain       string
	Hostname     string
	ExtraDomains []string

	DNS         string    // dns.resolver "IP:PORT" (default: the shared test DNS server)
	RemotePort  int       // outbound.remote_port (default: the SMTP port of the test servers)
	Queue       queueOpts // [queue]; zero fields keep the server's defaults
	Env         []string  // extra environment of `repute serve` ("SSL_CERT_FILE=…")
	Metrics     bool      // serve /metrics on the server's address (s.MetricsURL)
	SMTPExtra   string    // further [smtp] lines, e.g. "message_rate_per_ip = 5\n"
	BounceExtra string    // [bounce] lines
	Web         bool      // serve https on the server's address (s.HTTPS)
	TimeScale   float64   // [shaping] time_scale; 0 leaves the key out (real time)
	// OutboundExtra are further [outbound] lines ("source_ips = [...]\n"); Extra is
	// appended to the file (further tables: [warmup], [alerts], [shaping.provider.x]).
	OutboundExtra string
	ShapingExtra  string // further [shaping] lines
	Extra         string
}

// queueOpts are the [queue] settings a test may shorten ("1s"); "" leaves a key out.
type queueOpts struct {
	RetryMin, RetryMax, MaxAge, DelayWarning, ScanInterval string
	Concurrency                                            int
}

// fastQueue retries within seconds, so that outbound tests need not wait minutes.
var fastQueue = queueOpts{RetryMin: "1s", RetryMax: "3s", ScanInterval: "1s", DelayWarning: "0s"}

func (q queueOpts) toml() string {
	var b strings.Builder
	for _, kv := range []struct{ k, v string }{
		{"retry_min", q.RetryMin}, {"retry_max", q.RetryMax}, {"max_age", q.MaxAge},
		{"delay_warning", q.DelayWarning}, {"scan_interval", q.ScanInterval},
	} {
		if kv.v != "" {
			fmt.Fprintf(&b, "%s = %q\n", kv.k, kv.v)
		}
	}
	if q.Concurrency > 0 {
		fmt.Fprintf(&b, "concurrency = %d\n", q.Concurrency)
	}
	if b.Len() == 0 {
		return ""
	}
	return "\n[queue]\n" + b.String()
}

// server is one `repute serve` process with its own config, data directory and address.
type server struct {
	t        *testing.T
	dir      string // everything of this server lives here
	cfgPath  string
	dataDir  string
	logPath  string
	ip       string
	ports    portSet
	opts     serverOptions
	domain   string // the first local domain
	hostname string

	mu      sync.Mutex
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the running process has exited
	waitErr error
	starts  int
}

// newServer writes a config for a fresh server and creates testDomain and defaultUsers
// through the CLI. It does not start the server.
func newServer(t *testing.T, opts serverOptions) *server {
	t.Helper()
	needBinary(t)
	if opts.MaxRecipients == 0 {
		opts.MaxRecipients = 100
	}
	if opts.MaxMessageSize == 0 {
		opts.MaxMessageSize = 10 << 20
	}
	if opts.MaxConnectionsPerIP == 0 {
		opts.MaxConnectionsPerIP = 50
	}
	if opts.Domain == "" {
		opts.Domain = testDomain
	}
	if opts.Hostname == "" {
		opts.Hostname = "mx." + opts.Domain // testHostname for testDomain
	}
	if opts.DNS == "" {
		opts.DNS = dnsAddr
	}
	ip, ports := allocIP(t)
	if opts.RemotePort == 0 {
		opts.RemotePort = ports.SMTP
	}
	s := &server{t: t, dir: tempDir(t), ip: ip, ports: ports, opts: opts, domain: opts.Domain, hostname: opts.Hostname}
	s.cfgPath = filepath.Join(s.dir, "repute.toml")
	s.dataDir = filepath.Join(s.dir, "data")
	s.logPath = filepath.Join(s.dir, "serve.log")
	if err := os.WriteFile(s.cfgPath, []byte(s.config()), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.cleanup)

	for _, d := range append([]string{opts.Domain}, opts.ExtraDomains...) {
		s.mustCLI("", "domain", "add", d)
		for _, u := range defaultUsers {
			s.mustCLI(password(u)+"\n", "user", "add", u+"@"+d, "--password-stdin")
		}
	}
	return s
}

// mailAddr is the address of a default user in the server's first domain.
func (s *server) mailAddr(local string) string { return local + "@" + s.domain }

// startServer is newServer followed by start.
func startServer(t *testing.T, opts serverOptions) *server {
	s := newServer(t, opts)
	s.start()
	return s
}

// tempDir is t.TempDir, or a kept directory when REPUTE_E2E_KEEP is set.
func tempDir(t *testing.T) string {
	if os.Getenv("REPUTE_E2E_KEEP") == "" {
		return t.TempDir()
	}
	d, err := os.MkdirTemp("", "repute-e2e-"+strings.ReplaceAll(t.Name(), "/", "_")+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("keeping %s", d)
	return d
}

func (s *server) config() string {
	o := s.opts
	return fmt.Sprintf(`# written by the end-to-end harness for %s
hostname = %q
data_dir = %q

[listen]
smtp = %q
submission = %q
submissions = %q
imap = %q
imaps = %q
http = ""
https = %q
metrics = %q

[dns]
resolver = %q

[check]
interval = "0s"              # the self-check would probe the internet

[outbound]
remote_port = %d
%s
[smtp]
max_message_size = %d
max_recipients = %d
max_connections_per_ip = %d
command_timeout = "5m"
%s%s
[bounce]
%s
[imap]
max_connections_per_ip = %d
%s%s%s`, s.t.Name(), s.hostname, s.dataDir,
		s.SMTP(), s.Submission(), s.Submissions(), s.IMAP(), s.IMAPS(), s.HTTPS(), s.metricsAddr(),
		o.DNS, o.RemotePort, o.OutboundExtra, o.MaxMessageSize, o.MaxRecipients, o.MaxConnectionsPerIP, minFreeDisk(o.MinFreeDisk), o.SMTPExtra,
		o.BounceExtra, o.MaxConnectionsPerIP, o.Queue.toml(), o.shaping(), o.Extra)
}

func (o serverOptions) shaping() string {
	if o.TimeScale == 0 && o.ShapingExtra == "" {
		return ""
	}
	s := "\n[shaping]\n"
	if o.TimeScale != 0 {
		s += fmt.Sprintf("time_scale = %v\n", o.TimeScale)
	}
	return s + o.ShapingExtra
}

func minFreeDisk(n int64) string {
	switch {
	case n > 0:
		return fmt.Sprintf("min_free_disk = %d\n", n)
	case n < 0:
		return "min_free_disk = 0\n" // no early check: let the disk really fill up
	}
	return ""
}

// writeConfig rewrites the config file from s.opts (for a restart with other settings).
func (s *server) writeConfig() {
	s.t.Helper()
	if err := os.WriteFile(s.cfgPath, []byte(s.config()), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

func (s *server) hostport(port int) string { return net.JoinHostPort(s.ip, strconv.Itoa(port)) }

// Listener addresses.
func (s *server) SMTP() string        { return s.hostport(s.ports.SMTP) }
func (s *server) Submission() string  { return s.hostport(s.ports.Submission) }
func (s *server) Submissions() string { return s.hostport(s.ports.Submissions) }
func (s *server) IMAP() string        { return s.hostport(s.ports.IMAP) }
func (s *server) IMAPS() string       { return s.hostport(s.ports.IMAPS) }

// metricsPort is where a server with Metrics serves /metrics, on its own address.
const metricsPort = 9325

func (s *server) metricsAddr() string {
	if !s.opts.Metrics {
		return ""
	}
	return s.hostport(metricsPort)
}

// httpsPort is where a server with Web serves HTTPS, on its own address.
const httpsPort = 8443

// HTTPS is the server's https listener ("" without serverOptions.Web).
func (s *server) HTTPS() string {
	if !s.opts.Web {
		return ""
	}
	return s.hostport(httpsPort)
}

// MetricsURL is the server's Prometheus endpoint (with serverOptions.Metrics).
func (s *server) MetricsURL() string { return "http://" + s.metricsAddr() + "/metrics" }

func (s *server) listeners() []string {
	return []string{s.SMTP(), s.Submission(), s.Submissions(), s.IMAP(), s.IMAPS()}
}

// cli runs `repute ARGS... --config FILE` with stdin and returns its combined output.
func (s *server) cli(stdin string, args ...string) (string, error) {
	args = append(args, "--config", s.cfgPath)
	return runRepute(s.dir, stdin, args...)
}

func (s *server) mustCLI(stdin string, args ...string) string {
	s.t.Helper()
	out, err := s.cli(stdin, args...)
	if err != nil {
		s.t.Fatalf("repute %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// runRepute runs the binary in dir and returns stdout and stderr together.
func runRepute(dir, stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, reputeBin, args...)
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	return out.String(), err
}

// start runs `repute serve` and waits until every listener accepts connections.
func (s *server) start() {
	s.t.Helper()
	s.mu.Lock()
	if s.cmd != nil {
		s.mu.Unlock()
		s.t.Fatal("server already running")
	}
	logf, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		s.mu.Unlock()
		s.t.Fatal(err)
	}
	s.starts++
	fmt.Fprintf(logf, "=== harness: start #%d at %s\n", s.starts, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(reputeBin, "serve", "--config", s.cfgPath)
	cmd.Dir = s.dir
	if len(s.opts.Env) > 0 {
		cmd.Env = append(os.Environ(), s.opts.Env...)
	}
	cmd.Stdout = logf
	cmd.Stderr = logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		s.mu.Unlock()
		s.t.Fatalf("start repute serve: %v", err)
	}
	exited := make(chan struct{})
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	go func() {
		err := cmd.Wait()
		logf.Close()
		s.mu.Lock()
		s.waitErr = err
		s.mu.Unlock()
		close(exited)
	}()

	deadline := time.Now().Add(startTimeout)
	for _, addr := range s.listeners() {
		for {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-exited:
				s.t.Fatalf("repute serve exited during start-up (%v); log:\n%s", s.exitErr(), s.logTail())
			default:
			}
			if time.Now().After(deadline) {
				s.t.Fatalf("repute serve: %s not accepting connections after %v: %v", addr, startTimeout, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func (s *server) exitErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waitErr
}

// pid is the running server's process id.
func (s *server) pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		s.t.Fatal("server not running")
	}
	return s.cmd.Process.Pid
}

// stop sends SIGTERM and waits for a graceful exit; the test fails if the server needs
// SIGKILL or exits with an error.
func (s *server) stop() {
	s.t.Helper()
	if err := s.signalAndWait(syscall.SIGTERM, stopTimeout); err != nil {
		s.t.Errorf("graceful stop: %v", err)
	}
}

// kill sends SIGKILL (a crash) and waits for the process to be gone.
func (s *server) kill() {
	s.t.Helper()
	_ = s.signalAndWait(syscall.SIGKILL, 10*time.Second)
}

// restart stops the server gracefully and starts it again on the same data directory.
func (s *server) restart() {
	s.t.Helper()
	s.stop()
	s.start()
}

// signalAndWait delivers sig to the server's PID and waits up to timeout for it to exit,
// killing it if it does not. It reports how the process ended.
func (s *server) signalAndWait(sig syscall.Signal, timeout time.Duration) error {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.mu.Unlock()
	if cmd == nil {
		return nil
	}
	defer func() {
		s.mu.Lock()
		s.cmd, s.exited = nil, nil
		s.mu.Unlock()
	}()
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(timeout):
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("pid %d still running %v after %v: killed", cmd.Process.Pid, timeout, sig)
	}
	if sig == syscall.SIGKILL {
		return nil
	}
	if err := s.exitErr(); err != nil {
		return fmt.Errorf("pid %d exited after %v with %v", cmd.Process.Pid, sig, err)
	}
	return nil
}

// cleanup stops a still running server and prints its log if the test failed.
func (s *server) cleanup() {
	if err := s.signalAndWait(syscall.SIGTERM, stopTimeout); err != nil {
		s.t.Logf("cleanup: %v", err)
	}
	if s.t.Failed() {
		s.t.Logf("repute serve log (%s):\n%s", s.logPath, s.logTail())
	}
}

// logTail returns the end of the server's log.
func (s *server) logTail() string {
	b, err := os.ReadFile(s.logPath)
	if err != nil {
		return err.Error()
	}
	const max = 64 << 10
	if len(b) > max {
		b = append([]byte("…\n"), b[len(b)-max:]...)
	}
	return string(b)
}

// certPath is the self-signed certificate the server generates without tls.cert_file.
func (s *server) certPath() string {
	return filepath.Join(s.dataDir, "tls", "selfsigned-cert.pem")
}

// tlsConfig trusts the server's self-signed certificate for its hostname.
func (s *server) tlsConfig(t *testing.T) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(s.certPath())
	if err != nil {
		t.Fatalf("self-signed certificate: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("%s: no PEM certificate", s.certPath())
	}
	return &tls.Config{RootCAs: pool, ServerName: s.hostname}
}
