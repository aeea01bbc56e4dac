package auth

// DMARC evaluation (RFC 7489), on mox's dmarc package for the record lookup and parsing
// and its publicsuffix package for organizational domains. Alignment is done here,
// because the SPF and DKIM results are Repute's own types and because mox's Verify has
// a different notion of pct= (it treats quarantine and reject alike and never steps the
// policy down) and of temporary errors (any DKIM temperror, aligned or not, turns a
// fail into temperror).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net/mail"
	"slices"
	"strings"
	"time"

	moxdmarc "github.com/mjl-/mox/dmarc"
	moxdns "github.com/mjl-/mox/dns"
	"github.com/mjl-/mox/publicsuffix"

	"github.com/repute-mail/repute/internal/dns"
)

// dmarcTimeout bounds a DMARC evaluation: at most two TXT lookups (the From domain and
// its organizational domain), each of which the resolver already retries.
const dmarcTimeout = 20 * time.Second

// ErrSeveralAuthors marks a permerror for a message with several From fields or several
// addresses in its From field: DMARC cannot pick the domain whose policy applies, and
// such messages are a known way around it (a mail reader shows one address, DMARC would
// have to check another). The inbound policy rejects them (RFC 7489 §6.6.1).
var ErrSeveralAuthors = errors.New("several authors")

// DMARCResult is the DMARC verdict for a message (RFC 7489).
type DMARCResult struct {
	Result       string // "pass", "fail", "none" (no record / no usable From domain), "temperror", "permerror"
	Domain       string // the RFC5322.From domain (header.from), lower case, IDNs as A-labels
	PolicyDomain string // where the record was found: Domain or its organizational domain ("" without a usable record)
	Policy       string // the record's policy for this domain after sp=: "none", "quarantine", "reject" ("" if no record)
	Disposition  string // what to do after pct= sampling: "none", "quarantine", "reject"; "none" unless Result is "fail"
	Reason       string // a short human reason, used in the 550 reply
	Err          error  // set for temperror and permerror, and for a none caused by an unusable record or From domain
}

// CheckDMARC evaluates DMARC for msg given the SPF result (of MAIL FROM/HELO) and the
// DKIM results. sample returns a number in [0,100) used for pct=; nil means math/rand.
//
// The author domain is that of the one address in the one From field (RFC 7489 §6.6.1).
// A message without a From field, with several, or with several addresses in it gives
// permerror: there is no single domain whose owner could have a say. An address whose
// domain is not a DNS name (a domain literal, an over-long name) gives none.
//
// The policy record is looked up at _dmarc.<From domain>, and at the organizational
// domain (public suffix list) when there is none (§6.6.3); there the record's sp=
// applies to the subdomain if present. A record that starts with v=DMARC1 but does not
// parse, or several records at one name, mean no policy ("none", §6.6.3): a publisher's
// typo must not get mail rejected. (One difference from §6.6.3 step 6 is mox's: several
// records at the From domain make it ask the organizational domain instead of
// stopping. Telling the two apart would take a second lookup.) A DNS failure looking
// up the record is temperror.
//
// The message passes when SPF passed for the MAIL FROM domain (an SPF result for the
// HELO identity does not count, §3.1.2) or a DKIM signature passed, with that domain
// aligned to the From domain: equal under adkim=s / aspf=s, with the same
// organizational domain under the default relaxed mode (§3.1).
//
// A fail becomes temperror when an SPF or DKIM result whose domain does align was
// temperror: had that lookup worked, the message might have passed. The session then
// answers 451 4.4.3 and the sender retries; a DNS hiccup never causes a permanent
// rejection. (Unaligned temperrors do not matter: they could not have made it pass.)
//
// On a fail, pct= below 100 samples messages: when sample() >= pct the policy is not
// applied and the next weaker one is, reject becoming quarantine and quarantine none
// (§6.6.4); Disposition says what remains. sample is only called for a fail with
// pct below 100 and a policy other than none.
func CheckDMARC(ctx context.Context, r dns.Resolver, msg []byte, spf SPFResult, dkim []DKIMResult, sample func() int) DMARCResult {
	res := checkDMARC(ctx, r, msg, spf, dkim, sample)
	res.Reason = dmarcReplyText(res.Reason)
	return res
}

func checkDMARC(ctx context.Context, r dns.Resolver, msg []byte, spf SPFResult, dkim []DKIMResult, sample func() int) DMARCResult {
	res := DMARCResult{Disposition: "none"}
	fromDomain, err := dmarcFromDomain(msg)
	if err != nil {
		res.Result = "permerror"
		res.Err = fmt.Errorf("dmarc: %w", err)
		res.Reason = "cannot evaluate DMARC: " + err.Error()
		return res
	}
	res.Domain = fromDomain
	from, err := parseDMARCDomain(fromDomain)
	if err != nil {
		res.Result = "none"
		res.Err = fmt.Errorf("dmarc: From domain %q: %w", fromDomain, err)
		res.Reason = fmt.Sprintf("From domain %s is not a usable DNS domain", fromDomain)
		return res
	}
	res.Domain = from.ASCII

	ctx, cancel := context.WithTimeout(ctx, dmarcTimeout)
	defer cancel()
	status, recDomain, record, _, _, err := moxdmarc.Lookup(ctx, discardLog, r, from)
	switch {
	case status == moxdmarc.StatusTemperror:
		res.Result = "temperror"
		res.Err = fmt.Errorf("dmarc: looking up record for %s: %w", from.ASCII, err)
		res.Reason = fmt.Sprintf("DNS lookup of the DMARC record for %s failed temporarily", from.ASCII)
		return res
	case record == nil || status != moxdmarc.StatusNone:
		// No record, several (ErrMultipleRecords) or one that does not parse (StatusPermerror
		// with ErrSyntax): no DMARC processing.
		res.Result = "none"
		switch {
		case errors.Is(err, moxdmarc.ErrNoRecord) || err == nil:
			res.Reason = "no DMARC record for " + from.ASCII
		case errors.Is(err, moxdmarc.ErrMultipleRecords):
			res.Err = fmt.Errorf("dmarc: at %s: %w", recDomain.ASCII, err)
			res.Reason = fmt.Sprintf("several DMARC records for %s, no policy applied", recDomain.ASCII)
		default:
			res.Err = fmt.Errorf("dmarc: record at _dmarc.%s: %w", recDomain.ASCII, err)
			res.Reason = fmt.Sprintf("DMARC record of %s does not parse, no policy applied", recDomain.ASCII)
		}
		return res
	}

	res.PolicyDomain = recDomain.ASCII
	tag, policy := "p", record.Policy
	if recDomain.ASCII != from.ASCII && record.SubdomainPolicy != moxdmarc.PolicyEmpty {
		tag, policy = "sp", record.SubdomainPolicy
	}
	res.Policy = dmarcPolicyName(policy)

	orgs := map[string]string{} // organizational domains, by ASCII name
	orgOf := func(d moxdns.Domain) string {
		o, ok := orgs[d.ASCII]
		if !ok {
			o = publicsuffix.Lookup(ctx, discardLog, d).ASCII
			orgs[d.ASCII] = o
		}
		return o
	}
	aligned := func(mode moxdmarc.Align, domain string) bool {
		d, err := parseDMARCDomain(domain)
		if err != nil {
			return false
		}
		if d.ASCII == from.ASCII {
			return true
		}
		return mode != moxdmarc.AlignStrict && orgOf(d) == orgOf(from)
	}

	spfCounts := spf.Identity != "helo" // RFC 7489 §3.1.2: DMARC uses the MAIL FROM identity
	var spfPassed string                // the SPF-authenticated domain, for Reason
	if spfCounts && spf.Result == SPFPass {
		spfPassed = strings.ToLower(spf.Domain)
		if aligned(record.ASPF, spf.Domain) {
			res.Result = "pass"
			res.Reason = fmt.Sprintf("SPF (%s) aligned with From domain %s", spfPassed, from.ASCII)
			return res
		}
	}
	var dkimPassed []string // DKIM-authenticated domains, for Reason
	for _, d := range dkim {
		if d.Result != "pass" {
			continue
		}
		if aligned(record.ADKIM, d.Domain) {
			res.Result = "pass"
			res.Reason = fmt.Sprintf("DKIM (%s) aligned with From domain %s", strings.ToLower(d.Domain), from.ASCII)
			return res
		}
		if dom := strings.ToLower(d.Domain); !slices.Contains(dkimPassed, dom) {
			dkimPassed = append(dkimPassed, dom)
		}
	}

	if spfCounts && spf.Result == SPFTempError && aligned(record.ASPF, spf.Domain) {
		res.Result = "temperror"
		res.Err = fmt.Errorf("dmarc: spf for aligned domain %s: %w", spf.Domain, authResultErr(spf.Err, spf.Result))
		res.Reason = fmt.Sprintf("SPF check of %s failed temporarily, DMARC for %s undecided", strings.ToLower(spf.Domain), from.ASCII)
		return res
	}
	for _, d := range dkim {
		if d.Result == "temperror" && aligned(record.ADKIM, d.Domain) {
			res.Result = "temperror"
			res.Err = fmt.Errorf("dmarc: dkim for aligned domain %s: %w", d.Domain, authResultErr(d.Err, d.Result))
			res.Reason = fmt.Sprintf("DKIM check of %s failed temporarily, DMARC for %s undecided", strings.ToLower(d.Domain), from.ASCII)
			return res
		}
	}

	res.Result = "fail"
	res.Disposition = res.Policy
	at := ""
	if res.PolicyDomain != res.Domain {
		at = " (at " + res.PolicyDomain + ")"
	}
	spfText, dkimText := "none", "none"
	if spfPassed != "" {
		spfText = spfPassed
	}
	if len(dkimPassed) > 0 {
		dkimText = strings.Join(dkimPassed, ", ")
	}
	res.Reason = fmt.Sprintf("From domain %s has DMARC %s=%s%s; SPF (%s) and DKIM (%s) not aligned",
		from.ASCII, tag, res.Policy, at, spfText, dkimText)
	if pct := record.Percentage; pct < 100 && res.Policy != "none" {
		if sample == nil {
			sample = func() int { return rand.IntN(100) }
		}
		if sample() >= pct {
			res.Disposition = dmarcWeakerPolicy(res.Policy)
			res.Reason += fmt.Sprintf("; not sampled for enforcement (pct=%d)", pct)
		}
	}
	return res
}

// AuthResults formats the method part of an Authentication-Results header field (RFC
// 8601 §2.7.2, RFC 7489 §11.2), e.g. "dmarc=fail (p=reject dis=reject) header.from=a.test".
// The comment gives the policy and the disposition when there was a record.
func (r DMARCResult) AuthResults() string {
	s := "dmarc=" + r.Result
	if r.Policy != "" {
		s += " " + arComment("p="+r.Policy+" dis="+r.Disposition)
	}
	if r.Domain != "" {
		s += " header.from=" + authResultsValue(r.Domain)
	}
	return s
}

// dmarcFromDomain returns the lower-cased domain of the single address in the single
// From field of msg's header, or an error saying why there is no such domain.
func dmarcFromDomain(msg []byte) (string, error) {
	fields, _ := arScanHeader(msg)
	var values []string
	for _, f := range fields {
		if strings.EqualFold(f.name, "From") {
			values = append(values, f.value(msg))
		}
	}
	switch len(values) {
	case 0:
		return "", errors.New("message has no From field")
	case 1:
	default:
		return "", fmt.Errorf("message has %d From fields: %w", len(values), ErrSeveralAuthors)
	}
	list, err := dmarcFromParser.ParseList(values[0])
	if err != nil {
		return "", fmt.Errorf("From field does not parse: %w", err)
	}
	switch len(list) {
	case 0:
		return "", errors.New("From field has no address")
	case 1:
	default:
		return "", fmt.Errorf("From field has %d addresses: %w", len(list), ErrSeveralAuthors)
	}
	addr := list[0].Address
	at := strings.LastIndexByte(addr, '@')
	if at < 0 || at == len(addr)-1 {
		return "", fmt.Errorf("From address %q has no domain", addr)
	}
	return strings.ToLower(addr[at+1:]), nil
}

// dmarcFromParser parses From fields. Only the address matters, so encoded words in the
// display name are accepted in any charset instead of failing on unknown ones.
var dmarcFromParser = mail.AddressParser{WordDecoder: &mime.WordDecoder{
	CharsetReader: func(_ string, input io.Reader) (io.Reader, error) { return input, nil },
}}

// parseDMARCDomain parses a domain (U-labels or A-labels, one trailing dot allowed) and
// checks that "_dmarc.<domain>" is a name DNS can carry (RFC 1035 §2.3.4), so that an
// over-long From domain gives none instead of a lookup error that would read as
// temperror.
func parseDMARCDomain(s string) (moxdns.Domain, error) {
	d, err := moxdns.ParseDomain(strings.TrimSuffix(s, "."))
	if err != nil {
		return moxdns.Domain{}, err
	}
	if d.ASCII == "" {
		return moxdns.Domain{}, errors.New("empty domain")
	}
	if _, ok := absoluteName("_dmarc." + d.ASCII); !ok {
		return moxdns.Domain{}, errors.New("name too long for DNS")
	}
	return d, nil
}

// dmarcPolicyName maps a policy to one of the three of RFC 7489 §6.3; mox's parser only
// lets those through, anything else would be a bug and counts as none.
func dmarcPolicyName(p moxdmarc.Policy) string {
	switch p {
	case moxdmarc.PolicyQuarantine, moxdmarc.PolicyReject:
		return string(p)
	}
	return "none"
}

// dmarcWeakerPolicy is the policy applied to a message not sampled by pct= (RFC 7489 §6.6.4).
func dmarcWeakerPolicy(p string) string {
	if p == "reject" {
		return "quarantine"
	}
	return "none"
}

// dmarcReplyText makes s fit for an SMTP reply line (RFC 5321 §4.2: printable ASCII): the
// Reason may quote a From field or a domain from the message.
func dmarcReplyText(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r > '~' {
			return '?'
		}
		return r
	}, s)
}

// authResultErr returns err, or an error naming the result when a result carries none.
func authResultErr(err error, result string) error {
	if err != nil {
		return err
	}
	return errors.New(result)
}
