package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

func mailUser(t *testing.T, db *DB) User {
	t.Helper()
	ctx := context.Background()
	if _, err := db.AddDomain(ctx, "mail.test"); err != nil && !errors.Is(err, ErrExists) {
		t.Fatal(err)
	}
	u, err := db.AddUser(ctx, fmt.Sprintf("u%d@mail.test", time.Now().UnixNano()), "pw")
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func names(t *testing.T, db *DB, userID int64) []string {
	t.Helper()
	mbs, err := db.Mailboxes(context.Background(), userID)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mb := range mbs {
		out = append(out, mb.Name)
	}
	return out
}

func mustMailbox(t *testing.T, db *DB, userID int64, name string) Mailbox {
	t.Helper()
	mb, err := db.MailboxByName(context.Background(), userID, name)
	if err != nil {
		t.Fatal(err)
	}
	return mb
}

func TestMailboxHierarchy(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	u := mailUser(t, db)
	if _, err := db.CreateMailbox(ctx, u.ID, "a/b/c", ""); err != nil {
		t.Fatal(err)
	}
	want := []string{"Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash", "a", "a/b", "a/b/c"}
	if got := names(t, db, u.ID); !slices.Equal(got, want) {
		t.Fatalf("mailboxes = %v, want %v", got, want)
	}
	if sent := mustMailbox(t, db, u.ID, "Sent"); sent.SpecialUse != `\Sent` || !sent.Subscribed || sent.UIDNext != 1 {
		t.Errorf("Sent = %+v", sent)
	}

	tests := []struct {
		op, name string
		err      error
	}{
		{"create", "a/b", ErrExists},
		{"delete", "INBOX", ErrInboxDelete},
		{"delete", "a", ErrHasChildren},
		{"delete", "nope", ErrNotFound},
		{"delete", "a/b/c", nil},
		{"delete", "a/b", nil},
		{"subscribe", "nope", ErrNotFound},
		{"subscribe", "a", nil},
	}
	for _, tc := range tests {
		var err error
		switch tc.op {
		case "create":
			_, err = db.CreateMailbox(ctx, u.ID, tc.name, "")
		case "delete":
			_, err = db.DeleteMailbox(ctx, u.ID, tc.name)
		case "subscribe":
			err = db.SetSubscribed(ctx, u.ID, tc.name, false)
		}
		if !errors.Is(err, tc.err) {
			t.Errorf("%s %s: err = %v, want %v", tc.op, tc.name, err, tc.err)
		}
	}
	if mustMailbox(t, db, u.ID, "a").Subscribed {
		t.Error("a still subscribed")
	}

	// A mailbox created again gets a new UIDVALIDITY, even when the deleted one held the
	// highest value and it all happens within one second.
	old := mustMailbox(t, db, u.ID, "a")
	if _, err := db.DeleteMailbox(ctx, u.ID, "a"); err != nil {
		t.Fatal(err)
	}
	again, err := db.CreateMailbox(ctx, u.ID, "a", `\Archive`)
	if err != nil {
		t.Fatal(err)
	}
	if again.UIDValidity == old.UIDValidity || again.SpecialUse != `\Archive` {
		t.Errorf("recreated a = %+v, old uidvalidity %d", again, old.UIDValidity)
	}
}

func TestRenameMailbox(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	u := mailUser(t, db)
	for _, n := range []string{"p/q", "x"} {
		if _, err := db.CreateMailbox(ctx, u.ID, n, ""); err != nil {
			t.Fatal(err)
		}
	}
	p := mustMailbox(t, db, u.ID, "p")
	tests := []struct {
		from, to string
		err      bool
	}{
		{"p", "x", true},       // exists
		{"p", "p/r", true},     // into itself
		{"nope", "y", true},    // missing
		{"p", "r/s", false},    // moves the tree and creates r
		{"Sent", "Out", false}, // keeps the special use
	}
	for _, tc := range tests {
		_, err := db.RenameMailbox(ctx, u.ID, tc.from, tc.to)
		if (err != nil) != tc.err {
			t.Errorf("rename %s %s: err = %v", tc.from, tc.to, err)
		}
	}
	want := []string{"Archive", "Drafts", "INBOX", "Junk", "Out", "Trash", "r", "r/s", "r/s/q", "x"}
	if got := names(t, db, u.ID); !slices.Equal(got, want) {
		t.Fatalf("after renames: %v, want %v", got, want)
	}
	if rs := mustMailbox(t, db, u.ID, "r/s"); rs.ID != p.ID || rs.UIDValidity != p.UIDValidity {
		t.Errorf("renamed mailbox lost its identity: %+v vs %+v", rs, p)
	}
	if out := mustMailbox(t, db, u.ID, "Out"); out.SpecialUse != `\Sent` {
		t.Errorf("Out = %+v", out)
	}

	// Renaming the INBOX moves its messages to a new mailbox and leaves it empty.
	inbox := mustMailbox(t, db, u.ID, "INBOX")
	for range 3 {
		if _, err := db.AppendMessage(ctx, inbox.ID, []byte("Subject: x\r\n\r\nx\r\n"), nil, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	res, err := db.RenameMailbox(ctx, u.ID, "INBOX", "Old/Inbox")
	if err != nil {
		t.Fatal(err)
	}
	if res.MovedFrom != inbox.ID || !slices.Equal(res.Moved, []uint32{1, 2, 3}) {
		t.Errorf("rename INBOX = %+v", res)
	}
	moved := mustMailbox(t, db, u.ID, "Old/Inbox")
	if uids, _ := db.MessageUIDs(ctx, moved.ID, 0); !slices.Equal(uids, []uint32{1, 2, 3}) || moved.UIDNext != 4 {
		t.Errorf("moved mailbox uids=%v uidnext=%d", uids, moved.UIDNext)
	}
	after := mustMailbox(t, db, u.ID, "INBOX")
	if uids, _ := db.MessageUIDs(ctx, after.ID, 0); len(uids) != 0 || after.UIDNext != 4 || after.UIDValidity != inbox.UIDValidity {
		t.Errorf("INBOX after rename: uids=%v %+v", uids, after)
	}
}

func TestApplyFlags(t *testing.T) {
	tests := []struct {
		cur   []string
		op    FlagOp
		flags []string
		want  []string
	}{
		{nil, FlagsAdd, []string{`\Seen`}, []string{`\Seen`}},
		{[]string{`\Seen`}, FlagsAdd, []string{`\seen`, "$Label"}, []string{`\Seen`, "$Label"}},
		{[]string{`\Seen`, "$Label"}, FlagsRemove, []string{"$label"}, []string{`\Seen`}},
		{[]string{`\Seen`}, FlagsRemove, []string{`\Deleted`}, []string{`\Seen`}},
		{[]string{`\Seen`, `\Flagged`}, FlagsReplace, []string{`\Draft`}, []string{`\Draft`}},
		{[]string{`\Seen`}, FlagsReplace, nil, nil},
	}
	for _, tc := range tests {
		got := applyFlags(tc.cur, tc.op, tc.flags)
		if !slices.Equal(got, tc.want) {
			t.Errorf("applyFlags(%v, %d, %v) = %v, want %v", tc.cur, tc.op, tc.flags, got, tc.want)
		}
	}
}

func TestMessagesFlagsExpunge(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	u := mailUser(t, db)
	inbox := mustMailbox(t, db, u.ID, "INBOX")
	date := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	for i := 1; i <= 6; i++ {
		var flags []string
		if i%2 == 0 {
			flags = []string{`\Seen`}
		}
		body := fmt.Appendf(nil, "Subject: %d\r\n\r\nbody %d\r\n", i, i)
		uid, err := db.AppendMessage(ctx, inbox.ID, body, flags, date)
		if err != nil || uid != uint32(i) {
			t.Fatalf("append %d: uid %d, %v", i, uid, err)
		}
	}
	for _, uids := range [][]uint32{{1, 2, 3}, {1, 3}, {1, 6}, {6, 99}, {}} {
		msgs, err := db.Messages(ctx, inbox.ID, uids)
		if err != nil {
			t.Fatal(err)
		}
		var got []uint32
		for _, m := range msgs {
			got = append(got, m.UID)
		}
		want := slices.DeleteFunc(slices.Clone(uids), func(u uint32) bool { return u > 6 })
		if !slices.Equal(got, want) && len(got)+len(want) > 0 {
			t.Errorf("Messages(%v) = %v", uids, got)
		}
	}
	msgs, _ := db.Messages(ctx, inbox.ID, []uint32{2})
	if len(msgs) != 1 || !msgs[0].InternalDate.Equal(date) || msgs[0].Size != 22 || !slices.Equal(msgs[0].Flags, []string{`\Seen`}) {
		t.Fatalf("message 2 = %+v", msgs)
	}
	if body, err := db.Body(ctx, msgs[0].BlobID); err != nil || string(body) != "Subject: 2\r\n\r\nbody 2\r\n" {
		t.Errorf("body = %q, %v", body, err)
	}

	changes, err := db.UpdateFlags(ctx, inbox.ID, []uint32{1, 2, 3, 42}, FlagsAdd, []string{`\Deleted`, `\Seen`})
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 3 || !changes[0].Changed || !changes[1].Changed || changes[1].UID != 2 {
		t.Errorf("changes = %+v", changes)
	}
	if first, _ := db.FirstUnseen(ctx, inbox.ID); first != 5 {
		t.Errorf("first unseen = %d, want 5", first)
	}
	st, err := db.MailboxStatus(ctx, inbox.ID)
	if err != nil || st.Messages != 6 || st.Unseen != 1 || st.Deleted != 3 || st.Size != 6*22 || st.DeletedSize != 3*22 {
		t.Errorf("status = %+v, %v", st, err)
	}
	if kw, _ := db.Keywords(ctx, inbox.ID); !slices.Equal(kw, []string{`\Deleted`, `\Seen`}) {
		t.Errorf("keywords = %v", kw)
	}
	// Only listed messages with \Deleted go.
	gone, err := db.Expunge(ctx, inbox.ID, []uint32{2, 3, 4})
	if err != nil || !slices.Equal(gone, []uint32{2, 3}) {
		t.Fatalf("expunge = %v, %v", gone, err)
	}
	if uids, _ := db.MessageUIDs(ctx, inbox.ID, 0); !slices.Equal(uids, []uint32{1, 4, 5, 6}) {
		t.Errorf("uids after expunge = %v", uids)
	}
	var blobs int
	db.Read().QueryRow(`SELECT count(*) FROM blobs`).Scan(&blobs)
	if blobs != 4 {
		t.Errorf("blobs = %d, want 4 (expunged bodies deleted)", blobs)
	}
}

func TestCopyMove(t *testing.T) {
	db := openTest(t)
	ctx := context.Background()
	u := mailUser(t, db)
	inbox, archive := mustMailbox(t, db, u.ID, "INBOX"), mustMailbox(t, db, u.ID, "Archive")
	for range 3 {
		if _, err := db.AppendMessage(ctx, inbox.ID, []byte("Subject: x\r\n\r\nx\r\n"), []string{"$Label"}, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	res, err := db.CopyMessages(ctx, inbox.ID, []uint32{1, 3, 9}, archive.ID)
	if err != nil {
		t.Fatal(err)
	}
	if res.UIDValidity != archive.UIDValidity || !slices.Equal(res.SourceUIDs, []uint32{1, 3}) || !slices.Equal(res.DestUIDs, []uint32{1, 2}) {
		t.Errorf("copy = %+v", res)
	}
	res, err = db.MoveMessages(ctx, inbox.ID, []uint32{2, 3}, archive.ID)
	if err != nil || !slices.Equal(res.SourceUIDs, []uint32{2, 3}) || !slices.Equal(res.DestUIDs, []uint32{3, 4}) {
		t.Fatalf("move = %+v, %v", res, err)
	}
	if uids, _ := db.MessageUIDs(ctx, inbox.ID, 0); !slices.Equal(uids, []uint32{1}) {
		t.Errorf("inbox after move = %v", uids)
	}
	msgs, _ := db.Messages(ctx, archive.ID, []uint32{1, 2, 3, 4})
	if len(msgs) != 4 || !slices.Equal(msgs[3].Flags, []string{"$Label"}) {
		t.Errorf("archive = %+v", msgs)
	}
	var blobs, refs int
	db.Read().QueryRow(`SELECT count(*), sum(refs) FROM blobs`).Scan(&blobs, &refs)
	if blobs != 3 || refs != 5 {
		t.Errorf("blobs=%d refs=%d, want 3 bodies shared by 5 messages", blobs, refs)
	}
	if _, err := db.MoveMessages(ctx, inbox.ID, []uint32{1}, inbox.ID); err == nil {
		t.Error("move into the same mailbox must fail")
	}
	if _, err := db.CopyMessages(ctx, inbox.ID, []uint32{1}, 12345); !errors.Is(err, ErrNotFound) {
		t.Errorf("copy to a missing mailbox: %v", err)
	}
}
