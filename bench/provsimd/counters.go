package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/repute-mail/repute/test/provsim"
)

// counters are provsim.Counters with the names the report uses.
type counters struct {
	Connections            int64 `json:"connections"`
	Transactions           int64 `json:"transactions"`
	Accepted               int64 `json:"accepted"`
	Recipients             int64 `json:"recipients"`
	Deferrals              int64 `json:"deferrals"`
	DeferredRate           int64 `json:"deferred_rate"`
	DeferredConnections    int64 `json:"deferred_connections"`
	DeferredPerConnection  int64 `json:"deferred_per_connection"`
	BlocksTriggered        int64 `json:"blocks_triggered"`
	BlockReplies           int64 `json:"block_replies"`
	TransactionsAfterBlock int64 `json:"transactions_after_block"`
	ConnectionsAfterBlock  int64 `json:"connections_after_block"`
}

func fromSim(c provsim.Counters) counters {
	return counters{
		Connections: c.Connections, Transactions: c.Transactions, Accepted: c.Accepted, Recipients: c.Recipients,
		Deferrals: c.Deferrals(), DeferredRate: c.DeferredRate, DeferredConnections: c.DeferredConnections,
		DeferredPerConnection: c.DeferredPerConnection, BlocksTriggered: c.BlocksTriggered, BlockReplies: c.BlockReplies,
		TransactionsAfterBlock: c.TransactionsAfterBlock, ConnectionsAfterBlock: c.ConnectionsAfterBlock,
	}
}

func (c *counters) add(o counters) {
	c.Connections += o.Connections
	c.Transactions += o.Transactions
	c.Accepted += o.Accepted
	c.Recipients += o.Recipients
	c.Deferrals += o.Deferrals
	c.DeferredRate += o.DeferredRate
	c.DeferredConnections += o.DeferredConnections
	c.DeferredPerConnection += o.DeferredPerConnection
	c.BlocksTriggered += o.BlocksTriggered
	c.BlockReplies += o.BlockReplies
	c.TransactionsAfterBlock += o.TransactionsAfterBlock
	c.ConnectionsAfterBlock += o.ConnectionsAfterBlock
}

// profileJSON is a provider's profile as the report shows it (durations simulated).
type profileJSON struct {
	MaxConnections           int     `json:"max_connections"`
	RatePerMinute            float64 `json:"rate_per_minute"`
	Burst                    int     `json:"burst"`
	MaxMessagesPerConnection int     `json:"max_messages_per_connection"`
	BlockAfter               int     `json:"block_after"`
	BlockWindow              string  `json:"block_window"`
	BlockFor                 string  `json:"block_for"`
}

func profileOf(p provsim.Profile) profileJSON {
	return profileJSON{MaxConnections: p.MaxConnections, RatePerMinute: p.RatePerMinute, Burst: p.Burst,
		MaxMessagesPerConnection: p.MaxMessagesPerConnection, BlockAfter: p.BlockAfter,
		BlockWindow: p.BlockWindow.String(), BlockFor: p.BlockFor.String()}
}

// providerReport is one simulated provider's part of the report.
type providerReport struct {
	Provider  provsim.Provider    `json:"provider"`
	Addr      string              `json:"addr"`
	Domains   []string            `json:"domains"`
	Profile   profileJSON         `json:"profile"`
	Total     counters            `json:"total"`
	SenderIPs map[string]counters `json:"sender_ips"`
	// BlockedUntil is, for each sender IP blocked now, the clock time its block ends.
	BlockedUntil map[string]time.Time `json:"blocked_until,omitempty"`
}

// report is the counters file.
type report struct {
	WrittenAt time.Time        `json:"written_at"`
	TimeScale float64          `json:"time_scale"`
	Total     counters         `json:"total"`
	Providers []providerReport `json:"providers"`
}

// snapshot reads the servers' counters.
func snapshot(servers []*provsim.Server, timeScale float64, now time.Time) report {
	r := report{WrittenAt: now, TimeScale: timeScale}
	for _, s := range servers {
		p := providerReport{Provider: s.Provider(), Addr: s.Addr(), Profile: profileOf(s.Profile()),
			Total: fromSim(s.Total()), SenderIPs: map[string]counters{}}
		for _, d := range mailDomains {
			if d.Provider == s.Provider() {
				p.Domains = append(p.Domains, d.Domain)
			}
		}
		for _, ip := range s.SenderIPs() {
			p.SenderIPs[ip] = fromSim(s.Stats(ip))
			if until, blocked := s.Blocked(ip); blocked {
				if p.BlockedUntil == nil {
					p.BlockedUntil = map[string]time.Time{}
				}
				p.BlockedUntil[ip] = until
			}
		}
		r.Total.add(p.Total)
		r.Providers = append(r.Providers, p)
	}
	return r
}

// writeReport writes r to path as JSON, through a temporary file renamed into place,
// so that a reader never sees half a file.
func writeReport(path string, r report) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("counters: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".provsimd-*.json")
	if err != nil {
		return fmt.Errorf("counters: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("counters %s: %w", tmp.Name(), err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return fmt.Errorf("counters %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("counters %s: %w", tmp.Name(), err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("counters: %w", err)
	}
	return nil
}
