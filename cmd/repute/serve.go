package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/repute-mail/repute/internal/app"
	"github.com/repute-mail/repute/internal/config"
	"github.com/repute-mail/repute/internal/obs"
	"github.com/repute-mail/repute/internal/store"
	"github.com/repute-mail/repute/internal/tlsconf"
)

func cmdServe(e *env, args []string) error {
	if pos, err := parseFlags(stdFlags(e, "serve", false), args); err != nil || len(pos) != 0 {
		return errUsage
	}
	cfg, err := loadConfig(e)
	if err != nil {
		return err
	}
	return serve(e, cfg, nil)
}

// serve runs the server until SIGTERM or SIGINT, then drains. ready, if set, runs once
// every listener is bound.
func serve(e *env, cfg config.Config, ready func(*app.App)) error {
	log := obs.NewLogger(e.stderr, cfg.Log.Level, cfg.Log.Format)
	slog.SetDefault(log)
	a, err := app.New(cfg, log)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := a.Start(ctx); err != nil {
		return err
	}
	log.Info("repute started", "hostname", cfg.Hostname, "data_dir", cfg.DataDir)
	if ready != nil {
		ready(a)
	}
	select {
	case <-ctx.Done():
		log.Info("shutting down: finishing transactions in progress", "timeout", app.ShutdownTimeout())
	case err = <-a.Err():
	}
	sctx, cancel := context.WithTimeout(context.Background(), app.ShutdownTimeout())
	defer cancel()
	if serr := a.Shutdown(sctx); serr != nil && err == nil && !errors.Is(serr, context.DeadlineExceeded) {
		err = serr
	}
	log.Info("repute stopped")
	return err
}

const (
	devDir    = "repute-dev"
	devDomain = "repute.localhost"
	devUser   = "you@" + devDomain
)

// devIP is the loopback address `repute dev` listens on without --listen.
const devIP = "127.0.0.1"

// cmdDev sets up (once) and runs a development server on loopback, in ./repute-dev/.
// --listen moves every listener to another loopback address (same ports), for a second
// dev server or when another program has one of the ports on 127.0.0.1.
func cmdDev(e *env, args []string) error {
	fs := flagSetNoConfig("dev")
	listen := fs.String("listen", devIP, "loopback address to listen on (ports 2525, 2587, 2465, 2143, 2993, 2925)")
	if pos, err := parseFlags(fs, args); err != nil || len(pos) != 0 {
		return errUsage
	}
	ip, err := netip.ParseAddr(*listen)
	if err != nil || !ip.IsLoopback() || ip.Zone() != "" {
		return fmt.Errorf("--listen %q: want a loopback address such as 127.0.0.2 or ::1 (the dev server is not for the network)", *listen)
	}
	dir, err := filepath.Abs(devDir)
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "repute.toml")
	credPath := filepath.Join(dir, "credentials.txt")
	if _, err := os.Stat(cfgPath); errors.Is(err, os.ErrNotExist) {
		if err := devSetup(dir, cfgPath, credPath); err != nil {
			return fmt.Errorf("set up %s: %w", dir, err)
		}
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	if err := cfg.FillDefaults(); err != nil {
		return err
	}
	if err := devListenOn(&cfg.Listen, ip); err != nil {
		return fmt.Errorf("%s: %w", cfgPath, err)
	}
	cred, err := os.ReadFile(credPath)
	if err != nil {
		return fmt.Errorf("read %s: %w", credPath, err)
	}
	err = serve(e, cfg, func(a *app.App) {
		w := e.stdout
		fmt.Fprintf(w, "\nRepute development server (config %s)\n\n", cfgPath)
		fmt.Fprintf(w, "  SMTP (MX)         %s\n", a.Addr("smtp"))
		fmt.Fprintf(w, "  Submission        %s (STARTTLS)\n", a.Addr("submission"))
		fmt.Fprintf(w, "  Submissions       %s (TLS)\n", a.Addr("submissions"))
		fmt.Fprintf(w, "  IMAP              %s (STARTTLS)\n", a.Addr("imap"))
		fmt.Fprintf(w, "  IMAPS             %s (TLS)\n", a.Addr("imaps"))
		fmt.Fprintf(w, "  Metrics           http://%s/metrics\n", a.Addr("metrics"))
		fmt.Fprintf(w, "  Dashboard         not part of this version yet\n")
		fmt.Fprintf(w, "\n%s", cred)
		fmt.Fprintf(w, "  TLS certificate   %s (self-signed)\n\n", tlsconf.SelfSignedCertPath(cfg.DataDir))
		fmt.Fprintf(w, "Try (swaks and curl: apt-get install swaks curl):\n")
		fmt.Fprintf(w, "  swaks --server %s --to %s --from someone@example.test\n", a.Addr("smtp"), devUser)
		fmt.Fprintf(w, "  curl -k --ssl-reqd 'imap://%s/INBOX;UID=1' --user '%s:PASSWORD'\n", a.Addr("imap"), devUser)
		fmt.Fprintf(w, "with PASSWORD replaced by the password above (failed logins count against the client's\n"+
			"address: 10 within 15 minutes lock it out for 15 minutes).\n\n")
		fmt.Fprintf(w, "%s\n\nStop with Ctrl-C; running it here again reuses ./%s/.\n", devAdminNote(cfgPath), devDir)
	})
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%w (another repute dev? --listen 127.0.0.2 serves on another loopback address)", err)
	}
	return err
}

// devAdminNote tells which configuration admin commands run in this directory pick up
// (defaultConfigPath): the dev server's, unless $REPUTE_CONFIG or the system file is there.
func devAdminNote(cfgPath string) string {
	// In a checkout (the README's quick start) the binary is not installed yet.
	repute := "repute"
	if _, err := os.Stat(filepath.Join("cmd", "repute", "main.go")); err == nil {
		repute = "go run ./cmd/repute"
	}
	p := defaultConfigPath()
	if abs, err := filepath.Abs(p); err == nil && abs == cfgPath {
		return fmt.Sprintf("Admin commands run in this directory use ./%s, e.g.\n  %s user list\n  %s user add friend@%s",
			devConfigPath, repute, repute, devDomain)
	}
	return fmt.Sprintf("Admin commands here would use %s; for this server add --config ./%s, e.g.\n  %s user list --config ./%s",
		p, devConfigPath, repute, devConfigPath)
}

// devListenOn moves every listener of the dev config to ip, keeping its port.
func devListenOn(l *config.Listen, ip netip.Addr) error {
	for _, a := range []*string{&l.SMTP, &l.Submission, &l.Submissions, &l.IMAP, &l.IMAPS, &l.HTTP, &l.HTTPS, &l.Metrics} {
		if *a == "" {
			continue
		}
		_, port, err := net.SplitHostPort(*a)
		if err != nil {
			return fmt.Errorf("listen address %q: %w", *a, err)
		}
		*a = net.JoinHostPort(ip.String(), port)
	}
	return nil
}

func devSetup(dir, cfgPath, credPath string) error {
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o750); err != nil {
		return err
	}
	cfgText := fmt.Sprintf(`# Repute development configuration, written by 'repute dev'.
hostname = "localhost"
data_dir = %q

[listen]
smtp = "127.0.0.1:2525"
submission = "127.0.0.1:2587"
submissions = "127.0.0.1:2465"
imap = "127.0.0.1:2143"
imaps = "127.0.0.1:2993"
http = ""
https = ""
metrics = "127.0.0.1:2925"

[check]
interval = "0s"  # a development server does not probe the internet (repute check does it on demand)

[smtp]
min_free_disk = 10485760
`, filepath.Join(dir, "data"))
	cfg, err := config.Parse([]byte(cfgText))
	if err != nil {
		return fmt.Errorf("built-in dev config: %w", err)
	}
	if err := cfg.FillDefaults(); err != nil {
		return err
	}
	ctx := context.Background()
	db, err := app.OpenStore(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.AddDomain(ctx, devDomain); err != nil && !errors.Is(err, store.ErrExists) {
		return err
	}
	if _, err := addDomainKeys(ctx, db, devDomain, true, time.Now()); err != nil {
		return err
	}
	pw := randomPassword()
	if _, err := db.AddUser(ctx, devUser, pw); err != nil {
		return err
	}
	cred := fmt.Sprintf("  User              %s\n  Password          %s\n", devUser, pw)
	if err := os.WriteFile(credPath, []byte(cred), 0o600); err != nil {
		return err
	}
	// The config is written last: its presence means the setup finished.
	return os.WriteFile(cfgPath, []byte(cfgText), 0o640)
}

func flagSetNoConfig(name string) *flag.FlagSet { return flag.NewFlagSet(name, flag.ContinueOnError) }

// randomPassword returns 26 random base32 characters (128 bits).
func randomPassword() string { return rand.Text() }
