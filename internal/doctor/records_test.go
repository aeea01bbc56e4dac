package doctor

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, x := range s {
		out = append(out, netip.MustParseAddr(x))
	}
	return out
}

func tlsaHex(spki []byte) string {
	sum := sha256.Sum256(spki)
	return hex.EncodeToString(sum[:])
}

func stsID(mode string, maxAge time.Duration, host string) string {
	_, id := MTASTSPolicy(mode, maxAge, []string{host})
	return id
}

// domainLines are the zone lines every domain gets after its DKIM records, minus TLSA.
func dmarcSTSRPT(d, host, id, local string) []string {
	return []string{
		"_dmarc." + d + ".\t3600\tIN\tTXT\t\"v=DMARC1; p=none; rua=mailto:" + local + "@" + d + "\"",
		"_mta-sts." + d + ".\t300\tIN\tTXT\t\"v=STSv1; id=" + id + "\"",
		"mta-sts." + d + ".\t3600\tIN\tCNAME\t" + host + ".",
		"_smtp._tls." + d + ".\t3600\tIN\tTXT\t\"v=TLSRPTv1; rua=mailto:" + local + "@" + d + "\"",
	}
}

func clientLines(d, host string) []string {
	return []string{
		"_submissions._tcp." + d + ".\t3600\tIN\tSRV\t0 1 465 " + host + ".",
		"_submission._tcp." + d + ".\t3600\tIN\tSRV\t10 1 587 " + host + ".",
		"_imaps._tcp." + d + ".\t3600\tIN\tSRV\t0 1 993 " + host + ".",
		"_imap._tcp." + d + ".\t3600\tIN\tSRV\t10 1 143 " + host + ".",
		"_pop3._tcp." + d + ".\t3600\tIN\tSRV\t0 0 0 .",
		"_pop3s._tcp." + d + ".\t3600\tIN\tSRV\t0 0 0 .",
		"autoconfig." + d + ".\t3600\tIN\tCNAME\t" + host + ".",
		"autodiscover." + d + ".\t3600\tIN\tCNAME\t" + host + ".",
		"_autodiscover._tcp." + d + ".\t3600\tIN\tSRV\t0 1 443 " + host + ".",
	}
}

func join(parts ...[]string) []string { return slices.Concat(parts...) }

func TestRecords(t *testing.T) {
	week := 7 * 24 * time.Hour
	cur, next := []byte("current SubjectPublicKeyInfo"), []byte("next SubjectPublicKeyInfo")
	retireBy := time.Date(2026, 3, 9, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		setup    Setup
		want     []string          // every record, as zone lines, in order
		comments map[string]string // zone line (or "note" for the notes, joined) → a phrase its comment holds
	}{
		{
			name: "direct send",
			setup: Setup{Hostname: "mx.example.com", SendIPs: addrs("203.0.113.5"), HostIPs: addrs("203.0.113.5"),
				Domains: []Domain{{Name: "Example.com.", DKIM: []DKIMKey{
					{Selector: "r2026a", Algorithm: "rsa", State: "active", Record: "v=DKIM1; k=rsa; p=MIIB"}}}},
				MTASTSMode: "enforce", MTASTSMaxAge: week, ReportsLocal: "reports", ACMECA: "letsencrypt.org",
				TLSAKeys: [][]byte{cur}},
			want: join([]string{
				"example.com.\t3600\tIN\tMX\t10 mx.example.com.",
				"mx.example.com.\t3600\tIN\tA\t203.0.113.5",
				"mx.example.com.\t3600\tIN\tTXT\t\"v=spf1 ip4:203.0.113.5 -all\"",
				"example.com.\t3600\tIN\tTXT\t\"v=spf1 ip4:203.0.113.5 -all\"",
				"r2026a._domainkey.example.com.\t3600\tIN\tTXT\t\"v=DKIM1; k=rsa; p=MIIB\"",
			}, dmarcSTSRPT("example.com", "mx.example.com", stsID("enforce", week, "mx.example.com"), "reports"),
				[]string{"_25._tcp.mx.example.com.\t300\tIN\tTLSA\t3 1 1 " + tlsaHex(cur)},
				clientLines("example.com", "mx.example.com"),
				[]string{"example.com.\t3600\tIN\tCAA\t0 issue \"letsencrypt.org\""}),
			comments: map[string]string{
				"example.com.\t3600\tIN\tTXT\t\"v=spf1 ip4:203.0.113.5 -all\"":                             "DNS lookups: 0 of the 10",
				"r2026a._domainkey.example.com.\t3600\tIN\tTXT\t\"v=DKIM1; k=rsa; p=MIIB\"":                "active",
				"_dmarc.example.com.\t3600\tIN\tTXT\t\"v=DMARC1; p=none; rua=mailto:reports@example.com\"": "then to p=reject",
				"_25._tcp.mx.example.com.\t300\tIN\tTLSA\t3 1 1 " + tlsaHex(cur):                           "port 25 only",
				"example.com.\t3600\tIN\tCAA\t0 issue \"letsencrypt.org\"":                                 "add an issue record for that CA",
			},
		},
		{
			name: "relay with include, IPv6, two domains, no ACME, current and next TLSA",
			setup: Setup{Hostname: "mail.example.net", SendIPs: addrs("192.0.2.25", "2001:db8::25", "192.0.2.25"),
				HostIPs: addrs("192.0.2.25", "2001:db8::25"),
				Domains: []Domain{
					{Name: "a.example", DKIM: []DKIMKey{{Selector: "e1", Algorithm: "ed25519", State: "active", Record: "v=DKIM1; k=ed25519; p=Zm9v"}}},
					{Name: "b.example", DKIM: []DKIMKey{{Selector: "r1", Algorithm: "rsa", State: "active", Record: "v=DKIM1; k=rsa; p=YmFy"}}},
				},
				Relay: "smtp.relay.example:587", RelaySPF: "include:spf.relay.example",
				MTASTSMode: "testing", MTASTSMaxAge: week, ReportsLocal: "dmarc", TLSAKeys: [][]byte{cur, next}},
			want: join([]string{
				"a.example.\t3600\tIN\tMX\t10 mail.example.net.",
				"mail.example.net.\t3600\tIN\tA\t192.0.2.25",
				"mail.example.net.\t3600\tIN\tAAAA\t2001:db8::25",
				"mail.example.net.\t3600\tIN\tTXT\t\"v=spf1 ip4:192.0.2.25 ip6:2001:db8::25 include:spf.relay.example -all\"",
				"a.example.\t3600\tIN\tTXT\t\"v=spf1 ip4:192.0.2.25 ip6:2001:db8::25 include:spf.relay.example -all\"",
				"e1._domainkey.a.example.\t3600\tIN\tTXT\t\"v=DKIM1; k=ed25519; p=Zm9v\"",
			}, dmarcSTSRPT("a.example", "mail.example.net", stsID("testing", week, "mail.example.net"), "dmarc"),
				[]string{
					"_25._tcp.mail.example.net.\t300\tIN\tTLSA\t3 1 1 " + tlsaHex(cur),
					"_25._tcp.mail.example.net.\t300\tIN\tTLSA\t3 1 1 " + tlsaHex(next),
				},
				clientLines("a.example", "mail.example.net"),
				[]string{
					"b.example.\t3600\tIN\tMX\t10 mail.example.net.",
					"b.example.\t3600\tIN\tTXT\t\"v=spf1 ip4:192.0.2.25 ip6:2001:db8::25 include:spf.relay.example -all\"",
					"r1._domainkey.b.example.\t3600\tIN\tTXT\t\"v=DKIM1; k=rsa; p=YmFy\"",
				}, dmarcSTSRPT("b.example", "mail.example.net", stsID("testing", week, "mail.example.net"), "dmarc"),
				clientLines("b.example", "mail.example.net")),
			comments: map[string]string{
				"a.example.\t3600\tIN\tTXT\t\"v=spf1 ip4:192.0.2.25 ip6:2001:db8::25 include:spf.relay.example -all\"": "DNS lookups: 1 of the 10",
				"_25._tcp.mail.example.net.\t300\tIN\tTLSA\t3 1 1 " + tlsaHex(next):                                    "next certificate key",
			},
		},
		{
			name: "relay without a known SPF mechanism",
			setup: Setup{Hostname: "mx.c.example", SendIPs: addrs("198.51.100.9"), HostIPs: addrs("198.51.100.9"),
				Domains: []Domain{{Name: "c.example", DKIM: []DKIMKey{{Selector: "s", State: "active", Record: "v=DKIM1; p=QQ"}}}},
				Relay:   "relay.provider.example:587", MTASTSMode: "testing", MTASTSMaxAge: week},
			want: join([]string{
				"c.example.\t3600\tIN\tMX\t10 mx.c.example.",
				"mx.c.example.\t3600\tIN\tA\t198.51.100.9",
				"mx.c.example.\t3600\tIN\tTXT\t\"v=spf1 ip4:198.51.100.9 -all\"",
				"c.example.\t3600\tIN\tTXT\t\"v=spf1 ip4:198.51.100.9 -all\"",
				"s._domainkey.c.example.\t3600\tIN\tTXT\t\"v=DKIM1; p=QQ\"",
			}, dmarcSTSRPT("c.example", "mx.c.example", stsID("testing", week, "mx.c.example"), "reports"),
				clientLines("c.example", "mx.c.example")),
			comments: map[string]string{
				"c.example.\t3600\tIN\tTXT\t\"v=spf1 ip4:198.51.100.9 -all\"": "relay.provider.example:587, which this record does not authorise yet: add its provider's SPF mechanism",
				"note": "no TLSA record",
			},
		},
		{
			name: "pending and retired DKIM keys, mode none, hostname is the domain",
			setup: Setup{Hostname: "d.example", SendIPs: addrs("2001:db8::1"), HostIPs: addrs("2001:db8::1"),
				Domains: []Domain{{Name: "d.example", DKIM: []DKIMKey{
					{Selector: "old", Algorithm: "rsa", State: "retired", Record: "v=DKIM1; k=rsa; p=T0xE", RetireBy: retireBy},
					{Selector: "cur", Algorithm: "rsa", State: "active", Record: "v=DKIM1; k=rsa; p=Q1VS"},
					{Selector: "new", Algorithm: "rsa", State: "pending", Record: "v=DKIM1; k=rsa; p=TkVX"},
				}}},
				MTASTSMode: "none", MTASTSMaxAge: 24 * time.Hour, TLSAKeys: [][]byte{cur}},
			want: join([]string{
				"d.example.\t3600\tIN\tMX\t10 d.example.",
				"d.example.\t3600\tIN\tAAAA\t2001:db8::1",
				"d.example.\t3600\tIN\tTXT\t\"v=spf1 ip6:2001:db8::1 -all\"",
				"old._domainkey.d.example.\t3600\tIN\tTXT\t\"v=DKIM1; k=rsa; p=T0xE\"",
				"cur._domainkey.d.example.\t3600\tIN\tTXT\t\"v=DKIM1; k=rsa; p=Q1VS\"",
				"new._domainkey.d.example.\t3600\tIN\tTXT\t\"v=DKIM1; k=rsa; p=TkVX\"",
			}, dmarcSTSRPT("d.example", "d.example", stsID("none", 24*time.Hour, "d.example"), "reports"),
				[]string{"_25._tcp.d.example.\t300\tIN\tTLSA\t3 1 1 " + tlsaHex(cur)},
				clientLines("d.example", "d.example")),
			comments: map[string]string{
				"old._domainkey.d.example.\t3600\tIN\tTXT\t\"v=DKIM1; k=rsa; p=T0xE\"":                                "retired: keep published until 2026-03-09, then remove it",
				"new._domainkey.d.example.\t3600\tIN\tTXT\t\"v=DKIM1; k=rsa; p=TkVX\"":                                "pending: announced before use",
				"_mta-sts.d.example.\t300\tIN\tTXT\t\"v=STSv1; id=" + stsID("none", 24*time.Hour, "d.example") + "\"": "Mode none withdraws a policy",
			},
		},
		{
			name: "no sending address known",
			setup: Setup{Hostname: "mx.e.example", Domains: []Domain{{Name: "e.example"}},
				MTASTSMode: "testing", MTASTSMaxAge: week},
			want: join([]string{
				"e.example.\t3600\tIN\tMX\t10 mx.e.example.",
				"mx.e.example.\t3600\tIN\tTXT\t\"v=spf1 mx -all\"",
				"e.example.\t3600\tIN\tTXT\t\"v=spf1 mx -all\"",
			}, dmarcSTSRPT("e.example", "mx.e.example", stsID("testing", week, "mx.e.example"), "reports"),
				clientLines("e.example", "mx.e.example")),
			comments: map[string]string{
				"e.example.\t3600\tIN\tTXT\t\"v=spf1 mx -all\"": "set outbound.public_ips",
				"note": "has no key to publish",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			recs := Records(tc.setup)
			var got []string
			comments := map[string]string{}
			for _, r := range recs {
				if r.IsNote() {
					comments["note"] += r.Comment + "\n"
					continue
				}
				if r.Comment == "" && r.Type != "SRV" && r.Type != "AAAA" {
					t.Errorf("%s %s has no comment", r.Name, r.Type)
				}
				l := ZoneLine(r)
				got = append(got, l)
				comments[l] = r.Comment
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			for line, phrase := range tc.comments {
				if !strings.Contains(comments[line], phrase) {
					t.Errorf("comment of %q = %q, want it to hold %q", line, comments[line], phrase)
				}
			}
		})
	}
}

func TestRecordsDomainField(t *testing.T) {
	s := Setup{Hostname: "mx.example.net", SendIPs: addrs("192.0.2.1"), HostIPs: addrs("192.0.2.1"),
		Domains: []Domain{{Name: "a.example"}, {Name: "b.example"}}, MTASTSMode: "testing", TLSAKeys: [][]byte{{1}}}
	for _, r := range Records(s) {
		hostRecord := r.Name == "mx.example.net." || r.Name == "_25._tcp.mx.example.net."
		switch {
		case hostRecord && r.Domain != "mx.example.net":
			t.Errorf("%s %s: domain %q, want the hostname", r.Name, r.Type, r.Domain)
		case !hostRecord && !r.IsNote() && !strings.HasSuffix(r.Name, r.Domain+"."):
			t.Errorf("%s %s: domain %q", r.Name, r.Type, r.Domain)
		}
	}
}

// spfTerms counts the DNS-querying terms of an SPF record independently of the generator.
func spfTermCount(record string) int {
	n := 0
	for _, f := range strings.Fields(record)[1:] {
		f = strings.TrimLeft(strings.ToLower(f), "+-~?")
		for _, p := range []string{"include:", "a", "a:", "a/", "mx", "mx:", "mx/", "ptr", "ptr:", "exists:", "redirect="} {
			if f == p || (strings.HasSuffix(p, ":") || strings.HasSuffix(p, "/") || strings.HasSuffix(p, "=")) && strings.HasPrefix(f, p) {
				n++
				break
			}
		}
	}
	return n
}

func TestSPFStaysWithinTenLookups(t *testing.T) {
	var includes []string
	for i := range 12 {
		includes = append(includes, "include:spf"+string(rune('a'+i))+".relay.example")
	}
	tests := []struct {
		relaySPF string
		lookups  int
		value    string // "" = not checked
		dropped  string
	}{
		{"include:spf.relay.example", 1, "v=spf1 ip4:192.0.2.1 include:spf.relay.example -all", ""},
		{"v=spf1 a:out.relay.example mx ~all", 2, "v=spf1 ip4:192.0.2.1 a:out.relay.example mx -all", ""},
		{"redirect=_spf.relay.example", 1, "v=spf1 ip4:192.0.2.1 include:_spf.relay.example -all", ""},
		{"ip4:198.51.100.0/24", 0, "v=spf1 ip4:192.0.2.1 ip4:198.51.100.0/24 -all", ""},
		{strings.Join(includes, " "), 10, "", "include:spfk.relay.example include:spfl.relay.example"},
	}
	for _, tc := range tests {
		s := Setup{Hostname: "mx.x.example", SendIPs: addrs("192.0.2.1"), Relay: "relay:587", RelaySPF: tc.relaySPF,
			Domains: []Domain{{Name: "x.example"}}}
		for _, r := range Records(s) {
			if r.Type != "TXT" || !strings.HasPrefix(r.Value, "v=spf1") {
				continue
			}
			if n := spfTermCount(r.Value); n != tc.lookups || n > 10 {
				t.Errorf("%q: %q has %d DNS-querying terms, want %d (at most 10)", tc.relaySPF, r.Value, n, tc.lookups)
			}
			if tc.value != "" && r.Value != tc.value {
				t.Errorf("%q: SPF %q, want %q", tc.relaySPF, r.Value, tc.value)
			}
			if tc.dropped != "" && r.Name == "x.example." && !strings.Contains(r.Comment, "Left out to stay within SPF's 10 DNS lookups: "+tc.dropped) {
				t.Errorf("%q: comment %q does not name what was left out", tc.relaySPF, r.Comment)
			}
		}
	}
}

func TestMTASTSIDMatchesPolicy(t *testing.T) {
	for _, mode := range []string{"enforce", "testing", "none"} {
		s := Setup{Hostname: "MX.Example.org.", Domains: []Domain{{Name: "example.org"}}, MTASTSMode: mode, MTASTSMaxAge: 86400 * time.Second}
		_, want := MTASTSPolicy(mode, 86400*time.Second, []string{"mx.example.org"})
		found := false
		for _, r := range Records(s) {
			if r.Name == "_mta-sts.example.org." {
				found = true
				if r.Value != "v=STSv1; id="+want || r.TTL != TTLRollover {
					t.Errorf("mode %s: %s %d, want id %s and TTL %d", mode, r.Value, r.TTL, want, TTLRollover)
				}
			}
		}
		if !found {
			t.Errorf("mode %s: no _mta-sts record", mode)
		}
	}
}

// TestZoneRoundTrip parses the zone output with miekg/dns: every line must parse, each
// record must come back, and each TXT value must survive quoting and splitting.
func TestZoneRoundTrip(t *testing.T) {
	long := "v=DKIM1; k=rsa; p=" + strings.Repeat("MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A", 13) // 434 bytes: two strings
	odd := `v=DKIM1; n=a "quoted" \ note, café; p=QUJD`
	s := Setup{Hostname: "mx.example.com", SendIPs: addrs("192.0.2.1", "2001:db8::1"), HostIPs: addrs("192.0.2.1", "2001:db8::1"),
		Domains: []Domain{
			{Name: "example.com", DKIM: []DKIMKey{{Selector: "long", State: "active", Record: long}, {Selector: "odd", State: "pending", Record: odd}}},
			{Name: "example.org"},
		},
		Relay: "relay:25", RelaySPF: "include:spf.relay.example", MTASTSMode: "enforce", MTASTSMaxAge: time.Hour * 24,
		ACMECA: "letsencrypt.org", TLSAKeys: [][]byte{{1, 2, 3}, {4, 5, 6}}}
	recs := Records(s)
	var b strings.Builder
	if err := WriteZone(&b, recs); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, l := range strings.Split(out, "\n") {
		if l == "" || strings.HasPrefix(l, ";") {
			continue
		}
		if _, err := dns.NewRR(l); err != nil {
			t.Errorf("line %q does not parse: %v", l, err)
		}
		if len(l) > 0 && strings.Contains(l, "TXT") {
			for _, q := range quotedStrings(l) {
				if len(q) > 255 {
					t.Errorf("a character-string of %d bytes in %q", len(q), l)
				}
			}
		}
	}
	zp := dns.NewZoneParser(strings.NewReader(out), "", "")
	var parsed []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		parsed = append(parsed, rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("zone does not parse: %v\n%s", err, out)
	}
	var want []Record
	for _, r := range recs {
		if !r.IsNote() {
			want = append(want, r)
		}
	}
	if len(parsed) != len(want) {
		t.Fatalf("parsed %d records, want %d", len(parsed), len(want))
	}
	for i, rr := range parsed {
		r := want[i]
		h := rr.Header()
		if h.Name != r.Name || int(h.Ttl) != r.TTL || dns.TypeToString[h.Rrtype] != r.Type {
			t.Errorf("record %d: %s, want %s %d %s", i, rr, r.Name, r.TTL, r.Type)
		}
		if txt, ok := rr.(*dns.TXT); ok {
			if got := strings.Join(txt.Txt, ""); unescapeTXT(got) != r.Value {
				t.Errorf("TXT %s: %q, want %q", r.Name, unescapeTXT(got), r.Value)
			}
			if r.Value == long && len(txt.Txt) != 2 {
				t.Errorf("the 434-byte DKIM record became %d strings, want 2", len(txt.Txt))
			}
		}
	}
	if !strings.Contains(out, "; DMARC (RFC 7489): p=none asks receivers") {
		t.Errorf("comments are missing from the zone output:\n%s", out)
	}
}

// quotedStrings returns the unescaped contents of the quoted strings of a zone line.
func quotedStrings(l string) []string {
	var out []string
	var cur []byte
	in := false
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case !in && c == '"':
			in, cur = true, nil
		case in && c == '\\' && i+3 < len(l) && l[i+1] >= '0' && l[i+1] <= '9':
			cur = append(cur, (l[i+1]-'0')*100+(l[i+2]-'0')*10+(l[i+3]-'0'))
			i += 3
		case in && c == '\\':
			cur = append(cur, l[i+1])
			i++
		case in && c == '"':
			in = false
			out = append(out, string(cur))
		case in:
			cur = append(cur, c)
		}
	}
	return out
}

// unescapeTXT undoes miekg/dns's presentation escapes of TXT data (\" \\ \DDD).
func unescapeTXT(s string) string {
	return strings.Join(quotedStrings(`"`+s+`"`), "")
}

func TestTXTStrings(t *testing.T) {
	tests := []struct{ in, want string }{
		{"v=spf1 -all", `"v=spf1 -all"`},
		{`a"b\c`, `"a\"b\\c"`},
		{"é", `"\195\169"`},
		{strings.Repeat("x", 256), `"` + strings.Repeat("x", 255) + `" "x"`},
		{"", `""`},
	}
	for _, tc := range tests {
		if got := TXTStrings(tc.in); got != tc.want {
			t.Errorf("TXTStrings(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestLocalIPs(t *testing.T) {
	ipnet := func(s string) net.Addr {
		ip, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		n.IP = ip
		return n
	}
	tests := []struct {
		addrs []net.Addr
		want  []netip.Addr
	}{
		{[]net.Addr{ipnet("127.0.0.1/8"), ipnet("::1/128"), ipnet("10.0.0.5/24"), ipnet("fe80::1/64"),
			ipnet("203.0.113.7/24"), ipnet("2001:db8::7/64")},
			addrs("203.0.113.7", "2001:db8::7", "10.0.0.5")},
		{[]net.Addr{ipnet("127.0.0.1/8"), ipnet("fe80::1/64"), ipnet("::1/128")}, addrs("127.0.0.1", "::1")},
		{nil, nil},
	}
	for _, tc := range tests {
		if got := localIPs(tc.addrs); !slices.Equal(got, tc.want) {
			t.Errorf("localIPs(%v) = %v, want %v", tc.addrs, got, tc.want)
		}
	}
	if ips, err := LocalIPs(); err != nil || len(ips) == 0 {
		t.Errorf("LocalIPs() = %v, %v; want at least loopback", ips, err)
	}
}
