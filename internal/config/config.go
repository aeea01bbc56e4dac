// Package config defines Repute's one configuration file: a strict TOML schema whose
// defaults live in code (Default), so that an empty file is a working server and an
// unknown or misspelt key is an error with its line number rather than a silent no-op.
//
// Upstream: cmd/repute reads the file named by --config or $REPUTE_CONFIG.
// Downstream: internal/app builds every component from the returned Config.
package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DefaultConfigPath is where the configuration file lives unless $REPUTE_CONFIG or
// --config says otherwise.
const DefaultConfigPath = "/etc/repute/repute.toml"

// DefaultPath returns $REPUTE_CONFIG if it is set, else DefaultConfigPath.
func DefaultPath() string {
	if p := os.Getenv("REPUTE_CONFIG"); p != "" {
		return p
	}
	return DefaultConfigPath
}

// Config is the whole server configuration. Field tags are the TOML keys; the keys named
// in the contract of docs/CONTRACTS.md §2 (hostname, data_dir, [listen], [tls], [dns], [outbound], [store])
// must keep their names.
type Config struct {
	Hostname string `toml:"hostname"` // EHLO name, TLS name, expected PTR
	DataDir  string `toml:"data_dir"` // database, TLS material, events.log

	Listen   Listen   `toml:"listen"`
	TLS      TLS      `toml:"tls"`
	DNS      DNS      `toml:"dns"`
	Outbound Outbound `toml:"outbound"`
	Queue    Queue    `toml:"queue"`
	Shaping  Shaping  `toml:"shaping"`
	Warmup   Warmup   `toml:"warmup"`
	Alerts   Alerts   `toml:"alerts"`
	Check    Check    `toml:"check"`
	MTASTS   MTASTS   `toml:"mta_sts"`
	Reports  Reports  `toml:"reports"`
	Store    Store    `toml:"store"`
	SMTP     SMTP     `toml:"smtp"`
	Bounce   Bounce   `toml:"bounce"`
	IMAP     IMAP     `toml:"imap"`
	Log      Log      `toml:"log"`
}

// Listen holds one address per listener; "" disables that listener.
type Listen struct {
	SMTP        string `toml:"smtp"`
	Submission  string `toml:"submission"`
	Submissions string `toml:"submissions"`
	IMAP        string `toml:"imap"`
	IMAPS       string `toml:"imaps"`
	HTTP        string `toml:"http"`
	HTTPS       string `toml:"https"`
	Metrics     string `toml:"metrics"` // Prometheus /metrics over plain HTTP; "" = off
	Debug       string `toml:"debug"`   // pprof and runtime stats, loopback only; "" = off
}

// TLS selects the certificate. With neither files nor ACME, a self-signed certificate for
// Hostname is generated in DataDir on first start (with a warning).
type TLS struct {
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// ACMEEmail turns ACME on: certificates for the hostname and the mta-sts and autoconfig
	// names of every local domain are obtained and renewed automatically; the address gets
	// the CA's expiry notices.
	ACMEEmail     string `toml:"acme_email"`
	ACMEDirectory string `toml:"acme_directory"` // the CA's directory URL; "" = Let's Encrypt production
	ACMECAFile    string `toml:"acme_ca_file"`   // PEM roots trusted for the directory (a private CA); "" = system roots
}

// Check configures `repute check` and the server's scheduled self-check.
type Check struct {
	// Port25Probe is a "host:port" that outbound port 25 must reach for port25_out to pass
	// (a large provider's MX by default).
	Port25Probe string `toml:"port25_probe"`
	// PortsInProbe is the URL of an outside prober for ports_in; "" leaves the check out.
	PortsInProbe string `toml:"ports_in_probe"`
	// Blocklists are the DNS blocklists queried for the source IPs (zones such as
	// "zen.spamhaus.org"); DomainBlocklists those queried for the domains.
	Blocklists       []string `toml:"blocklists"`
	DomainBlocklists []string `toml:"domain_blocklists"`
	// Interval is how often the server runs the checks itself; 0 turns the self-check off.
	Interval Duration `toml:"interval"`
}

// MTASTS is the MTA-STS policy (RFC 8461) served for every local domain at
// https://mta-sts.DOMAIN/.well-known/mta-sts.txt.
type MTASTS struct {
	Mode   string   `toml:"mode"`    // "enforce", "testing" or "none"
	MaxAge Duration `toml:"max_age"` // how long senders cache the policy
	// MX are MX host names (or "*.example.com" patterns) the policy lists beside the
	// hostname: other MX hosts of the domains, such as a backup MX. The policy never
	// follows the live MX records: it exists to protect mail when DNS is forged.
	MX []string `toml:"mx"`
}

// Reports names the mailbox that receives DMARC aggregate and TLS-RPT reports (the rua of
// the records Repute generates): this local part at each local domain.
type Reports struct {
	LocalPart string `toml:"local_part"`
}

// DNS chooses the resolver every lookup goes through.
type DNS struct {
	Resolver string `toml:"resolver"` // "IP:PORT"; empty = system resolver
	// DNSSECProbe is a name in a signed zone, looked up to tell whether the resolver
	// validates DNSSEC (DANE needs it; repute check reports it); "" = the root. Only a
	// private DNS whose resolver does not know the root needs another.
	DNSSECProbe string `toml:"dnssec_probe"`
}

// Queue configures the outbound queue's retry behaviour. Retries back off exponentially
// (with jitter) from RetryMin to RetryMax; a message still undelivered after MaxAge is
// returned to its sender, who is also warned once after DelayWarning.
type Queue struct {
	RetryMin     Duration `toml:"retry_min"`     // first retry after this
	RetryMax     Duration `toml:"retry_max"`     // longest wait between attempts
	MaxAge       Duration `toml:"max_age"`       // give up and bounce after this
	DelayWarning Duration `toml:"delay_warning"` // delay notice after this; 0 = none
	Concurrency  int      `toml:"concurrency"`   // destinations delivered to at once
	ScanInterval Duration `toml:"scan_interval"` // how often the queue is re-read for work added by other processes
}

// Shaping configures the outbound engine's pacing (docs/CONTRACTS.md §10).
type Shaping struct {
	// TimeScale divides every duration of the outbound engine (the retry schedule, the
	// queue scan, leases, route caching, hold-backs, feedback rounds, cool-downs, the
	// warm-up day), so that a simulation can pass hours in seconds. Only tests and
	// benchmarks change it from 1.
	TimeScale float64 `toml:"time_scale"`
	// CoolDown is how long a blocked provider is paused before one probe message is
	// tried; each failed probe doubles it, up to MaxCoolDown.
	CoolDown    Duration `toml:"cool_down"`
	MaxCoolDown Duration `toml:"max_cool_down"`
	// Round is the engine's feedback round: one burst of deferrals is one cut of the rate,
	// and each round of good deliveries raises it a little.
	Round Duration `toml:"round"`
	// BulkSpread paces bulk mail so that each provider sees it spread over this window
	// instead of a burst; 0: bulk mail goes as fast as the provider allows.
	BulkSpread Duration `toml:"bulk_spread"`
	// Provider overrides a provider's built-in profile, by provider id ("default" for
	// destinations that are no known provider).
	Provider map[string]ProviderShaping `toml:"provider"`
}

// ProviderShaping overrides a provider's built-in limits (a zero or absent key keeps the
// built-in value).
type ProviderShaping struct {
	MaxConnections        int     `toml:"max_connections"`
	MessagesPerConnection int     `toml:"messages_per_connection"`
	MessagesPerMinute     float64 `toml:"messages_per_minute"` // the ceiling of the adaptive rate
	StartPerMinute        float64 `toml:"start_per_minute"`    // where the adaptive rate starts
	MessagesPerHour       int     `toml:"messages_per_hour"`
	MessagesPerDay        int     `toml:"messages_per_day"`
	ConnectionsPerMinute  float64 `toml:"connections_per_minute"`
	RequireTLS            *bool   `toml:"require_tls"`
	WarmupStart           *int    `toml:"warmup_start"` // the first day's cap; 0 = no warm-up for this provider
	// FallbackRelay carries this provider's mail while it is paused ("host:port"; the
	// relay_* keys of [outbound] apply); "" = outbound.fallback_relay.
	FallbackRelay string `toml:"fallback_relay"`
}

// Warmup configures the automatic IP warm-up: a new source IP's mail to each provider is
// capped per day, starting low and doubling every DoublingDays, until Days after its
// first use.
type Warmup struct {
	Enabled bool `toml:"enabled"`
	// FirstUse gives IPs already in use their first-use date (by IP; "default" names the
	// kernel's choice when outbound.source_ips is empty). Other IPs get theirs recorded
	// at their first delivery.
	FirstUse     map[string]time.Time `toml:"first_use"`
	Days         int                  `toml:"days"`
	DoublingDays float64              `toml:"doubling_days"`
}

// Alerts configures how the admin is told that a provider blocked us (and that sending
// resumed): a mail to the postmaster and an optional JSON webhook.
type Alerts struct {
	Postmaster bool   `toml:"postmaster"`  // mail postmaster@ the hostname's domain (default true)
	WebhookURL string `toml:"webhook_url"` // http(s) URL that gets a JSON POST; "" = none
}

// Scaled is d divided by shaping.time_scale.
func (c Config) Scaled(d time.Duration) time.Duration {
	if c.Shaping.TimeScale <= 0 || c.Shaping.TimeScale == 1 {
		return d
	}
	return time.Duration(float64(d) / c.Shaping.TimeScale)
}

// Outbound configures delivery to other hosts.
type Outbound struct {
	SourceIPs  []string `toml:"source_ips"`
	RemotePort int      `toml:"remote_port"`
	// Relay, if set, is a smarthost "host:port" that all outbound mail goes through.
	Relay string `toml:"relay"`
	// FallbackRelay, if set, is a smarthost "host:port" that carries a provider's mail
	// while that provider is paused (it blocked us); it uses relay_tls, relay_username and
	// relay_password_file.
	FallbackRelay     string `toml:"fallback_relay"`
	RelayTLS          string `toml:"relay_tls"`           // "starttls" (default), "implicit" or "none"
	RelayUsername     string `toml:"relay_username"`      // AUTH PLAIN user; "" = no AUTH
	RelayPasswordFile string `toml:"relay_password_file"` // file holding the password (first line)
	// RelaySPF is the SPF mechanism that authorises the relay (and fallback_relay) to send
	// for our domains, as the relay's provider documents it ("include:spf.relay.example");
	// "" = "a:" and the relay's host name.
	RelaySPF string  `toml:"relay_spf"`
	Routes   []Route `toml:"routes"`
	// PublicIPs are the addresses the world sees our mail come from when source_ips (or
	// the system's choice) are private addresses behind NAT; the checks and the SPF
	// record use them.
	PublicIPs []string `toml:"public_ips"`
	// DirectWhen is "always" (deliver directly) or "checks_pass": until the foundation
	// checks (port25_out, ptr, fcrdns, spf, dkim, blocklist_ip) pass, mail goes through
	// relay (which must be set) instead of directly, so that a misconfigured new server
	// does not burn its IP.
	DirectWhen string `toml:"direct_when"`
}

// Route sends mail for some recipient domains through a relay of its own (for example one
// provider's domains through a relay service), overriding Relay for them.
type Route struct {
	Domains      []string `toml:"domains"`
	Relay        string   `toml:"relay"`
	TLS          string   `toml:"tls"`
	Username     string   `toml:"username"`
	PasswordFile string   `toml:"password_file"`
}

// Store selects the database.
type Store struct {
	Driver string `toml:"driver"` // "sqlite" or "postgres"
	DSN    string `toml:"dsn"`
}

// SMTP holds limits shared by the MX and submission listeners.
type SMTP struct {
	MaxMessageSize      int64    `toml:"max_message_size"`       // bytes; SIZE advertised, 552 5.3.4 above
	MaxRecipients       int      `toml:"max_recipients"`         // per transaction; 452 4.5.3 above
	MaxConnections      int      `toml:"max_connections"`        // all SMTP listeners together
	MaxConnectionsPerIP int      `toml:"max_connections_per_ip"` // 421 4.7.0 above
	CommandTimeout      Duration `toml:"command_timeout"`        // idle time allowed between commands
	DataTimeout         Duration `toml:"data_timeout"`           // whole DATA/BDAT transfer
	MinFreeDisk         int64    `toml:"min_free_disk"`          // bytes; below it new mail gets 452 4.3.1
	DNSBL               []string `toml:"dnsbl"`                  // blocklist zones checked for MX clients; none by default
	SenderChecks        bool     `toml:"sender_checks"`          // iprev, SPF, DKIM, ARC, DMARC on the MX listener
	ConnectionRatePerIP int      `toml:"connection_rate_per_ip"` // new connections per minute per client; 0 = unlimited
	MessageRatePerIP    int      `toml:"message_rate_per_ip"`    // messages per minute per unauthenticated client; 0 = unlimited
	RateLimitExempt     []string `toml:"rate_limit_exempt"`      // client networks (CIDR) never rate limited
}

// Bounce configures bounce intelligence.
type Bounce struct {
	RulesFile         string   `toml:"rules_file"`         // admin classification rules, added to and overriding the built-in ones
	TagEnvelope       bool     `toml:"tag_envelope"`       // VERP-style bounce address tags on outgoing mail
	FeedbackAddresses []string `toml:"feedback_addresses"` // where ARF complaint reports arrive
	BulkSenders       []string `toml:"bulk_senders"`       // addresses or @domains whose mail is bulk
	UnsubscribeURL    string   `toml:"unsubscribe_url"`    // base of List-Unsubscribe links; "" = https://hostname
}

// IMAP holds IMAP listener limits.
type IMAP struct {
	MaxConnectionsPerIP int      `toml:"max_connections_per_ip"`
	IdleTimeout         Duration `toml:"idle_timeout"` // RFC 9051 §5.4: at least 30 minutes
}

// Log configures the developer trace log (the mail-event log is always data_dir/events.log).
type Log struct {
	Level  string `toml:"level"`  // debug, info, warn, error
	Format string `toml:"format"` // text or json
}

// Duration is a time.Duration written as a Go duration string in TOML ("5m", "30s").
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler for TOML strings.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }

// Default returns the configuration used for every key the file leaves out.
func Default() Config {
	return Config{
		Hostname: "",
		DataDir:  "/var/lib/repute",
		Listen: Listen{
			SMTP:        "0.0.0.0:25",
			Submission:  "0.0.0.0:587",
			Submissions: "0.0.0.0:465",
			IMAP:        "0.0.0.0:143",
			IMAPS:       "0.0.0.0:993",
			HTTP:        "0.0.0.0:80",
			HTTPS:       "0.0.0.0:443",
		},
		Outbound: Outbound{RemotePort: 25, DirectWhen: "always"},
		Check: Check{Port25Probe: "gmail-smtp-in.l.google.com:25", Interval: Duration{24 * time.Hour},
			Blocklists: DefaultBlocklists(), DomainBlocklists: DefaultDomainBlocklists()},
		MTASTS:  MTASTS{Mode: "testing", MaxAge: Duration{7 * 24 * time.Hour}},
		Reports: Reports{LocalPart: "reports"},
		Queue: Queue{
			RetryMin:     Duration{5 * time.Minute},
			RetryMax:     Duration{3 * time.Hour},
			MaxAge:       Duration{5 * 24 * time.Hour},
			DelayWarning: Duration{4 * time.Hour},
			Concurrency:  20,
			ScanInterval: Duration{30 * time.Second},
		},
		Shaping: Shaping{TimeScale: 1, CoolDown: Duration{time.Hour}, MaxCoolDown: Duration{24 * time.Hour},
			Round: Duration{10 * time.Second}},
		Warmup: Warmup{Enabled: true, Days: 30, DoublingDays: 3},
		Alerts: Alerts{Postmaster: true},
		Store:  Store{Driver: "sqlite"},
		SMTP: SMTP{
			MaxMessageSize:      50 << 20,
			MaxRecipients:       1000,
			MaxConnections:      10000,
			MaxConnectionsPerIP: 50,
			CommandTimeout:      Duration{5 * time.Minute},
			DataTimeout:         Duration{10 * time.Minute},
			MinFreeDisk:         200 << 20,
			SenderChecks:        true,
			ConnectionRatePerIP: 60,
			MessageRatePerIP:    120,
			RateLimitExempt:     []string{"127.0.0.0/8", "::1/128"},
		},
		Bounce: Bounce{TagEnvelope: true},
		IMAP: IMAP{
			MaxConnectionsPerIP: 50,
			IdleTimeout:         Duration{30 * time.Minute},
		},
		Log: Log{Level: "info", Format: "text"},
	}
}

// DBPath is the SQLite database file.
func (c *Config) DBPath() string { return filepath.Join(c.DataDir, "repute.db") }

// EventsLogPath is the mail-event log (one JSON line per event).
func (c *Config) EventsLogPath() string { return filepath.Join(c.DataDir, "events.log") }

// TLSDir holds generated TLS material such as the self-signed certificate.
func (c *Config) TLSDir() string { return filepath.Join(c.DataDir, "tls") }

// FillDefaults sets the values that cannot be known when the file is parsed: an empty
// Hostname becomes the system host name, which must then be a fully qualified domain name,
// since it is announced in EHLO and names the TLS certificate.
func (c *Config) FillDefaults() error {
	return c.fillDefaults(os.Hostname)
}

func (c *Config) fillDefaults(systemHostname func() (string, error)) error {
	if c.Hostname != "" {
		return nil
	}
	h, err := systemHostname()
	if err != nil {
		return fmt.Errorf("hostname is not set in the config and the system host name is unknown (%v); set hostname = \"mail.example.com\"", err)
	}
	h = strings.TrimSuffix(h, ".")
	if msg := checkDomain(h); msg != "" || !strings.Contains(h, ".") {
		return fmt.Errorf("hostname is not set in the config and the system host name %q is not a fully qualified domain name; set hostname = \"mail.example.com\" (the name this server's IP addresses resolve to)", h)
	}
	c.Hostname = strings.ToLower(h)
	return nil
}

// DefaultBlocklists are the DNS blocklists `repute check` queries for the source IPs: the
// lists the large receivers and filtering appliances consult, and the ones whose listings
// most often explain a block.
func DefaultBlocklists() []string {
	return []string{
		"zen.spamhaus.org",        // SBL, CSS, XBL, PBL
		"bl.spamcop.net",          // SpamCop
		"b.barracudacentral.org",  // Barracuda Reputation Block List
		"dnsbl-1.uceprotect.net",  // UCEPROTECT level 1 (the IP itself)
		"psbl.surriel.com",        // Passive Spam Block List
		"bl.mailspike.net",        // Mailspike
		"bl.0spam.org",            // 0spam
		"dnsbl.dronebl.org",       // DroneBL
		"ix.dnsbl.manitu.net",     // NiX Spam
		"truncate.gbudb.net",      // GBUdb Truncate
		"all.s5h.net",             // s5h
		"dnsbl.spfbl.net",         // SPFBL
		"spam.dnsbl.anonmails.de", // anonmails
		"bl.blocklist.de",         // blocklist.de
		"ips.backscatterer.org",   // Backscatterer
		"db.wpbl.info",            // WPBL
		"rbl.interserver.net",     // InterServer
		"dnsbl.justspam.org",      // JustSpam
		"bl.nszones.com",          // NSZones
		"spam.spamrats.com",       // SpamRATS spam
		"noptr.spamrats.com",      // SpamRATS no PTR
		"dyna.spamrats.com",       // SpamRATS dynamic
		"bl.suomispam.net",        // Suomispam
		"z.mailspike.net",         // Mailspike zero-hour
	}
}

// DefaultDomainBlocklists are the domain (URI) blocklists queried for the sending domains.
func DefaultDomainBlocklists() []string {
	return []string{
		"dbl.spamhaus.org", // Spamhaus Domain Block List
		"multi.surbl.org",  // SURBL
		"multi.uribl.com",  // URIBL
		"dbl.nordspam.com", // NordSpam
		"uribl.spameatingmonkey.net",
		"dbl.suomispam.net",
	}
}
