package auth

// ARC, the Authenticated Received Chain (RFC 8617). A forwarder that changes messages
// (a mailing list adding a footer, say) breaks their DKIM signatures and so their
// DMARC alignment. With ARC it records what it saw on arrival
// (ARC-Authentication-Results, AAR), signs the message as it sends it on
// (ARC-Message-Signature, AMS, a DKIM signature with an instance number instead of an
// identity) and seals the chain of such sets (ARC-Seal, AS). A receiver that trusts
// the forwarder can then rely on the recorded results instead of the broken ones.
//
// No Go library implements ARC, so this file does, on the pieces of dkim.go: header
// splitting and relaxed header canonicalization, the signing keys, and mox's parser for
// key records (dkim.ParseRecord). The body canonicalization and the tag-list parser are
// written here because mox keeps its own unexported and tied to DKIM-Signature fields.
//
// Verification is bounded whatever the message: at most 50 sets (150 ARC fields are
// looked at, no more), at most 16 KiB per ARC field and 256 KiB for all of them, one
// body hash, one key lookup per distinct key, and a 20-second deadline overall.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	moxdkim "github.com/mjl-/mox/dkim"
	moxdns "github.com/mjl-/mox/dns"

	"github.com/repute-mail/repute/internal/dns"
)

// Limits. RFC 8617 §4.2.1 allows instances 1 to 50; a chain longer than that is
// invalid, so there is no need to look at more than three fields per instance. The byte
// limits keep the seal hashing (every seal covers all sets below it, so the work grows
// with the square of the chain) small: real ARC fields are well under 4 KiB.
const (
	maxARCInstances   = 50
	maxARCFields      = 3 * maxARCInstances
	maxARCFieldBytes  = 16 << 10
	maxARCHeaderBytes = 256 << 10
	maxARCResultBytes = 8 << 10 // the A-R payload SealARC accepts, so the AAR fits maxARCFieldBytes
	maxRSABits        = 8192    // RFC 8301 §3.2 has verifiers handle 1024 to 4096 bits; beyond 8192 is only cost
	arcTimeout        = 20 * time.Second
	arcFoldWidth      = 78 // RFC 5322 §2.1.1 SHOULD
)

// The ARC header field names, lower-case as headerField.lname has them.
const (
	arcAAR = "arc-authentication-results"
	arcAMS = "arc-message-signature"
	arcAS  = "arc-seal"
)

// fws is the folding white space that may surround tags and values (RFC 6376 §3.2).
const fws = " \t\r\n"

var (
	errARCTooMany     = fmt.Errorf("more than %d ARC sets (RFC 8617 §4.2.1)", maxARCInstances)
	errARCChainFailed = errors.New("the newest ARC-Seal says cv=fail, the chain ended there (RFC 8617 §5.1.2)")
)

// ARCResult is the verdict on a message's ARC chain (RFC 8617 §5.2).
type ARCResult struct {
	Result   string // "none" (no ARC sets), "pass", "fail" (RFC 8601 "arc=" values; DNS trouble: "temperror")
	Instance int    // highest i= seen (0 for none)
	Domain   string // d= of the newest ARC-Seal, if any
	Err      error  // why it did not pass
}

// AuthResults renders the method for Authentication-Results, e.g. "arc=pass (i=2 d=example.org)" or "arc=none".
// The comment names the newest sealer, which is what a reader of the header wants to
// know: whose word the chain rests on.
func (r ARCResult) AuthResults() string {
	s := "arc=" + r.Result
	if r.Instance <= 0 {
		return s
	}
	s += " (i=" + strconv.Itoa(r.Instance)
	if r.Domain != "" && safeDomain(r.Domain) {
		s += " d=" + r.Domain
	}
	return s + ")"
}

// safeDomain reports whether d can go into a header comment as it is. Domain is only
// set from a parsed d= (A-labels), but a comment with a stray ")" or CRLF in it would
// let a sender write into our Authentication-Results, so check again.
func safeDomain(d string) bool {
	for _, c := range []byte(d) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// arcSet is the three fields of one instance, as found in the message.
type arcSet struct {
	aar, ams, as    *headerField
	amsTags, asTags map[string]string
}

// arcScan is what the header holds of ARC: the sets by instance, and the first thing
// wrong with their structure. VerifyARC and SealARC read the header through the same
// scan, so the instance SealARC numbers from is the one VerifyARC reported.
type arcScan struct {
	sets  [maxARCInstances + 1]arcSet // index = instance; 0 is unused
	count int                         // ARC fields looked at (at most maxARCFields+1)
	bytes int                         // their size
	max   int                         // highest i= that parsed, even if out of range
	err   error                       // first structural problem
}

// scanARC collects the ARC fields of hdrs. It stops at the 151st field: no valid chain
// has that many, and the rest would only be work.
func scanARC(hdrs []headerField) *arcScan {
	s := &arcScan{}
	fail := func(err error) {
		if s.err == nil {
			s.err = err
		}
	}
	for i := range hdrs {
		h := &hdrs[i]
		if h.lname != arcAAR && h.lname != arcAMS && h.lname != arcAS {
			continue
		}
		s.count++
		if s.count > maxARCFields {
			s.err = errARCTooMany // whatever else is wrong, this says most
			break
		}
		s.bytes += len(h.raw)
		if len(h.raw) > maxARCFieldBytes {
			fail(fmt.Errorf("%s field of %d bytes, at most %d", arcFieldName(h.lname), len(h.raw), maxARCFieldBytes))
			continue
		}
		if s.bytes > maxARCHeaderBytes {
			fail(fmt.Errorf("ARC fields of more than %d bytes", maxARCHeaderBytes))
			continue
		}
		inst, tags, err := parseARCField(h)
		s.max = max(s.max, inst)
		if err != nil {
			fail(fmt.Errorf("%s: %w", arcFieldName(h.lname), err))
			continue
		}
		if inst > maxARCInstances {
			fail(fmt.Errorf("%s with i=%d: %w", arcFieldName(h.lname), inst, errARCTooMany))
			continue
		}
		set := &s.sets[inst]
		slot := &set.as
		switch h.lname {
		case arcAAR:
			slot = &set.aar
		case arcAMS:
			slot = &set.ams
		}
		if *slot != nil {
			fail(fmt.Errorf("two %s fields with i=%d (RFC 8617 §4.2.1)", arcFieldName(h.lname), inst))
			continue
		}
		*slot = h
		switch h.lname {
		case arcAMS:
			set.amsTags = tags
		case arcAS:
			set.asTags = tags
		}
	}
	return s
}

func arcFieldName(lname string) string {
	switch lname {
	case arcAAR:
		return "ARC-Authentication-Results"
	case arcAMS:
		return "ARC-Message-Signature"
	}
	return "ARC-Seal"
}

// parseARCField returns the instance of an ARC field and, for AMS and AS, its tags.
// The AAR is not a tag list but "i=N; authserv-id; results" (RFC 8617 §4.1.1), so only
// its leading i= is read.
func parseARCField(h *headerField) (inst int, tags map[string]string, err error) {
	_, value, _ := strings.Cut(h.raw, ":")
	value = strings.TrimSuffix(value, "\r\n")
	if h.lname == arcAAR {
		inst, err := aarInstance(value)
		return inst, nil, err
	}
	tags, err = parseTags(value)
	if err != nil {
		return 0, nil, err
	}
	iv, ok := tags["i"]
	if !ok {
		return 0, nil, errors.New("no i= tag")
	}
	inst, err = parseInstance(iv)
	return inst, tags, err
}

func aarInstance(value string) (int, error) {
	v := strings.TrimLeft(value, fws)
	if !strings.HasPrefix(v, "i") {
		return 0, errors.New("does not start with i=")
	}
	v = strings.TrimLeft(v[1:], fws)
	if !strings.HasPrefix(v, "=") {
		return 0, errors.New("does not start with i=")
	}
	v = strings.TrimLeft(v[1:], fws)
	n := 0
	for n < len(v) && v[n] >= '0' && v[n] <= '9' {
		n++
	}
	inst, err := parseInstance(v[:n])
	if err != nil {
		return 0, err
	}
	if rest := strings.TrimLeft(v[n:], fws); !strings.HasPrefix(rest, ";") {
		return inst, errors.New("no \";\" after i=")
	}
	return inst, nil
}

// parseInstance reads an i= value. Values above 50 are returned, for the caller to
// refuse, so a chain that claims to be too long is reported as such.
func parseInstance(s string) (int, error) {
	if s == "" || len(s) > 9 || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("bad instance %q", clip(s))
	}
	n, _ := strconv.Atoi(s) // nine digits always fit
	if n < 1 {
		return 0, fmt.Errorf("instance %d, must be at least 1", n)
	}
	return n, nil
}

// parseTags parses a tag-list (RFC 6376 §3.2): tags separated by ";", a trailing ";"
// allowed, names unique, surrounding FWS dropped.
func parseTags(s string) (map[string]string, error) {
	tags := map[string]string{}
	parts := strings.Split(s, ";")
	for n, p := range parts {
		p = strings.Trim(p, fws)
		if p == "" {
			if n > 0 && n == len(parts)-1 {
				break
			}
			return nil, errors.New("empty tag")
		}
		name, value, ok := strings.Cut(p, "=")
		if !ok {
			return nil, fmt.Errorf("tag %q without \"=\"", clip(p))
		}
		name = strings.TrimRight(name, fws)
		value = strings.TrimLeft(value, fws)
		if !validTagName(name) {
			return nil, fmt.Errorf("bad tag name %q", clip(name))
		}
		for _, c := range []byte(value) {
			if c < 0x21 && !strings.ContainsRune(fws, rune(c)) || c == 0x7f {
				return nil, fmt.Errorf("tag %s: control character in value", name)
			}
		}
		if _, dup := tags[name]; dup {
			return nil, fmt.Errorf("tag %s given twice", name)
		}
		tags[name] = value
	}
	return tags, nil
}

func validTagName(s string) bool {
	if s == "" || !(s[0] >= 'a' && s[0] <= 'z' || s[0] >= 'A' && s[0] <= 'Z') {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// clip shortens attacker-supplied text for error messages.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

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

// SealARC adds one ARC set (ARC-Authentication-Results, ARC-Message-Signature, ARC-Seal) with instance
// chain.Instance+1, signed with key (RSA or Ed25519). authservID is our host name; results is the
// A-R payload after the authserv-id (e.g. "spf=pass smtp.mailfrom=a.test; dkim=pass header.d=a.test; dmarc=pass header.from=a.test").
// cv= comes from chain: none when chain.Result is "none", pass for "pass", fail otherwise.
// The new fields are prepended to msg. Refuse (error) when the chain already has 50 sets, and don't seal
// over a chain whose newest seal already says cv=fail (RFC 8617 §5.1.2) — return an error.
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
