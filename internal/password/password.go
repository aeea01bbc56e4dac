// Package password hashes and verifies account passwords with argon2id (RFC 9106), in the
// PHC string format ("$argon2id$v=19$m=...,t=...,p=...$salt$hash") so that parameters can be
// raised later without invalidating stored hashes.
//
// Upstream: internal/store (user add/passwd, login checks).
package password

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Parameters: OWASP's argon2id minimum (19 MiB, 2 passes, 1 lane). A verification costs
// ~20-40 ms of one core, cheap for a person and expensive for a guesser.
const (
	memoryKiB = 19 * 1024
	passes    = 2
	lanes     = 1
	saltLen   = 16
	keyLen    = 32
	maxLen    = 1024 // longer passwords are refused, not hashed (hashing cost is per byte)
)

// ErrMismatch is returned by Verify when the password is wrong.
var ErrMismatch = errors.New("password mismatch")

// ErrTooLong is returned for passwords over 1024 bytes.
var ErrTooLong = errors.New("password too long")

var b64 = base64.RawStdEncoding

// Hash returns the PHC string of password with a fresh random salt.
func Hash(password string) (string, error) {
	if len(password) > maxLen {
		return "", ErrTooLong
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password: salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, passes, memoryKiB, lanes, keyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, memoryKiB, passes, lanes, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// Verify reports whether password matches the PHC string hash (nil) or not (ErrMismatch).
// A malformed hash is an error of its own.
func Verify(hash, password string) error {
	if len(password) > maxLen {
		return ErrMismatch
	}
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return errors.New("password: unsupported hash format")
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return errors.New("password: unsupported argon2 version")
	}
	var m uint32
	var t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return fmt.Errorf("password: bad parameters: %w", err)
	}
	if m == 0 || m > 1<<20 || t == 0 || t > 100 || p == 0 {
		return errors.New("password: parameters out of range")
	}
	salt, err := b64.DecodeString(parts[4])
	if err != nil {
		return fmt.Errorf("password: bad salt: %w", err)
	}
	want, err := b64.DecodeString(parts[5])
	if err != nil || len(want) == 0 || len(want) > 128 {
		return errors.New("password: bad hash")
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	if subtle.ConstantTimeCompare(got, want) != 1 {
		return ErrMismatch
	}
	return nil
}
