package auth

// Verifying an ARC chain (RFC 8617 §5.2): structure first, then the newest
// ARC-Message-Signature and every ARC-Seal. See arc.go for the limits.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"

	moxdkim "github.com/mjl-/mox/dkim"
	moxdns "github.com/mjl-/mox/dns"

	"github.com/repute-mail/repute/internal/dns"
)

// VerifyARC validates the ARC chain of msg (RFC 8617 §5.2): the sets must be numbered
// 1..N with one of each field per instance, the seals must say cv=none at i=1 and
// cv=pass above, the newest AMS must verify against the message, and every seal must
// verify. Older AMSes are not checked: they are expected to break when a forwarder
// changes the message, which is the point of ARC.
//
// A message without ARC fields gets "none". A DNS failure fetching a key gives
// "temperror" (unless something else already fails the chain); anything else wrong
// gives "fail". Err says why it did not pass.
func VerifyARC(ctx context.Context, r dns.Resolver, msg []byte) ARCResult {
	hdrs, err := splitHeader(msg)
	if err != nil {
		if hasARCField(msg) {
			return ARCResult{Result: "fail", Err: fmt.Errorf("arc: %w", err)}
		}
		return ARCResult{Result: "none"}
	}
	s := scanARC(hdrs)
	if s.count == 0 {
		return ARCResult{Result: "none"}
	}
	res := ARCResult{Result: "fail", Instance: s.max}
	if s.max <= maxARCInstances && s.sets[s.max].asTags != nil {
		if d, err := moxdns.ParseDomain(s.sets[s.max].asTags["d"]); err == nil {
			res.Domain = d.ASCII
		}
	}
	if s.err != nil {
		res.Err = fmt.Errorf("arc: %w", s.err)
		return res
	}
	if err := checkARCStructure(s); err != nil {
		res.Err = fmt.Errorf("arc: %w", err)
		return res
	}

	ctx, cancel := context.WithTimeout(ctx, arcTimeout)
	defer cancel()
	v := &arcVerifier{ctx: ctx, r: r, keys: map[string]arcKey{}}
	// The newest AMS first: it is the one most likely to fail (a forwarder after the
	// last sealer changed the message), and failing it saves the seal lookups.
	var tempErr error
	check := func(what, result string, err error) bool {
		switch result {
		case "pass":
			return true
		case "temperror":
			if tempErr == nil {
				tempErr = fmt.Errorf("arc: %s: %w", what, err)
			}
			return true
		}
		res.Err = fmt.Errorf("arc: %s: %w", what, err)
		return false
	}
	result, err := v.verifyAMS(s.sets[s.max], hdrs, msg)
	if !check(fmt.Sprintf("ARC-Message-Signature i=%d", s.max), result, err) {
		return res
	}
	canon := canonicalSets(s)
	for i := s.max; i >= 1; i-- {
		result, err := v.verifySeal(s, canon, i)
		if !check(fmt.Sprintf("ARC-Seal i=%d", i), result, err) {
			return res
		}
	}
	if tempErr != nil {
		res.Result, res.Err = "temperror", tempErr
		return res
	}
	res.Result = "pass"
	return res
}

// hasARCField tells, for a message whose header cannot be split, whether a line of the
// header looks like an ARC field; such a message fails instead of getting "none", so a
// broken header cannot hide a chain from the verdict.
func hasARCField(msg []byte) bool {
	head := msg
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		head = msg[:i]
	}
	for line := range bytes.SplitSeq(head, []byte("\n")) {
		if len(line) >= 4 && bytes.EqualFold(line[:4], []byte("arc-")) {
			return true
		}
	}
	return false
}

// checkARCStructure checks what needs no keys (RFC 8617 §5.2 steps 2 and 3): complete
// sets 1..N, the newest seal not cv=fail, cv=none at i=1 and cv=pass above, no h= in
// a seal.
func checkARCStructure(s *arcScan) error {
	for i := 1; i <= s.max; i++ {
		set := &s.sets[i]
		var missing []string
		for _, f := range []struct {
			field *headerField
			lname string
		}{{set.aar, arcAAR}, {set.ams, arcAMS}, {set.as, arcAS}} {
			if f.field == nil {
				missing = append(missing, arcFieldName(f.lname))
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("ARC set i=%d lacks %s", i, strings.Join(missing, ", "))
		}
	}
	if strings.EqualFold(s.sets[s.max].asTags["cv"], "fail") {
		return fmt.Errorf("i=%d: %w", s.max, errARCChainFailed)
	}
	for i := 1; i <= s.max; i++ {
		tags := s.sets[i].asTags
		want := "pass"
		if i == 1 {
			want = "none"
		}
		if cv := tags["cv"]; !strings.EqualFold(cv, want) {
			return fmt.Errorf("ARC-Seal i=%d says cv=%q, want %s (RFC 8617 §4.4)", i, clip(cv), want)
		}
		if _, ok := tags["h"]; ok {
			return fmt.Errorf("ARC-Seal i=%d has an h= tag (RFC 8617 §4.1.3)", i)
		}
	}
	return nil
}

// arcSig is the parsed signature part of an AMS or AS.
type arcSig struct {
	alg              string // "rsa-sha256" or "ed25519-sha256"
	domain, selector moxdns.Domain
	b                []byte
}

func parseARCSig(tags map[string]string, required ...string) (arcSig, error) {
	for _, t := range required {
		if _, ok := tags[t]; !ok {
			return arcSig{}, fmt.Errorf("no %s= tag", t)
		}
	}
	var sig arcSig
	switch a := strings.ToLower(tags["a"]); a {
	case "rsa-sha256", "ed25519-sha256":
		sig.alg = a
	case "rsa-sha1":
		return arcSig{}, errSHA1
	default:
		return arcSig{}, fmt.Errorf("unknown algorithm a=%q", clip(a))
	}
	var err error
	if sig.domain, err = moxdns.ParseDomain(tags["d"]); err != nil {
		return arcSig{}, fmt.Errorf("d=%q: %w", clip(tags["d"]), err)
	}
	if sig.selector, err = moxdns.ParseDomainLax(tags["s"]); err != nil {
		return arcSig{}, fmt.Errorf("s=%q: %w", clip(tags["s"]), err)
	}
	if sig.b, err = decodeTagBase64(tags["b"]); err != nil || len(sig.b) == 0 {
		return arcSig{}, fmt.Errorf("b=: bad base64: %v", err)
	}
	return sig, nil
}

// decodeTagBase64 decodes a base64 tag value, which may be folded (RFC 6376 §3.5).
func decodeTagBase64(s string) ([]byte, error) {
	s = strings.Map(func(r rune) rune {
		if strings.ContainsRune(fws, r) {
			return -1
		}
		return r
	}, s)
	return base64.StdEncoding.DecodeString(s)
}

// arcKey is the outcome of one key lookup, kept for the other signatures by the same key.
type arcKey struct {
	key    any // *rsa.PublicKey or ed25519.PublicKey
	result string
	err    error
}

type arcVerifier struct {
	ctx  context.Context
	r    dns.Resolver
	keys map[string]arcKey
}

// key fetches the key record at <s>._domainkey.<d> (RFC 6376 §3.6.2, used by RFC 8617
// §4.1.2 and §4.1.3 unchanged). A missing or unusable record fails the signature; only
// a failure to get an answer is temporary.
func (v *arcVerifier) key(sig arcSig) (any, string, error) {
	name := sig.selector.ASCII + "._domainkey." + sig.domain.ASCII + "."
	if k, ok := v.keys[name]; ok {
		return k.key, k.result, k.err
	}
	k := v.lookup(name)
	v.keys[name] = k
	return k.key, k.result, k.err
}

func (v *arcVerifier) lookup(name string) arcKey {
	txts, _, err := v.r.LookupTXT(v.ctx, name)
	switch {
	case dns.IsNotFound(err):
		return arcKey{result: "fail", err: fmt.Errorf("no key record at %s", name)}
	case err != nil:
		return arcKey{result: "temperror", err: fmt.Errorf("key record at %s: %w", name, err)}
	}
	var rec *moxdkim.Record
	for _, txt := range txts {
		r, isDKIM, err := moxdkim.ParseRecord(txt)
		switch {
		case err != nil && isDKIM:
			return arcKey{result: "fail", err: fmt.Errorf("key record at %s: %w", name, err)}
		case err != nil:
			continue // not a DKIM record at all, e.g. a wildcard TXT (RFC 6376 §3.6.2.2)
		case rec != nil:
			return arcKey{result: "fail", err: fmt.Errorf("more than one key record at %s", name)}
		}
		rec = r
	}
	if rec == nil {
		return arcKey{result: "fail", err: fmt.Errorf("no key record at %s", name)}
	}
	if len(rec.Hashes) > 0 && !containsFold(rec.Hashes, "sha256") {
		return arcKey{result: "fail", err: fmt.Errorf("key at %s does not allow sha256", name)}
	}
	if !rec.ServiceAllowed("email") {
		return arcKey{result: "fail", err: fmt.Errorf("key at %s is not for email", name)}
	}
	switch k := rec.PublicKey.(type) {
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < minRSABits || bits > maxRSABits {
			return arcKey{result: "fail", err: fmt.Errorf("rsa key at %s of %d bits, want %d to %d", name, bits, minRSABits, maxRSABits)}
		}
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return arcKey{result: "fail", err: fmt.Errorf("ed25519 key at %s of %d bytes", name, len(k))}
		}
	default:
		return arcKey{result: "fail", err: fmt.Errorf("key at %s is revoked or unusable", name)}
	}
	return arcKey{key: rec.PublicKey, result: "pass"}
}

func containsFold(l []string, s string) bool {
	for _, e := range l {
		if strings.EqualFold(e, s) {
			return true
		}
	}
	return false
}

// checkSig verifies b= over digest with the signer's key.
func (v *arcVerifier) checkSig(sig arcSig, digest []byte) (string, error) {
	key, result, err := v.key(sig)
	if result != "pass" {
		return result, err
	}
	switch k := key.(type) {
	case *rsa.PublicKey:
		if sig.alg != "rsa-sha256" {
			return "fail", fmt.Errorf("a=%s with an rsa key", sig.alg)
		}
		if err := rsa.VerifyPKCS1v15(k, crypto.SHA256, digest, sig.b); err != nil {
			return "fail", fmt.Errorf("signature does not verify: %w", err)
		}
	case ed25519.PublicKey:
		if sig.alg != "ed25519-sha256" {
			return "fail", fmt.Errorf("a=%s with an ed25519 key", sig.alg)
		}
		if !ed25519.Verify(k, digest, sig.b) {
			return "fail", errors.New("signature does not verify")
		}
	}
	return "pass", nil
}

// verifyAMS checks the newest ARC-Message-Signature like a DKIM signature (RFC 8617
// §4.1.2): header hash over the fields in h= plus the AMS with b= empty, then body hash.
func (v *arcVerifier) verifyAMS(set arcSet, hdrs []headerField, msg []byte) (string, error) {
	tags := set.amsTags
	sig, err := parseARCSig(tags, "a", "b", "bh", "d", "h", "s")
	if err != nil {
		return "fail", err
	}
	if _, ok := tags["l"]; ok {
		return "fail", errLength
	}
	headerSimple, bodySimple, err := parseCanon(tags["c"])
	if err != nil {
		return "fail", err
	}
	bh, err := decodeTagBase64(tags["bh"])
	if err != nil || len(bh) != sha256.Size {
		return "fail", fmt.Errorf("bh=: not a sha256 hash in base64")
	}
	var names []string
	from := false
	for n := range strings.SplitSeq(tags["h"], ":") {
		n = strings.Trim(n, fws)
		switch {
		case n == "" || strings.ContainsAny(n, fws):
			return "fail", fmt.Errorf("bad h= list")
		case strings.EqualFold(n, arcAS):
			// The seal signs the AMS; an AMS signing a seal would make them sign each other.
			return "fail", errors.New("h= signs ARC-Seal (RFC 8617 §4.1.2)")
		}
		from = from || strings.EqualFold(n, "from")
		names = append(names, n)
	}
	if !from {
		return "fail", errors.New("h= does not sign From (RFC 6376 §5.4)")
	}
	digest := arcHash(selectHeaders(hdrs, names), stripBTag(set.ams.raw), headerSimple)
	if result, err := v.checkSig(sig, digest); result != "pass" {
		return result, err
	}
	if got := arcBodyHash(messageBody(hdrs, msg), bodySimple); !bytes.Equal(got, bh) {
		return "fail", errors.New("body hash does not match: the body changed after sealing")
	}
	return "pass", nil
}

// verifySeal checks the ARC-Seal of instance i: relaxed header hash over sets 1..i in
// order AAR, AMS, AS, the last AS with b= empty (RFC 8617 §5.1.1).
func (v *arcVerifier) verifySeal(s *arcScan, canon []arcCanon, i int) (string, error) {
	sig, err := parseARCSig(s.sets[i].asTags, "a", "b", "cv", "d", "s")
	if err != nil {
		return "fail", err
	}
	h := sha256.New()
	for j := 1; j < i; j++ {
		io.WriteString(h, canon[j].aar)
		io.WriteString(h, canon[j].ams)
		io.WriteString(h, canon[j].as)
	}
	io.WriteString(h, canon[i].aar)
	io.WriteString(h, canon[i].ams)
	io.WriteString(h, canon[i].unsigned)
	return v.checkSig(sig, h.Sum(nil))
}

// arcCanon is one set in relaxed canonicalization, each field with its CRLF, and the
// seal also with b= empty and no CRLF. Every seal covers all sets below it, so each
// field is canonicalized once, not once per seal.
type arcCanon struct {
	aar, ams, as, unsigned string
}

func canonicalSets(s *arcScan) []arcCanon {
	canon := make([]arcCanon, s.max+1)
	for i := 1; i <= s.max; i++ {
		set := &s.sets[i]
		canon[i] = arcCanon{
			aar:      relaxedHeader(set.aar.raw) + "\r\n",
			ams:      relaxedHeader(set.ams.raw) + "\r\n",
			as:       relaxedHeader(set.as.raw) + "\r\n",
			unsigned: relaxedHeader(stripBTag(set.as.raw)),
		}
	}
	return canon
}

// parseCanon reads c= (RFC 6376 §3.5); the default is simple/simple.
func parseCanon(c string) (headerSimple, bodySimple bool, err error) {
	if c == "" {
		return true, true, nil
	}
	h, b, ok := strings.Cut(strings.ToLower(c), "/")
	if !ok {
		b = "simple"
	}
	for _, x := range []struct {
		s      string
		simple *bool
	}{{h, &headerSimple}, {b, &bodySimple}} {
		switch x.s {
		case "simple":
			*x.simple = true
		case "relaxed":
		default:
			return false, false, fmt.Errorf("unknown canonicalization c=%q", clip(c))
		}
	}
	return headerSimple, bodySimple, nil
}

// selectHeaders picks the fields named in h= (RFC 6376 §5.4.2): each name takes the
// lowest instance not yet taken; a name without one adds nothing. It indexes the header
// first, so a long h= over a long header costs no more than reading both.
func selectHeaders(hdrs []headerField, names []string) []string {
	want := map[string]bool{}
	for _, n := range names {
		want[strings.ToLower(n)] = true
	}
	pos := map[string][]int{}
	for i, h := range hdrs {
		if want[h.lname] {
			pos[h.lname] = append(pos[h.lname], i)
		}
	}
	var out []string
	for _, n := range names {
		ln := strings.ToLower(n)
		if l := pos[ln]; len(l) > 0 {
			out = append(out, hdrs[l[len(l)-1]].raw)
			pos[ln] = l[:len(l)-1]
		}
	}
	return out
}

// arcHash is the SHA-256 over fields (raw, CRLF-terminated) and then the signature
// field itself without its CRLF, canonicalized simple or relaxed (RFC 6376 §3.7).
func arcHash(fields []string, sigField string, simple bool) []byte {
	h := sha256.New()
	for _, f := range fields {
		if simple {
			io.WriteString(h, f)
		} else {
			io.WriteString(h, relaxedHeader(f))
			io.WriteString(h, "\r\n")
		}
	}
	sigField = strings.TrimSuffix(sigField, "\r\n")
	if simple {
		io.WriteString(h, sigField)
	} else {
		io.WriteString(h, relaxedHeader(sigField))
	}
	return h.Sum(nil)
}

// stripBTag returns the field without its CRLF and with the value of b= removed, the
// form a signature is computed over (RFC 6376 §3.5, b=: "treated as the empty string").
func stripBTag(field string) string {
	field = strings.TrimSuffix(field, "\r\n")
	colon := strings.IndexByte(field, ':')
	if colon < 0 {
		return field
	}
	for pos := colon + 1; pos <= len(field); {
		end := strings.IndexByte(field[pos:], ';')
		if end < 0 {
			end = len(field)
		} else {
			end += pos
		}
		seg := field[pos:end]
		if name, _, ok := strings.Cut(seg, "="); ok && strings.Trim(name, fws) == "b" {
			eq := pos + strings.IndexByte(seg, '=') + 1
			return field[:eq] + field[end:]
		}
		pos = end + 1
	}
	return field
}

// messageBody is what follows the header and its empty line.
func messageBody(hdrs []headerField, msg []byte) []byte {
	n := 0
	for _, h := range hdrs {
		n += len(h.raw)
	}
	return msg[min(n+2, len(msg)):]
}

// arcBodyHash is the SHA-256 of the canonicalized body (RFC 6376 §3.4.3 simple,
// §3.4.4 relaxed). Lines end at CRLF; trailing empty lines are dropped, and an empty
// body is "" relaxed but CRLF simple.
func arcBodyHash(body []byte, simple bool) []byte {
	h := sha256.New()
	crlf := []byte("\r\n")
	var scratch []byte
	empty, wrote := 0, false
	for len(body) > 0 {
		line := body
		if i := bytes.Index(body, crlf); i >= 0 {
			line, body = body[:i], body[i+2:]
		} else {
			body = nil
		}
		if !simple {
			scratch = relaxBodyLine(scratch[:0], line)
			line = scratch
		}
		if len(line) == 0 {
			empty++
			continue
		}
		for ; empty > 0; empty-- {
			h.Write(crlf)
		}
		h.Write(line)
		h.Write(crlf)
		wrote = true
	}
	if simple && !wrote {
		h.Write(crlf)
	}
	return h.Sum(nil)
}

// relaxBodyLine appends line to dst with runs of WSP as one space and none at the end.
func relaxBodyLine(dst, line []byte) []byte {
	ws := false
	for _, c := range line {
		if c == ' ' || c == '\t' {
			ws = true
			continue
		}
		if ws {
			dst = append(dst, ' ')
			ws = false
		}
		dst = append(dst, c)
	}
	return dst
}
