// Command provsimd runs the simulated Gmail, Microsoft and Yahoo of test/provsim as a
// daemon for bench/pushback.sh, which sends the same mail through Repute and through
// Postfix to them. Postfix cannot be pointed at a simulator inside a Go test: it looks
// its destinations up in DNS and delivers to port 25. So provsimd starts, all on
// loopback:
//
//   - one simulated provider per address (-google, -microsoft, -yahoo; port 25 by
//     default, which needs root), with provsim.DefaultProfile's limits unless flags say
//     otherwise, and -scale to multiply every rate and connection cap;
//   - an authoritative DNS server (-dns, UDP and TCP) for the simulated domains:
//     gmail.test (MX gmail-smtp-in.l.google.com), outlook.test and hotmail.test (MX
//     hosts under .protection.outlook.com, both Microsoft) and yahoo.test (MX under
//     .yahoodns.net). The MX names carry the providers' real suffixes, so that a sender
//     grouping its destinations by provider sees the three providers; they exist only in
//     this server. It also answers for the sender's domain (-sender: MX, A, SPF), the
//     PTR records of loopback addresses, and localhost; NXDOMAIN for everything else.
//
// Every address must be in 127.0.0.0/8: provsimd refuses any other.
//
// The counters of the simulators (total and per provider and sender IP: connections,
// transactions, accepted messages, deferrals by kind, blocks triggered, block replies,
// transactions and connections after the block reply) are written as JSON to -counters
// once everything listens (the readiness signal), on SIGUSR1, and on SIGTERM or SIGINT
// before it exits. The file is replaced atomically.
//
// With -ideal, provsimd starts nothing: it prints as JSON the clock time a perfect
// sender needs for the given numbers of messages per provider (provsim.IdealTime) under
// the same profile flags, and exits.
//
//	provsimd -counters sim.json -time-scale 60
//	provsimd -ideal google=1200,microsoft=1050,yahoo=750 -time-scale 60
package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"math/big"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/repute-mail/repute/test/provsim"
)

// options are the command line.
type options struct {
	dns       string
	addrs     map[provsim.Provider]string
	sender    string
	senderIPs string
	timeScale float64
	scale     float64
	rates     map[provsim.Provider]*float64
	conns     map[provsim.Provider]*int
	perConn   int
	blockAft  int
	blockFor  time.Duration
	counters  string
	ideal     string
	idealIPs  int
	verbose   bool
}

func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("provsimd", flag.ContinueOnError)
	o := &options{addrs: map[provsim.Provider]string{}, rates: map[provsim.Provider]*float64{}, conns: map[provsim.Provider]*int{}}
	fs.StringVar(&o.dns, "dns", "127.0.2.53:53", "address of the DNS server (UDP and TCP)")
	for i, p := range provsim.Providers() {
		o.addrs[p] = fmt.Sprintf("127.0.2.%d:25", 31+i)
		fs.Func(string(p), fmt.Sprintf("address of the simulated %s (default %s)", p, o.addrs[p]), func(s string) error {
			o.addrs[p] = s
			return nil
		})
		def := provsim.DefaultProfile(p)
		o.rates[p] = fs.Float64(string(p)+"-rate", def.RatePerMinute, "messages per simulated minute per sender IP at "+string(p))
		o.conns[p] = fs.Int(string(p)+"-conns", def.MaxConnections, "connections at once per sender IP at "+string(p))
	}
	fs.IntVar(&o.perConn, "per-connection", 0, "messages per connection at every provider (0: no limit)")
	fs.Float64Var(&o.scale, "scale", 1, "multiplies every rate and connection cap (connections rounded, at least 1)")
	fs.IntVar(&o.blockAft, "block-after", 0, "deferrals within the block window that block a sender IP (0: provsim's default, -1: never)")
	fs.DurationVar(&o.blockFor, "block-for", 0, "length of a block, simulated (0: provsim's default)")
	fs.Float64Var(&o.timeScale, "time-scale", 60, "simulated time runs this many times faster than the clock")
	fs.StringVar(&o.sender, "sender", "bench.test", "the sender's domain: MX mx.DOMAIN, A and SPF records")
	fs.StringVar(&o.senderIPs, "sender-ips", "127.0.2.21", "comma-separated addresses of mx.SENDER (and its PTR records)")
	fs.StringVar(&o.counters, "counters", "", "file the counters are written to (required unless -ideal)")
	fs.StringVar(&o.ideal, "ideal", "", "print the ideal time for PROVIDER=MESSAGES,... and exit")
	fs.IntVar(&o.idealIPs, "ideal-ips", 1, "sending IPs sharing the messages, for -ideal")
	fs.BoolVar(&o.verbose, "v", false, "log every connection, reply over a limit and block to stderr")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case o.timeScale <= 0 || o.timeScale > 100000 || math.IsNaN(o.timeScale):
		return nil, fmt.Errorf("-time-scale %v: want a number above 0, at most 100000", o.timeScale)
	case o.scale <= 0 || o.scale > 1000 || math.IsNaN(o.scale):
		return nil, fmt.Errorf("-scale %v: want a number above 0, at most 1000", o.scale)
	case o.ideal == "" && o.counters == "":
		return nil, errors.New("-counters is required")
	case o.idealIPs < 1:
		return nil, fmt.Errorf("-ideal-ips %d: want at least 1", o.idealIPs)
	}
	return o, nil
}

// profile is the profile of p the flags describe.
func (o *options) profile(p provsim.Provider) (provsim.Profile, error) {
	prof := provsim.DefaultProfile(p)
	prof.RatePerMinute = *o.rates[p] * o.scale
	prof.MaxConnections = *o.conns[p]
	if prof.MaxConnections > 0 {
		prof.MaxConnections = max(1, int(math.Round(float64(prof.MaxConnections)*o.scale)))
	}
	prof.MaxMessagesPerConnection = o.perConn
	prof.BlockAfter = o.blockAft
	prof.BlockFor = o.blockFor
	return prof, prof.Check()
}

// loopback parses an "IP:PORT" on 127.0.0.0/8.
func loopback(addr string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q: %w", addr, err)
	}
	if !ap.Addr().Is4() || !ap.Addr().IsLoopback() {
		return netip.AddrPort{}, fmt.Errorf("address %q is not in 127.0.0.0/8: provsimd runs on loopback only", addr)
	}
	return ap, nil
}

// parseLoads parses "google=1200,microsoft=1050": messages per provider.
func parseLoads(s string) (map[provsim.Provider]int, error) {
	out := map[provsim.Provider]int{}
	for part := range strings.SplitSeq(s, ",") {
		name, num, ok := strings.Cut(strings.TrimSpace(part), "=")
		p := provsim.Provider(name)
		if !ok || !validProvider(p) {
			return nil, fmt.Errorf("-ideal %q: want PROVIDER=MESSAGES with a provider of %v", part, provsim.Providers())
		}
		n, err := strconv.Atoi(num)
		if err != nil || n < 0 || n > 1e9 {
			return nil, fmt.Errorf("-ideal %q: messages must be a number from 0 to 1e9", part)
		}
		if _, dup := out[p]; dup {
			return nil, fmt.Errorf("-ideal: %s given twice", p)
		}
		out[p] = n
	}
	return out, nil
}

func validProvider(p provsim.Provider) bool {
	for _, q := range provsim.Providers() {
		if p == q {
			return true
		}
	}
	return false
}

// idealReport is what -ideal prints: seconds of clock time.
type idealReport struct {
	TimeScale float64            `json:"time_scale"`
	Seconds   float64            `json:"seconds"`
	Providers map[string]float64 `json:"providers"`
}

func ideal(o *options) (idealReport, error) {
	loads, err := parseLoads(o.ideal)
	if err != nil {
		return idealReport{}, err
	}
	r := idealReport{TimeScale: o.timeScale, Providers: map[string]float64{}}
	var all []provsim.Load
	for _, p := range provsim.Providers() {
		n, ok := loads[p]
		if !ok {
			continue
		}
		prof, err := o.profile(p)
		if err != nil {
			return idealReport{}, err
		}
		l := provsim.Load{Profile: prof, Messages: n, SenderIPs: o.idealIPs}
		all = append(all, l)
		r.Providers[string(p)] = provsim.IdealTime(o.timeScale, l).Seconds()
	}
	r.Seconds = provsim.IdealTime(o.timeScale, all...).Seconds()
	return r, nil
}

// daemon is a running provsimd.
type daemon struct {
	o       *options
	servers []*provsim.Server
	stopDNS func()
	log     *slog.Logger
	sigs    chan os.Signal
}

func start(o *options, log *slog.Logger) (*daemon, error) {
	d := &daemon{o: o, log: log}
	if _, err := loopback(o.dns); err != nil {
		return nil, err
	}
	sims := map[provsim.Provider]netip.Addr{}
	for _, p := range provsim.Providers() {
		ap, err := loopback(o.addrs[p])
		if err != nil {
			return nil, err
		}
		sims[p] = ap.Addr()
	}
	var senderIPs []netip.Addr
	for s := range strings.SplitSeq(o.senderIPs, ",") {
		ip, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil || !ip.Is4() || !ip.IsLoopback() {
			return nil, fmt.Errorf("-sender-ips: %q is not an address in 127.0.0.0/8", s)
		}
		senderIPs = append(senderIPs, ip)
	}
	z, err := newZone(o.sender, senderIPs, sims)
	if err != nil {
		return nil, err
	}
	srvTLS, err := selfSignedTLS()
	if err != nil {
		return nil, err
	}
	for _, p := range provsim.Providers() {
		prof, err := o.profile(p)
		if err != nil {
			d.close()
			return nil, err
		}
		// The providers all offer STARTTLS (and a sender may insist on it).
		cfg := provsim.Config{Addr: o.addrs[p], Profile: prof, TimeScale: o.timeScale, TLS: srvTLS}
		if o.verbose {
			cfg.Logf = func(format string, args ...any) { log.Info(fmt.Sprintf(format, args...)) }
		}
		s, err := provsim.Start(cfg)
		if err != nil {
			d.close()
			return nil, err
		}
		d.servers = append(d.servers, s)
		log.Info("simulated provider listening", "provider", p, "addr", s.Addr(), "profile", fmt.Sprintf("%+v", s.Profile()))
	}
	if d.stopDNS, err = serveDNS(o.dns, z); err != nil {
		d.close()
		return nil, err
	}
	log.Info("DNS listening", "addr", o.dns, "time_scale", o.timeScale)
	return d, nil
}

// write writes the counters file.
func (d *daemon) write() {
	if err := writeReport(d.o.counters, snapshot(d.servers, d.o.timeScale, time.Now())); err != nil {
		d.log.Error("writing counters", "err", err)
	}
}

func (d *daemon) close() {
	if d.stopDNS != nil {
		d.stopDNS()
	}
	for _, s := range d.servers {
		if err := s.Close(); err != nil {
			d.log.Warn("closing a simulator", "provider", s.Provider(), "err", err)
		}
	}
}

// run writes the counters once (everything listens), then on every SIGUSR1, and a
// last time on SIGTERM or SIGINT before it closes everything.
func (d *daemon) run() {
	d.sigs = make(chan os.Signal, 4)
	signal.Notify(d.sigs, syscall.SIGUSR1, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(d.sigs)
	d.write()
	for sig := range d.sigs {
		d.write()
		if sig != syscall.SIGUSR1 {
			d.log.Info("stopping", "signal", sig.String())
			d.close()
			return
		}
	}
}

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	o, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "provsimd:", err)
		os.Exit(2)
	}
	if o.ideal != "" {
		r, err := ideal(o)
		if err != nil {
			fmt.Fprintln(os.Stderr, "provsimd:", err)
			os.Exit(2)
		}
		_ = json.NewEncoder(os.Stdout).Encode(r)
		return
	}
	d, err := start(o, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "provsimd:", err)
		os.Exit(1)
	}
	d.run()
}

// selfSignedTLS is a STARTTLS configuration with a fresh self-signed certificate: the
// simulated providers offer TLS as the real ones do; senders do not verify it (no
// MTA-STS or DANE here).
func selfSignedTLS() (*tls.Config, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject: pkix.Name{CommonName: "mx.provsim.test"}, DNSNames: []string{"mx.provsim.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(7 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		MinVersion: tls.VersionTLS12}, nil
}
