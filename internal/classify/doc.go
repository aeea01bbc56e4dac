// Package classify is Repute's bounce intelligence: it turns the reply of a remote SMTP
// server into a category, the provider that answered, whether the sender should treat the
// failure as temporary, an action for the scheduler and one sentence of advice for the
// admin (docs/CONTRACTS.md §3, §4). It is a pure function of its input: no network, no clock,
// no state beyond the compiled tables, so it is table-tested against a golden corpus of
// real-world replies (testdata/corpus.tsv) and fuzzed.
//
// Why text first: enhanced status codes (RFC 3463) are too coarse and too often misused to
// act on. "550 5.7.1" is used by receivers for blocklisted IPs, DMARC rejections, spam
// verdicts and local policy alike; Microsoft uses 5.4.1 for unknown recipients and Yahoo
// sends "554 30". A mail engineer reads the words, so the classifier does too: rules that
// match the text are tried first, rules that only look at the enhanced code second
// (RFC 3463 §3 subject and detail; except the code priors below), the basic code
// (RFC 5321 §4.2) last. A bare "550"
// with no recognisable text is "other" with action "bounce": RFC 5321 §4.2.2 gives 550 to
// unknown mailboxes and policy refusals alike, and suppressing a recipient on a guess
// would lose mail.
//
// Why evidence strengths rather than a list of phrases: rules fitted wording by wording
// classified 99% of the replies they were written from and 82-90% of fresh ones, because a
// fresh reply says the same thing in words no rule had seen. So each rule's priority is the
// strength of its evidence on one scale, and the strongest matching evidence wins (the
// first match in priority order is the maximum): a provider's own code; then the exact
// wordings of each category; then keyword families per category, stems tied to their
// subject within a clause ("quota" or "full" near "mailbox", "relay" near a refusal,
// "reputation" or "listed" near "IP", "too many", "throttl", "spam"), which carry the
// category to wordings nobody collected; then the code priors, the RFC 3463 families that
// name one cause (x.1.1 bad mailbox, x.1.2 and 5.4.4 bad domain, x.2.1 inactive, x.2.2
// full, x.2.3 and x.3.4 too large, x.1.7 and x.1.8 sender, x.5.3 rate, x.7.20-26
// authentication, x.7.25 reverse DNS, x.7.10-11 TLS), which outweigh the weak words below
// them; then the weak words that say only "refused" or "later" (policy, access denied,
// try again), and last the codes that name no cause (x.7.1, x.4.x, 552, the class).
// Summing evidence was not needed: the replies that mix categories ("spam score exceeds
// threshold", "SPF sender invalid") are decided by which evidence is more specific, which
// is what the scale orders.
//
// The exception is a receiver's own status code: Outlook.com's "(S3140)", Yahoo's "[TSS04]",
// Gmail's 4.7.27, Comcast's "BL000001" each name one documented cause, more precisely than
// the words around them, and they survive when a log cut the text short or garbled it. Rules
// marked decisive match such a code as a whole token (never inside a longer word or number)
// and are tried before all others, so the code decides whatever the rest of the text says.
//
// The rules and the provider table are data (rules.toml, providers.toml, embedded), so an
// admin can add or override them with Load without a release; see rules.toml for the
// format. Matching is on a normalised copy of the reply: at most 8 KiB, continuation-line
// codes removed ("550-5.1.1 ", also when loggers joined lines with "|" or spaces),
// whitespace collapsed, lower case. Substring patterns are the norm; regexps are Go's RE2,
// so classification is linear in the input and cannot be made to backtrack. All substrings
// of all rules and providers are found in one pass (an Aho-Corasick automaton), and a
// regexp runs only when the literals it cannot match without are present, so a typical
// reply is classified in a few microseconds however many rules there are.
//
// Temporary is how the sender should treat the reply, not just its first digit: a rule may
// fix it (greylisting is temporary even behind a 5xx code; an oversized message stays too
// large however often it is retried), else the reply class decides (4 → temporary,
// 5 → permanent), else, for texts without a code such as network errors, the category.
//
// The action, unless a rule sets one, follows from the category and Temporary:
//
//	bad_mailbox, inactive_mailbox, bad_domain   suppress_recipient; retry when temporary
//	mailbox_full                                retry when temporary, else bounce
//	message_too_large                           bounce
//	greylisted, transient, dns_failure          retry; bounce when permanent (dns_failure)
//	rate_limited                                slow_down
//	ip_reputation, domain_reputation            pause_provider
//	authentication, reverse_dns, tls_required,
//	relay_denied, invalid_sender                fix_setup
//	content_spam, policy, other                 retry when temporary, else bounce
//
// Upstream: internal/delivery and internal/scheduler classify every failed attempt
// (ClassifyFrom with the MX host), internal/dsn and the DSN/ARF parser in this package feed
// it the diagnostic codes of incoming bounces, cmd/repute runs "repute bounce classify".
// Downstream: nothing; the result is data for internal/reputation, the suppression list and
// the mail-event log.
package classify
