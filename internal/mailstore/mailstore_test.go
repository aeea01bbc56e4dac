package mailstore

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/repute-mail/repute/internal/store"
)

func setup(t *testing.T) (*Mailstore, *store.DB, store.User) {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, store.Options{Path: filepath.Join(t.TempDir(), "r.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.AddDomain(ctx, "example.test"); err != nil {
		t.Fatal(err)
	}
	u, err := db.AddUser(ctx, "alice@example.test", "pw")
	if err != nil {
		t.Fatal(err)
	}
	return New(db, nil), db, u
}

func mustSelect(t *testing.T, m *Mailstore, u store.User, name string, readOnly bool) *View {
	t.Helper()
	v, err := m.Select(context.Background(), u.ID, name, readOnly)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}

func appendN(t *testing.T, m *Mailstore, u store.User, name string, n int) []uint32 {
	t.Helper()
	var uids []uint32
	for i := range n {
		_, uid, err := m.Append(context.Background(), u.ID, name, fmt.Appendf(nil, "Subject: %d\r\n\r\nhi\r\n", i), nil, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		uids = append(uids, uid)
	}
	return uids
}

func syncDesc(t *testing.T, v *View, allowExpunge bool) string {
	t.Helper()
	ups, err := v.Sync(context.Background(), allowExpunge)
	if err != nil {
		t.Fatal(err)
	}
	return describe(ups)
}

func describe(ups []Update) string {
	s := ""
	for _, u := range ups {
		switch u.Kind {
		case UpdateExists:
			s += fmt.Sprintf("exists %d;", u.Count)
		case UpdateExpunge:
			s += fmt.Sprintf("expunge %d;", u.Seq)
		case UpdateFlags:
			s += fmt.Sprintf("flags %d/%d %v;", u.Seq, u.UID, u.Flags)
		}
	}
	return s
}

func viewUIDs(v *View) []uint32 {
	var out []uint32
	v.Each(func(_, uid uint32) bool {
		out = append(out, uid)
		return true
	})
	return out
}

func TestNormalizeName(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"INBOX", "INBOX", true},
		{"inbox", "INBOX", true},
		{"Inbox/Sub", "INBOX/Sub", true},
		{"Inboxes", "Inboxes", true},
		{"Archive/2024/", "Archive/2024", true},
		{"Ünïcode", "Ünïcode", true},
		{"", "", false},
		{"/top", "", false},
		{"a//b", "", false},
		{"a//", "", false},
		{"a*", "", false},
		{"a%b", "", false},
		{"a\x01b", "", false},
		{"bad\xffutf8", "", false},
	}
	for _, tc := range tests {
		got, err := NormalizeName(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("NormalizeName(%q) = %q, %v", tc.in, got, err)
		}
		if err != nil && !errors.Is(err, ErrInvalidName) {
			t.Errorf("NormalizeName(%q) error %v is not ErrInvalidName", tc.in, err)
		}
	}
}

func TestCanonicalFlags(t *testing.T) {
	tests := []struct{ in, want []string }{
		{[]string{`\seen`, `\SEEN`, `\Flagged`}, []string{`\Seen`, `\Flagged`}},
		{[]string{`\Recent`, `\Bogus`, "$Label", "$label"}, []string{"$Label"}},
		{nil, []string{}},
	}
	for _, tc := range tests {
		if got := CanonicalFlags(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("CanonicalFlags(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestViewsSeeEachOther(t *testing.T) {
	m, _, u := setup(t)
	ctx := context.Background()
	appendN(t, m, u, "INBOX", 3)
	a := mustSelect(t, m, u, "INBOX", false)
	b := mustSelect(t, m, u, "inbox", false)
	if a.Len() != 3 || b.Len() != 3 || a.Mailbox().UIDNext != 4 {
		t.Fatalf("len %d %d, mailbox %+v", a.Len(), b.Len(), a.Mailbox())
	}

	appendN(t, m, u, "INBOX", 2)
	if got := syncDesc(t, a, false); got != "exists 5;" {
		t.Errorf("a after append: %q", got)
	}

	// A flag change reaches the other view, with the flags as they are now.
	if _, err := a.Store(ctx, []uint32{2}, store.FlagsAdd, []string{`\flagged`}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Store(ctx, []uint32{2}, store.FlagsAdd, []string{`\Deleted`}); err != nil {
		t.Fatal(err)
	}
	if got := syncDesc(t, a, true); got != "" {
		t.Errorf("a sees its own flag change: %q", got)
	}
	if got := syncDesc(t, b, false); got != `exists 5;flags 2/2 [\Flagged \Deleted];` {
		t.Errorf("b: %q", got)
	}

	// An expunge waits until the client may hear it; so do the changes queued after it.
	gone, err := a.Expunge(ctx, nil)
	if err != nil || !slices.Equal(gone, []uint32{2}) {
		t.Fatalf("expunge = %v, %v", gone, err)
	}
	appendN(t, m, u, "INBOX", 1)
	if got := syncDesc(t, b, false); got != "" || b.Len() != 5 || b.Seq(3) != 3 {
		t.Errorf("b during FETCH: %q, len %d", got, b.Len())
	}
	if got := syncDesc(t, b, true); got != "expunge 2;exists 5;" {
		t.Errorf("b after: %q", got)
	}
	if got := viewUIDs(b); !slices.Equal(got, []uint32{1, 3, 4, 5, 6}) {
		t.Errorf("b uids = %v", got)
	}
	if got := syncDesc(t, a, true); got != "expunge 2;exists 5;" {
		t.Errorf("a hears its own expunge through Sync: %q", got)
	}
}

func TestDeliveredWakesView(t *testing.T) {
	m, db, u := setup(t)
	ctx := context.Background()
	v := mustSelect(t, m, u, "INBOX", false)
	stored, err := db.Accept(ctx, &store.Delivery{MsgID: "x", Body: []byte("Subject: x\r\n\r\nx\r\n"),
		Local: []store.LocalTarget{{UserID: u.ID}}, Received: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	m.Delivered(stored)
	m.Delivered(nil)
	select {
	case <-v.Changed():
	case <-time.After(10 * time.Second):
		t.Fatal("no notification after delivery")
	}
	if got := syncDesc(t, v, true); got != "exists 1;" {
		t.Errorf("after delivery: %q", got)
	}
}

func TestMoveCopyAndReadOnly(t *testing.T) {
	m, _, u := setup(t)
	ctx := context.Background()
	appendN(t, m, u, "INBOX", 4)
	src := mustSelect(t, m, u, "INBOX", false)
	dst := mustSelect(t, m, u, "Archive", false)
	ro := mustSelect(t, m, u, "INBOX", true)

	res, err := src.Move(ctx, []uint32{2, 3}, "archive")
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("move to a missing mailbox (names are case-sensitive but INBOX): %+v %v", res, err)
	}
	res, err = src.Move(ctx, []uint32{2, 3}, "Archive")
	if err != nil || !slices.Equal(res.DestUIDs, []uint32{1, 2}) {
		t.Fatalf("move = %+v, %v", res, err)
	}
	if got := syncDesc(t, src, true); got != "expunge 3;expunge 2;" {
		t.Errorf("src: %q", got)
	}
	if got := syncDesc(t, dst, true); got != "exists 2;" {
		t.Errorf("dst: %q", got)
	}
	if _, err := src.Copy(ctx, []uint32{1}, "INBOX"); err != nil {
		t.Fatal(err)
	}
	if got := syncDesc(t, ro, true); got != "expunge 3;expunge 2;exists 3;" {
		t.Errorf("read-only view: %q", got)
	}
	if _, err := src.Move(ctx, []uint32{1}, "INBOX"); !errors.Is(err, ErrSameMailbox) {
		t.Errorf("move to itself: %v", err)
	}
	for name, err := range map[string]error{
		"store":   func() error { _, err := ro.Store(ctx, []uint32{1}, store.FlagsAdd, []string{`\Seen`}); return err }(),
		"expunge": func() error { _, err := ro.Expunge(ctx, nil); return err }(),
		"move":    func() error { _, err := ro.Move(ctx, []uint32{1}, "Archive"); return err }(),
	} {
		if !errors.Is(err, ErrReadOnly) {
			t.Errorf("%s in a read-only view: %v", name, err)
		}
	}
}

func TestDeleteAndRenameSelected(t *testing.T) {
	m, _, u := setup(t)
	ctx := context.Background()
	if err := m.Create(ctx, u.ID, "Work", ""); err != nil {
		t.Fatal(err)
	}
	appendN(t, m, u, "Work", 2)
	appendN(t, m, u, "INBOX", 2)
	work := mustSelect(t, m, u, "Work", false)
	inbox := mustSelect(t, m, u, "INBOX", false)

	if err := m.Delete(ctx, u.ID, "Work"); err != nil {
		t.Fatal(err)
	}
	if got := syncDesc(t, work, false); got != "" {
		t.Errorf("deleted mailbox during FETCH: %q", got)
	}
	if got := syncDesc(t, work, true); got != "expunge 2;expunge 1;" {
		t.Errorf("deleted mailbox: %q", got)
	}
	if _, err := work.Messages(ctx, []uint32{1}); !errors.Is(err, ErrMailboxGone) {
		t.Errorf("use of a deleted mailbox: %v", err)
	}

	if err := m.Rename(ctx, u.ID, "inbox", "Old"); err != nil {
		t.Fatal(err)
	}
	if got := syncDesc(t, inbox, true); got != "expunge 2;expunge 1;" {
		t.Errorf("INBOX after rename: %q", got)
	}
	appendN(t, m, u, "INBOX", 1)
	if got := syncDesc(t, inbox, true); got != "exists 1;" || !slices.Equal(viewUIDs(inbox), []uint32{3}) {
		t.Errorf("INBOX keeps counting UIDs: %q %v", got, viewUIDs(inbox))
	}
	tests := []struct {
		op, a, b string
		err      error
	}{
		{"create", "INBOX", "", store.ErrExists},
		{"create", "Bad*", "", ErrInvalidName},
		{"rename", "Old", "inbox", store.ErrExists},
		{"delete", "Inbox", "", store.ErrInboxDelete},
		{"subscribe", "Nope", "", store.ErrNotFound},
	}
	for _, tc := range tests {
		var err error
		switch tc.op {
		case "create":
			err = m.Create(ctx, u.ID, tc.a, "")
		case "rename":
			err = m.Rename(ctx, u.ID, tc.a, tc.b)
		case "delete":
			err = m.Delete(ctx, u.ID, tc.a)
		case "subscribe":
			err = m.Subscribe(ctx, u.ID, tc.a, true)
		}
		if !errors.Is(err, tc.err) {
			t.Errorf("%s %s %s: %v, want %v", tc.op, tc.a, tc.b, err, tc.err)
		}
	}
}

func TestSharedStateDropped(t *testing.T) {
	m, _, u := setup(t)
	a := mustSelect(t, m, u, "INBOX", false)
	b := mustSelect(t, m, u, "INBOX", true)
	a.Close()
	if m.lookup(a.Mailbox().ID) == nil {
		t.Fatal("state dropped while a view is open")
	}
	b.Close()
	b.Close()
	if m.lookup(a.Mailbox().ID) != nil {
		t.Fatal("state kept after the last view closed")
	}
}

// Concurrent writers and readers: every view ends up with exactly the database's UIDs.
func TestConcurrentViewsConverge(t *testing.T) {
	m, db, u := setup(t)
	ctx := context.Background()
	appendN(t, m, u, "INBOX", 5)
	views := make([]*View, 4)
	var wg sync.WaitGroup
	for i := range views {
		wg.Add(1)
		go func() {
			defer wg.Done()
			views[i], _ = m.Select(ctx, u.ID, "INBOX", false)
		}()
	}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				_, _, err := m.Append(ctx, u.ID, "INBOX", []byte("Subject: c\r\n\r\nc\r\n"), []string{`\Deleted`}, time.Time{})
				if err != nil {
					t.Error(err)
					return
				}
				if (i+w)%3 == 0 {
					stored, err := db.Accept(ctx, &store.Delivery{MsgID: "c", Body: []byte("x\r\n"),
						Local: []store.LocalTarget{{UserID: u.ID}}, Received: time.Now()})
					if err != nil {
						t.Error(err)
						return
					}
					m.Delivered(stored)
				}
			}
		}()
	}
	wg.Wait()
	for _, v := range views {
		if v == nil {
			t.Fatal("select failed")
		}
		defer v.Close()
	}
	if _, err := views[1].Expunge(ctx, nil); err != nil {
		t.Fatal(err)
	}
	want, _ := db.MessageUIDs(ctx, views[0].Mailbox().ID, 0)
	deadline := time.Now().Add(10 * time.Second)
	for i, v := range views {
		for {
			if _, err := v.Sync(ctx, true); err != nil {
				t.Fatal(err)
			}
			if slices.Equal(viewUIDs(v), want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("view %d = %v, want %v", i, viewUIDs(v), want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func FuzzNormalizeName(f *testing.F) {
	for _, s := range []string{"INBOX", "inbox/a", "a/b/", "//", "a*", "Ünï", "x\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		n, err := NormalizeName(name)
		if err != nil {
			return
		}
		again, err := NormalizeName(n)
		if err != nil || again != n {
			t.Errorf("NormalizeName(%q) = %q, but that normalizes to %q, %v", name, n, again, err)
		}
	})
}
