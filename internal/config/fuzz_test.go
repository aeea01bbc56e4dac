package config

import (
	"bytes"
	"errors"
	"testing"

	"github.com/BurntSushi/toml"
)

// FuzzParse feeds arbitrary bytes to Parse. Parse must never panic; a file it accepts must
// also pass Validate; every *Error it returns must have a position on a line that exists;
// and for any document the TOML library accepts, the key scanner must find every key.
func FuzzParse(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("hostname = \"mail.example.com\"\n[smtp]\nmax_recipients = 5\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if err == nil {
			if verr := cfg.Validate(); verr != nil {
				t.Fatalf("Parse accepted a config that Validate rejects: %v", verr)
			}
		} else {
			lines := bytes.Count(data, []byte("\n")) + 1
			var list []error
			if j, ok := err.(interface{ Unwrap() []error }); ok {
				list = j.Unwrap()
			} else {
				list = []error{err}
			}
			for _, e := range list {
				var ce *Error
				if !errors.As(e, &ce) {
					t.Fatalf("error %v (%T) is not an *Error", e, e)
				}
				if ce.Line < 0 || ce.Line > lines || ce.Column < 0 {
					t.Fatalf("error %v has position %d:%d outside a %d-line file", ce, ce.Line, ce.Column, lines)
				}
				if ce.Msg == "" {
					t.Fatalf("error without a message: %#v", ce)
				}
			}
		}

		text := string(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")))
		var raw map[string]any
		md, derr := toml.Decode(text, &raw)
		if derr != nil {
			return
		}
		clean := []byte(text)
		pos := scanKeys(clean, newLineIndex(clean))
		for _, k := range md.Keys() {
			if _, ok := pos[k.String()]; !ok {
				t.Fatalf("scanner found no position for key %s", k)
			}
		}
	})
}
