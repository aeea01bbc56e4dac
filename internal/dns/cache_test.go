package dns

import (
	"context"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

func TestCacheTTL(t *testing.T) {
	rr := func(s string) mdns.RR {
		r, err := mdns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	soa := rr("test. 3600 IN SOA ns.test. admin.test. 1 7200 900 1209600 300")
	tests := []struct {
		name string
		msg  *mdns.Msg
		want time.Duration
		ok   bool
	}{
		{"smallest answer TTL", &mdns.Msg{Answer: []mdns.RR{rr("a.test. 600 IN A 192.0.2.1"), rr("a.test. 60 IN A 192.0.2.2")}}, 60 * time.Second, true},
		{"capped", &mdns.Msg{Answer: []mdns.RR{rr("a.test. 86400 IN A 192.0.2.1")}}, time.Hour, true},
		{"nxdomain with SOA: negative TTL", &mdns.Msg{MsgHdr: mdns.MsgHdr{Rcode: mdns.RcodeNameError}, Ns: []mdns.RR{soa}}, 300 * time.Second, true},
		{"no data with SOA", &mdns.Msg{Ns: []mdns.RR{soa}}, 300 * time.Second, true},
		{"nxdomain without SOA: not cached", &mdns.Msg{MsgHdr: mdns.MsgHdr{Rcode: mdns.RcodeNameError}}, 0, false},
		{"servfail: not cached", &mdns.Msg{MsgHdr: mdns.MsgHdr{Rcode: mdns.RcodeServerFailure}, Ns: []mdns.RR{soa}}, 0, false},
	}
	for _, tt := range tests {
		got, ok := cacheTTL(tt.msg)
		if got != tt.want || ok != tt.ok {
			t.Errorf("%s: got %v %v, want %v %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}

// TestCacheAnswers checks through a real server that an answer is reused within its TTL
// (a changed record is not seen until then), and that failures are not cached.
func TestCacheAnswers(t *testing.T) {
	srv, r := startServer(t)
	ctx := context.Background()
	if err := srv.Add(`cached.test. 300 IN TXT "one"`); err != nil {
		t.Fatal(err)
	}
	txt, _, err := r.LookupTXT(ctx, "cached.test.")
	if err != nil || len(txt) != 1 || txt[0] != "one" {
		t.Fatalf("first lookup: %v %v", txt, err)
	}
	if err := srv.Replace(`cached.test. 300 IN TXT "two"`); err != nil {
		t.Fatal(err)
	}
	if txt, _, _ = r.LookupTXT(ctx, "cached.test."); len(txt) != 1 || txt[0] != "one" {
		t.Errorf("within the TTL: %v, want the cached answer", txt)
	}
	// A failure is asked again each time.
	srv.Fail("flaky.test.", mdns.RcodeServerFailure)
	if _, _, err := r.LookupTXT(ctx, "flaky.test."); !IsTemporary(err) {
		t.Fatalf("SERVFAIL: %v", err)
	}
	srv.Add(`flaky.test. 300 IN TXT "fine"`)
	srv.Fail("flaky.test.", mdns.RcodeSuccess)
	if txt, _, err := r.LookupTXT(ctx, "flaky.test."); err != nil || len(txt) != 1 {
		t.Errorf("after the failure cleared: %v %v", txt, err)
	}
}
