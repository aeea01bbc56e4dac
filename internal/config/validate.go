package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"net/netip"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Bounds of numeric values. Each keeps every quantity derived from the value far from
// overflowing, and refuses values that could only be mistakes.
const (
	// minMessageSize is the smallest smtp.max_message_size: the header alone of an
	// ordinary message is larger.
	minMessageSize = 1 << 10
	// maxMessageSize is the largest smtp.max_message_size. A message is held in memory
	// whole while it is received, signed and stored, in several copies at once (the
	// receive buffer, which may have grown to twice the message, and the copies with the
	// added trace and signature fields), and it is stored as one SQLite value, which
	// cannot exceed 1,000,000,000 bytes (SQLITE_MAX_LENGTH) including the fields Repute
	// adds. 512 MiB stays clear of that and bounds one message's memory to a few GiB;
	// sizes computed from the limit (the limit plus the added fields, free disk space
	// plus twice an announced SIZE) cannot overflow.
	maxMessageSize = 512 << 20
	// maxFreeDisk is the largest smtp.min_free_disk, 1 PiB: more than any disk Repute
	// runs on, and far from overflowing when message sizes are added to it.
	maxFreeDisk = 1 << 50
	// maxQueueDuration bounds the [queue] durations: the retry backoff doubles the wait,
	// and a year doubled is still far from time.Duration's limit of 292 years.
	maxQueueDuration = 365 * 24 * time.Hour
	// maxDNSBLZone is the longest smtp.dnsbl zone: an IPv6 query name puts 32 nibbles
	// (64 characters) in front of the zone, and a name has at most 253.
	maxDNSBLZone = 253 - 64
)

// Validate checks every value for consistency, and that the files and addresses the
// configuration names are usable on this host: certificate and password files exist, can
// be read by the user running the check and hold what they should; listen and source
// addresses belong to this host. It returns nil or an error joining one *Error per problem
// (without positions; Parse adds them), each naming the key and saying what is wrong and
// what is allowed. `repute config check` and `repute serve` both run it, so a file that
// passes the check does not fail at start-up for a reason the check could have seen.
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
	} else if msg := checkDirIfExists(c.DataDir); msg != "" {
		v.addf("data_dir", "data_dir = %q: %s; it must be a directory (it is created if missing)", c.DataDir, msg)
	}
	c.validateListen(&v)
	c.validateTLS(&v)
	if c.DNS.Resolver != "" {
		if msg := checkIPPort(c.DNS.Resolver); msg != "" {
			v.addf("dns.resolver", "dns.resolver = %q: %s; use IP:PORT such as \"127.0.0.1:53\" or \"[::1]:53\", or \"\" for the system resolver", c.DNS.Resolver, msg)
		}
	}
	if p := strings.TrimSuffix(c.DNS.DNSSECProbe, "."); p != "" {
		if msg := checkDomain(p); msg != "" {
			v.addf("dns.dnssec_probe", "dns.dnssec_probe = %q: %s; give a name in a DNSSEC-signed zone, or \"\" for the root", c.DNS.DNSSECProbe, msg)
		}
	}
	c.validateOutbound(&v)
	c.validateQueue(&v)
	c.validateShaping(&v)
	c.validateStore(&v)
	c.validateLimits(&v)
	c.validateDNSBL(&v)
	c.validateBounce(&v)
	c.validateDoctor(&v)
	if !oneOf(c.Log.Level, "debug", "info", "warn", "error") {
		v.addf("log.level", "log.level = %q: allowed: \"debug\", \"info\", \"warn\", \"error\"", c.Log.Level)
	}
	if !oneOf(c.Log.Format, "text", "json") {
		v.addf("log.format", "log.format = %q: allowed: \"text\", \"json\"", c.Log.Format)
	}
	return v.errs
}

// listenAddr is a listener's address, split for comparison with the others.
type listenAddr struct {
	key, addr, host, port string
	wildcard              bool // binds the port on every address ("", 0.0.0.0, ::)
}

func (c *Config) validateListen(v *validator) {
	var taken []listenAddr
	for _, l := range []struct{ key, addr string }{
		{"listen.smtp", c.Listen.SMTP},
		{"listen.submission", c.Listen.Submission},
		{"listen.submissions", c.Listen.Submissions},
		{"listen.imap", c.Listen.IMAP},
		{"listen.imaps", c.Listen.IMAPS},
		{"listen.http", c.Listen.HTTP},
		{"listen.https", c.Listen.HTTPS},
		{"listen.metrics", c.Listen.Metrics},
		{"listen.debug", c.Listen.Debug},
	} {
		if l.addr == "" {
			continue
		}
		if msg := checkListenAddr(l.addr); msg != "" {
			v.addf(l.key, "%s = %q: %s; use HOST:PORT such as \"0.0.0.0:25\" or \"[::]:25\", or \"\" to disable this listener", l.key, l.addr, msg)
			continue
		}
		host, port, _ := net.SplitHostPort(l.addr)
		la := listenAddr{key: l.key, addr: l.addr, host: strings.ToLower(host), port: strings.TrimLeft(port, "0")}
		ip, err := netip.ParseAddr(host)
		if err == nil {
			la.host = ip.Unmap().String()
			la.wildcard = ip.IsUnspecified()
		}
		la.wildcard = la.wildcard || host == ""
		if err == nil && !la.wildcard {
			if msg := v.checkLocal(ip); msg != "" {
				v.addf(l.key, "%s = %q: %s; listen on one of this host's addresses, or on \"0.0.0.0\" (every address)", l.key, l.addr, msg)
				continue
			}
		}
		if l.key == "listen.debug" && (err != nil || !ip.IsLoopback()) {
			v.addf(l.key, "%s = %q: the profiling endpoint shows the server's memory and must stay on a loopback address such as \"127.0.0.1:6060\"", l.key, l.addr)
			continue
		}
		if msg := la.conflict(taken); msg != "" {
			v.addf(l.key, "%s = %q: %s; each listener needs its own address", l.key, l.addr, msg)
			continue
		}
		taken = append(taken, la)
	}
}

// conflict says which earlier listener already holds l's address and port, or "". A
// wildcard address takes the port on every address, IPv4 and IPv6 alike (Go listens
// dual-stack), so it conflicts with any other listener on that port. Port 0 (chosen by
// the system) never conflicts.
func (l listenAddr) conflict(taken []listenAddr) string {
	if l.port == "" {
		return ""
	}
	for _, t := range taken {
		switch {
		case t.port != l.port:
		case t.host == l.host:
			return "address already used by " + t.key
		case t.wildcard:
			return fmt.Sprintf("port %s is already taken on every address by %s = %q", l.port, t.key, t.addr)
		case l.wildcard:
			return fmt.Sprintf("a wildcard address takes port %s on every address, and %s = %q already uses it", l.port, t.key, t.addr)
		}
	}
	return ""
}

// validateTLS checks that the certificate files load as a matching pair, as serve will
// load them, and refuses ACME, which this version does not have.
func (c *Config) validateTLS(v *validator) {
	t := c.TLS
	switch {
	case t.CertFile != "" && t.KeyFile == "":
		v.addNear("tls.key_file", "tls.cert_file", "tls.key_file is empty but tls.cert_file is set; set both (PEM files) or neither")
	case t.CertFile == "" && t.KeyFile != "":
		v.addNear("tls.cert_file", "tls.key_file", "tls.cert_file is empty but tls.key_file is set; set both (PEM files) or neither")
	case t.CertFile != "":
		checkKeyPair(v, t.CertFile, t.KeyFile)
	}
	if t.ACMEEmail != "" {
		if msg := checkMailbox(t.ACMEEmail); msg != "" {
			v.addf("tls.acme_email", "tls.acme_email = %q: %s; give the address that should get the CA's expiry notices", t.ACMEEmail, msg)
		}
		if t.CertFile != "" {
			v.addf("tls.acme_email", "tls.acme_email and tls.cert_file are both set; use ACME (remove cert_file and key_file) or your own certificate (remove acme_email)")
		}
	}
	if t.ACMEEmail == "" && (t.ACMEDirectory != "" || t.ACMECAFile != "") {
		key := "tls.acme_directory"
		if t.ACMEDirectory == "" {
			key = "tls.acme_ca_file"
		}
		v.addNear(key, "tls.acme_email", "%s is set but tls.acme_email is not; ACME is on only with tls.acme_email", key)
	}
	if t.ACMEDirectory != "" {
		if u, err := url.Parse(t.ACMEDirectory); err != nil || u.Scheme != "https" || u.Host == "" {
			v.addf("tls.acme_directory", "tls.acme_directory = %q: must be the https:// URL of the CA's ACME directory, such as \"https://acme-v02.api.letsencrypt.org/directory\", or \"\" for Let's Encrypt", t.ACMEDirectory)
		}
	}
	if t.ACMECAFile != "" {
		if msg := checkReadable(t.ACMECAFile); msg != "" {
			v.addf("tls.acme_ca_file", "tls.acme_ca_file = %q: %s", t.ACMECAFile, msg)
		} else if data, err := os.ReadFile(t.ACMECAFile); err != nil {
			v.addf("tls.acme_ca_file", "tls.acme_ca_file = %q: %v", t.ACMECAFile, err)
		} else if msg := checkCertPEM(data); msg != "" {
			v.addf("tls.acme_ca_file", "tls.acme_ca_file = %q: %s; it must hold the PEM certificate(s) of the CA's roots", t.ACMECAFile, msg)
		}
	}
}

// validateDoctor checks the keys of [check], [mta_sts], [reports] and the outbound keys
// the checks use.
func (c *Config) validateDoctor(v *validator) {
	k := c.Check
	if k.Port25Probe != "" {
		host, port, err := net.SplitHostPort(k.Port25Probe)
		if err != nil {
			v.addf("check.port25_probe", "check.port25_probe = %q: not HOST:PORT; use a host that accepts SMTP, such as \"gmail-smtp-in.l.google.com:25\", or \"\" to leave the check out", k.Port25Probe)
		} else if msg := checkHost(host); msg != "" {
			v.addf("check.port25_probe", "check.port25_probe = %q: %s", k.Port25Probe, msg)
		} else if msg := checkPort(port, false); msg != "" {
			v.addf("check.port25_probe", "check.port25_probe = %q: %s", k.Port25Probe, msg)
		}
	}
	if k.PortsInProbe != "" {
		if msg := checkBaseURL(k.PortsInProbe); msg != "" && !strings.Contains(msg, "query") {
			v.addf("check.ports_in_probe", "check.ports_in_probe = %q: %s", k.PortsInProbe, msg)
		}
	}
	for _, l := range []struct {
		key   string
		zones []string
	}{{"check.blocklists", k.Blocklists}, {"check.domain_blocklists", k.DomainBlocklists}} {
		seen := map[string]bool{}
		for _, z := range l.zones {
			z = strings.ToLower(strings.TrimSuffix(z, "."))
			switch msg := checkDomain(z); {
			case msg != "":
				v.addf(l.key, "%s: %q: %s; list DNS zones such as \"zen.spamhaus.org\"", l.key, z, msg)
			case len(z) > maxDNSBLZone:
				v.addf(l.key, "%s: %q is longer than %d characters", l.key, z, maxDNSBLZone)
			case seen[z]:
				v.addf(l.key, "%s: %q is listed twice", l.key, z)
			}
			seen[z] = true
		}
	}
	if k.Interval.Duration != 0 && (k.Interval.Duration < time.Minute || k.Interval.Duration > maxQueueDuration) {
		v.addf("check.interval", "check.interval = %q: allowed 1m to 8760h, or \"0s\" to turn the self-check off", k.Interval.Duration)
	}
	for _, h := range c.MTASTS.MX {
		if msg := checkDomain(strings.TrimPrefix(h, "*.")); msg != "" {
			v.addf("mta_sts.mx", "mta_sts.mx: %q: %s; list host names such as \"mx2.example.com\" or patterns such as \"*.example.com\"", h, msg)
		}
	}
	if !oneOf(c.MTASTS.Mode, "enforce", "testing", "none") {
		v.addf("mta_sts.mode", "mta_sts.mode = %q: allowed: \"enforce\", \"testing\", \"none\"", c.MTASTS.Mode)
	}
	// RFC 8461 §3.2: max_age at most 31557600 seconds; a day is the least that makes sense.
	if d := c.MTASTS.MaxAge.Duration; d < 24*time.Hour || d > 31557600*time.Second {
		v.addf("mta_sts.max_age", "mta_sts.max_age = %q: allowed 24h to 8766h (RFC 8461 allows at most a year)", d)
	}
	if msg := checkLocalPart(c.Reports.LocalPart); c.Reports.LocalPart == "" || msg != "" {
		if msg == "" {
			msg = "empty"
		}
		v.addf("reports.local_part", "reports.local_part = %q: %s; use a local part such as \"reports\"", c.Reports.LocalPart, msg)
	}
	for _, s := range c.Outbound.PublicIPs {
		ip, err := netip.ParseAddr(s)
		if err != nil || ip.IsUnspecified() || ip.IsMulticast() {
			v.addf("outbound.public_ips", "outbound.public_ips: %q is not a usable IP address; list the addresses the world sees our mail come from", s)
		}
	}
	if r := c.Outbound.RelaySPF; r != "" {
		l := strings.ToLower(r)
		switch {
		case c.Outbound.Relay == "" && c.Outbound.FallbackRelay == "":
			v.addNear("outbound.relay_spf", "outbound.relay", "outbound.relay_spf is set but there is no relay; remove it")
		case strings.ContainsAny(r, " \t") || !(strings.HasPrefix(l, "include:") || strings.HasPrefix(l, "ip4:") || strings.HasPrefix(l, "ip6:") || strings.HasPrefix(l, "a:") || strings.HasPrefix(l, "a") && r == "a" || strings.HasPrefix(l, "mx")):
			v.addf("outbound.relay_spf", "outbound.relay_spf = %q: give one SPF mechanism, such as \"include:spf.relay.example\" or \"ip4:192.0.2.0/24\"", r)
		}
	}
	switch c.Outbound.DirectWhen {
	case "always":
	case "checks_pass":
		if c.Outbound.Relay != "" {
			v.addf("outbound.direct_when", "outbound.direct_when = \"checks_pass\" but outbound.relay is set, so all mail goes through the relay anyway; move the relay to outbound.fallback_relay or set direct_when = \"always\"")
		} else if c.Outbound.FallbackRelay == "" {
			v.addNear("outbound.direct_when", "outbound.fallback_relay", "outbound.direct_when = \"checks_pass\" needs outbound.fallback_relay: the relay that carries the mail until the checks pass")
		}
	default:
		v.addf("outbound.direct_when", "outbound.direct_when = %q: allowed: \"always\", \"checks_pass\"", c.Outbound.DirectWhen)
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
	for _, d := range []struct {
		key string
		d   time.Duration
	}{
		{"queue.retry_min", q.RetryMin.Duration},
		{"queue.retry_max", q.RetryMax.Duration},
		{"queue.max_age", q.MaxAge.Duration},
		{"queue.delay_warning", q.DelayWarning.Duration},
		{"queue.scan_interval", q.ScanInterval.Duration},
	} {
		if d.d > maxQueueDuration {
			v.addf(d.key, "%s = %q: longer than a year (\"8760h\"), the most allowed", d.key, d.d)
		}
	}
}

// maxTimeScale bounds shaping.time_scale: a day in under a second is compression enough,
// and durations divided further would round to nothing.
const maxTimeScale = 100000

func (c *Config) validateShaping(v *validator) {
	sh := c.Shaping
	ts := sh.TimeScale
	if !(ts > 0) || ts > maxTimeScale || math.IsInf(ts, 0) {
		v.addf("shaping.time_scale", "shaping.time_scale = %v: must be a number above 0 and at most %d (1 = real time)", ts, maxTimeScale)
	}
	for _, d := range []struct {
		key      string
		d        time.Duration
		min, max time.Duration
	}{
		{"shaping.cool_down", sh.CoolDown.Duration, time.Minute, 7 * 24 * time.Hour},
		{"shaping.max_cool_down", sh.MaxCoolDown.Duration, time.Minute, 30 * 24 * time.Hour},
		{"shaping.round", sh.Round.Duration, time.Second, time.Hour},
		{"shaping.bulk_spread", sh.BulkSpread.Duration, 0, 7 * 24 * time.Hour},
	} {
		if d.d < d.min || d.d > d.max {
			v.addf(d.key, "%s = %q: allowed from %s to %s", d.key, d.d, d.min, d.max)
		}
	}
	if sh.MaxCoolDown.Duration < sh.CoolDown.Duration {
		v.addf("shaping.max_cool_down", "shaping.max_cool_down = %q is shorter than shaping.cool_down = %q", sh.MaxCoolDown.Duration, sh.CoolDown.Duration)
	}
	ids := make([]string, 0, len(sh.Provider))
	for id := range sh.Provider {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		p := sh.Provider[id]
		key := "shaping.provider." + id
		if !validProviderID(id) {
			v.addf(key, "%s: %q is not a provider id (lower-case letters, digits and '-', such as \"microsoft\", or \"default\")", key, id)
		}
		for _, n := range []struct {
			k   string
			val float64
			max float64
		}{
			{"max_connections", float64(p.MaxConnections), 1000},
			{"messages_per_connection", float64(p.MessagesPerConnection), 10000},
			{"messages_per_minute", p.MessagesPerMinute, 1e6},
			{"start_per_minute", p.StartPerMinute, 1e6},
			{"messages_per_hour", float64(p.MessagesPerHour), 1e8},
			{"messages_per_day", float64(p.MessagesPerDay), 1e9},
			{"connections_per_minute", p.ConnectionsPerMinute, 1e6},
		} {
			if n.val < 0 || n.val > n.max || math.IsNaN(n.val) {
				v.addf(key+"."+n.k, "%s.%s = %v: allowed from 0 (the built-in value) to %v", key, n.k, n.val, n.max)
			}
		}
		if p.FallbackRelay != "" {
			checkRelay(v, relayKeys{key + ".fallback_relay", "outbound.relay_tls", "outbound.relay_username", "outbound.relay_password_file"},
				p.FallbackRelay, "", "", "")
		}
		if p.WarmupStart != nil && (*p.WarmupStart < 0 || *p.WarmupStart > 1e7) {
			v.addf(key+".warmup_start", "%s.warmup_start = %d: allowed from 0 (no warm-up) to 10000000", key, *p.WarmupStart)
		}
	}
	w := c.Warmup
	if w.Days < 1 || w.Days > 365 {
		v.addf("warmup.days", "warmup.days = %d: allowed from 1 to 365", w.Days)
	}
	if !(w.DoublingDays >= 0.5) || w.DoublingDays > 60 {
		v.addf("warmup.doubling_days", "warmup.doubling_days = %v: allowed from 0.5 to 60", w.DoublingDays)
	}
	for k := range w.FirstUse {
		if k == "default" {
			continue
		}
		if _, err := netip.ParseAddr(k); err != nil {
			v.addf("warmup.first_use", "warmup.first_use: %q is not an IP address (or \"default\" for the kernel's choice)", k)
		}
	}
	if a := c.Alerts.WebhookURL; a != "" {
		u, err := url.Parse(a)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			v.addf("alerts.webhook_url", "alerts.webhook_url = %q: not an http:// or https:// URL", a)
		}
	}
}

// validProviderID reports whether id can name a provider.
func validProviderID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

func (c *Config) validateOutbound(v *validator) {
	o := c.Outbound
	seen := map[netip.Addr]bool{}
	for _, s := range o.SourceIPs {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			v.addf("outbound.source_ips", "outbound.source_ips: %q is not an IP address; list local IPv4 or IPv6 addresses such as \"192.0.2.10\" or \"2001:db8::10\"", s)
			continue
		}
		ip = ip.Unmap()
		switch {
		case seen[ip]:
			v.addf("outbound.source_ips", "outbound.source_ips: %q is listed twice; list each address once", s)
		case ip.IsUnspecified():
			v.addf("outbound.source_ips", "outbound.source_ips: %q is the unspecified address; leave source_ips empty to let the system choose", s)
		case ip.IsMulticast():
			v.addf("outbound.source_ips", "outbound.source_ips: %q is a multicast address; list addresses of this host", s)
		default:
			if msg := v.checkLocal(ip); msg != "" {
				v.addf("outbound.source_ips", "outbound.source_ips: %q: %s; every delivery from it would fail", s, msg)
			}
		}
		seen[ip] = true
	}
	if o.RemotePort < 1 || o.RemotePort > 65535 {
		v.addf("outbound.remote_port", "outbound.remote_port = %d: out of range; allowed 1 to 65535 (25 for real delivery)", o.RemotePort)
	}
	if o.Relay == "" && o.FallbackRelay == "" {
		// The relay_* keys only describe a relay; without one they would be ignored.
		for _, k := range []struct{ key, value string }{
			{"outbound.relay_tls", o.RelayTLS},
			{"outbound.relay_username", o.RelayUsername},
			{"outbound.relay_password_file", o.RelayPasswordFile},
		} {
			if k.value != "" {
				v.addNear(k.key, "outbound.relay", "%s is set but outbound.relay is empty; it applies only to a relay: set outbound.relay = \"HOST:PORT\" or remove %s", k.key, k.key)
			}
		}
	}
	checkRelay(v, relayKeys{"outbound.relay", "outbound.relay_tls", "outbound.relay_username", "outbound.relay_password_file"},
		o.Relay, o.RelayTLS, o.RelayUsername, o.RelayPasswordFile)
	checkRelay(v, relayKeys{"outbound.fallback_relay", "outbound.relay_tls", "outbound.relay_username", "outbound.relay_password_file"},
		o.FallbackRelay, "", "", "")
	if o.FallbackRelay != "" && o.Relay != "" {
		v.addf("outbound.fallback_relay", "outbound.fallback_relay is set but all mail already goes through outbound.relay, which no provider can pause; remove one of them")
	}
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
		checkRelay(v, relayKeys{key + ".relay", key + ".tls", key + ".username", key + ".password_file"},
			r.Relay, r.TLS, r.Username, r.PasswordFile)
	}
}

// relayKeys names the keys of one relay's settings, for messages.
type relayKeys struct{ relay, tls, user, passwordFile string }

// checkRelay validates a relay address, its TLS mode and its credentials, including that
// the password file can be read and starts with a password, as serve reads it.
func checkRelay(v *validator, k relayKeys, relay, tlsMode, user, passwordFile string) {
	if !oneOf(tlsMode, "", "starttls", "implicit", "none") {
		v.addf(k.tls, "%s = %q: allowed: \"starttls\", \"implicit\", \"none\"", k.tls, tlsMode)
	}
	switch {
	case user != "" && passwordFile == "":
		v.addf(k.user, "%s is set but %s is not: name a file holding the password", k.user, k.passwordFile)
	case user == "" && passwordFile != "":
		v.addf(k.passwordFile, "%s is set but %s is not: AUTH needs both, or neither for no AUTH", k.passwordFile, k.user)
	case passwordFile != "":
		if msg := checkSecretFile(passwordFile); msg != "" {
			v.addf(k.passwordFile, "%s = %q: %s", k.passwordFile, passwordFile, msg)
		}
	}
	if user != "" && tlsMode == "none" {
		v.addf(k.tls, "%s = \"none\" with a username: passwords are only sent over TLS", k.tls)
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
			v.addf(k.relay, "%s = %q: %s; use HOST:PORT such as \"smtp.example.net:587\", or \"\" to deliver directly", k.relay, relay, msg)
		}
	}
}

// validateStore accepts exactly what this version can open: SQLite. PostgreSQL keeps its
// keys in the schema, as part of the documented contract, but is refused here so that
// `config check` fails where serve would.
func (c *Config) validateStore(v *validator) {
	switch c.Store.Driver {
	case "sqlite":
		if c.Store.DSN != "" {
			v.addf("store.dsn", "store.dsn is set, but it is only used with PostgreSQL, which is not available in this version; leave it empty (SQLite keeps its database at data_dir/repute.db)")
		}
	case "postgres":
		v.addf("store.driver", "store.driver = \"postgres\": PostgreSQL is not available in this version; use \"sqlite\"")
	default:
		v.addf("store.driver", "store.driver = %q: unknown driver; this version has only \"sqlite\"", c.Store.Driver)
	}
}

func (c *Config) validateLimits(v *validator) {
	if n := c.SMTP.MaxMessageSize; n < minMessageSize || n > maxMessageSize {
		v.addf("smtp.max_message_size", "smtp.max_message_size = %d: allowed %d (1 KiB) to %d (512 MiB) bytes; messages are held in memory and stored whole", n, minMessageSize, maxMessageSize)
	}
	positive := []struct {
		key string
		n   int64
	}{
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
	if n := c.SMTP.MinFreeDisk; n < 0 || n > maxFreeDisk {
		v.addf("smtp.min_free_disk", "smtp.min_free_disk = %d: must be 0 (no check) or a positive number of bytes up to %d (1 PiB)", n, int64(maxFreeDisk))
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

func (c *Config) validateDNSBL(v *validator) {
	seen := map[string]bool{}
	for _, z := range c.SMTP.DNSBL {
		msg := checkDomain(z)
		switch {
		case msg != "":
		case !strings.Contains(z, "."):
			msg = "a blocklist zone has at least two labels"
		case len(z) > maxDNSBLZone:
			msg = fmt.Sprintf("longer than %d characters, too long for IPv6 queries", maxDNSBLZone)
		case seen[strings.ToLower(z)]:
			msg = "listed twice"
		}
		seen[strings.ToLower(z)] = true
		if msg != "" {
			v.addf("smtp.dnsbl", "smtp.dnsbl: %q: %s; list DNS blocklist zones such as \"zen.spamhaus.org\"", z, msg)
		}
	}
}

func (c *Config) validateBounce(v *validator) {
	b := c.Bounce
	if b.RulesFile != "" {
		if msg := checkReadable(b.RulesFile); msg != "" {
			v.addf("bounce.rules_file", "bounce.rules_file = %q: %s", b.RulesFile, msg)
		}
	}
	for _, a := range b.FeedbackAddresses {
		if msg := checkMailbox(a); msg != "" {
			v.addf("bounce.feedback_addresses", "bounce.feedback_addresses: %q: %s; use a local address such as \"fbl@example.org\"", a, msg)
		}
	}
	for _, s := range b.BulkSenders {
		msg := ""
		if domain, ok := strings.CutPrefix(s, "@"); ok {
			switch msg = checkDomain(domain); {
			case domain == "":
				msg = "the domain after @ is empty"
			case msg != "":
				msg = "domain " + strconv.Quote(domain) + ": " + msg
			}
		} else {
			msg = checkMailbox(s)
		}
		if msg != "" {
			v.addf("bounce.bulk_senders", "bounce.bulk_senders: %q: %s; list addresses such as \"news@example.org\" or whole domains such as \"@shop.example.org\"", s, msg)
		}
	}
	if b.UnsubscribeURL != "" {
		if msg := checkBaseURL(b.UnsubscribeURL); msg != "" {
			v.addf("bounce.unsubscribe_url", "bounce.unsubscribe_url = %q: %s; use an absolute https:// URL such as \"https://mail.example.org\", or \"\" for https:// and the hostname", b.UnsubscribeURL, msg)
		}
	}
}

// validator collects validation problems.
type validator struct {
	errs  []*Error
	local *localAddrs // this host's addresses, listed when first needed
}

func (v *validator) addf(key, format string, args ...any) {
	v.errs = append(v.errs, &Error{Key: key, Msg: fmt.Sprintf(format, args...)})
}

// addNear is addf for a problem with a key that may be absent from the file; Parse then
// reports it at the position of near, the key that requires it.
func (v *validator) addNear(key, near, format string, args ...any) {
	v.addf(key, format, args...)
	v.errs[len(v.errs)-1].near = near
}

// checkLocal says why ip cannot be bound on this host, or "".
func (v *validator) checkLocal(ip netip.Addr) string {
	if v.local == nil {
		v.local = listLocalAddrs()
	}
	return v.local.check(ip)
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

// checkMailbox says why s is not an address local-part@domain, or "". The local part must
// be a dot-atom (RFC 5322 §3.2.3; UTF-8 allowed, RFC 6531), as Repute compares addresses
// by their plain text; the domain must be a domain name.
func checkMailbox(s string) string {
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return "not an address (no @)"
	}
	local, domain := s[:at], s[at+1:]
	if local == "" {
		return "the local part before @ is empty"
	}
	if msg := checkLocalPart(local); msg != "" {
		return msg
	}
	if domain == "" {
		return "the domain after @ is empty"
	}
	if msg := checkDomain(domain); msg != "" {
		return "domain " + strconv.Quote(domain) + ": " + msg
	}
	return ""
}

func checkLocalPart(l string) string {
	switch {
	case len(l) > 64:
		return "the local part is longer than 64 characters"
	case !utf8.ValidString(l):
		return "the local part is not valid UTF-8"
	case l[0] == '.' || l[len(l)-1] == '.' || strings.Contains(l, ".."):
		return "the local part starts or ends with a dot or has two in a row"
	}
	for _, r := range l {
		if r < 0x80 && !isAtext(byte(r)) && r != '.' {
			return fmt.Sprintf("the local part contains %q, which an unquoted address cannot have", string(r))
		}
	}
	return ""
}

// isAtext reports whether c is an ASCII atext character (RFC 5322 §3.2.3).
func isAtext(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// checkBaseURL says why s cannot be the base of the unsubscribe links, or "". The links
// are s + "/unsubscribe/" + token, written between angle brackets in a header field, so s
// must be an absolute http(s) URL with a host and without user information, query or
// fragment, made only of the characters a URL may contain.
func checkBaseURL(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || strings.IndexByte("\"<>\\^`{|}", c) >= 0 {
			return fmt.Sprintf("contains %q, which a URL cannot (percent-encode it)", string(rune(c)))
		}
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "not a URL"
	case u.Scheme != "https" && u.Scheme != "http":
		if u.Scheme == "" {
			return "not an absolute URL"
		}
		return fmt.Sprintf("scheme %q is not allowed; the links must be https:// (or http://)", u.Scheme)
	case u.Opaque != "" || u.Host == "":
		return "the host is missing"
	case u.User != nil:
		return "must not contain a user name or password"
	case u.RawQuery != "" || u.ForceQuery:
		return "must not have a query (?...): the link's path is appended to it"
	case strings.Contains(s, "#"):
		return "must not have a fragment (#...)"
	}
	if port := u.Port(); port != "" {
		if msg := checkPort(port, false); msg != "" {
			return msg
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return "the port is missing after the colon"
	}
	return checkHost(u.Hostname())
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

// checkIPPort says why addr is not an IP:PORT address a DNS query can be sent to, or "".
// It accepts what internal/dns accepts (netip.ParseAddrPort).
func checkIPPort(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "not an IP:PORT address"
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Sprintf("%q is not an IP address", host)
	}
	if msg := checkPort(port, false); msg != "" {
		return msg
	}
	if _, err := netip.ParseAddrPort(addr); err != nil {
		return "not an IP:PORT address (an IPv6 address goes in brackets, an IPv4 address does not)"
	}
	if ip.IsUnspecified() || ip.IsMulticast() {
		return fmt.Sprintf("%s is not the address of a DNS server", host)
	}
	return ""
}
