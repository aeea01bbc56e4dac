package obs

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/iotest"
	"testing/synctest"
	"time"
)

// The mail-event log's field names are a contract (docs/CONTRACTS.md §5): every line carries all of
// them, one JSON object per line.
func TestEventLogLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.log")
	l, err := OpenEventLog(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.Emit(Event{Event: Received, MsgID: "m1", From: "a@b.test", Rcpt: "c@d.test", Text: "two\nlines"})
	l.Emit(Event{Event: Queued, MsgID: "m1", Rcpt: "e@f.test", Time: time.Unix(1, 0)})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// The raw JSON, to see the field names themselves.
	sc := bufio.NewScanner(f)
	var lines []map[string]any
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		lines = append(lines, m)
	}
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2", len(lines))
	}
	for _, k := range []string{"time", "event", "msg_id", "from", "rcpt", "provider", "source_ip", "mx", "code",
		"enhanced_code", "text", "category", "delay_s"} {
		if _, ok := lines[0][k]; !ok {
			t.Errorf("field %q missing", k)
		}
	}
	if lines[0]["text"] != "two lines" || lines[1]["time"] != "1970-01-01T00:00:01Z" {
		t.Errorf("lines = %v", lines)
	}
	var nilLog *EventLog
	nilLog.Emit(Event{Event: Received}) // a nil log discards
	if err := nilLog.Close(); err != nil {
		t.Error(err)
	}
	l.Emit(Event{Event: Received}) // after Close: dropped
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestEventKinds(t *testing.T) {
	for kind, want := range map[string]string{
		Received: "received", Queued: "queued", Delivered: "delivered", Deferred: "deferred",
		Bounced: "bounced", Suppressed: "suppressed", Throttled: "throttled", Paused: "paused",
		Resumed: "resumed", Complained: "complained", Unsubscribed: "unsubscribed", Listed: "listed",
		Delisted: "delisted", CheckChanged: "check_changed", Alert: "alert",
	} {
		if kind != want {
			t.Errorf("kind %q, want %q", kind, want)
		}
	}
}

// readAll returns the events in the file at path.
func readAll(t *testing.T, path string) []Event {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var evs []Event
	if err := ReadEvents(f, func(e Event) error { evs = append(evs, e); return nil }); err != nil {
		t.Fatal(err)
	}
	return evs
}

// TestEmitReachesKernel checks that an emitted line is in the file at once, whole, while
// the fsync has not even finished: nothing waits in the process for a flush, and Emit does
// not wait for the disk.
func TestEmitReachesKernel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.log")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	syncing := make(chan struct{}, 1)
	release := make(chan struct{})
	l := newEventLog(f, func() error {
		select {
		case syncing <- struct{}{}:
		default:
		}
		<-release
		return f.Sync()
	}, nil)
	defer l.Close()
	defer close(release)
	for i := range 3 {
		l.Emit(Event{Event: Received, MsgID: fmt.Sprint("m", i)})
		evs := readAll(t, path)
		if len(evs) != i+1 || evs[i].MsgID != fmt.Sprint("m", i) {
			t.Fatalf("after Emit %d the file holds %v", i, evs)
		}
	}
	<-syncing // the syncer was asked to fsync, and Emit did not wait for it
}

// TestGroupCommit checks that one fsync covers every line written before it began, that
// lines written during an fsync get another one, and that nothing is fsynced without new
// lines; Close fsyncs.
func TestGroupCommit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f, err := os.OpenFile(filepath.Join(t.TempDir(), "events.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		syncs := 0
		gate := make(chan struct{})
		l := newEventLog(f, func() error {
			mu.Lock()
			syncs++
			first := syncs == 1
			mu.Unlock()
			if first {
				<-gate // a slow disk
			}
			return f.Sync()
		}, nil)
		count := func() int {
			synctest.Wait() // the syncer has done all it will do
			mu.Lock()
			defer mu.Unlock()
			return syncs
		}
		if n := count(); n != 0 {
			t.Errorf("%d fsyncs before any line", n)
		}
		l.Emit(Event{Event: Received})
		if n := count(); n != 1 {
			t.Fatalf("%d fsyncs after one line, want 1 (in progress)", n)
		}
		for range 100 {
			l.Emit(Event{Event: Queued}) // during the slow fsync
		}
		close(gate)
		if n := count(); n != 2 {
			t.Errorf("%d fsyncs after 100 lines written during the first, want 2", n)
		}
		if n := count(); n != 2 {
			t.Errorf("%d fsyncs with no new line, want still 2", n)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if n := count(); n != 3 {
			t.Errorf("%d fsyncs after Close, want 3", n)
		}
	})
}

// TestEventLogSurvivesKill is the reported case: a process killed with SIGKILL lost the
// events of its last second, still in a userspace buffer. A child process emits events
// and kills itself at once; every event must be in the file, and no line torn.
func TestEventLogSurvivesKill(t *testing.T) {
	const n = 500
	if path := os.Getenv("REPUTE_EVENTS_KILL_CHILD"); path != "" {
		l, err := OpenEventLog(path, nil)
		if err != nil {
			os.Exit(3)
		}
		for i := range n {
			l.Emit(Event{Event: Received, MsgID: fmt.Sprint("m", i), Text: strings.Repeat("x", i)})
		}
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	path := filepath.Join(t.TempDir(), "events.log")
	cmd := exec.Command(os.Args[0], "-test.run=^TestEventLogSurvivesKill$")
	cmd.Env = append(os.Environ(), "REPUTE_EVENTS_KILL_CHILD="+path)
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child: %v, want killed by SIGKILL", err)
	}
	evs := readAll(t, path)
	if len(evs) != n {
		t.Fatalf("%d of %d events survived the kill", len(evs), n)
	}
	for i, e := range evs {
		if e.MsgID != fmt.Sprint("m", i) || len(e.Text) != i {
			t.Fatalf("event %d = %+v", i, e)
		}
	}
}

// TestConcurrentWriters checks that lines of several writers, in this process and in
// others (two EventLogs on one file stand for serve and repute sendmail), never
// interleave, even when they are longer than a page.
func TestConcurrentWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.log")
	const writers, perWriter = 8, 100
	var logs [2]*EventLog
	for i := range logs {
		l, err := OpenEventLog(path, nil)
		if err != nil {
			t.Fatal(err)
		}
		logs[i] = l
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				logs[w%2].Emit(Event{Event: Queued, MsgID: fmt.Sprintf("w%d-%d", w, i), Text: strings.Repeat(string(rune('a'+w)), 5000+i)})
			}
		})
	}
	wg.Wait()
	for _, l := range logs {
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	evs := readAll(t, path)
	if len(evs) != writers*perWriter {
		t.Fatalf("%d events, want %d", len(evs), writers*perWriter)
	}
	next := map[string]int{}
	for _, e := range evs {
		var w, i int
		if _, err := fmt.Sscanf(e.MsgID, "w%d-%d", &w, &i); err != nil || e.Text != strings.Repeat(string(rune('a'+w)), 5000+i) {
			t.Fatalf("mixed-up event %q (%d bytes of text)", e.MsgID, len(e.Text))
		}
		if key := fmt.Sprint(w); next[key] != i {
			t.Fatalf("writer %d: event %d after %d", w, i, next[key]-1)
		} else {
			next[key]++
		}
	}
}

func TestReadEvents(t *testing.T) {
	line := func(msgID string) string {
		return `{"time":"2025-01-01T00:00:00Z","event":"received","msg_id":"` + msgID + `"}`
	}
	long := `{"event":"received","text":"` + strings.Repeat("x", maxEventLine) + `"}`
	tests := []struct {
		name    string
		in      string
		want    []string // msg_ids
		invalid []int    // line numbers reported
	}{
		{name: "empty"},
		{name: "whole lines", in: line("a") + "\n" + line("b") + "\n", want: []string{"a", "b"}},
		{name: "last line without newline", in: line("a") + "\n" + line("b"), want: []string{"a", "b"}},
		{name: "torn last line", in: line("a") + "\n" + line("b") + "\n" + line("c")[:30], want: []string{"a", "b"}},
		{name: "torn last line and blank lines", in: line("a") + "\n" + line("c")[:30] + "\n\n \n", want: []string{"a"}},
		{name: "torn to nul bytes", in: line("a") + "\n\x00\x00\x00\x00", want: []string{"a"}},
		{name: "blank lines and CRLF", in: "\n" + line("a") + "\r\n\n  \n" + line("b") + "\n", want: []string{"a", "b"}},
		{name: "invalid lines in the middle", in: line("a") + "\nnot json\n" + line("b") + "\n{}\n[1]\n\x00\x00\n" + line("c") + "\n",
			want: []string{"a", "b", "c"}, invalid: []int{2, 4, 5, 6}},
		{name: "fragment of a torn write, then later lines", in: line("a") + "\n" + line("b")[:20] + line("c") + "\n" + line("d") + "\n",
			want: []string{"a", "d"}, invalid: []int{2}},
		{name: "overlong line", in: line("a") + "\n" + long + "\n" + line("b") + "\n", want: []string{"a", "b"}, invalid: []int{2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			err := ReadEvents(strings.NewReader(tt.in), func(e Event) error { got = append(got, e.MsgID); return nil })
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("events %q, want %q", got, tt.want)
			}
			var inv *InvalidLinesError
			switch {
			case len(tt.invalid) == 0 && err != nil:
				t.Errorf("unexpected error %v", err)
			case len(tt.invalid) > 0 && !errors.As(err, &inv):
				t.Errorf("error %v, want an *InvalidLinesError", err)
			case len(tt.invalid) > 0:
				var lines []int
				for _, l := range inv.Lines {
					lines = append(lines, l.Line)
				}
				if fmt.Sprint(lines) != fmt.Sprint(tt.invalid) || inv.Count != len(tt.invalid) {
					t.Errorf("invalid lines %v (count %d), want %v", lines, inv.Count, tt.invalid)
				}
			}
		})
	}

	// fn's error stops reading and comes back as it is; a read error comes back wrapped.
	stop := errors.New("enough")
	calls := 0
	err := ReadEvents(strings.NewReader(line("a")+"\n"+line("b")+"\n"+line("c")+"\n"), func(Event) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Errorf("fn error: got %v after %d calls", err, calls)
	}
	broken := errors.New("disk on fire")
	err = ReadEvents(io.MultiReader(strings.NewReader(line("a")+"\n"), iotest.ErrReader(broken)), func(Event) error { return nil })
	if !errors.Is(err, broken) {
		t.Errorf("read error: got %v", err)
	}

	// Many invalid lines: all counted, the first 100 listed.
	var many bytes.Buffer
	for range 150 {
		many.WriteString("junk\n")
	}
	many.WriteString(line("z") + "\n")
	var inv *InvalidLinesError
	err = ReadEvents(&many, func(Event) error { return nil })
	if !errors.As(err, &inv) || inv.Count != 150 || len(inv.Lines) != 100 || !strings.Contains(err.Error(), "150 invalid line(s) skipped; line 1: not a JSON object") {
		t.Errorf("got %v", err)
	}
}
