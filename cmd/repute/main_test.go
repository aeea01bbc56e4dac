package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb}
	code := run(context.Background(), e, args)
	return code, out.String(), errb.String()
}

func TestAdminCommands(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "r.toml")
	os.WriteFile(cfg, []byte("hostname = \"mx.a.test\"\ndata_dir = \""+filepath.Join(dir, "data")+"\"\n"), 0o644)
	tests := []struct {
		args   []string
		stdin  string
		code   int
		stdout string // substring
	}{
		{[]string{"domain", "add", "A.test", "--config", cfg}, "", 0, "domain a.test added"},
		{[]string{"--config", cfg, "domain", "add", "b.test"}, "", 2, ""}, // flags come after the command
		{[]string{"domain", "add", "a.test", "--config", cfg}, "", 1, ""}, // exists
		{[]string{"user", "add", "--password-stdin", "u@a.test", "--config", cfg}, "pw\n", 0, "user u@a.test added"},
		{[]string{"user", "add", "v@a.test", "--config", cfg}, "", 0, "password: "},
		{[]string{"user", "add", "w@nowhere.test", "--config", cfg}, "", 1, ""},
		{[]string{"alias", "add", "@a.test", "u@a.test", "--config", cfg}, "", 0, "added"},
		{[]string{"alias", "list", "--config", cfg}, "", 0, "@a.test  u@a.test"},
		{[]string{"user", "frob", "--config", cfg}, "", 2, ""},
		{[]string{"user", "del", "--config", cfg}, "", 2, ""},
		{[]string{"config", "check", "--config", cfg}, "", 0, "OK"},
	}
	for _, tc := range tests {
		code, out, errs := runCLI(t, tc.stdin, tc.args...)
		if code != tc.code || !strings.Contains(out, tc.stdout) {
			t.Errorf("repute %s: code %d, stdout %q, stderr %q; want code %d and %q",
				strings.Join(tc.args, " "), code, out, errs, tc.code, tc.stdout)
		}
	}
	code, out, _ := runCLI(t, "", "user", "list", "--json", "--config", cfg)
	var users []struct{ Address string }
	if code != 0 || json.Unmarshal([]byte(out), &users) != nil || len(users) != 2 {
		t.Errorf("user list --json = %d %q", code, out)
	}
	code, out, _ = runCLI(t, "", "queue", "list", "--json", "--config", cfg)
	if code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("empty queue list --json = %d %q, want []", code, out)
	}
}
