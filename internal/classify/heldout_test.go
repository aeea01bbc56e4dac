package classify

import (
	"fmt"
	"testing"
)

// Minimum category accuracy, in percent, of the provider reply sets. They guard against
// regressions: each is the score the rules reached when the set was last measured, rounded
// down. tuning.tsv (249 of 253, 98.4%), heldout.tsv (62 of 62) and heldout2.tsv (39 of 42
// after it was spent: measured once at 38 of 42, now tuning data) are what the rules were
// fitted to. heldout3.tsv was measured once after tuning at 37 of 45, 82.2%; it is spent
// too: the keyword families and code priors were written looking at its misses among all
// the other replies, and it scores 45 of 45 (heldout2.tsv 40 of 42) since. heldout4.tsv,
// collected after that restructuring and measured once, scored 45 of 62 (72.6%): the
// families did not carry the rules to the 95% aimed at; it is spent too: its misses were
// then read and the families widened (a relay refusal with the verb first, a loop, an
// attachment type, a directory lookup, NXDOMAIN), and it scores 62 of 62 since. reference.tsv,
// the providers' own published code and reply lists (436 lines), scored 357 of 436 (81.9%)
// before the rules were extended from it and 436 of 436 after.
const (
	tuningMinAccuracy    = 98
	heldOutMinAccuracy   = 98
	freshMinAccuracy     = 95
	thirdMinAccuracy     = 97
	fourthMinAccuracy    = 98
	referenceMinAccuracy = 99
	wordingsMinAccuracy  = 98
	fifthMinAccuracy     = 87
	sixthMinAccuracy     = 98
	seventhMinAccuracy   = 94
	eighthMinAccuracy    = 83
)

// TestTuning classifies the provider replies that the rules are tuned on.
func TestTuning(t *testing.T) {
	scoreReplies(t, "tuning.tsv", tuningMinAccuracy)
}

// TestHeldOutFifth classifies the fifth held-out set (testdata/heldout5.tsv), collected after
// heldout4.tsv was spent and measured once, after the rules had been widened from the spent
// sets and testdata/wordings.tsv: 37 of 58 (63.8%). It is spent: its misses were read and
// the families widened (and two Exchange Online code ranges corrected), 51 of 58 since.
func TestHeldOutFifth(t *testing.T) {
	scoreReplies(t, "heldout5.tsv", fifthMinAccuracy)
}

// TestHeldOutSixth classifies the sixth held-out set (testdata/heldout6.tsv): a natural
// sample of field replies of the listed providers, collected and labelled apart from the
// rules (the collection rules and the score are in the file's header). Measured once: 80 of
// 88 (90.9%); it is spent: its misses were read and the families widened, 87 of 88 since
// (TSS04 stays rate_limited, see the file).
func TestHeldOutSixth(t *testing.T) {
	scoreReplies(t, "heldout6.tsv", sixthMinAccuracy)
}

// TestHeldOutSeventh classifies the seventh held-out set (testdata/heldout7.tsv), a
// second natural sample of field replies of the listed providers from other sources,
// collected and labelled apart from the rules after heldout6.tsv was spent. Measured once:
// 38 of 50 (76.0%); it is spent: its misses were read and the rules widened, 47 of 50 since.
func TestHeldOutSeventh(t *testing.T) {
	scoreReplies(t, "heldout7.tsv", seventhMinAccuracy)
}

// TestHeldOutEighth classifies the eighth held-out set (testdata/heldout8.tsv), a third
// natural sample of field replies of the listed providers from sources not used before,
// collected and labelled apart from the rules (by docs/CONTRACTS.md §3) after
// heldout7.tsv was spent. Measured once: 55 of 66 (83.3%); it is spent (56 of 66 since
// Gmail's 4.7.28 deferral is read as rate_limited, as CONTRACTS §3 says).
func TestHeldOutEighth(t *testing.T) {
	scoreReplies(t, "heldout8.tsv", eighthMinAccuracy)
}

// TestWordings classifies the default and typical reply texts of common mail software
// (testdata/wordings.tsv): tuning data written apart from field reports, in batches that
// were scored before the rules were widened for them (the scores are in the file's header).
func TestWordings(t *testing.T) {
	scoreReplies(t, "wordings.tsv", wordingsMinAccuracy)
}

// TestReference classifies the providers' own published reply and code lists
// (testdata/reference.tsv), one line per entry: tuning data that covers every code a
// provider documents, not a measure of generalisation.
func TestReference(t *testing.T) {
	scoreReplies(t, "reference.tsv", referenceMinAccuracy)
}

// TestHeldOut classifies the first held-out set; it is spent (measured twice) and is now
// tuning data, kept as a regression guard. It logs every miss and the accuracy.
func TestHeldOut(t *testing.T) {
	scoreReplies(t, "heldout.tsv", heldOutMinAccuracy)
}

// TestHeldOutFresh classifies the second held-out set (testdata/heldout2.tsv), collected
// after the first was spent; it was measured once and is now spent too, a regression guard.
func TestHeldOutFresh(t *testing.T) {
	scoreReplies(t, "heldout2.tsv", freshMinAccuracy)
}

// TestHeldOutThird classifies the third held-out set (testdata/heldout3.tsv), collected
// after heldout2.tsv was spent and measured once after tuning; it is spent now, a
// regression guard.
func TestHeldOutThird(t *testing.T) {
	scoreReplies(t, "heldout3.tsv", thirdMinAccuracy)
}

// TestHeldOutFourth classifies the fourth held-out set (testdata/heldout4.tsv), collected
// after the rules were restructured into keyword families and code priors, and measured
// once.
func TestHeldOutFourth(t *testing.T) {
	scoreReplies(t, "heldout4.tsv", fourthMinAccuracy)
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
