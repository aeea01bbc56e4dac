package doctor

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"

	"github.com/mjl-/mox/dmarc"
	moxdns "github.com/mjl-/mox/dns"
	"github.com/mjl-/mox/mtasts"
	"github.com/mjl-/mox/publicsuffix"
	"github.com/mjl-/mox/tlsrpt"

	"github.com/repute-mail/repute/internal/auth"
	"github.com/repute-mail/repute/internal/dns"
)

// checkMX checks that the domain's MX records name a host that resolves to this server.
func (c *Checker) checkMX(ctx context.Context, domain string, hostIPs []netip.Addr) Result {
	host := trimDot(c.Setup.Hostname)
	fix := c.publish(domain, domain, "MX", "")
	mxs, _, err := c.Resolver.LookupMX(ctx, abs(domain))
	if err != nil {
		return Result{ID: IDMX, Status: errStatus(err, Fail), Target: domain, Found: lookupErr("MX record", err), Why: whyMX, Fix: fix}
	}
	if len(mxs) == 1 && trimDot(mxs[0].Host) == "" {
		return Result{ID: IDMX, Status: Fail, Target: domain, Found: "a null MX (\".\"): the domain says it accepts no mail", Why: whyMX, Fix: fix}
	}
	ours := append([]netip.Addr{}, hostIPs...)
	ours = append(ours, c.Setup.HostIPs...)
	var found []string
	for _, mx := range mxs {
		name := trimDot(mx.Host)
		found = append(found, fmt.Sprintf("%d %s", mx.Pref, name))
		if name == host {
			return Result{ID: IDMX, Status: Pass, Target: domain, Found: "MX " + strings.Join(found, ", ") + " (this server)", Why: whyMX}
		}
		for _, ip := range c.resolveHost(ctx, name) {
			if slices.Contains(ours, ip) {
				return Result{ID: IDMX, Status: Pass, Target: domain, Found: fmt.Sprintf("MX %s resolves to %s (this server)", name, ip), Why: whyMX}
			}
		}
	}
	return Result{ID: IDMX, Status: Fail, Target: domain, Found: "MX " + strings.Join(found, ", ") + ": none is this server", Why: whyMX, Fix: fix}
}

const whyMX = "Mail to the domain (replies, bounces, DMARC and TLS reports) reaches this server only through its MX record."

// checkSPF checks that the domain has exactly one valid SPF record that authorises every
// sending address (and the relay), within the 10-lookup limit, ending in -all or ~all.
func (c *Checker) checkSPF(ctx context.Context, domain string) Result {
	fix := c.publish(domain, domain, "TXT", "v=spf1")
	txts, _, err := c.Resolver.LookupTXT(ctx, abs(domain))
	if err != nil && !dns.IsNotFound(err) {
		return Result{ID: IDSPF, Status: Error, Target: domain, Found: lookupErr("TXT records", err), Why: whySPF, Fix: fix}
	}
	var spfs []string
	for _, t := range txts {
		if l := strings.ToLower(t); l == "v=spf1" || strings.HasPrefix(l, "v=spf1 ") {
			spfs = append(spfs, t)
		}
	}
	switch len(spfs) {
	case 0:
		return Result{ID: IDSPF, Status: Fail, Target: domain, Found: "no SPF record", Why: whySPF, Fix: fix}
	case 1:
	default:
		return Result{ID: IDSPF, Status: Fail, Target: domain, Found: fmt.Sprintf("%d SPF records (%s): receivers treat that as a permanent error", len(spfs), strings.Join(quoteAll(spfs), ", ")),
			Why: whySPF, Fix: "merge them into one: " + fix}
	}
	rec := spfs[0]
	if err := auth.SPFSyntax(rec); err != nil {
		return Result{ID: IDSPF, Status: Fail, Target: domain, Found: fmt.Sprintf("%q: %v", rec, err), Why: whySPF, Fix: fix}
	}
	all := spfAll(rec)
	if all == "+all" || all == "?all" {
		return Result{ID: IDSPF, Status: Fail, Target: domain, Found: fmt.Sprintf("%q ends in %s: it authorises the whole internet to send as %s", rec, all, domain), Why: whySPF, Fix: fix}
	}
	n, err := c.spfLookups(ctx, rec, 0)
	if err != nil {
		return Result{ID: IDSPF, Status: errStatusSPF(err), Target: domain, Found: fmt.Sprintf("%q: %v", rec, err), Why: whySPF, Fix: fix}
	}
	if n > 10 {
		return Result{ID: IDSPF, Status: Fail, Target: domain, Found: fmt.Sprintf("%q needs more than 10 DNS lookups (%d counted before stopping); RFC 7208 allows 10, so receivers get a permanent error", rec, n), Why: whySPF,
			Fix: "replace include:, a and mx terms by ip4:/ip6: ranges until at most 10 lookups remain: " + fix}
	}
	var bad []string
	ips := append([]netip.Addr{}, c.Setup.SendIPs...)
	relayIPs := c.relayIPs(ctx)
	ips = append(ips, relayIPs...)
	for _, ip := range ips {
		res := auth.CheckSPF(ctx, c.Resolver, ip, trimDot(c.Setup.Hostname), "postmaster@"+domain)
		switch res.Result {
		case auth.SPFPass:
		case auth.SPFTempError:
			return Result{ID: IDSPF, Status: Error, Target: domain, Found: fmt.Sprintf("evaluating SPF for %s failed temporarily: %s", ip, res.Explanation), Why: whySPF}
		default:
			who := ip.String()
			if slices.Contains(relayIPs, ip) {
				who += " (the relay " + c.Setup.Relay + ")"
			}
			bad = append(bad, fmt.Sprintf("%s gets %s", who, res.Result))
		}
	}
	if len(bad) > 0 {
		return Result{ID: IDSPF, Status: Fail, Target: domain, Found: fmt.Sprintf("%q does not authorise every address mail leaves from: %s", rec, strings.Join(bad, "; ")), Why: whySPF, Fix: fix}
	}
	if all == "" {
		return Result{ID: IDSPF, Status: Warn, Target: domain, Found: fmt.Sprintf("%q has no all term: mail from other addresses is neutral, not refused", rec), Why: whySPF, Fix: fix}
	}
	return Result{ID: IDSPF, Status: Pass, Target: domain, Found: fmt.Sprintf("%q authorises %s, %d DNS lookups", rec, joinAddrs(ips), n), Why: whySPF}
}

const whySPF = "SPF tells receivers which addresses may send mail for the domain; Gmail and Yahoo require it (with DKIM and DMARC) from bulk senders, and a missing or broken record sends mail to spam."

// spfAll returns the record's all term with its qualifier ("-all", "~all", "+all",
// "?all"), or "".
func spfAll(rec string) string {
	for _, t := range strings.Fields(strings.ToLower(rec)) {
		switch t {
		case "all", "+all":
			return "+all"
		case "-all", "~all", "?all":
			return t
		}
	}
	return ""
}

// spfLookups counts the DNS-querying terms of an SPF record, following include: and
// redirect= (RFC 7208 §4.6.4). It stops counting past the limit.
func (c *Checker) spfLookups(ctx context.Context, rec string, depth int) (int, error) {
	if depth > 10 {
		return 11, nil
	}
	n := 0
	for _, t := range strings.Fields(rec)[1:] {
		t = strings.TrimLeft(strings.ToLower(t), "+-~?")
		name, arg := t, ""
		if i := strings.IndexAny(t, ":="); i >= 0 {
			name, arg = t[:i], t[i+1:]
		}
		switch name {
		case "a", "mx", "ptr", "exists":
			n++
		case "include", "redirect":
			n++
			if strings.Contains(arg, "%") {
				continue // macros: not expanded here
			}
			sub, err := c.spfOf(ctx, arg)
			if err != nil {
				return n, err
			}
			if sub != "" {
				m, err := c.spfLookups(ctx, sub, depth+1)
				if err != nil {
					return n, err
				}
				n += m
			}
		}
		if n > 10 {
			return 11, nil // past the limit: how far past does not matter
		}
	}
	return n, nil
}

// spfOf returns the SPF record of a name, "" when it has none.
func (c *Checker) spfOf(ctx context.Context, name string) (string, error) {
	txts, _, err := c.Resolver.LookupTXT(ctx, abs(name))
	if err != nil {
		if dns.IsNotFound(err) {
			return "", nil
		}
		return "", fmt.Errorf("TXT %s: %w", name, err)
	}
	for _, t := range txts {
		if l := strings.ToLower(t); l == "v=spf1" || strings.HasPrefix(l, "v=spf1 ") {
			return t, nil
		}
	}
	return "", nil
}

func errStatusSPF(err error) Status {
	if dns.IsTemporary(err) {
		return Error
	}
	return Fail
}

// relayIPs resolves the relay's host, when mail goes through one.
func (c *Checker) relayIPs(ctx context.Context) []netip.Addr {
	if c.Setup.Relay == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(c.Setup.Relay)
	if err != nil {
		host = c.Setup.Relay
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}
	}
	return c.resolveHost(ctx, host)
}

// checkDKIM checks that every key's record is published and carries our public key.
func (c *Checker) checkDKIM(ctx context.Context, d Domain) []Result {
	if len(d.DKIM) == 0 {
		return []Result{{ID: IDDKIM, Status: Fail, Target: d.Name, Found: "the domain has no DKIM key, so its mail is not signed", Why: whyDKIM,
			Fix: "create a key: repute dkim rotate " + d.Name + ", then publish the record repute dns records prints"}}
	}
	var out []Result
	for _, k := range d.DKIM {
		if k.State == "retired" {
			continue
		}
		name := k.Selector + "._domainkey." + d.Name
		target := name
		fix := c.publish(d.Name, name, "TXT", "")
		missing := Fail
		if k.State == "pending" {
			missing = Warn // announced, not signing yet: publish before the rotation completes
		}
		txts, _, err := c.Resolver.LookupTXT(ctx, abs(name))
		if err != nil {
			out = append(out, Result{ID: IDDKIM, Status: errStatus(err, missing), Target: target, Found: lookupErr("DKIM record for selector "+k.Selector+" ("+k.State+")", err), Why: whyDKIM, Fix: fix})
			continue
		}
		txt := strings.Join(txts, "")
		if len(txts) > 1 {
			out = append(out, Result{ID: IDDKIM, Status: Fail, Target: target, Found: fmt.Sprintf("%d TXT records at %s; verifiers need exactly one", len(txts), name), Why: whyDKIM, Fix: fix})
			continue
		}
		got, want := dkimTag(txt, "p"), dkimTag(k.Record, "p")
		switch {
		case got == "":
			out = append(out, Result{ID: IDDKIM, Status: Fail, Target: target, Found: fmt.Sprintf("%q has no public key (p= is empty: the key is revoked)", abbreviate(txt)), Why: whyDKIM, Fix: fix})
		case got != want:
			out = append(out, Result{ID: IDDKIM, Status: missing, Target: target, Found: fmt.Sprintf("the published key %q is not the %s key Repute signs with (a stale record from an earlier key?)", abbreviate(got), k.State), Why: whyDKIM, Fix: fix})
		case !strings.EqualFold(dkimTagDefault(txt, "k", "rsa"), k.Algorithm):
			out = append(out, Result{ID: IDDKIM, Status: Fail, Target: target, Found: fmt.Sprintf("k=%s, but the key is %s", dkimTagDefault(txt, "k", "rsa"), k.Algorithm), Why: whyDKIM, Fix: fix})
		default:
			out = append(out, Result{ID: IDDKIM, Status: Pass, Target: target, Found: fmt.Sprintf("selector %s (%s, %s) is published and matches", k.Selector, k.Algorithm, k.State), Why: whyDKIM})
		}
	}
	return out
}

const whyDKIM = "DKIM signatures prove the mail is the domain's; Gmail, Yahoo and Outlook require them, and DMARC passes through them even when forwarding breaks SPF."

// dkimTag returns the value of a tag of a DKIM key record with whitespace removed.
func dkimTag(rec, tag string) string { return dkimTagDefault(rec, tag, "") }

func dkimTagDefault(rec, tag, def string) string {
	for _, part := range strings.Split(rec, ";") {
		k, v, ok := strings.Cut(part, "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), tag) {
			return strings.Join(strings.Fields(v), "")
		}
	}
	return def
}

func abbreviate(s string) string {
	if len(s) > 60 {
		return s[:28] + "…" + s[len(s)-28:]
	}
	return s
}

// checkDMARC checks the domain's DMARC record: present, valid, at least reporting, and
// with report addresses that accept the reports.
func (c *Checker) checkDMARC(ctx context.Context, domain string) Result {
	rua := c.Setup.ReportsLocal + "@" + domain
	name := "_dmarc." + domain
	fix := c.publish(domain, name, "TXT", "") + ", and move to p=quarantine, then p=reject, once the reports show only your own mail"
	txts, _, err := c.Resolver.LookupTXT(ctx, abs(name))
	if err != nil && !dns.IsNotFound(err) {
		return Result{ID: IDDMARC, Status: Error, Target: domain, Found: lookupErr("DMARC record", err), Why: whyDMARC, Fix: fix}
	}
	var recs []string
	for _, t := range txts {
		if strings.HasPrefix(strings.ToLower(strings.TrimSpace(t)), "v=dmarc1") {
			recs = append(recs, t)
		}
	}
	switch len(recs) {
	case 0:
		return Result{ID: IDDMARC, Status: Fail, Target: domain, Found: "no DMARC record at " + name, Why: whyDMARC, Fix: fix}
	case 1:
	default:
		return Result{ID: IDDMARC, Status: Fail, Target: domain, Found: fmt.Sprintf("%d DMARC records at %s: receivers ignore them all", len(recs), name), Why: whyDMARC, Fix: "keep one: " + fix}
	}
	rec, _, err := dmarc.ParseRecord(recs[0])
	if err != nil {
		return Result{ID: IDDMARC, Status: Fail, Target: domain, Found: fmt.Sprintf("%q: syntax error: %v", recs[0], err), Why: whyDMARC, Fix: fix}
	}
	// RFC 7489 §7.1: a report address outside the domain's organisation must authorise
	// the reports with a record at DOMAIN._report._dmarc.THEIRDOMAIN.
	org := publicsuffix.Lookup(ctx, c.Log, moxdns.Domain{ASCII: domain})
	var external []string
	for _, u := range append(slices.Clone(rec.AggregateReportAddresses), rec.FailureReportAddresses...) {
		addr := strings.TrimPrefix(strings.ToLower(u.Address), "mailto:")
		at := strings.LastIndexByte(addr, '@')
		if at < 0 {
			continue
		}
		rd := trimDot(addr[at+1:])
		if publicsuffix.Lookup(ctx, c.Log, moxdns.Domain{ASCII: rd}).ASCII == org.ASCII {
			continue
		}
		auth := domain + "._report._dmarc." + rd
		txts, _, err := c.Resolver.LookupTXT(ctx, abs(auth))
		ok := false
		for _, t := range txts {
			if strings.HasPrefix(strings.ToLower(strings.TrimSpace(t)), "v=dmarc1") {
				ok = true
			}
		}
		if err != nil && !dns.IsNotFound(err) {
			return Result{ID: IDDMARC, Status: Error, Target: domain, Found: lookupErr("TXT "+auth, err), Why: whyDMARC}
		}
		if !ok {
			external = append(external, fmt.Sprintf("%s (no TXT \"v=DMARC1\" at %s)", addr, auth))
		}
	}
	if len(external) > 0 {
		return Result{ID: IDDMARC, Status: Fail, Target: domain,
			Found: "report addresses outside the domain have not authorised the reports, so receivers send none: " + strings.Join(external, ", "),
			Why:   whyDMARC, Fix: fmt.Sprintf("use rua=mailto:%s, or have the report domain publish the authorisation record (RFC 7489 §7.1)", rua)}
	}
	found := fmt.Sprintf("%q", recs[0])
	if len(rec.AggregateReportAddresses) == 0 {
		return Result{ID: IDDMARC, Status: Warn, Target: domain, Found: found + " asks for no aggregate reports (rua), so nobody sees who sends as the domain", Why: whyDMARC, Fix: fix}
	}
	if rec.Policy == dmarc.PolicyNone {
		return Result{ID: IDDMARC, Status: Warn, Target: domain, Found: found + ": p=none only monitors; spoofed mail is still delivered",
			Why: whyDMARC, Fix: "when the aggregate reports show only your own, aligned mail, move to p=quarantine and then p=reject at " + name}
	}
	return Result{ID: IDDMARC, Status: Pass, Target: domain, Found: found, Why: whyDMARC}
}

const whyDMARC = "DMARC ties SPF and DKIM to the From address and tells receivers what to do with mail that fails; Gmail and Yahoo require a record from bulk senders."

// checkMTASTS checks the MTA-STS record and the policy served for it.
func (c *Checker) checkMTASTS(ctx context.Context, domain string) Result {
	host := trimDot(c.Setup.Hostname)
	wantPolicy, wantID := MTASTSPolicy(c.Setup.MTASTSMode, c.Setup.MTASTSMaxAge, c.Setup.PolicyMX())
	name := "_mta-sts." + domain
	fixTXT := c.publish(domain, name, "TXT", "") + " and " + c.publish(domain, "mta-sts."+domain, "CNAME", "")
	txts, _, err := c.Resolver.LookupTXT(ctx, abs(name))
	if err != nil && !dns.IsNotFound(err) {
		return Result{ID: IDMTASTS, Status: Error, Target: domain, Found: lookupErr("MTA-STS record", err), Why: whyMTASTS, Fix: fixTXT}
	}
	var recs []*mtasts.Record
	for _, t := range txts {
		r, is, err := mtasts.ParseRecord(t)
		if !is {
			continue
		}
		if err != nil {
			return Result{ID: IDMTASTS, Status: Fail, Target: domain, Found: fmt.Sprintf("%q: %v", t, err), Why: whyMTASTS, Fix: fixTXT}
		}
		recs = append(recs, r)
	}
	switch len(recs) {
	case 0:
		return Result{ID: IDMTASTS, Status: Warn, Target: domain, Found: "no MTA-STS record: senders may deliver over unauthenticated or plain connections", Why: whyMTASTS, Fix: fixTXT}
	case 1:
	default:
		return Result{ID: IDMTASTS, Status: Fail, Target: domain, Found: fmt.Sprintf("%d MTA-STS records at %s: senders ignore them", len(recs), name), Why: whyMTASTS, Fix: "keep one: " + fixTXT}
	}
	url := "https://mta-sts." + domain + "/.well-known/mta-sts.txt"
	fixPolicy := fmt.Sprintf("serve the policy at %s: point mta-sts.%s at this server (CNAME to %s) with a certificate for that name (tls.acme_email), and run repute serve", url, domain, host)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Result{ID: IDMTASTS, Status: Error, Target: domain, Found: err.Error(), Why: whyMTASTS}
	}
	resp, err := c.httpClient(c.ports().HTTPS).Do(req)
	if err != nil {
		return Result{ID: IDMTASTS, Status: Fail, Target: domain, Found: fmt.Sprintf("the record (id=%s) announces a policy, but fetching %s failed: %v", recs[0].ID, url, err), Why: whyMTASTS, Fix: fixPolicy}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK || err != nil {
		return Result{ID: IDMTASTS, Status: Fail, Target: domain, Found: fmt.Sprintf("the record (id=%s) announces a policy, but %s answered %s", recs[0].ID, url, resp.Status), Why: whyMTASTS, Fix: fixPolicy}
	}
	pol, err := mtasts.ParsePolicy(string(body))
	if err != nil {
		return Result{ID: IDMTASTS, Status: Fail, Target: domain, Found: fmt.Sprintf("%s: %v", url, err), Why: whyMTASTS, Fix: fixPolicy}
	}
	if pol.Mode != mtasts.ModeNone {
		mxs, _, err := c.Resolver.LookupMX(ctx, abs(domain))
		if err != nil && !dns.IsNotFound(err) {
			return Result{ID: IDMTASTS, Status: Error, Target: domain, Found: lookupErr("MX records", err), Why: whyMTASTS}
		}
		var unmatched []string
		for _, mx := range mxs {
			d, err := moxdns.ParseDomain(trimDot(mx.Host))
			if err == nil && !pol.Matches(d) {
				unmatched = append(unmatched, trimDot(mx.Host))
			}
		}
		if len(unmatched) > 0 {
			return Result{ID: IDMTASTS, Status: Fail, Target: domain,
				Found: fmt.Sprintf("the policy's mx lines (%s) do not match the MX host(s) %s: senders enforcing it cannot deliver", policyMX(pol), strings.Join(unmatched, ", ")),
				Why:   whyMTASTS, Fix: fmt.Sprintf("list every MX host in the policy (Repute's lists %s and mta_sts.mx: add the others there), then publish the new id at %s", host, name)}
		}
	}
	found := fmt.Sprintf("id=%s, mode %s, mx %s, max_age %d", recs[0].ID, pol.Mode, policyMX(pol), pol.MaxAgeSeconds)
	if string(body) == wantPolicy && recs[0].ID != wantID {
		return Result{ID: IDMTASTS, Status: Warn, Target: domain, Found: found + ": the policy changed but the record's id did not, so senders keep the old one", Why: whyMTASTS, Fix: fixTXT}
	}
	return Result{ID: IDMTASTS, Status: Pass, Target: domain, Found: found, Why: whyMTASTS}
}

const whyMTASTS = "MTA-STS makes senders (Gmail, Outlook, Yahoo) deliver only over TLS with a valid certificate, so the mail cannot be read or redirected on the way."

func policyMX(p *mtasts.Policy) string {
	var l []string
	for _, mx := range p.MX {
		s := mx.Domain.ASCII
		if mx.Wildcard {
			s = "*." + s
		}
		l = append(l, s)
	}
	return strings.Join(l, ", ")
}

// checkTLSRPT checks the domain's TLS-RPT record.
func (c *Checker) checkTLSRPT(ctx context.Context, domain string) Result {
	name := "_smtp._tls." + domain
	fix := c.publish(domain, name, "TXT", "")
	txts, _, err := c.Resolver.LookupTXT(ctx, abs(name))
	if err != nil && !dns.IsNotFound(err) {
		return Result{ID: IDTLSRPT, Status: Error, Target: domain, Found: lookupErr("TLS-RPT record", err), Why: whyTLSRPT, Fix: fix}
	}
	var recs []string
	for _, t := range txts {
		_, is, err := tlsrpt.ParseRecord(t)
		if !is {
			continue
		}
		if err != nil {
			return Result{ID: IDTLSRPT, Status: Fail, Target: domain, Found: fmt.Sprintf("%q: %v", t, err), Why: whyTLSRPT, Fix: fix}
		}
		recs = append(recs, t)
	}
	switch len(recs) {
	case 0:
		return Result{ID: IDTLSRPT, Status: Warn, Target: domain, Found: "no TLS-RPT record: nobody tells you when senders fail to reach you over TLS", Why: whyTLSRPT, Fix: fix}
	case 1:
		return Result{ID: IDTLSRPT, Status: Pass, Target: domain, Found: fmt.Sprintf("%q", recs[0]), Why: whyTLSRPT}
	default:
		return Result{ID: IDTLSRPT, Status: Fail, Target: domain, Found: fmt.Sprintf("%d TLS-RPT records: senders ignore them", len(recs)), Why: whyTLSRPT, Fix: "keep one: " + fix}
	}
}

const whyTLSRPT = "TLS-RPT reports tell you when senders cannot deliver securely (an expired certificate, a wrong MTA-STS policy) before mail is lost."

func quoteAll(l []string) []string {
	out := make([]string, len(l))
	for i, s := range l {
		out[i] = quote(s)
	}
	return out
}

func joinAddrs(ips []netip.Addr) string {
	var l []string
	for _, ip := range ips {
		l = append(l, ip.String())
	}
	return strings.Join(l, ", ")
}

func joinIPs(ips []net.IP) string {
	var l []string
	for _, ip := range ips {
		l = append(l, ip.String())
	}
	return strings.Join(l, ", ")
}

func isNotFound(err error) bool { return dns.IsNotFound(err) }

// publish is the fix that publishes the record `repute dns records` prints for name and
// type (of the TXT records at name, the one whose value starts with prefix): the checks
// pass exactly when the generated records are published.
func (c *Checker) publish(domain, name, typ, prefix string) string {
	if c.records == nil {
		c.records = Records(c.Setup)
	}
	name = strings.ToLower(strings.TrimSuffix(name, ".")) + "."
	for _, r := range c.records {
		if r.Name == name && r.Type == typ && strings.HasPrefix(strings.ToLower(r.Value), prefix) {
			return "publish " + strings.ReplaceAll(ZoneLine(r), "\t", " ") + " (repute dns records " + domain + ")"
		}
	}
	return "publish the " + typ + " record of " + name + " that repute dns records " + domain + " prints"
}
