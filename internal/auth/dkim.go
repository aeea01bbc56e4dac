package auth

// DKIM signing and verification (RFC 6376, with Ed25519 keys from RFC 8463 and the
// algorithm rules of RFC 8301), on mox's dkim package.
//
// mox computes the body hash, parses signatures and key records, and verifies. Signing
// takes the body hash from mox but builds and signs the header itself, because mox
// stamps t= from the wall clock and Repute passes its clock in.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	moxdkim "github.com/mjl-/mox/dkim"
	moxdns "github.com/mjl-/mox/dns"
	"github.com/mjl-/mox/smtp"

	"github.com/repute-mail/repute/internal/dns"
)

// KeyAlgorithm is the kind of a DKIM key: "rsa" (2048 bits) or "ed25519" (RFC 8463).
type KeyAlgorithm string

// The key algorithms Repute generates and signs with.
const (
	KeyRSA     KeyAlgorithm = "rsa"
	KeyEd25519 KeyAlgorithm = "ed25519"
)

// rsaBits is the size of generated RSA keys; RFC 8301 §3.2 requires at least 1024 and
// recommends 2048. Parsed keys below minRSABits are refused.
const (
	rsaBits    = 2048
	minRSABits = 1024
)

// maxDKIMSignatures bounds the signatures VerifyDKIM checks per message; each costs a
// DNS lookup and a hash over the message (RFC 6376 §8.4, resource exhaustion).
const maxDKIMSignatures = 10

// dkimSignedHeaders are the header fields SignDKIM signs when present (RFC 6376 §5.4.1).
// From is also signed once more than it occurs ("oversigned"), so a second From added
// in transit breaks the signature (RFC 6376 §8.15).
var dkimSignedHeaders = []string{
	"From", "To", "Cc", "Subject", "Date", "Message-ID", "Reply-To", "In-Reply-To",
	"References", "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
	"List-Unsubscribe", "List-Unsubscribe-Post",
}

// DKIMKey is a signing key of a domain, published at <Selector>._domainkey.<Domain>.
type DKIMKey struct {
	Domain    string
	Selector  string // dated, e.g. "r2026a" for RSA, "e2026a" for Ed25519
	Algorithm KeyAlgorithm
	Private   crypto.Signer // *rsa.PrivateKey or ed25519.PrivateKey
}

// GenerateDKIMKey makes a new key for domain. The selector is dated so keys can be
// rotated without reusing a name: "r" or "e", the year, and a letter for the month
// ("a" for January to "l" for December), e.g. "e2026a".
func GenerateDKIMKey(domain string, alg KeyAlgorithm, now time.Time) (DKIMKey, error) {
	k := DKIMKey{Domain: domain, Algorithm: alg}
	var prefix string
	switch alg {
	case KeyRSA:
		priv, err := rsa.GenerateKey(rand.Reader, rsaBits)
		if err != nil {
			return DKIMKey{}, fmt.Errorf("dkim: generate rsa key: %w", err)
		}
		k.Private, prefix = priv, "r"
	case KeyEd25519:
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return DKIMKey{}, fmt.Errorf("dkim: generate ed25519 key: %w", err)
		}
		k.Private, prefix = priv, "e"
	default:
		return DKIMKey{}, fmt.Errorf("dkim: unknown key algorithm %q", alg)
	}
	k.Selector = fmt.Sprintf("%s%d%c", prefix, now.Year(), 'a'+rune(now.Month()-1))
	return k, nil
}

// MarshalPrivate returns the private key as PKCS#8 PEM ("PRIVATE KEY").
func (k DKIMKey) MarshalPrivate() ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k.Private)
	if err != nil {
		return nil, fmt.Errorf("dkim: marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseDKIMKey reads a PKCS#8 PEM private key (as written by MarshalPrivate) for
// selector and domain; the algorithm follows from the key.
func ParseDKIMKey(domain, selector string, pemBytes []byte) (DKIMKey, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "PRIVATE KEY" {
		return DKIMKey{}, errors.New("dkim: no PKCS#8 \"PRIVATE KEY\" PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return DKIMKey{}, fmt.Errorf("dkim: parse private key: %w", err)
	}
	k := DKIMKey{Domain: domain, Selector: selector}
	switch key := key.(type) {
	case *rsa.PrivateKey:
		if key.N.BitLen() < minRSABits {
			return DKIMKey{}, fmt.Errorf("dkim: rsa key of %d bits, need at least %d (RFC 8301 §3.2)", key.N.BitLen(), minRSABits)
		}
		k.Algorithm, k.Private = KeyRSA, key
	case ed25519.PrivateKey:
		k.Algorithm, k.Private = KeyEd25519, key
	default:
		return DKIMKey{}, fmt.Errorf("dkim: unsupported private key type %T", key)
	}
	return k, nil
}

// DNSRecord returns the absolute name and the TXT value that publish the public key
// (RFC 6376 §3.6.1), e.g. "r2026a._domainkey.example.org." and "v=DKIM1; k=rsa; p=...".
func (k DKIMKey) DNSRecord() (name, txt string) {
	name = k.Selector + "._domainkey." + strings.TrimSuffix(k.Domain, ".") + "."
	var pub []byte
	switch key := k.Private.Public().(type) {
	case *rsa.PublicKey:
		pub, _ = x509.MarshalPKIXPublicKey(key) // cannot fail for an RSA key
	case ed25519.PublicKey:
		pub = key // RFC 8463 §4: the raw 32 bytes, not SubjectPublicKeyInfo
	}
	return name, fmt.Sprintf("v=DKIM1; k=%s; p=%s", k.Algorithm, base64.StdEncoding.EncodeToString(pub))
}

// ZoneLine returns the record as a zone-file line, the TXT value split into quoted
// character-strings of at most 255 bytes (RFC 1035 §3.3.14; RFC 6376 §3.6.2.2 says
// verifiers concatenate them).
func (k DKIMKey) ZoneLine() string {
	name, txt := k.DNSRecord()
	var b strings.Builder
	b.WriteString(name + " IN TXT")
	for len(txt) > 0 {
		n := min(len(txt), 255)
		b.WriteString(` "` + txt[:n] + `"`)
		txt = txt[n:]
	}
	return b.String()
}

// SignDKIM returns one DKIM-Signature header field per key, CRLF-terminated, to be
// prepended to msg (which has CRLF line endings). Signatures are relaxed/relaxed with
// SHA-256 and carry t= from now.
func SignDKIM(keys []DKIMKey, msg []byte, now time.Time) ([]byte, error) {
	hdrs, err := splitHeader(msg)
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, nil
	}
	bh, err := bodyHash(keys[0], msg)
	if err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	var out bytes.Buffer
	for _, k := range keys {
		h, err := signOne(k, hdrs, bh, now)
		if err != nil {
			return nil, fmt.Errorf("dkim: sign with %s._domainkey.%s: %w", k.Selector, k.Domain, err)
		}
		out.WriteString(h)
	}
	return out.Bytes(), nil
}

func signOne(k DKIMKey, hdrs []headerField, bh []byte, now time.Time) (string, error) {
	domain, selector, err := k.names()
	if err != nil {
		return "", err
	}
	sig := &moxdkim.Sig{
		Version:          1,
		AlgorithmHash:    "sha256",
		BodyHash:         bh,
		Domain:           domain,
		Selector:         selector,
		Canonicalization: "relaxed/relaxed",
		Length:           -1,
		SignTime:         now.Unix(),
		ExpireTime:       -1,
		SignedHeaders:    signedHeaderNames(hdrs),
	}
	switch k.Private.(type) {
	case *rsa.PrivateKey:
		sig.AlgorithmSign = "rsa"
	case ed25519.PrivateKey:
		sig.AlgorithmSign = "ed25519"
	default:
		return "", fmt.Errorf("unsupported private key type %T", k.Private)
	}
	unsigned, err := sig.Header()
	if err != nil {
		return "", err
	}
	digest := headerHash(hdrs, sig.SignedHeaders, strings.TrimSuffix(unsigned, "\r\n"))
	opts := crypto.Hash(0) // PureEdDSA over the SHA-256 digest (RFC 8463 §3)
	if sig.AlgorithmSign == "rsa" {
		opts = crypto.SHA256
	}
	sig.Signature, err = k.Private.Sign(rand.Reader, digest, opts)
	if err != nil {
		return "", err
	}
	return sig.Header()
}

func (k DKIMKey) names() (domain, selector moxdns.Domain, err error) {
	domain, err = moxdns.ParseDomain(strings.TrimSuffix(k.Domain, "."))
	if err != nil {
		return domain, selector, fmt.Errorf("domain: %w", err)
	}
	selector, err = moxdns.ParseDomain(k.Selector)
	if err != nil {
		return domain, selector, fmt.Errorf("selector: %w", err)
	}
	return domain, selector, nil
}

// bodyHash has mox compute the relaxed SHA-256 body hash (RFC 6376 §3.7), the same for
// every key, by signing with k once, and takes bh= from that signature. mox also checks
// there is exactly one From field (RFC 6376 §5.4).
func bodyHash(k DKIMKey, msg []byte) ([]byte, error) {
	domain, selector, err := k.names()
	if err != nil {
		return nil, err
	}
	sel := moxdkim.Selector{
		Hash:          "sha256",
		HeaderRelaxed: true,
		BodyRelaxed:   true,
		Headers:       []string{"From"},
		PrivateKey:    k.Private,
		Domain:        selector,
	}
	h, err := moxdkim.Sign(context.Background(), discardLog, smtp.Localpart(""), domain, []moxdkim.Selector{sel}, true, bytes.NewReader(msg))
	if err != nil {
		return nil, err
	}
	_, rest, ok := strings.Cut(strings.NewReplacer("\r\n", "", " ", "", "\t", "").Replace(h), ";bh=")
	if !ok {
		return nil, errors.New("no bh= in signature")
	}
	v, _, _ := strings.Cut(rest, ";")
	return base64.StdEncoding.DecodeString(v)
}

var discardLog = slog.New(slog.DiscardHandler)

// headerField is one field of the message header, raw, including its CRLF.
type headerField struct {
	lname string // lower-case name
	raw   string
}

// splitHeader cuts the header of msg into fields, continuation lines included.
func splitHeader(msg []byte) ([]headerField, error) {
	var fields []headerField
	rest := string(msg)
	for rest != "" && !strings.HasPrefix(rest, "\r\n") {
		end := 0
		for {
			i := strings.Index(rest[end:], "\r\n")
			if i < 0 {
				return nil, errors.New("dkim: message header does not end with an empty line")
			}
			end += i + 2
			if end >= len(rest) || (rest[end] != ' ' && rest[end] != '\t') {
				break
			}
		}
		raw := rest[:end]
		name, _, ok := strings.Cut(raw, ":")
		name = strings.TrimRight(name, " \t") // RFC 5322 §4.5 allows space before the colon
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return nil, fmt.Errorf("dkim: malformed header line %q", strings.TrimSuffix(raw, "\r\n"))
		}
		fields = append(fields, headerField{strings.ToLower(name), raw})
		rest = rest[end:]
	}
	return fields, nil
}

// signedHeaderNames lists each field of dkimSignedHeaders once per occurrence in the
// message, and From once more.
func signedHeaderNames(hdrs []headerField) []string {
	var names []string
	for _, name := range dkimSignedHeaders {
		n := 0
		for _, h := range hdrs {
			if h.lname == strings.ToLower(name) {
				n++
			}
		}
		if name == "From" {
			n++
		}
		for range n {
			names = append(names, name)
		}
	}
	return names
}

// headerHash is the SHA-256 over the signed fields and the signature field itself with
// an empty b=, in relaxed canonicalization (RFC 6376 §3.7, §5.4.2: instances of a
// field are taken from the bottom up; a name with no instance left adds nothing).
func headerHash(hdrs []headerField, names []string, sigField string) []byte {
	h := sha256.New()
	used := make([]bool, len(hdrs))
	for _, name := range names {
		lname := strings.ToLower(name)
		for i := len(hdrs) - 1; i >= 0; i-- {
			if !used[i] && hdrs[i].lname == lname {
				used[i] = true
				h.Write([]byte(relaxedHeader(hdrs[i].raw) + "\r\n"))
				break
			}
		}
	}
	h.Write([]byte(relaxedHeader(sigField)))
	return h.Sum(nil)
}

// relaxedHeader canonicalizes one field without its CRLF (RFC 6376 §3.4.2): lower-case
// name, unfolded, runs of whitespace as one space, none around the colon or at the end.
func relaxedHeader(raw string) string {
	name, value, _ := strings.Cut(raw, ":")
	value = strings.ReplaceAll(value, "\r\n", "")
	value = strings.Join(strings.FieldsFunc(value, func(r rune) bool { return r == ' ' || r == '\t' }), " ")
	return strings.ToLower(strings.TrimRight(name, " \t")) + ":" + value
}

// DKIMResult is the verdict on one DKIM-Signature field.
type DKIMResult struct {
	Result    string // RFC 8601 §2.7.1: "pass", "fail", "neutral", "temperror", "permerror", "policy", "none"
	Domain    string // d=
	Selector  string // s=
	Algorithm string // a=, e.g. "rsa-sha256"
	Err       error  // why it did not pass
}

var (
	errTooManySignatures = fmt.Errorf("too many signatures (more than %d)", maxDKIMSignatures)
	errSHA1              = errors.New("rsa-sha1 is not accepted (RFC 8301 §3.1)")
	errLength            = errors.New("l= body length limits are not accepted (RFC 6376 §8.2)")
)

// VerifyDKIM verifies every DKIM-Signature field of msg, up to 10; any further ones
// get "permerror" (too many signatures). A message without signatures gets one result
// "none". DNS failures give "temperror" (RFC 6376 §6.1.2), a missing key record
// "permerror"; only a signature that does not match the message "fail"s.
func VerifyDKIM(ctx context.Context, r dns.Resolver, msg []byte) []DKIMResult {
	checked := 0
	policy := func(sig *moxdkim.Sig) error {
		checked++
		switch {
		case checked > maxDKIMSignatures:
			return errTooManySignatures
		case strings.EqualFold(sig.AlgorithmHash, "sha1"):
			return errSHA1
		case sig.Length >= 0:
			return errLength
		}
		return nil
	}
	// A key in test mode (t=y) turns anything but a pass into "none" (RFC 6376 §3.6.1).
	results, err := moxdkim.Verify(ctx, discardLog, r, true, policy, bytes.NewReader(msg), false)
	if err != nil {
		if !bytes.Contains(bytes.ToLower(msg), []byte("dkim-signature")) {
			return []DKIMResult{{Result: "none"}}
		}
		return []DKIMResult{{Result: "permerror", Err: err}}
	}
	if len(results) == 0 {
		return []DKIMResult{{Result: "none"}}
	}
	out := make([]DKIMResult, len(results))
	for i, res := range results {
		d := DKIMResult{Result: string(res.Status), Err: res.Err}
		if res.Sig != nil {
			d.Domain = res.Sig.Domain.ASCII
			d.Selector = res.Sig.Selector.ASCII
			d.Algorithm = strings.ToLower(res.Sig.Algorithm())
		}
		switch {
		case i >= maxDKIMSignatures:
			d.Result, d.Err = "permerror", errTooManySignatures
		case errors.Is(res.Err, errSHA1):
			d.Result = "permerror"
		case res.Status == moxdkim.StatusPass:
			d.Err = nil
		}
		out[i] = d
	}
	return out
}

// AuthResults is the result as a method of an Authentication-Results field (RFC 8601
// §2.7.1), e.g. "dkim=pass header.d=example.org header.s=r2026a header.a=rsa-sha256".
func (r DKIMResult) AuthResults() string {
	s := "dkim=" + r.Result
	if r.Domain != "" {
		s += " header.d=" + r.Domain
	}
	if r.Selector != "" {
		s += " header.s=" + r.Selector
	}
	if r.Algorithm != "" {
		s += " header.a=" + r.Algorithm
	}
	return s
}
