package classify

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// corpusEntry is one line of testdata/corpus.tsv.
type corpusEntry struct {
	line     int
	category string
	provider string // "" for "-"
	reply    string // with the "\n" escapes turned into line breaks
}

// corpusUnescape turns the corpus's literal "\r\n" and "\n" into line breaks.
var corpusUnescape = strings.NewReplacer(`\r\n`, "\r\n", `\n`, "\n")

func loadCorpus(tb testing.TB) []corpusEntry {
	tb.Helper()
	return loadReplies(tb, "corpus.tsv")
}

// loadReplies reads a file of testdata in the format of corpus.tsv.
func loadReplies(tb testing.TB, name string) []corpusEntry {
	tb.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var out []corpusEntry
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		text := sc.Text()
		if strings.TrimSpace(text) == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.SplitN(text, "\t", 3)
		if len(fields) != 3 {
			tb.Fatalf("%s:%d: want category<TAB>provider<TAB>reply", name, n)
		}
		e := corpusEntry{line: n, category: fields[0], provider: fields[1], reply: corpusUnescape.Replace(fields[2])}
		if !slices.Contains(Categories, e.category) {
			tb.Fatalf("%s:%d: unknown category %q", name, n, e.category)
		}
		if e.provider == "-" {
			e.provider = ""
		} else if Default().byID[e.provider] == nil {
			tb.Fatalf("%s:%d: unknown provider %q", name, n, e.provider)
		}
		out = append(out, e)
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return out
}

// TestCorpus classifies every reply of the golden corpus. It prints every miss and every
// provider mismatch, and fails when category accuracy falls below 95%.
func TestCorpus(t *testing.T) {
	corpus := loadCorpus(t)
	if len(corpus) < 170 {
		t.Errorf("corpus has %d replies, want at least 170", len(corpus))
	}
	c := Default()
	var misses, provMisses []string
	perCategory := map[string]int{}
	for _, e := range corpus {
		perCategory[e.category]++
		got := c.Classify(e.reply)
		if got.Category != e.category {
			misses = append(misses, fmt.Sprintf("corpus.tsv:%d: want %s, got %s (%s): %q",
				e.line, e.category, got.Category, ruleID(c, e.reply), e.reply))
		}
		if got.Provider != e.provider {
			provMisses = append(provMisses, fmt.Sprintf("corpus.tsv:%d: want provider %q, got %q: %q",
				e.line, e.provider, got.Provider, e.reply))
		}
	}
	for _, m := range misses {
		t.Log("MISS " + m)
	}
	for _, m := range provMisses {
		t.Log("PROVIDER " + m)
	}
	acc := 100 * float64(len(corpus)-len(misses)) / float64(len(corpus))
	provAcc := 100 * float64(len(corpus)-len(provMisses)) / float64(len(corpus))
	t.Logf("corpus: %d replies, category accuracy %.1f%% (%d misses), provider accuracy %.1f%% (%d mismatches)",
		len(corpus), acc, len(misses), provAcc, len(provMisses))
	for _, cat := range Categories {
		if perCategory[cat] == 0 {
			t.Errorf("corpus has no reply of category %s", cat)
		}
	}
	if acc < 95 {
		t.Errorf("category accuracy %.1f%% is below 95%%", acc)
	}
}

// TestCorpusLineJoins checks that every multi-line reply of the corpus classifies the same
// whichever way a logger joined its lines.
func TestCorpusLineJoins(t *testing.T) {
	c := Default()
	for _, e := range loadCorpus(t) {
		if !strings.Contains(e.reply, "\n") {
			continue
		}
		lines := strings.Split(strings.ReplaceAll(e.reply, "\r\n", "\n"), "\n")
		want := c.Classify(e.reply)
		for _, sep := range []string{"\r\n", "\n", `\n`, "|", " | ", " "} {
			got := c.Classify(strings.Join(lines, sep))
			if got != want {
				t.Errorf("corpus.tsv:%d joined with %q: got %+v, want %+v", e.line, sep, got, want)
			}
		}
	}
}

// ruleID names the rule that decided a reply, for miss reports.
func ruleID(c *Classifier, reply string) string {
	r := parseReply(reply)
	h := c.m.scan(r.text, nil)
	prov := c.textProvider(r.text, h)
	for _, ru := range c.rules {
		if ru.matches(&r, h, prov) {
			return "rule " + ru.id
		}
	}
	return "no rule"
}
