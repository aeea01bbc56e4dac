package auth

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/repute-mail/repute/internal/dns"
)

// FuzzDMARCRecord serves the input as the DMARC record of fuzz.example (the From domain
// itself, and the organizational domain of sub.fuzz.example) from an in-memory
// resolver, and runs CheckDMARC with aligned, unaligned and temporarily failed SPF and
// DKIM results. It checks that nothing panics and that the result is consistent:
// known values only, a disposition only for a fail and never stronger than the policy,
// no line breaks in what goes into header fields and replies. More seeds are in
// testdata/fuzz/FuzzDMARCRecord.
func FuzzDMARCRecord(f *testing.F) {
	seeds := []string{
		"v=DMARC1; p=reject",
		"v=DMARC1; p=quarantine; sp=reject; adkim=s; aspf=s; pct=50; fo=0:1:d:s; rf=afrf; ri=3600; " +
			"rua=mailto:agg@fuzz.example!10m,mailto:agg2@other.example; ruf=mailto:fail@fuzz.example",
		"v=DMARC1;p=none;sp=quarantine;pct=0",
		"V=DMARC1 ; P=Reject ; ADKIM=S",
		"v=DMARC1; rua=mailto:r@fuzz.example",
		"v=DMARC1; p=reject; sp=bogus; rua=mailto:r@fuzz.example",
		"v=DMARC1; p=reject; pct=101",
		"v=DMARC1; p=reject; pct=99999999999999999999999",
		"v=DMARC1; p=reject; p=none",
		"v=DMARC1; p=reject; adkim=x",
		"v=DMARC1; p=reject; rua=nota uri",
		"v=DMARC1; p=reject; unknown=tag",
		"v=DMARC1 p=reject",
		"v=DMARC1;",
		"v=DMARC1",
		"v=dmarc1; p=reject",
		"v=spf1 -all",
		"",
		";;;",
		"v=DMARC1; p=reject;\x00\xff",
	}
	for i, s := range seeds {
		f.Add(s, uint8(i*13))
	}

	results := []string{"pass", "fail", "none", "temperror", "permerror"}
	policies := []string{"none", "quarantine", "reject"}
	strength := map[string]int{"none": 0, "quarantine": 1, "reject": 2}
	msgs := [][]byte{
		[]byte("From: a@fuzz.example\r\n\r\n"),
		[]byte("From: a@sub.fuzz.example\r\n\r\n"),
	}
	inputs := []struct {
		spf  SPFResult
		dkim []DKIMResult
	}{
		{dmarcSPFPass("other.example"), []DKIMResult{dmarcDKIMPass("other.example")}},
		{SPFResult{Result: SPFFail, Domain: "fuzz.example", Identity: "mailfrom"}, []DKIMResult{dmarcDKIMPass("sub.fuzz.example")}},
		{dmarcSPFPass("fuzz.example"), nil},
		{SPFResult{Result: SPFTempError, Domain: "bounce.fuzz.example", Identity: "mailfrom"}, []DKIMResult{{Result: "temperror", Domain: "fuzz.example"}}},
	}

	f.Fuzz(func(t *testing.T, record string, sample uint8) {
		r := dns.Fake{TXT: map[string][]string{"_dmarc.fuzz.example.": {record}}}
		for _, msg := range msgs {
			for _, in := range inputs {
				res := CheckDMARC(context.Background(), r, msg, in.spf, in.dkim, func() int { return int(sample) % 100 })
				switch {
				case !slices.Contains(results, res.Result):
					t.Errorf("record %q: result %q", record, res.Result)
				case !slices.Contains(policies, res.Disposition):
					t.Errorf("record %q: disposition %q", record, res.Disposition)
				case res.Policy != "" && !slices.Contains(policies, res.Policy):
					t.Errorf("record %q: policy %q", record, res.Policy)
				case res.Result != "fail" && res.Disposition != "none":
					t.Errorf("record %q: result %s with disposition %s", record, res.Result, res.Disposition)
				case strength[res.Disposition] > strength[res.Policy]:
					t.Errorf("record %q: disposition %s stronger than policy %q", record, res.Disposition, res.Policy)
				case (res.Policy == "") != (res.PolicyDomain == ""):
					t.Errorf("record %q: policy %q at %q", record, res.Policy, res.PolicyDomain)
				case res.Result == "temperror" || res.Result == "permerror":
					if res.Err == nil {
						t.Errorf("record %q: %s without error", record, res.Result)
					}
				}
				if ar := res.AuthResults(); strings.ContainsAny(ar, "\r\n") || strings.ContainsAny(res.Reason, "\r\n") {
					t.Errorf("record %q: line break in %q or %q", record, ar, res.Reason)
				}
			}
		}
	})
}
