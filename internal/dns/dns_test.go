package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/mjl-/adns"
	moxdns "github.com/mjl-/mox/dns"

	"github.com/repute-mail/repute/internal/dns/dnstest"
)

var zone = []string{
	"b.test. MX 20 mx2.b.test.",
	"b.test. MX 10 mx1.b.test.",
	"b.test. TXT \"v=spf1 \" \"ip4:127.0.0.20 -all\"",
	"mx1.b.test. A 127.0.0.20",
	"mx1.b.test. AAAA ::1",
	"mx2.b.test. A 127.0.0.21",
	"_25._tcp.mx1.b.test. TLSA 3 1 1 2ED8A0F3C7E1D4B5A6978899AABBCCDDEEFF00112233445566778899AABBCCDD",
	"www.b.test. CNAME mx1.b.test.",
	"alias.b.test. CNAME www.b.test.",
	"20.0.0.127.in-addr.arpa. PTR mx1.b.test.",
	"insecure.test. A 127.0.0.30",
	"signed.test. NS ns.signed.test.",
	"broken.test. A 127.0.0.40",
	"slow.test. A 127.0.0.50",
}

// startServer runs a test DNS server with zone and a resolver pointed at it.
func startServer(t *testing.T) (*dnstest.Server, *serverResolver) {
	t.Helper()
	srv, err := dnstest.Start(zone...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	srv.SetAuthentic("b.test.", "mx1.b.test.", "mx2.b.test.", "_25._tcp.mx1.b.test.",
		"www.b.test.", "alias.b.test.", "signed.test.", "nosuch.b.test.")
	srv.Fail("broken.test.", mdns.RcodeServerFailure)
	srv.Drop("slow.test.")
	r := newServerResolver(netip.MustParseAddrPort(srv.Addr), nil)
	r.log = discardLogger()
	r.timeout = 200 * time.Millisecond
	r.attempts = 1
	return srv, r
}

func TestLookups(t *testing.T) {
	_, r := startServer(t)
	ctx := context.Background()
	tests := []struct {
		name      string
		lookup    func() (string, adns.Result, error)
		want      string
		authentic bool
	}{
		{"mx sorted by preference", func() (string, adns.Result, error) {
			l, res, err := r.LookupMX(ctx, "b.test.")
			var s []string
			for _, mx := range l {
				s = append(s, fmt.Sprintf("%d %s", mx.Pref, mx.Host))
			}
			return strings.Join(s, ","), res, err
		}, "10 mx1.b.test.,20 mx2.b.test.", true},
		{"ip both families", func() (string, adns.Result, error) {
			l, res, err := r.LookupIP(ctx, "ip", "mx1.b.test.")
			return joinIPs(l), res, err
		}, "127.0.0.20,::1", true},
		{"ip4 only", func() (string, adns.Result, error) {
			l, res, err := r.LookupIP(ctx, "ip4", "mx1.b.test.")
			return joinIPs(l), res, err
		}, "127.0.0.20", true},
		{"host via cname chain", func() (string, adns.Result, error) {
			l, res, err := r.LookupHost(ctx, "alias.b.test.")
			return strings.Join(l, ","), res, err
		}, "127.0.0.20,::1", true},
		{"insecure name", func() (string, adns.Result, error) {
			l, res, err := r.LookupIP(ctx, "ip4", "insecure.test.")
			return joinIPs(l), res, err
		}, "127.0.0.30", false},
		{"txt strings concatenated", func() (string, adns.Result, error) {
			l, res, err := r.LookupTXT(ctx, "b.test.")
			return strings.Join(l, "|"), res, err
		}, "v=spf1 ip4:127.0.0.20 -all", true},
		{"tlsa", func() (string, adns.Result, error) {
			l, res, err := r.LookupTLSA(ctx, 25, "tcp", "mx1.b.test.")
			var s []string
			for _, t := range l {
				s = append(s, t.Record())
			}
			return strings.Join(s, ","), res, err
		}, "3 1 1 2ed8a0f3c7e1d4b5a6978899aabbccddeeff00112233445566778899aabbccdd", true},
		{"cname followed to its end", func() (string, adns.Result, error) {
			return r.LookupCNAME(ctx, "alias.b.test.")
		}, "mx1.b.test.", true},
		{"ptr", func() (string, adns.Result, error) {
			l, res, err := r.LookupAddr(ctx, "127.0.0.20")
			return strings.Join(l, ","), res, err
		}, "mx1.b.test.", false},
		{"ns", func() (string, adns.Result, error) {
			l, res, err := r.LookupNS(ctx, "signed.test.")
			return l[0].Host, res, err
		}, "ns.signed.test.", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, res, err := tc.lookup()
			if err != nil {
				t.Fatalf("lookup: %v", err)
			}
			if got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
			if res.Authentic != tc.authentic {
				t.Errorf("authentic %v, want %v", res.Authentic, tc.authentic)
			}
		})
	}
}

func TestLookupErrors(t *testing.T) {
	_, r := startServer(t)
	ctx := context.Background()
	tests := []struct {
		name      string
		lookup    func() (adns.Result, error)
		notFound  bool
		temporary bool
		authentic bool
	}{
		{"nxdomain", func() (adns.Result, error) {
			_, res, err := r.LookupMX(ctx, "nosuch.b.test.")
			return res, err
		}, true, false, true},
		{"nodata", func() (adns.Result, error) {
			_, res, err := r.LookupMX(ctx, "mx1.b.test.")
			return res, err
		}, true, false, true},
		{"no cname", func() (adns.Result, error) {
			_, res, err := r.LookupCNAME(ctx, "mx1.b.test.")
			return res, err
		}, true, false, true},
		{"servfail", func() (adns.Result, error) {
			_, res, err := r.LookupIP(ctx, "ip", "broken.test.")
			return res, err
		}, false, true, false},
		{"timeout", func() (adns.Result, error) {
			_, res, err := r.LookupTXT(ctx, "slow.test.")
			return res, err
		}, false, true, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := tc.lookup()
			if err == nil {
				t.Fatal("lookup succeeded, want error")
			}
			if IsNotFound(err) != tc.notFound || IsTemporary(err) != tc.temporary {
				t.Errorf("err %v: not found %v, temporary %v; want %v, %v",
					err, IsNotFound(err), IsTemporary(err), tc.notFound, tc.temporary)
			}
			if res.Authentic != tc.authentic {
				t.Errorf("authentic %v, want %v", res.Authentic, tc.authentic)
			}
		})
	}
}

func TestTimeoutIsTimeout(t *testing.T) {
	_, r := startServer(t)
	_, _, err := r.LookupIP(context.Background(), "ip", "slow.test.")
	var dnsErr *adns.DNSError
	if !errors.As(err, &dnsErr) || !dnsErr.IsTimeout {
		t.Fatalf("got %#v, want a timeout", err)
	}
}

func TestRelativeNameRefused(t *testing.T) {
	_, r := startServer(t)
	_, _, err := r.LookupMX(context.Background(), "b.test")
	if !errors.Is(err, moxdns.ErrRelativeDNSName) {
		t.Fatalf("got %v, want ErrRelativeDNSName", err)
	}
}

func TestTruncatedAnswerRetriedOverTCP(t *testing.T) {
	srv, r := startServer(t)
	var recs []string
	for i := range 60 {
		recs = append(recs, fmt.Sprintf("big.test. TXT \"record %02d %s\"", i, strings.Repeat("x", 40)))
	}
	if err := srv.Add(recs...); err != nil {
		t.Fatal(err)
	}
	l, _, err := r.LookupTXT(context.Background(), "big.test.")
	if err != nil {
		t.Fatal(err)
	}
	if len(l) != 60 {
		t.Fatalf("got %d records, want 60", len(l))
	}
}

func TestAuthenticOnlyFromLoopback(t *testing.T) {
	srv, _ := startServer(t)
	tests := []struct {
		server string
		trust  bool
	}{
		{srv.Addr, true},
		{"[::1]:53", true},
		{"192.0.2.1:53", false},
		{"[2001:db8::1]:53", false},
	}
	for _, tc := range tests {
		r, err := New(tc.server, discardLogger())
		if err != nil {
			t.Fatal(err)
		}
		if got := r.(*serverResolver).trustAD; got != tc.trust {
			t.Errorf("%s: trusted %v, want %v", tc.server, got, tc.trust)
		}
	}

	// The same answers through an untrusted path are never authentic.
	r := newServerResolver(netip.MustParseAddrPort(srv.Addr), discardLogger())
	r.trustAD = false
	_, res, err := r.LookupMX(context.Background(), "b.test.")
	if err != nil || res.Authentic {
		t.Fatalf("untrusted resolver: authentic %v, err %v; want false, nil", res.Authentic, err)
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		server  string
		wantErr bool
		system  bool
	}{
		{"", false, true},
		{"127.0.0.53:53", false, false},
		{"127.0.0.53", true, false},
		{"localhost:53", true, false},
	}
	for _, tc := range tests {
		r, err := New(tc.server, nil)
		if (err != nil) != tc.wantErr {
			t.Errorf("New(%q): err %v, want error %v", tc.server, err, tc.wantErr)
			continue
		}
		if err != nil {
			continue
		}
		if _, system := r.(moxdns.StrictResolver); system != tc.system {
			t.Errorf("New(%q) = %T, want system resolver %v", tc.server, r, tc.system)
		}
	}
}

func TestCheckDNSSEC(t *testing.T) {
	_, r := startServer(t)
	tests := []struct {
		name          string
		notValidating bool
		wantErr       bool
	}{
		{"signed.test", false, false},
		{"nosuch.b.test.", false, false}, // authentic denial of existence
		{"insecure.test.", true, true},
		{"broken.test.", false, true},
	}
	for _, tc := range tests {
		err := CheckDNSSEC(context.Background(), r, tc.name)
		if (err != nil) != tc.wantErr || errors.Is(err, ErrNotValidating) != tc.notValidating {
			t.Errorf("%s: got %v", tc.name, err)
		}
	}
}

func TestIsTemporary(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{&adns.DNSError{IsNotFound: true}, false},
		{&adns.DNSError{IsTemporary: true}, true},
		{&adns.DNSError{IsTimeout: true}, true},
		{&net.DNSError{IsTemporary: true}, true},
		{fmt.Errorf("lookup: %w", context.DeadlineExceeded), true},
		{errors.New("syntax"), false},
	}
	for _, tc := range tests {
		if got := IsTemporary(tc.err); got != tc.want {
			t.Errorf("IsTemporary(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func joinIPs(l []net.IP) string {
	var s []string
	for _, ip := range l {
		s = append(s, ip.String())
	}
	slices.Sort(s)
	return strings.Join(s, ",")
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

func TestUnescapeTXT(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`v=spf1 -all`, "v=spf1 -all"},
		{`caf\195\169`, "caf\u00e9"},
		{`say \"hi\"`, `say "hi"`},
		{`back\\slash`, `back\slash`},
		{`\000x`, "\x00x"},
		{`trailing\`, `trailing\`},
	} {
		if got := unescapeTXT(tc.in); got != tc.want {
			t.Errorf("unescapeTXT(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
