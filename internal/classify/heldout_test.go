package classify

import (
	"fmt"
	"testing"
)

// Minimum category accuracy, in percent, of the provider reply sets (testdata/tuning.tsv and
// testdata/heldout.tsv). They guard against regressions: each is the score the rules reached
// when the sets were last measured, rounded down (tuning 121 of 124, 97.6%; held-out 52 of
// 62, 83.9%, measured once after tuning). The held-out score is below the 95% aimed at, and
// its threshold says so rather than pretending otherwise.
const (
	tuningMinAccuracy  = 97
	heldOutMinAccuracy = 83
	freshMinAccuracy   = 0 // set after the single final measurement
)

// TestTuning classifies the provider replies that the rules are tuned on.
func TestTuning(t *testing.T) {
	scoreReplies(t, "tuning.tsv", tuningMinAccuracy)
}

// TestHeldOut classifies the held-out provider replies, which no rule was fitted to. It logs
// every miss and the accuracy.
func TestHeldOut(t *testing.T) {
	scoreReplies(t, "heldout.tsv", heldOutMinAccuracy)
}

// TestHeldOutFresh classifies the second held-out set (testdata/heldout2.tsv), collected
// after the first was spent and measured once after tuning.
func TestHeldOutFresh(t *testing.T) {
	scoreReplies(t, "heldout2.tsv", freshMinAccuracy)
}

// scoreReplies classifies every reply of a testdata file as delivery does, with the MX host
// of the provider that sent it, logs the misses and fails below min percent.
func scoreReplies(t *testing.T, name string, min float64) {
	t.Helper()
	entries := loadReplies(t, name)
	if len(entries) == 0 {
		t.Fatalf("%s has no replies", name)
	}
	c := Default()
	misses := 0
	for _, e := range entries {
		got := c.ClassifyFrom(e.reply, providerMX(c, e.provider))
		if got.Category != e.category {
			misses++
			t.Log(fmt.Sprintf("MISS %s:%d: want %s, got %s (%s): %q",
				name, e.line, e.category, got.Category, ruleIDFrom(c, e.reply, e.provider), e.reply))
		}
	}
	acc := 100 * float64(len(entries)-misses) / float64(len(entries))
	t.Logf("%s: %d replies, category accuracy %.1f%% (%d misses)", name, len(entries), acc, misses)
	if acc < min {
		t.Errorf("%s: category accuracy %.1f%% is below %.0f%%", name, acc, min)
	}
}

// providerMX returns a host name under the first MX suffix of a provider, or "" when the
// provider is unknown or has no MX hosts of its own (blocklist operators).
func providerMX(c *Classifier, id string) string {
	if p := c.byID[id]; p != nil && len(p.suffixes) > 0 {
		return "mx." + p.suffixes[0]
	}
	return ""
}

// ruleIDFrom is ruleID for a reply from the MX host of a provider.
func ruleIDFrom(c *Classifier, reply, providerID string) string {
	r := parseReply(reply)
	h := c.m.scan(r.text, nil)
	prov := c.textProvider(r.text, h)
	if prov == "" {
		prov = c.Provider(providerMX(c, providerID))
	}
	for _, ru := range c.rules {
		if ru.matches(&r, h, prov) {
			return "rule " + ru.id
		}
	}
	return "no rule"
}
