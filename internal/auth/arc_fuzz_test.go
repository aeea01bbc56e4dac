package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/repute-mail/repute/internal/dns"
)

// arcFuzzKeys are fixed Ed25519 keys (fuzz._domainkey.example.org, the one of the DKIM
// fuzz target, and hop._domainkey.lists.example.net), so seeds hold valid seals and
// each execution costs microseconds.
func arcFuzzKeys() []DKIMKey {
	seed := sha256.Sum256([]byte("repute arc fuzz hop key"))
	return []DKIMKey{fuzzKey(), {
		Domain:    "lists.example.net",
		Selector:  "hop",
		Algorithm: KeyEd25519,
		Private:   ed25519.NewKeyFromSeed(seed[:]),
	}}
}

// arcFuzzResolver answers the keys' records from memory: no sockets, so the fuzzer
// spends its time in the parser and not in the network stack.
func arcFuzzResolver(keys []DKIMKey) dns.Resolver {
	txt := map[string][]string{}
	for _, k := range keys {
		name, record := k.DNSRecord()
		txt[name] = []string{record}
	}
	return dns.Fake{TXT: txt}
}

// arcFuzzSeeds are valid chains of one and two sets, a chain ended with cv=fail, and
// the unsealed message; the committed seeds in testdata/fuzz/FuzzARC add malformed ones.
func arcFuzzSeeds(t testing.TB, keys []DKIMKey, r dns.Resolver) [][]byte {
	t.Helper()
	sealOn := func(key DKIMKey, msg []byte, chain ARCResult) []byte {
		out, err := SealARC(key, msg, "mx."+key.Domain, "spf=pass smtp.mailfrom=example.org; dkim=pass header.d=example.org", chain, testNow)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	m0 := []byte(testMessage)
	m1 := sealOn(keys[0], m0, ARCResult{Result: "none"})
	m2 := sealOn(keys[1], forward(m1), VerifyARC(context.Background(), r, m1))
	mf := sealOn(keys[1], forward(m1), ARCResult{Result: "fail", Instance: 1})
	return [][]byte{m0, m1, m2, mf}
}

// FuzzARC runs VerifyARC on arbitrary messages. Besides not panicking, the verdict must
// be one of the four, carry an error exactly when it is not pass or none, and render
// as a single-line method. And sealing must be consistent with verifying: where the
// chain passed (or there was none) and SealARC accepts the message, the sealed message
// must pass with one more instance; over a failed chain it must fail.
func FuzzARC(f *testing.F) {
	keys := arcFuzzKeys()
	r := arcFuzzResolver(keys)
	for _, seed := range arcFuzzSeeds(f, keys, r) {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		res := VerifyARC(ctx, r, msg)
		switch res.Result {
		case "none", "pass", "fail", "temperror":
		default:
			t.Fatalf("result %q", res.Result)
		}
		if (res.Result == "pass" || res.Result == "none") != (res.Err == nil) {
			t.Fatalf("%s with error %v", res.Result, res.Err)
		}
		if res.Result == "none" && (res.Instance != 0 || res.Domain != "") {
			t.Fatalf("none with instance %d, d=%q", res.Instance, res.Domain)
		}
		if res.Result == "pass" && (res.Instance < 1 || res.Instance > maxARCInstances ||
			res.Domain != "example.org" && res.Domain != "lists.example.net") {
			t.Fatalf("pass: %s", res.AuthResults())
		}
		if ar := res.AuthResults(); strings.ContainsAny(ar, "\r\n;") || strings.Count(ar, "(") > 1 || strings.Count(ar, ")") > 1 {
			t.Fatalf("AuthResults %q", ar)
		}

		sealed, err := SealARC(keys[1], msg, "mx.lists.example.net", "spf=pass smtp.mailfrom=example.org", res, testNow)
		if err != nil {
			return
		}
		again := VerifyARC(ctx, r, sealed)
		want := "fail"
		if res.Result == "pass" || res.Result == "none" {
			want = "pass"
		}
		if again.Result != want || want == "pass" && again.Instance != res.Instance+1 {
			t.Fatalf("sealed over %s: %s (%v), want %s", res.AuthResults(), again.AuthResults(), again.Err, want)
		}
	})
}

// TestARCFuzzSeeds pins the verdict on each committed seed.
func TestARCFuzzSeeds(t *testing.T) {
	keys := arcFuzzKeys()
	r := arcFuzzResolver(keys)
	want := map[string]string{
		"garbage-tags":   "fail",
		"instance-51":    "fail",
		"too-many":       "fail",
		"no-empty-line":  "fail",
		"lf-only":        "fail",
		"incomplete-set": "fail",
		"not-arc":        "none",
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzARC")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(want) {
		t.Errorf("%d seeds in %s, %d pinned here", len(entries), dir, len(want))
	}
	for name, result := range want {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		lit := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(strings.SplitN(string(data), "\n", 2)[1]), "[]byte("), ")")
		msg, err := strconv.Unquote(lit)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := VerifyARC(context.Background(), r, []byte(msg)); got.Result != result {
			t.Errorf("%s: %s (%v), want %s", name, got.AuthResults(), got.Err, result)
		}
	}
	// The generated seeds: none, pass, pass, fail.
	for i, seed := range arcFuzzSeeds(t, keys, r) {
		if got, want := VerifyARC(context.Background(), r, seed).Result, []string{"none", "pass", "pass", "fail"}[i]; got != want {
			t.Errorf("generated seed %d: %s, want %s", i, got, want)
		}
	}
}
