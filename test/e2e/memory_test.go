package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMemoryIdleConnections holds 2,000 idle SMTP sessions (banner read, EHLO answered)
// and checks the server's resident memory stays under 100 MB.
func TestMemoryIdleConnections(t *testing.T) {
	t.Parallel()
	const (
		conns    = 2000
		dialers  = 50
		limitMB  = 100
		setupMax = 90 * time.Second
	)
	raiseNoFile(t, conns+500)
	s := startServer(t, serverOptions{MaxConnectionsPerIP: 5000})
	pid := s.pid()
	idleRSS := vmRSS(t, pid)

	held := make([]net.Conn, conns)
	defer func() {
		for _, c := range held {
			if c != nil {
				c.Close()
			}
		}
	}()
	deadline := time.Now().Add(setupMax)
	jobs := make(chan int)
	errs := make(chan error, conns)
	var wg sync.WaitGroup
	for w := 0; w < dialers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				c, err := openIdleSession(s.SMTP(), i, deadline)
				if err != nil {
					errs <- fmt.Errorf("connection %d: %w", i, err)
					continue
				}
				held[i] = c
			}
		}()
	}
	start := time.Now()
	for i := 0; i < conns; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if failed < 5 {
			t.Error(err)
		}
		failed++
	}
	if failed > 0 {
		t.Fatalf("%d of %d connections failed", failed, conns)
	}
	setup := time.Since(start)
	time.Sleep(time.Second) // let the server settle
	rss := vmRSS(t, pid)
	t.Logf("server RSS: %.1f MB idle before, %.1f MB with %d idle SMTP sessions after EHLO (%.1f KB per session; opened in %v)",
		float64(idleRSS)/1024, float64(rss)/1024, conns, float64(rss-idleRSS)/conns, setup.Round(time.Millisecond))
	if rss >= limitMB*1024 {
		t.Errorf("server RSS %.1f MB with %d idle sessions, want < %d MB", float64(rss)/1024, conns, limitMB)
	}

	// The server still answers a new client while holding them.
	c := dialRawGreeted(t, s.SMTP())
	c.ehlo("one-more.remote.test")
	c.expect("QUIT", 221, "")
}

// openIdleSession connects, reads the banner and gets an answer to EHLO.
func openIdleSession(addr string, i int, deadline time.Time) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, time.Until(deadline))
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(deadline)
	r := bufio.NewReader(c)
	if err := readSMTPReply(r, "220"); err != nil {
		c.Close()
		return nil, fmt.Errorf("banner: %w", err)
	}
	if _, err := fmt.Fprintf(c, "EHLO idle%d.remote.test\r\n", i); err != nil {
		c.Close()
		return nil, err
	}
	if err := readSMTPReply(r, "250"); err != nil {
		c.Close()
		return nil, fmt.Errorf("EHLO: %w", err)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}

func readSMTPReply(r *bufio.Reader, code string) error {
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, code) {
			return fmt.Errorf("reply %q, want %s", strings.TrimSpace(line), code)
		}
		if len(line) < 4 || line[3] != '-' {
			return nil
		}
	}
}

// vmRSS returns the resident set size of a process in KiB.
func vmRSS(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("VmRSS: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", line, err)
			}
			return kb
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// raiseNoFile makes sure this process may hold n open files (Go raises the soft limit
// to the hard one at start-up; this covers a low hard limit or an older runtime).
func raiseNoFile(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	lim.Cur = min(max(n, lim.Cur), lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < n {
		t.Fatalf("RLIMIT_NOFILE %d/%d is below the %d descriptors this test needs (%v)", lim.Cur, lim.Max, n, err)
	}
}
