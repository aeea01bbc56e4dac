package imapsrv

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

const multipartMsg = "From: Bob <bob@example.org>\r\n" +
	"To: alice@example.test\r\n" +
	"Subject: Hello there\r\n" +
	"Date: Mon, 02 Jan 2006 15:04:05 -0700\r\n" +
	"Message-ID: <m1@example.org>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"b1\"\r\n" +
	"\r\n" +
	"--b1\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\n" +
	"\r\n" +
	"Plain body text\r\n" +
	"--b1\r\n" +
	"Content-Type: text/html\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"PHA+aHRtbDwvcD4=\r\n" +
	"--b1--\r\n"

func TestAppendFetch(t *testing.T) {
	h := start(t, "", nil)
	c := h.login(nil)
	date := time.Date(2024, 3, 4, 5, 6, 7, 0, time.FixedZone("", 3600))
	uid := appendMsg(t, c, "INBOX", multipartMsg, &imap.AppendOptions{Flags: []imap.Flag{"$Label"}, Time: date})
	appendMsg(t, c, "INBOX", simpleMsg("second", "two"), nil)
	sel := mustSelect(t, c, "INBOX", false)
	if uid != 1 || sel.NumMessages != 2 || sel.UIDNext != 3 || sel.UIDValidity == 0 {
		t.Fatalf("uid %d, select %+v", uid, sel)
	}
	if !slices.Contains(sel.PermanentFlags, imap.FlagWildcard) || !slices.Contains(sel.Flags, "$Label") {
		t.Errorf("flags %v, permanent %v", sel.Flags, sel.PermanentFlags)
	}

	all := &imap.FetchItemBodySection{Peek: true}
	subject := &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, HeaderFields: []string{"subject"}, Peek: true}
	part2 := &imap.FetchItemBodySection{Part: []int{2}, Peek: true}
	text1 := &imap.FetchItemBodySection{Part: []int{1}, Specifier: imap.PartSpecifierMIME, Peek: true}
	head := &imap.FetchItemBodySection{Peek: true, Partial: &imap.SectionPartial{Offset: 6, Size: 3}}
	binary2 := &imap.FetchItemBinarySection{Part: []int{2}, Peek: true}
	msgs := fetch(t, c, imap.SeqSetNum(1), &imap.FetchOptions{
		Flags: true, Envelope: true, InternalDate: true, RFC822Size: true, UID: true,
		BodyStructure: &imap.FetchItemBodyStructure{Extended: true},
		BodySection:   []*imap.FetchItemBodySection{all, subject, part2, text1, head},
		BinarySection: []*imap.FetchItemBinarySection{binary2},
	})
	if len(msgs) != 1 {
		t.Fatalf("fetch returned %d messages", len(msgs))
	}
	m := msgs[0]
	checks := []struct {
		what      string
		got, want any
	}{
		{"uid", m.UID, imap.UID(1)},
		{"flags", fmt.Sprint(m.Flags), "[$Label]"},
		{"internal date", m.InternalDate.Unix(), date.Unix()},
		{"size", m.RFC822Size, int64(len(multipartMsg))},
		{"BODY[]", string(m.FindBodySection(all)), multipartMsg},
		{"BODY[HEADER.FIELDS (SUBJECT)]", string(m.FindBodySection(subject)), "Subject: Hello there\r\n\r\n"},
		{"BODY[2]", string(m.FindBodySection(part2)), "PHA+aHRtbDwvcD4="},
		{"BODY[1.MIME]", string(m.FindBodySection(text1)), "Content-Type: text/plain; charset=utf-8\r\n\r\n"},
		{"BODY[]<6.3>", string(m.FindBodySection(head)), "Bob"},
		{"BINARY[2]", string(m.FindBinarySection(binary2)), "<p>html</p>"},
		{"envelope subject", m.Envelope.Subject, "Hello there"},
		{"envelope from", fmt.Sprint(m.Envelope.From), "[{Bob bob example.org}]"},
		{"envelope message-id", m.Envelope.MessageID, "m1@example.org"},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("%s = %q, want %q", ck.what, ck.got, ck.want)
		}
	}
	bs, ok := m.BodyStructure.(*imap.BodyStructureMultiPart)
	if !ok || bs.Subtype != "mixed" || len(bs.Children) != 2 {
		t.Fatalf("body structure = %#v", m.BodyStructure)
	}
	if p, ok := bs.Children[1].(*imap.BodyStructureSinglePart); !ok || p.Type != "text" || p.Subtype != "html" || p.Encoding != "base64" {
		t.Errorf("part 2 = %#v", bs.Children[1])
	}

	// A body fetch without PEEK sets \Seen, reports it, and it sticks.
	msgs = fetch(t, c, imap.UIDSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{Specifier: imap.PartSpecifierText}}})
	if len(msgs) != 1 || !slices.Contains(msgs[0].Flags, imap.FlagSeen) {
		t.Errorf("BODY[TEXT] response = %+v", msgs)
	}
	// In a read-only mailbox it does not.
	mustSelect(t, c, "INBOX", true)
	fetch(t, c, imap.SeqSetNum(2), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}})
	msgs = fetch(t, c, imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{Flags: true})
	if len(msgs) != 2 || fmt.Sprint(msgs[0].Flags) != `[$Label \Seen]` || len(msgs[1].Flags) != 0 {
		t.Errorf("flags after fetches = %v / %v", msgs[0].Flags, msgs[1].Flags)
	}
	if err := c.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err == nil {
		t.Error("STORE in a mailbox opened with EXAMINE succeeded")
	}
}

func TestStore(t *testing.T) {
	h := start(t, "", nil)
	c := h.login(nil)
	for i := range 3 {
		appendMsg(t, c, "INBOX", simpleMsg(fmt.Sprint(i), "x"), &imap.AppendOptions{Flags: []imap.Flag{imap.FlagSeen}})
	}
	mustSelect(t, c, "INBOX", false)
	tests := []struct {
		set   imap.NumSet
		op    imap.StoreFlagsOp
		flags []imap.Flag
		want  string // flags of the first listed message in the response
	}{
		{imap.SeqSetNum(1), imap.StoreFlagsAdd, []imap.Flag{imap.FlagFlagged, "$Custom"}, `[\Seen \Flagged $Custom]`},
		{imap.SeqSetNum(1), imap.StoreFlagsDel, []imap.Flag{`\seen`, "$custom"}, `[\Flagged]`},
		{imap.SeqSetNum(1), imap.StoreFlagsSet, []imap.Flag{imap.FlagAnswered}, `[\Answered]`},
		{imap.UIDSetNum(3), imap.StoreFlagsSet, nil, `[]`},
		{imap.SeqSet{{Start: 2, Stop: 0}}, imap.StoreFlagsAdd, []imap.Flag{imap.FlagDraft}, `[\Seen \Draft]`},
	}
	for _, tc := range tests {
		msgs, err := c.Store(tc.set, &imap.StoreFlags{Op: tc.op, Flags: tc.flags}, nil).Collect()
		if err != nil {
			t.Fatalf("store %v: %v", tc.set, err)
		}
		if len(msgs) == 0 || fmt.Sprint(msgs[0].Flags) != tc.want {
			t.Errorf("store %v %v %v: %+v, want %s", tc.set, tc.op, tc.flags, msgs, tc.want)
		}
	}
	msgs, err := c.Store(imap.SeqSetNum(1, 2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Collect()
	if err != nil || len(msgs) != 0 {
		t.Errorf("silent store answered %+v, %v", msgs, err)
	}
	msgs = fetch(t, c, imap.SeqSetNum(1, 2, 3), &imap.FetchOptions{Flags: true})
	var got []string
	for _, m := range msgs {
		got = append(got, fmt.Sprint(m.Flags))
	}
	if want := []string{`[\Answered \Deleted]`, `[\Seen \Draft \Deleted]`, `[\Draft]`}; !slices.Equal(got, want) {
		t.Errorf("flags = %v, want %v", got, want)
	}
}

func TestSearch(t *testing.T) {
	h := start(t, "", nil)
	c := h.login(nil)
	day := func(m int) time.Time { return time.Date(2024, time.Month(m), 10, 12, 0, 0, 0, time.UTC) }
	msgs := []struct {
		from, subject, extra, body string
		flags                      []imap.Flag
	}{
		{"Bob <bob@example.org>", "alpha", "", "the quick brown fox", []imap.Flag{imap.FlagSeen}},
		{"Carol <carol@example.net>", "beta", "", "the lazy dog", []imap.Flag{imap.FlagFlagged}},
		{"Bob <bob@example.org>", "gamma", "X-Custom: yes\r\n", strings.Repeat("padding ", 200), nil},
		{"Dave <dave@example.com>", "delta", "Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n",
			"c2VjcmV0IHdvcmQ=", []imap.Flag{"$Work"}},
	}
	for i, m := range msgs {
		raw := fmt.Sprintf("From: %s\r\nSubject: %s\r\nDate: %s\r\n%s\r\n%s\r\n",
			m.from, m.subject, day(i+1).Format(time.RFC1123Z), m.extra, m.body)
		appendMsg(t, c, "INBOX", raw, &imap.AppendOptions{Flags: m.flags, Time: day(i + 1)})
	}
	mustSelect(t, c, "INBOX", false)
	tests := []struct {
		name     string
		criteria imap.SearchCriteria
		want     []uint32
	}{
		{"all", imap.SearchCriteria{}, []uint32{1, 2, 3, 4}},
		{"seen", imap.SearchCriteria{Flag: []imap.Flag{imap.FlagSeen}}, []uint32{1}},
		{"unseen", imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, []uint32{2, 3, 4}},
		{"keyword", imap.SearchCriteria{Flag: []imap.Flag{"$work"}}, []uint32{4}},
		{"subject", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "ALPHA"}}}, []uint32{1}},
		{"from", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "bob@example"}}}, []uint32{1, 3}},
		{"header present", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "X-Custom"}}}, []uint32{3}},
		{"body", imap.SearchCriteria{Body: []string{"LAZY"}}, []uint32{2}},
		{"body decoded", imap.SearchCriteria{Body: []string{"secret word"}}, []uint32{4}},
		{"body not header", imap.SearchCriteria{Body: []string{"carol"}}, nil},
		{"text", imap.SearchCriteria{Text: []string{"carol"}}, []uint32{2}},
		{"since", imap.SearchCriteria{Since: day(2)}, []uint32{2, 3, 4}},
		{"before", imap.SearchCriteria{Before: day(2)}, []uint32{1}},
		{"on", imap.SearchCriteria{Since: day(3).Truncate(24 * time.Hour), Before: day(3).Truncate(24 * time.Hour).Add(24 * time.Hour)}, []uint32{3}},
		{"sent before", imap.SearchCriteria{SentBefore: day(3)}, []uint32{1, 2}},
		{"larger", imap.SearchCriteria{Larger: 1000}, []uint32{3}},
		{"smaller", imap.SearchCriteria{Smaller: 1000}, []uint32{1, 2, 4}},
		{"seq", imap.SearchCriteria{SeqNum: []imap.SeqSet{{{Start: 2, Stop: 0}}}}, []uint32{2, 3, 4}},
		{"uid", imap.SearchCriteria{UID: []imap.UIDSet{imap.UIDSetNum(1, 3, 99)}}, []uint32{1, 3}},
		{"uid star", imap.SearchCriteria{UID: []imap.UIDSet{{{Start: 0, Stop: 0}}}}, []uint32{4}},
		{"not", imap.SearchCriteria{Not: []imap.SearchCriteria{{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "bob"}}}}}, []uint32{2, 4}},
		{"or", imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{{Body: []string{"fox"}}, {Body: []string{"dog"}}}}}, []uint32{1, 2}},
		{"and", imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}, Or: [][2]imap.SearchCriteria{{
			{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "alpha"}}},
			{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "beta"}}}}}}, []uint32{2}},
	}
	for _, tc := range tests {
		data, err := c.Search(&tc.criteria, nil).Wait()
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got := data.AllSeqNums(); !slices.Equal(got, tc.want) {
			t.Errorf("SEARCH %s = %v, want %v", tc.name, got, tc.want)
		}
		data, err = c.UIDSearch(&tc.criteria, nil).Wait()
		if err != nil {
			t.Errorf("UID %s: %v", tc.name, err)
			continue
		}
		var got []uint32
		for _, u := range data.AllUIDs() {
			got = append(got, uint32(u))
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("UID SEARCH %s = %v, want %v", tc.name, got, tc.want)
		}
	}
	data, err := c.Search(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, &imap.SearchOptions{ReturnMin: true, ReturnMax: true, ReturnCount: true}).Wait()
	if err != nil || data.Min != 2 || data.Max != 4 || data.Count != 3 {
		t.Errorf("ESEARCH = %+v, %v", data, err)
	}
}

func TestCopyMoveExpunge(t *testing.T) {
	h := start(t, "", nil)
	c := h.login(nil)
	for i := range 5 {
		appendMsg(t, c, "INBOX", simpleMsg(fmt.Sprint("m", i+1), "x"), nil)
	}
	mustSelect(t, c, "INBOX", false)
	archive, err := c.Status("Archive", &imap.StatusOptions{UIDValidity: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	cp, err := c.Copy(imap.SeqSetNum(1, 2), "Archive").Wait()
	if err != nil {
		t.Fatal(err)
	}
	if cp.UIDValidity != archive.UIDValidity || cp.SourceUIDs.String() != "1:2" || cp.DestUIDs.String() != "1:2" {
		t.Errorf("COPYUID = %+v", cp)
	}
	if _, err := c.Copy(imap.SeqSetNum(1), "Nowhere").Wait(); imapCode(err) != imap.ResponseCodeTryCreate {
		t.Errorf("copy to a missing mailbox: %v, want TRYCREATE", err)
	}
	mv, err := c.Move(imap.UIDSetNum(3, 4), "Trash").Wait()
	if err != nil {
		t.Fatal(err)
	}
	if mv.SourceUIDs.String() != "3:4" || mv.DestUIDs.String() != "1:2" || mv.UIDValidity == 0 {
		t.Errorf("MOVE COPYUID = %+v", mv)
	}
	if n := c.Mailbox().NumMessages; n != 3 {
		t.Errorf("after MOVE the client counts %d messages, want 3", n)
	}
	if _, err := c.Move(imap.SeqSetNum(1), "INBOX").Wait(); err == nil {
		t.Error("MOVE into the selected mailbox succeeded")
	}

	// INBOX now holds UIDs 1, 2, 5. Expunge 1 and 5 with EXPUNGE, after checking that UID
	// EXPUNGE touches only what it names.
	if err := c.Store(imap.SeqSetNum(1, 3), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	seqs, err := c.UIDExpunge(imap.UIDSetNum(5)).Collect()
	if err != nil || !slices.Equal(seqs, []uint32{3}) {
		t.Errorf("UID EXPUNGE 5 = %v, %v", seqs, err)
	}
	seqs, err = c.Expunge().Collect()
	if err != nil || !slices.Equal(seqs, []uint32{1}) {
		t.Errorf("EXPUNGE = %v, %v", seqs, err)
	}
	msgs := fetch(t, c, imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true})
	if len(msgs) != 1 || msgs[0].SeqNum != 1 || msgs[0].UID != 2 {
		t.Errorf("left in INBOX: %+v", msgs)
	}
	st, err := c.Status("Trash", &imap.StatusOptions{NumMessages: true, UIDNext: true, NumUnseen: true, Size: true}).Wait()
	if err != nil || *st.NumMessages != 2 || st.UIDNext != 3 || *st.NumUnseen != 2 || *st.Size == 0 {
		t.Errorf("STATUS Trash = %+v, %v", st, err)
	}
}
