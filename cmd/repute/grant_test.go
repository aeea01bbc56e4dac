package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUserGrant(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "r.toml")
	os.WriteFile(cfg, []byte("hostname = \"mx.a.test\"\ndata_dir = \""+filepath.Join(dir, "data")+"\"\n"), 0o644)
	tests := []struct {
		args   []string
		code   int
		stdout string // substring
	}{
		{[]string{"domain", "add", "a.test"}, 0, ""},
		{[]string{"domain", "add", "b.test"}, 0, ""},
		{[]string{"user", "add", "u@a.test"}, 0, ""},
		{[]string{"user", "grant", "u@a.test", "@B.test"}, 0, "u@a.test may now send as @B.test"},
		{[]string{"user", "grant", "u@a.test", "boss@a.test"}, 0, "may now send as boss@a.test"},
		{[]string{"user", "grant", "u@a.test", "@b.test"}, 1, ""},       // exists
		{[]string{"user", "grant", "u@a.test", "x@remote.test"}, 1, ""}, // not a local domain
		{[]string{"user", "grant", "nobody@a.test", "@b.test"}, 1, ""},  // no such user
		{[]string{"user", "grant", "u@a.test"}, 2, ""},                  // usage
		{[]string{"user", "grants"}, 0, "u@a.test  @b.test"},
		{[]string{"user", "revoke", "u@a.test", "@b.test"}, 0, "may no longer send as @b.test"},
		{[]string{"user", "revoke", "u@a.test", "@b.test"}, 1, ""},
		{[]string{"user", "grants", "--json"}, 0, `"address": "boss@a.test"`},
	}
	for _, tc := range tests {
		code, out, errs := runCLI(t, "", append(tc.args, "--config", cfg)...)
		if code != tc.code || !strings.Contains(out, tc.stdout) {
			t.Errorf("repute %s: code %d, stdout %q, stderr %q; want code %d and %q",
				strings.Join(tc.args, " "), code, out, errs, tc.code, tc.stdout)
		}
	}
}
