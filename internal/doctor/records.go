package doctor

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// Record is one DNS resource record a mail domain needs, as `repute dns records` prints
// it and `repute dns push` publishes it (docs/CONTRACTS.md §12). A Record whose Type is
// "" is a note: only Comment and Domain are set, and there is nothing to publish.
type Record struct {
	Name    string `json:"name"`    // absolute, with the trailing dot
	TTL     int    `json:"ttl"`     // seconds
	Type    string `json:"type"`    // MX, A, AAAA, TXT, TLSA, SRV, CNAME, CAA
	Value   string `json:"value"`   // presentation format after the type; TXT text unquoted
	Comment string `json:"comment"` // why the record is there, in one paragraph
	// Domain is the local domain the record serves, or the hostname for the records of the
	// mail host itself (A, AAAA, its SPF, TLSA), which every domain shares.
	Domain string `json:"domain"`
}

// IsNote reports whether r is a note rather than a record.
func (r Record) IsNote() bool { return r.Type == "" }

// TTLs of the generated records. TLSA and the MTA-STS id change at certificate and policy
// rollovers, whose waiting times are counted in TTLs: a short TTL keeps rollovers short.
const (
	TTLDefault  = 3600
	TTLRollover = 300
)

// spfMaxLookups is RFC 7208 §4.6.4's limit on DNS-querying terms in one SPF evaluation.
const spfMaxLookups = 10

// Records returns every DNS record the domains of s need, domain by domain: MX, SPF,
// DKIM, DMARC, MTA-STS, TLS-RPT, client autoconfiguration and CAA. The mail host's own
// records (A/AAAA, SPF for its HELO name, TLSA) come once, with the first domain.
func Records(s Setup) []Record {
	host := strings.ToLower(strings.TrimSuffix(s.Hostname, "."))
	g := generator{s: s, host: host, spf: spfRecord(s)}
	var out []Record
	if len(s.Domains) == 0 {
		out = append(out, g.hostRecords()...)
		return append(out, g.tlsaRecords()...)
	}
	for i, d := range s.Domains {
		name := strings.ToLower(strings.TrimSuffix(d.Name, "."))
		out = append(out, g.mx(name))
		if i == 0 {
			out = append(out, g.hostRecords()...)
		}
		out = append(out, g.spfAt(name))
		out = append(out, g.dkim(name, d.DKIM)...)
		out = append(out, g.dmarc(name))
		out = append(out, g.mtaSTS(name)...)
		out = append(out, g.tlsRPT(name))
		if i == 0 {
			out = append(out, g.tlsaRecords()...)
		}
		out = append(out, g.clientConfig(name)...)
		if c, ok := g.caa(name); ok {
			out = append(out, c)
		}
	}
	return out
}

type generator struct {
	s    Setup
	host string
	spf  spf
}

func fqdn(name string) string { return name + "." }

func (g generator) rec(domain, name string, ttl int, typ, value, comment string) Record {
	return Record{Name: fqdn(name), TTL: ttl, Type: typ, Value: value, Comment: comment, Domain: domain}
}

func (g generator) mx(d string) Record {
	return g.rec(d, d, TTLDefault, "MX", "10 "+fqdn(g.host),
		fmt.Sprintf("MX: mail for %s is delivered to %s (RFC 5321 §5.1).", d, g.host))
}

// hostRecords are the mail host's addresses and the SPF record of its HELO name, which
// receivers check for bounces (empty MAIL FROM, RFC 7208 §2.3).
func (g generator) hostRecords() []Record {
	var out []Record
	for i, ip := range uniqueAddrs(g.s.HostIPs) {
		typ := "A"
		if ip.Is6() {
			typ = "AAAA"
		}
		var c string
		if i == 0 {
			c = fmt.Sprintf("The mail host %s: the MX, SRV and CNAME records point here. Its reverse DNS "+
				"(PTR, set where the address comes from) must name %s too.", g.host, g.host)
		}
		if !isPublic(ip) {
			c = strings.TrimSpace(c + fmt.Sprintf(" %s is not a public address: if the world reaches this "+
				"server through another, set outbound.public_ips to it.", ip))
		}
		out = append(out, g.rec(g.host, g.host, TTLDefault, typ, ip.String(), c))
	}
	if !g.isLocalDomain(g.host) {
		out = append(out, g.rec(g.host, g.host, TTLDefault, "TXT", g.spf.value,
			"SPF for the host's own name (RFC 7208 §2.3): receivers check it for bounces (empty MAIL FROM) and "+
				"for the HELO name. The same senders as the domains' SPF records."))
	}
	return out
}

func (g generator) isLocalDomain(name string) bool {
	for _, d := range g.s.Domains {
		if strings.EqualFold(strings.TrimSuffix(d.Name, "."), name) {
			return true
		}
	}
	return false
}

func (g generator) spfAt(d string) Record {
	return g.rec(d, d, TTLDefault, "TXT", g.spf.value, "SPF (RFC 7208). "+g.spf.comment)
}

// spf is the SPF record every domain gets, and its explanation.
type spf struct {
	value, comment string
	lookups        int
}

// spfRecord builds "v=spf1 ip4:… ip6:… [relay] -all". ip4 and ip6 cost no DNS lookup, so
// the record stays within RFC 7208 §4.6.4's 10 DNS-querying terms by construction: the
// only lookups are the relay's mechanisms (and mx when no sending address is known), and
// relay terms beyond the limit are left out.
func spfRecord(s Setup) spf {
	terms := []string{"v=spf1"}
	var c strings.Builder
	ips := uniqueAddrs(s.SendIPs)
	for _, ip := range ips {
		if ip.Is4() {
			terms = append(terms, "ip4:"+ip.String())
		} else {
			terms = append(terms, "ip6:"+ip.String())
		}
	}
	lookups := 0
	if len(ips) == 0 {
		terms = append(terms, "mx")
		lookups++
		c.WriteString("No sending address is known, so the MX hosts' addresses are authorised; " +
			"set outbound.public_ips to the addresses mail leaves from. ")
	} else {
		fmt.Fprintf(&c, "Only %s may send mail for this name; -all: any other sender fails. ", joinAddrs(ips))
		for _, ip := range ips {
			if !isPublic(ip) {
				fmt.Fprintf(&c, "%s is not a public address: set outbound.public_ips to the address receivers see. ", ip)
			}
		}
	}
	if s.Relay != "" {
		relay, dropped := relayTerms(s.RelaySPF, spfMaxLookups-lookups)
		terms = append(terms, relay...)
		lookups += spfLookups(relay)
		switch {
		case len(relay) == 0:
			fmt.Fprintf(&c, "Mail also leaves through the relay %s, which this record does not authorise yet: "+
				"add its provider's SPF mechanism (such as include:spf.provider.example, from the provider's "+
				"documentation) before -all. ", s.Relay)
		default:
			fmt.Fprintf(&c, "The relay %s is authorised by %s. ", s.Relay, strings.Join(relay, " "))
		}
		if len(dropped) > 0 {
			fmt.Fprintf(&c, "Left out to stay within SPF's 10 DNS lookups: %s. ", strings.Join(dropped, " "))
		}
	}
	terms = append(terms, "-all")
	fmt.Fprintf(&c, "DNS lookups: %d of the 10 SPF allows (ip4/ip6 cost none; an include's own lookups count too).", lookups)
	return spf{value: strings.Join(terms, " "), comment: c.String(), lookups: lookups}
}

// relayTerms turns the relay's SPF mechanisms into terms for our record: a whole record
// given by mistake loses its version and all, a redirect becomes an include (a redirect
// is ignored beside -all, RFC 7208 §6.1), and terms past budget lookups are dropped.
func relayTerms(relaySPF string, budget int) (kept, dropped []string) {
	for _, t := range strings.Fields(relaySPF) {
		lt := strings.ToLower(t)
		switch {
		case lt == "v=spf1" || strings.TrimLeft(lt, "+-~?") == "all":
			continue
		case strings.HasPrefix(lt, "redirect="):
			t = "include:" + t[len("redirect="):]
		case strings.HasPrefix(lt, "exp="):
			continue
		}
		n := spfLookups([]string{t})
		if n > budget {
			dropped = append(dropped, t)
			continue
		}
		budget -= n
		kept = append(kept, t)
	}
	return kept, dropped
}

// spfLookups counts the DNS-querying terms (RFC 7208 §4.6.4) among terms.
func spfLookups(terms []string) int {
	n := 0
	for _, t := range terms {
		t = strings.ToLower(strings.TrimLeft(t, "+-~?"))
		name, _, _ := strings.Cut(t, ":")
		name, _, _ = strings.Cut(name, "/")
		name, _, _ = strings.Cut(name, "=")
		switch name {
		case "include", "a", "mx", "ptr", "exists", "redirect":
			n++
		}
	}
	return n
}

func (g generator) dkim(d string, keys []DKIMKey) []Record {
	if len(keys) == 0 {
		return []Record{{Domain: d, Comment: fmt.Sprintf("DKIM: %s has no key to publish; mail from it is "+
			"not signed ('repute dkim rotate %s' makes one).", d, d)}}
	}
	var out []Record
	for _, k := range keys {
		alg := k.Algorithm
		if alg == "" {
			alg = "rsa"
		}
		var state string
		switch k.State {
		case "pending":
			state = fmt.Sprintf("pending: announced before use. Publish it now; 'repute dkim rotate %s' switches "+
				"signing to it once it is visible.", d)
		case "retired":
			state = "retired: keep published"
			if !k.RetireBy.IsZero() {
				state += " until " + k.RetireBy.UTC().Format("2006-01-02")
			}
			state += ", then remove it. It no longer signs, but mail signed before the rotation may still be " +
				"verified (queues, forwarding)."
		default:
			state = "active: signs " + d + "'s mail now."
		}
		out = append(out, g.rec(d, k.Selector+"._domainkey."+d, TTLDefault, "TXT", k.Record,
			fmt.Sprintf("DKIM (RFC 6376) %s key %s, %s", alg, k.Selector, state)))
	}
	return out
}

// dmarc starts at p=none. Failure reports (ruf, and fo, which only shapes them) are not
// asked for: few receivers send them and they carry message content. Alignment stays
// relaxed (the default): Repute signs with d= the From domain itself, so strict would pass
// too, but relaxed lets mail that other services send from subdomains align, and it
// protects as much, since only the domain's owner controls its subdomains.
func (g generator) dmarc(d string) Record {
	rua := g.reportsAddr(d)
	return g.rec(d, "_dmarc."+d, TTLDefault, "TXT", "v=DMARC1; p=none; rua=mailto:"+rua,
		fmt.Sprintf("DMARC (RFC 7489): p=none asks receivers to report, not to act, while you check that all "+
			"of %s's mail passes. Aggregate reports arrive daily in the reports mailbox %s (it must exist: "+
			"a user or an alias). Once they show that all mail from your own servers passes, change p=none "+
			"to p=quarantine, then to p=reject. No failure reports (ruf): few receivers send them and they carry "+
			"message content. Alignment stays relaxed, the default.", d, rua))
}

func (g generator) reportsAddr(d string) string {
	local := g.s.ReportsLocal
	if local == "" {
		local = "reports"
	}
	return local + "@" + d
}

func (g generator) mtaSTS(d string) []Record {
	mode := g.s.MTASTSMode
	if mode == "" {
		return []Record{{Domain: d, Comment: "MTA-STS: no policy mode is configured (mta_sts.mode), so no records."}}
	}
	_, id := MTASTSPolicy(mode, g.s.MTASTSMaxAge, g.s.PolicyMX())
	c := fmt.Sprintf("MTA-STS (RFC 8461): senders fetch the policy (mode %s) from https://mta-sts.%s/.well-known/mta-sts.txt, "+
		"which Repute serves; the id changes whenever the policy does.", mode, d)
	if mode == "none" {
		c += " Mode none withdraws a policy senders may have cached (RFC 8461 §8.3): keep these records " +
			"until max_age has passed since the last policy they saw, then remove them."
	}
	return []Record{
		g.rec(d, "_mta-sts."+d, TTLRollover, "TXT", "v=STSv1; id="+id, c),
		g.rec(d, "mta-sts."+d, TTLDefault, "CNAME", fqdn(g.host),
			fmt.Sprintf("The MTA-STS policy host is this server. Its HTTPS certificate must name mta-sts.%s "+
				"(with tls.acme_email set, ACME obtains one).", d)),
	}
}

func (g generator) tlsRPT(d string) Record {
	rua := g.reportsAddr(d)
	return g.rec(d, "_smtp._tls."+d, TTLDefault, "TXT", "v=TLSRPTv1; rua=mailto:"+rua,
		fmt.Sprintf("TLS-RPT (RFC 8460): senders report daily on TLS to this domain's MX (MTA-STS, DANE), "+
			"failures included, to %s.", rua))
}

// tlsaRecords publish the current and the next certificate key for DANE on port 25 only:
// RFC 7672 defines DANE for SMTP between servers, where a client cannot check names
// against a CA; submission and IMAP clients use the CA-signed certificate (RFC 8314).
func (g generator) tlsaRecords() []Record {
	if len(g.s.TLSAKeys) == 0 {
		return []Record{{Domain: g.host, Comment: fmt.Sprintf("DANE: no certificate key is known, so no TLSA record "+
			"for _25._tcp.%s (set tls.cert_file, or start the server once so it creates its certificate).", g.host)}}
	}
	var out []Record
	seen := map[string]bool{}
	for i, spki := range g.s.TLSAKeys {
		sum := sha256.Sum256(spki)
		v := "3 1 1 " + hex.EncodeToString(sum[:])
		if seen[v] {
			continue
		}
		seen[v] = true
		var c string
		if i == 0 {
			c = "DANE (RFC 7672): senders that validate DNSSEC accept only this certificate key (DANE-EE, SHA-256 " +
				"of the public key) on port 25; publish it only in a DNSSEC-signed zone. DANE for SMTP is " +
				"port 25 only, so there are no records for 465, 587 or 993. Rollover: publish the next key's " +
				"record at least twice the TTL (10 minutes) before the certificate changes to it; after the " +
				"change, keep this one for twice the TTL more, then remove it."
		} else {
			c = "DANE: the next certificate key, published before it is used (see the rollover rule above)."
		}
		out = append(out, g.rec(g.host, "_25._tcp."+g.host, TTLRollover, "TLSA", v, c))
	}
	return out
}

// clientConfig are the records mail programs configure themselves from: SRV per RFC 6186
// with RFC 8314 §5.1's implicit TLS services preferred (a lower priority number; IMAP with
// STARTTLS on 143 stays as a fallback), POP3 marked as not offered (target ".", RFC 2782),
// and the names Thunderbird's autoconfig and Outlook's autodiscover ask for.
func (g generator) clientConfig(d string) []Record {
	h := fqdn(g.host)
	srv := func(service, value, c string) Record {
		return g.rec(d, service+"._tcp."+d, TTLDefault, "SRV", value, c)
	}
	return []Record{
		srv("_submissions", "0 1 465 "+h, "Client set-up (RFC 6186, RFC 8314 §5.1): mail programs find the "+
			"submission and IMAP servers here; implicit TLS (465, 993) comes first by its lower priority number."),
		srv("_submission", "10 1 587 "+h, "Submission with STARTTLS, the fallback."),
		srv("_imaps", "0 1 993 "+h, "IMAP over implicit TLS."),
		srv("_imap", "10 1 143 "+h, "IMAP with STARTTLS, the fallback."),
		srv("_pop3", "0 0 0 .", "POP3 is not offered (target \".\", RFC 2782)."),
		srv("_pop3s", "0 0 0 .", "POP3 over TLS is not offered."),
		g.rec(d, "autoconfig."+d, TTLDefault, "CNAME", h, "Thunderbird's autoconfig: "+
			"https://autoconfig."+d+"/mail/config-v1.1.xml, served by this server."),
		g.rec(d, "autodiscover."+d, TTLDefault, "CNAME", h, "Outlook's autodiscover, served by this server."),
		srv("_autodiscover", "0 1 443 "+h, "Autodiscover's SRV form, for clients that look there first."),
	}
}

func (g generator) caa(d string) (Record, bool) {
	ca := g.s.ACMECA
	if ca == "" {
		return Record{}, false
	}
	return g.rec(d, d, TTLDefault, "CAA", fmt.Sprintf("0 issue %q", ca),
		fmt.Sprintf("CAA (RFC 8659): only %s may issue certificates for %s and every name under it, including "+
			"the mta-sts and autoconfig names ACME obtains. If other certificates of %s (a website's) come from "+
			"another CA, add an issue record for that CA as well, or leave this record out.", ca, d, d)), true
}

// TXTStrings renders a TXT value in zone-file syntax: split into character-strings of at
// most 255 bytes (RFC 1035 §3.3.14; SPF, DKIM and DMARC readers concatenate them), each
// quoted, with quotes and backslashes escaped and bytes outside printable ASCII as \DDD.
func TXTStrings(s string) string {
	var parts []string
	for {
		n := min(len(s), 255)
		var b strings.Builder
		b.WriteByte('"')
		for i := 0; i < n; i++ {
			c := s[i]
			switch {
			case c == '"' || c == '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			case c < 0x20 || c > 0x7e:
				fmt.Fprintf(&b, "\\%03d", c)
			default:
				b.WriteByte(c)
			}
		}
		b.WriteByte('"')
		parts = append(parts, b.String())
		s = s[n:]
		if s == "" {
			return strings.Join(parts, " ")
		}
	}
}

// ZoneLine renders r as one zone-file line ("" for a note).
func ZoneLine(r Record) string {
	if r.IsNote() {
		return ""
	}
	v := r.Value
	if r.Type == "TXT" {
		v = TXTStrings(v)
	}
	return fmt.Sprintf("%s\t%d\tIN\t%s\t%s", r.Name, r.TTL, r.Type, v)
}

// WriteZone writes recs as a zone-file snippet: each record preceded by its comment as
// ";" lines, an empty line before each comment. Every line parses as a zone file.
func WriteZone(w io.Writer, recs []Record) error {
	var b strings.Builder
	for i, r := range recs {
		if i > 0 && r.Comment != "" {
			b.WriteByte('\n')
		}
		for _, l := range wrap(r.Comment, 96) {
			b.WriteString("; " + l + "\n")
		}
		if l := ZoneLine(r); l != "" {
			b.WriteString(l + "\n")
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// wrap splits text into lines of at most width bytes at spaces (a longer word stays whole).
func wrap(text string, width int) []string {
	var lines []string
	for _, para := range strings.Split(text, "\n") {
		line := ""
		for _, word := range strings.Fields(para) {
			if line != "" && len(line)+1+len(word) > width {
				lines = append(lines, line)
				line = ""
			}
			if line != "" {
				line += " "
			}
			line += word
		}
		if line != "" {
			lines = append(lines, line)
		}
	}
	return lines
}

func uniqueAddrs(ips []netip.Addr) []netip.Addr {
	var out []netip.Addr
	for _, ip := range ips {
		ip = ip.Unmap()
		if ip.IsValid() && !slices.Contains(out, ip) {
			out = append(out, ip)
		}
	}
	return out
}

// LocalIPs lists the unicast addresses of the host's interfaces, without loopback and
// link-local ones, public addresses first: the addresses mail leaves from when
// outbound.public_ips and outbound.source_ips are empty. Loopback addresses are returned
// only when there is nothing else (a development machine without a network).
func LocalIPs() ([]netip.Addr, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("listing the interfaces' addresses: %w", err)
	}
	return localIPs(addrs), nil
}

func localIPs(addrs []net.Addr) []netip.Addr {
	var public, private, loopback []netip.Addr
	for _, a := range addrs {
		var ip net.IP
		switch a := a.(type) {
		case *net.IPNet:
			ip = a.IP
		case *net.IPAddr:
			ip = a.IP
		}
		addr, ok := netip.AddrFromSlice(ip)
		if !ok {
			continue
		}
		addr = addr.Unmap()
		switch {
		case addr.IsLoopback():
			loopback = append(loopback, addr)
		case !addr.IsGlobalUnicast():
			// link-local, multicast, unspecified
		case addr.IsPrivate():
			private = append(private, addr)
		default:
			public = append(public, addr)
		}
	}
	out := uniqueAddrs(append(public, private...))
	if len(out) == 0 {
		return uniqueAddrs(loopback)
	}
	return out
}
