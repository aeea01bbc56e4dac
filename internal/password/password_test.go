package password

import (
	"errors"
	"strings"
	"testing"
)

func TestHashVerify(t *testing.T) {
	h, err := Hash("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=19456,t=2,p=1$") {
		t.Fatalf("unexpected format %q", h)
	}
	tests := []struct {
		pw   string
		want error
	}{
		{"correct horse", nil},
		{"correct horsf", ErrMismatch},
		{"", ErrMismatch},
		{strings.Repeat("x", 2000), ErrMismatch},
	}
	for _, tc := range tests {
		if err := Verify(h, tc.pw); !errors.Is(err, tc.want) {
			t.Errorf("Verify(%q...) = %v, want %v", tc.pw[:min(len(tc.pw), 10)], err, tc.want)
		}
	}
	h2, _ := Hash("correct horse")
	if h2 == h {
		t.Error("two hashes of one password share a salt")
	}
}

func TestVerifyMalformed(t *testing.T) {
	for _, h := range []string{"", "plain", "$argon2i$v=19$m=1,t=1,p=1$AA$AA", "$argon2id$v=19$m=0,t=1,p=1$AA$AA",
		"$argon2id$v=19$m=9999999999,t=1,p=1$AA$AA", "$argon2id$v=19$m=8,t=1,p=1$!!$AA"} {
		if err := Verify(h, "x"); err == nil || errors.Is(err, ErrMismatch) {
			t.Errorf("Verify(%q) = %v, want a format error", h, err)
		}
	}
	if _, err := Hash(strings.Repeat("x", 1025)); !errors.Is(err, ErrTooLong) {
		t.Errorf("Hash(long) = %v", err)
	}
}
