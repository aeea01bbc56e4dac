package doctor

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"github.com/repute-mail/repute/internal/dns"
)

// listAnswer is what a DNS list said about one name.
type listAnswer struct {
	addrs []netip.Addr
	txt   string
	err   error // a failure to find out; not-found is addrs == nil, err == nil
}

// queryList asks a list about name (its A record, and the TXT reason when listed).
func (c *Checker) queryList(ctx context.Context, name string) listAnswer {
	ips, _, err := c.Resolver.LookupIP(ctx, "ip4", abs(name))
	if err != nil {
		if dns.IsNotFound(err) {
			return listAnswer{}
		}
		return listAnswer{err: err}
	}
	var a listAnswer
	for _, ip := range ips {
		if x, ok := netip.AddrFromSlice(ip); ok {
			a.addrs = append(a.addrs, x.Unmap())
		}
	}
	if len(a.addrs) > 0 {
		if txts, _, err := c.Resolver.LookupTXT(ctx, abs(name)); err == nil {
			a.txt = strings.Join(txts, " ")
		}
	}
	return a
}

// listVerdict classifies a list's answer: listed, an error code of the list (it refused
// the query, or its answer is not a listing), or not listed. policyOnly is set for
// Spamhaus's PBL codes, which the ip_type check reports instead.
func listVerdict(zone string, a listAnswer) (listed bool, errMsg string, policyOnly bool) {
	if a.err != nil {
		return false, "the list did not answer: " + a.err.Error(), false
	}
	if len(a.addrs) == 0 {
		return false, "", false
	}
	zone = trimDot(zone)
	policy := true
	for _, ip := range a.addrs {
		if !ip.Is4() {
			return false, "the list answered " + ip.String() + ", which is not a listing code", false
		}
		b := ip.As4()
		switch {
		case b[0] != 127:
			// A list answers in 127.0.0.0/8; anything else is a resolver that rewrites
			// NXDOMAIN, or a list that has been shut down and answers everything.
			return false, "the list answered " + ip.String() + ", outside 127.0.0.0/8: a resolver rewriting answers, or a dead list", false
		case b[1] == 255 && b[2] == 255:
			// Spamhaus and others: 127.255.255.252-255 are error codes (typing error,
			// public resolver refused, excessive queries).
			return false, "the list refused the query (" + ip.String() + "): query it through your own resolver, not a public one, or register for its data feed", false
		case (strings.HasSuffix(zone, "surbl.org") || strings.HasSuffix(zone, "uribl.com")) && b == [4]byte{127, 0, 0, 1}:
			return false, "the list refused the query (127.0.0.1: access blocked, usually a public resolver)", false
		case strings.HasSuffix(zone, "spamhaus.org") && b[1] == 0 && b[2] == 1 && b[3] >= 255:
			return false, "the list refused the query (" + ip.String() + ")", false
		}
		if !(strings.HasSuffix(zone, "spamhaus.org") && b[1] == 0 && b[2] == 0 && (b[3] == 10 || b[3] == 11)) {
			policy = false
		}
	}
	return true, "", policy
}

// checkBlocklistIPs queries every configured list for every sending address. Spamhaus's
// PBL answers are ip_type's, not a listing here.
func (c *Checker) checkBlocklistIPs(ctx context.Context) []Result {
	var out []Result
	for _, ip := range c.Setup.SendIPs {
		out = append(out, c.checkLists(ctx, listCheck{id: IDBlocklistIP, why: whyBlocklist, what: ip.String(),
			query: dns.ListName(ip), zones: c.Blocklists, policyAside: true,
			fix: "find and stop the cause (a compromised account, a bad list, a misconfigured form), then request removal at the list's page"})...)
	}
	return out
}

// checkBlocklistDomains queries every domain list for every local domain.
func (c *Checker) checkBlocklistDomains(ctx context.Context) []Result {
	var out []Result
	for _, d := range c.Setup.Domains {
		out = append(out, c.checkLists(ctx, listCheck{id: IDBlocklistDomain, why: whyBlocklistDomain, what: d.Name,
			query: d.Name, zones: c.DomainBlocklists,
			fix: "find the cause (spam that links to the domain, a compromised site), fix it, then request removal at the list's page"})...)
	}
	return out
}

// listCheck is one address or domain to look up in a set of DNS lists.
type listCheck struct {
	id, why, fix string
	what         string // the address or domain, as shown
	query        string // its label in a list's zone
	zones        []string
	policyAside  bool // Spamhaus's policy codes are not a listing
}

// checkLists gives a fail per list that lists l.what, an error per list that does not
// answer usably, and one pass for the lists that do not list it.
func (c *Checker) checkLists(ctx context.Context, l listCheck) []Result {
	names := make([]string, len(l.zones))
	for i, z := range l.zones {
		names[i] = l.query + "." + trimDot(z)
	}
	answers := c.queryAll(ctx, names)
	var out []Result
	clean := 0
	for i, z := range l.zones {
		zone := trimDot(z)
		listed, errMsg, policy := listVerdict(zone, answers[i])
		target := l.what + " " + zone
		switch {
		case errMsg != "":
			out = append(out, Result{ID: l.id, Status: Error, Target: target, Found: errMsg, Why: l.why})
		case listed && !(policy && l.policyAside):
			out = append(out, Result{ID: l.id, Status: Fail, Target: target,
				Found: fmt.Sprintf("%s is listed on %s (%s)%s", l.what, zone, joinAddrs(answers[i].addrs), txtSuffix(answers[i].txt)),
				Why:   l.why, Fix: l.fix, URL: delistURL(zone, l.what)})
		default:
			clean++
		}
	}
	if clean > 0 {
		out = append(out, Result{ID: l.id, Status: Pass, Target: l.what, Found: fmt.Sprintf("not listed on %d of %d lists", clean, len(l.zones)), Why: l.why})
	}
	return out
}

const (
	whyBlocklist       = "Receivers refuse or junk mail from listed addresses; one listing on a major list (Spamhaus, SpamCop, Barracuda) blocks a large share of recipients."
	whyBlocklistDomain = "Mail that names or links a listed domain is refused or junked, whatever address it comes from."
)

// queryAll asks the lists in parallel (at most 8 at a time) and returns the answers in
// the order of names.
func (c *Checker) queryAll(ctx context.Context, names []string) []listAnswer {
	out := make([]listAnswer, len(names))
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out[i] = c.queryList(ctx, n)
		}()
	}
	wg.Wait()
	return out
}

// delistURL is the lookup or removal page of a list.
func delistURL(zone, what string) string {
	switch {
	case strings.HasSuffix(zone, "spamhaus.org"):
		return "https://check.spamhaus.org/results/?query=" + what
	case zone == "bl.spamcop.net":
		return "https://www.spamcop.net/bl.shtml?" + what
	case zone == "b.barracudacentral.org":
		return "https://www.barracudacentral.org/rbl/removal-request"
	case strings.HasSuffix(zone, "uceprotect.net"):
		return "https://www.uceprotect.net/en/rblcheck.php?ipr=" + what
	case zone == "psbl.surriel.com":
		return "https://psbl.org/listing?ip=" + what
	case strings.HasSuffix(zone, "mailspike.net"):
		return "https://mailspike.io/ip_verify"
	case zone == "bl.0spam.org":
		return "https://0spam.org/"
	case zone == "dnsbl.dronebl.org":
		return "https://dronebl.org/lookup?ip=" + what
	case zone == "ix.dnsbl.manitu.net":
		return "https://www.nixspam.net/lookup.php?value=" + what
	case strings.HasSuffix(zone, "gbudb.net"):
		return "https://www.gbudb.com/truncate/"
	case strings.HasSuffix(zone, "spamrats.com"):
		return "https://www.spamrats.com/lookup.php?ip=" + what
	case strings.HasSuffix(zone, "surbl.org"):
		return "https://surbl.org/surbl-analysis"
	case strings.HasSuffix(zone, "uribl.com"):
		return "https://admin.uribl.com/"
	case zone == "bl.blocklist.de":
		return "https://www.blocklist.de/en/delist.html"
	case zone == "ips.backscatterer.org":
		return "https://www.backscatterer.org/?target=test&ip=" + what
	case zone == "db.wpbl.info":
		return "https://wpbl.info/"
	case zone == "rbl.interserver.net":
		return "https://rbl.interserver.net/"
	}
	return "https://mxtoolbox.com/SuperTool.aspx?action=blacklist%3a" + what
}
