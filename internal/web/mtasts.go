package web

// The MTA-STS policy (RFC 8461). A sender that finds "v=STSv1; id=..." at
// _mta-sts.DOMAIN fetches https://mta-sts.DOMAIN/.well-known/mta-sts.txt (§3.3) and,
// in enforce mode, delivers to DOMAIN only over verified TLS to the MX hosts the policy
// lists. The text is rendered by doctor.MTASTSPolicy, the same function that computes
// the id `repute dns records` prints, so the record and the policy cannot drift apart.

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/repute-mail/repute/internal/doctor"
	"github.com/repute-mail/repute/internal/smtp"
)

// mtaSTSPath is the policy's well-known URL path (RFC 8461 §3.3).
const mtaSTSPath = "/.well-known/mta-sts.txt"

// lookupTimeout bounds the store and DNS lookups of one request, well inside the
// listener's 30 s write timeout.
const lookupTimeout = 10 * time.Second

// mtaSTS serves the policy of DOMAIN on host mta-sts.DOMAIN. It never redirects: a
// sender must not follow redirects (RFC 8461 §3.3), so a policy is served where it is
// asked for or not at all. Only HTTPS counts for a sender; which listener carries this
// route is the caller's choice (see MTASTSMode).
func (s *Server) mtaSTS(w http.ResponseWriter, r *http.Request) {
	domain, ok := strings.CutPrefix(requestHost(r), "mta-sts.")
	if s.MTASTSMode == "" || !ok {
		http.NotFound(w, r)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), lookupTimeout)
	defer cancel()
	if _, status := s.localDomain(ctx, domain); status != http.StatusOK {
		http.Error(w, http.StatusText(status), status)
		return
	}
	policy := s.policy()
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8") // RFC 8461 §3.2: text/plain
	h.Set("Content-Length", strconv.Itoa(len(policy)))
	w.Write([]byte(policy))
}

// policy is the policy served for every local domain: mode and max_age from the Server,
// and as mx the Hostname plus the further MX hosts of MX (the configured mta_sts.mx), so
// that a domain with a backup MX elsewhere does not have it refused by senders in enforce
// mode. The live MX records are never used: the policy exists to protect delivery when
// DNS answers are forged.
func (s *Server) policy() string {
	policy, _ := doctor.MTASTSPolicy(s.MTASTSMode, s.MTASTSMaxAge, append([]string{s.Hostname}, s.MX...))
	return policy
}

// requestHost is the request's Host without the port, lower-cased and without a trailing
// dot.
func requestHost(r *http.Request) string {
	h := r.Host
	if host, _, err := net.SplitHostPort(h); err == nil {
		h = host
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// localDomain normalizes domain (A-labels, lower case) and tells whether it is one of
// ours: 200 when it is, 404 when it is not or is no domain name, 503 when the store
// cannot say.
func (s *Server) localDomain(ctx context.Context, domain string) (string, int) {
	d, err := smtp.NormalizeDomain(domain)
	if err != nil || d == "" || strings.HasPrefix(d, "[") || s.Domains == nil {
		return "", http.StatusNotFound
	}
	domains, err := s.Domains(ctx)
	if err != nil {
		s.logger().Error("web: listing local domains", "err", err)
		return "", http.StatusServiceUnavailable
	}
	for _, l := range domains {
		if strings.EqualFold(l, d) {
			return d, http.StatusOK
		}
	}
	return "", http.StatusNotFound
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}
