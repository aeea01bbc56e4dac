package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

func TestBounceClassify(t *testing.T) {
	in := "550-5.1.1 The email account that you tried to reach does not exist. gsmtp\n\n" +
		"421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume or user complaints\n"
	code, out, errs := runCLI(t, in, "bounce", "classify", "--json", "--config", filepath.Join(t.TempDir(), "none.toml"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("want one JSON object per non-empty input line, got:\n%s", out)
	}
	want := []string{"action", "advice", "category", "provider", "temporary", "url"}
	for i, cat := range []string{"bad_mailbox", "rate_limited"} {
		var m map[string]any
		if err := json.Unmarshal([]byte(lines[i]), &m); err != nil {
			t.Fatal(err)
		}
		var keys []string
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		if !reflect.DeepEqual(keys, want) || m["category"] != cat {
			t.Errorf("line %d: %v; want exactly the fields %v and category %s", i+1, m, want, cat)
		}
	}
	code, out, _ = runCLI(t, in, "bounce", "classify", "--config", "/nonexistent")
	if code != 0 || !strings.Contains(out, "bad_mailbox (permanent, google)") {
		t.Errorf("text output: %d %q", code, out)
	}
}

func TestBounceClassifyDSN(t *testing.T) {
	path := filepath.Join("..", "..", "internal", "classify", "testdata", "dsn", "postfix.eml")
	if _, err := os.Stat(path); err != nil {
		t.Skip(err)
	}
	code, out, errs := runCLI(t, "", "bounce", "classify", "--json", "--dsn", path, "--config", "/nonexistent")
	if code != 0 || !strings.Contains(out, `"recipient":`) || !strings.Contains(out, `"category":`) {
		t.Errorf("--dsn: %d %q %q", code, out, errs)
	}
}

func TestBounceRates(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "r.toml")
	os.WriteFile(cfg, []byte("hostname = \"mx.a.test\"\ndata_dir = \""+filepath.Join(dir, "data")+"\"\n"), 0o644)
	if code, out, _ := runCLI(t, "", "bounce", "rates", "--json", "--config", cfg); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Errorf("empty rates: %d %q", code, out)
	}
	if code, out, _ := runCLI(t, "", "bounce", "rates", "--window", "168h", "--config", cfg); code != 0 || !strings.Contains(out, "BOUNCE RATE") {
		t.Errorf("rates table: %d %q", code, out)
	}
}
