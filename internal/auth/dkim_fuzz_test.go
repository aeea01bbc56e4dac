package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fuzzKey is a fixed Ed25519 key, so the committed seeds can hold valid signatures.
func fuzzKey() DKIMKey {
	seed := sha256.Sum256([]byte("repute dkim fuzz key"))
	return DKIMKey{
		Domain:    "example.org",
		Selector:  "fuzz",
		Algorithm: KeyEd25519,
		Private:   ed25519.NewKeyFromSeed(seed[:]),
	}
}

// FuzzDKIMSignatureHeader feeds arbitrary DKIM-Signature field values (everything
// after "DKIM-Signature:") to VerifyDKIM, with the key for fuzz._domainkey.example.org
// served over DNS. Seeds are in testdata/fuzz/FuzzDKIMSignatureHeader.
func FuzzDKIMSignatureHeader(f *testing.F) {
	key := fuzzKey()
	_, r := startDNS(f, []DKIMKey{key})
	sig, err := SignDKIM([]DKIMKey{key}, []byte(testMessage), testNow)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(sig[len("DKIM-Signature:") : len(sig)-2]))

	valid := []string{"pass", "fail", "neutral", "temperror", "permerror", "policy", "none"}
	f.Fuzz(func(t *testing.T, value string) {
		msg := []byte("DKIM-Signature:" + value + "\r\n" + testMessage)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		results := VerifyDKIM(ctx, r, msg)
		if len(results) == 0 {
			t.Fatal("no results")
		}
		for _, res := range results {
			if !slices.Contains(valid, res.Result) {
				t.Fatalf("result %q", res.Result)
			}
			if res.Result == "pass" && (res.Domain != "example.org" || res.Selector != "fuzz" || res.Err != nil) {
				t.Fatalf("pass without the key: %s (%v)", res.AuthResults(), res.Err)
			}
			if res.Result != "pass" && res.Result != "none" && res.Err == nil {
				t.Fatalf("%s without an error", res.AuthResults())
			}
			_ = res.AuthResults()
		}
	})
}

// TestDKIMFuzzSeeds pins the verdict on each committed seed.
func TestDKIMFuzzSeeds(t *testing.T) {
	key := fuzzKey()
	_, r := startDNS(t, []DKIMKey{key})
	want := map[string]string{
		"valid":        "pass",
		"bad-sig":      "fail",
		"bad-bodyhash": "fail",
		"rsa-sha1":     "permerror",
		"length":       "policy",
		"expired":      "permerror",
		"other-domain": "permerror",
		"empty":        "permerror",
		"garbage":      "permerror",
		"unknown-alg":  "permerror",
		"copied":       "permerror",
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzDKIMSignatureHeader")
	for name, result := range want {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		lit := strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(strings.SplitN(string(data), "\n", 2)[1]), "string("), ")")
		value, err := strconv.Unquote(lit)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := VerifyDKIM(context.Background(), r, []byte("DKIM-Signature:"+value+"\r\n"+testMessage))
		if len(got) != 1 || got[0].Result != result {
			t.Errorf("%s: %v, want %s", name, got, result)
		}
	}
}
