package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"
	mdns "github.com/miekg/dns"
)

// TestOutboundDKIM sends a message from a to b and checks that what b received carries a
// DKIM signature of a.test that two independent implementations accept: go-msgauth and
// Debian's python3-dkim. Both get the public key from the records `repute dns records`
// prints, which are also published in the test's DNS.
func TestOutboundDKIM(t *testing.T) {
	t.Parallel()
	z := newZone(t)
	a, b := hostPair(t, z, serverOptions{Queue: fastQueue}, serverOptions{Queue: fastQueue})
	keys := publishDKIM(t, z, a, "a.test")
	a.start()
	b.start()

	subj := "signed " + uniqueID()
	a.submit(t, "alice", []string{"bob@b.test"}, subj)
	b.waitForMessage(t, "bob", deliveryTimeout, fmt.Sprintf("%q", subj), withSubject(subj))
	var raw []byte
	for _, m := range b.messages(t, "bob", "INBOX", true) {
		if m.Subject == subj {
			raw = []byte(m.Body)
		}
	}

	lookup := func(domain string) ([]string, error) {
		if txt, ok := keys[strings.ToLower(domain)+"."]; ok {
			return []string{txt}, nil
		}
		return nil, fmt.Errorf("no key at %s", domain)
	}
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(raw), &dkim.VerifyOptions{LookupTXT: lookup})
	if err != nil || len(vs) == 0 {
		t.Fatalf("go-msgauth: %v, %d signatures", err, len(vs))
	}
	for _, v := range vs {
		if v.Err != nil || v.Domain != "a.test" {
			t.Errorf("go-msgauth: signature d=%s: %v", v.Domain, v.Err)
		}
	}
	pythonVerify(t, raw, keys)
}

// publishDKIM puts the DKIM records `repute dns records` prints for domain into the
// zone and returns them by name ("selector._domainkey.domain." -> TXT text).
func publishDKIM(t *testing.T, z *zone, s *server, domain string) map[string]string {
	t.Helper()
	keys := map[string]string{} // "selector._domainkey.a.test." -> TXT text
	for _, line := range strings.Split(s.cliT(t, "", "dns", "records", domain), "\n") {
		if !strings.Contains(line, "._domainkey.") || strings.HasPrefix(line, ";") {
			continue
		}
		z.add(line)
		rr, err := mdns.NewRR(line)
		if err != nil {
			t.Fatalf("record %q: %v", line, err)
		}
		keys[strings.ToLower(rr.Header().Name)] = strings.Join(rr.(*mdns.TXT).Txt, "")
	}
	if len(keys) == 0 {
		t.Fatal("repute dns records printed no DKIM record")
	}
	return keys
}

// pythonVerify runs Debian's python3-dkim on msg, answering its key lookups from keys.
func pythonVerify(t *testing.T, msg []byte, keys map[string]string) {
	t.Helper()
	out, err := runPythonDKIM(t, msg, keys, `d = dkim.DKIM(msg)
n = len([l for l in msg.split(b"\r\n\r\n")[0].split(b"\r\n") if l.lower().startswith(b"dkim-signature:")])
ok = all(d.verify(idx=i, dnsfunc=dnsfunc) for i in range(n))
print("pass" if ok and n > 0 else "fail %d" % n)
`)
	if err != nil || strings.TrimSpace(out) != "pass" {
		t.Errorf("python3-dkim: %v: %s", err, out)
	}
}

// runPythonDKIM runs a script with Debian's python3-dkim imported, msg (bytes) read from
// a file and dnsfunc answering key lookups from keys, and returns its output. The test
// is skipped without python3-dkim.
func runPythonDKIM(t *testing.T, msg []byte, keys map[string]string, script string) (string, error) {
	t.Helper()
	py := needTool(t, "/usr/bin/python3", "python3")
	if err := exec.Command(py, "-c", "import dkim").Run(); err != nil {
		t.Skip("python3-dkim not installed (Debian package python3-dkim; .ci/run installs it)")
	}
	msgPath := filepath.Join(t.TempDir(), "msg.eml")
	if err := os.WriteFile(msgPath, msg, 0o600); err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	for name, txt := range keys {
		fmt.Fprintf(&table, "%q: %q,\n", name, txt)
	}
	prologue := `import dkim, sys
keys = {` + table.String() + `}
def dnsfunc(name, timeout=5):
    n = name.decode() if isinstance(name, bytes) else name
    return keys.get(n.lower(), "").encode()
msg = open(sys.argv[1], "rb").read()
`
	out, err := exec.Command(py, "-c", prologue+script, msgPath).CombinedOutput()
	return string(out), err
}
