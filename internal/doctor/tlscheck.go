package doctor

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/mjl-/adns"

	"github.com/repute-mail/repute/internal/dns"
)

// probe is what one TLS endpoint of the hostname presented.
type probe struct {
	port  int
	name  string // "smtp (STARTTLS)", "submissions", "imaps"
	chain []*x509.Certificate
	err   error
}

// probeCerts connects to the hostname's TLS endpoints (25 with STARTTLS, 465, 993) and
// records the certificate chains they present.
func (c *Checker) probeCerts(ctx context.Context, ips []netip.Addr) map[int]probe {
	p := c.ports()
	out := map[int]probe{}
	for _, e := range []struct {
		port     int
		name     string
		starttls bool
	}{{p.SMTP, "smtp (STARTTLS)", true}, {p.Submissions, "submissions", false}, {p.IMAPS, "imaps", false}} {
		chain, err := c.tlsChain(ctx, ips, e.port, e.starttls)
		out[e.port] = probe{port: e.port, name: e.name, chain: chain, err: err}
	}
	return out
}

// tlsChain opens a TLS connection to port (after STARTTLS when asked) and returns the
// certificates the server sent, unverified.
func (c *Checker) tlsChain(ctx context.Context, ips []netip.Addr, port int, starttls bool) ([]*x509.Certificate, error) {
	conn, err := c.dialHost(ctx, ips, port)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * c.Timeout))
	if starttls {
		if err := smtpStartTLS(conn); err != nil {
			return nil, err
		}
	}
	host := trimDot(c.Setup.Hostname)
	tc := tls.Client(conn, &tls.Config{ServerName: host, InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}) // verified by the caller, to say why it fails
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return tc.ConnectionState().PeerCertificates, nil
}

// smtpStartTLS reads the greeting, says EHLO and starts TLS on an SMTP connection.
func smtpStartTLS(conn net.Conn) error {
	r := bufio.NewReader(io.LimitReader(conn, 64<<10))
	if code, _, err := smtpReply(r); err != nil || code != 220 {
		return fmt.Errorf("SMTP greeting: %d %v", code, err)
	}
	fmt.Fprintf(conn, "EHLO doctor.invalid\r\n")
	code, lines, err := smtpReply(r)
	if err != nil || code != 250 {
		return fmt.Errorf("EHLO: %d %v", code, err)
	}
	has := false
	for _, l := range lines {
		if strings.EqualFold(strings.Fields(l + " x")[0], "STARTTLS") {
			has = true
		}
	}
	if !has {
		return errors.New("the server does not offer STARTTLS")
	}
	fmt.Fprintf(conn, "STARTTLS\r\n")
	if code, _, err := smtpReply(r); err != nil || code != 220 {
		return fmt.Errorf("STARTTLS: %d %v", code, err)
	}
	return nil
}

// smtpReply reads one (multi-line) SMTP reply.
func smtpReply(r *bufio.Reader) (int, []string, error) {
	var lines []string
	for range 100 {
		line, err := r.ReadString('\n')
		if err != nil {
			return 0, nil, err
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 3 {
			return 0, nil, fmt.Errorf("malformed reply %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil {
			return 0, nil, fmt.Errorf("malformed reply %q", line)
		}
		if len(line) > 4 {
			lines = append(lines, line[4:])
		}
		if len(line) == 3 || line[3] == ' ' {
			return code, lines, nil
		}
	}
	return 0, nil, errors.New("reply too long")
}

func tlsConfig(roots *x509.CertPool, name string) *tls.Config {
	return &tls.Config{RootCAs: roots, ServerName: name, MinVersion: tls.VersionTLS12}
}

// checkCerts judges the certificate of each TLS endpoint: trusted, for the hostname, and
// more than 14 days from expiry.
func (c *Checker) checkCerts(probes map[int]probe) []Result {
	host := trimDot(c.Setup.Hostname)
	now := c.Now()
	fix := "set tls.acme_email to get and renew a certificate for " + host + " automatically, or point tls.cert_file and tls.key_file at a valid one"
	var out []Result
	p := c.ports()
	for _, port := range []int{p.SMTP, p.Submissions, p.IMAPS} {
		pr := probes[port]
		target := fmt.Sprintf("%s:%d", host, port)
		if pr.err != nil {
			out = append(out, Result{ID: IDCert, Status: Error, Target: target, Found: "could not get the certificate from " + pr.name + ": " + pr.err.Error(), Why: whyCert,
				Fix: "make sure repute serve runs and listens there (config [listen]), and that " + host + " resolves to this server"})
			continue
		}
		leaf := pr.chain[0]
		inter := x509.NewCertPool()
		for _, ct := range pr.chain[1:] {
			inter.AddCert(ct)
		}
		_, err := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: c.RootCAs, Intermediates: inter, CurrentTime: now})
		left := leaf.NotAfter.Sub(now)
		found := fmt.Sprintf("%s: certificate for %s from %s, valid until %s", pr.name, certNames(leaf), leaf.Issuer.CommonName, leaf.NotAfter.UTC().Format("2006-01-02"))
		var inv x509.CertificateInvalidError
		var hostErr x509.HostnameError
		var unknown x509.UnknownAuthorityError
		switch {
		case now.After(leaf.NotAfter) || (errors.As(err, &inv) && inv.Reason == x509.Expired):
			out = append(out, Result{ID: IDCert, Status: Fail, Target: target, Found: found + ": expired", Why: whyCert, Fix: fix})
		case errors.As(err, &hostErr):
			out = append(out, Result{ID: IDCert, Status: Fail, Target: target, Found: found + ": not valid for " + host, Why: whyCert, Fix: fix})
		case errors.As(err, &unknown):
			out = append(out, Result{ID: IDCert, Status: Fail, Target: target, Found: found + ": not signed by a trusted CA (self-signed?)", Why: whyCert, Fix: fix})
		case err != nil:
			out = append(out, Result{ID: IDCert, Status: Fail, Target: target, Found: found + ": " + err.Error(), Why: whyCert, Fix: fix})
		case left < 14*24*time.Hour:
			out = append(out, Result{ID: IDCert, Status: Warn, Target: target, Found: fmt.Sprintf("%s: expires in %d days", found, int(left.Hours()/24)), Why: whyCert, Fix: "renew it now: " + fix})
		default:
			out = append(out, Result{ID: IDCert, Status: Pass, Target: target, Found: found, Why: whyCert})
		}
	}
	return out
}

const whyCert = "Senders that enforce MTA-STS or DANE, and every mail client, refuse a certificate that is expired, self-signed or for another name."

func certNames(c *x509.Certificate) string {
	if len(c.DNSNames) > 0 {
		return strings.Join(c.DNSNames, ", ")
	}
	return c.Subject.CommonName
}

// checkTLSA compares the hostname's TLSA records for port 25 with the certificate served
// there. It also returns whether the answer was DNSSEC-authentic, for the dnssec check.
func (c *Checker) checkTLSA(ctx context.Context, smtp probe) (Result, tlsaInfo) {
	host := trimDot(c.Setup.Hostname)
	name := "_25._tcp." + host
	target := name
	info := tlsaInfo{}
	_, hostRes, herr := c.Resolver.LookupIP(ctx, "ip", abs(host))
	info.signed = herr == nil && hostRes.Authentic
	recs, res, err := c.Resolver.LookupTLSA(ctx, 25, "tcp", abs(host))
	if err != nil && !dns.IsNotFound(err) {
		return Result{ID: IDTLSA, Status: Error, Target: target, Found: lookupErr("TLSA records", err), Why: whyTLSA}, info
	}
	info.published = len(recs) > 0
	info.signed = info.signed || res.Authentic
	if len(recs) == 0 {
		return Result{ID: IDTLSA, Status: Warn, Target: target, Found: "no TLSA record: DANE-enforcing senders (Microsoft 365, many European providers) cannot authenticate this server",
			Why: whyTLSA, Fix: "sign the zone with DNSSEC, then publish the TLSA records repute dns records prints (3 1 1 for the current and the next key)"}, info
	}
	if smtp.err != nil {
		return Result{ID: IDTLSA, Status: Error, Target: target, Found: "TLSA is published but the certificate on port 25 could not be read: " + smtp.err.Error(), Why: whyTLSA}, info
	}
	var got []string
	for _, r := range recs {
		got = append(got, fmt.Sprintf("%d %d %d %s…", r.Usage, r.Selector, r.MatchType, abbreviateHex(r.CertAssoc)))
		if tlsaMatches(r, smtp.chain) {
			return Result{ID: IDTLSA, Status: Pass, Target: target, Found: fmt.Sprintf("TLSA %d %d %d matches the certificate served on port 25", r.Usage, r.Selector, r.MatchType), Why: whyTLSA}, info
		}
	}
	return Result{ID: IDTLSA, Status: Fail, Target: target,
		Found: "no TLSA record (" + strings.Join(got, "; ") + ") matches the certificate served on port 25: DANE senders will not deliver",
		Why:   whyTLSA, Fix: fmt.Sprintf("publish TLSA %s. 3 1 1 %s (repute dns records) and remove the stale one once it has been gone for twice its TTL", name, spkiHash(smtp.chain[0]))}, info
}

type tlsaInfo struct{ signed, published bool }

const whyTLSA = "DANE (RFC 7672) lets senders authenticate this server through DNSSEC-signed TLSA records; a record that does not match makes them stop delivering."

func tlsaMatches(r adns.TLSA, chain []*x509.Certificate) bool {
	var certs []*x509.Certificate
	switch r.Usage {
	case adns.TLSAUsageDANEEE, adns.TLSAUsagePKIXEE:
		certs = chain[:1]
	default:
		certs = chain[1:]
	}
	for _, ct := range certs {
		data := ct.Raw
		if r.Selector == adns.TLSASelectorSPKI {
			data = ct.RawSubjectPublicKeyInfo
		}
		var sum []byte
		switch r.MatchType {
		case adns.TLSAMatchTypeFull:
			sum = data
		case adns.TLSAMatchTypeSHA256:
			h := sha256.Sum256(data)
			sum = h[:]
		case adns.TLSAMatchTypeSHA512:
			h := sha512.Sum512(data)
			sum = h[:]
		}
		if string(sum) == string(r.CertAssoc) {
			return true
		}
	}
	return false
}

func spkiHash(c *x509.Certificate) string {
	h := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(h[:])
}

func abbreviateHex(b []byte) string {
	s := hex.EncodeToString(b)
	if len(s) > 16 {
		s = s[:16]
	}
	return s
}

// checkDNSSEC says whether the hostname's zone is signed and our resolver validates, and
// fails when TLSA is published in a zone that is not signed (senders ignore such records).
func (c *Checker) checkDNSSEC(ctx context.Context, info tlsaInfo, tlsa Result) Result {
	host := trimDot(c.Setup.Hostname)
	validating := info.signed || dns.CheckDNSSEC(ctx, c.Resolver, c.DNSSECProbe) == nil
	switch {
	case info.signed:
		return Result{ID: IDDNSSEC, Status: Pass, Target: host, Found: "the zone of " + host + " is signed and the resolver validates it", Why: whyDNSSEC}
	case !validating:
		return Result{ID: IDDNSSEC, Status: Warn, Target: host, Found: "the resolver does not validate DNSSEC, so whether the zone is signed cannot be told, and Repute delivers without DANE", Why: whyDNSSEC,
			Fix: "run a validating resolver on this host (unbound) and set dns.resolver = \"127.0.0.1:53\""}
	case info.published:
		return Result{ID: IDDNSSEC, Status: Fail, Target: host, Found: "TLSA records are published for " + host + ", but its zone is not signed: senders ignore them", Why: whyDNSSEC,
			Fix: "sign the zone of " + host + " with DNSSEC (your DNS host's \"DNSSEC\" switch, then the DS record at the registrar), or remove the TLSA records"}
	default:
		return Result{ID: IDDNSSEC, Status: Warn, Target: host, Found: "the zone of " + host + " is not signed, so DANE cannot protect mail to it", Why: whyDNSSEC,
			Fix: "sign the zone with DNSSEC (your DNS host's \"DNSSEC\" switch, then the DS record at the registrar), then publish TLSA"}
	}
}

const whyDNSSEC = "DNSSEC protects the MX and TLSA answers from forgery; without it DANE is impossible and a forged MX can divert mail."

// checkPort25Out checks that outbound connections to port 25 work: many hosting providers
// block them on new accounts.
func (c *Checker) checkPort25Out(ctx context.Context) Result {
	target := c.Port25Probe
	fix := "outbound port 25 is blocked: ask the hosting provider to open it (many block it on new accounts until asked), or set outbound.relay to a smarthost on port 587"
	dctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	conn, err := c.Dial(dctx, "tcp", c.Port25Probe)
	if err != nil {
		return Result{ID: IDPort25Out, Status: Fail, Target: target, Found: "could not connect: " + err.Error(), Why: whyPort25, Fix: fix}
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(c.Timeout))
	code, lines, err := smtpReply(bufio.NewReader(io.LimitReader(conn, 16<<10)))
	if err != nil {
		return Result{ID: IDPort25Out, Status: Fail, Target: target, Found: "connected, but no SMTP greeting: " + err.Error() + " (a firewall that intercepts port 25?)", Why: whyPort25, Fix: fix}
	}
	fmt.Fprintf(conn, "QUIT\r\n")
	greeting := ""
	if len(lines) > 0 {
		greeting = lines[0]
	}
	if code != 220 {
		return Result{ID: IDPort25Out, Status: Warn, Target: target, Found: fmt.Sprintf("connected, but the greeting was %d %s", code, greeting), Why: whyPort25}
	}
	return Result{ID: IDPort25Out, Status: Pass, Target: target, Found: "connected and greeted: 220 " + greeting, Why: whyPort25}
}

const whyPort25 = "Mail to other servers leaves on port 25; if the provider blocks it, nothing is delivered."

// checkPortsIn asks the outside prober whether the server's ports are reachable from the
// internet. The prober is an HTTPS URL that answers GET ?host=H&port=P with JSON
// {"open": true|false, "error": "..."} (docs/CHECKS.md).
func (c *Checker) checkPortsIn(ctx context.Context) []Result {
	host := trimDot(c.Setup.Hostname)
	client := &http.Client{Timeout: 3 * c.Timeout}
	var out []Result
	for _, port := range []int{25, 465, 587, 993} {
		target := fmt.Sprintf("%s:%d", host, port)
		u, err := url.Parse(c.PortsInProbe)
		if err != nil {
			return []Result{{ID: IDPortsIn, Status: Error, Target: host, Found: "check.ports_in_probe is not a URL: " + err.Error()}}
		}
		q := u.Query()
		q.Set("host", host)
		q.Set("port", strconv.Itoa(port))
		u.RawQuery = q.Encode()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		resp, err := client.Do(req)
		if err != nil {
			out = append(out, Result{ID: IDPortsIn, Status: Error, Target: target, Found: "the prober did not answer: " + err.Error(), Why: whyPortsIn})
			continue
		}
		var ans struct {
			Open  bool   `json:"open"`
			Error string `json:"error"`
		}
		err = json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&ans)
		resp.Body.Close()
		switch {
		case err != nil || resp.StatusCode != http.StatusOK:
			out = append(out, Result{ID: IDPortsIn, Status: Error, Target: target, Found: fmt.Sprintf("the prober answered %s: %v", resp.Status, err), Why: whyPortsIn})
		case ans.Error != "":
			out = append(out, Result{ID: IDPortsIn, Status: Error, Target: target, Found: "the prober said: " + ans.Error, Why: whyPortsIn})
		case ans.Open:
			out = append(out, Result{ID: IDPortsIn, Status: Pass, Target: target, Found: "reachable from the internet", Why: whyPortsIn})
		default:
			out = append(out, Result{ID: IDPortsIn, Status: Fail, Target: target, Found: "not reachable from the internet", Why: whyPortsIn,
				Fix: fmt.Sprintf("open TCP port %d in the firewall and the hosting provider's security group, and check that repute serve listens on it ([listen])", port)})
		}
	}
	return out
}

const whyPortsIn = "Other servers deliver on 25, clients submit on 465/587 and read on 993; a closed port means lost mail or clients that cannot connect."
