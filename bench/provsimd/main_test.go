package main

import (
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/repute-mail/repute/test/provsim"
)

func testZone(t *testing.T) *zone {
	t.Helper()
	z, err := newZone("bench.test", []netip.Addr{netip.MustParseAddr("127.0.2.21")}, map[provsim.Provider]netip.Addr{
		provsim.Google:    netip.MustParseAddr("127.0.2.31"),
		provsim.Microsoft: netip.MustParseAddr("127.0.2.32"),
		provsim.Yahoo:     netip.MustParseAddr("127.0.2.33"),
	})
	if err != nil {
		t.Fatal(err)
	}
	return z
}

// TestZoneAnswers asks a real DNS server on loopback, over UDP and TCP.
func TestZoneAnswers(t *testing.T) {
	z := testZone(t)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	stop, err := serveDNS(addr, z)
	if err != nil {
		t.Skipf("no UDP and TCP port pair: %v", err)
	}
	defer stop()
	tests := []struct {
		name  string
		qtype uint16
		rcode int
		want  string // the answers' data, joined by spaces
	}{
		{"gmail.test.", dns.TypeMX, dns.RcodeSuccess, "10 gmail-smtp-in.l.google.com."},
		{"gmail-smtp-in.l.google.com.", dns.TypeA, dns.RcodeSuccess, "127.0.2.31"},
		{"HOTMAIL.test.", dns.TypeMX, dns.RcodeSuccess, "10 hotmail-test.olc.protection.outlook.com."},
		{"outlook-test.mail.protection.outlook.com.", dns.TypeA, dns.RcodeSuccess, "127.0.2.32"},
		{"yahoo.test.", dns.TypeMX, dns.RcodeSuccess, "10 mta5.am0.yahoodns.net."},
		{"mta5.am0.yahoodns.net.", dns.TypeA, dns.RcodeSuccess, "127.0.2.33"},
		{"gmail-smtp-in.l.google.com.", dns.TypeAAAA, dns.RcodeSuccess, ""},
		{"bench.test.", dns.TypeMX, dns.RcodeSuccess, "10 mx.bench.test."},
		{"bench.test.", dns.TypeTXT, dns.RcodeSuccess, `"v=spf1 ip4:127.0.0.0/8 -all"`},
		{"mx.bench.test.", dns.TypeA, dns.RcodeSuccess, "127.0.2.21"},
		{"localhost.", dns.TypeA, dns.RcodeSuccess, "127.0.0.1"},
		{"21.2.0.127.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, "mx.bench.test."},
		{"32.2.0.127.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, "outlook-test.mail.protection.outlook.com."},
		{"1.0.0.127.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, "localhost."},
		{"1.2.0.192.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError, ""},
		{"google.com.", dns.TypeMX, dns.RcodeNameError, ""},
		{"_mta-sts.gmail.test.", dns.TypeTXT, dns.RcodeNameError, ""},
	}
	for _, proto := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: proto, Timeout: 5 * time.Second}
		for _, tt := range tests {
			m := new(dns.Msg)
			m.SetQuestion(tt.name, tt.qtype)
			r, _, err := c.Exchange(m, addr)
			if err != nil {
				t.Fatalf("%s %s %s: %v", proto, tt.name, dns.TypeToString[tt.qtype], err)
			}
			var got []string
			for _, rr := range r.Answer {
				got = append(got, strings.TrimPrefix(rr.String(), rr.Header().String()))
			}
			if r.Rcode != tt.rcode || strings.Join(got, " ") != tt.want || !r.Authoritative {
				t.Errorf("%s %s %s: rcode %s aa %v answers %q; want %s %q", proto, tt.name, dns.TypeToString[tt.qtype],
					dns.RcodeToString[r.Rcode], r.Authoritative, got, dns.RcodeToString[tt.rcode], tt.want)
			}
			if len(r.Answer) == 0 && (len(r.Ns) != 1 || r.Ns[0].Header().Rrtype != dns.TypeSOA) {
				t.Errorf("%s %s: negative answer without the SOA: %v", proto, tt.name, r.Ns)
			}
		}
	}
}

func TestZoneRefusesOffLoopback(t *testing.T) {
	_, err := newZone("bench.test", []netip.Addr{netip.MustParseAddr("192.0.2.1")}, map[provsim.Provider]netip.Addr{
		provsim.Google: netip.MustParseAddr("127.0.2.31"), provsim.Microsoft: netip.MustParseAddr("127.0.2.32"),
		provsim.Yahoo: netip.MustParseAddr("127.0.2.33")})
	if err == nil || !strings.Contains(err.Error(), "not an IPv4 loopback address") {
		t.Errorf("sender IP 192.0.2.1: %v", err)
	}
}

func TestFlags(t *testing.T) {
	tests := []struct {
		args    []string
		wantErr string
	}{
		{[]string{"-counters", "x.json"}, ""},
		{[]string{"-ideal", "google=10"}, ""},
		{[]string{}, "-counters is required"},
		{[]string{"-counters", "x", "-time-scale", "0"}, "-time-scale"},
		{[]string{"-counters", "x", "-scale", "-1"}, "-scale"},
		{[]string{"-counters", "x", "extra"}, "unexpected argument"},
	}
	for _, tt := range tests {
		_, err := parseFlags(tt.args)
		if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%q: %v, want %q", tt.args, err, tt.wantErr)
		}
	}
}

func TestLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.2.31:25": true, "127.255.0.1:2525": true, "10.0.0.1:25": false, "[::1]:25": false,
		"0.0.0.0:25": false, "localhost:25": false, "127.0.0.1": false,
	} {
		if _, err := loopback(addr); (err == nil) != ok {
			t.Errorf("loopback(%q): %v", addr, err)
		}
	}
}

func TestParseLoads(t *testing.T) {
	tests := []struct {
		in      string
		want    map[provsim.Provider]int
		wantErr bool
	}{
		{"google=1200,microsoft=1050,yahoo=750", map[provsim.Provider]int{provsim.Google: 1200, provsim.Microsoft: 1050, provsim.Yahoo: 750}, false},
		{"yahoo=0", map[provsim.Provider]int{provsim.Yahoo: 0}, false},
		{"apple=5", nil, true},
		{"google=-1", nil, true},
		{"google=x", nil, true},
		{"google", nil, true},
		{"google=1,google=2", nil, true},
		{"", nil, true},
	}
	for _, tt := range tests {
		got, err := parseLoads(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("parseLoads(%q): %v", tt.in, err)
			continue
		}
		for p, n := range tt.want {
			if got[p] != n || len(got) != len(tt.want) {
				t.Errorf("parseLoads(%q) = %v, want %v", tt.in, got, tt.want)
			}
		}
	}
}

// TestIdeal: the figure pushback.sh prints is provsim's, for the profiles the flags
// make; -scale doubles the rates and so about halves the time.
func TestIdeal(t *testing.T) {
	o, err := parseFlags([]string{"-ideal", "google=1200,microsoft=1050,yahoo=750", "-time-scale", "60"})
	if err != nil {
		t.Fatal(err)
	}
	r, err := ideal(o)
	if err != nil {
		t.Fatal(err)
	}
	// Yahoo is the slowest: (750 - 20 burst) messages at 120 a minute, 365 simulated s.
	if want := 365.0 / 60; r.Seconds < want-0.001 || r.Seconds > want+0.001 {
		t.Errorf("ideal %v s, want %v", r.Seconds, want)
	}
	o.scale = 2
	p, err := o.profile(provsim.Yahoo)
	if err != nil {
		t.Fatal(err)
	}
	if p.RatePerMinute != 240 || p.MaxConnections != 10 {
		t.Errorf("yahoo at scale 2: %+v", p)
	}
}

// TestCountersFile starts the daemon on free ports of loopback, sends nothing, and
// reads the file it writes once everything listens.
func TestCountersFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sim.json")
	o, err := parseFlags([]string{"-counters", path, "-dns", "127.0.0.1:0", "-google", "127.0.0.1:0",
		"-microsoft", "127.0.0.1:0", "-yahoo", "127.0.0.1:0", "-sender-ips", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	d, err := start(o, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	d.write()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"provider": "google"`, `"provider": "microsoft"`, `"provider": "yahoo"`,
		`"hotmail.test"`, `"transactions_after_block": 0`, `"rate_per_minute": 120`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("counters file lacks %s:\n%s", want, b)
		}
	}
}
