// Package config defines Repute's one configuration file: a strict TOML schema whose
// defaults live in code (Default), so that an empty file is a working server and an
// unknown or misspelt key is an error with its line number rather than a silent no-op.
//
// Upstream: cmd/repute reads the file named by --config or $REPUTE_CONFIG.
// Downstream: internal/app builds every component from the returned Config.
package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
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
// in the design contract (hostname, data_dir, [listen], [tls], [dns], [outbound], [store])
// must keep their names.
type Config struct {
	Hostname string `toml:"hostname"` // EHLO name, TLS name, expected PTR
	DataDir  string `toml:"data_dir"` // database, TLS material, events.log

	Listen   Listen   `toml:"listen"`
	TLS      TLS      `toml:"tls"`
	DNS      DNS      `toml:"dns"`
	Outbound Outbound `toml:"outbound"`
	Queue    Queue    `toml:"queue"`
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
}

// TLS selects the certificate. With neither files nor ACME, a self-signed certificate for
// Hostname is generated in DataDir on first start (with a warning).
type TLS struct {
	CertFile      string `toml:"cert_file"`
	KeyFile       string `toml:"key_file"`
	ACMEEmail     string `toml:"acme_email"`
	ACMEDirectory string `toml:"acme_directory"`
}

// DNS chooses the resolver every lookup goes through.
type DNS struct {
	Resolver string `toml:"resolver"` // "IP:PORT"; empty = system resolver
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

// Outbound configures delivery to other hosts.
type Outbound struct {
	SourceIPs  []string `toml:"source_ips"`
	RemotePort int      `toml:"remote_port"`
	// Relay, if set, is a smarthost "host:port" that all outbound mail goes through.
	Relay             string  `toml:"relay"`
	RelayTLS          string  `toml:"relay_tls"`           // "starttls" (default), "implicit" or "none"
	RelayUsername     string  `toml:"relay_username"`      // AUTH PLAIN user; "" = no AUTH
	RelayPasswordFile string  `toml:"relay_password_file"` // file holding the password (first line)
	Routes            []Route `toml:"routes"`
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
		Outbound: Outbound{RemotePort: 25},
		Queue: Queue{
			RetryMin:     Duration{5 * time.Minute},
			RetryMax:     Duration{3 * time.Hour},
			MaxAge:       Duration{5 * 24 * time.Hour},
			DelayWarning: Duration{4 * time.Hour},
			Concurrency:  20,
			ScanInterval: Duration{30 * time.Second},
		},
		Store: Store{Driver: "sqlite"},
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

// Validate checks every value for consistency. It returns nil or an error joining one
// *Error per problem (without positions; Parse adds them), each saying what is wrong and
// what is allowed.
func (c *Config) Validate() error {
	errs := c.validate()
	if len(errs) == 0 {
		return nil
	}
	if len(errs) == 1 {
		return errs[0]
	}
	list := make([]error, len(errs))
	for i, e := range errs {
		list[i] = e
	}
	return errors.Join(list...)
}

func (c *Config) validate() []*Error {
	var v validator
	if c.Hostname != "" {
		if msg := checkDomain(c.Hostname); msg != "" {
			v.addf("hostname", "hostname = %q: %s; use the server's fully qualified domain name, e.g. \"mail.example.com\", or leave it empty to use the system host name", c.Hostname, msg)
		}
	}
	if c.DataDir == "" {
		v.addf("data_dir", "data_dir must not be empty; it is where the database, TLS material and events.log live")
	}
	c.validateListen(&v)
	c.validateTLS(&v)
	if c.DNS.Resolver != "" {
		if msg := checkIPPort(c.DNS.Resolver); msg != "" {
			v.addf("dns.resolver", "dns.resolver = %q: %s; use IP:PORT such as \"127.0.0.1:53\" or \"[::1]:53\", or \"\" for the system resolver", c.DNS.Resolver, msg)
		}
	}
	c.validateOutbound(&v)
	c.validateQueue(&v)
	switch c.Store.Driver {
	case "sqlite":
	case "postgres":
		if strings.TrimSpace(c.Store.DSN) == "" {
			v.addNear("store.dsn", "store.driver", "store.dsn must be set when store.driver = \"postgres\", e.g. \"postgres://repute@localhost/repute\"")
		}
	default:
		v.addf("store.driver", "store.driver = %q: unknown driver; allowed: \"sqlite\", \"postgres\"", c.Store.Driver)
	}
	c.validateLimits(&v)
	for _, z := range c.SMTP.DNSBL {
		if msg := checkDomain(z); msg != "" {
			v.addf("smtp.dnsbl", "smtp.dnsbl: %q: %s; list DNS blocklist zones such as \"zen.spamhaus.org\"", z, msg)
		}
	}
	for _, a := range c.Bounce.FeedbackAddresses {
		at := strings.LastIndexByte(a, '@')
		if at <= 0 || checkDomain(a[at+1:]) != "" {
			v.addf("bounce.feedback_addresses", "bounce.feedback_addresses: %q is not an address; use a local address such as \"fbl@example.org\"", a)
		}
	}
	if !oneOf(c.Log.Level, "debug", "info", "warn", "error") {
		v.addf("log.level", "log.level = %q: allowed: \"debug\", \"info\", \"warn\", \"error\"", c.Log.Level)
	}
	if !oneOf(c.Log.Format, "text", "json") {
		v.addf("log.format", "log.format = %q: allowed: \"text\", \"json\"", c.Log.Format)
	}
	return v.errs
}

func (c *Config) validateListen(v *validator) {
	seen := map[string]string{}
	for _, l := range []struct{ key, addr string }{
		{"listen.smtp", c.Listen.SMTP},
		{"listen.submission", c.Listen.Submission},
		{"listen.submissions", c.Listen.Submissions},
		{"listen.imap", c.Listen.IMAP},
		{"listen.imaps", c.Listen.IMAPS},
		{"listen.http", c.Listen.HTTP},
		{"listen.https", c.Listen.HTTPS},
		{"listen.metrics", c.Listen.Metrics},
	} {
		if l.addr == "" {
			continue
		}
		if msg := checkListenAddr(l.addr); msg != "" {
			v.addf(l.key, "%s = %q: %s; use HOST:PORT such as \"0.0.0.0:25\" or \"[::]:25\", or \"\" to disable this listener", l.key, l.addr, msg)
			continue
		}
		if other, dup := seen[l.addr]; dup && !strings.HasSuffix(l.addr, ":0") {
			v.addf(l.key, "%s = %q: address already used by %s; each listener needs its own address", l.key, l.addr, other)
			continue
		}
		seen[l.addr] = l.key
	}
}

func (c *Config) validateTLS(v *validator) {
	t := c.TLS
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		v.addNear("tls.key_file", "tls.cert_file", "tls.key_file is empty but tls.cert_file is set; set both (PEM files) or neither")
	case t.CertFile == "" && t.KeyFile != "":
		v.addNear("tls.cert_file", "tls.key_file", "tls.cert_file is empty but tls.key_file is set; set both (PEM files) or neither")
	}
	if t.ACMEEmail != "" {
		if t.CertFile != "" || t.KeyFile != "" {
			v.addf("tls.acme_email", "tls.acme_email is set together with tls.cert_file/tls.key_file; use either ACME or certificate files, not both")
		}
		if !strings.Contains(t.ACMEEmail, "@") {
			v.addf("tls.acme_email", "tls.acme_email = %q: not an email address", t.ACMEEmail)
		}
	}
	if t.ACMEDirectory != "" {
		u, err := url.Parse(t.ACMEDirectory)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			v.addf("tls.acme_directory", "tls.acme_directory = %q: must be the https:// URL of an ACME directory, or \"\" for Let's Encrypt", t.ACMEDirectory)
		}
	}
}

func (c *Config) validateQueue(v *validator) {
	q := c.Queue
	if q.RetryMin.Duration < time.Second {
		v.addf("queue.retry_min", "queue.retry_min = %q: must be at least 1s", q.RetryMin.Duration)
	}
	if q.RetryMax.Duration < q.RetryMin.Duration {
		v.addf("queue.retry_max", "queue.retry_max = %q: must not be shorter than queue.retry_min (%s)", q.RetryMax.Duration, q.RetryMin.Duration)
	}
	if q.MaxAge.Duration < q.RetryMin.Duration {
		v.addf("queue.max_age", "queue.max_age = %q: must not be shorter than queue.retry_min (%s)", q.MaxAge.Duration, q.RetryMin.Duration)
	}
	if q.DelayWarning.Duration < 0 {
		v.addf("queue.delay_warning", "queue.delay_warning = %q: must not be negative; 0 disables delay notices", q.DelayWarning.Duration)
	}
	if q.Concurrency < 1 || q.Concurrency > 1000 {
		v.addf("queue.concurrency", "queue.concurrency = %d: allowed 1 to 1000", q.Concurrency)
	}
	if q.ScanInterval.Duration < time.Second {
		v.addf("queue.scan_interval", "queue.scan_interval = %q: must be at least 1s", q.ScanInterval.Duration)
	}
}

func (c *Config) validateOutbound(v *validator) {
	o := c.Outbound
	seen := map[netip.Addr]bool{}
	for _, s := range o.SourceIPs {
		ip, err := netip.ParseAddr(s)
		switch {
		case err != nil:
			v.addf("outbound.source_ips", "outbound.source_ips: %q is not an IP address; list local IPv4 or IPv6 addresses such as \"192.0.2.10\" or \"2001:db8::10\"", s)
		case seen[ip.Unmap()]:
			v.addf("outbound.source_ips", "outbound.source_ips: %q is listed twice; list each address once", s)
		}
		seen[ip.Unmap()] = true
	}
	if o.RemotePort < 1 || o.RemotePort > 65535 {
		v.addf("outbound.remote_port", "outbound.remote_port = %d: out of range; allowed 1 to 65535 (25 for real delivery)", o.RemotePort)
	}
	checkRelay(v, "outbound.relay", o.Relay, "outbound.relay_tls", o.RelayTLS, "outbound.relay_username",
		o.RelayUsername, o.RelayPasswordFile)
	seenDomain := map[string]bool{}
	for i, r := range o.Routes {
		key := fmt.Sprintf("outbound.routes[%d]", i)
		if len(r.Domains) == 0 {
			v.addf(key+".domains", "%s.domains is empty; list the recipient domains this route is for", key)
		}
		for _, d := range r.Domains {
			if msg := checkDomain(d); msg != "" {
				v.addf(key+".domains", "%s.domains: %q: %s", key, d, msg)
			} else if seenDomain[strings.ToLower(d)] {
				v.addf(key+".domains", "%s.domains: %q is already routed by an earlier route", key, d)
			}
			seenDomain[strings.ToLower(d)] = true
		}
		if r.Relay == "" {
			v.addf(key+".relay", "%s.relay is required: the HOST:PORT to send these domains through", key)
		}
		checkRelay(v, key+".relay", r.Relay, key+".tls", r.TLS, key+".username", r.Username, r.PasswordFile)
	}
}

// checkRelay validates a relay address, its TLS mode and its credentials.
func checkRelay(v *validator, relayKey, relay, tlsKey, tlsMode, userKey, user, passwordFile string) {
	if !oneOf(tlsMode, "", "starttls", "implicit", "none") {
		v.addf(tlsKey, "%s = %q: allowed: \"starttls\", \"implicit\", \"none\"", tlsKey, tlsMode)
	}
	if user != "" && passwordFile == "" {
		v.addf(userKey, "%s is set but its password_file is not: name a file holding the password", userKey)
	}
	if user != "" && tlsMode == "none" {
		v.addf(tlsKey, "%s = \"none\" with a username: passwords are only sent over TLS", tlsKey)
	}
	if relay != "" {
		host, port, err := net.SplitHostPort(relay)
		msg := ""
		switch {
		case err != nil:
			msg = "not a host:port address"
		case host == "":
			msg = "the host is missing"
		case checkPort(port, false) != "":
			msg = checkPort(port, false)
		case checkHost(host) != "":
			msg = checkHost(host)
		}
		if msg != "" {
			v.addf(relayKey, "%s = %q: %s; use HOST:PORT such as \"smtp.example.net:587\", or \"\" to deliver directly", relayKey, relay, msg)
		}
	}
}

func (c *Config) validateLimits(v *validator) {
	positive := []struct {
		key string
		n   int64
	}{
		{"smtp.max_message_size", c.SMTP.MaxMessageSize},
		{"smtp.max_recipients", int64(c.SMTP.MaxRecipients)},
		{"smtp.max_connections", int64(c.SMTP.MaxConnections)},
		{"smtp.max_connections_per_ip", int64(c.SMTP.MaxConnectionsPerIP)},
		{"imap.max_connections_per_ip", int64(c.IMAP.MaxConnectionsPerIP)},
	}
	for _, p := range positive {
		if p.n <= 0 {
			v.addf(p.key, "%s = %d: must be a positive number", p.key, p.n)
		}
	}
	if c.SMTP.ConnectionRatePerIP < 0 {
		v.addf("smtp.connection_rate_per_ip", "smtp.connection_rate_per_ip = %d: must be 0 (unlimited) or a number of connections per minute", c.SMTP.ConnectionRatePerIP)
	}
	if c.SMTP.MessageRatePerIP < 0 {
		v.addf("smtp.message_rate_per_ip", "smtp.message_rate_per_ip = %d: must be 0 (unlimited) or a number of messages per minute", c.SMTP.MessageRatePerIP)
	}
	for _, n := range c.SMTP.RateLimitExempt {
		if _, err := netip.ParsePrefix(n); err != nil {
			v.addf("smtp.rate_limit_exempt", "smtp.rate_limit_exempt: %q is not a network; use CIDR notation such as \"192.0.2.0/24\" or \"2001:db8::/32\"", n)
		}
	}
	if c.SMTP.MinFreeDisk < 0 {
		v.addf("smtp.min_free_disk", "smtp.min_free_disk = %d: must be 0 (no check) or a positive number of bytes", c.SMTP.MinFreeDisk)
	}
	durations := []struct {
		key string
		d   time.Duration
	}{
		{"smtp.command_timeout", c.SMTP.CommandTimeout.Duration},
		{"smtp.data_timeout", c.SMTP.DataTimeout.Duration},
		{"imap.idle_timeout", c.IMAP.IdleTimeout.Duration},
	}
	for _, d := range durations {
		if d.d <= 0 {
			v.addf(d.key, "%s = %q: must be a positive duration such as \"5m\"", d.key, d.d.String())
		}
	}
}

// validator collects validation problems.
type validator struct{ errs []*Error }

func (v *validator) addf(key, format string, args ...any) {
	v.errs = append(v.errs, &Error{Key: key, Msg: fmt.Sprintf(format, args...)})
}

// addNear is addf for a problem with a key that may be absent from the file; Parse then
// reports it at the position of near, the key that requires it.
func (v *validator) addNear(key, near, format string, args ...any) {
	v.addf(key, format, args...)
	v.errs[len(v.errs)-1].near = near
}

func oneOf(s string, allowed ...string) bool {
	for _, a := range allowed {
		if s == a {
			return true
		}
	}
	return false
}

// checkDomain says why s is not a syntactically valid (ASCII) domain name, or "".
// RFC 1035 §2.3.1 with RFC 1123 §2.1's relaxation allowing a leading digit.
func checkDomain(s string) string {
	switch {
	case s == "":
		return "empty name"
	case strings.HasSuffix(s, "."):
		return "write it without the trailing dot"
	case len(s) > 253:
		return "longer than 253 characters"
	case net.ParseIP(s) != nil:
		return "an IP address, not a domain name"
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" {
			return "empty label (two dots in a row or a leading dot)"
		}
		if len(label) > 63 {
			return fmt.Sprintf("label %q is longer than 63 characters", label)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Sprintf("label %q starts or ends with a hyphen", label)
		}
		for i := 0; i < len(label); i++ {
			ch := label[i]
			if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-') {
				return fmt.Sprintf("label %q contains %q; only letters, digits and hyphens are allowed (use the xn-- form for international names)", label, string(rune(ch)))
			}
		}
	}
	return ""
}

// checkHost says why host is neither an IP address nor a domain name, or "".
func checkHost(host string) string {
	if _, err := netip.ParseAddr(host); err == nil {
		return ""
	}
	if msg := checkDomain(host); msg != "" {
		return "host " + strconv.Quote(host) + ": " + msg
	}
	return ""
}

// checkPort says why port is not a decimal port number, or "". Port 0 (let the system
// choose, used by tests) is allowed only if zeroOK.
func checkPort(port string, zeroOK bool) string {
	n, err := strconv.Atoi(port)
	switch {
	case port == "":
		return "the port is missing"
	case err != nil || strings.TrimLeft(port, "0123456789") != "":
		return fmt.Sprintf("port %q is not a number", port)
	case n > 65535 || (n == 0 && !zeroOK):
		return fmt.Sprintf("port %d is out of range", n)
	}
	return ""
}

// checkListenAddr says why addr is not a listen address, or "".
func checkListenAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "not a host:port address"
	}
	if msg := checkPort(port, true); msg != "" {
		return msg
	}
	if host == "" {
		return ""
	}
	return checkHost(host)
}

// checkIPPort says why addr is not an IP:PORT address, or "".
func checkIPPort(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "not an IP:PORT address"
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return fmt.Sprintf("%q is not an IP address", host)
	}
	return checkPort(port, false)
}
