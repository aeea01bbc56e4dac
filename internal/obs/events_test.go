package obs

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The mail-event log's field names are a contract (DESIGN §5.5): every line carries all of
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
}
