package web

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The clientConfig 1.1 structure, mirrored strictly: every element the format defines
// for what we serve, and Unknown catches anything else.
type tbConfig struct {
	XMLName  xml.Name `xml:"clientConfig"`
	Version  string   `xml:"version,attr"`
	Provider struct {
		ID               string     `xml:"id,attr"`
		Domain           []string   `xml:"domain"`
		DisplayName      string     `xml:"displayName"`
		DisplayShortName string     `xml:"displayShortName"`
		Incoming         []tbServer `xml:"incomingServer"`
		Outgoing         []tbServer `xml:"outgoingServer"`
		Unknown          []anyElem  `xml:",any"`
	} `xml:"emailProvider"`
	Unknown []anyElem `xml:",any"`
}

type tbServer struct {
	Type           string    `xml:"type,attr"`
	Hostname       string    `xml:"hostname"`
	Port           int       `xml:"port"`
	SocketType     string    `xml:"socketType"`
	Username       string    `xml:"username"`
	Authentication []string  `xml:"authentication"`
	Unknown        []anyElem `xml:",any"`
}

type anyElem struct{ XMLName xml.Name }

func (s tbServer) String() string {
	return s.Type + " " + s.Hostname + ":" + strconv.Itoa(s.Port) + " " + s.SocketType + " " + s.Username + " " + strings.Join(s.Authentication, ",")
}

func decodeConfig(t *testing.T, body string) tbConfig {
	t.Helper()
	var c tbConfig
	if err := xml.Unmarshal([]byte(body), &c); err != nil {
		t.Fatalf("clientConfig: %v\n%s", err, body)
	}
	if len(c.Unknown)+len(c.Provider.Unknown) > 0 {
		t.Errorf("unknown elements: %v %v", c.Unknown, c.Provider.Unknown)
	}
	for _, s := range append(c.Provider.Incoming, c.Provider.Outgoing...) {
		if len(s.Unknown) > 0 {
			t.Errorf("unknown elements in %s: %v", s, s.Unknown)
		}
	}
	return c
}

func TestAutoconfig(t *testing.T) {
	noIMAP := setupServer()
	noIMAP.Ports = ClientPorts{Submissions: 465}
	onlyTLS := setupServer()
	onlyTLS.Ports = ClientPorts{IMAPS: 993, Submissions: 465}
	failing := setupServer()
	failing.Domains = func(context.Context) ([]string, error) { return nil, errors.New("database is locked") }
	q := "?emailaddress=" + url.QueryEscape("Bob.Smith@Example.ORG")
	for _, tc := range []struct {
		name, host, target string
		srv                *Server
		code               int
		domain             string
		servers            int
	}{
		{"autoconfig host, address", "autoconfig.example.org", autoconfigPath + q, setupServer(), 200, "example.org", 4},
		{"autoconfig host, no address", "autoconfig.example.net:443", autoconfigPath, setupServer(), 200, "example.net", 4},
		{"well-known, address", "example.org", wellKnownConfig + q, setupServer(), 200, "example.org", 4},
		{"well-known on the mail host", "mail.example.org", wellKnownConfig + q, setupServer(), 200, "example.org", 4},
		{"address wins over host", "autoconfig.example.net", autoconfigPath + q, setupServer(), 200, "example.org", 4},
		{"implicit TLS only", "autoconfig.example.org", autoconfigPath + q, onlyTLS, 200, "example.org", 2},
		{"HEAD", "autoconfig.example.org", autoconfigPath, setupServer(), 200, "", 0},
		{"unknown address domain", "autoconfig.example.org", autoconfigPath + "?emailaddress=bob%40other.test", setupServer(), 404, "", 0},
		{"unknown host", "autoconfig.other.test", autoconfigPath, setupServer(), 404, "", 0},
		{"mail host without address", "mail.example.org", wellKnownConfig, setupServer(), 404, "", 0},
		{"malformed address", "autoconfig.example.org", autoconfigPath + "?emailaddress=bob", setupServer(), 400, "", 0},
		{"address literal", "autoconfig.example.org", autoconfigPath + "?emailaddress=bob%40%5B127.0.0.1%5D", setupServer(), 400, "", 0},
		{"query too long", "autoconfig.example.org", autoconfigPath + "?emailaddress=" + strings.Repeat("a", 2000) + "%40example.org", setupServer(), 414, "", 0},
		{"no IMAP offered", "autoconfig.example.org", autoconfigPath, noIMAP, 404, "", 0},
		{"store fails", "autoconfig.example.org", autoconfigPath, failing, 503, "", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := "GET"
			if tc.name == "HEAD" {
				method = "HEAD"
			}
			rec := serve(tc.srv.Handler(), method, tc.host, tc.target, nil)
			if rec.Code != tc.code {
				t.Fatalf("%d, want %d: %s", rec.Code, tc.code, rec.Body)
			}
			if tc.code != 200 || method == "HEAD" {
				return
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/xml; charset=utf-8" {
				t.Errorf("content type %q", ct)
			}
			c := decodeConfig(t, rec.Body.String())
			p := c.Provider
			if c.Version != "1.1" || p.ID != tc.domain || len(p.Domain) != 1 || p.Domain[0] != tc.domain || p.DisplayName == "" {
				t.Errorf("provider: %+v", c)
			}
			var got []string
			for _, s := range append(p.Incoming, p.Outgoing...) {
				got = append(got, s.String())
			}
			want := []string{
				"imap mail.example.org:993 SSL %EMAILADDRESS% password-cleartext",
				"imap mail.example.org:143 STARTTLS %EMAILADDRESS% password-cleartext",
				"smtp mail.example.org:465 SSL %EMAILADDRESS% password-cleartext",
				"smtp mail.example.org:587 STARTTLS %EMAILADDRESS% password-cleartext",
			}
			if tc.servers == 2 {
				want = []string{want[0], want[2]}
			}
			if strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("servers:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// TestAutoconfigEscapes serves a host name with XML metacharacters (never a valid one,
// but the encoder must not care) and checks the document stays well-formed.
func TestAutoconfigEscapes(t *testing.T) {
	s := setupServer()
	s.Hostname = `mail<&">.example.org`
	rec := serve(s.Handler(), "GET", "autoconfig.example.org", autoconfigPath, nil)
	c := decodeConfig(t, rec.Body.String())
	if c.Provider.Incoming[0].Hostname != s.Hostname {
		t.Errorf("hostname %q", c.Provider.Incoming[0].Hostname)
	}
}

// TestAutoconfigOverHTTPS fetches the file as Thunderbird does, with the Go client and
// curl, and validates it against the format's schema with xmllint and for
// well-formedness with python3's xml.etree.
func TestAutoconfigOverHTTPS(t *testing.T) {
	ts := startTLS(t, setupServer().Handler())
	q := "?emailaddress=" + url.QueryEscape("bob@example.org")
	resp, body := ts.get(t, "autoconfig.example.org", autoconfigPath+q)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/xml; charset=utf-8" {
		t.Fatalf("Go client: %s %q\n%s", resp.Status, resp.Header.Get("Content-Type"), body)
	}
	decodeConfig(t, body)
	if resp, body2 := ts.get(t, "example.org", wellKnownConfig+q); resp.StatusCode != 200 || body2 != body {
		t.Errorf("well-known URL: %s\n%s", resp.Status, body2)
	}

	t.Run("curl", func(t *testing.T) {
		code, ct, got := ts.curl(t, "autoconfig.example.org", autoconfigPath+q)
		if code != 200 || ct != "application/xml; charset=utf-8" || got != body {
			t.Errorf("curl: %d %q\n%s", code, ct, got)
		}
	})
	t.Run("xmllint", func(t *testing.T) {
		if _, err := exec.LookPath("xmllint"); err != nil {
			t.Skip("xmllint not installed (apt-get install libxml2-utils)")
		}
		f := filepath.Join(t.TempDir(), "config-v1.1.xml")
		os.WriteFile(f, []byte(body), 0o600)
		out, err := exec.Command("xmllint", "--noout", "--schema", "testdata/clientconfig-1.1.xsd", f).CombinedOutput()
		if err != nil {
			t.Errorf("xmllint: %v\n%s\n%s", err, out, body)
		}
		// The schema is not vacuous: a file without outgoing servers fails it.
		bad := filepath.Join(t.TempDir(), "bad.xml")
		os.WriteFile(bad, []byte(strings.Replace(body, `<outgoingServer type="smtp">`, `<outgoingServer type="smtps">`, 1)), 0o600)
		if err := exec.Command("xmllint", "--noout", "--schema", "testdata/clientconfig-1.1.xsd", bad).Run(); err == nil {
			t.Error("xmllint accepted an outgoing server of type smtps")
		}
	})
	t.Run("python xml.etree", func(t *testing.T) {
		py := debianPython(t, "xml.etree.ElementTree", "python3")
		cmd := exec.Command(py, "-c", `import sys, xml.etree.ElementTree as ET
r = ET.parse(sys.stdin).getroot()
print(r.tag, r.get("version"), r.find("emailProvider").get("id"), len(r.findall("emailProvider/incomingServer")), len(r.findall("emailProvider/outgoingServer")))`)
		cmd.Stdin = strings.NewReader(body)
		out, err := cmd.Output()
		if err != nil || strings.TrimSpace(string(out)) != "clientConfig 1.1 example.org 2 2" {
			t.Errorf("xml.etree: %v %s %s", err, out, stderrOf(err))
		}
	})
}

// The Outlook 2006a response, mirrored with its namespaces.
type odResponse struct {
	XMLName  xml.Name `xml:"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006 Autodiscover"`
	Response struct {
		XMLName xml.Name `xml:"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a Response"`
		Account struct {
			AccountType string       `xml:"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a AccountType"`
			Action      string       `xml:"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a Action"`
			Protocol    []odProtocol `xml:"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a Protocol"`
		} `xml:"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a Account"`
	}
}

type odProtocol struct {
	Type, Server, LoginName, SPA, SSL, AuthRequired string
	Port                                            int
}

func (p odProtocol) String() string {
	return p.Type + " " + p.Server + ":" + strconv.Itoa(p.Port) + " login=" + p.LoginName + " SPA=" + p.SPA + " SSL=" + p.SSL + " auth=" + p.AuthRequired
}

type odError struct {
	XMLName  xml.Name `xml:"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006 Autodiscover"`
	Response struct {
		XMLName xml.Name `xml:"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006 Response"`
		Error   struct {
			Time      string `xml:"Time,attr"`
			ID        string `xml:"Id,attr"`
			ErrorCode int
			Message   string
		} `xml:"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006 Error"`
	}
}

// outlookRequest is an autodiscover request as Outlook sends it.
func outlookRequest(address, schema string) string {
	return `<?xml version="1.0" encoding="utf-8"?>
<Autodiscover xmlns="http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006">
  <Request>
    <EMailAddress>` + address + `</EMailAddress>
    <AcceptableResponseSchema>` + schema + `</AcceptableResponseSchema>
  </Request>
</Autodiscover>`
}

func TestAutodiscover(t *testing.T) {
	startTLSOnly := setupServer()
	startTLSOnly.Ports = ClientPorts{IMAP: 143, Submission: 587}
	noSubmission := setupServer()
	noSubmission.Ports = ClientPorts{IMAPS: 993}
	failing := setupServer()
	failing.Domains = func(context.Context) ([]string, error) { return nil, errors.New("database is locked") }
	ok := outlookRequest("Bob@Example.org", adOutlookNS)
	for _, tc := range []struct {
		name, method, path, body string
		srv                      *Server
		code                     int // HTTP status
		errCode                  int // autodiscover ErrorCode, 0 = settings
		imap, smtp               int // ports in the settings
	}{
		{"Outlook", "POST", autodiscoverPath, ok, setupServer(), 200, 0, 993, 465},
		{"capitalized path", "POST", "/Autodiscover/Autodiscover.xml", ok, setupServer(), 200, 0, 993, 465},
		{"upper-case path", "POST", "/AUTODISCOVER/AUTODISCOVER.XML", ok, setupServer(), 200, 0, 993, 465},
		{"no schema given", "POST", autodiscoverPath, outlookRequest("bob@example.org", ""), setupServer(), 200, 0, 993, 465},
		{"STARTTLS ports only", "POST", autodiscoverPath, ok, startTLSOnly, 200, 0, 143, 587},
		{"unknown domain", "POST", autodiscoverPath, outlookRequest("bob@other.test", adOutlookNS), setupServer(), 200, adNotFound, 0, 0},
		{"ActiveSync schema", "POST", autodiscoverPath, outlookRequest("bob@example.org", "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006"), setupServer(), 200, adNoSchema, 0, 0},
		{"no submission offered", "POST", autodiscoverPath, ok, noSubmission, 200, adNoSettings, 0, 0},
		{"store fails", "POST", autodiscoverPath, ok, failing, 200, adInternalError, 0, 0},
		{"GET", "GET", autodiscoverPath, "", setupServer(), 405, 0, 0, 0},
		{"not XML", "POST", autodiscoverPath, "EMailAddress=bob@example.org", setupServer(), 400, 0, 0, 0},
		{"other root element", "POST", autodiscoverPath, `<Request><EMailAddress>bob@example.org</EMailAddress></Request>`, setupServer(), 400, 0, 0, 0},
		{"no address", "POST", autodiscoverPath, outlookRequest("", adOutlookNS), setupServer(), 400, 0, 0, 0},
		{"malformed address", "POST", autodiscoverPath, outlookRequest("bob", adOutlookNS), setupServer(), 400, 0, 0, 0},
		{"truncated", "POST", autodiscoverPath, ok[:len(ok)-20], setupServer(), 400, 0, 0, 0},
		{"too large", "POST", autodiscoverPath, outlookRequest("bob@example.org", adOutlookNS+strings.Repeat(" ", 70<<10)), setupServer(), 413, 0, 0, 0},
		{"undefined entity", "POST", autodiscoverPath, strings.Replace(ok, "Bob@", "&bob;@", 1), setupServer(), 400, 0, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := serve(tc.srv.Handler(), tc.method, "autodiscover.example.org", tc.path, strings.NewReader(tc.body))
			if rec.Code != tc.code {
				t.Fatalf("%d, want %d: %s", rec.Code, tc.code, rec.Body)
			}
			if rec.Code != 200 {
				return
			}
			if tc.errCode != 0 {
				var e odError
				if err := xml.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Response.Error.ErrorCode != tc.errCode || e.Response.Error.Message == "" || e.Response.Error.Time == "" {
					t.Errorf("error response: %v %+v\n%s", err, e, rec.Body)
				}
				return
			}
			var r odResponse
			if err := xml.Unmarshal(rec.Body.Bytes(), &r); err != nil {
				t.Fatalf("%v\n%s", err, rec.Body)
			}
			a := r.Response.Account
			var got []string
			for _, p := range a.Protocol {
				got = append(got, p.String())
			}
			login := "Bob@example.org"
			if tc.name == "no schema given" {
				login = "bob@example.org"
			}
			want := []string{
				"IMAP mail.example.org:" + strconv.Itoa(tc.imap) + " login=" + login + " SPA=off SSL=on auth=on",
				"SMTP mail.example.org:" + strconv.Itoa(tc.smtp) + " login=" + login + " SPA=off SSL=on auth=on",
			}
			if a.AccountType != "email" || a.Action != "settings" || strings.Join(got, "\n") != strings.Join(want, "\n") {
				t.Errorf("account %s %s:\n%s\nwant:\n%s\n%s", a.AccountType, a.Action, strings.Join(got, "\n"), strings.Join(want, "\n"), rec.Body)
			}
		})
	}
}

// TestAutodiscoverExchangelib sends the request exchangelib (a Python Exchange client)
// builds and parses the answers with its autodiscover response classes.
func TestAutodiscoverExchangelib(t *testing.T) {
	py := debianPython(t, "exchangelib", "python3-exchangelib")
	ts := startTLS(t, setupServer().Handler())
	// requests resolves names itself, so it connects to 127.0.0.1 (in the certificate)
	// and names the virtual host in the Host header.
	script := `import json, sys, requests
from exchangelib.autodiscover.properties import Autodiscover
from exchangelib.errors import ErrorNonExistentMailbox
url, ca = sys.argv[1], sys.argv[2]
out = {}
for address in ("bob@example.org", "bob@other.test"):
    r = requests.post(url, data=Autodiscover.payload(address), verify=ca, timeout=10,
                      headers={"Host": "autodiscover.example.org", "Content-Type": "text/xml; charset=utf-8"})
    a = Autodiscover.from_bytes(r.content)
    try:
        a.raise_errors()
    except ErrorNonExistentMailbox as e:
        out[address] = {"status": r.status_code, "error": "ErrorNonExistentMailbox"}
        continue
    acc = a.response.account
    out[address] = {"status": r.status_code, "type": acc.type, "action": acc.action, "protocols": [
        {"type": p.type, "server": p.server, "port": p.port, "ssl": p.ssl, "spa": p.spa,
         "login": p.login_name, "auth_required": p.auth_required} for p in acc.protocols]}
print(json.dumps(out))
`
	out, err := exec.Command(py, "-c", script, "https://127.0.0.1:"+ts.Port+"/Autodiscover/Autodiscover.xml", ts.CAFile).Output()
	if err != nil {
		t.Fatalf("exchangelib: %v\n%s", err, stderrOf(err))
	}
	var got map[string]struct {
		Status       int
		Type, Action string
		Error        string
		Protocols    []struct {
			Type, Server, Login string
			Port                int
			SSL                 bool `json:"ssl"`
			SPA                 bool `json:"spa"`
			AuthRequired        bool `json:"auth_required"`
		}
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	ok := got["bob@example.org"]
	if ok.Status != 200 || ok.Type != "email" || ok.Action != "settings" || len(ok.Protocols) != 2 {
		t.Fatalf("exchangelib: %s", out)
	}
	for i, want := range []struct {
		typ  string
		port int
	}{{"IMAP", 993}, {"SMTP", 465}} {
		p := ok.Protocols[i]
		if p.Type != want.typ || p.Server != "mail.example.org" || p.Port != want.port || !p.SSL || p.SPA || !p.AuthRequired || p.Login != "bob@example.org" {
			t.Errorf("exchangelib protocol %d: %+v", i, p)
		}
	}
	if e := got["bob@other.test"]; e.Status != 200 || e.Error != "ErrorNonExistentMailbox" {
		t.Errorf("exchangelib, unknown domain: %s", out)
	}
}

func TestMobileconfig(t *testing.T) {
	for _, tc := range []struct {
		name, target string
		code         int
	}{
		{"address", mobileconfigPath + "?email=bob%40example.org", 200},
		{"unknown domain", mobileconfigPath + "?email=bob%40other.test", 404},
		{"no address", mobileconfigPath, 400},
		{"malformed address", mobileconfigPath + "?email=bob", 400},
		{"query too long", mobileconfigPath + "?email=" + strings.Repeat("b", 1100) + "%40example.org", 414},
	} {
		rec := serve(setupServer().Handler(), "GET", "mail.example.org", tc.target, nil)
		if rec.Code != tc.code {
			t.Errorf("%s: %d, want %d: %s", tc.name, rec.Code, tc.code, rec.Body)
		}
	}
	if rec := serve(setupServer().Handler(), "POST", "mail.example.org", mobileconfigPath+"?email=bob%40example.org", nil); rec.Code != 405 {
		t.Errorf("POST: %d", rec.Code)
	}
	// The same address gives the same profile (a reinstall replaces the account); another
	// address gives other identifiers.
	a := serve(setupServer().Handler(), "GET", "example.org", mobileconfigPath+"?email=bob%40example.org", nil).Body.String()
	b := serve(setupServer().Handler(), "GET", "mail.example.org", mobileconfigPath+"?email=bob%40example.org", nil).Body.String()
	c := serve(setupServer().Handler(), "GET", "mail.example.org", mobileconfigPath+"?email=carol%40example.org", nil).Body.String()
	if a != b || a == c {
		t.Errorf("profiles not deterministic per address")
	}
	if u := profileUUID("profile", "bob@example.org"); u[14] != '8' || !strings.ContainsAny(u[19:20], "89AB") || len(u) != 36 {
		t.Errorf("uuid %s: want version 8, variant 10", u)
	}
}

// TestMobileconfigPlistlib downloads the profile over HTTPS and parses it with python3's
// plistlib, the reader of Apple's property list format.
func TestMobileconfigPlistlib(t *testing.T) {
	py := debianPython(t, "plistlib", "python3")
	ts := startTLS(t, setupServer().Handler())
	target := mobileconfigPath + "?email=" + url.QueryEscape("Bob+lists@example.org")
	resp, body := ts.get(t, "mail.example.org", target)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-apple-aspen-config" ||
		resp.Header.Get("Content-Disposition") != `attachment; filename="example.org.mobileconfig"` {
		t.Fatalf("%s %v\n%s", resp.Status, resp.Header, body)
	}
	code, ct, curlBody := ts.curl(t, "mail.example.org", target)
	if code != 200 || ct != "application/x-apple-aspen-config" || curlBody != body {
		t.Errorf("curl: %d %q", code, ct)
	}
	cmd := exec.Command(py, "-c", `import json, plistlib, sys
p = plistlib.loads(sys.stdin.buffer.read())  # load() wants a seekable file, stdin is a pipe
print(json.dumps(p))`)
	cmd.Stdin = strings.NewReader(body)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("plistlib: %v %s\n%s", err, stderrOf(err), body)
	}
	var p map[string]any
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.UseNumber()
	if err := dec.Decode(&p); err != nil {
		t.Fatal(err)
	}
	content, _ := p["PayloadContent"].([]any)
	if len(content) != 1 {
		t.Fatalf("PayloadContent: %s", out)
	}
	acct := content[0].(map[string]any)
	for k, want := range map[string]any{
		"PayloadType": "Configuration", "PayloadVersion": json.Number("1"),
		"PayloadUUID": profileUUID("profile", "bob+lists@example.org"),
	} {
		if p[k] != want {
			t.Errorf("profile %s = %#v, want %#v", k, p[k], want)
		}
	}
	if id, _ := p["PayloadIdentifier"].(string); !strings.HasPrefix(id, "org.example.mail.") {
		t.Errorf("PayloadIdentifier %q", id)
	}
	for k, want := range map[string]any{
		"PayloadType":                      "com.apple.mail.managed",
		"EmailAccountType":                 "EmailTypeIMAP",
		"EmailAddress":                     "Bob+lists@example.org",
		"IncomingMailServerHostName":       "mail.example.org",
		"IncomingMailServerPortNumber":     json.Number("993"),
		"IncomingMailServerUseSSL":         true,
		"IncomingMailServerUsername":       "Bob+lists@example.org",
		"IncomingMailServerAuthentication": "EmailAuthPassword",
		"OutgoingMailServerHostName":       "mail.example.org",
		"OutgoingMailServerPortNumber":     json.Number("465"),
		"OutgoingMailServerUseSSL":         true,
		"OutgoingMailServerAuthentication": "EmailAuthPassword",
		"PayloadUUID":                      profileUUID("account", "bob+lists@example.org"),
	} {
		if acct[k] != want {
			t.Errorf("account %s = %#v, want %#v", k, acct[k], want)
		}
	}
}

func TestListenPorts(t *testing.T) {
	for _, tc := range []struct {
		imaps, imap, subs, sub string
		want                   ClientPorts
	}{
		{"0.0.0.0:993", "0.0.0.0:143", "0.0.0.0:465", "0.0.0.0:587", ClientPorts{993, 143, 465, 587}},
		{"[::]:993", "", ":465", "", ClientPorts{IMAPS: 993, Submissions: 465}},
		{"127.0.0.1:0", "localhost:imap", "bad", "1.2.3.4:70000", ClientPorts{}},
	} {
		if got := ListenPorts(tc.imaps, tc.imap, tc.subs, tc.sub); got != tc.want {
			t.Errorf("ListenPorts(%q, %q, %q, %q) = %+v, want %+v", tc.imaps, tc.imap, tc.subs, tc.sub, got, tc.want)
		}
	}
}
