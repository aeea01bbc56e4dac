package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
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
		{[]string{"--config", cfg, "domain", "add", "b.test"}, "", 0, "domain b.test added"}, // global flag before the command
		{[]string{"domain", "add", "a.test", "--config", cfg}, "", 1, ""},                    // exists
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

func TestSplitGlobalFlags(t *testing.T) {
	tests := []struct {
		args          []string
		global, rest  []string
		wantErrSubstr string
	}{
		{[]string{"queue", "list"}, nil, []string{"queue", "list"}, ""},
		{[]string{"--config", "F", "queue", "list"}, []string{"--config", "F"}, []string{"queue", "list"}, ""},
		{[]string{"--config=F", "queue"}, []string{"--config=F"}, []string{"queue"}, ""},
		{[]string{"-config", "F", "--json", "user", "list"}, []string{"-config", "F", "--json"}, []string{"user", "list"}, ""},
		{[]string{"--json=false", "queue", "--config", "F"}, []string{"--json=false"}, []string{"queue", "--config", "F"}, ""},
		{[]string{"--", "queue"}, nil, []string{"--", "queue"}, ""},
		{[]string{"--config"}, nil, nil, "needs a value"},
		{[]string{"--verbose", "queue"}, nil, nil, "unknown flag --verbose"},
	}
	for _, tc := range tests {
		global, rest, err := splitGlobalFlags(tc.args)
		if tc.wantErrSubstr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErrSubstr) {
				t.Errorf("splitGlobalFlags(%q) error %v, want %q", tc.args, err, tc.wantErrSubstr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(global, tc.global) || !reflect.DeepEqual(rest, tc.rest) {
			t.Errorf("splitGlobalFlags(%q) = %q, %q, %v; want %q, %q", tc.args, global, rest, err, tc.global, tc.rest)
		}
	}
}

// TestGlobalFlagPositions runs commands with --config and --json before the command, between
// its words and after it.
func TestGlobalFlagPositions(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "r.toml")
	if err := os.WriteFile(cfg, []byte("hostname = \"mx.a.test\"\ndata_dir = \""+filepath.Join(dir, "data")+"\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runCLI(t, "", "domain", "add", "a.test", "--config", cfg); code != 0 {
		t.Fatalf("domain add: %d %s", code, errs)
	}
	tests := []struct {
		args   []string
		code   int
		stdout string // substring
	}{
		{[]string{"--config", cfg, "queue", "list"}, 0, "ID"},
		{[]string{"--config=" + cfg, "domain", "list"}, 0, "a.test"},
		{[]string{"-config", cfg, "--json", "domain", "list"}, 0, `"a.test"`},
		{[]string{"--json", "domain", "list", "--config", cfg}, 0, `"a.test"`},
		{[]string{"domain", "--config", cfg, "list", "--json"}, 0, `"a.test"`},
		{[]string{"--json", "--config", cfg, "queue", "list"}, 0, "[]"},
		{[]string{"--config", cfg, "config", "check"}, 0, "OK"},
		{[]string{"--json", "domain", "del", "a.test", "--config", cfg}, 2, ""}, // del prints no listing
		{[]string{"--config"}, 2, ""},
		{[]string{"--nonsense", "domain", "list", "--config", cfg}, 2, ""},
		{[]string{"--config", cfg}, 2, ""}, // no command
		{[]string{"--help"}, 0, "usage: repute"},
	}
	for _, tc := range tests {
		code, out, errs := runCLI(t, "", tc.args...)
		if code != tc.code || !strings.Contains(out, tc.stdout) {
			t.Errorf("repute %s: code %d, stdout %q, stderr %q; want code %d and %q",
				strings.Join(tc.args, " "), code, out, errs, tc.code, tc.stdout)
		}
	}
}

// TestDefaultConfigPath checks the search order without --config: $REPUTE_CONFIG, the
// system file if it exists, ./repute-dev/repute.toml if it exists, else an error naming
// all of them.
func TestDefaultConfigPath(t *testing.T) {
	root := t.TempDir()
	system := filepath.Join(root, "etc", "repute.toml")
	saved := systemConfigPath
	systemConfigPath = system
	t.Cleanup(func() { systemConfigPath = saved })
	work := filepath.Join(root, "work")
	if err := os.MkdirAll(filepath.Join(work, devDir, "data"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(work)
	write := func(p string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("hostname = \"mx.a.test\"\ndata_dir = \""+filepath.Join(work, devDir, "data")+"\"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Nothing exists: the admin command fails and names every place it looked.
	t.Setenv("REPUTE_CONFIG", "")
	if got := defaultConfigPath(); got != "" {
		t.Errorf("with no file: defaultConfigPath() = %q, want \"\"", got)
	}
	code, _, errs := runCLI(t, "", "user", "list")
	for _, want := range []string{"--config", "$REPUTE_CONFIG", system, "./" + devConfigPath, "repute dev"} {
		if code != 1 || !strings.Contains(errs, want) {
			t.Errorf("user list without a config: code %d, stderr %q; want 1 and %q", code, errs, want)
		}
	}
	if err := func() error { e := &env{}; _, err := loadConfig(e); return err }(); !errors.Is(err, errNoConfig) {
		t.Errorf("loadConfig with no file: %v, want errNoConfig", err)
	}

	// The dev server's config, when there is no system one.
	write(filepath.Join(work, devConfigPath))
	if got := defaultConfigPath(); got != devConfigPath {
		t.Errorf("with ./%s: defaultConfigPath() = %q", devConfigPath, got)
	}
	if code, out, errs := runCLI(t, "", "config", "check"); code != 0 || !strings.Contains(out, devConfigPath+": OK") {
		t.Errorf("config check beside repute-dev: %d %q %q", code, out, errs)
	}

	// The system config wins over the dev one, $REPUTE_CONFIG over both, --config over all.
	write(system)
	if got := defaultConfigPath(); got != system {
		t.Errorf("with %s: defaultConfigPath() = %q", system, got)
	}
	env := filepath.Join(root, "env.toml")
	t.Setenv("REPUTE_CONFIG", env)
	if got := defaultConfigPath(); got != env {
		t.Errorf("with $REPUTE_CONFIG: defaultConfigPath() = %q, want %q", got, env)
	}
	if code, _, errs := runCLI(t, "", "config", "check"); code != 1 || !strings.Contains(errs, env) {
		t.Errorf("config check with $REPUTE_CONFIG naming a missing file: %d %q", code, errs)
	}
	if code, out, errs := runCLI(t, "", "config", "check", "--config", system); code != 0 || !strings.Contains(out, system+": OK") {
		t.Errorf("config check --config over $REPUTE_CONFIG: %d %q %q", code, out, errs)
	}
}

func TestTermSafe(t *testing.T) {
	for in, want := range map[string]string{
		"550 5.7.1 blocked":            "550 5.7.1 blocked",
		"550 \x1b[2Jcleared\r":         "550 ?[2Jcleared?",
		"tab\tkept, é kept, \u009b no": "tab\tkept, é kept, ? no",
	} {
		if got := termSafe(in); got != want {
			t.Errorf("termSafe(%q) = %q, want %q", in, got, want)
		}
	}
}
