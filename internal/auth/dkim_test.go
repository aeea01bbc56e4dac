package auth

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rsa"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	msgauth "github.com/emersion/go-msgauth/dkim"
	mdns "github.com/miekg/dns"

	"github.com/repute-mail/repute/internal/dns"
	"github.com/repute-mail/repute/internal/dns/dnstest"
)

var testNow = time.Date(2026, time.January, 15, 10, 0, 0, 0, time.UTC)

const testMessage = "From: Alice <alice@example.org>\r\n" +
	"To: Bob <bob@example.net>\r\n" +
	"Subject: Quarterly  report\r\n" +
	"\tand more\r\n" +
	"Date: Thu, 15 Jan 2026 10:00:00 +0000\r\n" +
	"Message-ID: <1@example.org>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"List-Unsubscribe: <https://example.org/u/1>\r\n" +
	"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" +
	"X-Unsigned: whatever\r\n" +
	"\r\n" +
	"Hello Bob,  \r\n" +
	"\r\n" +
	"the numbers are in.\r\n" +
	"\r\n\r\n"

// testKeys generates one RSA and one Ed25519 key for example.org, once per test binary.
var testKeys = func() func(t testing.TB) []DKIMKey {
	var keys []DKIMKey
	return func(t testing.TB) []DKIMKey {
		t.Helper()
		if keys == nil {
			for _, alg := range []KeyAlgorithm{KeyRSA, KeyEd25519} {
				k, err := GenerateDKIMKey("example.org", alg, testNow)
				if err != nil {
					t.Fatal(err)
				}
				keys = append(keys, k)
			}
		}
		return keys
	}
}()

func signTestMessage(t testing.TB, keys []DKIMKey, msg string) []byte {
	t.Helper()
	sigs, err := SignDKIM(keys, []byte(msg), testNow)
	if err != nil {
		t.Fatalf("SignDKIM: %v", err)
	}
	return append(sigs, msg...)
}

// startDNS serves the keys' records and returns a resolver that queries the server.
func startDNS(t testing.TB, keys []DKIMKey, extra ...string) (*dnstest.Server, dns.Resolver) {
	t.Helper()
	var zone []string
	for _, k := range keys {
		zone = append(zone, k.ZoneLine())
	}
	return spfTestServer(t, append(zone, extra...)...)
}

func wantResults(t *testing.T, got []DKIMResult, want ...string) {
	t.Helper()
	var results []string
	for _, r := range got {
		results = append(results, r.Result)
	}
	if strings.Join(results, ",") != strings.Join(want, ",") {
		for _, r := range got {
			t.Logf("%s: %v", r.AuthResults(), r.Err)
		}
		t.Fatalf("results %v, want %v", results, want)
	}
}

func TestDKIMSignVerify(t *testing.T) {
	keys := testKeys(t)
	msg := signTestMessage(t, keys, testMessage)
	_, r := startDNS(t, keys)

	got := VerifyDKIM(context.Background(), r, msg)
	wantResults(t, got, "pass", "pass")
	want := []string{
		"dkim=pass header.d=example.org header.s=r2026a header.a=rsa-sha256",
		"dkim=pass header.d=example.org header.s=e2026a header.a=ed25519-sha256",
	}
	for i, res := range got {
		if res.AuthResults() != want[i] || res.Err != nil {
			t.Errorf("result %d: %q (%v), want %q", i, res.AuthResults(), res.Err, want[i])
		}
	}
	// h= is given whole: present fields once each, From once more, nothing else (no
	// X-Unsigned, no absent Cc).
	head := string(msg[:bytes.Index(msg, []byte("\r\nFrom: Alice"))])
	for _, want := range []string{"t=1768471200;", "c=relaxed/relaxed;", "h=From:From:To:Subject:Date:Message-ID:MIME-Version:Content-Type:List-Unsubscribe:List-Unsubscribe-Post;"} {
		if !strings.Contains(strings.NewReplacer("\r\n", "", " ", "", "\t", "").Replace(head), strings.ReplaceAll(want, " ", "")) {
			t.Errorf("signatures lack %q:\n%s", want, head)
		}
	}
}

// TestDKIMGoMsgauth checks our signatures with an independent implementation.
func TestDKIMGoMsgauth(t *testing.T) {
	keys := testKeys(t)
	msg := signTestMessage(t, keys, testMessage)
	records := map[string]string{}
	for _, k := range keys {
		name, txt := k.DNSRecord()
		records[strings.TrimSuffix(name, ".")] = txt
	}
	opts := &msgauth.VerifyOptions{LookupTXT: func(name string) ([]string, error) {
		if txt, ok := records[strings.TrimSuffix(name, ".")]; ok {
			return []string{txt}, nil
		}
		return nil, errors.New("no such record: " + name)
	}}
	verifs, err := msgauth.VerifyWithOptions(bytes.NewReader(msg), opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(verifs) != 2 {
		t.Fatalf("%d verifications, want 2", len(verifs))
	}
	for _, v := range verifs {
		if v.Err != nil {
			t.Errorf("go-msgauth: %s: %v", v.Domain, v.Err)
		}
	}
}

// TestDKIMPython checks our signatures with Debian's python3-dkim (dkimpy).
func TestDKIMPython(t *testing.T) {
	needPython(t, "dkim, nacl")
	keys := testKeys(t)
	msg := signTestMessage(t, keys, testMessage)
	recJSON := keyRecordsJSON(t, keys)
	const script = `
import dkim, json, sys
records = json.loads(sys.argv[1])
def dnsfunc(name, timeout=5):
    n = name.decode()
    if not n.endswith("."):
        n += "."
    return records.get(n, "").encode() or None
msg = sys.stdin.buffer.read()
d = dkim.DKIM(msg)
for i in range(2):
    print("pass" if d.verify(idx=i, dnsfunc=dnsfunc) else "fail")
`
	cmd := exec.Command(python, "-c", script, recJSON)
	cmd.Stdin = bytes.NewReader(msg)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("python3-dkim: %v\n%s", err, out)
	}
	if got := strings.Fields(string(out)); strings.Join(got, ",") != "pass,pass" {
		t.Fatalf("python3-dkim says %q, want pass for both signatures", out)
	}
}

// TestDKIMRFC8463 verifies the example of RFC 8463 Appendix A.
func TestDKIMRFC8463(t *testing.T) {
	zone, err := os.ReadFile(filepath.Join("testdata", "dkim", "rfc8463.zone"))
	if err != nil {
		t.Fatal(err)
	}
	var records []string
	for _, line := range strings.Split(string(zone), "\n") {
		if line != "" && !strings.HasPrefix(line, ";") {
			records = append(records, line)
		}
	}
	_, r := startDNS(t, nil, records...)
	eml, err := os.ReadFile(filepath.Join("testdata", "dkim", "rfc8463.eml"))
	if err != nil {
		t.Fatal(err)
	}
	msg := bytes.ReplaceAll(eml, []byte("\n"), []byte("\r\n"))
	got := VerifyDKIM(context.Background(), r, msg)
	wantResults(t, got, "pass", "pass")
	if a := got[0].AuthResults(); a != "dkim=pass header.d=football.example.com header.s=brisbane header.a=ed25519-sha256" {
		t.Errorf("AuthResults %q", a)
	}
}

func TestDKIMFailures(t *testing.T) {
	keys := testKeys(t)
	msg := string(signTestMessage(t, keys, testMessage))
	srv, r := startDNS(t, keys)
	ctx := context.Background()

	t.Run("body", func(t *testing.T) {
		got := VerifyDKIM(ctx, r, []byte(strings.Replace(msg, "numbers are in", "numbers are out", 1)))
		wantResults(t, got, "fail", "fail")
	})
	t.Run("signed header", func(t *testing.T) {
		got := VerifyDKIM(ctx, r, []byte(strings.Replace(msg, "Subject: Quarterly", "Subject: Yearly", 1)))
		wantResults(t, got, "fail", "fail")
	})
	t.Run("added From", func(t *testing.T) {
		got := VerifyDKIM(ctx, r, []byte(strings.Replace(msg, "To: Bob", "From: Mallory <m@example.org>\r\nTo: Bob", 1)))
		wantResults(t, got, "fail", "fail")
	})
	t.Run("unsigned header and whitespace", func(t *testing.T) {
		m := strings.Replace(msg, "X-Unsigned: whatever", "X-Unsigned: changed", 1)
		m = strings.Replace(m, "Subject: Quarterly  report", "Subject:  Quarterly report ", 1)
		wantResults(t, VerifyDKIM(ctx, r, []byte(m)), "pass", "pass")
	})
	t.Run("no key record", func(t *testing.T) {
		other := strings.ReplaceAll(msg, "s=e2026a", "s=e1999a")
		got := VerifyDKIM(ctx, r, []byte(other))
		wantResults(t, got, "pass", "permerror")
	})
	t.Run("servfail", func(t *testing.T) {
		name, _ := keys[0].DNSRecord()
		srv.Fail(name, mdns.RcodeServerFailure)
		defer srv.Fail(name, mdns.RcodeSuccess)
		wantResults(t, VerifyDKIM(ctx, r, []byte(msg)), "temperror", "pass")
	})
	t.Run("unsigned", func(t *testing.T) {
		wantResults(t, VerifyDKIM(ctx, r, []byte(testMessage)), "none")
	})
	t.Run("too many", func(t *testing.T) {
		m := msg
		for range 5 {
			sigs, err := SignDKIM(keys, []byte(m), testNow)
			if err != nil {
				t.Fatal(err)
			}
			m = string(sigs) + m
		}
		got := VerifyDKIM(ctx, r, []byte(m))
		want := strings.Split(strings.Repeat("pass,", 10)+"permerror,permerror", ",")
		wantResults(t, got, want...)
		if !errors.Is(got[11].Err, errTooManySignatures) {
			t.Errorf("error %v", got[11].Err)
		}
	})
}

func TestDKIMKeyFormats(t *testing.T) {
	for _, k := range testKeys(t) {
		t.Run(string(k.Algorithm), func(t *testing.T) {
			pemBytes, err := k.MarshalPrivate()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasPrefix(pemBytes, []byte("-----BEGIN PRIVATE KEY-----\n")) {
				t.Errorf("PEM starts %q", pemBytes[:30])
			}
			back, err := ParseDKIMKey(k.Domain, k.Selector, pemBytes)
			if err != nil {
				t.Fatal(err)
			}
			if back.Algorithm != k.Algorithm {
				t.Errorf("algorithm %q, want %q", back.Algorithm, k.Algorithm)
			}
			switch priv := k.Private.(type) {
			case *rsa.PrivateKey:
				if !priv.Equal(back.Private) || priv.N.BitLen() != 2048 {
					t.Error("rsa key differs after round trip or is not 2048 bits")
				}
			case ed25519.PrivateKey:
				if !priv.Equal(back.Private) {
					t.Error("ed25519 key differs after round trip")
				}
			}

			name, txt := k.DNSRecord()
			prefix := map[KeyAlgorithm]string{KeyRSA: "v=DKIM1; k=rsa; p=MIIBIjAN", KeyEd25519: "v=DKIM1; k=ed25519; p="}[k.Algorithm]
			if !strings.HasPrefix(txt, prefix) {
				t.Errorf("txt %q, want prefix %q", txt, prefix)
			}
			if name != k.Selector+"._domainkey.example.org." {
				t.Errorf("name %q", name)
			}
			line := k.ZoneLine()
			rr, err := mdns.NewRR(line)
			if err != nil {
				t.Fatalf("zone line %q: %v", line, err)
			}
			parts := rr.(*mdns.TXT).Txt
			for _, p := range parts {
				if len(p) > 255 {
					t.Errorf("character-string of %d bytes", len(p))
				}
			}
			if strings.Join(parts, "") != txt || rr.Header().Name != name {
				t.Errorf("zone line %q does not carry %s %q", line, name, txt)
			}
			if k.Algorithm == KeyRSA && len(parts) != 2 {
				t.Errorf("rsa record in %d strings, want 2", len(parts))
			}
		})
	}
	if _, err := ParseDKIMKey("example.org", "x", []byte("not pem")); err == nil {
		t.Error("ParseDKIMKey accepted garbage")
	}
}

func TestDKIMSelector(t *testing.T) {
	for _, tc := range []struct {
		alg  KeyAlgorithm
		now  time.Time
		want string
	}{
		{KeyEd25519, time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC), "e2026a"},
		{KeyEd25519, time.Date(2027, time.December, 31, 0, 0, 0, 0, time.UTC), "e2027l"},
		{KeyRSA, time.Date(2026, time.March, 5, 0, 0, 0, 0, time.UTC), "r2026c"},
	} {
		k, err := GenerateDKIMKey("example.org", tc.alg, tc.now)
		if err != nil {
			t.Fatal(err)
		}
		if k.Selector != tc.want || k.Domain != "example.org" {
			t.Errorf("%s %s: selector %q, want %q", tc.alg, tc.now.Format(time.DateOnly), k.Selector, tc.want)
		}
	}
	if _, err := GenerateDKIMKey("example.org", "dsa", testNow); err == nil {
		t.Error("unknown algorithm accepted")
	}
}

func TestDKIMSignErrors(t *testing.T) {
	keys := testKeys(t)
	for name, msg := range map[string]string{
		"no from":    "To: b@example.net\r\n\r\nbody\r\n",
		"two froms":  "From: a@example.org\r\nFrom: c@example.org\r\n\r\nbody\r\n",
		"no blank":   "From: a@example.org\r\n",
		"bad header": "From a@example.org\r\n\r\nbody\r\n",
		"empty":      "",
	} {
		if _, err := SignDKIM(keys, []byte(msg), testNow); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}
