package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"log/slog"
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

// cmdDev sets up (once) and runs a development server on loopback, in ./repute-dev/.
func cmdDev(e *env, args []string) error {
	if pos, err := parseFlags(flagSetNoConfig("dev"), args); err != nil || len(pos) != 0 {
		return errUsage
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
	cred, err := os.ReadFile(credPath)
	if err != nil {
		return fmt.Errorf("read %s: %w", credPath, err)
	}
	return serve(e, cfg, func(a *app.App) {
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
		fmt.Fprintf(w, "Try:\n  swaks --server %s --to %s --from someone@example.org\n", a.Addr("smtp"), devUser)
		fmt.Fprintf(w, "  curl -k --ssl-reqd 'imap://%s/INBOX;UID=1' --user '%s:PASSWORD'\n\nStop with Ctrl-C.\n", a.Addr("imap"), devUser)
	})
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
