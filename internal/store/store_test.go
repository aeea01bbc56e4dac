package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/repute-mail/repute/internal/smtp"
)

func openTest(t *testing.T) *DB {
	t.Helper()
	db, err := Open(context.Background(), Options{Path: filepath.Join(t.TempDir(), "repute.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestGroupCommitIsolatesFailures(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make([]error, 200)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = db.Write(ctx, func(tx *sql.Tx) error {
				if _, err := tx.Exec(`INSERT INTO domains (name, created) VALUES (?, 0)`, fmt.Sprintf("d%d.test", i)); err != nil {
					return err
				}
				if i%10 == 0 {
					return errors.New("boom")
				}
				return nil
			})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if (i%10 == 0) != (err != nil) {
			t.Errorf("request %d: err = %v", i, err)
		}
	}
	ds, err := db.Domains(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 180 {
		t.Errorf("got %d domains, want 180 (failed requests must roll back alone)", len(ds))
	}
}

func TestSchemaSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.db")
	ctx := context.Background()
	db, err := Open(ctx, Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.AddDomain(ctx, "Example.ORG"); err != nil {
		t.Fatal(err)
	}
	db.Close()
	db, err = Open(ctx, Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ok, err := db.IsLocalDomain(ctx, "example.org")
	if !ok || err != nil {
		t.Fatalf("domain lost across reopen: %v %v", ok, err)
	}
}

func TestResolve(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := db.AddDomain(ctx, "a.test")
	must(err)
	_, err = db.AddDomain(ctx, "b.test")
	must(err)
	alice, err := db.AddUser(ctx, "Alice@A.test", "pw")
	must(err)
	bob, err := db.AddUser(ctx, "bob@a.test", "pw")
	must(err)
	must(db.AddAlias(ctx, "team@a.test", "alice@a.test", "bob@a.test", "carol@remote.example"))
	must(db.AddAlias(ctx, "@b.test", "bob@a.test"))
	must(db.AddAlias(ctx, "loop1@a.test", "loop2@a.test"))
	must(db.AddAlias(ctx, "loop2@a.test", "loop1@a.test"))

	tests := []struct {
		rcpt string
		want []Target
		err  error
	}{
		{"alice@a.test", []Target{{alice.ID, "alice@a.test"}}, nil},
		{"ALICE@a.test", []Target{{alice.ID, "alice@a.test"}}, nil},
		{"alice+news@a.test", []Target{{alice.ID, "alice@a.test"}}, nil},
		{"team@a.test", []Target{{alice.ID, "alice@a.test"}, {bob.ID, "bob@a.test"}, {0, "carol@remote.example"}}, nil},
		{"anything@b.test", []Target{{bob.ID, "bob@a.test"}}, nil},
		{"nobody@a.test", nil, ErrNoSuchUser},
		{"x@elsewhere.test", nil, ErrNotLocal},
		{"loop1@a.test", nil, ErrNoSuchUser},
	}
	for _, tc := range tests {
		a, err := smtp.ParseAddress(tc.rcpt)
		must(err)
		got, err := db.Resolve(ctx, a)
		if !errors.Is(err, tc.err) {
			t.Errorf("Resolve(%s) err = %v, want %v", tc.rcpt, err, tc.err)
			continue
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("Resolve(%s) = %v, want %v", tc.rcpt, got, tc.want)
		}
	}
	if _, err := db.Authenticate(ctx, "alice@a.test", "pw"); err != nil {
		t.Errorf("login: %v", err)
	}
	if _, err := db.Authenticate(ctx, "alice@a.test", "wrong"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("bad login: %v", err)
	}
	if _, err := db.Authenticate(ctx, "ghost@a.test", "pw"); !errors.Is(err, ErrBadCredentials) {
		t.Errorf("unknown login: %v", err)
	}
	if err := db.DelDomain(ctx, "a.test"); err == nil {
		t.Error("deleting a domain with users must fail")
	}
}

func TestAcceptSharesBody(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	db.AddDomain(ctx, "a.test")
	u1, _ := db.AddUser(ctx, "u1@a.test", "pw")
	u2, _ := db.AddUser(ctx, "u2@a.test", "pw")
	body := []byte("Subject: hi\r\n\r\nhello\r\n")
	st, err := db.Accept(ctx, &Delivery{MsgID: "m1", From: "x@y.test", Body: body,
		Local:  []LocalTarget{{UserID: u1.ID}, {UserID: u2.ID, Mailbox: "Archive"}, {UserID: u2.ID, Mailbox: "Nope"}},
		Remote: []string{"r@remote.test"}, Received: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 3 || st[0].UID != 1 || st[1].UID != 1 || st[2].UID != 1 || st[1].MailboxID == st[2].MailboxID {
		t.Fatalf("stored = %+v", st)
	}
	var blobs, refs int
	db.Read().QueryRow(`SELECT count(*), sum(refs) FROM blobs`).Scan(&blobs, &refs)
	if blobs != 1 || refs != 4 {
		t.Errorf("blobs=%d refs=%d, want 1 body with 4 references", blobs, refs)
	}
	q, err := db.Queue(ctx)
	if err != nil || len(q) != 1 || q[0].Domain != "remote.test" || q[0].Size != int64(len(body)) {
		t.Fatalf("queue = %+v, %v", q, err)
	}
	// Deleting every reference deletes the body.
	db.Write(ctx, func(tx *sql.Tx) error {
		_, err := tx.Exec(`DELETE FROM messages`)
		if err == nil {
			_, err = tx.Exec(`DELETE FROM queue`)
		}
		return err
	})
	db.Read().QueryRow(`SELECT count(*) FROM blobs`).Scan(&blobs)
	if blobs != 0 {
		t.Errorf("orphan body left: %d", blobs)
	}
}

// A change made through another connection (another process, such as the admin commands)
// reaches the directory within its TTL.
func TestDirectorySeesOtherWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "r.db")
	ctx := context.Background()
	now := time.Unix(1_700_000_000, 0)
	server, err := Open(ctx, Options{Path: path, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	server.AddDomain(ctx, "a.test")
	addr, _ := smtp.ParseAddress("late@a.test")
	if _, err := server.Resolve(ctx, addr); !errors.Is(err, ErrNoSuchUser) {
		t.Fatalf("before: %v", err)
	}
	admin, err := Open(ctx, Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.AddUser(ctx, "late@a.test", "pw"); err != nil {
		t.Fatal(err)
	}
	admin.Close()
	now = now.Add(2 * directoryTTL)
	if got, err := server.Resolve(ctx, addr); err != nil || len(got) != 1 {
		t.Fatalf("after the TTL: %v %v", got, err)
	}
}

func TestMTASTSCache(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	if _, ok, err := db.MTASTSGet(ctx, "b.test"); ok || err != nil {
		t.Fatalf("empty cache: %v %v", ok, err)
	}
	exp := time.Unix(1_800_000_000, 0)
	for _, id := range []string{"1", "2"} {
		if err := db.MTASTSPut(ctx, "B.test", MTASTSPolicy{RecordID: id, Policy: "version: STSv1\nmode: enforce\n", Expires: exp}); err != nil {
			t.Fatal(err)
		}
	}
	p, ok, err := db.MTASTSGet(ctx, "b.test")
	if !ok || err != nil || p.RecordID != "2" || !p.Expires.Equal(exp) {
		t.Errorf("cached = %+v %v %v", p, ok, err)
	}
}

func TestDKIMKeys(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	db.AddDomain(ctx, "a.test")
	if err := db.AddDKIMKey(ctx, DKIMKey{Domain: "A.test", Selector: "r2026a", Algorithm: "rsa", PrivatePEM: []byte("pem")}); err != nil {
		t.Fatal(err)
	}
	if err := db.AddDKIMKey(ctx, DKIMKey{Domain: "a.test", Selector: "r2026a", Algorithm: "rsa", PrivatePEM: []byte("x")}); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate selector: %v", err)
	}
	if err := db.AddDKIMKey(ctx, DKIMKey{Domain: "nope.test", Selector: "s", Algorithm: "rsa", PrivatePEM: []byte("x")}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown domain: %v", err)
	}
	ks, err := db.DKIMKeys(ctx, "a.test")
	if err != nil || len(ks) != 1 || ks[0].State != KeyActive || string(ks[0].PrivatePEM) != "pem" {
		t.Errorf("keys = %+v, %v", ks, err)
	}
}

func TestDKIMRotation(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	db.AddDomain(ctx, "a.test")
	db.AddDKIMKey(ctx, DKIMKey{Domain: "a.test", Selector: "r2026a", Algorithm: "rsa", PrivatePEM: []byte("old")})
	db.AddDKIMKey(ctx, DKIMKey{Domain: "a.test", Selector: "e2026a", Algorithm: "ed25519", PrivatePEM: []byte("ed")})
	db.AddDKIMKey(ctx, DKIMKey{Domain: "a.test", Selector: "r2026b", Algorithm: "rsa", State: KeyPending, PrivatePEM: []byte("new")})
	if err := db.ActivateDKIMKey(ctx, "a.test", "r2026a"); err == nil {
		t.Error("activating an active key must fail")
	}
	if err := db.ActivateDKIMKey(ctx, "a.test", "r2026b"); err != nil {
		t.Fatal(err)
	}
	ks, _ := db.DKIMKeys(ctx, "a.test")
	states := map[string]string{}
	for _, k := range ks {
		states[k.Selector] = k.State
	}
	want := map[string]string{"r2026a": KeyRetired, "e2026a": KeyActive, "r2026b": KeyActive}
	if fmt.Sprint(states) != fmt.Sprint(want) {
		t.Errorf("states = %v, want %v", states, want)
	}
}
