package auth

import (
	"encoding/json"
	"os/exec"
	"testing"
)

// python is Debian's interpreter, which has the python3-dkim module (a python3 earlier on
// PATH may be another installation without it).
const python = "/usr/bin/python3"

// needPython skips the test unless /usr/bin/python3 can import modules (e.g. "dkim").
func needPython(t *testing.T, modules string) {
	t.Helper()
	if err := exec.Command(python, "-c", "import "+modules).Run(); err != nil {
		t.Skipf("python3-dkim not installed (apt-get install python3-dkim python3-nacl): /usr/bin/python3 -c 'import %s' failed", modules)
	}
}

// keyRecordsJSON is the DNS TXT record of each key, by name, as JSON for a Python script.
func keyRecordsJSON(t *testing.T, keys []DKIMKey) string {
	t.Helper()
	records := map[string]string{}
	for _, k := range keys {
		name, txt := k.DNSRecord()
		records[name] = txt
	}
	b, err := json.Marshal(records)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
