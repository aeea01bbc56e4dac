package dns

import (
	"sync"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/mjl-/adns"
)

// cache keeps answers of the configured resolver for their TTL. Every inbound message
// asks the same few questions (the client's PTR and address, the sender's SPF and DMARC
// records, DKIM keys), mostly about the same busy senders; answering those from memory
// saves a round trip each and keeps a burst of mail from becoming a burst of queries.
//
// Only definite answers are kept: NOERROR responses for the smallest TTL among their
// records, and NXDOMAIN or no-data responses for the negative TTL of RFC 2308 (the SOA in
// the authority section; without one nothing is cached). Failures are never cached, so a
// SERVFAIL or timeout is asked again at once. TTLs are capped at maxCacheTTL, and the table
// holds at most maxCacheEntries answers.
type cache struct {
	mu      sync.Mutex
	entries map[cacheKey]cacheEntry
}

type cacheKey struct {
	name  string // lower case, absolute
	qtype uint16
}

type cacheEntry struct {
	resp    *mdns.Msg
	result  adns.Result
	expires time.Time
}

const (
	maxCacheTTL     = time.Hour
	maxCacheEntries = 20000
)

func (c *cache) get(name string, qtype uint16, now time.Time) (*mdns.Msg, adns.Result, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[cacheKey{name, qtype}]
	if !ok {
		return nil, adns.Result{}, false
	}
	if !now.Before(e.expires) {
		delete(c.entries, cacheKey{name, qtype})
		return nil, adns.Result{}, false
	}
	return e.resp, e.result, true
}

// put stores resp (a NOERROR or NXDOMAIN response) if it may be cached. The caller must
// not change resp afterwards; readers get the same *Msg.
func (c *cache) put(name string, qtype uint16, resp *mdns.Msg, result adns.Result, now time.Time) {
	ttl, ok := cacheTTL(resp)
	if !ok || ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[cacheKey]cacheEntry{}
	}
	if len(c.entries) >= maxCacheEntries {
		c.evict(now)
	}
	c.entries[cacheKey{name, qtype}] = cacheEntry{resp: resp, result: result, expires: now.Add(ttl)}
}

// evict drops expired entries, and if that is not enough, an arbitrary tenth of the rest
// (Go's map order is random, so this is random eviction).
func (c *cache) evict(now time.Time) {
	for k, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, k)
		}
	}
	n := len(c.entries) / 10
	for k := range c.entries {
		if len(c.entries) < maxCacheEntries || n <= 0 {
			break
		}
		delete(c.entries, k)
		n--
	}
}

// cacheTTL is how long resp may be kept: the smallest TTL of its answer records, or for
// an answer without records the negative TTL (the smaller of the SOA's TTL and its MINIMUM,
// RFC 2308 §5).
func cacheTTL(resp *mdns.Msg) (time.Duration, bool) {
	if resp.Rcode != mdns.RcodeSuccess && resp.Rcode != mdns.RcodeNameError || resp.Truncated {
		return 0, false
	}
	var ttl uint32
	found := false
	if resp.Rcode == mdns.RcodeSuccess {
		for _, rr := range resp.Answer {
			if t := rr.Header().Ttl; !found || t < ttl {
				ttl, found = t, true
			}
		}
	}
	if !found {
		for _, rr := range resp.Ns {
			if soa, ok := rr.(*mdns.SOA); ok {
				ttl, found = min(soa.Hdr.Ttl, soa.Minttl), true
				break
			}
		}
	}
	if !found {
		return 0, false
	}
	return min(time.Duration(ttl)*time.Second, maxCacheTTL), true
}
