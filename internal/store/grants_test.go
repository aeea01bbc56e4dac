package store

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/repute-mail/repute/internal/smtp"
)

// TestResolveExplicit checks the resolution that decides who may send as an address: a
// catch-all, at any level of alias expansion, gives nobody an address.
func TestResolveExplicit(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	db.AddDomain(ctx, "a.test")
	alice, _ := db.AddUser(ctx, "alice@a.test", "pw")
	bob, _ := db.AddUser(ctx, "bob@a.test", "pw")
	for _, a := range [][2]string{{"@a.test", "alice@a.test"}, {"sales@a.test", "alice@a.test"},
		{"team@a.test", "alice@a.test"}, {"team@a.test", "bob@a.test"}, {"via@a.test", "ghost@a.test"}} {
		if err := db.AddAlias(ctx, a[0], a[1]); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		addr string
		want []int64
		err  error
	}{
		{"alice@a.test", []int64{alice.ID}, nil},
		{"alice+x@a.test", []int64{alice.ID}, nil},
		{"sales+x@a.test", []int64{alice.ID}, nil},
		{"team@a.test", []int64{alice.ID, bob.ID}, nil},
		{"nobody@a.test", nil, ErrNoSuchUser}, // Resolve: alice, through the catch-all
		{"via@a.test", nil, ErrNoSuchUser},    // an alias to an address only the catch-all takes
		{"x@b.test", nil, ErrNotLocal},
	}
	for _, tc := range tests {
		a, err := smtp.ParseAddress(tc.addr)
		if err != nil {
			t.Fatal(err)
		}
		got, err := db.ResolveExplicit(ctx, a)
		var ids []int64
		for _, g := range got {
			ids = append(ids, g.UserID)
		}
		if !errors.Is(err, tc.err) || fmt.Sprint(ids) != fmt.Sprint(tc.want) {
			t.Errorf("ResolveExplicit(%s) = %v, %v; want %v, %v", tc.addr, ids, err, tc.want, tc.err)
		}
	}
	if got, err := db.Resolve(ctx, smtp.Address{Local: "nobody", Domain: "a.test"}); err != nil || len(got) != 1 || got[0].UserID != alice.ID {
		t.Errorf("Resolve(nobody@a.test) = %v, %v; the catch-all still takes the mail", got, err)
	}
}

func TestGrants(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	db.AddDomain(ctx, "a.test")
	db.AddDomain(ctx, "b.test")
	alice, _ := db.AddUser(ctx, "alice@a.test", "pw")
	if err := db.AddGrant(ctx, "alice@a.test", "@B.test"); err != nil {
		t.Fatal(err)
	}
	if err := db.AddGrant(ctx, "Alice@a.test", "Boss@a.test"); err != nil {
		t.Fatal(err)
	}
	if err := db.AddGrant(ctx, "alice@a.test", "@b.test"); !errors.Is(err, ErrExists) {
		t.Errorf("second grant of @b.test: %v, want ErrExists", err)
	}
	if err := db.AddGrant(ctx, "alice@a.test", "@c.test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("grant of a domain that is not local: %v, want ErrNotFound", err)
	}
	if err := db.AddGrant(ctx, "nobody@a.test", "@b.test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("grant to an unknown user: %v, want ErrNotFound", err)
	}
	got, err := db.UserGrants(ctx, alice.ID)
	if err != nil || fmt.Sprint(got) != "[@b.test boss@a.test]" {
		t.Errorf("UserGrants = %v, %v", got, err)
	}
	list, err := db.Grants(ctx)
	if err != nil || len(list) != 2 || list[0].User != "alice@a.test" {
		t.Errorf("Grants = %+v, %v", list, err)
	}
	if err := db.DelGrant(ctx, "alice@a.test", "@b.test"); err != nil {
		t.Fatal(err)
	}
	if err := db.DelGrant(ctx, "alice@a.test", "@b.test"); !errors.Is(err, ErrNotFound) {
		t.Errorf("revoking twice: %v, want ErrNotFound", err)
	}
	if got, _ := db.UserGrants(ctx, alice.ID); fmt.Sprint(got) != "[boss@a.test]" {
		t.Errorf("after revoking, UserGrants = %v", got)
	}
	db.DelUser(ctx, "alice@a.test")
	if list, _ := db.Grants(ctx); len(list) != 0 {
		t.Errorf("grants outlive their user: %+v", list)
	}
}
