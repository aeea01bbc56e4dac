package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSuppressionCommands(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "r.toml")
	os.WriteFile(cfg, []byte("hostname = \"mx.a.test\"\ndata_dir = \""+filepath.Join(dir, "data")+"\"\n"), 0o644)
	steps := []struct {
		args   []string
		code   int
		stdout string
	}{
		{[]string{"domain", "add", "a.test"}, 0, "added"},
		{[]string{"suppression", "add", "Bob@Remote.test", "--note", "asked by phone"}, 0, "Bob@Remote.test suppressed for a.test"},
		{[]string{"suppression", "add", "bob@remote.test"}, 0, "already suppressed"},
		{[]string{"suppression", "add", "not-an-address"}, 1, ""},
		{[]string{"suppression", "list"}, 0, "bob@remote.test"},
		{[]string{"domain", "add", "b.test"}, 0, "added"},
		{[]string{"suppression", "add", "carol@remote.test"}, 2, ""}, // two domains: --domain needed
		{[]string{"suppression", "add", "carol@remote.test", "--domain", "b.test"}, 0, "for b.test"},
		{[]string{"suppression", "remove", "bob@remote.test", "--domain", "a.test"}, 0, "may be mailed again"},
		{[]string{"suppression", "remove", "bob@remote.test", "--domain", "a.test"}, 1, ""},
	}
	for _, s := range steps {
		code, out, errs := runCLI(t, "", append(s.args, "--config", cfg)...)
		if code != s.code || !strings.Contains(out, s.stdout) {
			t.Errorf("repute %s: code %d, stdout %q, stderr %q; want %d and %q", strings.Join(s.args, " "), code, out, errs, s.code, s.stdout)
		}
	}
	code, out, _ := runCLI(t, "", "suppression", "list", "--json", "--config", cfg)
	var list []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 1 || list[0]["address"] != "carol@remote.test" ||
		list[0]["reason"] != "manual" || list[0]["sender_domain"] != "b.test" {
		t.Errorf("suppression list --json = %d %s", code, out)
	}
}
