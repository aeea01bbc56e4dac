package web

// Mail client set-up: a user types an address and a password, and the client finds the
// server names, ports and TLS modes here instead of asking for them.
//
//   - Thunderbird (and Evolution, K-9/Thunderbird for Android, KMail) fetch the autoconfig
//     file "clientConfig" 1.1 from https://autoconfig.DOMAIN/mail/config-v1.1.xml or
//     https://DOMAIN/.well-known/autoconfig/mail/config-v1.1.xml, with ?emailaddress=.
//   - Outlook (and Thunderbird as a fallback) POST a "POX" autodiscover request to
//     https://DOMAIN/autodiscover/autodiscover.xml or https://autodiscover.DOMAIN/...
//     and read the Outlook response schema 2006a ([MS-OXDSCLI]).
//   - Apple Mail has no discovery protocol for IMAP; it installs a configuration profile
//     (.mobileconfig, a property list) that the user downloads from /apple/mobileconfig.
//
// All three describe one account: IMAP and submission on Hostname, the login name is the
// address, the password is sent in the clear inside TLS. Only local domains get an
// answer; whether the user exists is not revealed (the answer is the same for every
// address of a domain).

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/xml"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/repute-mail/repute/internal/smtp"
)

// ClientPorts are the ports mail clients are told to use; zero means "not offered".
type ClientPorts struct {
	IMAPS       int // IMAP over implicit TLS (RFC 8314), 993
	IMAP        int // IMAP with STARTTLS, 143
	Submissions int // submission over implicit TLS (RFC 8314), 465
	Submission  int // submission with STARTTLS (RFC 6409), 587
}

// ListenPorts takes the ports from the listen addresses ("host:port", "" = off; config
// listen.imaps, listen.imap, listen.submissions, listen.submission). A port of 0 (bound
// at random) counts as not offered.
func ListenPorts(imaps, imap, submissions, submission string) ClientPorts {
	port := func(addr string) int {
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			return 0
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 65535 {
			return 0
		}
		return n
	}
	return ClientPorts{IMAPS: port(imaps), IMAP: port(imap), Submissions: port(submissions), Submission: port(submission)}
}

// maxQuery bounds the query string of the GET endpoints; an address is at most 256 bytes
// (RFC 5321 §4.5.3.1.3), percent-encoding triples that.
const maxQuery = 1024

// maxAutodiscover bounds an autodiscover request body; Outlook's is about 400 bytes.
const maxAutodiscover = 64 << 10

// Paths.
const (
	autoconfigPath   = "/mail/config-v1.1.xml"
	wellKnownConfig  = "/.well-known/autoconfig/mail/config-v1.1.xml"
	autodiscoverPath = "/autodiscover/autodiscover.xml"
	mobileconfigPath = "/apple/mobileconfig"
)

// clientDomain finds the domain a set-up request is about: the domain of address when
// one is given, else the request's host without prefix (autoconfig.DOMAIN). It answers
// 400 for a malformed address and 404 for a domain that is not ours.
func (s *Server) clientDomain(ctx context.Context, r *http.Request, address, prefix string) (smtp.Address, string, int) {
	if address == "" {
		d, st := s.localDomain(ctx, strings.TrimPrefix(requestHost(r), prefix))
		return smtp.Address{}, d, st
	}
	a, err := parseClientAddress(address)
	if err != nil {
		return smtp.Address{}, "", http.StatusBadRequest
	}
	d, st := s.localDomain(ctx, a.Domain)
	return a, d, st
}

// parseClientAddress parses the address a user typed into a mail client.
func parseClientAddress(s string) (smtp.Address, error) {
	if len(s) > smtp.MaxPath {
		return smtp.Address{}, errors.New("address too long")
	}
	a, err := smtp.ParseAddress(s)
	if err != nil {
		return smtp.Address{}, err
	}
	if a.Local == "" || strings.HasPrefix(a.Domain, "[") {
		return smtp.Address{}, errors.New("not a mailbox address at a domain")
	}
	return a, nil
}

// getQuery reads a GET endpoint's query, refusing an oversized one.
func getQuery(w http.ResponseWriter, r *http.Request, key string) (string, bool) {
	if len(r.URL.RawQuery) > maxQuery {
		http.Error(w, "query too long", http.StatusRequestURITooLong)
		return "", false
	}
	return r.URL.Query().Get(key), true
}

// The Thunderbird autoconfig file, clientConfig version 1.1
// (https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat).
type clientConfig struct {
	XMLName  xml.Name   `xml:"clientConfig"`
	Version  string     `xml:"version,attr"`
	Provider ccProvider `xml:"emailProvider"`
}

type ccProvider struct {
	ID               string     `xml:"id,attr"`
	Domain           string     `xml:"domain"`
	DisplayName      string     `xml:"displayName"`
	DisplayShortName string     `xml:"displayShortName"`
	Incoming         []ccServer `xml:"incomingServer"`
	Outgoing         []ccServer `xml:"outgoingServer"`
}

type ccServer struct {
	Type           string `xml:"type,attr"`
	Hostname       string `xml:"hostname"`
	Port           int    `xml:"port"`
	SocketType     string `xml:"socketType"` // "SSL" (implicit TLS) or "STARTTLS"
	Username       string `xml:"username"`
	Authentication string `xml:"authentication"`
}

// autoconfig serves the clientConfig file. Implicit TLS comes first in each list: clients
// try the servers in order, and RFC 8314 §3 prefers it to STARTTLS.
func (s *Server) autoconfig(w http.ResponseWriter, r *http.Request) {
	address, ok := getQuery(w, r, "emailaddress")
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), lookupTimeout)
	defer cancel()
	_, domain, status := s.clientDomain(ctx, r, address, "autoconfig.")
	if status != http.StatusOK {
		http.Error(w, http.StatusText(status), status)
		return
	}
	server := func(typ string, port int, socket string) ccServer {
		// %EMAILADDRESS% is replaced by the client with the address the user typed.
		return ccServer{Type: typ, Hostname: s.Hostname, Port: port, SocketType: socket,
			Username: "%EMAILADDRESS%", Authentication: "password-cleartext"}
	}
	p := ccProvider{ID: domain, Domain: domain, DisplayName: "Mail at " + domain, DisplayShortName: domain}
	if s.Ports.IMAPS != 0 {
		p.Incoming = append(p.Incoming, server("imap", s.Ports.IMAPS, "SSL"))
	}
	if s.Ports.IMAP != 0 {
		p.Incoming = append(p.Incoming, server("imap", s.Ports.IMAP, "STARTTLS"))
	}
	if s.Ports.Submissions != 0 {
		p.Outgoing = append(p.Outgoing, server("smtp", s.Ports.Submissions, "SSL"))
	}
	if s.Ports.Submission != 0 {
		p.Outgoing = append(p.Outgoing, server("smtp", s.Ports.Submission, "STARTTLS"))
	}
	if len(p.Incoming) == 0 || len(p.Outgoing) == 0 {
		http.NotFound(w, r) // no IMAP or no submission: nothing a client could set up
		return
	}
	writeXML(w, clientConfig{Version: "1.1", Provider: p})
}

// writeXML writes v as an XML document; encoding/xml escapes every value.
func writeXML(w http.ResponseWriter, v any) {
	var b bytes.Buffer
	b.WriteString(xml.Header)
	enc := xml.NewEncoder(&b)
	enc.Indent("", "  ")
	if err := enc.Encode(v); err != nil {
		http.Error(w, "cannot render the answer", http.StatusInternalServerError)
		return
	}
	b.WriteByte('\n')
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	w.Write(b.Bytes())
}

// Autodiscover namespaces ([MS-OXDSCLI] §2.2.3, §2.2.4).
const (
	adRequestNS  = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
	adResponseNS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
	adOutlookNS  = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
)

// adRequest is an autodiscover request. Namespaces are not checked: the element names
// are, and clients differ in how they spell the namespace.
type adRequest struct {
	XMLName xml.Name `xml:"Autodiscover"`
	Request struct {
		EMailAddress             string
		AcceptableResponseSchema string
	}
}

// adQuery is what a well-formed request asks.
type adQuery struct {
	Address smtp.Address
	Schema  string // AcceptableResponseSchema, "" when absent
}

// errBadRequest says a body is no autodiscover request.
var errBadRequest = errors.New("malformed autodiscover request")

// parseAutodiscover reads an autodiscover request. encoding/xml expands no entities
// other than the five predefined ones, so a hostile document cannot grow in memory; the
// caller bounds the body's size.
func parseAutodiscover(r io.Reader) (adQuery, error) {
	var req adRequest
	d := xml.NewDecoder(r)
	if err := d.Decode(&req); err != nil {
		return adQuery{}, fmt.Errorf("%w: %w", errBadRequest, err)
	}
	a, err := parseClientAddress(strings.TrimSpace(req.Request.EMailAddress))
	if err != nil {
		return adQuery{}, fmt.Errorf("%w: EMailAddress: %v", errBadRequest, err)
	}
	return adQuery{Address: a, Schema: strings.TrimSpace(req.Request.AcceptableResponseSchema)}, nil
}

// adResponse is the Outlook 2006a settings response ([MS-OXDSCLI] §2.2.4.1).
type adResponse struct {
	XMLName  xml.Name `xml:"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006 Autodiscover"`
	Response struct {
		XMLName xml.Name `xml:"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a Response"`
		User    struct {
			DisplayName string
		}
		Account struct {
			AccountType string
			Action      string
			Protocol    []adProtocol
		}
	}
}

// adProtocol's fields are in the order of the schema's sequence.
type adProtocol struct {
	Type           string // IMAP, SMTP
	Server         string
	Port           int
	LoginName      string
	DomainRequired string
	SPA            string // Secure Password Authentication (NTLM): off
	SSL            string // implicit TLS: on
	AuthRequired   string
}

// adError is an autodiscover error response ([MS-OXDSCLI] §2.2.4.1.1.3); the Response
// element is in the base namespace, as Exchange sends it.
type adError struct {
	XMLName  xml.Name `xml:"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006 Autodiscover"`
	Response struct {
		Error struct {
			Time      string `xml:"Time,attr"`
			ID        string `xml:"Id,attr"`
			ErrorCode int
			Message   string
			DebugData string
		}
	}
}

// Autodiscover error codes ([MS-OXDSCLI] §2.2.4.1.1.3.2).
const (
	adNotFound      = 500 // the email address cannot be found
	adNoSettings    = 501 // the address is known but has no configuration options
	adNoSchema      = 601 // the requested response schema is not available
	adInternalError = 603
)

// autodiscoverAnyCase serves the autodiscover path whatever its letter case (Outlook
// asks for /autodiscover/autodiscover.xml, guides and other clients capitalize it) and
// passes every other request to next.
func (s *Server) autodiscoverAnyCase(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.EqualFold(r.URL.Path, autodiscoverPath) {
			s.autodiscover(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// autodiscover answers a POX autodiscover request on any host (DOMAIN,
// autodiscover.DOMAIN or the server's own name): the domain is the address's. An
// address outside our domains gets error 500, "the email address cannot be found", in
// an HTTP 200 response: [MS-OXDSCLI] §3.2.5 says a server that encounters an error
// answers with an Error element, and a client reading it knows this server has no
// settings for the address rather than that the URL is wrong. A body that is no
// autodiscover request at all gets HTTP 400.
func (s *Server) autodiscover(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "autodiscover takes a POST", http.StatusMethodNotAllowed)
		return
	}
	q, err := parseAutodiscover(http.MaxBytesReader(w, r.Body, maxAutodiscover))
	if err != nil {
		if _, big := errors.AsType[*http.MaxBytesError](err); big {
			http.Error(w, "request too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "malformed autodiscover request", http.StatusBadRequest)
		return
	}
	if q.Schema != "" && q.Schema != adOutlookNS {
		s.autodiscoverError(w, q, adNoSchema, "Provider is not available.")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), lookupTimeout)
	defer cancel()
	domain, status := s.localDomain(ctx, q.Address.Domain)
	switch {
	case status == http.StatusServiceUnavailable:
		s.autodiscoverError(w, q, adInternalError, "The server could not look up the address; try again later.")
		return
	case status != http.StatusOK:
		// The wording Exchange uses; clients (exchangelib) match on it.
		s.autodiscoverError(w, q, adNotFound, "The email address can't be found.")
		return
	}
	address := smtp.Address{Local: q.Address.Local, Domain: domain}.String()
	var resp adResponse
	resp.Response.User.DisplayName = address
	resp.Response.Account.AccountType = "email"
	resp.Response.Account.Action = "settings"
	proto := func(typ string, port int) adProtocol {
		return adProtocol{Type: typ, Server: s.Hostname, Port: port, DomainRequired: "off",
			LoginName: address, SPA: "off", SSL: "on", AuthRequired: "on"}
	}
	// The 2006a schema has no way to say STARTTLS apart from implicit TLS, so the implicit
	// TLS port is given when there is one, else the STARTTLS port with SSL on.
	if p := cmp.Or(s.Ports.IMAPS, s.Ports.IMAP); p != 0 {
		resp.Response.Account.Protocol = append(resp.Response.Account.Protocol, proto("IMAP", p))
	}
	if p := cmp.Or(s.Ports.Submissions, s.Ports.Submission); p != 0 {
		resp.Response.Account.Protocol = append(resp.Response.Account.Protocol, proto("SMTP", p))
	}
	if len(resp.Response.Account.Protocol) != 2 {
		s.autodiscoverError(w, q, adNoSettings, "No IMAP or no submission service is offered.")
		return
	}
	writeXML(w, resp)
}

func (s *Server) autodiscoverError(w http.ResponseWriter, q adQuery, code int, msg string) {
	var e adError
	// Time and Id as Exchange fills them: a time of day and a number naming the server.
	e.Response.Error.Time = time.Now().UTC().Format("15:04:05.0000000")
	h := fnv.New32a()
	h.Write([]byte(s.Hostname))
	e.Response.Error.ID = strconv.FormatUint(uint64(h.Sum32()), 10)
	e.Response.Error.ErrorCode = code
	e.Response.Error.Message = msg
	s.logger().Debug("web: autodiscover error", "address", q.Address.String(), "code", code)
	writeXML(w, e)
}

// mobileconfig serves an Apple configuration profile with one com.apple.mail.managed
// payload for the address in ?email=. The profile is not signed: a device shows it as
// "Unverified" and installs it after the user confirms. Signing needs the key of a
// certificate a device trusts, which a mail server should not lend to a web endpoint.
func (s *Server) mobileconfig(w http.ResponseWriter, r *http.Request) {
	address, ok := getQuery(w, r, "email")
	if !ok {
		return
	}
	if address == "" {
		http.Error(w, "missing ?email=ADDRESS", http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), lookupTimeout)
	defer cancel()
	a, domain, status := s.clientDomain(ctx, r, address, "")
	if status != http.StatusOK {
		http.Error(w, http.StatusText(status), status)
		return
	}
	a.Domain = domain
	imap := cmp.Or(s.Ports.IMAPS, s.Ports.IMAP)
	submission := cmp.Or(s.Ports.Submissions, s.Ports.Submission)
	if imap == 0 || submission == 0 {
		http.NotFound(w, r)
		return
	}
	body := appleProfile(a, s.Hostname, imap, submission)
	h := w.Header()
	h.Set("Content-Type", "application/x-apple-aspen-config")
	h.Set("Content-Disposition", `attachment; filename="`+domain+`.mobileconfig"`)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
}

// appleProfile renders the configuration profile. The UUIDs and identifiers are derived
// from the address, so downloading the profile again and installing it replaces the
// account instead of adding a second one.
func appleProfile(a smtp.Address, hostname string, imapPort, submissionPort int) []byte {
	addr := a.String()
	id := reverseDomain(a.Domain) + ".mail." + strings.ToLower(profileUUID("profile", a.Key()))
	account := plistDict{
		{"EmailAccountDescription", addr},
		{"EmailAccountType", "EmailTypeIMAP"},
		{"EmailAddress", addr},
		{"IncomingMailServerAuthentication", "EmailAuthPassword"},
		{"IncomingMailServerHostName", hostname},
		{"IncomingMailServerPortNumber", imapPort},
		{"IncomingMailServerUseSSL", true},
		{"IncomingMailServerUsername", addr},
		{"OutgoingMailServerAuthentication", "EmailAuthPassword"},
		{"OutgoingMailServerHostName", hostname},
		{"OutgoingMailServerPortNumber", submissionPort},
		{"OutgoingMailServerUseSSL", true},
		{"OutgoingMailServerUsername", addr},
		{"OutgoingPasswordSameAsIncomingPassword", true},
		{"PayloadDescription", "Mail account " + addr},
		{"PayloadDisplayName", addr},
		{"PayloadIdentifier", id + ".account"},
		{"PayloadType", "com.apple.mail.managed"},
		{"PayloadUUID", profileUUID("account", a.Key())},
		{"PayloadVersion", 1},
	}
	profile := plistDict{
		{"PayloadContent", []plistDict{account}},
		{"PayloadDescription", "Sets up " + addr + " (IMAP and SMTP on " + hostname + ")"},
		{"PayloadDisplayName", "Mail: " + addr},
		{"PayloadIdentifier", id},
		{"PayloadOrganization", a.Domain},
		{"PayloadRemovalDisallowed", false},
		{"PayloadType", "Configuration"},
		{"PayloadUUID", profileUUID("profile", a.Key())},
		{"PayloadVersion", 1},
	}
	var b bytes.Buffer
	b.WriteString(xml.Header)
	b.WriteString(`<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">` + "\n")
	b.WriteString(`<plist version="1.0">` + "\n")
	profile.write(&b, "")
	b.WriteString("</plist>\n")
	return b.Bytes()
}

// profileUUID derives a UUID from a label and an address: the first 128 bits of SHA-256
// with the version and variant bits of RFC 9562 §5.8 (version 8, the one for
// name-based UUIDs with a hash other than MD5 or SHA-1).
func profileUUID(label, key string) string {
	sum := sha256.Sum256([]byte("repute mobileconfig\x00" + label + "\x00" + key))
	u := sum[:16]
	u[6] = u[6]&0x0f | 0x80
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("%X-%X-%X-%X-%X", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// reverseDomain turns "mail.example.org" into "org.example.mail".
func reverseDomain(d string) string {
	l := strings.Split(d, ".")
	slices.Reverse(l)
	return strings.Join(l, ".")
}

// plistDict is a property-list dictionary whose keys keep their order. Values are
// string, int, bool or []plistDict.
type plistDict []struct {
	Key   string
	Value any
}

func (d plistDict) write(b *bytes.Buffer, indent string) {
	b.WriteString(indent + "<dict>\n")
	in := indent + "  "
	for _, e := range d {
		b.WriteString(in + "<key>")
		xml.EscapeText(b, []byte(e.Key))
		b.WriteString("</key>\n")
		switch v := e.Value.(type) {
		case string:
			b.WriteString(in + "<string>")
			xml.EscapeText(b, []byte(v))
			b.WriteString("</string>\n")
		case int:
			fmt.Fprintf(b, "%s<integer>%d</integer>\n", in, v)
		case bool:
			fmt.Fprintf(b, "%s<%t/>\n", in, v)
		case []plistDict:
			b.WriteString(in + "<array>\n")
			for _, sub := range v {
				sub.write(b, in+"  ")
			}
			b.WriteString(in + "</array>\n")
		default:
			panic(fmt.Sprintf("plist: unsupported value %T", v))
		}
	}
	b.WriteString(indent + "</dict>\n")
}
