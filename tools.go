//go:build tools

// Package tools pins dependencies that the packages being written next will import.
package tools

import (
	_ "github.com/BurntSushi/toml"
	_ "github.com/emersion/go-imap/v2/imapserver"
	_ "github.com/emersion/go-message"
	_ "github.com/emersion/go-sasl"
	_ "github.com/emersion/go-smtp"
	_ "github.com/miekg/dns"
	_ "golang.org/x/crypto/argon2"
	_ "golang.org/x/net/idna"
	_ "golang.org/x/time/rate"
	_ "modernc.org/sqlite"
)
