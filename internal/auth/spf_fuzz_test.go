package auth

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// FuzzSPFRecord serves the input as the TXT record of the sender's domain and checks that
// CheckSPF neither panics nor returns anything but one of the seven results of RFC 7208
// §2.6. The zone has addresses, MX and PTR records for the mechanisms to find; the seeds
// are in testdata/fuzz/FuzzSPFRecord.
func FuzzSPFRecord(f *testing.F) {
	srv, r := spfTestServer(f,
		`fuzz.example. TXT "v=spf1 -all"`,
		`fuzz.example. A 192.0.2.1`,
		`fuzz.example. AAAA 2001:db8::1`,
		`fuzz.example. MX 10 mx.fuzz.example.`,
		`mx.fuzz.example. A 192.0.2.2`,
		`inc.example. TXT "v=spf1 a:fuzz.example include:fuzz.example -all"`,
		`1.2.0.192.in-addr.arpa. PTR fuzz.example.`,
	)
	results := []string{SPFNone, SPFNeutral, SPFPass, SPFFail, SPFSoftFail, SPFTempError, SPFPermError}
	ip := netip.MustParseAddr("192.0.2.1")
	f.Fuzz(func(t *testing.T, record string) {
		if err := srv.Replace(`fuzz.example. TXT ` + zoneTXT(record)); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		res := CheckSPF(ctx, r, ip, "mx.fuzz.example", "user@fuzz.example")
		if !slices.Contains(results, res.Result) {
			t.Errorf("record %q: result %q", record, res.Result)
		}
		if (res.Result == SPFTempError || res.Result == SPFPermError) != (res.Err != nil) {
			t.Errorf("record %q: result %s with error %v", record, res.Result, res.Err)
		}
	})
}
