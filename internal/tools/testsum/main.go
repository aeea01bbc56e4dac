// Command testsum runs `go test -json ...` and prints what a plain `go test` run shows
// (a line per package, and the full output of failing tests), followed by the tests
// that were skipped, each with its reason, and the counts. `make test` uses it so that a
// test skipped for a missing tool (swaks, Postfix, root for unshare) is visible at the
// end of a long run instead of being hidden behind an "ok" line.
//
// Usage:
//
//	go run ./internal/tools/testsum go test -json -count=1 ./...
//
// It exits with the status of the command, and with 1 if the command exited 0 although
// a test or a build failed. Lines that are not test2json events pass through unchanged,
// and so does the command's standard error.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: testsum go test -json [FLAGS] [PACKAGES]")
		os.Exit(2)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run starts the command, summarises its output on w and returns the exit status.
func run(argv []string, w, stderr io.Writer) int {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		fmt.Fprintln(stderr, "testsum:", err)
		return 1
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(stderr, "testsum:", err)
		return 1
	}
	// Ctrl-C reaches go test too (same process group); keep reading until it has
	// reported, so that the summary still comes. A signal sent to testsum alone is passed on.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		for s := range sigs {
			_ = cmd.Process.Signal(s)
		}
	}()

	s := newSummary(w, modulePath("go.mod"))
	if err := s.read(out); err != nil {
		fmt.Fprintln(stderr, "testsum: reading test output:", err)
	}
	s.report()
	err = cmd.Wait()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		if code := ee.ExitCode(); code > 0 {
			return code
		}
		return 1 // killed by a signal
	case err != nil:
		fmt.Fprintln(stderr, "testsum:", err)
		return 1
	case s.failedRun:
		return 1
	}
	return 0
}

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// line is one line of output of a package, attributed to a test or ("") to the package.
type line struct{ test, text string }

// result is the outcome of one test or subtest.
type result struct{ pkg, test, state, reason string }

type pkgState struct {
	lines []line
	state map[string]string // test -> "pass", "fail", "skip"; absent: still running
}

// summary turns test2json events back into plain `go test` output and collects the
// skipped and failed tests.
type summary struct {
	w         io.Writer
	module    string
	pkgs      map[string]*pkgState
	order     []string // packages not finished yet, in order of their first event
	passed    int
	failed    []result
	skipped   []result
	failedRun bool // a build or a package failed
}

func newSummary(w io.Writer, module string) *summary {
	return &summary{w: w, module: module, pkgs: map[string]*pkgState{}}
}

// read consumes the command's standard output until EOF.
func (s *summary) read(r io.Reader) error {
	br := bufio.NewReader(r)
	for {
		b, err := br.ReadBytes('\n')
		if len(b) > 0 {
			s.handle(b)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	// Packages that never finished (go test was killed): show everything they printed.
	for len(s.order) > 0 {
		s.finish(s.order[0], "fail")
	}
	return nil
}

// handle processes one line of output.
func (s *summary) handle(b []byte) {
	var e event
	if len(b) == 0 || b[0] != '{' || json.Unmarshal(b, &e) != nil || e.Action == "" {
		s.w.Write(b) // not an event: pass it through
		return
	}
	switch e.Action {
	case "build-output":
		io.WriteString(s.w, e.Output)
		return
	case "build-fail":
		s.failedRun = true
		return
	}
	p := s.pkg(e.Package)
	switch e.Action {
	case "output":
		p.lines = append(p.lines, line{e.Test, e.Output})
	case "pass", "fail", "skip":
		if e.Test == "" {
			s.finish(e.Package, e.Action)
			return
		}
		p.state[e.Test] = e.Action
	}
}

func (s *summary) pkg(name string) *pkgState {
	p := s.pkgs[name]
	if p == nil {
		p = &pkgState{state: map[string]string{}}
		s.pkgs[name] = p
		s.order = append(s.order, name)
	}
	return p
}

// finish prints a finished package the way plain `go test` does: only its final line if
// it passed; otherwise its own output and that of its failing tests, each test (with its
// subtests) in one piece where it began.
func (s *summary) finish(name, state string) {
	p := s.pkg(name)
	delete(s.pkgs, name)
	for i, n := range s.order {
		if n == name {
			s.order = append(s.order[:i], s.order[i+1:]...)
			break
		}
	}
	if state == "fail" {
		s.failedRun = true
	}

	printed := map[string]bool{} // top-level tests already printed
	for _, l := range p.lines {
		if l.test == "" {
			if state != "pass" || strings.HasPrefix(l.text, "ok ") || strings.HasPrefix(l.text, "ok\t") {
				io.WriteString(s.w, l.text)
			}
			continue
		}
		top, _, _ := strings.Cut(l.test, "/")
		if !printed[top] && shows(p, l.test, state) {
			printed[top] = true
			s.printTest(p, top, state)
		}
	}

	tests := make([]string, 0, len(p.state))
	for t := range p.state {
		tests = append(tests, t)
	}
	sort.Strings(tests)
	for _, t := range tests {
		switch p.state[t] {
		case "pass":
			s.passed++
		case "fail":
			s.failed = append(s.failed, result{pkg: name, test: t, state: "fail"})
		case "skip":
			s.skipped = append(s.skipped, result{pkg: name, test: t, state: "skip", reason: skipReason(p.lines, t)})
		}
	}
}

// printTest prints the output of a failed top-level test and of its failed subtests in
// one piece, in the order it was written.
func (s *summary) printTest(p *pkgState, top, state string) {
	for _, l := range p.lines {
		t, _, _ := strings.Cut(l.test, "/")
		if t == top && shows(p, l.test, state) && !strings.HasPrefix(l.text, "=== PAUSE") {
			io.WriteString(s.w, l.text)
		}
	}
}

// shows reports whether the output of test belongs in the report: it failed, or it never
// finished in a package that failed (a panic or a timeout).
func shows(p *pkgState, test, pkgState string) bool {
	st, done := p.state[test]
	return st == "fail" || (!done && pkgState == "fail")
}

// skipReason is the last thing a skipped test logged: the message of t.Skip.
func skipReason(lines []line, test string) string {
	reason := ""
	for _, l := range lines {
		text := strings.TrimSpace(l.text)
		if l.test != test || text == "" || strings.HasPrefix(text, "=== ") || strings.HasPrefix(text, "--- ") {
			continue
		}
		reason = text
	}
	if reason == "" {
		return "(no reason given)"
	}
	return reason
}

// report prints the skipped and failed tests and the counts.
func (s *summary) report() {
	if len(s.skipped) > 0 {
		fmt.Fprintf(s.w, "\nSkipped tests (%d):\n", len(s.skipped))
		for _, r := range s.skipped {
			fmt.Fprintf(s.w, "  %s %s: %s\n", s.short(r.pkg), r.test, r.reason)
		}
	}
	if len(s.failed) > 0 {
		fmt.Fprintf(s.w, "\nFailed tests (%d):\n", len(s.failed))
		for _, r := range s.failed {
			fmt.Fprintf(s.w, "  %s %s\n", s.short(r.pkg), r.test)
		}
	}
	fmt.Fprintf(s.w, "\nTests: %d passed, %d skipped, %d failed.\n", s.passed, len(s.skipped), len(s.failed))
}

// short writes a package of this module as a relative path (./test/e2e).
func (s *summary) short(pkg string) string {
	switch {
	case s.module == "":
		return pkg
	case pkg == s.module:
		return "."
	case strings.HasPrefix(pkg, s.module+"/"):
		return "./" + strings.TrimPrefix(pkg, s.module+"/")
	}
	return pkg
}

// modulePath reads the module path from go.mod ("" if there is none).
func modulePath(gomod string) string {
	b, err := os.ReadFile(gomod)
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(l), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}
