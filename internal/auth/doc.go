// Package auth is the home of sender authentication: SPF (RFC 7208, blitiri.com.ar/go/spf),
// DKIM (RFC 6376 and RFC 8463, on mox's dkim package), DMARC (RFC 7489, on mox's dmarc and
// publicsuffix packages), iprev (RFC 8601 §3, on mox's iprev), ARC (RFC 8617, our own on
// the DKIM primitives: no Go library exists) and the Authentication-Results field
// (RFC 8601). The libraries are wrapped here, behind Repute's own types and its one DNS
// resolver (internal/dns), so an upgrade of a v0.x dependency touches one place.
//
// Every check maps DNS trouble to "temperror", never to a failure: the caller turns a
// temperror that matters into a temporary SMTP reply, so the sender tries again.
//
// Upstream: internal/policy (the inbound verdict: iprev at connect, SPF at MAIL FROM,
// DKIM/ARC/DMARC after DATA), internal/app (DKIM signing of submitted mail, ARC sealing of
// forwarded mail) and cmd/repute (keys and records). Downstream: internal/dns.
package auth
