package classify

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"
)

// dsnAddSeeds adds every .eml file under testdata/dir to the fuzz corpus.
func dsnAddSeeds(f *testing.F, dir string) {
	files, err := filepath.Glob(filepath.Join("testdata", dir, "*.eml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
}

// FuzzParseDSN checks that ParseDSN never panics on hostile input, keeps to its limits
// and returns either a report or ErrNotBounce.
func FuzzParseDSN(f *testing.F) {
	dsnAddSeeds(f, "dsn")
	dsnAddSeeds(f, "arf")
	f.Fuzz(func(t *testing.T, msg []byte) {
		rep, err := ParseDSN(msg)
		if err != nil {
			if !errors.Is(err, ErrNotBounce) || rep != nil {
				t.Fatalf("ParseDSN = %v, %v", rep, err)
			}
			return
		}
		if rep == nil || rep.Format == "" {
			t.Fatalf("ParseDSN = %+v, nil", rep)
		}
		if len(rep.Recipients) > dsnMaxRecipients {
			t.Fatalf("%d recipients", len(rep.Recipients))
		}
		for _, r := range rep.Recipients {
			if r.Recipient == "" {
				t.Fatalf("recipient without address: %+v", r)
			}
			for _, v := range []string{r.Recipient, r.Action, r.Status, r.Diagnostic, r.RemoteMTA} {
				if len(v) > dsnMaxField {
					t.Fatalf("field of %d bytes", len(v))
				}
			}
			if !utf8.ValidString(r.Diagnostic) || !utf8.ValidString(r.Recipient) {
				t.Fatalf("invalid UTF-8 in %+v", r)
			}
			switch r.Action {
			case "failed", "delayed", "delivered", "relayed", "expanded":
			default:
				t.Fatalf("action %q", r.Action)
			}
		}
	})
}
