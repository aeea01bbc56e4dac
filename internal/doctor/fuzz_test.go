package doctor

import (
	"context"
	"strings"
	"testing"

	"github.com/repute-mail/repute/internal/dns"
)

// FuzzParseTSIGKey feeds key files in any shape: the parser must return a key or an
// error, never panic, whatever the file holds.
func FuzzParseTSIGKey(f *testing.F) {
	for _, s := range []string{
		`key "repute." { algorithm hmac-sha256; secret "c2VjcmV0c2VjcmV0c2VjcmV0"; };`,
		"key:\n  - id: repute\n    algorithm: hmac-sha256\n    secret: c2VjcmV0\n# hmac-sha256:repute:c2VjcmV0\n",
		"hmac-sha512:repute.:c2VjcmV0",
		`key "x" { algorithm hmac-md5; secret "!!"; };`,
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		if len(text) > 1<<16 {
			return
		}
		k, err := ParseTSIGKey(text)
		if err == nil && k.Name == "" {
			t.Errorf("a key without a name: %q", text)
		}
	})
}

// FuzzDomainRecords checks the record parsers of the checks (SPF terms and lookups, DKIM
// tags, the all term) on records as any DNS server could publish them: bounded work, no
// panic.
func FuzzDomainRecords(f *testing.F) {
	for _, s := range []string{
		"v=spf1 include:a.example -all", "v=spf1 a mx ptr exists:%{i}.x redirect=b.example",
		"v=DKIM1; k=rsa; p=ABC", "v=spf1 include: include:: =", "v=spf1 " + strings.Repeat("include:a.example ", 50),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rec string) {
		if len(rec) > 1<<12 {
			return
		}
		r := &dns.Fake{TXT: map[string][]string{"a.example.": {rec}, "b.example.": {rec}}}
		c := &Checker{Resolver: r}
		c.defaults()
		if n, _ := c.spfLookups(context.Background(), "v=spf1 "+rec, 0); n > 11 {
			t.Errorf("lookups %d past the cap", n)
		}
		spfAll(rec)
		dkimTag(rec, "p")
	})
}
