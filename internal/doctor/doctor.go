// Package doctor is Repute's setup doctor: it generates every DNS record a mail domain
// needs (records.go) and checks, live, every prerequisite of getting mail delivered
// (checks*.go): reverse DNS, SPF, DKIM, DMARC, MTA-STS, TLS-RPT, DANE, certificates, open
// ports and blocklists. The two are one capability because they must agree: a check
// passes exactly when the record the generator prints is published, and its fix names
// that record.
//
// Why live checks: every account of giving up on self-hosting is a checklist run by hand
// with dig, where one wrong value (SPF without the relay, a DKIM key rotated but not
// published, a PTR that does not match the HELO name) silently sends mail to spam. The
// checks ask the same questions a receiver asks, through the same resolver Repute
// delivers with (config dns.resolver), and probe the server's own endpoints the way a
// sender or client would (TLS on 25/465/993, HTTPS for MTA-STS), so a pass means the
// world sees the same thing.
//
// Every result has a stable id (a contract, docs/CONTRACTS.md §6), a status (pass,
// warn, fail, or error when the check itself could not run, such as a blocklist refusing
// the query: an error is never reported as a fail), what was found, why it matters and the
// exact fix. Checks never change anything.
//
// Upstream: cmd/repute (repute check, repute dns records, repute dns push, repute
// quickstart), internal/app (the scheduled self-check, outbound.direct_when) and
// internal/web (the MTA-STS policy). Downstream: internal/dns for every lookup, the
// network for the probes.
package doctor

import (
	"net/netip"
	"time"
)

// Status is the outcome of one check.
type Status string

// Statuses, from good to bad; error means the check could not run.
const (
	Pass  Status = "pass"
	Warn  Status = "warn"
	Fail  Status = "fail"
	Error Status = "error"
)

// Check ids (docs/CONTRACTS.md §6): stable, scripts and the dashboard rely on them.
const (
	IDPTR             = "ptr"
	IDFCrDNS          = "fcrdns"
	IDHELO            = "helo"
	IDIPType          = "ip_type"
	IDMX              = "mx"
	IDSPF             = "spf"
	IDDKIM            = "dkim"
	IDDMARC           = "dmarc"
	IDMTASTS          = "mta_sts"
	IDTLSRPT          = "tls_rpt"
	IDTLSA            = "tlsa"
	IDDNSSEC          = "dnssec"
	IDCert            = "cert"
	IDPort25Out       = "port25_out"
	IDPortsIn         = "ports_in"
	IDBlocklistIP     = "blocklist_ip"
	IDBlocklistDomain = "blocklist_domain"
	IDPTRHint         = "reverse_dns_provider_hint"
)

// Result is one check's outcome for one target (an IP, a domain, a selector, a list).
type Result struct {
	ID     string `json:"id"`
	Status Status `json:"status"`
	Target string `json:"target"`
	Found  string `json:"found"` // what the check saw
	Why    string `json:"why"`   // why it matters
	Fix    string `json:"fix"`   // what to change, naming the record or setting and the value; "" on pass
	URL    string `json:"url"`   // a page that helps (delisting form, provider docs); may be ""
}

// Summary counts the results by status.
type Summary struct {
	Pass  int `json:"pass"`
	Warn  int `json:"warn"`
	Fail  int `json:"fail"`
	Error int `json:"error"`
}

// Report is the output of a run: `repute check --json` prints it.
type Report struct {
	Checks  []Result `json:"checks"`
	Summary Summary  `json:"summary"`
}

// Add appends results and counts them.
func (r *Report) Add(res ...Result) {
	for _, x := range res {
		r.Checks = append(r.Checks, x)
		switch x.Status {
		case Pass:
			r.Summary.Pass++
		case Warn:
			r.Summary.Warn++
		case Fail:
			r.Summary.Fail++
		default:
			r.Summary.Error++
		}
	}
}

// Failed reports whether any check failed (the exit status of repute check).
func (r *Report) Failed() bool { return r.Summary.Fail > 0 }

// Get returns the results with this id.
func (r *Report) Get(id string) []Result {
	var out []Result
	for _, x := range r.Checks {
		if x.ID == id {
			out = append(out, x)
		}
	}
	return out
}

// Domain is a local mail domain as the doctor sees it.
type Domain struct {
	Name string
	DKIM []DKIMKey // every key whose record should be published
}

// DKIMKey is one DKIM key: its selector, state (active, pending, retired) and the TXT
// value that publishes its public key ("v=DKIM1; k=rsa; p=...").
type DKIMKey struct {
	Selector  string
	Algorithm string // "rsa" or "ed25519"
	State     string // "active", "pending" (announced, not yet signing) or "retired"
	Record    string // the TXT value
	RetireBy  time.Time
}

// Setup is what the records and the checks are computed from: the server's configuration
// and its local domains, read by the caller (cmd/repute, internal/app).
type Setup struct {
	Hostname string
	// SendIPs are the addresses the world sees our mail come from (outbound.public_ips,
	// else outbound.source_ips, else the addresses the system would choose).
	SendIPs []netip.Addr
	// HostIPs are the hostname's addresses for its A/AAAA records (usually SendIPs).
	HostIPs []netip.Addr
	Domains []Domain
	// Relay is outbound.relay (or fallback_relay) "host:port", "" when mail goes direct;
	// SPF must authorise it too.
	Relay string
	// RelaySPF is the SPF mechanism that authorises the relay ("include:spf.example.net"
	// or "ip4:..."); "" when unknown (the fix then says to add the relay's).
	RelaySPF string

	MTASTSMode   string        // enforce, testing, none
	MTASTSMaxAge time.Duration // max_age of the policy
	MTASTSMX     []string      // MX names the policy lists beside Hostname (mta_sts.mx)
	ReportsLocal string        // local part of the rua mailbox
	ACMECA       string        // the ACME CA's CAA issuer domain ("letsencrypt.org"), "" without ACME

	// Certificate names TLSA is computed for: the public key of the current and of the next
	// certificate key (DANE rollover: the next key is announced before it is used).
	TLSAKeys [][]byte // DER SubjectPublicKeyInfo of the current key, then the next one

	// Notes are what the admin should know about the set-up that no record carries (no
	// TLSA without a certificate, a relay SPF cannot authorise, ...).
	Notes []string
}
