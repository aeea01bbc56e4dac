package auth

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSignerByAuthorDomain(t *testing.T) {
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	key, err := GenerateDKIMKey("a.test", KeyEd25519, now)
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	s := &Signer{Now: func() time.Time { return now }, Keys: func(_ context.Context, d string) ([]DKIMKey, error) {
		calls++
		if d == "a.test" {
			return []DKIMKey{key}, nil
		}
		if d == "broken.test" {
			return nil, errors.New("store down")
		}
		return nil, nil
	}}
	ctx := context.Background()
	msg := []byte("From: Alice <alice@A.test>\r\nTo: bob@b.test\r\nSubject: hi\r\n\r\nbody\r\n")
	signed, err := s.Sign(ctx, msg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(signed), "DKIM-Signature:") || !strings.HasSuffix(string(signed), string(msg)) {
		t.Fatalf("signed message:\n%s", signed)
	}
	_, r := startDNS(t, []DKIMKey{key})
	res := VerifyDKIM(ctx, r, signed)
	if len(res) != 1 || res[0].Result != "pass" || res[0].Domain != "a.test" {
		t.Errorf("verify = %+v", res)
	}
	s.Sign(ctx, msg)
	if calls != 1 {
		t.Errorf("keys loaded %d times, want once (cached)", calls)
	}
	other := []byte("From: x@elsewhere.test\r\n\r\nbody\r\n")
	if out, err := s.Sign(ctx, other); err != nil || string(out) != string(other) {
		t.Errorf("a foreign author's message must pass unsigned: %v", err)
	}
	if _, err := s.Sign(ctx, []byte("From: x@broken.test\r\n\r\nb\r\n")); err == nil {
		t.Error("a key store error must be reported, not ignored")
	}
}

func TestAuthorDomain(t *testing.T) {
	for _, tc := range []struct{ msg, want string }{
		{"From: a@B.Example\r\n\r\n", "b.example"},
		{"Subject: x\r\nFrom: \"Q, R\" <q@r.test>, s@t.test\r\n\r\nbody", "r.test"},
		{"Subject: no from\r\n\r\n", ""},
		{"From: not an address\r\n\r\n", ""},
		{"From: =?iso-2022-jp?B?GyRCJUYlOSVIGyhC?= <t@jp.test>\r\n\r\n", "jp.test"},
	} {
		if got := AuthorDomain([]byte(tc.msg)); got != tc.want {
			t.Errorf("AuthorDomain(%q) = %q, want %q", tc.msg, got, tc.want)
		}
	}
}
