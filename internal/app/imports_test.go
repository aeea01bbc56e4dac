package app

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/repute-mail/repute/"

// layering is the import table of docs/ARCHITECTURE.md: every package of Repute and the
// packages of Repute it may import. A package missing here fails the test, so a new one
// is placed in the layering on purpose, not by accident.
var layering = map[string][]string{
	"internal/smtp":          {},
	"internal/password":      {},
	"internal/obs":           {},
	"internal/config":        {},
	"internal/authguard":     {},
	"internal/dns":           {},
	"internal/control":       {},
	"internal/dns/dnstest":   {},
	"internal/dsn":           {},
	"internal/alert":         {}, // admin alerts of pauses: mail and webhook
	"internal/classify":      {"internal/provider"},
	"internal/provider":      {},
	"internal/verp":          {},
	"internal/unsubscribe":   {},
	"internal/testcert":      {},
	"internal/tools/testsum": {},
	"internal/tlsconf":       {"internal/config"},
	"internal/store":         {"internal/smtp", "internal/password"},
	"internal/auth":          {"internal/dns"},
	"internal/policy":        {"internal/dns", "internal/auth"},
	"internal/session":       {"internal/smtp", "internal/store", "internal/obs", "internal/policy", "internal/submit", "internal/authguard"},
	"internal/submit":        {"internal/smtp", "internal/store", "internal/obs", "internal/auth", "internal/unsubscribe"},
	"internal/mailstore":     {"internal/store", "internal/smtp", "internal/password"},
	"internal/imapsrv":       {"internal/mailstore", "internal/store"},
	"internal/route":         {"internal/dns", "internal/provider"},
	"internal/shaper":        {"internal/route", "internal/classify"},
	"internal/delivery":      {"internal/dns", "internal/route"},
	"internal/outcome":       {"internal/classify", "internal/obs", "internal/store"},
	"internal/scheduler": {"internal/store", "internal/delivery", "internal/dsn", "internal/smtp", "internal/obs",
		"internal/classify", "internal/route", "internal/shaper", "internal/outcome"},
	"internal/doctor": {"internal/dns", "internal/auth", "internal/config", "internal/store", "internal/tlsconf"}, // records and live checks of the set-up
	"internal/web":    {"internal/obs", "internal/store", "internal/unsubscribe", "internal/outcome", "internal/doctor", "internal/smtp"},
	"internal/bounce": {"internal/classify", "internal/dsn", "internal/obs", "internal/smtp", "internal/store", "internal/verp", "internal/unsubscribe", "internal/outcome"},
	"internal/app":    nil, // the composition root imports everything
	"cmd/repute":      nil, // flags and dispatch
	"test/e2e":        nil,
	"test/provsim":    {},  // the provider simulator: a leaf, so tests and benchmarks can use it
	"bench/queuefill": nil, // fills a queue for the benchmarks through the store
	"bench/provsimd":  nil, // runs test/provsim and a private DNS for bench/pushback.sh
}

// TestImportsFlowOneWay keeps the layering of docs/ARCHITECTURE.md true: leaves import
// nothing of Repute's, the inbound path never reaches into IMAP or outbound code, and
// every package of the module is in the table.
func TestImportsFlowOneWay(t *testing.T) {
	root := filepath.Join("..", "..")
	for _, pkg := range packages(t, root) {
		ok, known := layering[pkg]
		if !known {
			t.Errorf("package %s is not in the layering table of imports_test.go (and docs/ARCHITECTURE.md): place it", pkg)
			continue
		}
		if ok == nil {
			continue
		}
		for _, imp := range importsOf(t, filepath.Join(root, pkg)) {
			rel, ours := strings.CutPrefix(imp, module)
			if ours && !slices.Contains(ok, rel) {
				t.Errorf("%s imports %s; allowed: %v", pkg, rel, ok)
			}
		}
	}
}

// TestLayeringRules states the rules the table must keep, so that widening the table
// cannot quietly break them.
func TestLayeringRules(t *testing.T) {
	never := []struct{ pkg, forbidden, why string }{
		{"internal/delivery", "internal/scheduler", "delivery reports attempts; it never decides what happens next"},
		{"internal/delivery", "internal/shaper", "delivery sends from the source it is given; the scheduler asks the shaper"},
		{"internal/session", "internal/delivery", "the session hands mail to the queue, never to the network"},
		{"internal/session", "internal/imapsrv", "inbound SMTP does not reach into IMAP"},
		{"internal/web", "internal/scheduler", "web pages only read; changes go through outcome or the store"},
		{"internal/web", "internal/delivery", "web pages only read"},
		{"internal/shaper", "internal/delivery", "the shaper grants connections, it never sends"},
		{"internal/route", "internal/delivery", "routes are resolved before delivery"},
	}
	for _, n := range never {
		if reaches(n.pkg, n.forbidden, map[string]bool{}) {
			t.Errorf("%s reaches %s: %s", n.pkg, n.forbidden, n.why)
		}
	}
}

// reaches reports whether pkg imports target, directly or through other packages of the
// table.
func reaches(pkg, target string, seen map[string]bool) bool {
	if seen[pkg] {
		return false
	}
	seen[pkg] = true
	for _, imp := range layering[pkg] {
		if imp == target || reaches(imp, target, seen) {
			return true
		}
	}
	return false
}

// packages lists the module's package directories (those with non-test Go files),
// relative to root, with slashes.
func packages(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "repute-dev") {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			rel, _ := filepath.Rel(root, filepath.Dir(path))
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// importsOf lists the imports of the non-test Go files in dir.
func importsOf(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	fset := token.NewFileSet()
	for _, e := range entries {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, name), nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			out = append(out, p)
		}
	}
	return out
}
