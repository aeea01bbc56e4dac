package web

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	moxmtasts "github.com/mjl-/mox/mtasts"

	"github.com/repute-mail/repute/internal/dns/dnstest"
	"github.com/repute-mail/repute/internal/doctor"
)

// testNames are the names the test certificate covers, as a production certificate
// obtained through ACME would.
var testNames = []string{"mail.example.org", "example.org", "mta-sts.example.org",
	"autoconfig.example.org", "autodiscover.example.org", "mta-sts.example.net", "mta-sts.other.test"}

// setupServer is a Server for example.org and example.net with every port offered.
func setupServer() *Server {
	return &Server{
		Hostname:     "mail.example.org",
		Domains:      func(context.Context) ([]string, error) { return []string{"example.net", "example.org"}, nil },
		MTASTSMode:   "enforce",
		MTASTSMaxAge: 7 * 24 * time.Hour,
		Ports:        ClientPorts{IMAPS: 993, IMAP: 143, Submissions: 465, Submission: 587},
		Logger:       slog.New(slog.DiscardHandler),
	}
}

// tlsServer is the handler served over HTTPS on 127.0.0.1 with a certificate for
// testNames, and a client that trusts it and dials that listener for every name.
type tlsServer struct {
	Port   string // the listener's port
	CAFile string // PEM of the certificate, for curl and python
	Client *http.Client
}

func startTLS(t *testing.T, h http.Handler) *tlsServer {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mail.example.org"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: testNames, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()
	_, port, _ := net.SplitHostPort(addr)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	var d net.Dialer
	client := &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool},
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return d.DialContext(ctx, network, addr)
			},
		},
		// RFC 8461 §3.3: a policy fetch follows no redirect; nor should set-up need one.
		CheckRedirect: func(*http.Request, []*http.Request) error { return errors.New("redirected") },
	}
	t.Cleanup(client.CloseIdleConnections)
	return &tlsServer{Port: port, CAFile: caFile, Client: client}
}

// get fetches https://host:PORT/path with the Go client.
func (ts *tlsServer) get(t *testing.T, host, path string) (*http.Response, string) {
	t.Helper()
	resp, err := ts.Client.Get("https://" + host + ":" + ts.Port + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// curl fetches https://host:PORT/path with curl, verifying the certificate, and returns
// the status, the content type and the body. args are extra curl arguments.
func (ts *tlsServer) curl(t *testing.T, host, path string, args ...string) (status int, ctype, body string) {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed (apt-get install curl)")
	}
	out := filepath.Join(t.TempDir(), "body")
	cmdArgs := append([]string{"-sS", "--max-time", "10", "--resolve", host + ":" + ts.Port + ":127.0.0.1",
		"--cacert", ts.CAFile, "-o", out, "-w", "%{http_code} %{content_type}"}, args...)
	cmdArgs = append(cmdArgs, "https://"+host+":"+ts.Port+path)
	w, err := exec.Command("curl", cmdArgs...).Output()
	if err != nil {
		t.Fatalf("curl %s: %v", strings.Join(cmdArgs, " "), err)
	}
	code, ct, _ := strings.Cut(string(w), " ")
	fmt.Sscan(code, &status)
	b, _ := os.ReadFile(out)
	return status, ct, string(b)
}

func serve(h http.Handler, method, host, target string, body io.Reader) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(method, target, body)
	req.Host = host
	h.ServeHTTP(rec, req)
	return rec
}

func TestMTASTSRoutes(t *testing.T) {
	want, _ := doctor.MTASTSPolicy("enforce", 7*24*time.Hour, []string{"mail.example.org"})
	failing := setupServer()
	failing.Domains = func(context.Context) ([]string, error) { return nil, errors.New("database is locked") }
	off := setupServer()
	off.MTASTSMode = ""
	for _, tc := range []struct {
		name         string
		srv          *Server
		method, host string
		path         string
		code         int
	}{
		{"policy", setupServer(), "GET", "mta-sts.example.org", mtaSTSPath, 200},
		{"host with port, any case", setupServer(), "GET", "MTA-STS.Example.ORG:443", mtaSTSPath, 200},
		{"host with trailing dot", setupServer(), "GET", "mta-sts.example.org.", mtaSTSPath, 200},
		{"second domain", setupServer(), "GET", "mta-sts.example.net", mtaSTSPath, 200},
		{"HEAD", setupServer(), "HEAD", "mta-sts.example.org", mtaSTSPath, 200},
		{"POST", setupServer(), "POST", "mta-sts.example.org", mtaSTSPath, 405},
		{"not a local domain", setupServer(), "GET", "mta-sts.other.test", mtaSTSPath, 404},
		{"not the mta-sts host", setupServer(), "GET", "example.org", mtaSTSPath, 404},
		{"mail host", setupServer(), "GET", "mail.example.org", mtaSTSPath, 404},
		{"no domain after the prefix", setupServer(), "GET", "mta-sts.", mtaSTSPath, 404},
		{"IP literal", setupServer(), "GET", "127.0.0.1:443", mtaSTSPath, 404},
		{"other path", setupServer(), "GET", "mta-sts.example.org", "/.well-known/mta-sts.txt/x", 404},
		{"mode empty: not served", off, "GET", "mta-sts.example.org", mtaSTSPath, 404},
		{"store fails", failing, "GET", "mta-sts.example.org", mtaSTSPath, 503},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := serve(tc.srv.Handler(), tc.method, tc.host, tc.path, nil)
			if rec.Code != tc.code {
				t.Fatalf("%s %s on %s: %d, want %d\n%s", tc.method, tc.path, tc.host, rec.Code, tc.code, rec.Body)
			}
			if rec.Code != 200 {
				return
			}
			if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("content type %q", ct)
			}
			if cl := rec.Header().Get("Content-Length"); cl != fmt.Sprint(len(want)) {
				t.Errorf("content length %s, want %d", cl, len(want))
			}
			if tc.method == "GET" && rec.Body.String() != want {
				t.Errorf("policy:\n%s\nwant:\n%s", rec.Body, want)
			}
		})
	}
}

// TestMTASTSPolicyID checks that the TXT id changes exactly when the served policy does.
func TestMTASTSPolicyID(t *testing.T) {
	week := 7 * 24 * time.Hour
	_, base := doctor.MTASTSPolicy("enforce", week, []string{"mail.example.org"})
	_, same := doctor.MTASTSPolicy("enforce", week, []string{"MAIL.example.org.", "mail.example.org"})
	if same != base {
		t.Errorf("the same policy written differently changed the id: %s, %s", base, same)
	}
	for _, tc := range []struct {
		name string
		mode string
		age  time.Duration
		mx   []string
	}{
		{"mode", "testing", week, []string{"mail.example.org"}},
		{"max_age", "enforce", 2 * week, []string{"mail.example.org"}},
		{"mx", "enforce", week, []string{"mail.example.org", "backup.example.net"}},
	} {
		_, id := doctor.MTASTSPolicy(tc.mode, tc.age, tc.mx)
		if id == base {
			t.Errorf("changing %s kept the id %s", tc.name, id)
		}
	}
	// The Server serves what MTASTSPolicy renders.
	s := setupServer()
	s.MX = []string{"backup.example.net."}
	want, _ := doctor.MTASTSPolicy("enforce", week, []string{"mail.example.org", "backup.example.net"})
	if got := serve(s.Handler(), "GET", "mta-sts.example.org", mtaSTSPath, nil).Body.String(); got != want {
		t.Errorf("served:\n%s\nwant:\n%s", got, want)
	}
}

// TestMTASTSOverHTTPS serves the policy over TLS with the MX hosts looked up through
// Repute's resolver from a DNS server, fetches it with the Go client, curl and
// postfix-mta-sts-resolver, and parses it with mox's parser.
func TestMTASTSOverHTTPS(t *testing.T) {
	dnsSrv, err := dnstest.Start(
		"example.org. MX 10 mail.example.org.",
		"example.org. MX 20 backup.example.net.",
		"example.net. MX 0 .", // null MX: no hosts beyond Hostname
	)
	if err != nil {
		t.Fatal(err)
	}
	defer dnsSrv.Close()
	s := setupServer()
	s.MX = []string{"backup.example.net"}
	ts := startTLS(t, s.Handler())
	policy, id := doctor.MTASTSPolicy("enforce", 7*24*time.Hour, []string{"mail.example.org", "backup.example.net"})
	dnsSrv.Add(`_mta-sts.example.org. TXT "v=STSv1; id=` + id + `"`)

	resp, body := ts.get(t, "mta-sts.example.org", mtaSTSPath)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" || body != policy {
		t.Fatalf("Go client: %s %q\n%s\nwant:\n%s", resp.Status, resp.Header.Get("Content-Type"), body, policy)
	}
	p, err := moxmtasts.ParsePolicy(body)
	if err != nil {
		t.Fatalf("mox parser: %v\n%s", err, body)
	}
	var mx []string
	for _, m := range p.MX {
		mx = append(mx, m.Domain.ASCII)
	}
	if p.Mode != moxmtasts.ModeEnforce || p.MaxAgeSeconds != 7*24*3600 ||
		!slices.Equal(mx, []string{"backup.example.net", "mail.example.org"}) {
		t.Errorf("mox parsed %+v, mx %v", p, mx)
	}
	// Every local domain gets the same policy: it follows the configuration, not the
	// domain's live MX records (a null MX here changes nothing).
	if resp, body := ts.get(t, "mta-sts.example.net", mtaSTSPath); resp.StatusCode != 200 || body != policy {
		t.Errorf("null MX domain: %s\n%s", resp.Status, body)
	}
	if resp, _ := ts.get(t, "mta-sts.other.test", mtaSTSPath); resp.StatusCode != 404 {
		t.Errorf("unknown domain over HTTPS: %s", resp.Status)
	}

	t.Run("curl", func(t *testing.T) {
		code, ct, got := ts.curl(t, "mta-sts.example.org", mtaSTSPath)
		if code != 200 || ct != "text/plain; charset=utf-8" || got != policy {
			t.Errorf("curl: %d %q\n%s", code, ct, got)
		}
		if code, _, _ := ts.curl(t, "mta-sts.other.test", mtaSTSPath); code != 404 {
			t.Errorf("curl, unknown domain: %d", code)
		}
	})

	t.Run("postfix-mta-sts-resolver", func(t *testing.T) {
		py := debianPython(t, "postfix_mta_sts_resolver", "postfix-mta-sts-resolver")
		host, port, _ := net.SplitHostPort(dnsSrv.Addr)
		cmd := exec.Command(py, "-c", stsResolverScript, host, port, ts.Port, "example.org")
		cmd.Env = append(os.Environ(), "SSL_CERT_FILE="+ts.CAFile)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("postfix-mta-sts-resolver: %v\n%s", err, stderrOf(err))
		}
		var res struct {
			Status string
			ID     string
			Policy struct {
				Version string
				Mode    string
				MaxAge  int `json:"max_age"`
				MX      []string
			}
		}
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		slices.Sort(res.Policy.MX)
		if res.Status != "VALID" || res.ID != id || res.Policy.Version != "STSv1" || res.Policy.Mode != "enforce" ||
			res.Policy.MaxAge != 7*24*3600 || !slices.Equal(res.Policy.MX, []string{"backup.example.net", "mail.example.org"}) {
			t.Errorf("postfix-mta-sts-resolver: %s", out)
		}
	})
}

// stsResolverScript runs postfix-mta-sts-resolver's STSResolver.resolve for a domain: the
// TXT lookup goes to the test DNS server, the HTTPS connection for mta-sts.DOMAIN to the
// test listener (only the address is redirected: TLS with SNI and certificate checks,
// the HTTP status, content type and size checks and the policy validation are its own).
const stsResolverScript = `
import asyncio, json, socket, sys
import aiodns, aiohttp.abc, aiohttp.connector
from postfix_mta_sts_resolver.resolver import STSResolver

dns_host, dns_port, https_port, domain = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]

class Loopback(aiohttp.abc.AbstractResolver):
    def __init__(self, *args, **kwargs):
        pass
    async def resolve(self, host, port=0, family=socket.AF_INET):
        return [{"hostname": host, "host": "127.0.0.1", "port": https_port,
                 "family": socket.AF_INET, "proto": 0, "flags": socket.AI_NUMERICHOST}]
    async def close(self):
        pass

aiohttp.connector.DefaultResolver = Loopback

async def main():
    loop = asyncio.get_running_loop()
    r = STSResolver(loop=loop, timeout=10)
    r._resolver = aiodns.DNSResolver(nameservers=[dns_host], loop=loop, udp_port=dns_port,
                                     tcp_port=dns_port, timeout=5, tries=1)
    status, res = await r.resolve(domain)
    print(json.dumps({"status": status.name, "id": res[0] if res else "", "policy": res[1] if res else {}}))

asyncio.run(main())
`

// debianPython returns /usr/bin/python3 if it can import module, else skips the test
// naming the Debian package that provides it.
func debianPython(t *testing.T, module, pkg string) string {
	t.Helper()
	const py = "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import "+module).Run(); err != nil {
		t.Skipf("%s has no module %s (apt-get install %s)", py, module, pkg)
	}
	return py
}

func stderrOf(err error) string {
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return string(ee.Stderr)
	}
	return ""
}
