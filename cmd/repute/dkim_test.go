package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/repute-mail/repute/internal/dns/dnstest"
)

func TestDKIMRotate(t *testing.T) {
	srv, err := dnstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "r.toml")
	os.WriteFile(cfg, []byte("hostname = \"mx.a.test\"\ndata_dir = \""+filepath.Join(dir, "data")+"\"\n[dns]\nresolver = \""+srv.Addr+"\"\n"), 0o644)
	if code, _, errs := runCLI(t, "", "domain", "add", "a.test", "--config", cfg); code != 0 {
		t.Fatalf("domain add: %s", errs)
	}
	code, out, errs := runCLI(t, "", "dkim", "rotate", "a.test", "--config", cfg)
	if code != 0 || !strings.Contains(out, "(pending)") {
		t.Fatalf("first rotate: %d %s %s", code, out, errs)
	}
	var record string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "._domainkey.") {
			record = l
		}
	}
	// Not published yet: signing must not switch.
	if code, _, errs := runCLI(t, "", "dkim", "rotate", "a.test", "--config", cfg); code != 1 || !strings.Contains(errs, "not visible") {
		t.Fatalf("rotate before publishing: %d %s", code, errs)
	}
	if err := srv.Add(record); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runCLI(t, "", "dkim", "rotate", "a.test", "--config", cfg); code != 0 || !strings.Contains(out, "now signs with") {
		t.Fatalf("rotate after publishing: %d %s %s", code, out, errs)
	}
	_, out, _ = runCLI(t, "", "dkim", "list", "--json", "--config", cfg)
	var keys []struct{ Selector, State string }
	if err := json.Unmarshal([]byte(out), &keys); err != nil || len(keys) != 2 || keys[0].State != "retired" || keys[1].State != "active" {
		t.Fatalf("keys after rotation: %s", out)
	}
	if keys[0].Selector == keys[1].Selector {
		t.Errorf("rotation reused selector %s", keys[0].Selector)
	}
	_, out, _ = runCLI(t, "", "dns", "records", "a.test", "--config", cfg)
	if !strings.Contains(out, "retired: keep published until") || strings.Count(out, "._domainkey.") != 2 {
		t.Errorf("dns records during the grace period:\n%s", out)
	}
}
