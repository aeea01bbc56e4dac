package store

import (
	"crypto/rand"
	"encoding/base32"
	"time"
)

var idEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// NewID returns a unique identifier that sorts by creation time: 48 bits of milliseconds
// and 32 random bits, in 16 lower-case base32 characters. Message ids (events.log msg_id,
// "queued as") and connection ids use it.
func NewID(now time.Time) string {
	var b [10]byte
	ts := uint64(now.UnixMilli())
	for i := 0; i < 6; i++ {
		b[i] = byte(ts >> (40 - 8*i))
	}
	rand.Read(b[6:])
	return idEncoding.EncodeToString(b[:])
}
