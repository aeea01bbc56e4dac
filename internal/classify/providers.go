package classify

import (
	"fmt"

	"github.com/repute-mail/repute/internal/provider"
	"slices"
	"strings"
)

// providerSpec is one [[provider]] as written; see providers.toml for the meaning of each
// key.
type providerSpec struct {
	ID         string            `toml:"id"`
	Name       string            `toml:"name"`
	MXSuffixes []string          `toml:"mx_suffixes"`
	Text       []string          `toml:"text"`
	TextRegexp []string          `toml:"text_regexp"`
	URL        string            `toml:"url"`
	URLs       map[string]string `toml:"urls"`
	Disabled   bool              `toml:"disabled"`
}

// providerRules is a compiled providerSpec.
type providerRules struct {
	id       string
	suffixes []string
	text     []int32 // pattern ids of substrings
	res      []guardedRegexp
	url      string
	urls     map[string]string // category → remediation page
	admin    bool
	seq      int
}

// senderSide are the categories where the provider's sender-support page helps, so it is
// the URL of a result whose rule names none.
var senderSide = map[string]bool{
	IPReputation: true, DomainReputation: true, RateLimited: true, ContentSpam: true,
	Authentication: true, ReverseDNS: true, Policy: true, TLSRequired: true,
}

// urlFor returns the remediation page of the provider for a category, or "".
func (p *providerRules) urlFor(category string) string {
	if u, ok := p.urls[category]; ok {
		return u
	}
	if senderSide[category] {
		return p.url
	}
	return ""
}

// identifies reports whether the normalised reply text, whose substrings found are h,
// names the provider.
func (p *providerRules) identifies(text string, h hits) bool {
	for _, id := range p.text {
		if h.has(id) {
			return true
		}
	}
	for _, g := range p.res {
		if g.matches(text, h) {
			return true
		}
	}
	return false
}

// textProvider returns the first provider, in table order, that the text names.
func (c *Classifier) textProvider(text string, h hits) string {
	for _, p := range c.providers {
		if p.identifies(text, h) {
			return p.id
		}
	}
	return ""
}

func (s *source) providerErrorf(id, format string, args ...any) error {
	return fmt.Errorf("classify: %s:%d: provider %q: %s", s.name, s.idLine(id), id, fmt.Sprintf(format, args...))
}

func (c *Classifier) buildProviders(srcs []*source) error {
	var list []*providerRules
	index := map[string]int{}
	for _, s := range srcs {
		seen := map[string]bool{}
		for _, spec := range s.file.Provider {
			if spec.ID == "" {
				return fmt.Errorf("classify: %s: a provider has no id", s.name)
			}
			if seen[spec.ID] {
				return s.providerErrorf(spec.ID, "duplicate id in the same file")
			}
			seen[spec.ID] = true
			if spec.Disabled {
				if i, ok := index[spec.ID]; ok {
					list[i] = nil
				}
				continue
			}
			p, err := c.compileProvider(spec, s)
			if err != nil {
				return err
			}
			if i, ok := index[spec.ID]; ok && list[i] != nil {
				list[i] = p
				continue
			}
			index[spec.ID] = len(list)
			list = append(list, p)
		}
	}
	for i, p := range list {
		if p == nil {
			continue
		}
		p.seq = i
		c.providers = append(c.providers, p)
		c.byID[p.id] = p
	}
	// Admin providers are tried first, then in file order: destination providers before
	// the blocklist operators their replies quote.
	slices.SortStableFunc(c.providers, func(a, b *providerRules) int {
		if a.admin != b.admin {
			return boolOrder(a.admin, b.admin)
		}
		return a.seq - b.seq
	})
	// Suffixes: an admin's entry for a suffix wins, else the first in the table.
	entries := make([]provider.Entry, 0, len(c.providers))
	for _, p := range c.providers {
		entries = append(entries, provider.Entry{ID: p.id, MXSuffixes: p.suffixes})
	}
	c.table = provider.NewTable(entries)
	return nil
}

func (c *Classifier) compileProvider(spec providerSpec, s *source) (*providerRules, error) {
	p := &providerRules{id: spec.ID, url: strings.TrimSpace(spec.URL), admin: s.admin}
	if strings.TrimSpace(spec.ID) != spec.ID || strings.ContainsAny(spec.ID, " \t") {
		return nil, s.providerErrorf(spec.ID, "id must not contain spaces")
	}
	for _, suf := range spec.MXSuffixes {
		n := strings.Trim(strings.ToLower(strings.TrimSpace(suf)), ".")
		if n == "" || strings.ContainsAny(n, " \t/") {
			return nil, s.providerErrorf(spec.ID, "bad mx suffix %q", suf)
		}
		p.suffixes = append(p.suffixes, n)
	}
	for _, t := range spec.Text {
		n := normalizePattern(t)
		if n == "" {
			return nil, s.providerErrorf(spec.ID, "empty text pattern")
		}
		p.text = append(p.text, c.pats.add(n))
	}
	for _, expr := range spec.TextRegexp {
		g, err := c.pats.compileRegexp(expr)
		if err != nil {
			return nil, s.providerErrorf(spec.ID, "bad regexp %q: %v", expr, err)
		}
		p.res = append(p.res, g)
	}
	if len(spec.URLs) > 0 {
		p.urls = map[string]string{}
		for cat, u := range spec.URLs {
			if !slices.Contains(Categories, cat) {
				return nil, s.providerErrorf(spec.ID, "urls: unknown category %q", cat)
			}
			p.urls[cat] = strings.TrimSpace(u)
		}
	}
	return p, nil
}
