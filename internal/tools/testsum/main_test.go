package main

import (
	"bytes"
	"strings"
	"testing"
)

// stream is `go test -json` output of a module with a failing package (a passing, a
// skipped, a failing test with a failing and a skipped subtest), a package without tests,
// a package that does not build and a passing package with output of its TestMain.
const stream = `{"ImportPath":"m/c [m/c.test]","Action":"build-output","Output":"# m/c [m/c.test]\n"}
{"ImportPath":"m/c [m/c.test]","Action":"build-output","Output":"c/c_test.go:5:28: undefined: x\n"}
{"ImportPath":"m/c [m/c.test]","Action":"build-fail"}
{"Action":"start","Package":"m/a"}
{"Action":"start","Package":"m/b"}
{"Action":"output","Package":"m/b","Output":"?   \tm/b\t[no test files]\n"}
{"Action":"skip","Package":"m/b","Elapsed":0}
{"Action":"output","Package":"m/c","Output":"FAIL\tm/c [build failed]\n"}
{"Action":"fail","Package":"m/c","Elapsed":0}
{"Action":"run","Package":"m/a","Test":"TestPass"}
{"Action":"output","Package":"m/a","Test":"TestPass","Output":"=== RUN   TestPass\n"}
{"Action":"output","Package":"m/a","Test":"TestPass","Output":"    a_test.go:5: noise\n"}
{"Action":"output","Package":"m/a","Test":"TestPass","Output":"--- PASS: TestPass (0.00s)\n"}
{"Action":"pass","Package":"m/a","Test":"TestPass","Elapsed":0}
{"Action":"run","Package":"m/a","Test":"TestSkip"}
{"Action":"output","Package":"m/a","Test":"TestSkip","Output":"=== RUN   TestSkip\n"}
{"Action":"output","Package":"m/a","Test":"TestSkip","Output":"    a_test.go:6: swaks not found on PATH (Debian package swaks)\n"}
{"Action":"output","Package":"m/a","Test":"TestSkip","Output":"--- SKIP: TestSkip (0.00s)\n"}
{"Action":"skip","Package":"m/a","Test":"TestSkip","Elapsed":0}
{"Action":"run","Package":"m/a","Test":"TestFail"}
{"Action":"output","Package":"m/a","Test":"TestFail","Output":"=== RUN   TestFail\n"}
{"Action":"output","Package":"m/a","Test":"TestFail","Output":"    a_test.go:8: first\n"}
{"Action":"run","Package":"m/a","Test":"TestFail/sub"}
{"Action":"output","Package":"m/a","Test":"TestFail/sub","Output":"=== RUN   TestFail/sub\n"}
{"Action":"output","Package":"m/a","Test":"TestFail/sub","Output":"    a_test.go:9: sub broke\n"}
{"Action":"output","Package":"m/a","Test":"TestFail/sub","Output":"--- FAIL: TestFail/sub (0.00s)\n"}
{"Action":"fail","Package":"m/a","Test":"TestFail/sub","Elapsed":0}
{"Action":"run","Package":"m/a","Test":"TestFail/subskip"}
{"Action":"output","Package":"m/a","Test":"TestFail/subskip","Output":"=== RUN   TestFail/subskip\n"}
{"Action":"output","Package":"m/a","Test":"TestFail/subskip","Output":"--- SKIP: TestFail/subskip (0.00s)\n"}
{"Action":"output","Package":"m/a","Test":"TestFail/subskip","Output":"    a_test.go:10: no root\n"}
{"Action":"skip","Package":"m/a","Test":"TestFail/subskip","Elapsed":0}
{"Action":"output","Package":"m/a","Test":"TestFail","Output":"    a_test.go:11: top broke\n"}
{"Action":"output","Package":"m/a","Test":"TestFail","Output":"--- FAIL: TestFail (0.00s)\n"}
{"Action":"fail","Package":"m/a","Test":"TestFail","Elapsed":0}
{"Action":"output","Package":"m/a","Output":"FAIL\n"}
{"Action":"output","Package":"m/a","Output":"FAIL\tm/a\t0.003s\n"}
{"Action":"fail","Package":"m/a","Elapsed":0.006}
{"Action":"start","Package":"m/d"}
{"Action":"output","Package":"m/d","Output":"e2e: built /tmp/x/repute in 1s\n"}
{"Action":"run","Package":"m/d","Test":"TestOK"}
{"Action":"output","Package":"m/d","Test":"TestOK","Output":"=== RUN   TestOK\n"}
{"Action":"output","Package":"m/d","Test":"TestOK","Output":"--- PASS: TestOK (0.00s)\n"}
{"Action":"pass","Package":"m/d","Test":"TestOK","Elapsed":0}
{"Action":"output","Package":"m/d","Output":"PASS\n"}
{"Action":"output","Package":"m/d","Output":"ok  \tm/d\t0.01s\n"}
{"Action":"pass","Package":"m/d","Elapsed":0.01}
not json: passed through
`

func TestSummary(t *testing.T) {
	var out bytes.Buffer
	s := newSummary(&out, "m")
	if err := s.read(strings.NewReader(stream)); err != nil {
		t.Fatal(err)
	}
	s.report()
	got := out.String()
	for _, want := range []string{
		"c/c_test.go:5:28: undefined: x\n",
		"?   \tm/b\t[no test files]\n",
		"FAIL\tm/c [build failed]\n",
		// the failing test whole, its subtest inside it
		"=== RUN   TestFail\n    a_test.go:8: first\n=== RUN   TestFail/sub\n    a_test.go:9: sub broke\n" +
			"--- FAIL: TestFail/sub (0.00s)\n    a_test.go:11: top broke\n--- FAIL: TestFail (0.00s)\nFAIL\nFAIL\tm/a\t0.003s\n",
		"ok  \tm/d\t0.01s\n",
		"not json: passed through\n",
		"Skipped tests (2):\n  ./a TestFail/subskip: a_test.go:10: no root\n" +
			"  ./a TestSkip: a_test.go:6: swaks not found on PATH (Debian package swaks)\n",
		"Failed tests (2):\n  ./a TestFail\n  ./a TestFail/sub\n",
		"Tests: 2 passed, 2 skipped, 2 failed.\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	// Passing tests, skip lines and the PASS line of a passing package stay hidden, as
	// with plain go test; so does the output of a passing package's TestMain.
	for _, hidden := range []string{"noise", "TestPass", "TestOK", "PASS\n", "e2e: built", "--- SKIP"} {
		if strings.Contains(got, hidden) {
			t.Errorf("output shows %q:\n%s", hidden, got)
		}
	}
	if !s.failedRun {
		t.Error("failedRun not set")
	}
}

// TestUnfinished shows the output of a test that never finished in a package that failed
// (a panic, a timeout), and of a package whose end never came (go test killed).
func TestUnfinished(t *testing.T) {
	const in = `{"Action":"run","Package":"m/a","Test":"TestHang"}
{"Action":"output","Package":"m/a","Test":"TestHang","Output":"=== RUN   TestHang\n"}
{"Action":"output","Package":"m/a","Test":"TestHang","Output":"    a_test.go:3: waiting\n"}
{"Action":"output","Package":"m/a","Output":"panic: test timed out after 1s\n"}
{"Action":"output","Package":"m/a","Output":"FAIL\tm/a\t1.0s\n"}
{"Action":"fail","Package":"m/a","Elapsed":1}
{"Action":"run","Package":"m/b","Test":"TestKilled"}
{"Action":"output","Package":"m/b","Test":"TestKilled","Output":"    b_test.go:3: working\n"}
`
	var out bytes.Buffer
	s := newSummary(&out, "m")
	if err := s.read(strings.NewReader(in)); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"a_test.go:3: waiting", "panic: test timed out", "FAIL\tm/a", "b_test.go:3: working"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if !s.failedRun {
		t.Error("failedRun not set")
	}
}

func TestExitStatus(t *testing.T) {
	tests := []struct {
		script string
		code   int
	}{
		{`echo '{"Action":"pass","Package":"m/a"}'`, 0},
		{`echo '{"Action":"fail","Package":"m/a"}'; exit 1`, 1},
		{`echo '{"Action":"fail","Package":"m/a"}'`, 1}, // a failure, whatever the status
		{`exit 2`, 2},
	}
	for _, tc := range tests {
		var out, errb bytes.Buffer
		if code := run([]string{"sh", "-c", tc.script}, &out, &errb); code != tc.code {
			t.Errorf("%s: exit %d, want %d\n%s%s", tc.script, code, tc.code, out.String(), errb.String())
		}
	}
}

func TestModulePath(t *testing.T) {
	if got := modulePath("../../../go.mod"); got != "github.com/repute-mail/repute" {
		t.Errorf("modulePath = %q", got)
	}
	if got := modulePath("no-such-go.mod"); got != "" {
		t.Errorf("modulePath of a missing file = %q", got)
	}
}
