package imapsrv

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

func list(t *testing.T, c *imapclient.Client, pattern string, options *imap.ListOptions) map[string]*imap.ListData {
	t.Helper()
	data, err := c.List("", pattern, options).Collect()
	if err != nil {
		t.Fatalf("list %s: %v", pattern, err)
	}
	out := make(map[string]*imap.ListData)
	for _, d := range data {
		if d.Delim != '/' {
			t.Errorf("%s: delimiter %q", d.Mailbox, d.Delim)
		}
		out[d.Mailbox] = d
	}
	return out
}

func keys(m map[string]*imap.ListData) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func TestListSpecialUse(t *testing.T) {
	h := start(t, "", nil)
	c := h.login(nil)
	appendMsg(t, c, "Sent", simpleMsg("s", "x"), nil)
	all := list(t, c, "*", nil)
	want := map[string]imap.MailboxAttr{"INBOX": "", "Sent": imap.MailboxAttrSent, "Drafts": imap.MailboxAttrDrafts,
		"Trash": imap.MailboxAttrTrash, "Junk": imap.MailboxAttrJunk, "Archive": imap.MailboxAttrArchive}
	if len(all) != len(want) {
		t.Errorf("LIST * = %v", keys(all))
	}
	for name, attr := range want {
		d := all[name]
		if d == nil {
			t.Errorf("%s missing", name)
			continue
		}
		if attr != "" && !slices.Contains(d.Attrs, attr) {
			t.Errorf("%s attributes %v, want %s", name, d.Attrs, attr)
		}
	}
	special := list(t, c, "*", &imap.ListOptions{SelectSpecialUse: true, ReturnSpecialUse: true})
	if got := keys(special); !slices.Equal(got, []string{"Archive", "Drafts", "Junk", "Sent", "Trash"}) {
		t.Errorf("LIST (SPECIAL-USE) = %v", got)
	}
	withStatus := list(t, c, "%", &imap.ListOptions{ReturnStatus: &imap.StatusOptions{NumMessages: true, UIDNext: true, UIDValidity: true}})
	if st := withStatus["Sent"].Status; st == nil || *st.NumMessages != 1 || st.UIDNext != 2 || st.UIDValidity == 0 {
		t.Errorf("LIST-STATUS Sent = %+v", withStatus["Sent"])
	}
	if got := keys(list(t, c, "inbox", nil)); !slices.Equal(got, []string{"INBOX"}) {
		t.Errorf("LIST inbox = %v", got)
	}
	ns, err := c.Namespace().Wait()
	if err != nil || len(ns.Personal) != 1 || ns.Personal[0].Delim != '/' || ns.Personal[0].Prefix != "" {
		t.Errorf("NAMESPACE = %+v, %v", ns, err)
	}
}

func TestMailboxCommands(t *testing.T) {
	h := start(t, "", nil)
	c := h.login(nil)
	appendMsg(t, c, "INBOX", simpleMsg("in1", "x"), nil)
	appendMsg(t, c, "INBOX", simpleMsg("in2", "x"), nil)
	type step struct {
		cmd  string // create, delete, rename, subscribe, unsubscribe
		a, b string
		code imap.ResponseCode // "" = success, "NO" = any failure
	}
	steps := []step{
		{"create", "Projects/2024", "", ""},
		{"create", "Projects", "", imap.ResponseCodeAlreadyExists},
		{"create", "inbox", "", imap.ResponseCodeAlreadyExists},
		{"create", "Bad*Name", "", imap.ResponseCodeCannot},
		{"delete", "Projects", "", imap.ResponseCodeHasChildren},
		{"delete", "INBOX", "", imap.ResponseCodeCannot},
		{"delete", "Nope", "", imap.ResponseCodeNonExistent},
		{"rename", "Projects", "Work", ""},
		{"rename", "Work", "Archive", imap.ResponseCodeAlreadyExists},
		{"rename", "Work", "Work/Deeper", imap.ResponseCodeCannot},
		{"rename", "Nope", "Other", imap.ResponseCodeNonExistent},
		{"unsubscribe", "Work/2024", "", ""},
		{"subscribe", "Nope", "", imap.ResponseCodeNonExistent},
		{"rename", "INBOX", "Old/Inbox", ""},
		{"delete", "Work/2024", "", ""},
	}
	for _, s := range steps {
		var err error
		switch s.cmd {
		case "create":
			err = c.Create(s.a, nil).Wait()
		case "delete":
			err = c.Delete(s.a).Wait()
		case "rename":
			err = c.Rename(s.a, s.b, nil).Wait()
		case "subscribe":
			err = c.Subscribe(s.a).Wait()
		case "unsubscribe":
			err = c.Unsubscribe(s.a).Wait()
		}
		switch {
		case s.code == "" && err != nil:
			t.Errorf("%s %s %s: %v", s.cmd, s.a, s.b, err)
		case s.code != "" && err == nil:
			t.Errorf("%s %s %s succeeded, want NO [%s]", s.cmd, s.a, s.b, s.code)
		case s.code != "" && s.code != "NO" && imapCode(err) != s.code:
			t.Errorf("%s %s %s: %v, want NO [%s]", s.cmd, s.a, s.b, err, s.code)
		}
	}
	all := list(t, c, "*", nil)
	want := []string{"Archive", "Drafts", "INBOX", "Junk", "Old", "Old/Inbox", "Sent", "Trash", "Work"}
	if got := keys(all); !slices.Equal(got, want) {
		t.Errorf("mailboxes = %v, want %v", got, want)
	}
	if !slices.Contains(all["Old"].Attrs, imap.MailboxAttrHasChildren) || !slices.Contains(all["Work"].Attrs, imap.MailboxAttrHasNoChildren) {
		t.Errorf("children attributes: Old %v, Work %v", all["Old"].Attrs, all["Work"].Attrs)
	}
	for name, n := range map[string]uint32{"INBOX": 0, "Old/Inbox": 2} {
		st, err := c.Status(name, &imap.StatusOptions{NumMessages: true}).Wait()
		if err != nil || *st.NumMessages != n {
			t.Errorf("STATUS %s = %+v, %v; want %d messages", name, st, err, n)
		}
	}
	if err := c.Create("Outbox", &imap.CreateOptions{SpecialUse: []imap.MailboxAttr{imap.MailboxAttrSent}}).Wait(); err != nil {
		t.Fatal(err)
	}
	if d := list(t, c, "Outbox", nil)["Outbox"]; d == nil || !slices.Contains(d.Attrs, imap.MailboxAttrSent) {
		t.Errorf("CREATE-SPECIAL-USE: %+v", d)
	}
	if err := c.Create("Stars", &imap.CreateOptions{SpecialUse: []imap.MailboxAttr{imap.MailboxAttrFlagged}}).Wait(); imapCode(err) != codeUseAttr {
		t.Errorf("CREATE with an unsupported special use: %v, want NO [USEATTR]", err)
	}
	if err := c.Unsubscribe("Old/Inbox").Wait(); err != nil {
		t.Fatal(err)
	}
	subscribed := list(t, c, "*", &imap.ListOptions{SelectSubscribed: true})
	if _, ok := subscribed["Old/Inbox"]; ok || len(subscribed) != len(all) {
		t.Errorf("LIST (SUBSCRIBED) = %v", keys(subscribed))
	}
	if _, err := c.Select("Work/2024", nil).Wait(); imapCode(err) != imap.ResponseCodeNonExistent {
		t.Errorf("select a deleted mailbox: %v", err)
	}
}

// A session whose selected mailbox another session deletes sees its messages expunged and
// can still leave it.
func TestDeleteSelectedMailbox(t *testing.T) {
	h := start(t, "", nil)
	a := h.login(nil)
	w := newWatcher()
	b := h.login(w.handler())
	if err := a.Create("Doomed", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		appendMsg(t, a, "Doomed", simpleMsg(fmt.Sprint(i), "x"), nil)
	}
	mustSelect(t, b, "Doomed", false)
	if err := a.Delete("Doomed").Wait(); err != nil {
		t.Fatal(err)
	}
	if err := b.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	w.expect(t, "expunge 2")
	w.expect(t, "expunge 1")
	if _, err := b.Fetch(imap.SeqSetNum(1), &imap.FetchOptions{Flags: true}).Collect(); err != nil && !strings.Contains(err.Error(), "deleted") {
		t.Errorf("fetch in a deleted mailbox: %v", err)
	}
	if err := b.UnselectAndExpunge().Wait(); err != nil {
		t.Errorf("CLOSE of a deleted mailbox: %v", err)
	}
}
