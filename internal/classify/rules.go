package classify

import (
	"cmp"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"regexp"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/repute-mail/repute/internal/provider"
)

//go:embed rules.toml
var embeddedRules string

// embeddedProviders is the provider table, which lives with the provider package (route
// groups destinations by the same table).
var embeddedProviders = provider.Embedded

// tableFile is the schema shared by rules.toml, providers.toml and admin files: any of them
// may hold [[rule]] and [[provider]] tables.
type tableFile struct {
	Rule     []ruleSpec     `toml:"rule"`
	Provider []providerSpec `toml:"provider"`
}

// ruleSpec is one [[rule]] as written; see rules.toml for the meaning of each key.
type ruleSpec struct {
	ID        string   `toml:"id"`
	Category  string   `toml:"category"`
	Match     []string `toml:"match"`
	Regexp    []string `toml:"regexp"`
	Require   []string `toml:"require"`
	Codes     []string `toml:"codes"`
	Provider  string   `toml:"provider"`
	Temporary *bool    `toml:"temporary"`
	Action    string   `toml:"action"`
	Priority  int      `toml:"priority"`
	Decisive  bool     `toml:"decisive"`
	Prior     bool     `toml:"prior"`
	Advice    string   `toml:"advice"`
	URL       string   `toml:"url"`
	Disabled  bool     `toml:"disabled"`
}

// rule is a compiled ruleSpec.
type rule struct {
	id        string
	category  string
	match     []int32 // pattern ids of substrings, any of which matches
	res       []guardedRegexp
	require   []int32 // pattern ids of substrings that must all be present
	codes     []codePattern
	provider  string
	temporary *bool
	action    string
	advice    string
	url       string

	// Ordering.
	decisive bool // tried before every rule that is not
	textual  bool // has match, regexp or require
	prior    bool // code-only, but ranked with the text rules by its priority
	admin    bool // from a file given to Load
	priority int
	seq      int // position in the merged list
}

// maxPatternBytes bounds the total length of all substrings (the built-in tables use about
// 6 KB), which bounds the automaton's states, so its table stays small and its offsets fit
// below outFlag.
const maxPatternBytes = 1 << 20

// source is one parsed table file and where it came from, for error messages.
type source struct {
	name  string
	text  string
	admin bool
	file  tableFile
}

// Load builds a classifier from the embedded rules and providers plus the admin files
// given, in order. A rule or provider whose id already exists replaces it (a later file
// wins), "disabled = true" removes one, new ids are added; admin rules are tried before
// built-in ones of the same kind (decisive, text or code-only). Errors name the file, the
// line where it can be found, and the rule or provider id.
func Load(ruleFiles ...string) (*Classifier, error) {
	srcs := make([]*source, 0, 2+len(ruleFiles))
	for _, emb := range []struct{ name, text string }{
		{"rules.toml", embeddedRules}, {"providers.toml", embeddedProviders},
	} {
		s, err := parseSource(emb.name, emb.text, false)
		if err != nil {
			return nil, err
		}
		srcs = append(srcs, s)
	}
	for _, name := range ruleFiles {
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("classify: read rules: %w", err)
		}
		s, err := parseSource(name, string(data), true)
		if err != nil {
			return nil, err
		}
		srcs = append(srcs, s)
	}

	c := &Classifier{
		byID: map[string]*providerRules{},
		pats: &patterns{ids: map[string]int32{}},
	}
	if err := c.buildProviders(srcs); err != nil {
		return nil, err
	}
	if err := c.buildRules(srcs); err != nil {
		return nil, err
	}
	total := 0
	for _, p := range c.pats.list {
		total += len(p)
	}
	if total > maxPatternBytes {
		return nil, fmt.Errorf("classify: the substrings of all rules and providers total %d bytes, more than %d", total, maxPatternBytes)
	}
	c.m = buildMatcher(c.pats.list)
	c.pats = nil
	return c, nil
}

func parseSource(name, text string, admin bool) (*source, error) {
	s := &source{name: name, text: text, admin: admin}
	md, err := toml.Decode(text, &s.file)
	if err != nil {
		// Syntax errors carry their position; type errors only say it in their text
		// ("toml: line 4 (last key ...): ...").
		line := 0
		var pe toml.ParseError
		if errors.As(err, &pe) {
			line = pe.Position.Line
		} else if _, serr := fmt.Sscanf(err.Error(), "toml: line %d", &line); serr != nil {
			line = 0
		}
		if line > 0 {
			return nil, fmt.Errorf("classify: %s:%d: %w", name, line, err)
		}
		return nil, fmt.Errorf("classify: %s: %w", name, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		key := und[0]
		last := key[len(key)-1]
		return nil, fmt.Errorf("classify: %s:%d: unknown key %q", name, s.keyLine(last), key.String())
	}
	return s, nil
}

// idLine finds the line of `id = "x"` in the source, for error messages; 0 when unknown.
func (s *source) idLine(id string) int {
	for i, line := range strings.Split(s.text, "\n") {
		k, v, ok := strings.Cut(line, "=")
		if !ok || strings.TrimSpace(k) != "id" {
			continue
		}
		v = strings.TrimSpace(v)
		if uq, err := strconv.Unquote(v); err == nil && uq == id {
			return i + 1
		}
		if strings.Trim(v, `'`) == id {
			return i + 1
		}
	}
	return 0
}

// keyLine finds the first line that sets key, for error messages; 0 when unknown.
func (s *source) keyLine(key string) int {
	for i, line := range strings.Split(s.text, "\n") {
		k, _, ok := strings.Cut(line, "=")
		if ok && strings.Trim(strings.TrimSpace(k), `"'`) == key {
			return i + 1
		}
	}
	return 0
}

func (s *source) errorf(id, format string, args ...any) error {
	return fmt.Errorf("classify: %s:%d: rule %q: %s", s.name, s.idLine(id), id, fmt.Sprintf(format, args...))
}

func (c *Classifier) buildRules(srcs []*source) error {
	var list []*rule
	index := map[string]int{}
	for _, s := range srcs {
		seen := map[string]bool{}
		for _, spec := range s.file.Rule {
			if spec.ID == "" {
				return fmt.Errorf("classify: %s: a rule has no id", s.name)
			}
			if seen[spec.ID] {
				return s.errorf(spec.ID, "duplicate id in the same file")
			}
			seen[spec.ID] = true
			if spec.Disabled {
				if i, ok := index[spec.ID]; ok {
					list[i] = nil
				}
				continue
			}
			if !s.admin && spec.Provider != "" && c.byID[spec.Provider] == nil {
				continue // a built-in rule for a provider an admin disabled
			}
			ru, err := c.compileRule(spec, s)
			if err != nil {
				return err
			}
			if i, ok := index[spec.ID]; ok && list[i] != nil {
				list[i] = ru
				continue
			}
			index[spec.ID] = len(list)
			list = append(list, ru)
		}
	}
	c.rules = c.rules[:0]
	for i, ru := range list {
		if ru != nil {
			ru.seq = i
			c.rules = append(c.rules, ru)
		}
	}
	// Decisive rules first, then text rules and code priors, then the other code-only
	// rules; within each, admin rules first, then by priority (higher first), then in file
	// order.
	slices.SortStableFunc(c.rules, func(a, b *rule) int {
		switch {
		case a.decisive != b.decisive:
			return boolOrder(a.decisive, b.decisive)
		case a.ranked() != b.ranked():
			return boolOrder(a.ranked(), b.ranked())
		case a.admin != b.admin:
			return boolOrder(a.admin, b.admin)
		case a.priority != b.priority:
			return cmp.Compare(b.priority, a.priority)
		}
		return cmp.Compare(a.seq, b.seq)
	})
	return nil
}

// ranked reports whether the rule is ordered among the text rules: it has text, or it is a
// code prior (an enhanced code family strong enough to outweigh the weaker wordings).
func (ru *rule) ranked() bool { return ru.textual || ru.prior }

// boolOrder sorts true before false.
func boolOrder(a, b bool) int {
	if a && !b {
		return -1
	}
	if b && !a {
		return 1
	}
	return 0
}

func (c *Classifier) compileRule(spec ruleSpec, s *source) (*rule, error) {
	ru := &rule{
		id:        spec.ID,
		category:  spec.Category,
		provider:  spec.Provider,
		temporary: spec.Temporary,
		action:    spec.Action,
		advice:    strings.TrimSpace(spec.Advice),
		url:       strings.TrimSpace(spec.URL),
		admin:     s.admin,
		priority:  spec.Priority,
		decisive:  spec.Decisive,
		prior:     spec.Prior,
	}
	if !slices.Contains(Categories, spec.Category) {
		return nil, s.errorf(spec.ID, "unknown category %q", spec.Category)
	}
	if spec.Action != "" && !slices.Contains(Actions, spec.Action) {
		return nil, s.errorf(spec.ID, "unknown action %q", spec.Action)
	}
	if spec.Provider != "" && c.byID[spec.Provider] == nil {
		return nil, s.errorf(spec.ID, "unknown provider %q", spec.Provider)
	}
	for _, m := range spec.Match {
		n := normalizePattern(m)
		if n == "" {
			return nil, s.errorf(spec.ID, "empty match pattern")
		}
		ru.match = append(ru.match, c.pats.add(n))
	}
	for _, m := range spec.Require {
		n := normalizePattern(m)
		if n == "" {
			return nil, s.errorf(spec.ID, "empty require pattern")
		}
		ru.require = append(ru.require, c.pats.add(n))
	}
	for _, expr := range spec.Regexp {
		g, err := c.pats.compileRegexp(expr)
		if err != nil {
			return nil, s.errorf(spec.ID, "bad regexp %q: %v", expr, err)
		}
		ru.res = append(ru.res, g)
	}
	for _, code := range spec.Codes {
		p, err := parseCodePattern(code)
		if err != nil {
			return nil, s.errorf(spec.ID, "%v", err)
		}
		ru.codes = append(ru.codes, p)
	}
	ru.textual = len(ru.match)+len(ru.res)+len(ru.require) > 0
	if !ru.textual && len(ru.codes) == 0 {
		return nil, s.errorf(spec.ID, "needs match, regexp, require or codes")
	}
	if ru.prior && (ru.textual || ru.decisive) {
		return nil, s.errorf(spec.ID, "prior is for rules with codes only, not decisive")
	}
	return ru, nil
}

// normalizePattern brings a substring pattern to the form of normalised reply text: lower
// case, single spaces.
func normalizePattern(p string) string {
	return strings.ToLower(strings.Join(strings.Fields(p), " "))
}

// matches reports whether the rule applies to the reply from provider prov; h holds the
// substrings found in the reply's text. The cheap tests come first, regexps last.
func (ru *rule) matches(r *reply, h hits, prov string) bool {
	if ru.provider != "" && ru.provider != prov {
		return false
	}
	if len(ru.codes) > 0 && !ru.codesMatch(r) {
		return false
	}
	if !ru.textual {
		return true
	}
	for _, id := range ru.require {
		if !h.has(id) {
			return false
		}
	}
	if len(ru.match) == 0 && len(ru.res) == 0 {
		return true
	}
	for _, id := range ru.match {
		if h.has(id) {
			return true
		}
	}
	for _, g := range ru.res {
		if g.matches(r.text, h) {
			return true
		}
	}
	return false
}

func (ru *rule) codesMatch(r *reply) bool {
	for _, p := range ru.codes {
		if p.matches(r) {
			return true
		}
	}
	return false
}

// codePattern is one entry of a rule's codes: a basic code or a prefix of one ("452",
// "45", "4"), or an enhanced code prefix by whole components ("5.7" matches 5.7.1 and
// 5.7.26, "5.1.1" matches only 5.1.1), or an enhanced code with a trailing "*" that matches
// by characters ("4.7.5*" matches 4.7.5 and 4.7.500 to 4.7.599).
type codePattern struct {
	s        string
	enhanced bool
	wildcard bool
}

func parseCodePattern(code string) (codePattern, error) {
	p := codePattern{s: strings.TrimSpace(code)}
	if strings.HasSuffix(p.s, "*") {
		p.wildcard = true
		p.s = strings.TrimSuffix(p.s, "*")
	}
	p.enhanced = strings.Contains(p.s, ".")
	bad := fmt.Errorf("bad code pattern %q", code)
	if p.s == "" || !strings.ContainsRune("245", rune(p.s[0])) && !(p.s[0] == '3' && !p.enhanced) {
		return p, bad
	}
	if !p.enhanced {
		if p.wildcard || len(p.s) > 3 || strings.Trim(p.s, "0123456789") != "" {
			return p, bad
		}
		return p, nil
	}
	parts := strings.Split(p.s, ".")
	if len(parts) > 3 {
		return p, bad
	}
	for i, part := range parts {
		last := i == len(parts)-1
		if part == "" && !(last && p.wildcard) || len(part) > 3 || strings.Trim(part, "0123456789") != "" {
			return p, bad
		}
	}
	if len(parts[0]) != 1 {
		return p, bad
	}
	return p, nil
}

func (p codePattern) matches(r *reply) bool {
	if !p.enhanced {
		if r.basic == "" {
			return len(p.s) == 1 && r.class == p.s[0]
		}
		return strings.HasPrefix(r.basic, p.s)
	}
	if r.enhanced == "" {
		return false
	}
	if p.wildcard {
		return strings.HasPrefix(r.enhanced, p.s)
	}
	return r.enhanced == p.s || strings.HasPrefix(r.enhanced, p.s+".")
}

// patterns numbers the distinct substrings of all rules and providers while loading.
type patterns struct {
	ids  map[string]int32
	list []string
}

func (p *patterns) add(s string) int32 {
	if id, ok := p.ids[s]; ok {
		return id
	}
	id := int32(len(p.list))
	p.ids[s] = id
	p.list = append(p.list, s)
	return id
}

// guardedRegexp is a regexp with a prefilter: groups of substrings such that every text it
// matches contains at least one substring of each group. The regexp runs only when the
// one-pass substring scan found them all, so a rule's regexps cost nothing on the replies
// they cannot match.
type guardedRegexp struct {
	re    *regexp.Regexp
	guard [][]int32 // pattern ids; no groups means always run
}

func (g guardedRegexp) matches(text string, h hits) bool {
	for _, group := range g.guard {
		found := false
		for _, id := range group {
			if h.has(id) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return g.re.MatchString(text)
}

// compileRegexp compiles a rule's regexp to match case-insensitively and registers its
// prefilter substrings.
func (p *patterns) compileRegexp(expr string) (guardedRegexp, error) {
	re, err := regexp.Compile("(?i)" + expr)
	if err != nil {
		return guardedRegexp{}, err
	}
	g := guardedRegexp{re: re}
	if tree, err := syntax.Parse(expr, syntax.Perl); err == nil {
		for _, set := range requiredLiterals(tree.Simplify()) {
			var group []int32
			for _, lit := range set {
				group = append(group, p.add(lit))
			}
			g.guard = append(g.guard, group)
		}
	}
	return g, nil
}

// requiredLiterals returns groups of lower-case strings such that every text re matches
// case-insensitively contains at least one string of each group; nil when it finds none.
// It is conservative: a missing group only costs speed, a wrong one would cost matches.
func requiredLiterals(re *syntax.Regexp) [][]string {
	switch re.Op {
	case syntax.OpLiteral:
		if set := literalSet(string(re.Rune)); set != nil {
			return [][]string{set}
		}
	case syntax.OpCapture, syntax.OpPlus:
		return requiredLiterals(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return requiredLiterals(re.Sub[0])
		}
	case syntax.OpAlternate:
		// One group: the most selective group of each branch, united.
		var all []string
		for _, sub := range re.Sub {
			best := bestGroup(requiredLiterals(sub))
			if best == nil {
				return nil
			}
			all = append(all, best...)
		}
		return [][]string{all}
	case syntax.OpConcat:
		// Runs of children with a small finite language are multiplied out ("[" then
		// "cs" or "hm" gives "[cs", "[hm"); every other child adds groups of its own.
		var groups [][]string
		var run []string
		flush := func() {
			if minLen(run) > 0 {
				groups = append(groups, run)
			}
			run = nil
		}
		for _, sub := range re.Sub {
			ex := exactSet(sub)
			switch {
			case ex == nil:
				flush()
				groups = append(groups, requiredLiterals(sub)...)
			case run == nil:
				run = ex
			case len(run)*len(ex) > maxExact:
				flush()
				run = ex
			default:
				run = crossProduct(run, ex)
			}
		}
		flush()
		return groups
	}
	return nil
}

// bestGroup returns the group whose shortest string is longest: the most selective.
func bestGroup(groups [][]string) []string {
	var best []string
	for _, g := range groups {
		if best == nil || minLen(g) > minLen(best) {
			best = g
		}
	}
	return best
}

// maxExact bounds the finite languages that requiredLiterals multiplies out.
const maxExact = 64

// exactSet returns every string that re matches, lower-cased, when that is a small finite
// set of ASCII strings; else nil.
func exactSet(re *syntax.Regexp) []string {
	switch re.Op {
	case syntax.OpLiteral:
		return literalSet(string(re.Rune))
	case syntax.OpEmptyMatch:
		return []string{""}
	case syntax.OpCapture:
		return exactSet(re.Sub[0])
	case syntax.OpQuest:
		if set := exactSet(re.Sub[0]); set != nil && len(set) < maxExact {
			return append([]string{""}, set...)
		}
	case syntax.OpAlternate:
		var all []string
		for _, sub := range re.Sub {
			set := exactSet(sub)
			if set == nil || len(all)+len(set) > maxExact {
				return nil
			}
			all = append(all, set...)
		}
		return all
	case syntax.OpConcat:
		group := []string{""}
		for _, sub := range re.Sub {
			set := exactSet(sub)
			if set == nil || len(group)*len(set) > maxExact {
				return nil
			}
			group = crossProduct(group, set)
		}
		return group
	}
	return nil
}

func crossProduct(a, b []string) []string {
	out := make([]string, 0, len(a)*len(b))
	for _, x := range a {
		for _, y := range b {
			out = append(out, x+y)
		}
	}
	return out
}

// literalSet returns the lower-cased literal as a one-element set, or nil for non-ASCII
// literals, whose case folding (ſ, K) the lower-cased text does not mirror.
func literalSet(s string) []string {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return nil
		}
	}
	if s == "" {
		return nil
	}
	return []string{strings.ToLower(s)}
}

// minLen returns the length of the shortest string of a set, 0 for an empty set.
func minLen(set []string) int {
	n := -1
	for _, s := range set {
		if n < 0 || len(s) < n {
			n = len(s)
		}
	}
	return max(n, 0)
}

// hits is the set of pattern ids found in a text.
type hits []uint64

func (h hits) has(id int32) bool {
	w := int(id >> 6)
	return w < len(h) && h[w]&(1<<(uint(id)&63)) != 0
}

// matcher is an Aho-Corasick automaton over all substring patterns, compiled to a dense
// transition table over byte classes (the bytes that occur in patterns; every other byte
// sends the automaton back to the root). One pass over the text finds every pattern, so
// matching costs the same whether the rules hold ten substrings or a thousand.
type matcher struct {
	class   [256]uint16
	nclass  int
	next    []int32 // next[state*nclass+class] = target*nclass, | outFlag if patterns end there
	term    [][]int32
	outHead []int32 // first state on the dictionary chain with patterns ending there; 0 = none
	dict    []int32 // next such state after this one; 0 = none
	words   int     // uint64 words needed for a hits set
}

func buildMatcher(pats []string) *matcher {
	m := &matcher{words: (len(pats) + 63) / 64}
	for _, p := range pats {
		for i := 0; i < len(p); i++ {
			if m.class[p[i]] == 0 {
				m.nclass++
				m.class[p[i]] = uint16(m.nclass)
			}
		}
	}
	m.nclass++
	newState := func() int32 {
		for range m.nclass {
			m.next = append(m.next, -1)
		}
		m.term = append(m.term, nil)
		return int32(len(m.term) - 1)
	}
	newState() // root
	for id, p := range pats {
		s := int32(0)
		for i := 0; i < len(p); i++ {
			k := int(s)*m.nclass + int(m.class[p[i]])
			if m.next[k] < 0 {
				m.next[k] = newState()
			}
			s = m.next[k]
		}
		m.term[s] = append(m.term[s], int32(id))
	}

	n := len(m.term)
	fail := make([]int32, n)
	m.dict = make([]int32, n)
	m.outHead = make([]int32, n)
	queue := make([]int32, 0, n)
	for c := 0; c < m.nclass; c++ {
		if t := m.next[c]; t > 0 {
			queue = append(queue, t)
		} else {
			m.next[c] = 0
		}
	}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		f := fail[s]
		if len(m.term[f]) > 0 {
			m.dict[s] = f
		} else {
			m.dict[s] = m.dict[f]
		}
		if len(m.term[s]) > 0 {
			m.outHead[s] = s
		} else {
			m.outHead[s] = m.dict[s]
		}
		for c := 0; c < m.nclass; c++ {
			k := int(s)*m.nclass + c
			fk := int(f)*m.nclass + c
			if t := m.next[k]; t >= 0 {
				fail[t] = m.next[fk]
				queue = append(queue, t)
			} else {
				m.next[k] = m.next[fk]
			}
		}
	}
	// Store transitions as offsets of the target's row, flagged when patterns end there,
	// so that scan does one load per byte and looks at outputs only when there are some.
	for k, t := range m.next {
		v := t * int32(m.nclass)
		if m.outHead[t] != 0 {
			v |= outFlag
		}
		m.next[k] = v
	}
	return m
}

// outFlag marks a transition into a state where patterns end.
const outFlag = 1 << 30

// scan returns the set of patterns that occur in text, using buf's storage when it is
// large enough.
func (m *matcher) scan(text string, buf []uint64) hits {
	var h hits
	if cap(buf) >= m.words {
		h = buf[:m.words]
		clear(h)
	} else {
		h = make(hits, m.words)
	}
	off := int32(0) // row offset of the current state in next
	for i := 0; i < len(text); i++ {
		v := m.next[off+int32(m.class[text[i]])]
		off = v &^ outFlag
		if v&outFlag == 0 {
			continue
		}
		for t := m.outHead[off/int32(m.nclass)]; t != 0; t = m.dict[t] {
			for _, id := range m.term[t] {
				h[id>>6] |= 1 << (uint(id) & 63)
			}
		}
	}
	return h
}
