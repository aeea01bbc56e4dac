package doctor

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// TSIGKey is a shared secret that signs DNS messages (RFC 8945), as the primary server's
// configuration names it.
type TSIGKey struct {
	Name      string // absolute key name, "repute." for a key called repute
	Algorithm string // absolute algorithm name, such as "hmac-sha256."
	Secret    string // base64
}

// tsigAlgorithms maps the names key files use to the algorithm names on the wire.
var tsigAlgorithms = map[string]string{
	"hmac-md5":                 dns.HmacMD5,
	"hmac-md5.sig-alg.reg.int": dns.HmacMD5,
	"hmac-sha1":                dns.HmacSHA1,
	"hmac-sha224":              dns.HmacSHA224,
	"hmac-sha256":              dns.HmacSHA256,
	"hmac-sha384":              dns.HmacSHA384,
	"hmac-sha512":              dns.HmacSHA512,
}

var (
	bindKeyRE    = regexp.MustCompile(`(?s)key\s+"?([^"\s{]+)"?\s*\{(.*?)\}`)
	bindAlgRE    = regexp.MustCompile(`algorithm\s+"?([A-Za-z0-9.-]+)"?\s*;`)
	bindSecretRE = regexp.MustCompile(`secret\s+"([^"]+)"\s*;`)
	yamlFieldRE  = regexp.MustCompile(`(?m)^\s*(?:-\s*)?(id|algorithm|secret)\s*:\s*"?([^"\s#]+)"?`)
)

// ParseTSIGKey reads a TSIG key in any of the forms key tools write: BIND's
// `key "name" { algorithm hmac-sha256; secret "base64"; };` (tsig-keygen, ddns-confgen,
// rndc-confgen), Knot's YAML `key: - id: name / algorithm: … / secret: …` (keymgr -t), or
// the one-line `[algorithm:]name:secret` of kdig -y and knsupdate (also found as the
// comment line keymgr prints first). Without an algorithm, hmac-sha256 is assumed.
func ParseTSIGKey(text string) (TSIGKey, error) {
	var name, alg, secret string
	switch {
	case bindKeyRE.MatchString(text):
		m := bindKeyRE.FindStringSubmatch(text)
		name = m[1]
		if a := bindAlgRE.FindStringSubmatch(m[2]); a != nil {
			alg = a[1]
		}
		if s := bindSecretRE.FindStringSubmatch(m[2]); s != nil {
			secret = s[1]
		}
	case yamlFieldRE.MatchString(text) && strings.Contains(text, "id:"):
		for _, f := range yamlFieldRE.FindAllStringSubmatch(text, -1) {
			switch {
			case f[1] == "id" && name == "":
				name = f[2]
			case f[1] == "id":
				return TSIGKey{}, errors.New("the key file holds more than one key; keep the one to sign with")
			case f[1] == "algorithm":
				alg = f[2]
			case f[1] == "secret":
				secret = f[2]
			}
		}
	default:
		name, alg, secret = parseKeyLine(text)
	}
	if name == "" || secret == "" {
		return TSIGKey{}, errors.New(`no TSIG key found: expected key "NAME" { algorithm hmac-sha256; secret "BASE64"; }; ` +
			`(tsig-keygen), keymgr -t output, or ALGORITHM:NAME:SECRET`)
	}
	if alg == "" {
		alg = "hmac-sha256"
	}
	wire, ok := tsigAlgorithms[strings.ToLower(strings.TrimSuffix(alg, "."))]
	if !ok {
		return TSIGKey{}, fmt.Errorf("TSIG algorithm %q is not supported; use hmac-sha256", alg)
	}
	if _, err := base64.StdEncoding.DecodeString(secret); err != nil {
		return TSIGKey{}, fmt.Errorf("the TSIG secret of key %s is not base64: %v", name, err)
	}
	return TSIGKey{Name: dns.CanonicalName(name), Algorithm: wire, Secret: secret}, nil
}

// parseKeyLine reads the first non-empty line as [algorithm:]name:secret.
func parseKeyLine(text string) (name, alg, secret string) {
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(strings.TrimLeft(strings.TrimSpace(l), "#"))
		if l == "" {
			continue
		}
		parts := strings.Split(l, ":")
		switch len(parts) {
		case 2:
			return parts[0], "", parts[1]
		case 3:
			return parts[1], parts[0], parts[2]
		}
		return "", "", ""
	}
	return "", "", ""
}

// ReadTSIGKey reads a key file in a form ParseTSIGKey accepts.
func ReadTSIGKey(path string) (TSIGKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return TSIGKey{}, fmt.Errorf("reading the TSIG key: %w", err)
	}
	k, err := ParseTSIGKey(string(data))
	if err != nil {
		return TSIGKey{}, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// exchange sends m over TCP (updates with DKIM keys exceed 512 bytes), signed with key.
func exchange(ctx context.Context, server string, key TSIGKey, m *dns.Msg) (*dns.Msg, error) {
	c := &dns.Client{Net: "tcp", TsigSecret: map[string]string{key.Name: key.Secret}, Timeout: 20 * time.Second}
	m.SetTsig(key.Name, key.Algorithm, 300, time.Now().Unix())
	r, _, err := c.ExchangeContext(ctx, m, server)
	if r != nil && r.Rcode != dns.RcodeSuccess && !(m.Opcode == dns.OpcodeQuery && r.Rcode == dns.RcodeNameError) {
		return r, rcodeError(r)
	}
	if err != nil {
		if r != nil {
			return r, fmt.Errorf("the answer of %s fails TSIG verification (%v): is the key the server's?", server, err)
		}
		return nil, fmt.Errorf("asking %s: %w", server, err)
	}
	return r, nil
}

// rcodeError puts a failed answer's rcode, and its TSIG error if any, in words.
func rcodeError(r *dns.Msg) error {
	words := map[int]string{
		dns.RcodeFormatError:    "the server did not understand the message",
		dns.RcodeServerFailure:  "the server failed to process it",
		dns.RcodeNameError:      "no such name",
		dns.RcodeNotImplemented: "the server does not support this (dynamic updates not enabled?)",
		dns.RcodeRefused: "the server refuses this request from this address or key for this zone; " +
			"allow it in the server's update policy: BIND allow-update or update-policy, Knot acl",
		dns.RcodeNotAuth: "not authorized: the server does not accept this key for the zone, " +
			"or is not authoritative for it",
		dns.RcodeNotZone:  "a record is outside the zone",
		dns.RcodeYXDomain: "a name exists that should not",
		dns.RcodeYXRrset:  "an RRset exists that should not",
		dns.RcodeNXRrset:  "an RRset does not exist that should",
	}
	msg := dns.RcodeToString[r.Rcode]
	if msg == "" {
		msg = fmt.Sprintf("RCODE %d", r.Rcode)
	}
	if w := words[r.Rcode]; w != "" {
		msg += " (" + w + ")"
	}
	if t := r.IsTsig(); t != nil && t.Error != dns.RcodeSuccess {
		tsigWords := map[uint16]string{
			dns.RcodeBadSig:  "the key's secret does not match the server's",
			dns.RcodeBadKey:  "the server knows no key of this name and algorithm",
			dns.RcodeBadTime: "this machine's clock and the server's differ by more than 5 minutes",
		}
		e := dns.RcodeToString[int(t.Error)]
		if e == "" {
			e = fmt.Sprintf("%d", t.Error)
		}
		msg += "; TSIG error " + e
		if w := tsigWords[t.Error]; w != "" {
			msg += " (" + w + ")"
		}
	}
	return errors.New(msg)
}

// FindZone returns the zone (absolute, lower case) that holds name on server: the owner of
// the SOA record the server answers, or refers to, for name.
func FindZone(ctx context.Context, server string, key TSIGKey, name string) (string, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.CanonicalName(name), dns.TypeSOA)
	m.RecursionDesired = false
	r, err := exchange(ctx, server, key, m)
	if err != nil {
		if r != nil && r.Rcode == dns.RcodeRefused {
			return "", fmt.Errorf("finding the zone of %s: %s serves no zone that holds it (REFUSED)", name, server)
		}
		return "", fmt.Errorf("finding the zone of %s at %s: %w", name, server, err)
	}
	for _, rr := range append(append([]dns.RR{}, r.Answer...), r.Ns...) {
		if soa, ok := rr.(*dns.SOA); ok && dns.IsSubDomain(soa.Hdr.Name, dns.CanonicalName(name)) {
			return dns.CanonicalName(soa.Hdr.Name), nil
		}
	}
	return "", fmt.Errorf("finding the zone of %s: %s answered without its SOA record (is it the zone's primary?)", name, server)
}

// Push publishes recs in zone on server by RFC 2136 dynamic update, signed with key, in
// one update message so the zone changes at once. zone "" is found by FindZone from the
// first record's Domain. Every record must lie in the zone.
//
// Repute replaces what it manages and nothing else: each RRset it generates (MX, A, AAAA,
// TLSA, SRV, and TXT at names of its own such as _dmarc and the DKIM selectors) is deleted
// and added anew; a name it points elsewhere by CNAME loses its other records (a CNAME
// stands alone, RFC 1034 §3.6.2); at names shared with other uses, only the TXT records
// that are SPF records ("v=spf1 …") are replaced, and a CAA record is added beside the
// existing ones. Pushing the same records twice changes nothing.
func Push(ctx context.Context, server string, key TSIGKey, zone string, recs []Record) error {
	var rrs []dns.RR
	var first string
	for _, r := range recs {
		if r.IsNote() {
			continue
		}
		rr, err := dns.NewRR(ZoneLine(r))
		if err != nil {
			return fmt.Errorf("record %s %s: %w", r.Name, r.Type, err)
		}
		if first == "" {
			first = r.Domain
		}
		rrs = append(rrs, rr)
	}
	if len(rrs) == 0 {
		return errors.New("no records to push")
	}
	if zone == "" {
		z, err := FindZone(ctx, server, key, first)
		if err != nil {
			return err
		}
		zone = z
	}
	zone = dns.CanonicalName(zone)
	for _, rr := range rrs {
		if !dns.IsSubDomain(zone, rr.Header().Name) {
			return fmt.Errorf("%s is not in zone %s: push it to its own zone", rr.Header().Name, zone)
		}
	}
	m := new(dns.Msg)
	m.SetUpdate(zone)
	if err := deletions(ctx, server, key, m, rrs); err != nil {
		return err
	}
	m.Insert(rrs)
	if _, err := exchange(ctx, server, key, m); err != nil {
		return fmt.Errorf("update of zone %s at %s failed: %w", zone, server, err)
	}
	return nil
}

// deletions adds to m the deletion of what rrs replace (see Push).
func deletions(ctx context.Context, server string, key TSIGKey, m *dns.Msg, rrs []dns.RR) error {
	type nameType struct {
		name string
		typ  uint16
	}
	done := map[nameType]bool{}
	for _, rr := range rrs {
		h := rr.Header()
		name := dns.CanonicalName(h.Name)
		switch {
		case h.Rrtype == dns.TypeCNAME:
			if !done[nameType{name, dns.TypeANY}] {
				m.RemoveName([]dns.RR{rr})
			}
			done[nameType{name, dns.TypeANY}] = true
		case h.Rrtype == dns.TypeCAA:
		case h.Rrtype == dns.TypeTXT && isSPF(strings.Join(rr.(*dns.TXT).Txt, "")):
			if done[nameType{name, dns.TypeSPF}] {
				continue
			}
			done[nameType{name, dns.TypeSPF}] = true
			old, err := existingSPF(ctx, server, key, name)
			if err != nil {
				return err
			}
			m.Remove(old)
		default:
			if !done[nameType{name, h.Rrtype}] {
				m.RemoveRRset([]dns.RR{rr})
			}
			done[nameType{name, h.Rrtype}] = true
		}
	}
	return nil
}

func isSPF(txt string) bool {
	l := strings.ToLower(txt)
	return l == "v=spf1" || strings.HasPrefix(l, "v=spf1 ")
}

// existingSPF returns the SPF records published at name on server.
func existingSPF(ctx context.Context, server string, key TSIGKey, name string) ([]dns.RR, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeTXT)
	m.RecursionDesired = false
	r, err := exchange(ctx, server, key, m)
	if err != nil {
		return nil, fmt.Errorf("reading the TXT records of %s: %w", name, err)
	}
	var out []dns.RR
	for _, rr := range r.Answer {
		if t, ok := rr.(*dns.TXT); ok && dns.CanonicalName(t.Hdr.Name) == name && isSPF(strings.Join(t.Txt, "")) {
			out = append(out, t)
		}
	}
	return out, nil
}
