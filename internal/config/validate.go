package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

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
