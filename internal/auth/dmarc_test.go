package auth

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// dmarcZone is served by dnstest for the DMARC tests. Names without a record get
// NXDOMAIN, which makes CheckDMARC try the organizational domain.
var dmarcZone = []string{
	`_dmarc.example.org. TXT "v=DMARC1; p=reject; rua=mailto:dmarc@example.org"`,
	`_dmarc.strict.test. TXT "v=DMARC1; p=reject; adkim=s; aspf=s"`,
	`_dmarc.org.test. TXT "v=DMARC1; p=quarantine; sp=reject"`,
	`_dmarc.nosp.test. TXT "v=DMARC1; p=quarantine"`,
	`_dmarc.own.org.test. TXT "v=DMARC1; p=none"`,
	`_dmarc.pct0.test. TXT "v=DMARC1; p=reject; pct=0"`,
	`_dmarc.pct50.test. TXT "v=DMARC1; p=reject; pct=50"`,
	`_dmarc.pctq.test. TXT "v=DMARC1; p=quarantine; pct=50"`,
	`_dmarc.pctn.test. TXT "v=DMARC1; p=none; pct=50"`,
	`_dmarc.monitor.test. TXT "v=DMARC1; p=none"`,
	`_dmarc.broken.test. TXT "v=DMARC1; p=bogus"`,
	`_dmarc.badtag.test. TXT "v=DMARC1; p=reject; adkim=x"`,
	`_dmarc.nop.test. TXT "v=DMARC1; rua=mailto:r@nop.test"`,
	`_dmarc.badsp.test. TXT "v=DMARC1; p=reject; sp=bogus; rua=mailto:r@badsp.test"`,
	`_dmarc.sub.brokenorg.test. TXT "v=DMARC1; p=reject; pct=200"`,
	`_dmarc.nov.brokenorg.test. TXT "v=DMARC1 p=none"`,
	`_dmarc.brokenorg.test. TXT "v=DMARC1; p=reject"`,
	`_dmarc.multi.test. TXT "v=DMARC1; p=reject"`,
	`_dmarc.multi.test. TXT "v=DMARC1; p=quarantine"`,
	`_dmarc.dup.org.test. TXT "v=DMARC1; p=none"`,
	`_dmarc.dup.org.test. TXT "v=DMARC1; p=none; pct=10"`,
	`_dmarc.other.test. TXT "v=spf1 -all"`,
	`_dmarc.split.test. TXT "v=DMARC1; " "p=reject"`,
	`_dmarc.example.co.uk. TXT "v=DMARC1; p=reject; sp=quarantine"`,
	`_dmarc.xn--bcher-kva.test. TXT "v=DMARC1; p=reject"`,
}

// dmarcMsg builds a message with the given From lines (each CRLF-terminated).
func dmarcMsg(from string) []byte {
	return []byte(from + "To: bob@example.net\r\nSubject: hi\r\n\r\nFrom: body@not.header\r\n")
}

func dmarcSPFPass(domain string) SPFResult {
	return SPFResult{Result: SPFPass, Domain: domain, Identity: "mailfrom"}
}

func dmarcDKIMPass(domain string) DKIMResult {
	return DKIMResult{Result: "pass", Domain: domain, Selector: "s1", Algorithm: "ed25519-sha256"}
}

func TestCheckDMARC(t *testing.T) {
	srv, r := spfTestServer(t, dmarcZone...)
	srv.Fail("_dmarc.servfail.test.", mdns.RcodeServerFailure)
	srv.Fail("_dmarc.orgfail.test.", mdns.RcodeServerFailure)
	srv.Fail("_dmarc.refused.test.", mdns.RcodeRefused)

	const noSample = -1 // sample must not be called
	tests := []struct {
		name   string
		from   string // From lines
		spf    SPFResult
		dkim   []DKIMResult
		sample int
		want   DMARCResult // Result, Domain, PolicyDomain, Policy, Disposition compared
		reason string      // substring of Reason
		err    bool
	}{
		// Alignment.
		{
			name:   "spf aligned relaxed only",
			from:   "From: Alice <alice@example.org>\r\n",
			spf:    dmarcSPFPass("bounce.example.org"),
			dkim:   []DKIMResult{{Result: "none"}},
			want:   DMARCResult{Result: "pass", Domain: "example.org", PolicyDomain: "example.org", Policy: "reject", Disposition: "none"},
			reason: "SPF (bounce.example.org) aligned",
		},
		{
			name:   "dkim aligned only",
			from:   "From: alice@example.org\r\n",
			spf:    SPFResult{Result: SPFFail, Domain: "mailer.test", Identity: "mailfrom"},
			dkim:   []DKIMResult{dmarcDKIMPass("mailer.test"), dmarcDKIMPass("example.org")},
			want:   DMARCResult{Result: "pass", Domain: "example.org", PolicyDomain: "example.org", Policy: "reject", Disposition: "none"},
			reason: "DKIM (example.org) aligned",
		},
		{
			name: "dkim relaxed subdomain d=",
			from: "From: alice@example.org\r\n",
			dkim: []DKIMResult{dmarcDKIMPass("Mail.Example.ORG")},
			want: DMARCResult{Result: "pass", Domain: "example.org", PolicyDomain: "example.org", Policy: "reject", Disposition: "none"},
		},
		{
			name:   "dkim fail with aligned domain",
			from:   "From: alice@example.org\r\n",
			spf:    SPFResult{Result: SPFSoftFail, Domain: "example.org", Identity: "mailfrom"},
			dkim:   []DKIMResult{{Result: "fail", Domain: "example.org"}, dmarcDKIMPass("mailer.test")},
			want:   DMARCResult{Result: "fail", Domain: "example.org", PolicyDomain: "example.org", Policy: "reject", Disposition: "reject"},
			reason: "From domain example.org has DMARC p=reject; SPF (none) and DKIM (mailer.test) not aligned",
		},
		{
			name:   "spf pass unaligned",
			from:   "From: alice@example.org\r\n",
			spf:    dmarcSPFPass("b.test"),
			want:   DMARCResult{Result: "fail", Domain: "example.org", PolicyDomain: "example.org", Policy: "reject", Disposition: "reject"},
			reason: "SPF (b.test) and DKIM (none) not aligned",
		},
		{
			name: "spf helo identity does not count",
			from: "From: alice@example.org\r\n",
			spf:  SPFResult{Result: SPFPass, Domain: "example.org", Identity: "helo"},
			want: DMARCResult{Result: "fail", Domain: "example.org", PolicyDomain: "example.org", Policy: "reject", Disposition: "reject"},
		},
		{
			name: "strict spf exact",
			from: "From: alice@strict.test\r\n",
			spf:  dmarcSPFPass("STRICT.test."),
			want: DMARCResult{Result: "pass", Domain: "strict.test", PolicyDomain: "strict.test", Policy: "reject", Disposition: "none"},
		},
		{
			name:   "strict spf subdomain not aligned",
			from:   "From: alice@strict.test\r\n",
			spf:    dmarcSPFPass("bounce.strict.test"),
			dkim:   []DKIMResult{dmarcDKIMPass("mail.strict.test")},
			want:   DMARCResult{Result: "fail", Domain: "strict.test", PolicyDomain: "strict.test", Policy: "reject", Disposition: "reject"},
			reason: "SPF (bounce.strict.test) and DKIM (mail.strict.test) not aligned",
		},
		{
			name: "strict dkim exact",
			from: "From: alice@strict.test\r\n",
			dkim: []DKIMResult{dmarcDKIMPass("strict.test")},
			want: DMARCResult{Result: "pass", Domain: "strict.test", PolicyDomain: "strict.test", Policy: "reject", Disposition: "none"},
		},

		// Organizational domain and sp=.
		{
			name:   "subdomain uses sp of org record",
			from:   "From: alice@mail.org.test\r\n",
			want:   DMARCResult{Result: "fail", Domain: "mail.org.test", PolicyDomain: "org.test", Policy: "reject", Disposition: "reject"},
			reason: "has DMARC sp=reject (at org.test)",
		},
		{
			name: "subdomain passes via org-aligned dkim",
			from: "From: alice@mail.org.test\r\n",
			dkim: []DKIMResult{dmarcDKIMPass("org.test")},
			want: DMARCResult{Result: "pass", Domain: "mail.org.test", PolicyDomain: "org.test", Policy: "reject", Disposition: "none"},
		},
		{
			name: "org domain itself uses p",
			from: "From: alice@org.test\r\n",
			want: DMARCResult{Result: "fail", Domain: "org.test", PolicyDomain: "org.test", Policy: "quarantine", Disposition: "quarantine"},
		},
		{
			name: "subdomain with own record ignores org sp",
			from: "From: alice@own.org.test\r\n",
			want: DMARCResult{Result: "fail", Domain: "own.org.test", PolicyDomain: "own.org.test", Policy: "none", Disposition: "none"},
		},
		{
			name: "subdomain without sp uses p",
			from: "From: alice@a.b.nosp.test\r\n",
			want: DMARCResult{Result: "fail", Domain: "a.b.nosp.test", PolicyDomain: "nosp.test", Policy: "quarantine", Disposition: "quarantine"},
		},
		{
			name: "multi-label public suffix",
			from: "From: alice@news.example.co.uk\r\n",
			spf:  dmarcSPFPass("bounce.example.co.uk"),
			want: DMARCResult{Result: "pass", Domain: "news.example.co.uk", PolicyDomain: "example.co.uk", Policy: "quarantine", Disposition: "none"},
		},
		{
			name: "multi-label public suffix, other registrant not aligned",
			from: "From: alice@news.example.co.uk\r\n",
			spf:  dmarcSPFPass("evil.co.uk"),
			dkim: []DKIMResult{dmarcDKIMPass("co.uk")},
			want: DMARCResult{Result: "fail", Domain: "news.example.co.uk", PolicyDomain: "example.co.uk", Policy: "quarantine", Disposition: "quarantine"},
		},
		{
			name: "idn from domain",
			from: "From: =?utf-8?q?J=C3=B6rg?= <jörg@Bücher.test>\r\n",
			dkim: []DKIMResult{dmarcDKIMPass("xn--bcher-kva.test")},
			want: DMARCResult{Result: "pass", Domain: "xn--bcher-kva.test", PolicyDomain: "xn--bcher-kva.test", Policy: "reject", Disposition: "none"},
		},

		// pct= sampling.
		{
			name:   "pct=0 steps reject down",
			from:   "From: alice@pct0.test\r\n",
			sample: 0,
			want:   DMARCResult{Result: "fail", Domain: "pct0.test", PolicyDomain: "pct0.test", Policy: "reject", Disposition: "quarantine"},
			reason: "pct=0",
		},
		{
			name:   "pct=50 sampled in",
			from:   "From: alice@pct50.test\r\n",
			sample: 49,
			want:   DMARCResult{Result: "fail", Domain: "pct50.test", PolicyDomain: "pct50.test", Policy: "reject", Disposition: "reject"},
		},
		{
			name:   "pct=50 sampled out",
			from:   "From: alice@pct50.test\r\n",
			sample: 50,
			want:   DMARCResult{Result: "fail", Domain: "pct50.test", PolicyDomain: "pct50.test", Policy: "reject", Disposition: "quarantine"},
		},
		{
			name:   "pct=50 quarantine sampled out",
			from:   "From: alice@pctq.test\r\n",
			sample: 99,
			want:   DMARCResult{Result: "fail", Domain: "pctq.test", PolicyDomain: "pctq.test", Policy: "quarantine", Disposition: "none"},
		},
		{
			name:   "pct=50 pass never samples",
			from:   "From: alice@pct50.test\r\n",
			spf:    dmarcSPFPass("pct50.test"),
			sample: noSample,
			want:   DMARCResult{Result: "pass", Domain: "pct50.test", PolicyDomain: "pct50.test", Policy: "reject", Disposition: "none"},
		},
		{
			name:   "pct with p=none never samples",
			from:   "From: alice@pctn.test\r\n",
			sample: noSample,
			want:   DMARCResult{Result: "fail", Domain: "pctn.test", PolicyDomain: "pctn.test", Policy: "none", Disposition: "none"},
		},
		{
			name:   "pct=100 never samples",
			from:   "From: alice@example.org\r\n",
			sample: noSample,
			want:   DMARCResult{Result: "fail", Domain: "example.org", PolicyDomain: "example.org", Policy: "reject", Disposition: "reject"},
		},

		// No policy.
		{
			name:   "no record",
			from:   "From: alice@norecord.test\r\n",
			want:   DMARCResult{Result: "none", Domain: "norecord.test", Disposition: "none"},
			reason: "no DMARC record for norecord.test",
		},
		{
			name: "no record at subdomain or org",
			from: "From: alice@x.y.norecord.test\r\n",
			want: DMARCResult{Result: "none", Domain: "x.y.norecord.test", Disposition: "none"},
		},
		{
			name: "only non-DMARC TXT",
			from: "From: alice@other.test\r\n",
			want: DMARCResult{Result: "none", Domain: "other.test", Disposition: "none"},
		},
		{
			name:   "broken policy",
			from:   "From: alice@broken.test\r\n",
			want:   DMARCResult{Result: "none", Domain: "broken.test", Disposition: "none"},
			reason: "does not parse",
			err:    true,
		},
		{
			name: "broken tag",
			from: "From: alice@badtag.test\r\n",
			want: DMARCResult{Result: "none", Domain: "badtag.test", Disposition: "none"},
			err:  true,
		},
		{
			// RFC 7489 §6.6.3: no valid p= but a rua= acts as p=none.
			name: "missing p with rua acts as p=none",
			from: "From: alice@nop.test\r\n",
			want: DMARCResult{Result: "fail", Domain: "nop.test", PolicyDomain: "nop.test", Policy: "none", Disposition: "none"},
		},
		{
			name: "bad sp with rua acts as p=none",
			from: "From: alice@badsp.test\r\n",
			want: DMARCResult{Result: "fail", Domain: "badsp.test", PolicyDomain: "badsp.test", Policy: "none", Disposition: "none"},
		},
		{
			// mox's parser only takes "v=DMARC1;" as the start of a DMARC record; without
			// the semicolon it is some other TXT record, so the org domain is asked.
			name: "record without separator after version is not DMARC",
			from: "From: alice@nov.brokenorg.test\r\n",
			want: DMARCResult{Result: "fail", Domain: "nov.brokenorg.test", PolicyDomain: "brokenorg.test", Policy: "reject", Disposition: "reject"},
		},
		{
			name: "broken record at From domain does not fall back to org",
			from: "From: alice@sub.brokenorg.test\r\n",
			want: DMARCResult{Result: "none", Domain: "sub.brokenorg.test", Disposition: "none"},
			err:  true,
		},
		{
			name:   "several records",
			from:   "From: alice@multi.test\r\n",
			want:   DMARCResult{Result: "none", Domain: "multi.test", Disposition: "none"},
			reason: "several DMARC records",
			err:    true,
		},
		{
			// mox's behaviour, not RFC 7489 §6.6.3 step 6 (which stops at the From domain);
			// documented in CheckDMARC. A change in a mox upgrade shows up here.
			name: "several records at subdomain: org domain asked",
			from: "From: alice@dup.org.test\r\n",
			want: DMARCResult{Result: "fail", Domain: "dup.org.test", PolicyDomain: "org.test", Policy: "reject", Disposition: "reject"},
		},
		{
			name: "record in several character-strings",
			from: "From: alice@split.test\r\n",
			want: DMARCResult{Result: "fail", Domain: "split.test", PolicyDomain: "split.test", Policy: "reject", Disposition: "reject"},
		},
		{
			name: "domain literal",
			from: "From: alice@[192.0.2.1]\r\n",
			want: DMARCResult{Result: "none", Domain: "[192.0.2.1]", Disposition: "none"},
			err:  true,
		},
		{
			name: "over-long domain",
			from: "From: alice@" + strings.Repeat("a", 64) + ".test\r\n",
			want: DMARCResult{Result: "none", Domain: strings.Repeat("a", 64) + ".test", Disposition: "none"},
			err:  true,
		},

		// Temporary errors.
		{
			name:   "servfail",
			from:   "From: alice@servfail.test\r\n",
			spf:    dmarcSPFPass("servfail.test"),
			want:   DMARCResult{Result: "temperror", Domain: "servfail.test", Disposition: "none"},
			reason: "failed temporarily",
			err:    true,
		},
		{
			name: "refused",
			from: "From: alice@refused.test\r\n",
			want: DMARCResult{Result: "temperror", Domain: "refused.test", Disposition: "none"},
			err:  true,
		},
		{
			name: "org domain lookup fails",
			from: "From: alice@mail.orgfail.test\r\n",
			want: DMARCResult{Result: "temperror", Domain: "mail.orgfail.test", Disposition: "none"},
			err:  true,
		},
		{
			name:   "fail with aligned spf temperror",
			from:   "From: alice@example.org\r\n",
			spf:    SPFResult{Result: SPFTempError, Domain: "bounce.example.org", Identity: "mailfrom"},
			dkim:   []DKIMResult{{Result: "fail", Domain: "example.org"}},
			want:   DMARCResult{Result: "temperror", Domain: "example.org", PolicyDomain: "example.org", Policy: "reject", Disposition: "none"},
			reason: "SPF check of bounce.example.org failed temporarily",
			err:    true,
		},
		{
			name:   "fail with aligned dkim temperror",
			from:   "From: alice@example.org\r\n",
			spf:    dmarcSPFPass("b.test"),
			dkim:   []DKIMResult{{Result: "temperror", Domain: "example.org"}},
			want:   DMARCResult{Result: "temperror", Domain: "example.org", PolicyDomain: "example.org", Policy: "reject", Disposition: "none"},
			reason: "DKIM check of example.org failed temporarily",
			err:    true,
		},
		{
			name: "unaligned temperrors keep fail",
			from: "From: alice@example.org\r\n",
			spf:  SPFResult{Result: SPFTempError, Domain: "b.test", Identity: "mailfrom"},
			dkim: []DKIMResult{{Result: "temperror", Domain: "c.test"}},
			want: DMARCResult{Result: "fail", Domain: "example.org", PolicyDomain: "example.org", Policy: "reject", Disposition: "reject"},
		},
		{
			name: "strict mode: subdomain temperror cannot align",
			from: "From: alice@strict.test\r\n",
			dkim: []DKIMResult{{Result: "temperror", Domain: "mail.strict.test"}},
			want: DMARCResult{Result: "fail", Domain: "strict.test", PolicyDomain: "strict.test", Policy: "reject", Disposition: "reject"},
		},
		{
			name: "helo temperror does not count",
			from: "From: alice@example.org\r\n",
			spf:  SPFResult{Result: SPFTempError, Domain: "example.org", Identity: "helo"},
			want: DMARCResult{Result: "fail", Domain: "example.org", PolicyDomain: "example.org", Policy: "reject", Disposition: "reject"},
		},
		{
			name: "pass wins over aligned temperror",
			from: "From: alice@example.org\r\n",
			spf:  SPFResult{Result: SPFTempError, Domain: "example.org", Identity: "mailfrom"},
			dkim: []DKIMResult{dmarcDKIMPass("example.org")},
			want: DMARCResult{Result: "pass", Domain: "example.org", PolicyDomain: "example.org", Policy: "reject", Disposition: "none"},
		},

		// From field problems.
		{
			name:   "two From fields",
			from:   "From: alice@example.org\r\nFrom: mallory@evil.test\r\n",
			want:   DMARCResult{Result: "permerror", Disposition: "none"},
			reason: "2 From fields",
			err:    true,
		},
		{
			name:   "two addresses",
			from:   "From: alice@example.org, mallory@evil.test\r\n",
			want:   DMARCResult{Result: "permerror", Disposition: "none"},
			reason: "2 addresses",
			err:    true,
		},
		{
			name: "no From",
			from: "Sender: alice@example.org\r\n",
			want: DMARCResult{Result: "permerror", Disposition: "none"},
			err:  true,
		},
		{
			name: "empty group",
			from: "From: undisclosed:;\r\n",
			want: DMARCResult{Result: "permerror", Disposition: "none"},
			err:  true,
		},
		{
			name: "From does not parse",
			from: "From: alice at example.org\r\n",
			want: DMARCResult{Result: "permerror", Disposition: "none"},
			err:  true,
		},
		{
			name: "folded From, lower-case name, unknown charset",
			from: "from : =?x-unknown?q?Alice?=\r\n <alice@EXAMPLE.org>\r\n",
			spf:  dmarcSPFPass("example.org"),
			want: DMARCResult{Result: "pass", Domain: "example.org", PolicyDomain: "example.org", Policy: "reject", Disposition: "none"},
		},
		{
			name: "Resent-From is not From",
			from: "Resent-From: x@y.test\r\nFrom: alice@example.org\r\n",
			spf:  dmarcSPFPass("example.org"),
			want: DMARCResult{Result: "pass", Domain: "example.org", PolicyDomain: "example.org", Policy: "reject", Disposition: "none"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sample := func() int { return tc.sample }
			if tc.sample == noSample {
				sample = func() int {
					t.Error("sample called")
					return 0
				}
			}
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			got := CheckDMARC(ctx, r, dmarcMsg(tc.from), tc.spf, tc.dkim, sample)
			wantDMARC(t, got, tc.want)
			if !strings.Contains(got.Reason, tc.reason) {
				t.Errorf("Reason %q, want it to contain %q", got.Reason, tc.reason)
			}
			if got.Reason == "" {
				t.Error("empty Reason")
			}
			if (got.Err != nil) != tc.err {
				t.Errorf("Err %v, want error: %v", got.Err, tc.err)
			}
		})
	}
}

func wantDMARC(t *testing.T, got, want DMARCResult) {
	t.Helper()
	if got.Result != want.Result || got.Domain != want.Domain || got.PolicyDomain != want.PolicyDomain ||
		got.Policy != want.Policy || got.Disposition != want.Disposition {
		t.Errorf("got result=%s domain=%q policydomain=%q policy=%q disposition=%q (reason %q, err %v)\n"+
			"want result=%s domain=%q policydomain=%q policy=%q disposition=%q",
			got.Result, got.Domain, got.PolicyDomain, got.Policy, got.Disposition, got.Reason, got.Err,
			want.Result, want.Domain, want.PolicyDomain, want.Policy, want.Disposition)
	}
}

// TestCheckDMARCTimeout: a DMARC query that is never answered ends at the caller's
// deadline with temperror, not a verdict.
func TestCheckDMARCTimeout(t *testing.T) {
	srv, r := spfTestServer(t, dmarcZone...)
	srv.Drop("_dmarc.slow.test.")
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	got := CheckDMARC(ctx, r, dmarcMsg("From: alice@slow.test\r\n"), dmarcSPFPass("other.test"), nil, nil)
	wantDMARC(t, got, DMARCResult{Result: "temperror", Domain: "slow.test", Disposition: "none"})
	if got.Err == nil {
		t.Error("no Err")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

// TestCheckDMARCDefaultSample: without a sample function, pct=50 applies the policy to
// some messages and steps it down for others.
func TestCheckDMARCDefaultSample(t *testing.T) {
	_, r := spfTestServer(t, dmarcZone...)
	seen := map[string]int{}
	for range 64 {
		got := CheckDMARC(t.Context(), r, dmarcMsg("From: alice@pct50.test\r\n"), SPFResult{}, nil, nil)
		seen[got.Disposition]++
	}
	if len(seen) != 2 || seen["reject"] == 0 || seen["quarantine"] == 0 {
		t.Errorf("dispositions over 64 messages: %v, want both reject and quarantine", seen)
	}
}

// TestCheckDMARCEndToEnd runs the real SPF and DKIM checks before DMARC.
func TestCheckDMARCEndToEnd(t *testing.T) {
	keys := testKeys(t)
	_, r := startDNS(t, keys,
		`_dmarc.example.org. TXT "v=DMARC1; p=reject"`,
		`bounce.example.org. TXT "v=spf1 ip4:192.0.2.1 -all"`,
		`mailer.test. TXT "v=spf1 ip4:192.0.2.2 -all"`,
	)
	signed := signTestMessage(t, keys, testMessage)
	tampered := []byte(strings.Replace(string(signed), "the numbers are in.", "send the money.", 1))
	tests := []struct {
		name     string
		msg      []byte
		ip, from string
		want     string
	}{
		{"dkim and spf", signed, "192.0.2.1", "bounce@bounce.example.org", "pass"},
		{"dkim only", signed, "192.0.2.2", "bounce@mailer.test", "pass"},
		{"spf only", tampered, "192.0.2.1", "bounce@bounce.example.org", "pass"},
		{"neither", tampered, "192.0.2.2", "bounce@mailer.test", "fail"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			spf := CheckSPF(t.Context(), r, netip.MustParseAddr(tc.ip), "mx.mailer.test", tc.from)
			dkim := VerifyDKIM(t.Context(), r, tc.msg)
			got := CheckDMARC(t.Context(), r, tc.msg, spf, dkim, nil)
			if got.Result != tc.want {
				t.Errorf("dmarc %s (%s), want %s; spf %s, dkim %v", got.Result, got.Reason, tc.want, spf.Result, dkim)
			}
			if tc.want == "fail" && (got.Disposition != "reject" ||
				got.Reason != "From domain example.org has DMARC p=reject; SPF (mailer.test) and DKIM (none) not aligned") {
				t.Errorf("disposition %s, reason %q", got.Disposition, got.Reason)
			}
		})
	}
}

func TestDMARCAuthResults(t *testing.T) {
	tests := []struct {
		res  DMARCResult
		want string
	}{
		{DMARCResult{Result: "fail", Domain: "a.test", Policy: "reject", Disposition: "reject"},
			"dmarc=fail (p=reject dis=reject) header.from=a.test"},
		{DMARCResult{Result: "pass", Domain: "a.test", PolicyDomain: "a.test", Policy: "quarantine", Disposition: "none"},
			"dmarc=pass (p=quarantine dis=none) header.from=a.test"},
		{DMARCResult{Result: "none", Domain: "a.test", Disposition: "none"},
			"dmarc=none header.from=a.test"},
		{DMARCResult{Result: "none", Domain: "[192.0.2.1]", Disposition: "none"},
			`dmarc=none header.from="[192.0.2.1]"`},
		{DMARCResult{Result: "permerror", Disposition: "none"},
			"dmarc=permerror"},
	}
	for _, tc := range tests {
		if got := tc.res.AuthResults(); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}
