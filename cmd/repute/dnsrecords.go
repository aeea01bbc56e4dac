package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/repute-mail/repute/internal/auth"
	"github.com/repute-mail/repute/internal/config"
	"github.com/repute-mail/repute/internal/doctor"
	"github.com/repute-mail/repute/internal/store"
	"github.com/repute-mail/repute/internal/tlsconf"
)

// addDomainKeys generates and stores the DKIM keys of a new domain: RSA-2048 always, and an
// Ed25519 key (RFC 8463) as well when asked for; every message is then signed with each.
func addDomainKeys(ctx context.Context, db *store.DB, domain string, ed25519 bool, now time.Time) ([]auth.DKIMKey, error) {
	algs := []auth.KeyAlgorithm{auth.KeyRSA}
	if ed25519 {
		algs = append(algs, auth.KeyEd25519)
	}
	var keys []auth.DKIMKey
	for _, alg := range algs {
		k, err := auth.GenerateDKIMKey(domain, alg, now)
		if err != nil {
			return nil, err
		}
		pem, err := k.MarshalPrivate()
		if err != nil {
			return nil, err
		}
		if err := db.AddDKIMKey(ctx, store.DKIMKey{Domain: domain, Selector: k.Selector, Algorithm: string(alg), PrivatePEM: pem}); err != nil {
			return nil, err
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// cmdDNSRecords prints every DNS record the local domains (those named, or all) need: a
// zone-file snippet with each record's reason as comments, or with --json the records as
// data (docs/CONTRACTS.md §12), notes then going to standard error.
func cmdDNSRecords(e *env, args []string) error {
	pos, err := parseFlags(stdFlags(e, "dns records", true), args)
	if err != nil {
		return errUsage
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	return withStore(e, func(ctx context.Context, db *store.DB) error {
		setup, notes, err := dnsSetup(ctx, cfg, db, pos, time.Now())
		if err != nil {
			return err
		}
		recs := doctor.Records(setup)
		if e.json {
			var out []doctor.Record
			for _, r := range recs {
				if r.IsNote() {
					notes = append(notes, r.Comment)
				} else {
					out = append(out, r)
				}
			}
			for _, n := range notes {
				fmt.Fprintf(e.stderr, "note: %s\n", n)
			}
			return printJSON(e.stdout, nonNil(out))
		}
		names := make([]string, len(setup.Domains))
		for i, d := range setup.Domains {
			names[i] = d.Name
		}
		fmt.Fprintf(e.stdout, "; DNS records for %s (mail server %s).\n", strings.Join(names, ", "), setup.Hostname)
		fmt.Fprintf(e.stdout, "; Publish each in the zone that holds its name ('repute dns push' does it by RFC 2136 update).\n")
		for _, n := range notes {
			fmt.Fprintf(e.stdout, "; Note: %s\n", n)
		}
		fmt.Fprintln(e.stdout)
		return doctor.WriteZone(e.stdout, recs)
	})
}

// cmdDNSPush publishes the records of cmdDNSRecords by RFC 2136 dynamic update, signed
// with a TSIG key, zone by zone: each record goes to the zone that holds it on the server.
func cmdDNSPush(e *env, args []string) error {
	fs := stdFlags(e, "dns push", false)
	server := fs.String("server", "", "IP:PORT of the zone's primary server")
	keyFile := fs.String("tsig-key", "", "TSIG key file (tsig-keygen or keymgr -t output)")
	zoneFlag := fs.String("zone", "", "the zone to update, when the server's SOA answers do not find it")
	pos, err := parseFlags(fs, args)
	if err != nil || *server == "" || *keyFile == "" {
		return errUsage
	}
	addr, err := serverAddr(*server)
	if err != nil {
		return err
	}
	key, err := doctor.ReadTSIGKey(*keyFile)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	return withStore(e, func(ctx context.Context, db *store.DB) error {
		setup, notes, err := dnsSetup(ctx, cfg, db, pos, time.Now())
		if err != nil {
			return err
		}
		for _, n := range notes {
			fmt.Fprintf(e.stderr, "note: %s\n", n)
		}
		ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		zones, order, err := groupByZone(ctx, e, addr, key, *zoneFlag, setup, doctor.Records(setup))
		if err != nil {
			return err
		}
		var errs []error
		for _, z := range order {
			if err := doctor.Push(ctx, addr, key, z, zones[z]); err != nil {
				errs = append(errs, err)
				continue
			}
			fmt.Fprintf(e.stdout, "%s: %d records published at %s\n", z, len(zones[z]), addr)
		}
		return errors.Join(errs...)
	})
}

// groupByZone sorts the records into the zones that hold them on the server (all into
// zoneFlag when it is set). The mail host's own records may live in a zone this server
// does not serve: they are then left out with a warning, not an error.
func groupByZone(ctx context.Context, e *env, server string, key doctor.TSIGKey, zoneFlag string,
	setup doctor.Setup, recs []doctor.Record) (map[string][]doctor.Record, []string, error) {
	zoneOf := map[string]string{}
	zones := map[string][]doctor.Record{}
	var order []string
	for _, r := range recs {
		if r.IsNote() {
			continue
		}
		z, ok := zoneOf[r.Domain]
		if !ok {
			hostOnly := r.Domain == setup.Hostname && !isSetupDomain(setup, r.Domain)
			var err error
			if z = zoneFlag; z == "" {
				z, err = doctor.FindZone(ctx, server, key, r.Domain)
			} else if !inZone(r.Domain, z) {
				err = fmt.Errorf("%s is not in zone %s", r.Domain, z)
			}
			switch {
			case err != nil && hostOnly:
				fmt.Fprintf(e.stderr, "warning: the mail host's records (A/AAAA, SPF and TLSA of %s) are not "+
					"published: %v\n", r.Domain, err)
				z = ""
			case err != nil:
				return nil, nil, err
			}
			zoneOf[r.Domain] = z
		}
		if z == "" {
			continue
		}
		if _, ok := zones[z]; !ok {
			order = append(order, z)
		}
		zones[z] = append(zones[z], r)
	}
	return zones, order, nil
}

// inZone reports whether name is zone or lies under it.
func inZone(name, zone string) bool {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	zone = strings.ToLower(strings.TrimSuffix(zone, "."))
	return name == zone || strings.HasSuffix(name, "."+zone)
}

func isSetupDomain(s doctor.Setup, name string) bool {
	return slices.ContainsFunc(s.Domains, func(d doctor.Domain) bool { return d.Name == name })
}

// serverAddr accepts "IP:PORT", or an IP alone for port 53.
func serverAddr(s string) (string, error) {
	if _, _, err := net.SplitHostPort(s); err == nil {
		return s, nil
	}
	if ip, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return netip.AddrPortFrom(ip, 53).String(), nil
	}
	return "", fmt.Errorf("--server %q: give the primary server as IP:PORT, such as 192.0.2.53:53", s)
}

// dnsSetup reads what the records are computed from: the configuration and the named
// local domains (all of them when names is empty) with the DKIM keys to publish. The notes
// say what could not be known.
func dnsSetup(ctx context.Context, cfg config.Config, db *store.DB, names []string, now time.Time) (doctor.Setup, []string, error) {
	var notes []string
	s := doctor.Setup{
		Hostname:     strings.ToLower(strings.TrimSuffix(cfg.Hostname, ".")),
		MTASTSMode:   cfg.MTASTS.Mode,
		MTASTSMaxAge: cfg.MTASTS.MaxAge.Duration,
		ReportsLocal: cfg.Reports.LocalPart,
	}
	domains, err := localDomains(ctx, db, names)
	if err != nil {
		return s, nil, err
	}
	for _, d := range domains {
		keys, err := publishedKeys(ctx, db, d, now)
		if err != nil {
			return s, nil, err
		}
		s.Domains = append(s.Domains, doctor.Domain{Name: d, DKIM: keys})
	}
	s.SendIPs, notes = sendIPs(cfg.Outbound, notes)
	s.HostIPs = s.SendIPs
	s.Relay = cfg.Outbound.Relay
	if s.Relay == "" {
		s.Relay = cfg.Outbound.FallbackRelay
	}
	if host, _, err := net.SplitHostPort(s.Relay); err == nil {
		if ip, err := netip.ParseAddr(host); err == nil {
			ip = ip.Unmap()
			s.RelaySPF = "ip4:" + ip.String()
			if ip.Is6() {
				s.RelaySPF = "ip6:" + ip.String()
			}
		}
	}
	var note string
	s.ACMECA, note = acmeIssuer(cfg.TLS)
	if note != "" {
		notes = append(notes, note)
	}
	certFile := cfg.TLS.CertFile
	if certFile == "" && cfg.TLS.ACMEEmail == "" {
		certFile = tlsconf.SelfSignedCertPath(cfg.DataDir)
	}
	s.TLSAKeys, err = doctor.TLSAKeysFromFiles(certFile, filepath.Join(cfg.TLSDir(), "next-key.pem"))
	if err != nil {
		notes = append(notes, fmt.Sprintf("no TLSA records: %v", err))
		s.TLSAKeys = nil
	}
	return s, notes, nil
}

// localDomains returns names, normalised and checked to be local domains, or every local
// domain when names is empty.
func localDomains(ctx context.Context, db *store.DB, names []string) ([]string, error) {
	if len(names) == 0 {
		all, err := db.Domains(ctx)
		if err != nil {
			return nil, err
		}
		if len(all) == 0 {
			return nil, errors.New("there is no local domain yet (add one with 'repute domain add DOMAIN')")
		}
		for _, d := range all {
			names = append(names, d.Name)
		}
	}
	var out []string
	for _, n := range names {
		d := strings.ToLower(strings.TrimSuffix(n, "."))
		if ok, err := db.IsLocalDomain(ctx, d); err != nil {
			return nil, err
		} else if !ok {
			return nil, fmt.Errorf("%s is not a local domain (add it with 'repute domain add %s')", d, d)
		}
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out, nil
}

// publishedKeys returns the DKIM keys of domain whose records must be published: active
// and pending keys, and retired ones within retiredGrace of their retirement.
func publishedKeys(ctx context.Context, db *store.DB, domain string, now time.Time) ([]doctor.DKIMKey, error) {
	keys, err := db.DKIMKeys(ctx, domain)
	if err != nil {
		return nil, err
	}
	var out []doctor.DKIMKey
	for _, k := range keys {
		until := time.Unix(k.Changed, 0).Add(retiredGrace)
		if k.State == store.KeyRetired && now.After(until) {
			continue // past its grace period: the record can go
		}
		dk, err := auth.ParseDKIMKey(k.Domain, k.Selector, k.PrivatePEM)
		if err != nil {
			return nil, fmt.Errorf("DKIM key %s of %s: %w", k.Selector, domain, err)
		}
		_, txt := dk.DNSRecord()
		rk := doctor.DKIMKey{Selector: k.Selector, Algorithm: k.Algorithm, State: k.State, Record: txt}
		if k.State == store.KeyRetired {
			rk.RetireBy = until
		}
		out = append(out, rk)
	}
	return out, nil
}

// sendIPs are the addresses receivers see mail come from: outbound.public_ips, else
// outbound.source_ips, else the addresses of this host's interfaces.
func sendIPs(o config.Outbound, notes []string) ([]netip.Addr, []string) {
	list := o.PublicIPs
	if len(list) == 0 {
		list = o.SourceIPs
	}
	var ips []netip.Addr
	for _, s := range list {
		if ip, err := netip.ParseAddr(s); err == nil {
			ips = append(ips, ip.Unmap())
		}
	}
	if len(ips) > 0 {
		return ips, notes
	}
	ips, err := doctor.LocalIPs()
	if err != nil {
		return nil, append(notes, err.Error())
	}
	return ips, append(notes, "the sending addresses are this host's interface addresses; if mail leaves "+
		"through NAT, set outbound.public_ips to the address the world sees")
}

// acmeIssuer returns the CAA issuer domain (RFC 8659 §4.2) of the ACME CA tls.acme_directory
// names, "" without ACME. For a CA it does not know it returns "" and a note: a wrong CAA
// record would stop the CA from issuing.
func acmeIssuer(t config.TLS) (string, string) {
	if t.ACMEEmail == "" {
		return "", ""
	}
	if t.ACMEDirectory == "" {
		return "letsencrypt.org", ""
	}
	u, err := url.Parse(t.ACMEDirectory)
	if err != nil {
		return "", ""
	}
	host := strings.ToLower(u.Hostname())
	for suffix, issuer := range map[string]string{
		"letsencrypt.org": "letsencrypt.org",
		"zerossl.com":     "sectigo.com",
		"pki.goog":        "pki.goog",
		"buypass.com":     "buypass.com",
		"ssl.com":         "ssl.com",
	} {
		if host == suffix || strings.HasSuffix(host, "."+suffix) {
			return issuer, ""
		}
	}
	return "", fmt.Sprintf("no CAA record: the CAA issuer domain of the ACME CA at %s is not known; "+
		"if you want one, publish DOMAIN CAA 0 issue \"ISSUER\" with the issuer domain the CA documents", host)
}
