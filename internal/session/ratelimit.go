package session

import (
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// RateLimits bound how fast one client address may open connections and send messages,
// across all SMTP listeners (Postfix's anvil: smtpd_client_connection_rate_limit and
// smtpd_client_message_rate_limit). A spammer or a runaway script on one address then
// cannot fill the queue or the disk, while everyone else is served as usual.
//
// Each address (IPv6 per /64) has a token bucket per kind that refills at PerMinute/60
// per second and holds PerMinute tokens, so a burst of a minute's worth is allowed.
// Addresses in Exempt (by default loopback) are never limited, and neither are
// authenticated submission users' messages: their sending is the owner's business.
type RateLimits struct {
	ConnectionsPerMinute int // 0 = unlimited
	MessagesPerMinute    int // 0 = unlimited
	Exempt               []netip.Prefix

	mu      sync.Mutex
	buckets map[rateKey]*rate.Limiter
	swept   time.Time
}

type rateKey struct {
	client netip.Prefix
	kind   byte // 'c' connection, 'm' message
}

// maxRateEntries bounds the table; beyond it, full (idle) buckets are dropped at once.
const maxRateEntries = 100000

// allowConnection reports whether a from a may open another connection now.
func (r *RateLimits) allowConnection(a netip.Addr, now time.Time) bool {
	if r == nil {
		return true
	}
	return r.allow(a, 'c', r.ConnectionsPerMinute, now)
}

// allowMessage reports whether a may start another message now.
func (r *RateLimits) allowMessage(a netip.Addr, now time.Time) bool {
	if r == nil {
		return true
	}
	return r.allow(a, 'm', r.MessagesPerMinute, now)
}

func (r *RateLimits) allow(a netip.Addr, kind byte, perMinute int, now time.Time) bool {
	if perMinute <= 0 {
		return true
	}
	for _, p := range r.Exempt {
		if p.Contains(a) {
			return true
		}
	}
	k := rateKey{clientKey(a), kind}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.buckets == nil {
		r.buckets = map[rateKey]*rate.Limiter{}
	}
	r.sweep(now)
	l := r.buckets[k]
	if l == nil {
		l = rate.NewLimiter(rate.Limit(float64(perMinute)/60), perMinute)
		r.buckets[k] = l
	}
	return l.AllowN(now, 1)
}

// sweep forgets buckets that have refilled completely (the client has been quiet long
// enough that a fresh bucket is the same), once a minute or when the table is large.
func (r *RateLimits) sweep(now time.Time) {
	if now.Sub(r.swept) < time.Minute && len(r.buckets) < maxRateEntries {
		return
	}
	r.swept = now
	for k, l := range r.buckets {
		if l.TokensAt(now) >= float64(l.Burst()) {
			delete(r.buckets, k)
		}
	}
}
