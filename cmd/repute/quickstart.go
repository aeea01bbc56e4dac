package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/repute-mail/repute/internal/app"
	"github.com/repute-mail/repute/internal/config"
	"github.com/repute-mail/repute/internal/doctor"
	"github.com/repute-mail/repute/internal/store"
)

// ipList is a repeatable --ip flag.
type ipList []string

func (l *ipList) String() string     { return strings.Join(*l, ",") }
func (l *ipList) Set(s string) error { *l = append(*l, s); return nil }

// cmdQuickstart sets up a production server for one domain: the configuration, the
// domain with its DKIM keys, the postmaster and reports mailboxes, the systemd unit, and
// prints the DNS records to publish, the PTR to ask the hosting provider for, and what
// to do next.
func cmdQuickstart(e *env, args []string) error {
	fs := flag.NewFlagSet("quickstart", flag.ContinueOnError)
	hostname := fs.String("hostname", "", "the server's name (default mail.DOMAIN); its A record and the PTR of every IP must name it")
	var ips ipList
	fs.Var(&ips, "ip", "an address mail is sent from (repeatable; default the host's public addresses)")
	acme := fs.String("acme-email", "", "get certificates from Let's Encrypt, with this address for expiry notices")
	cfgPath := fs.String("config", config.DefaultConfigPath, "where to write the configuration")
	dataDir := fs.String("data-dir", config.Default().DataDir, "data directory")
	unitDir := fs.String("systemd-dir", "/etc/systemd/system", "where to install repute.service; \"\" to skip")
	force := fs.Bool("force", false, "overwrite an existing configuration")
	pos, err := parseFlags(fs, args)
	if err != nil || len(pos) != 1 {
		return errUsage
	}
	start := time.Now()
	domain := strings.ToLower(strings.TrimSuffix(pos[0], "."))
	if *hostname == "" {
		*hostname = "mail." + domain
	}
	*hostname = strings.ToLower(strings.TrimSuffix(*hostname, "."))
	if _, err := os.Stat(*cfgPath); err == nil && !*force {
		return fmt.Errorf("%s exists; quickstart sets up a new server (use --force to overwrite it, or repute domain add %s to add a domain)", *cfgPath, domain)
	}
	// Addresses of this host go to source_ips; others are the NAT's public addresses.
	local := map[netip.Addr]bool{}
	localIPs, _ := doctor.LocalIPs()
	for _, ip := range localIPs {
		local[ip] = true
	}
	var source, public []string
	for _, s := range ips {
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("--ip %q: not an IP address", s)
		}
		if isLocalAddr(ip) || local[ip.Unmap()] {
			source = append(source, ip.Unmap().String())
		} else {
			public = append(public, ip.Unmap().String())
		}
	}
	text := quickstartConfig(*hostname, *dataDir, *acme, source, public)
	cfg, err := config.Parse([]byte(text))
	if err != nil {
		return fmt.Errorf("the generated configuration: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	if err := os.MkdirAll(*dataDir, 0o750); err != nil {
		return err
	}
	creds, setup, err := quickstartStore(cfg, domain)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(*cfgPath), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(*cfgPath, []byte(text), 0o640); err != nil {
		return err
	}
	w := e.stdout
	fmt.Fprintf(w, "Repute is set up for %s (mail server %s).\n\n", domain, *hostname)
	fmt.Fprintf(w, "  Configuration   %s\n  Data            %s\n", *cfgPath, *dataDir)
	unitNote := quickstartUnit(e, *unitDir, *cfgPath, *dataDir)
	fmt.Fprintf(w, "\nMailboxes (passwords shown once; also in %s):\n%s\n", filepath.Join(*dataDir, "credentials.txt"), creds)

	fmt.Fprintf(w, "1. Publish these DNS records (your DNS host's zone editor, or repute dns push):\n\n")
	for _, n := range setup.Notes {
		fmt.Fprintf(w, "; Note: %s\n", n)
	}
	if err := doctor.WriteZone(w, doctor.Records(setup)); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n2. Ask your hosting provider to set the reverse DNS (PTR) of each sending address:\n\n")
	for _, ip := range setup.SendIPs {
		fmt.Fprintf(w, "   %s  PTR  %s.\n", ip, *hostname)
	}
	fmt.Fprintf(w, "\n   and, if outbound port 25 is blocked (most cloud providers block it on new accounts),\n   to open it.\n")
	fmt.Fprintf(w, "\n3. Start the server:\n\n   %s\n", unitNote)
	fmt.Fprintf(w, "\n4. Check everything, and fix what it names, until nothing fails:\n\n   repute check --config %s\n", *cfgPath)
	fmt.Fprintf(w, "\nSet up in %.1f s.\n", time.Since(start).Seconds())
	return nil
}

// quickstartConfig is the configuration quickstart writes: only what differs from the
// defaults, so the rest follows the defaults of later versions.
func quickstartConfig(hostname, dataDir, acme string, source, public []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Repute configuration, written by 'repute quickstart' on %s.\n", time.Now().UTC().Format("2006-01-02"))
	b.WriteString("# Every key and its default: docs/CONFIG.md; 'repute config check' validates changes.\n")
	fmt.Fprintf(&b, "hostname = %q\ndata_dir = %q\n", hostname, dataDir)
	if acme != "" {
		fmt.Fprintf(&b, "\n[tls]\nacme_email = %q\n", acme)
	}
	if len(source) > 0 || len(public) > 0 {
		b.WriteString("\n[outbound]\n")
		if len(source) > 0 {
			fmt.Fprintf(&b, "source_ips = %s\n", tomlList(source))
		}
		if len(public) > 0 {
			fmt.Fprintf(&b, "public_ips = %s\n", tomlList(public))
		}
	}
	return b.String()
}

func tomlList(l []string) string {
	q := make([]string, len(l))
	for i, s := range l {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// quickstartStore creates the domain with its DKIM keys and the postmaster and reports
// mailboxes, and returns their credentials as lines to print and the set-up the records
// are computed from.
func quickstartStore(cfg config.Config, domain string) (string, doctor.Setup, error) {
	ctx := context.Background()
	var none doctor.Setup
	db, err := app.OpenStore(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		return "", none, err
	}
	defer db.Close()
	if _, err := db.AddDomain(ctx, domain); err != nil && !errors.Is(err, store.ErrExists) {
		return "", none, err
	}
	keys, err := db.DKIMKeys(ctx, domain)
	if err != nil {
		return "", none, err
	}
	if len(keys) == 0 {
		if _, err := addDomainKeys(ctx, db, domain, true, time.Now()); err != nil {
			return "", none, err
		}
	}
	var creds strings.Builder
	for _, local := range []string{"postmaster", cfg.Reports.LocalPart} {
		addr := local + "@" + domain
		pw := randomPassword()
		if _, err := db.AddUser(ctx, addr, pw); err != nil {
			if errors.Is(err, store.ErrExists) {
				fmt.Fprintf(&creds, "  %-28s (exists; password unchanged)\n", addr)
				continue
			}
			return "", none, err
		}
		fmt.Fprintf(&creds, "  %-28s %s\n", addr, pw)
	}
	path := filepath.Join(cfg.DataDir, "credentials.txt")
	if err := os.WriteFile(path, []byte(creds.String()), 0o600); err != nil {
		return "", none, err
	}
	setup, err := doctor.SetupFrom(ctx, cfg, db, domain)
	return creds.String(), setup, err
}

// quickstartUnit installs the systemd unit (and the repute user) when it can, and returns
// the command that starts the server.
func quickstartUnit(e *env, dir, cfgPath, dataDir string) string {
	exe, err := os.Executable()
	if err != nil {
		exe = "/usr/local/bin/repute"
	}
	serveCmd := fmt.Sprintf("%s serve --config %s", exe, cfgPath)
	if dir == "" {
		return serveCmd
	}
	if _, err := os.Stat(dir); err != nil {
		fmt.Fprintf(e.stdout, "  systemd unit    not installed (%s does not exist)\n", dir)
		return serveCmd
	}
	path := filepath.Join(dir, "repute.service")
	if err := os.WriteFile(path, []byte(systemdUnit(exe, cfgPath, dataDir)), 0o644); err != nil {
		fmt.Fprintf(e.stdout, "  systemd unit    not installed: %v\n", err)
		return serveCmd
	}
	fmt.Fprintf(e.stdout, "  systemd unit    %s\n", path)
	if _, err := user.Lookup("repute"); err != nil && os.Geteuid() == 0 {
		if out, err := exec.Command("useradd", "--system", "--home-dir", dataDir, "--shell", "/usr/sbin/nologin", "repute").CombinedOutput(); err != nil {
			fmt.Fprintf(e.stdout, "  user repute     not created: %v %s\n", err, strings.TrimSpace(string(out)))
		}
	}
	if u, err := user.Lookup("repute"); err == nil {
		chownTree(dataDir, u)
		chownGroup(cfgPath, u)
	}
	if dir != "/etc/systemd/system" {
		return fmt.Sprintf("systemctl link %s && systemctl enable --now repute", path)
	}
	return "systemctl daemon-reload && systemctl enable --now repute"
}

// systemdUnit is the unit quickstart installs; etc/repute.service is this text for
// /usr/local/bin/repute and /etc/repute/repute.toml.
func systemdUnit(exe, cfgPath, dataDir string) string {
	return fmt.Sprintf(unitTemplate, exe, cfgPath, filepath.Base(dataDir), dataDir)
}

// isLocalAddr reports whether ip is loopback (always this host's).
func isLocalAddr(ip netip.Addr) bool { return ip.IsLoopback() }

// chownTree gives the repute user the data directory, as systemd's StateDirectory would.
func chownTree(dir string, u *user.User) {
	uid, gid, ok := ids(u)
	if !ok {
		return
	}
	filepath.WalkDir(dir, func(path string, _ os.DirEntry, err error) error {
		if err == nil {
			os.Lchown(path, uid, gid)
		}
		return nil
	})
}

// chownGroup lets the repute group read the configuration (mode 0640, owner root).
func chownGroup(path string, u *user.User) {
	if _, gid, ok := ids(u); ok {
		os.Chown(path, 0, gid)
	}
}

func ids(u *user.User) (int, int, bool) {
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	return uid, gid, err1 == nil && err2 == nil
}

// unitTemplate is the systemd unit (binary, config, state directory name, data dir).
const unitTemplate = `# systemd unit for Repute, written by 'repute quickstart'.
[Unit]
Description=Repute mail server
After=network-online.target
Wants=network-online.target

[Service]
Type=exec
User=repute
Group=repute
ExecStart=%[1]s serve --config %[2]s
Restart=on-failure
RestartSec=5s

# Graceful drain: on SIGTERM Repute stops accepting connections and lets the ones in
# progress finish; systemd waits this long before SIGKILL.
KillSignal=SIGTERM
KillMode=mixed
TimeoutStopSec=90s

# State: the data directory, created and owned by the repute user.
StateDirectory=%[3]s
StateDirectoryMode=0750
ReadWritePaths=%[4]s
UMask=0027
LimitNOFILE=65536

# Bind ports 25, 80, 443, 465, 587, 143, 993 without running as root; no other capability.
AmbientCapabilities=CAP_NET_BIND_SERVICE
CapabilityBoundingSet=CAP_NET_BIND_SERVICE
NoNewPrivileges=yes

# Sandbox.
ProtectSystem=strict
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectClock=yes
ProtectHostname=yes
ProtectKernelLogs=yes
ProtectKernelModules=yes
ProtectKernelTunables=yes
ProtectControlGroups=yes
ProtectProc=invisible
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
MemoryDenyWriteExecute=yes
RemoveIPC=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallFilter=~@privileged
SystemCallErrorNumber=EPERM

[Install]
WantedBy=multi-user.target
`
