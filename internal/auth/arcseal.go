package auth

// Sealing: adding one ARC set to a message Repute forwards (RFC 8617 §5.1).

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SealARC adds one ARC set (ARC-Authentication-Results, ARC-Message-Signature and
// ARC-Seal) with instance chain.Instance+1 to the top of msg, signed with key (RSA or
// Ed25519). authservID is our host name; results is the Authentication-Results payload
// after the authserv-id ("spf=pass smtp.mailfrom=a.test; dkim=pass header.d=a.test").
// The seal's cv= comes from chain: none for "none", pass for "pass", fail otherwise. It
// refuses (with an error) a chain that already has 50 sets, and one whose newest seal
// says cv=fail (RFC 8617 §5.1.2): nothing can be added to a failed chain.
//
// chain must be VerifyARC's verdict on msg: SealARC checks that the message's highest
// instance is chain.Instance, so a stale or made-up verdict cannot number the new set
// into a collision. The AMS signs the same fields as SignDKIM (never ARC fields or
// Authentication-Results), relaxed/relaxed; the seal covers all sets, or only the new
// one when it says cv=fail (RFC 8617 §5.1.2). Note that RFC 8617 names only rsa-sha256:
// verifiers such as dkimpy reject Ed25519 seals, so an Ed25519 key should be used only
// when the receivers are known to accept it.
func SealARC(key DKIMKey, msg []byte, authservID, results string, chain ARCResult, now time.Time) ([]byte, error) {
	if err := checkAuthservID(authservID); err != nil {
		return nil, fmt.Errorf("arc: seal: %w", err)
	}
	parts, err := splitResults(results)
	if err != nil {
		return nil, fmt.Errorf("arc: seal: %w", err)
	}
	var alg string
	switch key.Private.(type) {
	case *rsa.PrivateKey:
		alg = "rsa-sha256"
	case ed25519.PrivateKey:
		alg = "ed25519-sha256"
	default:
		return nil, fmt.Errorf("arc: seal: unsupported private key type %T", key.Private)
	}
	domain, selector, err := key.names()
	if err != nil {
		return nil, fmt.Errorf("arc: seal: %w", err)
	}
	hdrs, err := splitHeader(msg)
	if err != nil {
		return nil, fmt.Errorf("arc: seal: %w", err)
	}
	froms := 0
	for _, h := range hdrs {
		if h.lname == "from" {
			froms++
		}
	}
	if froms != 1 {
		return nil, fmt.Errorf("arc: seal: message has %d From fields, want 1 (RFC 5322 §3.6)", froms)
	}

	s := scanARC(hdrs)
	cv, err := sealCV(s, chain)
	if err != nil {
		return nil, fmt.Errorf("arc: seal: %w", err)
	}
	inst := strconv.Itoa(chain.Instance + 1)
	ts := strconv.FormatInt(now.Unix(), 10)

	aar := "ARC-Authentication-Results: i=" + inst + "; " + authservID + ";"
	if len(parts) == 0 {
		aar += " none"
	}
	aar += strings.Join(parts, ";") + "\r\n"

	names := signedHeaderNames(hdrs)
	amsTags := []arcTag{
		{"i", []string{inst}}, {"a", []string{alg}}, {"c", []string{"relaxed/relaxed"}},
		{"d", []string{domain.ASCII}}, {"s", []string{selector.ASCII}}, {"t", []string{ts}},
		{"h", colonPieces(names)},
		{"bh", []string{base64.StdEncoding.EncodeToString(arcBodyHash(messageBody(hdrs, msg), false))}},
	}
	amsDigest := arcHash(selectHeaders(hdrs, names), foldARCTags("ARC-Message-Signature", amsTags, nil), false)
	amsSig, err := arcSign(key, amsDigest)
	if err != nil {
		return nil, err
	}
	ams := foldARCTags("ARC-Message-Signature", amsTags, amsSig) + "\r\n"

	asTags := []arcTag{
		{"i", []string{inst}}, {"a", []string{alg}}, {"t", []string{ts}}, {"cv", []string{cv}},
		{"d", []string{domain.ASCII}}, {"s", []string{selector.ASCII}},
	}
	var fields []string
	if cv != "fail" {
		for j := 1; j <= chain.Instance; j++ {
			fields = append(fields, s.sets[j].aar.raw, s.sets[j].ams.raw, s.sets[j].as.raw)
		}
	}
	fields = append(fields, aar, ams)
	asSig, err := arcSign(key, arcHash(fields, foldARCTags("ARC-Seal", asTags, nil), false))
	if err != nil {
		return nil, err
	}
	as := foldARCTags("ARC-Seal", asTags, asSig) + "\r\n"

	// What we seal must pass our own limits, or the next hop (and our own verifier)
	// would fail it.
	for _, f := range []string{aar, ams, as} {
		if len(f) > maxARCFieldBytes {
			return nil, fmt.Errorf("arc: seal: new field of %d bytes, at most %d", len(f), maxARCFieldBytes)
		}
	}
	if s.bytes+len(aar)+len(ams)+len(as) > maxARCHeaderBytes {
		return nil, fmt.Errorf("arc: seal: ARC fields would exceed %d bytes", maxARCHeaderBytes)
	}

	out := make([]byte, 0, len(as)+len(ams)+len(aar)+len(msg))
	out = append(out, as...)
	out = append(out, ams...)
	out = append(out, aar...)
	return append(out, msg...), nil
}

// sealCV checks chain against the message's ARC fields and returns the cv= for the
// new seal.
func sealCV(s *arcScan, chain ARCResult) (string, error) {
	switch {
	case chain.Instance >= maxARCInstances || s.count > maxARCFields:
		return "", errARCTooMany
	case chain.Instance < 0:
		return "", fmt.Errorf("chain instance %d", chain.Instance)
	case s.max != chain.Instance:
		return "", fmt.Errorf("message has ARC sets up to i=%d, the chain verdict says i=%d", s.max, chain.Instance)
	}
	if chain.Instance > 0 {
		if strings.EqualFold(s.sets[chain.Instance].asTags["cv"], "fail") {
			return "", fmt.Errorf("i=%d: %w", chain.Instance, errARCChainFailed)
		}
	}
	switch chain.Result {
	case "none":
		if s.count > 0 {
			return "", errors.New("chain verdict is none, but the message has ARC fields")
		}
		return "none", nil
	case "pass":
		if chain.Instance == 0 || s.err != nil || checkARCStructure(s) != nil {
			return "", errors.New("chain verdict is pass, but the message's ARC sets are incomplete")
		}
		return "pass", nil
	}
	return "fail", nil
}

// checkAuthservID accepts a host name-like token: it goes into a header unquoted
// (RFC 8601 §2.5), so nothing that could end the field or the token.
func checkAuthservID(id string) error {
	if id == "" || len(id) > 255 {
		return fmt.Errorf("authserv-id of %d bytes", len(id))
	}
	for _, c := range []byte(id) {
		if c <= ' ' || c == 0x7f || strings.IndexByte(`;"()\`, c) >= 0 {
			return fmt.Errorf("authserv-id %q: character %q not allowed", clip(id), c)
		}
	}
	return nil
}

// splitResults cuts the A-R payload into its resinfo parts at the ";" outside quoted
// strings and comments, so the AAR can be folded one result per line. Line breaks and
// other control characters are refused: they would let the caller's input (often
// derived from the message) write header fields of its own.
func splitResults(results string) ([]string, error) {
	if len(results) > maxARCResultBytes {
		return nil, fmt.Errorf("results of %d bytes, at most %d", len(results), maxARCResultBytes)
	}
	for _, c := range []byte(results) {
		if c < ' ' && c != '\t' || c == 0x7f {
			return nil, fmt.Errorf("results: control character %q", c)
		}
	}
	var parts []string
	add := func(p string) {
		if p = strings.TrimSpace(p); p != "" && p != "none" {
			parts = append(parts, "\r\n\t"+p)
		}
	}
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(results); i++ {
		switch c := results[i]; {
		case c == '\\' && (quoted || depth > 0):
			i++
		case quoted:
			quoted = c != '"'
		case c == '"' && depth == 0:
			quoted = true
		case c == '(':
			depth++
		case c == ')' && depth > 0:
			depth--
		case c == ';' && depth == 0:
			add(results[start:i])
			start = i + 1
		}
	}
	add(results[start:])
	return parts, nil
}

// arcTag is a tag of a new AMS or AS; the value is in pieces between which the field
// may be folded.
type arcTag struct {
	name   string
	pieces []string
}

func colonPieces(names []string) []string {
	pieces := make([]string, len(names))
	for i, n := range names {
		pieces[i] = n
		if i < len(names)-1 {
			pieces[i] += ":"
		}
	}
	return pieces
}

// foldARCTags renders a new AMS or AS, without CRLF, folded near 78 columns, with b=
// last on lines of its own (empty when sig is nil, the form that is signed). The first
// line starts " i=N;", which dkimpy relies on to find the AMS of an instance.
func foldARCTags(name string, tags []arcTag, sig []byte) string {
	var b strings.Builder
	b.WriteString(name + ":")
	col := len(name) + 1
	write := func(s string) {
		b.WriteString(s)
		col += len(s)
	}
	newline := func() {
		b.WriteString("\r\n\t")
		col = 1
	}
	for i, t := range tags {
		first := t.name + "=" + t.pieces[0]
		if i > 0 {
			write(";")
		}
		if i > 0 && col+1+len(first) > arcFoldWidth {
			newline()
		} else {
			write(" ")
		}
		write(first)
		for _, p := range t.pieces[1:] {
			if col+len(p) > arcFoldWidth {
				newline()
			}
			write(p)
		}
	}
	write(";")
	newline()
	write("b=")
	enc := base64.StdEncoding.EncodeToString(sig)
	for enc != "" {
		n := min(len(enc), arcFoldWidth-col)
		write(enc[:n])
		if enc = enc[n:]; enc != "" {
			newline()
		}
	}
	return b.String()
}

// arcSign signs a SHA-256 digest: PKCS #1 v1.5 for RSA, PureEdDSA over the digest for
// Ed25519 (as RFC 8463 §3 does for DKIM).
func arcSign(key DKIMKey, digest []byte) ([]byte, error) {
	opts := crypto.Hash(0)
	if _, ok := key.Private.(*rsa.PrivateKey); ok {
		opts = crypto.SHA256
	}
	sig, err := key.Private.Sign(rand.Reader, digest, opts)
	if err != nil {
		return nil, fmt.Errorf("arc: seal with %s._domainkey.%s: %w", key.Selector, key.Domain, err)
	}
	return sig, nil
}

// ARCSealer seals messages that an alias forwards to another host, with the forwarding
// domain's active DKIM key: an RSA one when there is one (RFC 8617 defines only
// rsa-sha256, and receivers verify RSA), else the first.
type ARCSealer struct {
	Keys func(ctx context.Context, domain string) ([]DKIMKey, error) // the domain's active keys
	Now  func() time.Time
}

// Seal adds an ARC set for domain to msg. A chain that could not be verified because of
// DNS is not sealed over: a seal must state the chain's validity, and "fail" for a DNS
// hiccup would end the chain for every later hop, so the message is forwarded unsealed.
func (s *ARCSealer) Seal(ctx context.Context, domain string, msg []byte, authservID, results string, chain ARCResult) ([]byte, error) {
	if chain.Result == "temperror" {
		return nil, fmt.Errorf("existing ARC chain could not be verified (DNS): %v", chain.Err)
	}
	keys, err := s.Keys(ctx, domain)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("no active DKIM key for %s", domain)
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	key := keys[0]
	for _, k := range keys {
		if k.Algorithm == KeyRSA {
			key = k
			break
		}
	}
	return SealARC(key, msg, authservID, results, chain, now())
}
