package auth

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"blitiri.com.ar/go/spf"

	"github.com/repute-mail/repute/internal/dns"
)

// spfTimeout bounds a whole SPF evaluation. RFC 7208 §4.6.4 asks for at least 20 seconds
// overall; the lookup count limits (10 DNS mechanisms, 2 void lookups) are blitiri's.
const spfTimeout = 20 * time.Second

// SPF results (RFC 7208 §2.6).
const (
	SPFNone      = "none"
	SPFNeutral   = "neutral"
	SPFPass      = "pass"
	SPFFail      = "fail"
	SPFSoftFail  = "softfail"
	SPFTempError = "temperror"
	SPFPermError = "permerror"
)

// SPFResult is the verdict of an SPF check.
type SPFResult struct {
	Result      string // one of the SPF* constants (RFC 7208 §2.6)
	Domain      string // the domain checked: the MAIL FROM domain, or HELO when MAIL FROM is null
	Identity    string // "mailfrom" or "helo": which identity Domain came from (RFC 7208 §2.3, §2.4)
	Explanation string // why: the mechanism that matched or the error
	Err         error  // set for temperror and permerror
}

// CheckSPF evaluates SPF for a client IP, its HELO name and the envelope sender
// (RFC 7208 §4). A null sender is checked as postmaster@HELO (§2.4), a sender without a
// local part as postmaster@domain (§4.3). DNS failures give temperror, which the session
// answers with 451 4.4.3 (§2.6.6); they never become a permanent verdict. The evaluation
// is bounded by blitiri's lookup limits (§4.6.4) and a 20-second deadline.
func CheckSPF(ctx context.Context, r dns.Resolver, ip netip.Addr, helo, mailFrom string) SPFResult {
	ctx, cancel := context.WithTimeout(ctx, spfTimeout)
	defer cancel()

	res := SPFResult{Identity: "mailfrom"}
	sender := mailFrom
	if at := strings.LastIndexByte(mailFrom, '@'); at >= 0 {
		res.Domain = mailFrom[at+1:]
		if at == 0 {
			sender = "postmaster" + mailFrom
		}
	}
	if mailFrom == "" || res.Domain == "" {
		res.Identity = "helo"
		res.Domain = helo
		sender = "postmaster@" + helo
	}

	var netIP net.IP
	if ip.IsValid() {
		netIP = net.IP(ip.Unmap().AsSlice())
	}
	a := &spfResolver{r: r}
	result, err := spf.CheckHostWithSender(netIP, helo, sender,
		spf.WithContext(ctx), spf.WithResolver(a))
	if a.syntaxErr != nil {
		// A record that was reached had a syntax error: RFC 7208 §4.6 makes that a
		// permerror wherever in the record the error is, even after a match.
		result, err = spf.PermError, a.syntaxErr
	}
	res.Result = string(result)
	if err != nil {
		res.Explanation = err.Error()
	}
	switch result {
	case spf.TempError, spf.PermError:
		res.Err = err
	case spf.None, spf.Neutral, spf.Pass, spf.Fail, spf.SoftFail:
	default:
		res.Result = SPFPermError
		res.Err = err
	}
	if res.Err == nil && (res.Result == SPFTempError || res.Result == SPFPermError) {
		res.Err = errors.New("spf " + res.Result)
	}
	return res
}

// SPFSyntax checks an SPF record against the full grammar of RFC 7208 §12 (blitiri checks a
// record only as far as it evaluates it); `repute check` uses it for the domain's own record.
func SPFSyntax(record string) error { return checkSPFSyntax(record) }

// AuthResults formats the method part of an Authentication-Results header field
// (RFC 8601 §2.7.2, RFC 7208 §9.2), e.g. "spf=pass smtp.mailfrom=example.org".
func (r SPFResult) AuthResults() string {
	prop := "smtp.mailfrom"
	if r.Identity == "helo" {
		prop = "smtp.helo"
	}
	return "spf=" + r.Result + " " + prop + "=" + authResultsValue(r.Domain)
}

// authResultsValue returns v as an RFC 2045 token, or as a quoted-string when it
// contains other characters (RFC 8601 §2.2 "value").
func authResultsValue(v string) string {
	if v != "" && !strings.ContainsFunc(v, func(c rune) bool {
		return c <= ' ' || c >= 0x7f || strings.ContainsRune(`()<>@,;:\"/[]?=`, c)
	}) {
		return v
	}
	return arDelimited(v, '"', '"', `"\`)
}

// spfResolver adapts Repute's resolver to blitiri's spf.DNSResolver, for one check.
// blitiri tells outcomes apart by *net.DNSError alone: IsNotFound (NXDOMAIN or no
// records) gives none and counts as a void lookup (RFC 7208 §4.6.4), Temporary() gives
// temperror. So every error is mapped to one of the two: anything that is not a clean
// "not found" is a failure to find out, hence temporary (RFC 7208 §2.6.6).
//
// blitiri checks the syntax of a record only as far as it evaluates it, so the adapter
// also checks every SPF record it hands over against the full grammar (RFC 7208 §12).
// On an error it remembers it and answers with a permanent error, which blitiri turns
// into permerror.
type spfResolver struct {
	r         dns.Resolver
	syntaxErr error
}

// TXT lookups come from blitiri only to fetch SPF records (check_host, RFC 7208 §4.4):
// it does not evaluate exp=.
func (a *spfResolver) LookupTXT(ctx context.Context, name string) ([]string, error) {
	abs, ok := absoluteName(name)
	if !ok {
		return nil, notFoundError(name)
	}
	txts, _, err := a.r.LookupTXT(ctx, abs)
	if err != nil {
		return nil, spfDNSError(name, err)
	}
	var records []string
	for _, txt := range txts {
		if lower := strings.ToLower(txt); lower == "v=spf1" || strings.HasPrefix(lower, "v=spf1 ") {
			records = append(records, txt)
		}
	}
	if len(records) == 1 {
		if err := checkSPFSyntax(records[0]); err != nil {
			a.syntaxErr = fmt.Errorf("spf record of %s: %w", name, err)
			return nil, &net.DNSError{Err: a.syntaxErr.Error(), Name: name}
		}
	}
	return txts, nil
}

func (a *spfResolver) LookupMX(ctx context.Context, name string) ([]*net.MX, error) {
	abs, ok := absoluteName(name)
	if !ok {
		return nil, notFoundError(name)
	}
	mxs, _, err := a.r.LookupMX(ctx, abs)
	if err != nil {
		return nil, spfDNSError(name, err)
	}
	return mxs, nil
}

func (a *spfResolver) LookupIPAddr(ctx context.Context, host string) ([]net.IPAddr, error) {
	abs, ok := absoluteName(host)
	if !ok {
		return nil, notFoundError(host)
	}
	ips, _, err := a.r.LookupIP(ctx, "ip", abs)
	if err != nil {
		return nil, spfDNSError(host, err)
	}
	addrs := make([]net.IPAddr, len(ips))
	for i, ip := range ips {
		addrs[i] = net.IPAddr{IP: ip}
	}
	return addrs, nil
}

func (a *spfResolver) LookupAddr(ctx context.Context, addr string) ([]string, error) {
	names, _, err := a.r.LookupAddr(ctx, addr)
	if err != nil {
		return nil, spfDNSError(addr, err)
	}
	return names, nil
}

// absoluteName returns name with a trailing dot, or false when it cannot be a DNS name:
// an empty label, a label over 63 octets or a name over 253 (RFC 1035 §2.3.4). RFC 7208
// §4.3 makes such a domain give none, so it is answered as "not found" without a query.
func absoluteName(name string) (string, bool) {
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > 253 {
		return "", false
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 {
			return "", false
		}
	}
	return name + ".", true
}

func notFoundError(name string) error {
	return &net.DNSError{Err: "no such host", Name: name, IsNotFound: true}
}

// spfDNSError maps a lookup error to the *net.DNSError blitiri understands.
func spfDNSError(name string, err error) error {
	if dns.IsNotFound(err) {
		return notFoundError(name)
	}
	var netErr net.Error
	timeout := errors.As(err, &netErr) && netErr.Timeout()
	return &net.DNSError{Err: err.Error(), Name: name, IsTemporary: true, IsTimeout: timeout}
}

// checkSPFSyntax checks a record (selected by its "v=spf1" version) against the ABNF of
// RFC 7208 §12: only printable ASCII (§3.1), known mechanisms with well-formed arguments
// (§5), CIDR lengths without leading zeros and in range (§5.6), domain-specs ending in a
// toplabel or a macro (§7.1), macro letters c, r and t only in exp= text (§7.3), at most
// one redirect= and one exp= (§6), and unknown modifiers with a valid name (§4.6.1).
func checkSPFSyntax(record string) error {
	for i := range len(record) {
		if c := record[i]; c < ' ' || c > '~' {
			return fmt.Errorf("character %#02x not allowed", c)
		}
	}
	terms := strings.Split(record, " ")
	if !strings.EqualFold(terms[0], "v=spf1") {
		return fmt.Errorf("version %q", terms[0])
	}
	var redirects, exps int
	for _, term := range terms[1:] {
		if term == "" {
			continue
		}
		var err error
		if name, value, ok := spfModifier(term); ok {
			switch strings.ToLower(name) {
			case "redirect":
				redirects++
				err = checkDomainSpec(value)
			case "exp":
				exps++
				err = checkDomainSpec(value)
			default:
				if !isModifierName(name) {
					err = errors.New("bad modifier name")
				} else {
					_, err = checkMacroString(value, false)
				}
			}
		} else {
			err = checkDirective(term)
		}
		if err != nil {
			return fmt.Errorf("term %q: %w", term, err)
		}
	}
	if redirects > 1 || exps > 1 {
		return errors.New("redirect= or exp= more than once")
	}
	return nil
}

// spfModifier splits a modifier term: one whose "=" comes before any ":" or "/".
func spfModifier(term string) (name, value string, ok bool) {
	eq := strings.IndexByte(term, '=')
	if eq < 0 || strings.ContainsAny(term[:eq], ":/") {
		return "", "", false
	}
	return term[:eq], term[eq+1:], true
}

func isModifierName(name string) bool {
	if name == "" || !isAlpha(name[0]) {
		return false
	}
	for i := range len(name) {
		if c := name[i]; !isAlpha(c) && !isDigit(c) && !strings.ContainsRune("-_.", rune(c)) {
			return false
		}
	}
	return true
}

func checkDirective(term string) error {
	if strings.ContainsRune("+-?~", rune(term[0])) {
		term = term[1:]
	}
	end := strings.IndexAny(term, ":/")
	if end < 0 {
		end = len(term)
	}
	mech, arg := strings.ToLower(term[:end]), term[end:]
	switch mech {
	case "all":
		if arg != "" {
			return errors.New("all takes no argument")
		}
		return nil
	case "include", "exists":
		if !strings.HasPrefix(arg, ":") {
			return errors.New("domain required")
		}
		return checkDomainSpec(arg[1:])
	case "ptr":
		if arg == "" {
			return nil
		}
		if !strings.HasPrefix(arg, ":") {
			return errors.New("bad argument")
		}
		return checkDomainSpec(arg[1:])
	case "a", "mx":
		arg, err := stripDualCIDR(arg)
		if err != nil || arg == "" {
			return err
		}
		if !strings.HasPrefix(arg, ":") {
			return errors.New("bad argument")
		}
		return checkDomainSpec(arg[1:])
	case "ip4", "ip6":
		if !strings.HasPrefix(arg, ":") {
			return errors.New("address required")
		}
		network, bits, hasBits := strings.Cut(arg[1:], "/")
		addr, err := netip.ParseAddr(network)
		if err != nil || addr.Zone() != "" || addr.Is4() != (mech == "ip4") {
			return fmt.Errorf("bad %s address", mech)
		}
		if hasBits && !cidrLength(bits, addr.BitLen()) {
			return errors.New("bad prefix length")
		}
		return nil
	}
	return errors.New("unknown mechanism")
}

// stripDualCIDR removes a trailing dual-cidr-length ("/24", "//64", "/24//64") from the
// argument of a or mx and checks it.
func stripDualCIDR(arg string) (string, error) {
	if i := strings.LastIndex(arg, "//"); i >= 0 && isDigits(arg[i+2:]) {
		if !cidrLength(arg[i+2:], 128) {
			return "", errors.New("bad ip6 prefix length")
		}
		arg = arg[:i]
	}
	if i := strings.LastIndexByte(arg, '/'); i >= 0 && isDigits(arg[i+1:]) {
		if !cidrLength(arg[i+1:], 32) {
			return "", errors.New("bad ip4 prefix length")
		}
		arg = arg[:i]
	}
	return arg, nil
}

// cidrLength reports whether s is a prefix length from 0 to max without leading zeros.
func cidrLength(s string, max int) bool {
	if !isDigits(s) || len(s) > 1 && s[0] == '0' {
		return false
	}
	n, err := strconv.Atoi(s)
	return err == nil && n <= max
}

// checkDomainSpec checks a domain-spec: a macro-string ending in "." toplabel (with an
// optional trailing dot) or in a macro (RFC 7208 §7.1).
func checkDomainSpec(s string) error {
	endsInMacro, err := checkMacroString(s, true)
	if err != nil || endsInMacro {
		return err
	}
	name := strings.TrimSuffix(s, ".")
	dot := strings.LastIndexByte(name, '.')
	if dot < 0 || !isTopLabel(name[dot+1:]) {
		return errors.New("domain must end in a toplabel or a macro")
	}
	return nil
}

// isTopLabel: ( *alphanum ALPHA *alphanum ) / ( 1*alphanum "-" *( alphanum / "-" ) alphanum ).
func isTopLabel(l string) bool {
	if l == "" || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	var alpha, hyphen bool
	for i := range len(l) {
		switch c := l[i]; {
		case isAlpha(c):
			alpha = true
		case c == '-':
			hyphen = true
		case !isDigit(c):
			return false
		}
	}
	return alpha || hyphen
}

// checkMacroString checks a macro-string (RFC 7208 §7.1) and reports whether it ends in
// a macro-expand. In a domain-spec the letters c, r and t are not allowed (§7.3).
func checkMacroString(s string, domain bool) (endsInMacro bool, err error) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			if c <= ' ' || c > '~' {
				return false, fmt.Errorf("character %#02x not allowed", c)
			}
			endsInMacro = false
			continue
		}
		if i+1 >= len(s) {
			return false, errors.New("lone %")
		}
		i++
		switch s[i] {
		case '%', '_', '-':
			endsInMacro = true
			continue
		case '{':
		default:
			return false, fmt.Errorf("bad macro %%%c", s[i])
		}
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return false, errors.New("unterminated macro")
		}
		if err := checkMacroBody(s[i+1:i+end], domain); err != nil {
			return false, err
		}
		i += end
		endsInMacro = true
	}
	return endsInMacro, nil
}

// checkMacroBody checks macro-letter transformers *delimiter.
func checkMacroBody(body string, domain bool) error {
	if body == "" {
		return errors.New("empty macro")
	}
	letter := body[0] | 0x20
	if !strings.ContainsRune("slodiphcrtv", rune(letter)) || !isAlpha(body[0]) {
		return fmt.Errorf("bad macro letter %q", body[0])
	}
	if domain && strings.ContainsRune("crt", rune(letter)) {
		return fmt.Errorf("macro letter %q only allowed in exp text", body[0])
	}
	rest := strings.TrimLeft(body[1:], "0123456789")
	rest = strings.TrimPrefix(strings.TrimPrefix(rest, "r"), "R")
	if strings.Trim(rest, ".-+,/_=") != "" {
		return fmt.Errorf("bad macro transformer %q", body)
	}
	return nil
}

func isAlpha(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}
