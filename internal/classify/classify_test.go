package classify

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp/syntax"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestCodeFallbacks(t *testing.T) {
	tests := []struct {
		reply     string
		category  string
		temporary bool
		action    string
	}{
		// Basic codes alone.
		{"550", Other, false, ActionBounce},
		{"554 Transaction failed", Other, false, ActionBounce},
		{"421", Transient, true, ActionRetry},
		{"451 Requested action aborted: error in processing", Transient, true, ActionRetry},
		{"552 Requested mail action aborted", MailboxFull, false, ActionBounce},
		// Enhanced codes without a known text.
		{"550 5.1.1", BadMailbox, false, ActionSuppressRecipient},
		{"550 5.1.1 xyzzy", BadMailbox, false, ActionSuppressRecipient},
		{"450 4.1.1 xyzzy", BadMailbox, true, ActionRetry},
		{"550 5.1.10 xyzzy", BadDomain, false, ActionSuppressRecipient}, // not 5.1.1
		{"550 5.2.1 xyzzy", InactiveMailbox, false, ActionSuppressRecipient},
		{"452 4.2.2 xyzzy", MailboxFull, true, ActionRetry},
		{"552 5.2.2 xyzzy", MailboxFull, false, ActionBounce},
		{"452 4.3.4 xyzzy", MessageTooLarge, false, ActionBounce}, // too large stays too large
		{"553 5.1.8 xyzzy", InvalidSender, false, ActionFixSetup},
		{"550 5.7.26 xyzzy", Authentication, false, ActionFixSetup},
		{"550 5.7.25 xyzzy", ReverseDNS, false, ActionFixSetup},
		{"530 5.7.10 xyzzy", TLSRequired, false, ActionFixSetup},
		{"452 4.5.3 xyzzy", RateLimited, true, ActionSlowDown},
		{"451 4.4.3 xyzzy", DNSFailure, true, ActionRetry},
		{"550 5.7.1 xyzzy", Policy, false, ActionBounce},
		{"451 4.7.1 xyzzy", Policy, true, ActionRetry},
		{"421 4.4.2 xyzzy", Transient, true, ActionRetry},
		{"554 5.6.0 xyzzy", Other, false, ActionBounce},
		{"5.7.1 xyzzy", Policy, false, ActionBounce}, // enhanced code without a basic code
		{"4.4.1 xyzzy", Transient, true, ActionRetry},
		// The enhanced code wins over the basic code, the text over both.
		{"552 5.7.1 xyzzy", Policy, false, ActionBounce},
		{"550 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org", IPReputation, false, ActionPauseProvider},
		{"550 5.1.1 Sender verify failed", InvalidSender, false, ActionFixSetup},
		// Temporary fixed by the rule, not the code.
		{"550 5.7.1 Greylisted, come back later", Greylisted, true, ActionRetry},
		{"452 4.3.1 Message size exceeds fixed limit", MessageTooLarge, false, ActionBounce},
		// Without a code the category decides.
		{"", Other, true, ActionRetry},
		{"   \r\n ", Other, true, ActionRetry},
		{"something odd happened", Other, true, ActionRetry},
		{"Connection refused", Transient, true, ActionRetry},
		{"User unknown", BadMailbox, false, ActionSuppressRecipient},
	}
	c := Default()
	for _, tt := range tests {
		got := c.Classify(tt.reply)
		if got.Category != tt.category || got.Temporary != tt.temporary || got.Action != tt.action {
			t.Errorf("Classify(%q) = %s/%v/%s (%s), want %s/%v/%s", tt.reply,
				got.Category, got.Temporary, got.Action, ruleID(c, tt.reply), tt.category, tt.temporary, tt.action)
		}
		if got.Advice == "" {
			t.Errorf("Classify(%q): empty advice", tt.reply)
		}
	}
}

func TestParseReply(t *testing.T) {
	tests := []struct {
		raw, basic, enhanced, text string
	}{
		{"550 5.1.1 User unknown", "550", "5.1.1", "user unknown"},
		{"550-5.1.1 The account\r\n550-5.1.1 does not\r\n550 5.1.1 exist. - gsmtp", "550", "5.1.1", "the account does not exist. - gsmtp"},
		{"550-5.1.1 The account\n550-5.1.1 does not\n550 5.1.1 exist.", "550", "5.1.1", "the account does not exist."},
		{`550-5.1.1 The account\n550-5.1.1 does not\n550 5.1.1 exist.`, "550", "5.1.1", "the account does not exist."},
		{"550-5.1.1 The account|550-5.1.1 does not|550 5.1.1 exist.", "550", "5.1.1", "the account does not exist."},
		{"550-5.1.1 The account 550-5.1.1 does not 550 5.1.1 exist.", "550", "5.1.1", "the account does not exist."},
		{"554-Transaction failed\n554-Reject due to policy restrictions.\n554 For explanation visit x", "554", "", "transaction failed reject due to policy restrictions. for explanation visit x"},
		{"554-Transaction failed 554-Reject due to policy restrictions. 554 For explanation", "554", "", "transaction failed reject due to policy restrictions. 554 for explanation"},
		{"452 Too many recipients, max 452 per message", "452", "", "too many recipients, max 452 per message"},
		{"host mx.example.org[192.0.2.1] said: 550 5.1.1 <a@example.org>: User unknown (in reply to RCPT TO command)", "550", "5.1.1", "host mx.example.org[192.0.2.1] said: <a@example.org>: user unknown (in reply to rcpt to command)"},
		{"SMTP error from remote mail server after RCPT TO:<a@example.org>: 550 Unrouteable address", "550", "", "smtp error from remote mail server after rcpt to:<a@example.org>: 550 unrouteable address"},
		{"550 Sorry, no mailbox here by that name. (#5.1.1)", "550", "5.1.1", "sorry, no mailbox here by that name. (#5.1.1)"},
		{"554 Blocked [5.1.1.1] and 10.5.1.1", "554", "", "blocked [5.1.1.1] and 10.5.1.1"},
		{"550 Server version 4.2.1 says no", "550", "", "server version 4.2.1 says no"},
		{"5.7.708 Service unavailable", "", "5.7.708", "service unavailable"},
		{"552 1 Requested mail action aborted", "552", "", "1 requested mail action aborted"},
		{"  421\t4.7.0  Try   again\tlater  ", "421", "4.7.0", "try again later"},
		{"550 5.7.1 Boîte PLEINE", "550", "5.7.1", "boîte pleine"},
		{"", "", "", ""},
		{"550", "550", "", ""},
		{"5501 not a code", "", "", "5501 not a code"},
	}
	for _, tt := range tests {
		r := parseReply(tt.raw)
		if r.basic != tt.basic || r.enhanced != tt.enhanced || r.text != tt.text {
			t.Errorf("parseReply(%q) = %q %q %q, want %q %q %q", tt.raw, r.basic, r.enhanced, r.text, tt.basic, tt.enhanced, tt.text)
		}
	}
}

func TestMultiLineJoins(t *testing.T) {
	lines := []string{
		"550-5.7.26 This mail is unauthenticated, which poses a security risk to the",
		"550-5.7.26 sender and Gmail users, and has been blocked. The sender must",
		"550 5.7.26 authenticate with at least one of SPF or DKIM. - gsmtp",
	}
	c := Default()
	want := c.Classify(strings.Join(lines, "\r\n"))
	if want.Category != Authentication || want.Provider != "google" {
		t.Fatalf("got %+v", want)
	}
	for _, sep := range []string{"\n", "\r\n", `\n`, `\r\n`, "|", " | ", " ", "  "} {
		if got := c.Classify(strings.Join(lines, sep)); got != want {
			t.Errorf("joined with %q: got %+v, want %+v", sep, got, want)
		}
	}
}

func TestTruncation(t *testing.T) {
	c := Default()
	pad := strings.Repeat("x ", MaxReplyBytes)
	if got := c.Classify("550 5.9.9 user unknown " + pad); got.Category != BadMailbox {
		t.Errorf("text before the limit: got %s", got.Category)
	}
	if got := c.Classify("550 5.9.9 " + pad + " user unknown"); got.Category != Other {
		t.Errorf("text after the limit: got %s, want other", got.Category)
	}
}

func TestProviderByMX(t *testing.T) {
	tests := map[string]string{
		"gmail-smtp-in.l.google.com":                 "google",
		"ASPMX.L.GOOGLE.COM.":                        "google",
		"smtp.google.com":                            "google",
		"alt1.gmr-smtp-in.l.googlemail.com":          "google",
		"example-com.mail.protection.outlook.com":    "microsoft",
		"eur.olc.protection.outlook.com":             "microsoft",
		"hotmail-com.olc.protection.outlook.com":     "microsoft",
		"mta5.am0.yahoodns.net":                      "yahoo",
		"mx-aol.mail.gm0.yahoodns.net":               "yahoo",
		"mx01.mail.icloud.com":                       "apple",
		"mx00.gmx.net":                               "gmx",
		"mx-ha03.web.de":                             "gmx",
		"mx00.kundenserver.de":                       "ionos",
		"route2.mx.cloudflare.net":                   "cloudflare",
		"mx3.mail.ovh.net":                           "ovh",
		"mx00.emig.gmx.net":                          "gmx",
		"mx00.t-online.de":                           "t-online",
		"mx1a1.comcast.net":                          "comcast",
		"smtp-in.orange.fr":                          "orange",
		"mxs.mail.ru":                                "mailru",
		"mx.yandex.net":                              "yandex",
		"mx.zoho.com":                                "zoho",
		"mail.protonmail.ch":                         "proton",
		"in1-smtp.messagingengine.com":               "fastmail",
		"mx0a-00123401.pphosted.com":                 "proofpoint",
		"eu-smtp-inbound-1.mimecast.com":             "mimecast",
		"d123456.a.ess.barracudanetworks.com":        "barracuda",
		"google.com":                                 "google",
		"notgoogle.com":                              "",
		"google.com.example.net":                     "",
		"mail.example.com":                           "",
		"com":                                        "",
		"":                                           "",
		"  mx.zoho.com  ":                            "zoho",
		"example-com01c.mail.protection.outlook.com": "microsoft",
	}
	c := Default()
	for host, want := range tests {
		if got := c.Provider(host); got != want {
			t.Errorf("Provider(%q) = %q, want %q", host, got, want)
		}
	}
}

func TestClassifyFrom(t *testing.T) {
	c := Default()
	// The MX names the provider when the text does not.
	if got := c.ClassifyFrom("550 5.1.1 User unknown", "aspmx.l.google.com"); got.Provider != "google" || got.Category != BadMailbox {
		t.Errorf("got %+v", got)
	}
	// The text wins over the MX.
	if got := c.ClassifyFrom("554 5.7.1 Client host [192.0.2.1] blocked using zen.spamhaus.org", "aspmx.l.google.com"); got.Provider != "spamhaus" {
		t.Errorf("got provider %q, want spamhaus", got.Provider)
	}
	// A provider-only rule applies when the MX names the provider.
	reply := "550 5.4.1 Recipient address rejected: Access denied"
	if got := c.Classify(reply); got.Category != Policy {
		t.Errorf("Classify: got %s, want policy", got.Category)
	}
	if got := c.ClassifyFrom(reply, "example-com.mail.protection.outlook.com"); got.Category != BadMailbox || got.Provider != "microsoft" {
		t.Errorf("ClassifyFrom: got %+v, want bad_mailbox from microsoft", got)
	}
	// The provider's page is the URL of a sender-side category.
	if got := c.ClassifyFrom("550 5.7.1 Our policy says no", "mx01.mail.icloud.com"); got.URL != "https://support.apple.com/en-us/102322" {
		t.Errorf("got URL %q", got.URL)
	}
	if got := c.ClassifyFrom("550 5.1.1 User unknown", "mx01.mail.icloud.com"); got.URL != "" {
		t.Errorf("bad_mailbox got URL %q, want none", got.URL)
	}
}

func writeRules(t *testing.T, text string) string {
	t.Helper()
	name := filepath.Join(t.TempDir(), "local.toml")
	if err := os.WriteFile(name, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestLoadAdminRules(t *testing.T) {
	file := writeRules(t, `
# Override a built-in rule by id: "no such user" is no longer a bad mailbox text.
[[rule]]
id = "bad-mailbox"
category = "bad_mailbox"
match = ["user unknown"]
advice = "Local override."

# Remove built-in rules: the greylisting wordings, and the keyword families that would
# otherwise still catch "no such user" and "greylisted".
[[rule]]
id = "greylisting"
disabled = true

[[rule]]
id = "stem-greylisting"
disabled = true

[[rule]]
id = "stem-bad-mailbox"
disabled = true

# A new rule, tried before the built-in ones.
[[rule]]
id = "site-frobnication"
category = "policy"
match = ["frobnicat"]
action = "fix_setup"
advice = "The receiver frobnicates."
url = "https://wiki.example.com/frob"

# A rule that needs all of its require substrings.
[[rule]]
id = "site-both"
category = "content_spam"
require = ["alpha", "omega"]
advice = "Both."

# A code-only rule with a wildcard.
[[rule]]
id = "site-code"
category = "rate_limited"
codes = ["4.9.9*"]

# A new provider and a rule that applies to it only.
[[provider]]
id = "examplemail"
mx_suffixes = [".mx.example.net"]
text = ["examplemail"]
url = "https://postmaster.example.net/"

[[rule]]
id = "examplemail-block"
category = "ip_reputation"
provider = "examplemail"
match = ["go away"]
`)
	c, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		reply, mx, category, action, advice, url, provider string
	}{
		{"550 5.1.1 User unknown", "", BadMailbox, ActionSuppressRecipient, "Local override.", "", ""},
		{"550 No such user here", "", Other, ActionBounce, "", "", ""}, // the old texts are gone
		{"450 4.2.0 Greylisted, see postgrey", "", Transient, ActionRetry, "", "", ""},
		{"550 5.7.1 frobnicated: relay access denied", "", Policy, ActionFixSetup, "The receiver frobnicates.", "https://wiki.example.com/frob", ""},
		{"550 5.9.9 alpha and omega", "", ContentSpam, ActionBounce, "Both.", "", ""},
		{"550 5.9.9 alpha only", "", Other, ActionBounce, "", "", ""},
		{"451 4.9.912 what", "", RateLimited, ActionSlowDown, categoryAdvice[RateLimited], "", ""},
		{"554 go away", "in.mx.example.net", IPReputation, ActionPauseProvider, "", "https://postmaster.example.net/", "examplemail"},
		{"554 examplemail says go away", "", IPReputation, ActionPauseProvider, "", "https://postmaster.example.net/", "examplemail"},
		{"554 go away", "", Other, ActionBounce, "", "", ""},
	}
	for _, tt := range tests {
		got := c.ClassifyFrom(tt.reply, tt.mx)
		if got.Category != tt.category || got.Action != tt.action || got.Provider != tt.provider ||
			(tt.advice != "" && got.Advice != tt.advice) || got.URL != tt.url {
			t.Errorf("ClassifyFrom(%q, %q) = %+v, want %s/%s/%q/%q/%q", tt.reply, tt.mx, got,
				tt.category, tt.action, tt.provider, tt.advice, tt.url)
		}
	}
	// Loading admin files leaves the default classifier alone.
	if got := Default().Classify("550 No such user here"); got.Category != BadMailbox {
		t.Errorf("Default changed: %+v", got)
	}
}

func TestLoadOverrideProvider(t *testing.T) {
	file := writeRules(t, `
[[provider]]
id = "google"
mx_suffixes = ["google.test"]
text = ["gsmtp"]

[[provider]]
id = "yahoo"
disabled = true

[[provider]]
id = "microsoft"
disabled = true
`)
	c, err := Load(file)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Provider("aspmx.l.google.com"); got != "" {
		t.Errorf("replaced provider keeps old suffixes: %q", got)
	}
	if got := c.Provider("mx.google.test"); got != "google" {
		t.Errorf("Provider = %q, want google", got)
	}
	if got := c.Provider("mta5.am0.yahoodns.net"); got != "" {
		t.Errorf("disabled provider still found: %q", got)
	}
	if got := c.Classify("421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to unexpected volume"); got.Provider != "" {
		t.Errorf("disabled provider still named: %q", got.Provider)
	}
	// The override's page is gone with the rest of the old entry.
	if got := c.Classify("550 5.7.26 unauthenticated email - gsmtp"); got.Provider != "google" || got.URL != "" {
		t.Errorf("got %+v", got)
	}
}

func TestLoadLaterFileWins(t *testing.T) {
	a := writeRules(t, "[[rule]]\nid = \"x\"\ncategory = \"policy\"\nmatch = [\"zzz\"]\n")
	b := writeRules(t, "[[rule]]\nid = \"x\"\ncategory = \"content_spam\"\nmatch = [\"zzz\"]\n")
	c, err := Load(a, b)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Classify("550 zzz"); got.Category != ContentSpam {
		t.Errorf("got %s, want content_spam", got.Category)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name, text string
		want       []string // substrings of the error
	}{
		{"bad regexp", "[[rule]]\nid = \"broken-re\"\ncategory = \"policy\"\nregexp = ['(unclosed']\n",
			[]string{"local.toml:2:", `rule "broken-re"`, "bad regexp"}},
		{"unknown category", "\n\n[[rule]]\nid = \"cat\"\ncategory = \"nonsense\"\nmatch = [\"a\"]\n",
			[]string{"local.toml:4:", `rule "cat"`, "unknown category"}},
		{"unknown action", "[[rule]]\nid = \"act\"\ncategory = \"policy\"\naction = \"explode\"\nmatch = [\"a\"]\n",
			[]string{`rule "act"`, "unknown action"}},
		{"unknown provider", "[[rule]]\nid = \"prov\"\ncategory = \"policy\"\nprovider = \"nowhere\"\nmatch = [\"a\"]\n",
			[]string{`rule "prov"`, "unknown provider"}},
		{"bad code", "[[rule]]\nid = \"code\"\ncategory = \"policy\"\ncodes = [\"5.x.1\"]\n",
			[]string{`rule "code"`, "bad code pattern"}},
		{"matches everything", "[[rule]]\nid = \"all\"\ncategory = \"policy\"\n",
			[]string{`rule "all"`, "needs match"}},
		{"prior with text", "[[rule]]\nid = \"pt\"\ncategory = \"policy\"\nprior = true\ncodes = [\"5.7\"]\nmatch = [\"a\"]\n",
			[]string{`rule "pt"`, "prior is for rules with codes only"}},
		{"no id", "[[rule]]\ncategory = \"policy\"\nmatch = [\"a\"]\n",
			[]string{"local.toml", "no id"}},
		{"duplicate id", "[[rule]]\nid = \"d\"\ncategory = \"policy\"\nmatch = [\"a\"]\n[[rule]]\nid = \"d\"\ncategory = \"policy\"\nmatch = [\"b\"]\n",
			[]string{`rule "d"`, "duplicate"}},
		{"empty match", "[[rule]]\nid = \"e\"\ncategory = \"policy\"\nmatch = [\"  \"]\n",
			[]string{`rule "e"`, "empty match"}},
		{"unknown key", "[[rule]]\nid = \"k\"\ncategory = \"policy\"\nmatches = [\"a\"]\n",
			[]string{"local.toml:4:", "unknown key", "matches"}},
		{"syntax", "[[rule]]\nid = \"s\"\ncategory = policy\n",
			[]string{"local.toml:3:"}},
		{"wrong type", "[[rule]]\nid = \"t\"\ncategory = \"policy\"\nmatch = \"a\"\n",
			[]string{"local.toml:4:", "match"}},
		{"provider regexp", "[[provider]]\nid = \"p\"\ntext_regexp = ['[z-a]']\n",
			[]string{`provider "p"`, "bad regexp"}},
		{"provider url category", "[[provider]]\nid = \"p\"\nurls = { nonsense = \"https://x\" }\n",
			[]string{`provider "p"`, "unknown category"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(writeRules(t, tt.text))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.toml")); err == nil || !strings.Contains(err.Error(), "missing.toml") {
		t.Errorf("missing file: %v", err)
	}
}

func TestJSONFields(t *testing.T) {
	r := Default().Classify("550 5.1.1 User unknown")
	data, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	want := []string{"action", "advice", "category", "provider", "temporary", "url"}
	if !slices.Equal(keys, want) {
		t.Errorf("JSON keys %v, want %v", keys, want)
	}
	if _, ok := m["temporary"].(bool); !ok {
		t.Errorf("temporary is %T, want bool", m["temporary"])
	}
	// Empty provider and url are present, as "".
	if m["provider"] != "" || m["url"] != "" {
		t.Errorf("provider %v, url %v", m["provider"], m["url"])
	}
}

func TestBuiltinTables(t *testing.T) {
	c := Default()
	for _, id := range []string{"google", "microsoft", "yahoo", "apple", "gmx", "t-online", "comcast",
		"orange", "mailru", "yandex", "zoho", "proton", "fastmail", "proofpoint", "mimecast",
		"barracuda", "cloudflare", "ovh", "ionos", "spamhaus", "spamcop"} {
		if c.byID[id] == nil {
			t.Errorf("provider %q missing (docs/CONTRACTS.md §4)", id)
		}
	}
	seen := map[string]bool{}
	for _, ru := range c.rules {
		if ru.advice == "" {
			t.Errorf("rule %s has no advice", ru.id)
		}
		if ru.url != "" && !strings.HasPrefix(ru.url, "https://") {
			t.Errorf("rule %s: url %q is not https", ru.id, ru.url)
		}
		seen[ru.category] = true
	}
	for _, p := range c.providers {
		for cat, u := range p.urls {
			if !strings.HasPrefix(u, "https://") {
				t.Errorf("provider %s: %s url %q is not https", p.id, cat, u)
			}
		}
		if p.url != "" && !strings.HasPrefix(p.url, "https://") {
			t.Errorf("provider %s: url %q is not https", p.id, p.url)
		}
	}
	for _, cat := range Categories {
		if !seen[cat] {
			t.Errorf("no built-in rule gives category %s", cat)
		}
		if categoryAdvice[cat] == "" {
			t.Errorf("no default advice for %s", cat)
		}
	}
	// Every built-in rule compiled.
	if n := strings.Count(embeddedRules, "\n[[rule]]"); n != len(c.rules) {
		t.Errorf("rules.toml has %d rules, %d compiled", n, len(c.rules))
	}
	// Decisive rules come first, then text rules and code priors, then code-only rules.
	rank := func(ru *rule) int {
		switch {
		case ru.decisive:
			return 0
		case ru.textual || ru.prior:
			return 1
		}
		return 2
	}
	for i := 1; i < len(c.rules); i++ {
		if rank(c.rules[i]) < rank(c.rules[i-1]) {
			t.Errorf("rule %s sorted after %s", c.rules[i].id, c.rules[i-1].id)
		}
	}
}

func TestDefaultAction(t *testing.T) {
	want := map[string][2]string{ // category: {permanent, temporary}
		BadMailbox:       {ActionSuppressRecipient, ActionRetry},
		InactiveMailbox:  {ActionSuppressRecipient, ActionRetry},
		BadDomain:        {ActionSuppressRecipient, ActionRetry},
		MailboxFull:      {ActionBounce, ActionRetry},
		MessageTooLarge:  {ActionBounce, ActionBounce},
		Greylisted:       {ActionRetry, ActionRetry},
		RateLimited:      {ActionSlowDown, ActionSlowDown},
		IPReputation:     {ActionPauseProvider, ActionPauseProvider},
		DomainReputation: {ActionPauseProvider, ActionPauseProvider},
		Authentication:   {ActionFixSetup, ActionFixSetup},
		ReverseDNS:       {ActionFixSetup, ActionFixSetup},
		ContentSpam:      {ActionBounce, ActionRetry},
		Policy:           {ActionBounce, ActionRetry},
		TLSRequired:      {ActionFixSetup, ActionFixSetup},
		RelayDenied:      {ActionFixSetup, ActionFixSetup},
		DNSFailure:       {ActionBounce, ActionRetry},
		InvalidSender:    {ActionFixSetup, ActionFixSetup},
		Transient:        {ActionRetry, ActionRetry},
		Other:            {ActionBounce, ActionRetry},
	}
	if len(want) != len(Categories) || len(Categories) != 19 {
		t.Fatalf("%d categories, %d in the table", len(Categories), len(want))
	}
	for _, cat := range Categories {
		for i, temp := range []bool{false, true} {
			if got := defaultAction(cat, temp); got != want[cat][i] {
				t.Errorf("defaultAction(%s, %v) = %s, want %s", cat, temp, got, want[cat][i])
			}
		}
	}
}

func TestCodePatterns(t *testing.T) {
	tests := []struct {
		pattern, reply string
		want           bool
	}{
		{"5.1.1", "550 5.1.1 x", true},
		{"5.1.1", "550 5.1.10 x", false},
		{"5.1", "550 5.1.10 x", true},
		{"5", "550 5.1.10 x", true},
		{"55", "550 x", true},
		{"552", "550 x", false},
		{"4", "4.4.1 x", true}, // the class when there is no basic code
		{"45", "4.4.1 x", false},
		{"4.7.5*", "451 4.7.500 x", true},
		{"4.7.5*", "451 4.7.5 x", true},
		{"4.7.5*", "451 4.7.60 x", false},
		{"5.7", "550 x", false},
	}
	for _, tt := range tests {
		p, err := parseCodePattern(tt.pattern)
		if err != nil {
			t.Fatalf("%s: %v", tt.pattern, err)
		}
		r := parseReply(tt.reply)
		if got := p.matches(&r); got != tt.want {
			t.Errorf("%q matches %q = %v, want %v", tt.pattern, tt.reply, got, tt.want)
		}
	}
	for _, bad := range []string{"", "6", "1234", "5.", "5.a.1", "55.1.1", "5.1.1.1", "5.1234.1", "4*", "x.1.1"} {
		if _, err := parseCodePattern(bad); err == nil {
			t.Errorf("parseCodePattern(%q): no error", bad)
		}
	}
}

// TestMatcher compares the Aho-Corasick scan with strings.Contains on random patterns and
// texts over a small alphabet, where overlaps and shared prefixes abound.
func TestMatcher(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	word := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = "abc -"[rng.IntN(5)]
		}
		return string(b)
	}
	for round := 0; round < 200; round++ {
		var pats []string
		seen := map[string]bool{}
		for len(pats) < 1+rng.IntN(40) {
			p := word(1 + rng.IntN(6))
			if !seen[p] {
				seen[p] = true
				pats = append(pats, p)
			}
		}
		m := buildMatcher(pats)
		for k := 0; k < 20; k++ {
			text := word(rng.IntN(60))
			h := m.scan(text, nil)
			for id, p := range pats {
				if got, want := h.has(int32(id)), strings.Contains(text, p); got != want {
					t.Fatalf("patterns %q, text %q: %q found %v, want %v", pats, text, p, got, want)
				}
			}
		}
	}
}

func TestRequiredLiterals(t *testing.T) {
	tests := []struct {
		expr string
		want [][]string
	}{
		{`abc`, [][]string{{"abc"}}},
		{`ABC`, [][]string{{"abc"}}},
		{`\bspf\b.{0,60}?\b(fail|pass)`, [][]string{{"spf"}, {"fail", "pass"}}},
		{`\[(cs|hm)[0-9]{2}\]`, [][]string{{"[cs", "[hm"}, {"]"}}},
		{`\b(sc|ou)-00[0-9] \(`, [][]string{{"sc-00", "ou-00"}, {" ("}}},
		{`requires? tls`, [][]string{{"require tls", "requires tls"}}},
		{`(a|b)*`, nil},
		{`x|y*`, nil},
		{`.*`, nil},
		{`(foo)+bar`, [][]string{{"foo"}, {"bar"}}},
		{`(ab.c|de+)`, [][]string{{"ab", "d"}}},
		{`ſpam`, nil}, // non-ASCII folds differently from lower-casing
	}
	for _, tt := range tests {
		re, err := syntax.Parse(tt.expr, syntax.Perl)
		if err != nil {
			t.Fatal(err)
		}
		got := requiredLiterals(re.Simplify())
		for _, g := range got {
			slices.Sort(g)
		}
		for _, g := range tt.want {
			slices.Sort(g)
		}
		if !slices.EqualFunc(got, tt.want, slices.Equal[[]string]) {
			t.Errorf("requiredLiterals(%q) = %q, want %q", tt.expr, got, tt.want)
		}
	}
}

// TestRegexpGuards checks that no regexp of the built-in tables matches a corpus reply
// while its prefilter says it cannot.
func TestRegexpGuards(t *testing.T) {
	c := Default()
	var guarded []guardedRegexp
	for _, ru := range c.rules {
		guarded = append(guarded, ru.res...)
	}
	for _, p := range c.providers {
		guarded = append(guarded, p.res...)
	}
	for _, e := range loadCorpus(t) {
		r := parseReply(e.reply)
		h := c.m.scan(r.text, nil)
		for _, g := range guarded {
			if g.re.MatchString(r.text) && !g.matches(r.text, h) {
				t.Errorf("corpus.tsv:%d: %s matches but its guard rejects", e.line, g.re)
			}
		}
	}
}

func TestConcurrentClassify(t *testing.T) {
	corpus := loadCorpus(t)
	c := Default()
	want := make([]Result, len(corpus))
	for i, e := range corpus {
		want[i] = c.Classify(e.reply)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Go(func() {
			for i, e := range corpus {
				if got := c.Classify(e.reply); got != want[i] {
					t.Errorf("corpus.tsv:%d: concurrent result differs", e.line)
				}
			}
		})
	}
	wg.Wait()
}

// TestClassifyReply: a reply known by its parts is read as the same reply written out,
// and a code quoted inside the text does not override the reply's own.
func TestClassifyReply(t *testing.T) {
	c := Default()
	cases := []struct {
		code     int
		enhanced string
		text     string
	}{
		{550, "5.1.1", "The email account that you tried to reach does not exist. Please try double-checking the recipient's email address for typos"},
		{421, "4.7.0", "[192.0.2.1] Our system has detected an unusual rate of unsolicited mail originating from your IP address"},
		{550, "5.7.1", "Service unavailable, Client host [192.0.2.1] blocked using Spamhaus"},
		{452, "4.2.2", "The email account that you tried to reach is over quota"},
		{0, "", "dial tcp 192.0.2.1:25: connect: connection refused"},
	}
	for _, tc := range cases {
		written := tc.text
		if tc.code != 0 {
			written = fmt.Sprintf("%d %s %s", tc.code, tc.enhanced, tc.text)
		}
		got, want := c.ClassifyReply(tc.code, tc.enhanced, tc.text, "mx.example.test"), c.ClassifyFrom(written, "mx.example.test")
		if got != want {
			t.Errorf("%q: by parts %+v, written out %+v", written, got, want)
		}
	}
	// The reply is a 4xx; the text quotes an earlier 550 5.1.1.
	r := c.ClassifyReply(451, "4.3.0", "temporary failure; earlier reply was 550 5.1.1 user unknown", "")
	if !r.Temporary {
		t.Errorf("a 451 read as permanent because its text quotes a 550: %+v", r)
	}
}

// TestCodePriors checks that an enhanced code family outweighs the weak policy and
// transient wordings, and loses to a stronger wording of another category.
func TestCodePriors(t *testing.T) {
	c := Default()
	tests := []struct{ reply, want string }{
		{"550 5.1.1 Access denied", BadMailbox},                           // prior over "access denied"
		{"550 5.2.2 Delivery not authorized", MailboxFull},                // prior over policy
		{"450 4.2.2 Temporary failure, try again later", MailboxFull},     // prior over transient
		{"552 5.1.1 recipient rejected - quota violation", MailboxFull},   // family over prior
		{"550 5.1.1 inactive email address", InactiveMailbox},             // family over prior
		{"550 5.7.1 Access denied", Policy},                               // x.7.1 is no prior
		{"554 5.7.9 Message not accepted for policy reasons", Policy},     // 5.7.9 is no prior
		{"550 5.9.9 gibberish", Other},                                    // no family, no prior
		{"451 4.4.4 Temporary server error. Please try again", Transient}, // 4.4.4 is no prior
	}
	for _, tt := range tests {
		if got := c.Classify(tt.reply); got.Category != tt.want {
			t.Errorf("Classify(%q) = %s (%s), want %s", tt.reply, got.Category, ruleID(c, tt.reply), tt.want)
		}
	}
}
