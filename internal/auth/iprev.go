package auth

// The "iprev" check of RFC 8601 §3, on mox's iprev package: does the client address
// have a PTR name that resolves back to it?

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/mjl-/adns"
	moxiprev "github.com/mjl-/mox/iprev"
	"github.com/mjl-/mox/mlog"

	"github.com/repute-mail/repute/internal/dns"
)

// iprevTimeout bounds a whole iprev check: one PTR lookup and up to maxPTRNames
// address lookups.
const iprevTimeout = 20 * time.Second

// maxPTRNames is how many PTR names are forward-resolved. mox's iprev tries every name
// the PTR lookup returns, and an address owner can publish hundreds, each costing A
// and AAAA queries that we make on their behalf. RFC 8601 sets no limit; 10 is the one
// RFC 7208 §4.6.4 sets for the same work in SPF's ptr mechanism.
const maxPTRNames = 10

// mox's iprev (like a few other mox packages) logs every lookup at debug level through a
// package-level logger that cannot be replaced and that writes to stderr under mlog's
// default configuration (everything at debug): one line per SMTP connection, outside
// Repute's own logging. mlog.SetConfig is global: this raises every mox package to info,
// which leaves Repute's own loggers (passed to mox explicitly) untouched.
func init() {
	mlog.SetConfig(map[string]slog.Level{"": mlog.LevelInfo})
}

// IPRevResult is the reverse-DNS check of a client address (RFC 8601 §3, "iprev").
type IPRevResult struct {
	Result string // "pass", "fail", "temperror", "permerror"
	Name   string // verified host name, without the trailing dot; "" unless pass
	Err    error  // set for temperror and permerror
}

// CheckIPRev looks up the PTR names of ip and passes when one of them has an address
// record for ip (RFC 8601 §3). It fails when names exist but none leads back, gives
// permerror when there is no PTR record (NXDOMAIN or an empty answer: nothing to check,
// and retrying will not change that), and temperror when a lookup failed so that the
// answer could have been pass. Only the first 10 PTR names are tried.
func CheckIPRev(ctx context.Context, r dns.Resolver, ip netip.Addr) IPRevResult {
	if !ip.IsValid() {
		return IPRevResult{Result: "permerror", Err: errors.New("iprev: no client address")}
	}
	ip = ip.Unmap()
	ctx, cancel := context.WithTimeout(ctx, iprevTimeout)
	defer cancel()
	status, name, _, _, err := moxiprev.Lookup(ctx, ptrLimitResolver{r}, net.IP(ip.AsSlice()))
	res := IPRevResult{Result: string(status)}
	switch status {
	case moxiprev.StatusPass:
		res.Name = strings.TrimSuffix(name, ".")
	case moxiprev.StatusFail:
	case moxiprev.StatusTemperror, moxiprev.StatusPermerror:
		res.Err = fmt.Errorf("iprev %s: %w", ip, authResultErr(err, string(status)))
	default:
		res.Result = "permerror"
		res.Err = fmt.Errorf("iprev %s: unexpected status %q: %w", ip, status, authResultErr(err, string(status)))
	}
	return res
}

// AuthResults formats the method part of an Authentication-Results header field (RFC
// 8601 §2.7.3, §3), e.g. "iprev=pass policy.iprev=192.0.2.1 (mail.example.org)". An
// IPv6 address contains ":" and so is written as a quoted-string.
func (r IPRevResult) AuthResults(ip netip.Addr) string {
	s := "iprev=" + r.Result
	if ip.IsValid() {
		s += " policy.iprev=" + authResultsValue(ip.Unmap().String())
	}
	if r.Name != "" {
		s += " " + arComment(r.Name)
	}
	return s
}

// ptrLimitResolver hands mox's iprev at most maxPTRNames PTR names.
type ptrLimitResolver struct {
	dns.Resolver
}

func (p ptrLimitResolver) LookupAddr(ctx context.Context, addr string) ([]string, adns.Result, error) {
	names, result, err := p.Resolver.LookupAddr(ctx, addr)
	if len(names) > maxPTRNames {
		names = names[:maxPTRNames]
	}
	return names, result, err
}
