package classify

import (
	"slices"
	"strings"
	"testing"
)

// FuzzClassify feeds arbitrary replies and MX host names to the classifier. It must never
// panic, and every result must carry one of the 19 categories and one of the 6 actions.
// The seeds are the golden corpus plus inputs aimed at the code parser.
//
//	go test -run='^$' -fuzz=FuzzClassify -fuzztime=30s ./internal/classify
func FuzzClassify(f *testing.F) {
	for _, e := range loadCorpus(f) {
		f.Add(e.reply, "")
	}
	for _, s := range []string{
		"", "5", "55", "550", "550-", "550 ", "550 5", "550 5.", "550 5.1", "550 5.1.", "550 5.1.1",
		"5.1.1", "5.1.1.1", "550 5.1.1234", "550-5.1.1\r\n550", `550-5.1.1 a\n550 5.1.1 b`,
		"|||", "\\", "\\n", "550 550 550-550-", "999 9.9.9", "250 2.0.0 OK", "\x00\xff\xfe",
		"said: 550", ": 550", "550 5.7.1 \u0130\u212a\u017f", strings.Repeat("550-5.1.1 ", MaxReplyBytes/10+10),
	} {
		f.Add(s, "mx.example.com")
	}
	f.Add("550 5.4.1 Recipient address rejected: Access denied", "x.mail.protection.outlook.com")
	f.Add("421 4.7.0 try later", "..google.com..")
	c := Default()
	f.Fuzz(func(t *testing.T, reply, mx string) {
		plain, from := c.Classify(reply), c.ClassifyFrom(reply, mx)
		for _, r := range []Result{plain, from} {
			if !slices.Contains(Categories, r.Category) {
				t.Fatalf("category %q for %q", r.Category, reply)
			}
			if !slices.Contains(Actions, r.Action) {
				t.Fatalf("action %q for %q", r.Action, reply)
			}
			if r.Advice == "" {
				t.Fatalf("no advice for %q", reply)
			}
			if r.Provider != "" && c.byID[r.Provider] == nil {
				t.Fatalf("unknown provider %q for %q", r.Provider, reply)
			}
		}
		// The text decides the provider before the MX host does.
		if plain.Provider != "" && from.Provider != plain.Provider {
			t.Fatalf("ClassifyFrom lost the text's provider %q for %q", plain.Provider, reply)
		}
	})
}
