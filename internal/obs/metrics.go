package obs

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are Repute's Prometheus counters, on a private registry: mox registers its own
// counters on the default registry at init, and those would otherwise appear in (and could
// collide with) ours. A nil *Metrics is valid and counts nothing, so components can be built
// without one in tests.
type Metrics struct {
	reg *prometheus.Registry

	// SMTPConnections counts SMTP connections by listener and outcome: "accepted",
	// "refused_limit" (too many at once), "refused_rate" (too many per minute).
	SMTPConnections *prometheus.CounterVec
	// SMTPMessages counts finished transactions by listener and outcome: "accepted",
	// "junk" (stored in Junk by DMARC quarantine), "rejected", "deferred".
	SMTPMessages *prometheus.CounterVec
	// RateLimited counts refusals by rate limit: "connection" or "message".
	RateLimited *prometheus.CounterVec
	// LoginFailures counts wrong passwords by protocol ("smtp", "imap").
	LoginFailures *prometheus.CounterVec
	// Lockouts counts client addresses locked out after repeated login failures, and
	// LockedOutLogins the logins refused while locked out.
	Lockouts        prometheus.Counter
	LockedOutLogins prometheus.Counter
	// InboundAuth counts the results of inbound checks by method (spf, dkim, dmarc, arc,
	// iprev) and result (pass, fail, none, temperror, ...).
	InboundAuth *prometheus.CounterVec
	// DNSBLListings counts MX clients found on a blocklist, by zone.
	DNSBLListings *prometheus.CounterVec
}

// NewMetrics builds the counters and a registry holding them plus the Go runtime and
// process collectors.
func NewMetrics() *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	counterVec := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "repute", Name: name, Help: help}, labels)
		m.reg.MustRegister(c)
		return c
	}
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "repute", Name: name, Help: help})
		m.reg.MustRegister(c)
		return c
	}
	m.SMTPConnections = counterVec("smtp_connections_total", "SMTP connections by listener and outcome.", "listener", "result")
	m.SMTPMessages = counterVec("smtp_messages_total", "SMTP transactions after DATA by listener and outcome.", "listener", "result")
	m.RateLimited = counterVec("rate_limited_total", "Connections or messages refused by a per-IP rate limit.", "kind")
	m.LoginFailures = counterVec("login_failures_total", "Failed logins by protocol.", "protocol")
	m.Lockouts = counter("lockouts_total", "Client addresses locked out after repeated login failures.")
	m.LockedOutLogins = counter("locked_out_logins_total", "Logins refused because the client address is locked out.")
	m.InboundAuth = counterVec("inbound_auth_results_total", "Results of inbound sender authentication by method.", "method", "result")
	m.DNSBLListings = counterVec("dnsbl_listings_total", "MX clients found on a DNS blocklist, by zone.", "zone")
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// The recording methods below do nothing on a nil *Metrics, so callers need no checks.

// Connection counts an SMTP connection on listener with its outcome.
func (m *Metrics) Connection(listener, result string) {
	if m != nil {
		m.SMTPConnections.WithLabelValues(listener, result).Inc()
	}
}

// Message counts a finished SMTP transaction on listener with its outcome.
func (m *Metrics) Message(listener, result string) {
	if m != nil {
		m.SMTPMessages.WithLabelValues(listener, result).Inc()
	}
}

// RateLimit counts a refusal by the per-IP rate limit of kind "connection" or "message".
func (m *Metrics) RateLimit(kind string) {
	if m != nil {
		m.RateLimited.WithLabelValues(kind).Inc()
	}
}

// LoginFailure counts a wrong password over protocol.
func (m *Metrics) LoginFailure(protocol string) {
	if m != nil {
		m.LoginFailures.WithLabelValues(protocol).Inc()
	}
}

// Lockout counts an address locked out; LockedOutLogin a login refused by a lockout.
func (m *Metrics) Lockout() {
	if m != nil {
		m.Lockouts.Inc()
	}
}

func (m *Metrics) LockedOutLogin() {
	if m != nil {
		m.LockedOutLogins.Inc()
	}
}

// Auth counts one inbound authentication result.
func (m *Metrics) Auth(method, result string) {
	if m != nil {
		m.InboundAuth.WithLabelValues(method, result).Inc()
	}
}

// Listed counts an MX client found on the blocklist zone.
func (m *Metrics) Listed(zone string) {
	if m != nil {
		m.DNSBLListings.WithLabelValues(zone).Inc()
	}
}
