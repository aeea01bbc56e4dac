package classify

import (
	"errors"
	"testing"
)

// FuzzParseARF checks that ParseARF never panics on hostile input, keeps to its limits and
// returns either a report or ErrNotARF.
func FuzzParseARF(f *testing.F) {
	dsnAddSeeds(f, "arf")
	dsnAddSeeds(f, "dsn")
	f.Fuzz(func(t *testing.T, msg []byte) {
		r, err := ParseARF(msg)
		if err != nil {
			if !errors.Is(err, ErrNotARF) || r != nil {
				t.Fatalf("ParseARF = %v, %v", r, err)
			}
			return
		}
		if r == nil {
			t.Fatal("nil report without an error")
		}
		for _, l := range [][]string{r.OriginalRcptTo, r.ReportedDomain, r.OriginalTo} {
			if len(l) > dsnMaxRecipients {
				t.Fatalf("list of %d", len(l))
			}
		}
		for k, vs := range r.OriginalHeaders {
			for _, v := range vs {
				if len(v) > dsnMaxField {
					t.Fatalf("header %s of %d bytes", k, len(v))
				}
			}
		}
	})
}
