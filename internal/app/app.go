// Package app is the composition root: it builds every component from the configuration in
// the order a message meets them (listener → session → store → mailbox → IMAP), starts them
// and shuts them down in reverse. Nothing else in Repute knows how the pieces fit together.
//
// Upstream: cmd/repute (serve, dev). Downstream: every internal package.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"expvar"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/repute-mail/repute/internal/alert"
	"github.com/repute-mail/repute/internal/auth"
	"github.com/repute-mail/repute/internal/authguard"
	"github.com/repute-mail/repute/internal/bounce"
	"github.com/repute-mail/repute/internal/classify"
	"github.com/repute-mail/repute/internal/config"
	"github.com/repute-mail/repute/internal/control"
	"github.com/repute-mail/repute/internal/delivery"
	"github.com/repute-mail/repute/internal/dns"
	"github.com/repute-mail/repute/internal/imapsrv"
	"github.com/repute-mail/repute/internal/mailstore"
	"github.com/repute-mail/repute/internal/obs"
	"github.com/repute-mail/repute/internal/outcome"
	"github.com/repute-mail/repute/internal/policy"
	"github.com/repute-mail/repute/internal/route"
	"github.com/repute-mail/repute/internal/scheduler"
	"github.com/repute-mail/repute/internal/session"
	"github.com/repute-mail/repute/internal/shaper"
	"github.com/repute-mail/repute/internal/store"
	"github.com/repute-mail/repute/internal/submit"
	"github.com/repute-mail/repute/internal/tlsconf"
	"github.com/repute-mail/repute/internal/verp"
	"github.com/repute-mail/repute/internal/web"
)

// App is a running Repute server.
type App struct {
	cfg config.Config
	log *slog.Logger

	db          *store.DB
	events      *obs.EventLog
	tls         *tls.Config
	certs       *tlsconf.Certs
	guard       *authguard.Guard
	metrics     *obs.Metrics
	metricsSrv  *http.Server
	mailstore   *mailstore.Mailstore
	submissions *submit.Submitter
	classifier  *classify.Classifier
	outcomes    *outcome.Recorder
	bounces     *bounce.Processor
	unsubKey    []byte
	webSrv      []*http.Server
	resolver    dns.Resolver
	smtp        []*session.Server
	imap        *imapsrv.Server
	sched       *scheduler.Scheduler
	engine      *shaper.Engine
	routes      *route.Resolver
	engineDirty chan struct{}
	alerts      func(shaper.Transition) // tells the admin of a pause or resumption; nil: log only
	notifier    *alert.Notifier
	selfCheck   *selfCheck
	control     *control.Server
	stopSched   context.CancelFunc
	schedDone   chan struct{}

	mu        sync.Mutex
	listeners map[string]net.Listener // by listener name: smtp, submission, ...
	serveErr  chan error
}

// New checks the configuration; it opens nothing.
func New(cfg config.Config, log *slog.Logger) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	return &App{cfg: cfg, log: log, listeners: map[string]net.Listener{}, serveErr: make(chan error, 8)}, nil
}

// OpenStore opens the configured database (also used by the admin commands).
func OpenStore(ctx context.Context, cfg config.Config, log *slog.Logger) (*store.DB, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o750); err != nil {
		return nil, fmt.Errorf("create data_dir: %w", err)
	}
	return store.Open(ctx, store.Options{Path: cfg.DBPath(), Logger: log})
}

// Start opens the store, binds every configured listener and starts serving. If any
// listener cannot be bound, nothing is left running and the error names the address.
func (a *App) Start(ctx context.Context) (err error) {
	defer func() {
		if err != nil {
			a.Shutdown(context.Background())
		}
	}()
	cfg := a.cfg
	if a.db, err = OpenStore(ctx, cfg, a.log); err != nil {
		return err
	}
	if a.events, err = obs.OpenEventLog(cfg.EventsLogPath(), a.log); err != nil {
		return err
	}
	a.certs, err = tlsconf.Load(cfg.TLS, cfg.Hostname, cfg.DataDir, tlsconf.Options{
		Logger: a.log, HTTPAddr: cfg.Listen.HTTP, HTTPSAddr: cfg.Listen.HTTPS, Domains: a.domainNames,
		RenewCheckInterval: cfg.Scaled(10 * time.Minute)})
	if err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	a.tls = a.certs.TLSConfig()
	a.metrics = obs.NewMetrics()
	a.guard = authguard.New(a.log)
	a.guard.OnLockout = func(netip.Addr) { a.metrics.Lockout() }
	login := authguard.Authenticator[store.User]{Guard: a.guard, Check: a.db.Authenticate,
		IsBadPassword: func(err error) bool { return errors.Is(err, store.ErrBadCredentials) },
		Failed:        a.metrics.LoginFailure, Refused: a.metrics.LockedOutLogin}
	a.mailstore = mailstore.New(a.db, a.log)
	if err := a.buildOutbound(); err != nil {
		return err
	}
	if err := a.buildBounces(ctx); err != nil {
		return err
	}
	if a.submissions, err = NewSubmitter(ctx, cfg, a.db, a.events, a.log); err != nil {
		return err
	}
	a.submissions.Queued, a.submissions.Delivered = a.sched.Wake, a.mailstore.Delivered

	limits := &session.Limits{Max: cfg.SMTP.MaxConnections, PerIP: cfg.SMTP.MaxConnectionsPerIP}
	rates := &session.RateLimits{ConnectionsPerMinute: cfg.SMTP.ConnectionRatePerIP, MessagesPerMinute: cfg.SMTP.MessageRatePerIP}
	for _, n := range cfg.SMTP.RateLimitExempt {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			return fmt.Errorf("smtp.rate_limit_exempt: %w", err)
		}
		rates.Exempt = append(rates.Exempt, p.Masked())
	}
	dnsbl := &policy.DNSBL{Resolver: a.resolver, Zones: cfg.SMTP.DNSBL}
	var verifier *policy.Verifier
	if cfg.SMTP.SenderChecks {
		sealer := &auth.ARCSealer{Keys: submit.ActiveKeys(a.db)}
		verifier = &policy.Verifier{Resolver: a.resolver, AuthservID: cfg.Hostname, Seal: sealer.Seal}
	}
	newSMTP := func(mode session.Mode, implicitTLS bool) *session.Server {
		s := &session.Server{
			Hostname: cfg.Hostname, Mode: mode, ImplicitTLS: implicitTLS, TLSConfig: a.tls,
			DB: a.db, Delivered: a.mailstore.Delivered, Authenticate: func(ctx context.Context, user, pass string, remote netip.Addr) (store.User, error) {
				return login.Login(ctx, "smtp", user, pass, remote)
			},
			Events: a.events, Logger: a.log, Limits: limits,
			MaxMessageSize: cfg.SMTP.MaxMessageSize, MaxRecipients: cfg.SMTP.MaxRecipients,
			CommandTimeout: cfg.SMTP.CommandTimeout.Duration, DataTimeout: cfg.SMTP.DataTimeout.Duration,
			FreeSpace: a.freeSpace, MinFreeDisk: cfg.SMTP.MinFreeDisk, Queued: a.sched.Wake, Submit: a.submissions, DNSBL: dnsbl,
			Verifier: verifier, Rates: rates, Metrics: a.metrics, Bounces: a.bounces,
		}
		a.smtp = append(a.smtp, s)
		return s
	}
	a.imap = &imapsrv.Server{
		Mailstore: a.mailstore, TLSConfig: a.tls, Logger: a.log,
		Authenticate: func(ctx context.Context, user, pass string, remote net.Addr) (store.User, error) {
			return login.Login(ctx, "imap", user, pass, addrOf(remote))
		},
		MaxConnectionsPerIP: cfg.IMAP.MaxConnectionsPerIP,
		IdleTimeout:         cfg.IMAP.IdleTimeout.Duration,
		MaxMessageSize:      cfg.SMTP.MaxMessageSize, // APPEND takes what SMTP would
	}

	type listener struct {
		name, addr  string
		implicitTLS bool
		serve       func(net.Listener) error
	}
	ls := []listener{
		{"smtp", cfg.Listen.SMTP, false, newSMTP(session.MX, false).Serve},
		{"submission", cfg.Listen.Submission, false, newSMTP(session.Submission, false).Serve},
		{"submissions", cfg.Listen.Submissions, true, newSMTP(session.Submission, true).Serve},
		{"imap", cfg.Listen.IMAP, false, a.imap.Serve},
		{"imaps", cfg.Listen.IMAPS, true, a.imap.Serve},
	}
	for _, l := range ls {
		if l.addr == "" {
			continue
		}
		nl, err := net.Listen("tcp", l.addr)
		if err != nil {
			return fmt.Errorf("listen.%s = %q: %w", l.name, l.addr, err)
		}
		if l.implicitTLS {
			nl = tls.NewListener(nl, a.tls)
		}
		a.mu.Lock()
		a.listeners[l.name] = nl
		a.mu.Unlock()
	}
	if err := a.listenWeb(); err != nil {
		return err
	}
	// After listen.http and listen.https are bound: the ACME challenges are answered there.
	if err := a.certs.Start(ctx); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	if cfg.Listen.Metrics != "" {
		ml, err := net.Listen("tcp", cfg.Listen.Metrics)
		if err != nil {
			return fmt.Errorf("listen.metrics = %q: %w", cfg.Listen.Metrics, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", a.metrics.Handler())
		a.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		a.mu.Lock()
		a.listeners["metrics"] = ml
		a.mu.Unlock()
		go a.metricsSrv.Serve(ml)
		a.log.Info("listening", "listener", "metrics", "addr", ml.Addr().String())
	}
	if err := a.listenDebug(); err != nil {
		return err
	}
	a.startSelfCheck()
	if a.cfg.Outbound.DirectWhen == "checks_pass" {
		relay := a.cfg.Outbound.FallbackRelay
		a.sched.HoldDirect = func() string {
			if a.selfCheck.Direct() {
				return ""
			}
			return relay
		}
	}
	a.startScheduler()
	if err := a.listenControl(); err != nil {
		return err
	}
	for _, l := range ls {
		nl := a.listeners[l.name]
		if nl == nil {
			continue
		}
		a.log.Info("listening", "listener", l.name, "addr", nl.Addr().String())
		go func(name string, serve func(net.Listener) error) {
			if err := serve(nl); err != nil && !errors.Is(err, session.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
				a.log.Error("listener stopped", "listener", name, "err", err)
				a.serveErr <- fmt.Errorf("listener %s: %w", name, err)
			}
		}(l.name, l.serve)
	}
	return nil
}

// Err delivers the first fatal listener error.
func (a *App) Err() <-chan error { return a.serveErr }

// Addr returns the bound address of a listener ("smtp", "submission", "submissions",
// "imap", "imaps"), or nil if it is disabled.
func (a *App) Addr(name string) net.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	if l := a.listeners[name]; l != nil {
		return l.Addr()
	}
	return nil
}

// Shutdown stops accepting, lets transactions in progress finish (until ctx ends), then
// closes the store. Safe to call on a partly started App.
func (a *App) Shutdown(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, s := range a.smtp {
		wg.Add(1)
		go func() { defer wg.Done(); s.Shutdown(ctx) }()
	}
	if a.imap != nil {
		wg.Add(1)
		go func() { defer wg.Done(); a.imap.Shutdown(ctx) }()
	}
	wg.Wait()
	if a.metricsSrv != nil {
		a.metricsSrv.Close()
	}
	for _, w := range a.webSrv {
		w.Shutdown(ctx)
	}
	if a.certs != nil {
		a.certs.Close()
	}
	a.mu.Lock()
	for _, l := range a.listeners {
		l.Close()
	}
	a.mu.Unlock()
	if a.control != nil {
		a.control.Close()
	}
	a.selfCheck.close()
	if a.stopSched != nil {
		a.stopSched()
		<-a.schedDone // deliveries in progress end with their own timeouts or ctx
	}
	if a.notifier != nil {
		a.notifier.Close() // the alerts of the last deliveries, before the store closes
	}
	var err error
	if a.db != nil {
		err = a.db.Close()
	}
	if a.events != nil {
		a.events.Close()
	}
	return err
}

// buildOutbound builds the resolver, the delivery client and the scheduler.
func (a *App) buildOutbound() error {
	cfg := a.cfg
	resolver, err := dns.New(cfg.DNS.Resolver, a.log)
	if err != nil {
		return fmt.Errorf("dns.resolver: %w", err)
	}
	a.resolver = resolver
	var sources []netip.Addr
	for _, s := range cfg.Outbound.SourceIPs {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("outbound.source_ips: %w", err)
		}
		sources = append(sources, ip)
	}
	newClient := func(relay, tlsMode, user, passwordFile string) (*delivery.Client, error) {
		c := &delivery.Client{Resolver: resolver, Hostname: cfg.Hostname, DNSSECProbe: cfg.DNS.DNSSECProbe,
			RemotePort: cfg.Outbound.RemotePort, Relay: relay, RelayTLS: tlsMode, Logger: a.log}
		if user != "" {
			pw, err := readSecret(passwordFile)
			if err != nil {
				return nil, fmt.Errorf("relay password for %s: %w", relay, err)
			}
			c.RelayAuth = &delivery.RelayAuth{Username: user, Password: pw}
		}
		return c, nil
	}
	o := cfg.Outbound
	def, err := newClient(o.Relay, o.RelayTLS, o.RelayUsername, o.RelayPasswordFile)
	if err != nil {
		return err
	}
	router := delivery.Router{Default: def, Routes: map[string]delivery.Deliverer{}}
	router.Fallbacks = map[string]delivery.Deliverer{}
	for _, relay := range fallbackRelays(cfg) {
		if router.Fallbacks[relay], err = newClient(relay, o.RelayTLS, o.RelayUsername, o.RelayPasswordFile); err != nil {
			return err
		}
	}
	for _, r := range o.Routes {
		c, err := newClient(r.Relay, r.TLS, r.Username, r.PasswordFile)
		if err != nil {
			return err
		}
		for _, d := range r.Domains {
			router.Routes[strings.ToLower(d)] = c
		}
	}
	a.classifier = classify.Default()
	if cfg.Bounce.RulesFile != "" {
		if a.classifier, err = classify.Load(cfg.Bounce.RulesFile); err != nil {
			return fmt.Errorf("bounce.rules_file: %w", err)
		}
	}
	relays := map[string]string{}
	for _, r := range o.Routes {
		for _, d := range r.Domains {
			relays[strings.ToLower(d)] = r.Relay
		}
	}
	routes := &route.Resolver{DNS: resolver, Providers: a.classifier.Providers(), Relay: o.Relay, Relays: relays, Logger: a.log,
		TTL: cfg.Scaled(5 * time.Minute),
		STS: &route.STS{DNS: resolver, Cache: mtastsCache{a.db}, Logger: a.log}}
	q := cfg.Queue
	a.routes = routes
	a.engine = buildEngine(cfg, sources, q.Concurrency)
	a.engine.Notify, a.engine.Logger = a.onTransition, a.log
	a.engine.Providers = a.classifier.Providers().IDs()
	for id := range cfg.Shaping.Provider {
		if id != shaper.DefaultProvider && !slices.Contains(a.engine.Providers, id) {
			a.log.Warn("shaping.provider names no known provider; its limits apply to nothing", "provider", id,
				"known", strings.Join(a.engine.Providers, ", "))
		}
	}
	a.engineDirty = make(chan struct{}, 1)
	a.buildAlerts()
	a.outcomes = a.buildOutcomes()
	a.sched = &scheduler.Scheduler{DB: a.db, Deliverer: router, Routes: routes, Shaper: a.engine, Outcomes: a.outcomes,
		Hostname: cfg.Hostname, Node: cfg.Hostname, Logger: a.log, Delivered: a.mailstore.Delivered,
		Concurrency: q.Concurrency, ScanInterval: cfg.Scaled(q.ScanInterval.Duration),
		Lease: cfg.Scaled(30 * time.Minute), HoldBack: cfg.Scaled(time.Minute),
		BulkSpread: cfg.Scaled(cfg.Shaping.BulkSpread.Duration),
		Policy: scheduler.Policy{RetryMin: cfg.Scaled(q.RetryMin.Duration), RetryMax: cfg.Scaled(q.RetryMax.Duration),
			MaxAge: cfg.Scaled(q.MaxAge.Duration), DelayWarning: cfg.Scaled(q.DelayWarning.Duration)}}
	return nil
}

// buildOutcomes builds the outcome recorder and its subscribers: the mail-event log, the
// hourly counts and the suppression list.
func (a *App) buildOutcomes() *outcome.Recorder {
	bus := &outcome.Bus{}
	bus.Subscribe(outcome.EventLog(a.events))
	bus.Subscribe(outcome.Counts(a.db, a.log))
	bus.Subscribe(outcome.Suppressions(a.db, bus, a.log))
	if a.engine != nil {
		// A complaint holds the sending IP's warm-up back for the day.
		engine := a.engine
		bus.Subscribe(outcome.SubscriberFunc(func(_ context.Context, evs []outcome.Event) error {
			for _, ev := range evs {
				if ev.Event.Event == obs.Complained && ev.Provider != "" {
					engine.Complained(ev.Provider, ev.SourceIP, ev.Time)
				}
			}
			return nil
		}))
	}
	return &outcome.Recorder{Classifier: a.classifier, Bus: bus}
}

// buildBounces sets up the bounce address tags of outgoing mail and the processor that
// consumes what comes back to them (and to the feedback addresses).
func (a *App) buildBounces(ctx context.Context) error {
	key, err := a.db.Secret(ctx, "verp")
	if err != nil {
		return err
	}
	if a.unsubKey, err = a.db.Secret(ctx, "unsubscribe"); err != nil {
		return err
	}
	feedback := lowerSet(a.cfg.Bounce.FeedbackAddresses)
	a.bounces = &bounce.Processor{DB: a.db, Outcomes: a.outcomes, Key: key, UnsubKey: a.unsubKey, Feedback: feedback,
		Hostname: a.cfg.Hostname, Logger: a.log, Delivered: a.mailstore.Delivered}
	if a.cfg.Bounce.TagEnvelope {
		a.sched.EnvelopeFrom = (&verp.Tagger{Key: key, IsLocal: a.db.IsLocalDomain}).Tag
	}
	return nil
}

// listenWeb serves the web interface on listen.http and, with the TLS certificate, on
// listen.https: one-click unsubscribe, client autoconfiguration, the ACME HTTP-01
// challenges (plain HTTP) and the MTA-STS policy (HTTPS only, RFC 8461 §3.3).
func (a *App) listenWeb() error {
	bound := func(name string) string { // the mail listeners are bound by now
		if ad := a.Addr(name); ad != nil {
			return ad.String()
		}
		return ""
	}
	base := web.Server{DB: a.db, UnsubscribeKey: a.unsubKey, Outcomes: a.outcomes, Logger: a.log,
		Hostname: a.cfg.Hostname, Domains: a.domainNames, MTASTSMaxAge: a.cfg.MTASTS.MaxAge.Duration,
		// The policy lists the hostname and mta_sts.mx, never the live MX records: it
		// exists to protect delivery when DNS answers are forged.
		MX:    a.cfg.MTASTS.MX,
		Ports: web.ListenPorts(bound("imaps"), bound("imap"), bound("submissions"), bound("submission")),
	}
	for _, l := range []struct {
		name, addr string
		tls        bool
	}{{"http", a.cfg.Listen.HTTP, false}, {"https", a.cfg.Listen.HTTPS, true}} {
		if l.addr == "" {
			continue
		}
		nl, err := net.Listen("tcp", l.addr)
		if err != nil {
			return fmt.Errorf("listen.%s = %q: %w", l.name, l.addr, err)
		}
		srv := base
		handler := a.certs.HTTPChallengeHandler(srv.Handler())
		if l.tls {
			nl = tls.NewListener(nl, a.certs.HTTPSConfig())
			srv.MTASTSMode = a.cfg.MTASTS.Mode
			handler = srv.Handler()
		}
		hs := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
		a.webSrv = append(a.webSrv, hs)
		a.mu.Lock()
		a.listeners[l.name] = nl
		a.mu.Unlock()
		a.log.Info("listening", "listener", l.name, "addr", nl.Addr().String())
		go hs.Serve(nl)
	}
	return nil
}

// lowerSet is a set of the lower-cased strings.
func lowerSet(l []string) map[string]bool {
	m := make(map[string]bool, len(l))
	for _, s := range l {
		m[strings.ToLower(s)] = true
	}
	return m
}

// readSecret returns the first line of a file (passwords are kept out of the config file).
func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.TrimRight(line, "\r")
	if line == "" {
		return "", fmt.Errorf("%s: empty", path)
	}
	return line, nil
}

func (a *App) startScheduler() {
	ctx, cancel := context.WithCancel(context.Background())
	a.stopSched = cancel
	a.schedDone = make(chan struct{})
	a.restoreEngine(ctx)
	saverCtx, stopSaver := context.WithCancel(context.Background())
	saved := make(chan struct{})
	go func() {
		defer close(saved)
		a.engineSaver(saverCtx, a.cfg.Scaled(15*time.Second))
	}()
	go func() {
		defer close(a.schedDone)
		a.sched.Run(ctx)
		stopSaver() // the last state is saved after the last delivery
		<-saved
	}()
}

// listenControl serves the admin channel (data_dir/control.sock): admin commands change
// the store and then tell the running server, which acts at once.
func (a *App) listenControl() error {
	a.control = &control.Server{Logger: a.log, Handlers: map[string]control.Handler{
		"wake":     func(context.Context, []string) (string, error) { a.sched.Wake(); return "", nil },
		"domains":  func(context.Context, []string) (string, error) { a.certs.Refresh(); return "", nil },
		"provider": a.providerCommand,
		"queue":    a.queueSummary,
	}}
	if path := filepath.Join(a.cfg.DataDir, control.SocketName); len(path) > maxSocketPath {
		a.log.Warn("control socket path too long for a Unix socket; admin commands take effect at the next queue scan", "path", path)
		a.control = nil
		return nil
	}
	return a.control.Listen(a.cfg.DataDir)
}

// listenDebug serves Go's profiler and runtime statistics on listen.debug (loopback
// only, checked by config.Validate), so that a slow production server can be examined.
func (a *App) listenDebug() error {
	if a.cfg.Listen.Debug == "" {
		return nil
	}
	l, err := net.Listen("tcp", a.cfg.Listen.Debug)
	if err != nil {
		return fmt.Errorf("listen.debug = %q: %w", a.cfg.Listen.Debug, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/debug/vars", expvar.Handler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	a.webSrv = append(a.webSrv, srv)
	a.mu.Lock()
	a.listeners["debug"] = l
	a.mu.Unlock()
	a.log.Info("listening", "listener", "debug", "addr", l.Addr().String())
	go srv.Serve(l)
	return nil
}

// maxSocketPath is the longest Unix socket path Linux takes (sun_path is 108 bytes).
const maxSocketPath = 107

// DB is the open store (after Start).
func (a *App) DB() *store.DB { return a.db }

func (a *App) freeSpace() (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(a.cfg.DBPath()), &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	if a == nil {
		return netip.Addr{}
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap.Addr().Unmap()
}

// shutdownTimeout bounds a graceful drain on SIGTERM.
const shutdownTimeout = 30 * time.Second

// ShutdownTimeout is how long serve waits for transactions in progress on SIGTERM.
func ShutdownTimeout() time.Duration { return shutdownTimeout }

// domainNames lists the local domains (for the certificates and the web endpoints).
func (a *App) domainNames(ctx context.Context) ([]string, error) {
	ds, err := a.db.Domains(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(ds))
	for i, d := range ds {
		names[i] = d.Name
	}
	return names, nil
}
