package policy

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/repute-mail/repute/internal/dns"
	"github.com/repute-mail/repute/internal/dns/dnstest"
)

func TestDNSBL(t *testing.T) {
	srv, err := dnstest.Start(
		"2.0.0.127.bl.test. A 127.0.0.2",
		"2.0.0.127.bl.test. TXT \"listed: see https://bl.test/lookup?127.0.0.2\"",
		"3.0.0.127.bl.test. A 127.255.255.254",
		"4.0.0.127.bl.test. A 192.0.2.1",
		"5.0.0.127.other.test. A 127.0.0.4",
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test. A 127.0.0.3",
	)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	srv.Fail("6.0.0.127.bl.test.", mdns.RcodeServerFailure)
	r, err := dns.New(srv.Addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &DNSBL{Resolver: r, Zones: []string{"bl.test", "other.test"}, Timeout: 2 * time.Second}
	tests := []struct {
		ip      string
		zone    string // "" = not listed
		reason  string
		errWant error
	}{
		{"127.0.0.2", "bl.test", "listed: see https://bl.test/lookup?127.0.0.2", nil},
		{"127.0.0.1", "", "", nil},
		{"127.0.0.3", "", "", ErrListRefused}, // 127.255.255.x: refused, not listed
		{"127.0.0.4", "", "", nil},            // outside 127/8: not a listing
		{"127.0.0.5", "other.test", "", nil},  // the second list
		{"127.0.0.6", "", "", errors.New("")}, // SERVFAIL: an error, never a listing
		{"2001:db8::1", "bl.test", "", nil},
	}
	for _, tc := range tests {
		l, errs := b.Check(context.Background(), netip.MustParseAddr(tc.ip))
		switch {
		case tc.zone == "" && l != nil:
			t.Errorf("%s: listed %+v, want not listed", tc.ip, l)
		case tc.zone != "" && (l == nil || l.Zone != tc.zone || l.Reason != tc.reason):
			t.Errorf("%s: %+v, want zone %s reason %q", tc.ip, l, tc.zone, tc.reason)
		}
		if tc.errWant != nil && len(errs) == 0 {
			t.Errorf("%s: no error reported", tc.ip)
		}
		if errors.Is(tc.errWant, ErrListRefused) && (len(errs) == 0 || !errors.Is(errs[0], ErrListRefused)) {
			t.Errorf("%s: errs %v, want ErrListRefused", tc.ip, errs)
		}
	}
}
