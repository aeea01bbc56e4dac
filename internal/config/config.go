// Package config defines Repute's one configuration file: a strict TOML schema whose
// defaults live in code (Default), so that an empty file is a working server and an
// unknown or misspelt key is an error with its line number rather than a silent no-op.
//
// Upstream: cmd/repute reads the file named by --config or $REPUTE_CONFIG.
// Downstream: internal/app builds every component from the returned Config.
package config

import "time"

// Config is the whole server configuration. Field tags are the TOML keys; the keys named
// in the design contract (hostname, data_dir, [listen], [tls], [dns], [outbound], [store])
// must keep their names.
type Config struct {
	Hostname string `toml:"hostname"` // EHLO name, TLS name, expected PTR
	DataDir  string `toml:"data_dir"` // database, TLS material, events.log

	Listen   Listen   `toml:"listen"`
	TLS      TLS      `toml:"tls"`
	DNS      DNS      `toml:"dns"`
	Outbound Outbound `toml:"outbound"`
	Store    Store    `toml:"store"`
	SMTP     SMTP     `toml:"smtp"`
	IMAP     IMAP     `toml:"imap"`
	Log      Log      `toml:"log"`
}

// Listen holds one address per listener; "" disables that listener.
type Listen struct {
	SMTP        string `toml:"smtp"`
	Submission  string `toml:"submission"`
	Submissions string `toml:"submissions"`
	IMAP        string `toml:"imap"`
	IMAPS       string `toml:"imaps"`
	HTTP        string `toml:"http"`
	HTTPS       string `toml:"https"`
}

// TLS selects the certificate. With neither files nor ACME, a self-signed certificate for
// Hostname is generated in DataDir on first start (with a warning).
type TLS struct {
	CertFile      string `toml:"cert_file"`
	KeyFile       string `toml:"key_file"`
	ACMEEmail     string `toml:"acme_email"`
	ACMEDirectory string `toml:"acme_directory"`
}

// DNS chooses the resolver every lookup goes through.
type DNS struct {
	Resolver string `toml:"resolver"` // "IP:PORT"; empty = system resolver
}

// Outbound configures delivery to other hosts.
type Outbound struct {
	SourceIPs  []string `toml:"source_ips"`
	RemotePort int      `toml:"remote_port"`
	Relay      string   `toml:"relay"`
}

// Store selects the database.
type Store struct {
	Driver string `toml:"driver"` // "sqlite" or "postgres"
	DSN    string `toml:"dsn"`
}

// SMTP holds limits shared by the MX and submission listeners.
type SMTP struct {
	MaxMessageSize      int64    `toml:"max_message_size"`       // bytes; SIZE advertised, 552 5.3.4 above
	MaxRecipients       int      `toml:"max_recipients"`         // per transaction; 452 4.5.3 above
	MaxConnections      int      `toml:"max_connections"`        // all SMTP listeners together
	MaxConnectionsPerIP int      `toml:"max_connections_per_ip"` // 421 4.7.0 above
	CommandTimeout      Duration `toml:"command_timeout"`        // idle time allowed between commands
	DataTimeout         Duration `toml:"data_timeout"`           // whole DATA/BDAT transfer
	MinFreeDisk         int64    `toml:"min_free_disk"`          // bytes; below it new mail gets 452 4.3.1
}

// IMAP holds IMAP listener limits.
type IMAP struct {
	MaxConnectionsPerIP int      `toml:"max_connections_per_ip"`
	IdleTimeout         Duration `toml:"idle_timeout"` // RFC 9051 §5.4: at least 30 minutes
}

// Log configures the developer trace log (the mail-event log is always data_dir/events.log).
type Log struct {
	Level  string `toml:"level"`  // debug, info, warn, error
	Format string `toml:"format"` // text or json
}

// Duration is a time.Duration written as a Go duration string in TOML ("5m", "30s").
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler for TOML strings.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }

// Default returns the configuration used for every key the file leaves out.
func Default() Config {
	return Config{
		Hostname: "",
		DataDir:  "/var/lib/repute",
		Listen: Listen{
			SMTP:        "0.0.0.0:25",
			Submission:  "0.0.0.0:587",
			Submissions: "0.0.0.0:465",
			IMAP:        "0.0.0.0:143",
			IMAPS:       "0.0.0.0:993",
			HTTP:        "0.0.0.0:80",
			HTTPS:       "0.0.0.0:443",
		},
		Outbound: Outbound{RemotePort: 25},
		Store:    Store{Driver: "sqlite"},
		SMTP: SMTP{
			MaxMessageSize:      50 << 20,
			MaxRecipients:       1000,
			MaxConnections:      10000,
			MaxConnectionsPerIP: 50,
			CommandTimeout:      Duration{5 * time.Minute},
			DataTimeout:         Duration{10 * time.Minute},
			MinFreeDisk:         200 << 20,
		},
		IMAP: IMAP{
			MaxConnectionsPerIP: 50,
			IdleTimeout:         Duration{30 * time.Minute},
		},
		Log: Log{Level: "info", Format: "text"},
	}
}
