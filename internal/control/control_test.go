package control

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestControlSocket(t *testing.T) {
	dir := t.TempDir()
	if _, err := Send(dir, "wake"); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("no server: err %v, want ErrNotRunning", err)
	}
	woken := 0
	s := &Server{Handlers: map[string]Handler{
		"wake": func(context.Context, []string) (string, error) { woken++; return "", nil },
		"fail": func(context.Context, []string) (string, error) { return "", errors.New("nope") },
	}}
	// A stale socket file left by a crash is replaced.
	if err := os.WriteFile(filepath.Join(dir, SocketName), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(dir); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, SocketName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	if err := (&Server{}).Listen(dir); err == nil {
		t.Error("a second server on the same data_dir was allowed")
	}
	if _, err := Send(dir, "wake"); err != nil || woken != 1 {
		t.Fatalf("wake: %v, woken %d", err, woken)
	}
	if _, err := Send(dir, "fail"); err == nil || err.Error() != "nope" {
		t.Errorf("failing command: %v", err)
	}
	if _, err := Send(dir, "bogus"); err == nil {
		t.Error("unknown command accepted")
	}
	s.Close()
	if _, err := Send(dir, "wake"); !errors.Is(err, ErrNotRunning) {
		t.Errorf("after Close: %v, want ErrNotRunning", err)
	}
}
