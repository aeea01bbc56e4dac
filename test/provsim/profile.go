package provsim

import (
	"fmt"
	"math"
	"time"
)

// Provider is the id of a simulated provider, as in internal/provider's table.
type Provider string

// The simulated providers.
const (
	Google    Provider = "google"
	Microsoft Provider = "microsoft"
	Yahoo     Provider = "yahoo"
)

// Providers lists the simulated providers.
func Providers() []Provider { return []Provider{Google, Microsoft, Yahoo} }

func (p Provider) valid() bool { return p == Google || p == Microsoft || p == Yahoo }

// Defaults of the escalation to a block.
const (
	DefaultBlockAfter  = 30
	DefaultBlockWindow = time.Minute
	DefaultBlockFor    = time.Hour
)

// Profile is how a simulated provider treats each sender IP. Rates and durations are in
// simulated time (see Config.TimeScale). A zero limit means no limit.
type Profile struct {
	Provider Provider

	// MaxConnections is the number of connections one sender IP may have open at once;
	// a further one is refused with the provider's connection reply.
	MaxConnections int
	// RatePerMinute is the number of messages one sender IP may send per minute; a
	// message over it gets the provider's rate reply. It is a token bucket: Burst
	// messages may come at once, then one every minute/RatePerMinute.
	RatePerMinute float64
	// Burst is the size of the bucket; 0 means ten seconds' worth of the rate (at least 1).
	Burst int
	// MaxMessagesPerConnection, when positive, is the number of transactions one
	// connection may start; the next MAIL gets a 421 and the connection is closed.
	MaxMessagesPerConnection int

	// BlockAfter is the number of deferrals within BlockWindow that, when exceeded,
	// block the sender IP for BlockFor: every transaction gets the provider's block
	// reply. 0 means DefaultBlockAfter; a negative value never blocks. Deferrals for
	// MaxMessagesPerConnection do not count: a sender that opens a new connection has
	// done nothing wrong.
	BlockAfter  int
	BlockWindow time.Duration // 0 means DefaultBlockWindow
	BlockFor    time.Duration // 0 means DefaultBlockFor
}

// DefaultProfile is a profile for p with moderate limits. The providers publish no
// numbers, so these are the simulator's choice, not theirs; tests and benchmarks should
// set the limits they mean to test.
func DefaultProfile(p Provider) Profile {
	switch p {
	case Google:
		return Profile{Provider: p, MaxConnections: 20, RatePerMinute: 600}
	case Microsoft:
		return Profile{Provider: p, MaxConnections: 10, RatePerMinute: 300}
	case Yahoo:
		return Profile{Provider: p, MaxConnections: 5, RatePerMinute: 120}
	}
	return Profile{Provider: p}
}

// Check reports a profile the simulator cannot run.
func (p Profile) Check() error {
	switch {
	case !p.Provider.valid():
		return fmt.Errorf("provsim: unknown provider %q (want google, microsoft or yahoo)", p.Provider)
	case p.MaxConnections < 0, p.Burst < 0, p.MaxMessagesPerConnection < 0:
		return fmt.Errorf("provsim: negative limit in profile %+v", p)
	case p.RatePerMinute < 0 || math.IsNaN(p.RatePerMinute) || math.IsInf(p.RatePerMinute, 0):
		return fmt.Errorf("provsim: rate %v is not a number of messages per minute", p.RatePerMinute)
	case p.BlockWindow < 0, p.BlockFor < 0:
		return fmt.Errorf("provsim: negative block duration in profile %+v", p)
	}
	return nil
}

// withDefaults fills the zero values that mean a default.
func (p Profile) withDefaults() Profile {
	if p.BlockAfter == 0 {
		p.BlockAfter = DefaultBlockAfter
	}
	if p.BlockWindow == 0 {
		p.BlockWindow = DefaultBlockWindow
	}
	if p.BlockFor == 0 {
		p.BlockFor = DefaultBlockFor
	}
	if p.Burst == 0 && p.RatePerMinute > 0 {
		p.Burst = max(1, int(math.Round(p.RatePerMinute/6)))
	}
	return p
}

// BurstSize is the bucket size the server uses: Burst, or its default.
func (p Profile) BurstSize() int { return p.withDefaults().Burst }

// interval is the time between two messages at the profile's rate, rounded to the
// nanosecond; the server's token bucket uses the same figure.
func (p Profile) interval() time.Duration {
	if p.RatePerMinute <= 0 {
		return 0
	}
	return max(1, time.Duration(math.Round(float64(time.Minute)/p.RatePerMinute)))
}

// IdealTime is the simulated time a perfect sender needs to deliver messages through
// senderIPs sending IPs (at least 1) under this profile: each IP sends its share, the
// first Burst at once and the rest one every minute/RatePerMinute. It ignores network
// time, which the simulator does not add. A profile without a rate limit needs no time,
// and neither do messages that fit in the bursts: a test that compares an elapsed time
// with a multiple of the ideal should send well beyond the burst.
func (p Profile) IdealTime(messages, senderIPs int) time.Duration {
	p = p.withDefaults()
	if p.RatePerMinute <= 0 || messages <= 0 {
		return 0
	}
	senderIPs = max(1, senderIPs)
	share := (messages + senderIPs - 1) / senderIPs
	if share <= p.Burst {
		return 0
	}
	return time.Duration(share-p.Burst) * p.interval()
}

// Load is a number of messages a test sends to one provider.
type Load struct {
	Profile   Profile
	Messages  int
	SenderIPs int // sending IPs sharing the messages; 0 means 1
}

// IdealTime is the clock time a perfect sender needs for all loads when it sends to the
// providers in parallel with simulated time running timeScale times faster than the
// clock (0 means 1): the longest of the loads' ideal times, divided by the scale. A test
// asserts, for example, that the engine took at most 1.3 times this.
func IdealTime(timeScale float64, loads ...Load) time.Duration {
	if timeScale <= 0 {
		timeScale = 1
	}
	var longest time.Duration
	for _, l := range loads {
		longest = max(longest, l.Profile.IdealTime(l.Messages, l.SenderIPs))
	}
	return time.Duration(math.Round(float64(longest) / timeScale))
}
