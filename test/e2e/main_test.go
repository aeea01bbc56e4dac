package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// reputeBin is the binary under test, built once per `go test` run by TestMain.
var reputeBin string

// buildErr is set when building the binary failed; every test then fails with it.
var buildErr error

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if testing.Short() {
		return m.Run() // every test skips through needBinary
	}
	tmp, err := os.MkdirTemp("", "repute-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(tmp)

	if bin := os.Getenv("REPUTE_E2E_BIN"); bin != "" {
		reputeBin = bin
	} else {
		reputeBin = filepath.Join(tmp, "repute")
		buildErr = buildRepute(reputeBin)
	}

	stop, err := startFakeDNS()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: fake DNS:", err)
		return 1
	}
	defer stop()
	return m.Run()
}

// buildRepute compiles ./cmd/repute of this module into out.
func buildRepute(out string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	start := time.Now()
	cmd := exec.Command(goTool(), "build", "-o", out, "./cmd/repute")
	cmd.Dir = root
	b, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go build ./cmd/repute: %v\n%s", err, b)
	}
	fmt.Fprintf(os.Stderr, "e2e: built %s in %v\n", out, time.Since(start).Round(time.Millisecond))
	return nil
}

// moduleRoot walks up from the package directory to the directory holding go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("go.mod not found above the test directory")
		}
		dir = parent
	}
}

// goTool is the go command that runs this test, falling back to the one on PATH.
func goTool() string {
	if root := os.Getenv("GOROOT"); root != "" {
		if p := filepath.Join(root, "bin", "go"); fileExists(p) {
			return p
		}
	}
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// needBinary skips in -short mode and fails the test if the binary did not build.
func needBinary(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end tests are skipped with -short")
	}
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

// needTool skips the test when an external program the test drives is not installed.
func needTool(t *testing.T, path, pkg string) string {
	t.Helper()
	p := path
	if filepath.Base(path) == path {
		var err error
		if p, err = exec.LookPath(path); err != nil {
			t.Skipf("%s not found on PATH (Debian package %s; .ci/run installs it)", path, pkg)
		}
	} else if !fileExists(path) {
		t.Skipf("%s not installed (Debian package %s; .ci/run installs it)", path, pkg)
	}
	return p
}
