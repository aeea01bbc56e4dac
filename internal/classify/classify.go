package classify

import (
	"strconv"
	"strings"
	"sync"

	"github.com/repute-mail/repute/internal/provider"
)

// MaxReplyBytes bounds the reply text that is looked at; the rest is ignored. Real replies
// are a few hundred bytes; the limit keeps a hostile peer's 1 MB "reply" from costing more
// than a normal one.
const MaxReplyBytes = 8 << 10

// Categories (docs/CONTRACTS.md §3). Exactly one is set on every Result.
const (
	BadMailbox       = "bad_mailbox"
	InactiveMailbox  = "inactive_mailbox"
	BadDomain        = "bad_domain"
	MailboxFull      = "mailbox_full"
	MessageTooLarge  = "message_too_large"
	Greylisted       = "greylisted"
	RateLimited      = "rate_limited"
	IPReputation     = "ip_reputation"
	DomainReputation = "domain_reputation"
	Authentication   = "authentication"
	ReverseDNS       = "reverse_dns"
	ContentSpam      = "content_spam"
	Policy           = "policy"
	TLSRequired      = "tls_required"
	RelayDenied      = "relay_denied"
	DNSFailure       = "dns_failure"
	InvalidSender    = "invalid_sender"
	Transient        = "transient"
	Other            = "other"
)

// Actions (docs/CONTRACTS.md §3): what the scheduler, the shaper and the admin should do.
const (
	ActionRetry             = "retry"              // try the message again later, as usual
	ActionSlowDown          = "slow_down"          // lower the rate to this provider, then retry
	ActionPauseProvider     = "pause_provider"     // stop sending to this provider from this IP
	ActionSuppressRecipient = "suppress_recipient" // never send to this address again
	ActionFixSetup          = "fix_setup"          // our configuration is wrong; an admin must act
	ActionBounce            = "bounce"             // give up on this message and tell the sender
)

// Categories lists every category, in the order of docs/CONTRACTS.md §3.
var Categories = []string{
	BadMailbox, InactiveMailbox, BadDomain, MailboxFull, MessageTooLarge, Greylisted,
	RateLimited, IPReputation, DomainReputation, Authentication, ReverseDNS, ContentSpam,
	Policy, TLSRequired, RelayDenied, DNSFailure, InvalidSender, Transient, Other,
}

// Actions lists every action.
var Actions = []string{
	ActionRetry, ActionSlowDown, ActionPauseProvider, ActionSuppressRecipient,
	ActionFixSetup, ActionBounce,
}

// Result is the classification of one SMTP reply (docs/CONTRACTS.md §3; the JSON field names are
// a contract).
type Result struct {
	Category  string `json:"category"`  // one of Categories
	Provider  string `json:"provider"`  // provider id (docs/CONTRACTS.md §4), "" when unknown
	Temporary bool   `json:"temporary"` // how the sender should treat it (see the package doc)
	Action    string `json:"action"`    // one of Actions
	Advice    string `json:"advice"`    // one sentence for the admin: what it means, what to do
	URL       string `json:"url"`       // remediation page where one exists, else ""
}

// Classifier holds compiled rules and providers. It is immutable after Load and safe for
// concurrent use.
type Classifier struct {
	rules     []*rule          // in the order they are tried
	providers []*providerRules // in the order their text patterns are tried
	table     *provider.Table  // MX host suffixes
	byID      map[string]*providerRules
	m         *matcher  // finds every substring pattern in one pass over the text
	pats      *patterns // collects the patterns while loading; nil afterwards
}

var defaultClassifier = sync.OnceValue(func() *Classifier {
	c, err := Load()
	if err != nil {
		// The embedded tables are part of the binary and covered by tests.
		panic("classify: embedded rules: " + err.Error())
	}
	return c
})

// Default returns the classifier built from the embedded rules.toml and providers.toml.
// It is compiled once and shared.
func Default() *Classifier { return defaultClassifier() }

// Classify classifies a reply as logged: "550 5.7.1 text", or a multi-line reply with its
// lines joined by LF, CRLF, a literal "\n", "|" or a space.
func (c *Classifier) Classify(reply string) Result {
	return c.classify(reply, "")
}

// ClassifyFrom is Classify for a reply from the MX host mxHost: when the text does not name
// a provider, the provider of the host name is used, both in the Result and for the rules
// that apply to one provider only.
func (c *Classifier) ClassifyFrom(reply, mxHost string) Result {
	return c.classify(reply, c.Provider(mxHost))
}

// Provider returns the provider id of an MX host name by its longest known suffix
// ("gmail-smtp-in.l.google.com" → "google"), or "" when unknown.
func (c *Classifier) Provider(mxHost string) string { return c.table.Lookup(mxHost) }

// Providers is the provider table the classifier was built with (the embedded one plus
// the admin's), for grouping destinations by the same ids.
func (c *Classifier) Providers() *provider.Table { return c.table }

// ClassifyReply classifies a reply known by its parts, as a delivery attempt records it:
// the basic code (0 when there was no reply: a network, DNS or TLS failure), the enhanced
// code ("" when none) and the text. Nothing is re-parsed out of a formatted string, so a
// text that quotes other codes cannot override the reply's own.
func (c *Classifier) ClassifyReply(code int, enhanced, text, mxHost string) Result {
	if len(text) > MaxReplyBytes {
		text = text[:MaxReplyBytes]
	}
	var r reply
	if code >= 200 && code <= 599 {
		r.basic = strconv.Itoa(code)
	}
	if n := enhancedLen(enhanced, 0); n > 0 && n == len(enhanced) {
		r.enhanced = enhanced
	}
	r.finish(text)
	return c.match(r, c.Provider(mxHost))
}

func (c *Classifier) classify(raw, mxProvider string) Result {
	return c.match(parseReply(raw), mxProvider)
}

func (c *Classifier) match(r reply, mxProvider string) Result {
	var buf [64]uint64 // room for 4,096 patterns without allocating
	h := c.m.scan(r.text, buf[:0])
	prov := c.textProvider(r.text, h)
	if prov == "" {
		prov = mxProvider
	}
	for _, ru := range c.rules {
		if ru.matches(&r, h, prov) {
			return c.result(ru.category, ru.temporary, ru.action, ru.advice, ru.url, prov, &r)
		}
	}
	return c.result(Other, nil, "", "", "", prov, &r)
}

// result fills in what the matching rule left open: Temporary from the reply class or the
// category, the action from the default table, the advice from the category, the URL from
// the provider.
func (c *Classifier) result(category string, temp *bool, action, advice, url, prov string, r *reply) Result {
	res := Result{Category: category, Provider: prov, Action: action, Advice: advice, URL: url}
	switch {
	case temp != nil:
		res.Temporary = *temp
	case r.class == '4':
		res.Temporary = true
	case r.class == '5' || r.class == '2' || r.class == '3':
		res.Temporary = false
	default:
		res.Temporary = categoryTemporary[category]
	}
	if res.Action == "" {
		res.Action = defaultAction(category, res.Temporary)
	}
	if res.Advice == "" {
		res.Advice = categoryAdvice[category]
	}
	if res.URL == "" && prov != "" {
		if p := c.byID[prov]; p != nil {
			res.URL = p.urlFor(category)
		}
	}
	return res
}

// categoryTemporary decides Temporary for replies without a code (network errors, texts
// from logs that dropped the code) when the rule does not.
var categoryTemporary = map[string]bool{
	Greylisted: true, RateLimited: true, Transient: true, DNSFailure: true,
	MailboxFull: true, Other: true,
}

// defaultAction is the table of the package documentation.
func defaultAction(category string, temporary bool) string {
	switch category {
	case BadMailbox, InactiveMailbox, BadDomain:
		if temporary {
			return ActionRetry
		}
		return ActionSuppressRecipient
	case MessageTooLarge:
		return ActionBounce
	case Greylisted, Transient:
		return ActionRetry
	case RateLimited:
		return ActionSlowDown
	case IPReputation, DomainReputation:
		return ActionPauseProvider
	case Authentication, ReverseDNS, TLSRequired, RelayDenied, InvalidSender:
		return ActionFixSetup
	}
	// mailbox_full, dns_failure, content_spam, policy, other.
	if temporary {
		return ActionRetry
	}
	return ActionBounce
}

// categoryAdvice is used when a rule (usually an admin's) gives no advice of its own.
var categoryAdvice = map[string]string{
	BadMailbox:       "The recipient address does not exist; remove it from your lists.",
	InactiveMailbox:  "The recipient mailbox is disabled or abandoned; stop sending to it.",
	BadDomain:        "The recipient domain does not exist or accepts no mail; check the address for typos and stop sending to it.",
	MailboxFull:      "The recipient mailbox is full; the message is retried while the receiver defers it, and repeated failures mean an abandoned mailbox.",
	MessageTooLarge:  "The message is larger than the receiver accepts; send the attachment as a link or make it smaller.",
	Greylisted:       "The receiver greylists first-time senders; the retry a few minutes later is normally accepted, nothing to do.",
	RateLimited:      "The receiver throttles our traffic; lower the connection and message rate to this provider and warm up new IPs gradually.",
	IPReputation:     "The receiver blocks our sending IP for its reputation; check the blocklists named in the reply, fix the cause and request delisting.",
	DomainReputation: "The receiver blocks the sending domain or a domain linked in the message for its reputation; check domain blocklists and the links in the message.",
	Authentication:   "SPF, DKIM or DMARC failed at the receiver; check the records and the signing with 'repute check'.",
	ReverseDNS:       "The receiver rejects our IP's reverse DNS or HELO name; give each source IP a PTR record that resolves back to it and use that name in HELO.",
	ContentSpam:      "The receiver judged the content as spam or malware; review the message, its links and attachments.",
	Policy:           "The receiver refused the message by its local policy; the reply text or its postmaster says which.",
	TLSRequired:      "The receiver requires TLS or a newer TLS version; check our STARTTLS support and certificates.",
	RelayDenied:      "The receiver does not accept this recipient domain from us; check the MX records of the recipient domain and our relay settings.",
	DNSFailure:       "DNS lookups failed during delivery; the attempt is retried, and persistent failures point at the recipient's DNS or our resolver.",
	InvalidSender:    "The receiver rejects our envelope sender or From address; make sure the sender domain exists, has MX or A records and that the address accepts bounces.",
	Transient:        "The receiver had a temporary problem; the message is retried automatically.",
	Other:            "The reply was not recognised; read the text and, if it recurs, add a rule for it.",
}

// reply is a parsed, normalised reply.
type reply struct {
	basic    string // "550", or "" when absent
	enhanced string // "5.7.1", or "" when absent
	class    byte   // '2'..'5' from the basic code, else from the enhanced code, else 0
	text     string // normalised text: codes stripped, whitespace collapsed, lower case
}

// parseReply extracts the codes of a reply and normalises its text for matching.
func parseReply(raw string) reply {
	if len(raw) > MaxReplyBytes {
		raw = raw[:MaxReplyBytes]
	}
	s := strings.TrimLeft(raw, " \t\r\n|")
	var r reply
	body := s
	if isBasicAt(s, 0) {
		r.basic = s[:3]
		i := 3
		if i < len(s) && (s[i] == '-' || s[i] == ' ' || s[i] == '\t') {
			i++
		}
		for i < len(s) && (s[i] == ' ' || s[i] == '\t') {
			i++
		}
		if n := enhancedLen(s, i); n > 0 {
			r.enhanced = s[i : i+n]
			i += n
		}
		body = s[i:]
	} else if n := enhancedLen(s, 0); n > 0 {
		r.enhanced = s[:n]
		body = s[n:]
	} else {
		r.basic, r.enhanced = embeddedCodes(s)
	}
	r.finish(body)
	return r
}

// finish completes a reply whose codes are known (or absent) from its text: an enhanced
// code standing in the text when none was given, the class, the normalised text.
func (r *reply) finish(body string) {
	if r.enhanced == "" {
		r.enhanced = findEnhanced(body, r.basic)
	}
	switch {
	case r.basic != "":
		r.class = r.basic[0]
	case r.enhanced != "":
		r.class = r.enhanced[0]
	}
	r.text = normalize(body, r.basic)
}

// embeddedCodes finds the codes of a reply quoted inside a longer log line: a basic code
// followed by an enhanced code ("host mx[192.0.2.1] said: 550 5.1.1 ..."), else a basic
// code after a colon ("said: 550 Unrouteable address").
func embeddedCodes(s string) (basic, enhanced string) {
	for i := 0; i+3 < len(s); i++ {
		if !wordStart(s, i) || !isBasicAt(s, i) || (s[i+3] != ' ' && s[i+3] != '-') {
			continue
		}
		if n := enhancedLen(s, i+4); n > 0 {
			return s[i : i+3], s[i+4 : i+4+n]
		}
	}
	for i := 0; i < len(s); i++ {
		if s[i] != ':' {
			continue
		}
		j := i + 1
		for j < len(s) && s[j] == ' ' {
			j++
		}
		if isBasicAt(s, j) && (j+3 == len(s) || s[j+3] == ' ' || s[j+3] == '-') {
			return s[j : j+3], ""
		}
	}
	return "", ""
}

// findEnhanced returns the first enhanced status code in s that stands on its own
// ("(#5.1.1)" in qmail replies), not inside an IP address or a longer number, and that is
// of the same class as the basic code when there is one ("version 4.2.1" in a 550 reply is
// not a status code).
func findEnhanced(s, basic string) string {
	for i := 0; i < len(s); i++ {
		if basic != "" && s[i] != basic[0] {
			continue
		}
		if wordStart(s, i) {
			if n := enhancedLen(s, i); n > 0 {
				return s[i : i+n]
			}
		}
	}
	return ""
}

// wordStart reports whether s[i] is not preceded by a letter, digit or dot.
func wordStart(s string, i int) bool {
	if i == 0 {
		return true
	}
	c := s[i-1]
	return !(isDigit(c) || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z')
}

// isBasicAt reports whether s has a basic reply code (RFC 5321 §4.2) at i, followed by a
// separator or the end.
func isBasicAt(s string, i int) bool {
	if len(s) < i+3 || s[i] < '2' || s[i] > '5' || !isDigit(s[i+1]) || !isDigit(s[i+2]) {
		return false
	}
	if len(s) == i+3 {
		return true
	}
	switch s[i+3] {
	case ' ', '-', '\r', '\n', '\t', '|':
		return true
	}
	return false
}

// enhancedLen returns the length of an enhanced status code (RFC 3463 §2:
// class "." subject "." detail, subject and detail of 1 to 3 digits) at s[i:], or 0.
// A code directly followed by another digit or by "." and a digit is part of something
// else, such as an IP address.
func enhancedLen(s string, i int) int {
	j := i
	if j >= len(s) || (s[j] != '2' && s[j] != '4' && s[j] != '5') {
		return 0
	}
	j++
	for part := 0; part < 2; part++ {
		if j >= len(s) || s[j] != '.' {
			return 0
		}
		j++
		k := j
		for j < len(s) && isDigit(s[j]) && j-k < 3 {
			j++
		}
		if j == k {
			return 0
		}
	}
	if j < len(s) && isDigit(s[j]) {
		return 0
	}
	if j+1 < len(s) && s[j] == '.' && isDigit(s[j+1]) {
		return 0
	}
	return j - i
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

// normalize joins the lines of a reply body into one lower-case line with single spaces,
// dropping the reply code that starts each continuation line ("550-5.1.1 ", "550 5.1.1 ",
// "550-") whether the lines were joined by CR/LF, a literal "\n", "|" or a space.
func normalize(s, basic string) string {
	var stack [512]byte
	out := stack[:0]
	if len(s) > len(stack) {
		out = make([]byte, 0, len(s))
	}
	pendingSpace := false
	afterSpace := true // at a word boundary: start, after whitespace or a line break
	lineStart := true  // right after a line break (or at the start)
	for i := 0; i < len(s); {
		c := s[i]
		if !wordByte[c] {
			if c == '\\' && i+1 < len(s) && (s[i+1] == 'n' || s[i+1] == 'r') {
				c = '\n'
				i++
			}
			switch c {
			case '\n', '\r', '|':
				pendingSpace, afterSpace, lineStart = true, true, true
				i++
				continue
			case '\\':
			default:
				pendingSpace, afterSpace = true, true
				i++
				continue
			}
		}
		if afterSpace && basic != "" && c == basic[0] && strings.HasPrefix(s[i:], basic) {
			if n := continuationLen(s, i, lineStart); n > 0 {
				i += n
				pendingSpace, afterSpace = true, true
				continue
			}
		}
		if pendingSpace && len(out) > 0 {
			out = append(out, ' ')
		}
		pendingSpace, afterSpace, lineStart = false, false, false
		// The rest of the word cannot hold a continuation code: copy it in one go.
		j := i + 1
		for j < len(s) && wordByte[s[j]] {
			j++
		}
		out = append(out, s[i:j]...)
		i = j
	}
	nonASCII := false
	for k, c := range out {
		if c >= 'A' && c <= 'Z' {
			out[k] = c + 'a' - 'A'
		} else if c >= 0x80 {
			nonASCII = true
		}
	}
	if nonASCII {
		return strings.ToLower(string(out))
	}
	return string(out)
}

// wordByte marks the bytes that normalize copies as they are: everything but whitespace,
// control characters, "|" (a line join) and "\\" (which may start a literal "\n").
var wordByte = func() (t [256]bool) {
	for c := range t {
		t[c] = c > ' ' && c != 0x7f && c != '|' && c != '\\'
	}
	return t
}()

// continuationLen returns how many bytes of a continuation-line code start at s[i] (which
// begins with the reply's basic code), or 0 when the digits are ordinary text. "550-" and
// "550 5.1.1" are codes anywhere; a lone "550 " only right after a line break.
func continuationLen(s string, i int, lineStart bool) int {
	j := i + 3
	if j == len(s) {
		return j - i
	}
	switch s[j] {
	case '\r', '\n', '|':
		return j - i
	case '-':
		j++
	case ' ':
		j++
		if n := enhancedLen(s, j); n > 0 {
			return j + n - i
		}
		if lineStart {
			return j - i
		}
		return 0
	default:
		return 0
	}
	if n := enhancedLen(s, j); n > 0 {
		j += n
	}
	return j - i
}
