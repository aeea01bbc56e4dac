package obs

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzReadEvents feeds arbitrary bytes to ReadEvents. It must never panic or fail for
// anything but invalid lines; every event it delivers has a kind; and it accounts for every
// non-blank line but the last as an event or an invalid line, in order.
func FuzzReadEvents(f *testing.F) {
	f.Add([]byte(`{"time":"2025-01-01T00:00:00Z","event":"received","msg_id":"m1"}` + "\n"))
	f.Add([]byte(`{"event":"queued"}` + "\n" + `{"event":"deliv`))
	f.Add([]byte("junk\n\n{}\n" + `{"event":"bounced","code":550}` + "\r\n\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		events := 0
		err := ReadEvents(bytes.NewReader(data), func(e Event) error {
			if e.Event == "" {
				t.Fatalf("event without a kind: %+v", e)
			}
			events++
			return nil
		})
		invalid := 0
		var inv *InvalidLinesError
		switch {
		case errors.As(err, &inv):
			if inv.Count < len(inv.Lines) || len(inv.Lines) > maxReportedLines || inv.Count == 0 {
				t.Fatalf("inconsistent %#v", inv)
			}
			prev := 0
			for _, l := range inv.Lines {
				if l.Line <= prev || l.Err == nil {
					t.Fatalf("invalid lines out of order or without a cause: %v", inv.Lines)
				}
				prev = l.Line
			}
			invalid = inv.Count
		case err != nil:
			t.Fatalf("error %v for in-memory input", err)
		}
		nonBlank := 0
		for _, line := range bytes.Split(data, []byte("\n")) {
			if len(bytes.TrimSpace(line)) > 0 {
				nonBlank++
			}
		}
		if n := events + invalid; n != nonBlank && n != nonBlank-1 {
			t.Fatalf("%d events and %d invalid lines from %d non-blank lines", events, invalid, nonBlank)
		}
	})
}
