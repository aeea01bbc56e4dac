// Package auth is the home of sender authentication: SPF (RFC 7208, blitiri.com.ar/go/spf),
// DKIM (RFC 6376 and RFC 8463, on mox's dkim package), DMARC and ARC. The libraries are
// wrapped here, behind Repute's own types and its one DNS resolver (internal/dns), so an
// upgrade of a v0.x dependency touches one place.
//
// Upstream: the SMTP session's checks (SPF at MAIL FROM, DKIM/DMARC after DATA) and the
// outbound path (DKIM signing). Downstream: internal/dns.
package auth
