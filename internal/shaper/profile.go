package shaper

import (
	"math"
	"time"
)

// Profile is how much mail one source IP may send to one provider: the limits the engine
// never exceeds, and where its adaptive rate starts. The adaptive part (the rate allowed
// now, the connections allowed now) moves below these ceilings by itself; an admin
// overrides a ceiling with [shaping.provider.ID].
type Profile struct {
	// MaxConnections is the most connections open at once from one IP.
	MaxConnections int
	// MessagesPerConnection is the most messages one connection carries.
	MessagesPerConnection int
	// MessagesPerMinute is the ceiling of the adaptive rate; 0: no ceiling (and no pacing
	// until the destination pushes back).
	MessagesPerMinute float64
	// StartPerMinute is the rate a lane starts at before it has learnt anything; it then
	// doubles every round of feedback until the first sign of pushback ("slow start").
	// 0: MessagesPerMinute (no pacing below the ceiling at first).
	StartPerMinute float64
	// MessagesPerHour and MessagesPerDay are hard limits on top (0: none).
	MessagesPerHour int
	MessagesPerDay  int
	// ConnectionsPerMinute bounds new connections (0: none).
	ConnectionsPerMinute float64
	// RequireTLS refuses to deliver to the provider without TLS (its hosts all offer it).
	RequireTLS bool
	// WarmupStart is the daily cap on a new IP's first day; 0: no warm-up for this provider.
	WarmupStart int
	// FallbackRelay carries the provider's mail while it is paused on every source IP
	// ("host:port"); "": outbound.fallback_relay.
	FallbackRelay string
}

// DefaultProvider is the profile of destinations that are no known provider (an "mx:"
// group) and of providers without a profile of their own.
const DefaultProvider = "default"

// DefaultProfiles are the built-in profiles, by provider id. The providers publish no
// numbers; these are conservative ceilings from common shaping practice, high enough
// that the adaptive rate, not the ceiling, finds each provider's real limit:
//
//   - Google accepts many connections and large volumes from a reputable IP and says so
//     with 421 4.7.28 when it does not; it starts at 300 a minute and may climb to 3,000.
//   - Microsoft (Outlook.com and Microsoft 365) is the least tolerant of parallel
//     connections (421 4.3.2 above a handful) and throttles per IP with 4.7.650/S775:
//     few connections, a rate starting at 150 and at most 1,200 a minute.
//   - Yahoo (and AOL) defers with TSS04 as soon as a new or busy IP goes beyond what it
//     trusts, and advises few messages per connection: 20 per connection, 5
//     connections, from 60 up to 600 a minute.
//   - Other large providers get moderate limits; destinations that are no known provider
//     (a company's own server) are not paced until they push back.
//
// The warm-up starts (the cap on a new IP's first day) are in the tens for Microsoft and
// Yahoo, which judge new IPs hardest, and in the low hundreds for Google; see Warmup.
func DefaultProfiles() map[string]Profile {
	big := Profile{MaxConnections: 5, MessagesPerConnection: 50, MessagesPerMinute: 600, StartPerMinute: 120,
		RequireTLS: false, WarmupStart: 100}
	p := map[string]Profile{
		"google":        {MaxConnections: 10, MessagesPerConnection: 50, MessagesPerMinute: 3000, StartPerMinute: 300, RequireTLS: true, WarmupStart: 200},
		"microsoft":     {MaxConnections: 5, MessagesPerConnection: 30, MessagesPerMinute: 1200, StartPerMinute: 150, RequireTLS: true, WarmupStart: 50},
		"yahoo":         {MaxConnections: 5, MessagesPerConnection: 20, MessagesPerMinute: 600, StartPerMinute: 60, RequireTLS: true, WarmupStart: 40},
		"apple":         big,
		"gmx":           big,
		"t-online":      {MaxConnections: 3, MessagesPerConnection: 20, MessagesPerMinute: 300, StartPerMinute: 60, WarmupStart: 100},
		"comcast":       big,
		"orange":        {MaxConnections: 3, MessagesPerConnection: 20, MessagesPerMinute: 300, StartPerMinute: 60, WarmupStart: 100},
		"mailru":        big,
		"yandex":        big,
		DefaultProvider: {MaxConnections: 10, MessagesPerConnection: 50},
	}
	return p
}

// Warmup is the schedule of daily caps for a new source IP: on its first day a provider
// with a WarmupStart of N takes N messages, and the cap doubles every DoublingDays, until
// Days after the first use, when the IP is warm and the cap goes. With the defaults (30
// days, doubling every 3) Microsoft's 50 become 50·2⁹ ≈ 25,600 a day by day 27: a
// ramp from "a new IP nobody knows" to a volume few self-hosters exceed, in the 2 to 4
// weeks the providers' sender guidelines speak of.
//
// A day of trouble (more than 5 % of that day's attempts throttled, or a complaint) does
// not count: the schedule holds back instead of advancing.
type Warmup struct {
	Enabled      bool
	Days         int     // 0: 30
	DoublingDays float64 // 0: 3
	Day          time.Duration
}

func (w Warmup) days() int {
	if w.Days <= 0 {
		return 30
	}
	return w.Days
}

func (w Warmup) doubling() float64 {
	if w.DoublingDays <= 0 {
		return 3
	}
	return w.DoublingDays
}

// Cap is the daily cap on warm-up day day for a provider whose first-day cap is start; 0
// means no cap.
func (w Warmup) Cap(start, day int) int {
	if !w.Enabled || start <= 0 || day >= w.days() {
		return 0
	}
	day = max(day, 0)
	c := float64(start) * math.Pow(2, float64(day)/w.doubling())
	if c >= math.MaxInt32 {
		return 0
	}
	return int(c)
}
