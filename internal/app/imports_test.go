package app

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/repute-mail/repute/"

// TestImportsFlowOneWay keeps the layering of docs/ARCHITECTURE.md true: leaves import
// nothing of Repute's, and the inbound path never reaches into IMAP or outbound code.
func TestImportsFlowOneWay(t *testing.T) {
	allowed := map[string][]string{
		"internal/smtp":        {},
		"internal/password":    {},
		"internal/obs":         {},
		"internal/config":      {},
		"internal/authguard":   {},
		"internal/tlsconf":     {"internal/config"},
		"internal/store":       {"internal/smtp", "internal/password"},
		"internal/session":     {"internal/smtp", "internal/store", "internal/obs", "internal/policy", "internal/submit"},
		"internal/submit":      {"internal/smtp", "internal/store", "internal/obs", "internal/auth", "internal/unsubscribe"},
		"internal/policy":      {"internal/dns", "internal/auth"},
		"internal/mailstore":   {"internal/store", "internal/smtp", "internal/password"},
		"internal/imapsrv":     {"internal/mailstore", "internal/store"},
		"internal/dns":         {},
		"internal/dsn":         {},
		"internal/auth":        {"internal/dns"},
		"internal/delivery":    {"internal/dns"},
		"internal/scheduler":   {"internal/store", "internal/delivery", "internal/dsn", "internal/smtp", "internal/obs", "internal/classify"},
		"internal/classify":    {},
		"internal/verp":        {},
		"internal/unsubscribe": {},
		"internal/web":         {"internal/obs", "internal/store", "internal/unsubscribe"},
		"internal/bounce":      {"internal/classify", "internal/dsn", "internal/obs", "internal/smtp", "internal/store", "internal/verp", "internal/unsubscribe"},
	}
	root := filepath.Join("..", "..")
	for pkg, ok := range allowed {
		imports := importsOf(t, filepath.Join(root, pkg))
		for _, imp := range imports {
			rel, ours := strings.CutPrefix(imp, module)
			if !ours {
				continue
			}
			permitted := false
			for _, a := range ok {
				permitted = permitted || rel == a
			}
			if !permitted {
				t.Errorf("%s imports %s; allowed: %v", pkg, rel, ok)
			}
		}
	}
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
