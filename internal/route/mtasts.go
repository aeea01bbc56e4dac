package route

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	moxdns "github.com/mjl-/mox/dns"
	"github.com/mjl-/mox/mtasts"
	"github.com/mjl-/mox/tlsrpt"

	"github.com/repute-mail/repute/internal/dns"
)

// maxPolicySize is the largest policy accepted (RFC 8461 §3.3 suggests 64 KB).
const maxPolicySize = 64 * 1024

// PolicyCache keeps MTA-STS policies between deliveries (RFC 8461 §5.1). A Get error is
// logged and treated as a miss.
type PolicyCache interface {
	Get(ctx context.Context, domain string) (p CachedPolicy, ok bool, err error)
	Put(ctx context.Context, domain string, p CachedPolicy) error
}

// CachedPolicy is one domain's policy as fetched. Policy is the text as served, so a
// store can keep it without knowing its structure.
type CachedPolicy struct {
	RecordID string    // id= of the _mta-sts TXT record the policy was fetched under
	Policy   string    // the policy file
	Expires  time.Time // fetch time + max_age
}

// MemoryPolicyCache is a PolicyCache in memory; its zero value is ready to use.
type MemoryPolicyCache struct {
	mu sync.Mutex
	m  map[string]CachedPolicy
}

func (mc *MemoryPolicyCache) Get(_ context.Context, domain string) (CachedPolicy, bool, error) {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	p, ok := mc.m[domain]
	return p, ok, nil
}

func (mc *MemoryPolicyCache) Put(_ context.Context, domain string, p CachedPolicy) error {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	if mc.m == nil {
		mc.m = map[string]CachedPolicy{}
	}
	mc.m[domain] = p
	return nil
}

// STS finds the MTA-STS policy (RFC 8461) of destination domains, with a cache of the
// policies fetched (kept in the store by the server) and a memory of recent failed
// fetches. Set the fields before the first Policy; it is safe for concurrent use.
type STS struct {
	DNS        dns.Resolver
	Cache      PolicyCache    // nil: an in-memory cache owned by this STS
	HTTPClient *http.Client   // nil: resolves through DNS, verifies with RootCAs, no redirects
	RootCAs    *x509.CertPool // PKIX roots for policy hosts; nil: the system's
	// Dial opens the policy fetches' TCP connections; nil: a net.Dialer.
	Dial   func(ctx context.Context, network, address string) (net.Conn, error)
	Logger *slog.Logger
	Now    func() time.Time

	once   sync.Once
	cache  PolicyCache
	http   *http.Client
	log    *slog.Logger
	failed fetchFailures // policy fetches that failed recently
}

func (c *STS) setup() {
	c.once.Do(func() {
		c.log = c.Logger
		if c.log == nil {
			c.log = slog.New(slog.DiscardHandler)
		}
		c.cache = c.Cache
		if c.cache == nil {
			c.cache = &MemoryPolicyCache{}
		}
		c.http = c.HTTPClient
		if c.http == nil {
			c.http = c.policyHTTPClient()
		}
	})
}

func (c *STS) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

// Policy returns the MTA-STS policy in force for d (nil for none or mode "none") and,
// when a published policy could not be fetched, the TLS-RPT result type saying so.
//
// RFC 8461 §5.1: the _mta-sts TXT record is checked whenever the route is resolved (at
// most the route cache's TTL apart); a cached policy with the same id is used until
// max_age runs out; a new id means fetching again; and an unexpired cached policy stays
// in force when the record disappears, the lookup fails or the new policy cannot be
// fetched.
func (c *STS) Policy(ctx context.Context, d moxdns.Domain) (*mtasts.Policy, string) {
	c.setup()
	now := c.now()
	cached, cachedPolicy := c.cachedPolicy(ctx, d, now)
	record, _, err := mtasts.LookupRecord(ctx, c.log, c.DNS, d)
	if err != nil {
		if !errors.Is(err, mtasts.ErrNoRecord) {
			c.log.Info("mta-sts record lookup", slog.String("domain", d.ASCII), slog.Any("err", err))
		}
		return inForce(cachedPolicy), ""
	}
	if cachedPolicy != nil && cached.RecordID == record.ID {
		return inForce(cachedPolicy), ""
	}
	if result, failed := c.failed.get(d.ASCII, record.ID, now); failed {
		return inForce(cachedPolicy), result // failed a moment ago: don't wait for it again
	}
	text, policy, err := c.fetchPolicy(ctx, d)
	if err != nil {
		c.log.Warn("mta-sts policy fetch", slog.String("domain", d.ASCII), slog.Any("err", err))
		result := string(tlsrpt.ResultSTSPolicyFetch)
		if errors.Is(err, mtasts.ErrPolicySyntax) {
			result = string(tlsrpt.ResultSTSPolicyInvalid)
		}
		if cachedPolicy != nil {
			result = ""
		}
		c.failed.put(d.ASCII, record.ID, result, now)
		return inForce(cachedPolicy), result
	}
	entry := CachedPolicy{
		RecordID: record.ID,
		Policy:   text,
		Expires:  now.Add(time.Duration(policy.MaxAgeSeconds) * time.Second),
	}
	if err := c.cache.Put(ctx, d.ASCII, entry); err != nil {
		c.log.Warn("mta-sts policy cache put", slog.String("domain", d.ASCII), slog.Any("err", err))
	}
	return inForce(policy), ""
}

// failedFetchTTL is how long a failed policy fetch is remembered. A domain whose policy
// host is down or broken would otherwise cost an HTTPS timeout on every delivery attempt
// to it; five minutes is short enough to notice a repair at the next retry.
const failedFetchTTL = 5 * time.Minute

// maxFailedFetches bounds the table; past it, it starts afresh.
const maxFailedFetches = 10000

// fetchFailures remembers recent failed fetches per domain and record id (a new id means
// a new policy to try at once).
type fetchFailures struct {
	mu sync.Mutex
	m  map[string]fetchFailure
}

type fetchFailure struct {
	recordID, result string
	until            time.Time
}

func (f *fetchFailures) get(domain, recordID string, now time.Time) (string, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e, ok := f.m[domain]
	if !ok || e.recordID != recordID || !now.Before(e.until) {
		return "", false
	}
	return e.result, true
}

func (f *fetchFailures) put(domain, recordID, result string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil || len(f.m) >= maxFailedFetches {
		f.m = map[string]fetchFailure{}
	}
	f.m[domain] = fetchFailure{recordID: recordID, result: result, until: now.Add(failedFetchTTL)}
}

// cachedPolicy returns the cache entry for d and its parsed policy, nil if absent,
// expired or unparsable.
func (c *STS) cachedPolicy(ctx context.Context, d moxdns.Domain, now time.Time) (CachedPolicy, *mtasts.Policy) {
	cached, ok, err := c.cache.Get(ctx, d.ASCII)
	if err != nil {
		c.log.Warn("mta-sts policy cache get", slog.String("domain", d.ASCII), slog.Any("err", err))
		return CachedPolicy{}, nil
	}
	if !ok || !now.Before(cached.Expires) {
		return CachedPolicy{}, nil
	}
	p, err := mtasts.ParsePolicy(cached.Policy)
	if err != nil {
		return CachedPolicy{}, nil
	}
	return cached, p
}

func inForce(p *mtasts.Policy) *mtasts.Policy {
	if p == nil || p.Mode == mtasts.ModeNone {
		return nil
	}
	return p
}

// fetchPolicy gets https://mta-sts.DOMAIN/.well-known/mta-sts.txt (RFC 8461 §3.3) with
// the STS's HTTP client, not mtasts.FetchPolicy, which uses a package-level client.
func (c *STS) fetchPolicy(ctx context.Context, d moxdns.Domain) (string, *mtasts.Policy, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	url := "https://mta-sts." + d.ASCII + "/.well-known/mta-sts.txt"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %v", mtasts.ErrPolicyFetch, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return "", nil, fmt.Errorf("%w: %w", mtasts.ErrPolicyFetch, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", nil, fmt.Errorf("%w: %s: HTTP status %s", mtasts.ErrPolicyFetch, url, resp.Status)
	}
	buf, err := io.ReadAll(io.LimitReader(resp.Body, maxPolicySize+1))
	if err != nil {
		return "", nil, fmt.Errorf("%w: reading %s: %v", mtasts.ErrPolicyFetch, url, err)
	}
	if len(buf) > maxPolicySize {
		return "", nil, fmt.Errorf("%w: %s larger than %d bytes", mtasts.ErrPolicySyntax, url, maxPolicySize)
	}
	p, err := mtasts.ParsePolicy(string(buf))
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", url, err)
	}
	return string(buf), p, nil
}

var errRedirect = errors.New("redirects are not allowed for MTA-STS policies (RFC 8461 §3.3)")

// policyHTTPClient is the default client for policy fetches: host names resolved through
// the STS's resolver, certificates verified against RootCAs, no redirects.
func (c *STS) policyHTTPClient() *http.Client {
	return &http.Client{
		Timeout:       time.Minute,
		CheckRedirect: func(*http.Request, []*http.Request) error { return errRedirect },
		Transport: &http.Transport{
			DialContext:         c.dialHost,
			TLSClientConfig:     &tls.Config{RootCAs: c.RootCAs, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout: 30 * time.Second,
			DisableKeepAlives:   true,
		},
	}
}

// dialHost dials "host:port", resolving host with the STS's resolver.
func (c *STS) dialHost(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	var ips []net.IP
	if ip := net.ParseIP(host); ip != nil {
		ips = []net.IP{ip}
	} else if ips, _, err = c.DNS.LookupIP(ctx, "ip", host+"."); err != nil {
		return nil, fmt.Errorf("resolving %s: %w", host, err)
	}
	var lastErr error
	for _, ip := range ips {
		target := net.JoinHostPort(ip.String(), port)
		var conn net.Conn
		if c.Dial != nil {
			conn, err = c.Dial(ctx, network, target)
		} else {
			d := net.Dialer{Timeout: 30 * time.Second}
			conn, err = d.DialContext(ctx, network, target)
		}
		if err == nil {
			return conn, nil
		}
		lastErr = err
	}
	return nil, lastErr
}
