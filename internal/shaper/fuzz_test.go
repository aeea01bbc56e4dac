package shaper

import (
	"encoding/json"
	"net/netip"
	"testing"
	"time"
)

// FuzzImport: the engine's saved state comes back from the store at start-up; whatever
// the document holds (a damaged or hand-edited database), restoring it and using the
// engine must not panic, and no lane may end up with an unusable rate.
func FuzzImport(f *testing.F) {
	e := &Engine{Warmup: Warmup{Enabled: true}}
	p, _ := e.Acquire(microsoft, t0)
	e.Observe(p, block(), t0)
	p.Release()
	seed, _ := json.Marshal(e.Export(t0))
	f.Add(seed)
	f.Add([]byte(`{"lanes":[{"source_ip":"","group":"yahoo","provider":"yahoo","rate":-5,"state":"probing","day":-3,"sent_today":-1}]}`))
	f.Add([]byte(`{"lanes":[{"source_ip":"","group":"","rate":1e308}],"first_use":{"":"0001-01-01T00:00:00Z"}}`))
	f.Fuzz(func(t *testing.T, doc []byte) {
		var snap Snapshot
		if json.Unmarshal(doc, &snap) != nil {
			return
		}
		e := &Engine{Warmup: Warmup{Enabled: true}, SourceIPs: []netip.Addr{}}
		e.Import(snap)
		now := t0.Add(time.Hour)
		for _, g := range []string{"google", "microsoft", "yahoo", "mx:x"} {
			rt := google
			rt.Group, rt.Provider = g, g
			if p, _ := e.Acquire(rt, now); p != nil {
				if p.MaxMessages < 1 {
					t.Fatalf("permit for %d messages", p.MaxMessages)
				}
				e.Observe(p, throttle(), now)
				p.Release()
			}
		}
		e.Status(now)
		e.Export(now)
	})
}
