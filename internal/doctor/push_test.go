package doctor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// updateServer is a primary DNS server for one zone held in memory: it answers queries
// from the zone and applies RFC 2136 updates signed with its TSIG key, answering a bad
// signature the way BIND and Knot do (NOTAUTH, with the TSIG error BADSIG or BADKEY).
type updateServer struct {
	Addr   string
	zone   string
	srv    *dns.Server
	mu     sync.Mutex
	rrs    []dns.RR
	refuse bool // refuse every update (an update ACL without us)
}

func startUpdateServer(t *testing.T, zone string, key TSIGKey, records ...string) *updateServer {
	t.Helper()
	s := &updateServer{zone: zone}
	for _, r := range records {
		rr, err := dns.NewRR(r)
		if err != nil {
			t.Fatal(err)
		}
		s.rrs = append(s.rrs, rr)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = l.Addr().String()
	s.srv = &dns.Server{Listener: l, Handler: s, TsigSecret: map[string]string{key.Name: key.Secret},
		// The default refuses updates (NOTIMP); this server takes every request.
		MsgAcceptFunc: func(dns.Header) dns.MsgAcceptAction { return dns.MsgAccept }}
	go s.srv.ActivateAndServe()
	t.Cleanup(func() { s.srv.Shutdown() })
	return s
}

func (s *updateServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	tsig := req.IsTsig()
	sign := func() {
		if tsig != nil {
			m.SetTsig(tsig.Hdr.Name, tsig.Algorithm, 300, time.Now().Unix())
		}
	}
	if tsig != nil && w.TsigStatus() != nil {
		m.Rcode = dns.RcodeNotAuth
		sign()
		t := m.Extra[len(m.Extra)-1].(*dns.TSIG)
		t.Error = dns.RcodeBadSig
		if errors.Is(w.TsigStatus(), dns.ErrSecret) {
			t.Error = dns.RcodeBadKey
		}
		w.WriteMsg(m)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch req.Opcode {
	case dns.OpcodeQuery:
		s.query(req.Question[0], m)
	case dns.OpcodeUpdate:
		switch {
		case tsig == nil || s.refuse:
			m.Rcode = dns.RcodeRefused
		case !strings.EqualFold(req.Question[0].Name, s.zone):
			m.Rcode = dns.RcodeNotAuth
		default:
			m.Rcode = s.update(req.Ns)
		}
	default:
		m.Rcode = dns.RcodeNotImplemented
	}
	sign()
	w.WriteMsg(m)
}

func (s *updateServer) query(q dns.Question, m *dns.Msg) {
	if !dns.IsSubDomain(s.zone, q.Name) {
		m.Rcode = dns.RcodeRefused
		return
	}
	m.Authoritative = true
	exists := false
	for _, rr := range s.rrs {
		if strings.EqualFold(rr.Header().Name, q.Name) {
			exists = true
			if rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, rr)
			}
		}
	}
	if len(m.Answer) > 0 {
		return
	}
	if !exists {
		m.Rcode = dns.RcodeNameError
	}
	for _, rr := range s.rrs {
		if rr.Header().Rrtype == dns.TypeSOA {
			m.Ns = append(m.Ns, rr)
		}
	}
}

// update applies RFC 2136 §3.4.2 to the zone, after the §3.4.1.3 prescan.
func (s *updateServer) update(ns []dns.RR) int {
	for _, rr := range ns {
		if !dns.IsSubDomain(s.zone, rr.Header().Name) {
			return dns.RcodeNotZone
		}
	}
	apexKeep := func(rr dns.RR) bool {
		t := rr.Header().Rrtype
		return strings.EqualFold(rr.Header().Name, s.zone) && (t == dns.TypeSOA || t == dns.TypeNS)
	}
	for _, u := range ns {
		h := u.Header()
		same := func(rr dns.RR) bool { return strings.EqualFold(rr.Header().Name, h.Name) }
		switch h.Class {
		case dns.ClassANY:
			s.rrs = slices.DeleteFunc(s.rrs, func(rr dns.RR) bool {
				return same(rr) && (h.Rrtype == dns.TypeANY || rr.Header().Rrtype == h.Rrtype) && !apexKeep(rr)
			})
		case dns.ClassNONE:
			c := dns.Copy(u)
			c.Header().Class = dns.ClassINET
			s.rrs = slices.DeleteFunc(s.rrs, func(rr dns.RR) bool { return dns.IsDuplicate(rr, c) })
		case dns.ClassINET:
			if !slices.ContainsFunc(s.rrs, func(rr dns.RR) bool { return dns.IsDuplicate(rr, u) }) {
				s.rrs = append(s.rrs, dns.Copy(u))
			}
		}
	}
	return dns.RcodeSuccess
}

// contents returns the zone's records as sorted zone lines.
func (s *updateServer) contents() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return sortedLines(s.rrs)
}

func sortedLines(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		out = append(out, rr.String())
	}
	slices.Sort(out)
	return out
}

func recordLines(t *testing.T, recs []Record) []string {
	t.Helper()
	var rrs []dns.RR
	for _, r := range recs {
		if r.IsNote() {
			continue
		}
		rr, err := dns.NewRR(ZoneLine(r))
		if err != nil {
			t.Fatal(err)
		}
		rrs = append(rrs, rr)
	}
	return sortedLines(rrs)
}

var testKey = TSIGKey{Name: "repute-key.", Algorithm: dns.HmacSHA256, Secret: "EvJupoZsbdvz27EhsIedOl2mNBMRY2FL8kO6+fBfANg="}

var zoneBase = []string{
	"example.test. 3600 IN SOA ns.example.net. hostmaster.example.test. 1 3600 600 86400 300",
	"example.test. 3600 IN NS ns.example.net.",
}

func pushSetup() Setup {
	return Setup{Hostname: "mx.example.test", SendIPs: addrs("192.0.2.10", "2001:db8::10"), HostIPs: addrs("192.0.2.10", "2001:db8::10"),
		Domains: []Domain{{Name: "example.test", DKIM: []DKIMKey{
			{Selector: "r1", Algorithm: "rsa", State: "active", Record: "v=DKIM1; k=rsa; p=" + strings.Repeat("QUJD", 100)},
			{Selector: "e1", Algorithm: "ed25519", State: "pending", Record: "v=DKIM1; k=ed25519; p=Zm9v"}}}},
		MTASTSMode: "enforce", MTASTSMaxAge: 24 * time.Hour, ACMECA: "letsencrypt.org", TLSAKeys: [][]byte{{1}, {2}}}
}

func TestPushIdempotent(t *testing.T) {
	kept := []string{
		"example.test. 3600 IN TXT \"google-site-verification=abc\"",
		"example.test. 3600 IN CAA 0 issue \"pki.goog\"",
		"www.example.test. 3600 IN A 192.0.2.80",
	}
	replaced := []string{
		"example.test. 3600 IN TXT \"v=spf1 mx -all\"",
		"example.test. 3600 IN MX 20 old-mx.example.net.",
		"autoconfig.example.test. 3600 IN A 192.0.2.99",
		"_dmarc.example.test. 3600 IN TXT \"v=DMARC1; p=reject\"",
	}
	srv := startUpdateServer(t, "example.test.", testKey, slices.Concat(zoneBase, kept, replaced)...)
	recs := Records(pushSetup())
	var want []string
	for _, l := range slices.Concat(zoneBase, kept) {
		rr, _ := dns.NewRR(l)
		want = append(want, rr.String())
	}
	want = append(want, recordLines(t, recs)...)
	slices.Sort(want)
	ctx := context.Background()
	for i := range 2 {
		if err := Push(ctx, srv.Addr, testKey, "", recs); err != nil {
			t.Fatalf("push %d: %v", i+1, err)
		}
		if got := srv.contents(); !slices.Equal(got, want) {
			t.Fatalf("after push %d the zone holds:\n%s\nwant:\n%s", i+1, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

func TestPushErrors(t *testing.T) {
	recs := Records(pushSetup())
	ctx := context.Background()
	srv := startUpdateServer(t, "example.test.", testKey, zoneBase...)
	wrongSecret := testKey
	wrongSecret.Secret = "c2VjcmV0IG9mIGFub3RoZXIga2V5IGVudGlyZWx5IQ=="
	unknown := testKey
	unknown.Name = "other-key."
	tests := []struct {
		name   string
		key    TSIGKey
		zone   string
		recs   []Record
		refuse bool
		want   []string
	}{
		{"wrong secret", wrongSecret, "", recs, false, []string{"NOTAUTH", "TSIG error BADSIG", "secret does not match"}},
		{"wrong secret, zone given", wrongSecret, "example.test", recs, false, []string{"NOTAUTH", "BADSIG"}},
		{"unknown key", unknown, "", recs, false, []string{"NOTAUTH", "BADKEY", "knows no key"}},
		{"refused", testKey, "", recs, true, []string{"update of zone example.test. at", "REFUSED (the server refuses"}},
		{"outside the zone", testKey, "example.test", Records(Setup{Hostname: "mx.other.test", Domains: []Domain{{Name: "example.test"}}}),
			false, []string{"mx.other.test. is not in zone example.test."}},
		{"zone not served", testKey, "", Records(Setup{Hostname: "mx.other.test", Domains: []Domain{{Name: "other.test"}}}),
			false, []string{"serves no zone that holds it (REFUSED)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv.mu.Lock()
			srv.refuse = tc.refuse
			srv.mu.Unlock()
			err := Push(ctx, srv.Addr, tc.key, tc.zone, tc.recs)
			if err == nil {
				t.Fatal("push succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
	if got, want := srv.contents(), sortedLines(mustRRs(t, zoneBase)); !slices.Equal(got, want) {
		t.Errorf("failed pushes changed the zone:\n%s", strings.Join(got, "\n"))
	}
}

func mustRRs(t *testing.T, lines []string) []dns.RR {
	var out []dns.RR
	for _, l := range lines {
		rr, err := dns.NewRR(l)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, rr)
	}
	return out
}

func TestFindZone(t *testing.T) {
	srv := startUpdateServer(t, "example.test.", testKey, append(zoneBase, "mx.example.test. 300 IN A 192.0.2.1")...)
	ctx := context.Background()
	for _, name := range []string{"example.test", "Example.Test.", "mx.example.test", "nothing.here.example.test"} {
		if z, err := FindZone(ctx, srv.Addr, testKey, name); err != nil || z != "example.test." {
			t.Errorf("FindZone(%s) = %q, %v; want example.test.", name, z, err)
		}
	}
}

func TestParseTSIGKey(t *testing.T) {
	secret := "EvJupoZsbdvz27EhsIedOl2mNBMRY2FL8kO6+fBfANg="
	want := TSIGKey{Name: "repute-key.", Algorithm: dns.HmacSHA256, Secret: secret}
	tests := []struct {
		name, text string
		want       TSIGKey
		err        string
	}{
		{"tsig-keygen", "key \"repute-key\" {\n\talgorithm hmac-sha256;\n\tsecret \"" + secret + "\";\n};\n", want, ""},
		{"one line BIND", `key repute-key { algorithm "hmac-sha256"; secret "` + secret + `"; };`, want, ""},
		{"keymgr -t", "# hmac-sha256:repute-key:" + secret + "\nkey:\n  - id: repute-key\n    algorithm: hmac-sha256\n    secret: " + secret + "\n", want, ""},
		{"kdig -y", "hmac-sha256:repute-key:" + secret + "\n", want, ""},
		{"name:secret", "repute-key:" + secret, want, ""},
		{"sha512", "key \"k.example.\" { algorithm hmac-sha512; secret \"" + secret + "\"; };",
			TSIGKey{Name: "k.example.", Algorithm: dns.HmacSHA512, Secret: secret}, ""},
		{"unknown algorithm", "gss-tsig:k:" + secret, TSIGKey{}, "not supported"},
		{"bad secret", "key \"k\" { algorithm hmac-sha256; secret \"not base64!\"; };", TSIGKey{}, "not base64"},
		{"empty", "", TSIGKey{}, "no TSIG key found"},
		{"two keys", "key:\n  - id: a\n    secret: " + secret + "\n  - id: b\n    secret: " + secret + "\n", TSIGKey{}, "more than one key"},
	}
	for _, tc := range tests {
		got, err := ParseTSIGKey(tc.text)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: error %v, want one saying %q", tc.name, err, tc.err)
		case tc.err == "" && (err != nil || got != tc.want):
			t.Errorf("%s: %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
}

// TestPushKnot pushes to a real Knot DNS primary and reads the zone back by zone transfer.
func TestPushKnot(t *testing.T) {
	knotd, err := exec.LookPath("knotd")
	if err != nil {
		t.Skip("knotd is not installed (Debian package knot): the push to a real DNS server is not tested")
	}
	dir := t.TempDir()
	port := freePort(t)
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	zoneFile := filepath.Join(dir, "example.test.zone")
	foreign := "example.test. 3600 IN TXT \"google-site-verification=abc\""
	initial := append(slices.Clone(zoneBase), foreign, "example.test. 3600 IN TXT \"v=spf1 mx -all\"",
		"mta-sts.example.test. 3600 IN A 192.0.2.99")
	if err := os.WriteFile(zoneFile, []byte(strings.Join(initial, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	conf := fmt.Sprintf(`server:
    rundir: "%[1]s"
    listen: 127.0.0.1@%[2]d
database:
    storage: "%[1]s/db"
control:
    listen: "%[1]s/knot.sock"
log:
  - target: stderr
    any: warning
key:
  - id: repute-key
    algorithm: hmac-sha256
    secret: %[3]s
acl:
  - id: repute
    key: repute-key
    action: [update, transfer]
zone:
  - domain: example.test
    file: "%[4]s"
    acl: repute
    zonefile-sync: -1
    journal-content: changes
`, dir, port, testKey.Secret, zoneFile)
	confFile := filepath.Join(dir, "knot.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var logs strings.Builder
	cmd := exec.CommandContext(ctx, knotd, "-c", confFile)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		if t.Failed() {
			t.Logf("knotd:\n%s", logs.String())
		}
	}()
	server := fmt.Sprintf("127.0.0.1:%d", port)
	// Wait until knotd answers for the zone: at most 10 s.
	var zerr error
	for range 200 {
		var z string
		if z, zerr = FindZone(ctx, server, testKey, "example.test"); zerr == nil && z == "example.test." {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if zerr != nil {
		t.Fatalf("knotd does not answer: %v", zerr)
	}
	recs := Records(pushSetup())
	want := append(recordLines(t, recs), sortedLines(mustRRs(t, []string{zoneBase[1], foreign}))...) // the SOA's serial changes
	slices.Sort(want)
	for i := range 2 {
		if err := Push(ctx, server, testKey, "", recs); err != nil {
			t.Fatalf("push %d: %v", i+1, err)
		}
		if got := axfr(t, server); !slices.Equal(got, want) {
			t.Fatalf("after push %d knotd holds:\n%s\nwant:\n%s", i+1, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	wrong := testKey
	wrong.Secret = "c2VjcmV0IG9mIGFub3RoZXIga2V5IGVudGlyZWx5IQ=="
	if err := Push(ctx, server, wrong, "example.test", recs); err == nil || !strings.Contains(err.Error(), "NOTAUTH") {
		t.Errorf("push with a wrong secret: %v, want NOTAUTH", err)
	}
}

// axfr returns the zone's records but the SOA, as sorted zone lines.
func axfr(t *testing.T, server string) []string {
	t.Helper()
	m := new(dns.Msg)
	m.SetAxfr("example.test.")
	m.SetTsig(testKey.Name, testKey.Algorithm, 300, time.Now().Unix())
	tr := &dns.Transfer{TsigSecret: map[string]string{testKey.Name: testKey.Secret}}
	ch, err := tr.In(m, server)
	if err != nil {
		t.Fatal(err)
	}
	var rrs []dns.RR
	for env := range ch {
		if env.Error != nil {
			t.Fatalf("zone transfer: %v", env.Error)
		}
		for _, rr := range env.RR {
			if rr.Header().Rrtype != dns.TypeSOA {
				rrs = append(rrs, rr)
			}
		}
	}
	return sortedLines(rrs)
}

// freePort returns a port free on 127.0.0.1 for both TCP and UDP, for a server that
// cannot be handed a listener.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port on 127.0.0.1")
	return 0
}
