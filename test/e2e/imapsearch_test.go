package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// imapSearchScript appends messages with Python's imaplib and sends two large SEARCH
// commands: 5,000 "OR TEXT" keys (just under the server's 50 KiB command limit), which
// must be refused with NO [LIMIT], and a chain of 300 distinct OR TEXT keys, which must be
// answered. Arguments: host port user password cafile.
const imapSearchScript = `
import imaplib, json, ssl, sys

host, port, user, pw, cafile = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = False

m = imaplib.IMAP4(host, int(port))
m.starttls(ssl_context=ctx)
m.login(user, pw)
m.create("SearchTest")
for i in range(40):
    msg = ("From: sender@example.org\r\nSubject: search %d\r\n\r\nword k%d here\r\n" % (i, i * 10)).encode()
    m.append("SearchTest", None, None, msg)
m.select("SearchTest")
out = {}

typ, data = m.uid("SEARCH", None, "OR TEXT a " * 5000 + "TEXT b")
out["big"] = [typ, data[0].decode() if data and data[0] else ""]
typ, _ = m.noop()
out["noop"] = typ

chain = "".join('OR TEXT "k%d " ' % i for i in range(299)) + 'TEXT "k299 "'
typ, data = m.uid("SEARCH", None, chain)
out["chain"] = [typ, [int(u) for u in data[0].split()]]
m.logout()
print(json.dumps(out))
`

// TestIMAPSearchLimits: a SEARCH of thousands of OR TEXT keys is refused at once with
// NO [LIMIT] and the session goes on; a long but reasonable OR chain is answered.
func TestIMAPSearchLimits(t *testing.T) {
	t.Parallel()
	py := needTool(t, "/usr/bin/python3", "python3")
	s := startServer(t, serverOptions{})
	script := filepath.Join(t.TempDir(), "search.py")
	if err := os.WriteFile(script, []byte(imapSearchScript), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := runTool(t, py, script, s.ip, strconv.Itoa(s.ports.IMAP), address("alice"), password("alice"), s.certPath())
	if err != nil {
		t.Fatalf("python3 imaplib: %v\n%s", err, out)
	}
	var res struct {
		Big   []string           `json:"big"`
		Noop  string             `json:"noop"`
		Chain [2]json.RawMessage `json:"chain"`
	}
	if err := json.Unmarshal([]byte(lastLine(out)), &res); err != nil {
		t.Fatalf("python3 imaplib output: %v\n%s", err, out)
	}
	if len(res.Big) != 2 || res.Big[0] != "NO" || !strings.HasPrefix(res.Big[1], "[LIMIT]") {
		t.Errorf("SEARCH with 5,000 OR TEXT keys: %q, want NO [LIMIT]", res.Big)
	}
	if res.Noop != "OK" {
		t.Errorf("NOOP after the refused SEARCH: %s", res.Noop)
	}
	var typ string
	var uids []uint32
	if json.Unmarshal(res.Chain[0], &typ) != nil || json.Unmarshal(res.Chain[1], &uids) != nil {
		t.Fatalf("chain result: %s", out)
	}
	// Message i (UID i+1) holds "k<10i> "; the chain names "k0 " to "k299 ": messages 0 to 29.
	var want []uint32
	for i := range 30 {
		want = append(want, uint32(i+1))
	}
	if typ != "OK" || !slices.Equal(uids, want) {
		t.Errorf("SEARCH with a chain of 300 OR TEXT keys: %s %v, want OK %v", typ, uids, want)
	}
}
