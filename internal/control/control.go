// Package control is the admin channel to a running server: a Unix socket in data_dir
// (control.sock, mode 0600, so only the server's own account and root can use it) that
// takes one command per connection and answers one line. Admin commands change the store
// themselves (they work when the server is not running) and then tell the server over the
// socket, so that a change takes effect at once instead of at the scheduler's next scan:
// "wake" makes the scheduler look at the queue now (after queue retry or release, and
// after sendmail queued mail). Later commands (provider pause and resume) act on state
// that lives in the server.
//
// Upstream: cmd/repute (clients), internal/app (the server). Downstream: nothing; the
// server's handlers are functions it is given.
package control

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// SocketName is the socket's file name in data_dir.
const SocketName = "control.sock"

// maxLine bounds a command line; maxReply a reply (provider status lists every lane).
const (
	maxLine  = 4096
	maxReply = 8 << 20
)

// ErrNotRunning is returned by Send when no server listens on the socket.
var ErrNotRunning = errors.New("server not running")

// Handler runs one command's arguments and returns the reply line.
type Handler func(ctx context.Context, args []string) (string, error)

// Server serves the socket.
type Server struct {
	Handlers map[string]Handler
	Logger   *slog.Logger

	mu sync.Mutex
	l  net.Listener
	wg sync.WaitGroup
}

// Listen creates the socket in dir (replacing a stale one left by a crash) with mode
// 0600 and starts serving it.
func (s *Server) Listen(dir string) error {
	path := filepath.Join(dir, SocketName)
	if err := removeStale(path); err != nil {
		return err
	}
	old := syscall.Umask(0o177) // the socket is created 0600 from the start
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return fmt.Errorf("control socket: %w", err)
	}
	s.mu.Lock()
	s.l = l
	s.mu.Unlock()
	s.wg.Add(1)
	go s.serve(l)
	return nil
}

// removeStale removes a socket file nobody listens on; a live one is an error (another
// server uses this data_dir).
func removeStale(path string) error {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("control socket %s: another server is running on this data_dir", path)
	}
	return os.Remove(path)
}

func (s *Server) serve(l net.Listener) {
	defer s.wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handle(c)
		}()
	}
}

func (s *Server) handle(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	s.answer(c, c)
}

// answer reads one command line from r and writes the one reply line to w.
func (s *Server) answer(r io.Reader, c io.Writer) {
	line, err := bufio.NewReaderSize(io.LimitReader(r, maxLine), maxLine).ReadString('\n')
	if err != nil {
		fmt.Fprintf(c, "error: %s\n", "command line missing or too long")
		return
	}
	f := strings.Fields(line)
	if len(f) == 0 {
		fmt.Fprintln(c, "error: empty command")
		return
	}
	h, ok := s.Handlers[f[0]]
	if !ok {
		fmt.Fprintf(c, "error: unknown command %q\n", f[0])
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Second)
	defer cancel()
	reply, err := h(ctx, f[1:])
	if err != nil {
		s.log().Warn("control: command failed", "command", f[0], "err", err)
		fmt.Fprintf(c, "error: %s\n", oneLine(err.Error()))
		return
	}
	s.log().Info("control: command", "command", f[0])
	fmt.Fprintf(c, "ok %s\n", oneLine(reply))
}

func (s *Server) log() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// Close stops serving and removes the socket.
func (s *Server) Close() error {
	s.mu.Lock()
	l := s.l
	s.l = nil
	s.mu.Unlock()
	if l == nil {
		return nil
	}
	err := l.Close() // a Unix listener removes its socket file on Close
	s.wg.Wait()
	return err
}

func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", " ") }

// Send gives the server listening in dir one command and returns its reply. With no
// server running it returns ErrNotRunning, which callers whose change is already in the
// store may ignore: the server reads it at its next start.
func Send(dir string, args ...string) (string, error) {
	path := filepath.Join(dir, SocketName)
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return "", ErrNotRunning
		}
		return "", fmt.Errorf("control socket %s: %w", path, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintln(c, strings.Join(args, " ")); err != nil {
		return "", fmt.Errorf("control socket: %w", err)
	}
	line, err := bufio.NewReader(io.LimitReader(c, maxReply)).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("control socket: no reply: %w", err)
	}
	line = strings.TrimSpace(line)
	if rest, ok := strings.CutPrefix(line, "ok"); ok {
		return strings.TrimSpace(rest), nil
	}
	return "", errors.New(strings.TrimPrefix(line, "error: "))
}
