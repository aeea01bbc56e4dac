package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// writeCert writes a certificate for host and its key, and returns the certificate.
func writeCert(t *testing.T, certFile, keyFile, host string) *x509.Certificate {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(90 * 24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	p8, _ := x509.MarshalPKCS8PrivateKey(key)
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	return cert
}

// dnsTestConfig writes a configuration with two local domains and a served certificate,
// plus a next key in data_dir/tls, and returns its path and the certificate.
func dnsTestConfig(t *testing.T) (string, *x509.Certificate) {
	t.Helper()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	cert := writeCert(t, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), "mx.a.test")
	cfg := filepath.Join(dir, "r.toml")
	os.WriteFile(cfg, []byte(`hostname = "mx.a.test"
data_dir = "`+data+`"
[tls]
cert_file = "`+filepath.Join(dir, "cert.pem")+`"
key_file = "`+filepath.Join(dir, "key.pem")+`"
[outbound]
public_ips = ["203.0.113.9", "2001:db8::9"]
relay = "192.0.2.50:587"
[reports]
local_part = "dmarc"
`), 0o644)
	for _, d := range []string{"a.test", "b.test"} {
		if code, _, errs := runCLI(t, "", "domain", "add", d, "--config", cfg); code != 0 {
			t.Fatalf("domain add %s: %s", d, errs)
		}
	}
	os.MkdirAll(filepath.Join(data, "tls"), 0o700)
	writeCert(t, filepath.Join(dir, "unused.pem"), filepath.Join(data, "tls", "next-key.pem"), "mx.a.test")
	return cfg, cert
}

func parseZone(t *testing.T, text string) []dns.RR {
	t.Helper()
	zp := dns.NewZoneParser(strings.NewReader(text), "", "")
	var rrs []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("the output does not parse as a zone: %v\n%s", err, text)
	}
	return rrs
}

func TestDNSRecordsCommand(t *testing.T) {
	cfg, cert := dnsTestConfig(t)
	code, out, errs := runCLI(t, "", "dns", "records", "a.test", "--config", cfg)
	if code != 0 {
		t.Fatalf("dns records a.test: %d %s", code, errs)
	}
	rrs := parseZone(t, out)
	has := map[string]bool{}
	for _, rr := range rrs {
		has[strings.Join(strings.Fields(strings.TrimPrefix(rr.String(), rr.Header().Name)), " ")+" @"+rr.Header().Name] = true
	}
	var tlsa dns.TLSA
	tlsa.Sign(3, 1, 1, cert)
	for _, want := range []string{
		"3600 IN MX 10 mx.a.test. @a.test.",
		"3600 IN A 203.0.113.9 @mx.a.test.",
		"3600 IN AAAA 2001:db8::9 @mx.a.test.",
		`3600 IN TXT "v=spf1 ip4:203.0.113.9 ip6:2001:db8::9 ip4:192.0.2.50 -all" @a.test.`,
		`3600 IN TXT "v=DMARC1; p=none; rua=mailto:dmarc@a.test" @_dmarc.a.test.`,
		`3600 IN TXT "v=TLSRPTv1; rua=mailto:dmarc@a.test" @_smtp._tls.a.test.`,
		"3600 IN CNAME mx.a.test. @mta-sts.a.test.",
		"300 IN TLSA 3 1 1 " + tlsa.Certificate + " @_25._tcp.mx.a.test.",
		"3600 IN SRV 0 1 465 mx.a.test. @_submissions._tcp.a.test.",
	} {
		if !has[want] {
			t.Errorf("dns records a.test lacks %q:\n%s", want, out)
		}
	}
	count := func(typ string) int {
		n := 0
		for _, rr := range rrs {
			if dns.TypeToString[rr.Header().Rrtype] == typ {
				n++
			}
		}
		return n
	}
	// With certificate files the key is the admin's to change (certbot may renew with a
	// new one): one TLSA record, the served key's. The next key comes with ACME.
	if count("TLSA") != 1 {
		t.Errorf("want the served key's TLSA record, got %d", count("TLSA"))
	}
	if strings.Contains(out, "b.test") {
		t.Error("dns records a.test printed b.test's records")
	}

	// No argument: every local domain, the host's records once.
	_, out, _ = runCLI(t, "", "dns", "records", "--config", cfg)
	rrs = parseZone(t, out)
	if count("MX") != 2 || count("A") != 1 || count("TLSA") != 1 {
		t.Errorf("dns records: %d MX, %d A, %d TLSA; want 2, 1, 1", count("MX"), count("A"), count("TLSA"))
	}

	// --json: the shape of docs/CONTRACTS.md §12.
	code, out, _ = runCLI(t, "", "--json", "dns", "records", "b.test", "--config", cfg)
	var objs []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &objs) != nil || len(objs) == 0 {
		t.Fatalf("dns records --json: %d %s", code, out)
	}
	keys := []string{"comment", "domain", "name", "ttl", "type", "value"}
	for _, o := range objs {
		var got []string
		for k := range o {
			got = append(got, k)
		}
		slices.Sort(got)
		if !slices.Equal(got, keys) {
			t.Fatalf("JSON object keys %v, want %v", got, keys)
		}
		if _, ok := o["ttl"].(float64); !ok || o["type"] == "" {
			t.Errorf("JSON object %v", o)
		}
	}
	if objs[0]["name"] != "b.test." || objs[0]["type"] != "MX" || objs[0]["value"] != "10 mx.a.test." || objs[0]["domain"] != "b.test" {
		t.Errorf("first JSON record %v", objs[0])
	}

	if code, _, errs := runCLI(t, "", "dns", "records", "c.test", "--config", cfg); code != 1 || !strings.Contains(errs, "not a local domain") {
		t.Errorf("dns records c.test: %d %s", code, errs)
	}
}

// pushServer is a primary for the zone a.test that records the updates it gets.
type pushServer struct {
	addr    string
	mu      sync.Mutex
	updates []*dns.Msg
}

func startPushServer(t *testing.T, keyName, secret string) *pushServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pushServer{addr: l.Addr().String()}
	soa, _ := dns.NewRR("a.test. 3600 IN SOA ns.example.net. hostmaster.a.test. 1 3600 600 86400 300")
	srv := &dns.Server{Listener: l, TsigSecret: map[string]string{keyName: secret},
		MsgAcceptFunc: func(dns.Header) dns.MsgAcceptAction { return dns.MsgAccept },
		Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
			m := new(dns.Msg)
			m.SetReply(req)
			switch {
			case req.IsTsig() == nil || w.TsigStatus() != nil:
				m.Rcode = dns.RcodeNotAuth
			case !dns.IsSubDomain("a.test.", req.Question[0].Name):
				m.Rcode = dns.RcodeRefused
			case req.Opcode == dns.OpcodeUpdate:
				p.mu.Lock()
				p.updates = append(p.updates, req)
				p.mu.Unlock()
			case req.Question[0].Qtype == dns.TypeSOA && req.Question[0].Name == "a.test.":
				m.Answer = append(m.Answer, soa)
			default:
				m.Ns = append(m.Ns, soa)
			}
			if ts := req.IsTsig(); ts != nil && w.TsigStatus() == nil {
				m.SetTsig(ts.Hdr.Name, ts.Algorithm, 300, time.Now().Unix())
			}
			w.WriteMsg(m)
		})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return p
}

func TestDNSPushCommand(t *testing.T) {
	cfg, _ := dnsTestConfig(t)
	secret := "EvJupoZsbdvz27EhsIedOl2mNBMRY2FL8kO6+fBfANg="
	keyFile := filepath.Join(t.TempDir(), "repute.key")
	os.WriteFile(keyFile, []byte("key \"repute\" {\n\talgorithm hmac-sha256;\n\tsecret \""+secret+"\";\n};\n"), 0o600)
	srv := startPushServer(t, "repute.", secret)

	code, out, errs := runCLI(t, "", "dns", "push", "--server", srv.addr, "--tsig-key", keyFile, "a.test", "--config", cfg)
	if code != 0 || !strings.Contains(out, "a.test.: ") || !strings.Contains(out, "records published at "+srv.addr) {
		t.Fatalf("dns push a.test: %d %q %q", code, out, errs)
	}
	srv.mu.Lock()
	updates := srv.updates
	srv.mu.Unlock()
	if len(updates) != 1 {
		t.Fatalf("%d updates, want one for the zone a.test (the host mx.a.test is in it)", len(updates))
	}
	u := updates[0]
	var added []string
	for _, rr := range u.Ns {
		if rr.Header().Class == dns.ClassINET {
			added = append(added, dns.TypeToString[rr.Header().Rrtype]+" "+rr.Header().Name)
		}
	}
	for _, want := range []string{"MX a.test.", "A mx.a.test.", "TLSA _25._tcp.mx.a.test.", "TXT _dmarc.a.test.", "SRV _imaps._tcp.a.test."} {
		if !slices.Contains(added, want) {
			t.Errorf("the update does not add %s: %v", want, added)
		}
	}
	if u.Question[0].Name != "a.test." {
		t.Errorf("update of zone %s", u.Question[0].Name)
	}

	// b.test is not served there: the server refuses, and the command says so.
	code, _, errs = runCLI(t, "", "dns", "push", "--server", srv.addr, "--tsig-key", keyFile, "b.test", "--config", cfg)
	if code != 1 || !strings.Contains(errs, "REFUSED") {
		t.Errorf("dns push b.test: %d %q, want exit 1 and REFUSED", code, errs)
	}
	// A wrong key: NOTAUTH.
	os.WriteFile(keyFile, []byte("hmac-sha256:repute:c2VjcmV0IG9mIGFub3RoZXIga2V5IGVudGlyZWx5IQ==\n"), 0o600)
	code, _, errs = runCLI(t, "", "dns", "push", "--server", srv.addr, "--tsig-key", keyFile, "--config", cfg)
	if code != 1 || !strings.Contains(errs, "NOTAUTH") {
		t.Errorf("dns push with a wrong key: %d %q, want exit 1 and NOTAUTH", code, errs)
	}
	if code, _, _ := runCLI(t, "", "dns", "push", "--tsig-key", keyFile, "--config", cfg); code != 2 {
		t.Errorf("dns push without --server: exit %d, want 2", code)
	}
}
