package auth

// ARC, the Authenticated Received Chain (RFC 8617). A forwarder that changes messages
// (a mailing list adding a footer, say) breaks their DKIM signatures and so their
// DMARC alignment. With ARC it records what it saw on arrival
// (ARC-Authentication-Results, AAR), signs the message as it sends it on
// (ARC-Message-Signature, AMS, a DKIM signature with an instance number instead of an
// identity) and seals the chain of such sets (ARC-Seal, AS). A receiver that trusts
// the forwarder can then rely on the recorded results instead of the broken ones.
//
// No Go library implements ARC, so this file (the chain's parts), arcverify.go and
// arcseal.go do, on the pieces of dkim.go: header splitting and relaxed header
// canonicalization, the signing keys, and mox's parser for key records
// (dkim.ParseRecord). The body canonicalization and the tag-list parser are written here
// because mox keeps its own unexported and tied to DKIM-Signature fields.
//
// Verification is bounded whatever the message: at most 50 sets (150 ARC fields are
// looked at, no more), at most 16 KiB per ARC field and 256 KiB for all of them, one
// body hash, one key lookup per distinct key, and a 20-second deadline overall.

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
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
