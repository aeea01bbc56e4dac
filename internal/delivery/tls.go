package delivery

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/mjl-/adns"
	moxdns "github.com/mjl-/mox/dns"
	"github.com/mjl-/mox/smtpclient"
	"github.com/mjl-/mox/tlsrpt"

	"github.com/repute-mail/repute/internal/dns"
)

// tlsPlan is how to do TLS with one MX host.
type tlsPlan struct {
	mode       smtpclient.TLSMode
	verifyPKIX bool            // MTA-STS enforce: the certificate must be valid for the MX name
	dane       []adns.TLSA     // usable TLSA records to verify against; nil: no DANE verification
	daneNames  []moxdns.Domain // names a DANE-TA certificate may carry; the first is the SNI
	tlsaName   string          // where the TLSA records are, for messages
	secureName bool            // the MX name came from DNSSEC or a matching MTA-STS policy
	why        string          // what makes TLS mandatory ("DANE", "MTA-STS policy enforce"), "" if nothing
}

// plan decides TLS for h. DANE (RFC 7672) applies when the MX and address answers and the
// TLSA records are all DNSSEC-authentic; it takes precedence over MTA-STS (RFC 8461 §2).
// An enforced MTA-STS policy requires PKIX-valid TLS. Otherwise TLS is opportunistic and
// unverified.
func (rt *dest) plan(ctx context.Context, h host, hostAuthentic, expandedAuthentic bool, expanded moxdns.Domain) (tlsPlan, *failure) {
	p := tlsPlan{mode: smtpclient.TLSOpportunistic}
	p.secureName = rt.sts != nil && rt.sts.Matches(h.name) || rt.authentic && hostAuthentic
	if rt.authentic && hostAuthentic {
		found, err := rt.dane(ctx, &p, h, expandedAuthentic, expanded)
		if err != nil {
			return p, &failure{hop: hop{mx: h.name.ASCII, tlsrpt: string(tlsrpt.ResultDNSSECInvalid)},
				reply: reply{text: fmt.Sprintf("DANE: TLSA lookup for %s failed: %v", h.name.ASCII, err)}, err: err}
		}
		if found {
			p.mode = smtpclient.TLSRequiredStartTLS
			p.why = "DANE"
			if p.dane != nil {
				return p, nil
			}
			// Only unusable records: TLS is still mandatory, but unauthenticated (RFC 7672 §2.2).
		}
	}
	if rt.enforce() {
		p.mode = smtpclient.TLSRequiredStartTLS
		p.verifyPKIX = true
		p.why = "MTA-STS policy enforce"
	}
	if rt.needTLS && p.mode == smtpclient.TLSOpportunistic {
		// The provider's hosts always offer STARTTLS; one that does not has had it
		// stripped on the way. Unverified, as opportunistic TLS is, but not plain text.
		p.mode = smtpclient.TLSRequiredStartTLS
		p.why = "the provider always offers STARTTLS"
	}
	return p, nil
}

// dane looks up TLSA records for h on the port we connect to, at the CNAME-expanded name
// first when that answer was authentic (RFC 7672 §2.2.2), and fills p. found reports
// whether authentic TLSA records exist (DANE is then mandatory); a failed lookup is an
// error, because it may hide records (RFC 7672 §2.2).
func (rt *dest) dane(ctx context.Context, p *tlsPlan, h host, expandedAuthentic bool, expanded moxdns.Domain) (found bool, err error) {
	base := h.name
	var recs []adns.TLSA
	if expanded != h.name && expandedAuthentic {
		base = expanded
		recs, found, err = rt.c.lookupTLSA(ctx, expanded)
	}
	if err == nil && !found {
		base = h.name
		recs, found, err = rt.c.lookupTLSA(ctx, h.name)
	}
	if err != nil || !found {
		return false, err
	}
	p.tlsaName = tlsaName(rt.c.port(), base)
	p.daneNames = smtpclient.GatherTLSANames(rt.haveMX, rt.authentic, expandedAuthentic, rt.domain, rt.domain, h.name, base)
	p.dane = usableTLSA(recs)
	return true, nil
}

func tlsaName(port int, host moxdns.Domain) string {
	return fmt.Sprintf("_%d._tcp.%s.", port, host.ASCII)
}

// lookupTLSA returns the TLSA records for host, or found=false when there are none or
// they are not DNSSEC-authentic (then DANE does not apply).
func (c *Client) lookupTLSA(ctx context.Context, host moxdns.Domain) (recs []adns.TLSA, found bool, err error) {
	name := tlsaName(c.port(), host)
	recs, result, err := c.resolver.LookupTLSA(ctx, 0, "", name)
	switch {
	case dns.IsNotFound(err):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("%s: %w", name, err)
	case !result.Authentic || len(recs) == 0:
		return nil, false, nil
	}
	return recs, true, nil
}

// usableTLSA keeps the records SMTP DANE can use (RFC 7672 §3.1): DANE-TA(2) and
// DANE-EE(3), certificate or SPKI selector, full or SHA-2 matching with the right length.
// It returns nil when none is usable.
func usableTLSA(recs []adns.TLSA) []adns.TLSA {
	var out []adns.TLSA
	for _, r := range recs {
		if r.Usage != adns.TLSAUsageDANETA && r.Usage != adns.TLSAUsageDANEEE {
			continue
		}
		if r.Selector != adns.TLSASelectorCert && r.Selector != adns.TLSASelectorSPKI {
			continue
		}
		ok := false
		switch r.MatchType {
		case adns.TLSAMatchTypeFull:
			ok = len(r.CertAssoc) > 0
		case adns.TLSAMatchTypeSHA256:
			ok = len(r.CertAssoc) == sha256.Size
		case adns.TLSAMatchTypeSHA512:
			ok = len(r.CertAssoc) == sha512.Size
		}
		if ok {
			out = append(out, r)
		}
	}
	return out
}

// connectIP opens a session to one address of h per plan. When opportunistic STARTTLS
// fails, it reconnects without TLS. nextHost reports a reply from the server (a refusing
// greeting or EHLO), after which its other addresses are not tried.
func (rt *dest) connectIP(ctx context.Context, h host, ip net.IP, p tlsPlan) (*session, *failure, bool) {
	c := rt.c
	var domainResult, hostResult tlsrpt.Result
	var verified adns.TLSA
	opts := smtpclient.Opts{RootCAs: c.RootCAs, RecipientDomainResult: &domainResult, HostResult: &hostResult}
	remote := h.name
	if p.dane != nil {
		opts.DANERecords = p.dane
		opts.DANEVerifiedRecord = &verified
		remote = p.daneNames[0]
		opts.DANEMoreHostnames = p.daneNames[1:]
	}
	s, f := c.openSession(ctx, rt.source, ip, c.port(), h.name.ASCII, p.mode, p.verifyPKIX, remote, opts)
	if s != nil {
		rt.finish(s, h, p, verified.CertAssoc != nil, domainResult, hostResult)
		return s, nil, false
	}
	if !errors.Is(f.err, smtpclient.ErrTLS) {
		return nil, f, f.code != 0
	}
	if p.why != "" {
		f.text = fmt.Sprintf("%s: TLS with %s failed: %s", p.why, h.name.ASCII, describe(f.err))
		if p.dane != nil {
			f.text += " (TLSA records at " + p.tlsaName + ")"
		}
		f.code, f.enhanced, f.permanent = 0, "", false
		f.tlsrpt = rt.tlsrptResult(p, domainResult, hostResult)
		return nil, f, false
	}
	c.log.Info("starttls failed, retrying without tls", slog.String("mx", h.name.ASCII),
		slog.String("ip", ip.String()), slog.Any("err", f.err))
	s, f = c.openSession(ctx, rt.source, ip, c.port(), h.name.ASCII, smtpclient.TLSSkip, false, remote, smtpclient.Opts{})
	if s == nil {
		return nil, f, f.code != 0
	}
	rt.finish(s, h, p, false, domainResult, hostResult)
	return s, nil, false
}

// finish records how the session's TLS was verified and what TLS-RPT should hear.
func (rt *dest) finish(s *session, h host, p tlsPlan, daneVerified bool, domainResult, hostResult tlsrpt.Result) {
	switch {
	case s.hop.tls == "":
	case daneVerified:
		s.hop.verified = "dane"
	case p.verifyPKIX:
		s.hop.verified = "pkix"
	case p.secureName && rt.pkixValid(s, h.name):
		s.hop.verified = "pkix"
	}
	s.hop.tlsrpt = rt.tlsrptResult(p, domainResult, hostResult)
	if rt.sts != nil && !rt.sts.Matches(h.name) {
		// Only possible in testing mode: deliver, but report it (RFC 8461 §5).
		rt.c.log.Warn("mta-sts policy testing: mx not in policy", slog.String("mx", h.name.ASCII),
			slog.String("policy", policyMX(rt.sts)))
		if s.hop.tlsrpt == "" {
			s.hop.tlsrpt = string(tlsrpt.ResultValidationFailure)
		}
	}
}

// tlsrptResult is the first TLS failure recorded for the policy in force: DANE for the
// host, else MTA-STS for the domain, else a failed policy fetch.
func (rt *dest) tlsrptResult(p tlsPlan, domainResult, hostResult tlsrpt.Result) string {
	switch {
	case p.why == "DANE":
		return firstFailure(hostResult)
	case rt.sts != nil:
		return firstFailure(domainResult)
	}
	return rt.stsReport
}

func firstFailure(r tlsrpt.Result) string {
	if len(r.FailureDetails) == 0 {
		return ""
	}
	return string(r.FailureDetails[0].ResultType)
}

// pkixValid checks the session's certificate against the PKIX roots for name.
func (rt *dest) pkixValid(s *session, name moxdns.Domain) bool {
	cs := s.client.TLSConnectionState()
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return false
	}
	return verifyPKIX(*cs, name.ASCII, rt.c.RootCAs) == nil
}

func verifyPKIX(cs tls.ConnectionState, name string, roots *x509.CertPool) error {
	opts := x509.VerifyOptions{DNSName: name, Roots: roots, Intermediates: x509.NewCertPool()}
	for _, cert := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(cert)
	}
	_, err := cs.PeerCertificates[0].Verify(opts)
	return err
}
