package store

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// withUmask runs fn with the process umask set to mask. Tests using it must not run in
// parallel with tests that create files.
func withUmask(t *testing.T, mask int, fn func()) {
	t.Helper()
	old := syscall.Umask(mask)
	defer syscall.Umask(old)
	fn()
}

// fileModes returns the permission bits of the database and its -wal and -shm files.
func fileModes(t *testing.T, path string) map[string]os.FileMode {
	t.Helper()
	modes := map[string]os.FileMode{}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatalf("%v (SQLite in WAL mode keeps -wal and -shm while open)", err)
		}
		modes[filepath.Base(p)] = fi.Mode().Perm()
	}
	return modes
}

// TestDatabaseFileModes is the reported case: with the usual umask 022 repute.db was
// created 0644, readable by every user of the host, with DKIM private keys and password
// hashes in it.
func TestDatabaseFileModes(t *testing.T) {
	for _, umask := range []int{0o022, 0o002, 0o000, 0o077} {
		path := filepath.Join(t.TempDir(), "data", "repute.db")
		withUmask(t, umask, func() {
			db, err := Open(context.Background(), Options{Path: path, Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if _, err := db.AddDomain(context.Background(), "a.test"); err != nil {
				t.Fatal(err)
			}
			for name, mode := range fileModes(t, path) {
				if mode != 0o600 {
					t.Errorf("umask %#o: %s created with mode %#o, want 0600", umask, name, mode)
				}
			}
		})
	}
}

// TestDatabaseFileModesTightened checks that files left with looser permissions (by an
// earlier version) are restricted at Open, and that Open says so.
func TestDatabaseFileModesTightened(t *testing.T) {
	path := filepath.Join(t.TempDir(), "repute.db")
	withUmask(t, 0o022, func() {
		db, err := Open(context.Background(), Options{Path: path, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.AddDomain(context.Background(), "a.test"); err != nil {
			t.Fatal(err)
		}
		// Loosen the files while they exist (SQLite keeps -wal and -shm while open).
		for _, p := range []string{path, path + "-wal", path + "-shm"} {
			if err := os.Chmod(p, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		var logs bytes.Buffer
		db2, err := Open(context.Background(), Options{Path: path, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		defer db2.Close()
		db.Close()
		for name, mode := range fileModes(t, path) {
			if mode != 0o600 {
				t.Errorf("%s left with mode %#o, want 0600", name, mode)
			}
		}
		for _, name := range []string{"repute.db ", "repute.db-wal ", "repute.db-shm "} {
			if !strings.Contains(logs.String(), name) || !strings.Contains(logs.String(), "old_mode=0644 new_mode=0600") {
				t.Errorf("the change of %s was not logged:\n%s", name, logs.String())
			}
		}
		// Nothing to say when the modes are right.
		logs.Reset()
		db3, err := Open(context.Background(), Options{Path: path, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		db3.Close()
		if strings.Contains(logs.String(), "restricted") {
			t.Errorf("modes already right, but Open logged:\n%s", logs.String())
		}
	})
}
