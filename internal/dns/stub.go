package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/mjl-/adns"
	moxdns "github.com/mjl-/mox/dns"
)

const (
	// Like resolv.conf's defaults: 5 s per try, 2 tries.
	defaultQueryTimeout = 5 * time.Second
	defaultAttempts     = 2
	// EDNS(0) buffer size recommended by DNS Flag Day 2020: avoids IP fragmentation.
	ednsBufSize = 1232
	// CNAME hops followed before giving up (Go's resolver allows 10 too).
	maxCNAMEHops = 10
)

// serverResolver is a DNSSEC-aware, non-validating stub resolver that sends every query
// to one recursive resolver. Like adns it sets the AD bit in queries (RFC 6840 §5.7)
// and trusts the AD bit of answers only from a loopback server (RFC 6698 appendix A.3),
// but it makes that decision for the configured server instead of for resolv.conf's.
type serverResolver struct {
	server   string // "IP:PORT", IPv6 in brackets
	trustAD  bool   // server is on loopback: its AD bit cannot have been forged on the way
	timeout  time.Duration
	attempts int
	log      *slog.Logger
	cache    cache
}

var _ Resolver = (*serverResolver)(nil)

func newServerResolver(addr netip.AddrPort, log *slog.Logger) *serverResolver {
	return &serverResolver{
		server:   addr.String(),
		trustAD:  addr.Addr().Unmap().IsLoopback(),
		timeout:  defaultQueryTimeout,
		attempts: defaultAttempts,
		log:      log,
	}
}

// exchange sends one question, over UDP and again over TCP when the answer is truncated,
// retrying on network errors and timeouts.
func (r *serverResolver) exchange(ctx context.Context, name string, qtype uint16) (*mdns.Msg, error) {
	m := new(mdns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = true
	m.AuthenticatedData = r.trustAD
	m.SetEdns0(ednsBufSize, false)

	var lastErr error
	for range r.attempts {
		resp, err := r.exchangeOnce(ctx, m, "udp")
		if err == nil && resp.Truncated {
			resp, err = r.exchangeOnce(ctx, m, "tcp")
		}
		if err == nil {
			return resp, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

func (r *serverResolver) exchangeOnce(ctx context.Context, m *mdns.Msg, network string) (*mdns.Msg, error) {
	qctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	c := &mdns.Client{Net: network, Timeout: r.timeout, UDPSize: ednsBufSize}
	resp, _, err := c.ExchangeContext(qctx, m, r.server)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// query asks one question and maps the response code: NOERROR is a response, NXDOMAIN a
// not-found error, anything else (SERVFAIL, REFUSED, ...) a temporary error.
func (r *serverResolver) query(ctx context.Context, name string, qtype uint16) (*mdns.Msg, adns.Result, error) {
	resp, result, cached := r.cache.get(name, qtype, time.Now())
	if !cached {
		var err error
		resp, err = r.exchange(ctx, name, qtype)
		if err != nil {
			return nil, adns.Result{}, r.netError(ctx, name, err)
		}
		// An AD bit on SERVFAIL or REFUSED means nothing (adns applies the same rule).
		useAD := resp.Rcode == mdns.RcodeSuccess || resp.Rcode == mdns.RcodeNameError
		result = adns.Result{Authentic: r.trustAD && useAD && resp.AuthenticatedData}
		r.cache.put(name, qtype, resp, result, time.Now())
	}
	switch resp.Rcode {
	case mdns.RcodeSuccess:
		return resp, result, nil
	case mdns.RcodeNameError:
		return resp, result, r.notFound(name)
	default:
		return nil, result, &adns.DNSError{
			Err:         "server answered " + mdns.RcodeToString[resp.Rcode],
			Name:        name,
			Server:      r.server,
			IsTemporary: true,
		}
	}
}

func (r *serverResolver) notFound(name string) error {
	return &adns.DNSError{Err: "no such host", Name: name, Server: r.server, IsNotFound: true}
}

func (r *serverResolver) netError(ctx context.Context, name string, err error) error {
	e := &adns.DNSError{Err: err.Error(), Name: name, Server: r.server, IsTemporary: true}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		e.IsTimeout = true
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		e.UnwrapErr = ctxErr
	}
	return e
}

// lookup returns the records of qtype for name, following CNAMEs: first within an answer
// (a recursive resolver sends the whole chain), then with a new query when the chain
// leaves the answer. The result is authentic only if every answer on the way was.
func (r *serverResolver) lookup(ctx context.Context, name string, qtype uint16) (rrs []mdns.RR, result adns.Result, err error) {
	start := time.Now()
	defer func() {
		r.log.Debug("dns lookup",
			slog.String("type", mdns.TypeToString[qtype]),
			slog.String("name", name),
			slog.Int("records", len(rrs)),
			slog.Bool("authentic", result.Authentic),
			slog.Any("err", err),
			slog.Duration("duration", time.Since(start)))
	}()
	if !strings.HasSuffix(name, ".") {
		return nil, adns.Result{}, moxdns.ErrRelativeDNSName
	}
	authentic := true
	cur := strings.ToLower(name)
	for range maxCNAMEHops {
		resp, res, err := r.query(ctx, cur, qtype)
		authentic = authentic && res.Authentic
		if err != nil {
			return nil, adns.Result{Authentic: authentic}, err
		}
		rrs, next := answersFor(resp.Answer, cur, qtype)
		if len(rrs) > 0 {
			return rrs, adns.Result{Authentic: authentic}, nil
		}
		if next == "" {
			return nil, adns.Result{Authentic: authentic}, r.notFound(name)
		}
		cur = next
	}
	return nil, adns.Result{}, &adns.DNSError{Err: "too many CNAME records", Name: name, Server: r.server}
}

// answersFor picks the records of qtype owned by name from an answer section, following
// the CNAME chain inside it. If the chain ends at a name without records in this answer,
// next is that name (to query again); next is "" when name has no records and no CNAME.
func answersFor(answer []mdns.RR, name string, qtype uint16) (rrs []mdns.RR, next string) {
	cur := name
	for range maxCNAMEHops {
		var cname string
		for _, rr := range answer {
			h := rr.Header()
			if !strings.EqualFold(h.Name, cur) {
				continue
			}
			if h.Rrtype == qtype {
				rrs = append(rrs, rr)
			} else if c, ok := rr.(*mdns.CNAME); ok {
				cname = strings.ToLower(c.Target)
			}
		}
		if len(rrs) > 0 || cname == "" {
			break
		}
		cur = cname
	}
	if len(rrs) == 0 && cur != name {
		return nil, cur
	}
	return rrs, ""
}

// lookupCNAME follows the CNAME chain from host and returns its end, or a not-found error
// when host itself has no CNAME (the mox Resolver contract).
func (r *serverResolver) lookupCNAME(ctx context.Context, host string) (string, adns.Result, error) {
	authentic := true
	cur := host
	for range maxCNAMEHops {
		rrs, res, err := r.lookup(ctx, cur, mdns.TypeCNAME)
		authentic = authentic && res.Authentic
		switch {
		case IsNotFound(err) && cur == host:
			return "", adns.Result{Authentic: authentic}, err
		case IsNotFound(err):
			return cur, adns.Result{Authentic: authentic}, nil
		case err != nil:
			return "", adns.Result{Authentic: authentic}, err
		}
		cur = rrs[0].(*mdns.CNAME).Target
	}
	return "", adns.Result{}, fmt.Errorf("cname chain from %s: %w", host,
		&adns.DNSError{Err: "too many CNAME records", Name: host, Server: r.server})
}
