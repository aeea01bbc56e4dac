//go:build tools

package auth

// Pins for dependencies the SPF and DKIM wrappers are being built on.
import (
	_ "blitiri.com.ar/go/spf"
	_ "github.com/emersion/go-msgauth/dkim"
)
