package imapsrv

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/repute-mail/repute/internal/store"
)

// watcher records the unilateral responses a client receives.
type watcher struct {
	events chan string
}

func newWatcher() *watcher { return &watcher{events: make(chan string, 100)} }

func (w *watcher) handler() *imapclient.UnilateralDataHandler {
	return &imapclient.UnilateralDataHandler{
		Expunge: func(seq uint32) { w.events <- fmt.Sprintf("expunge %d", seq) },
		Mailbox: func(data *imapclient.UnilateralDataMailbox) {
			if data.NumMessages != nil {
				w.events <- fmt.Sprintf("exists %d", *data.NumMessages)
			}
		},
		Fetch: func(msg *imapclient.FetchMessageData) {
			buf, err := msg.Collect()
			if err != nil {
				w.events <- "fetch error " + err.Error()
				return
			}
			w.events <- fmt.Sprintf("fetch %d uid %d %v", buf.SeqNum, buf.UID, buf.Flags)
		},
	}
}

func (w *watcher) expect(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-w.events:
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %q", want)
	}
}

func (w *watcher) expectNone(t *testing.T) {
	t.Helper()
	select {
	case got := <-w.events:
		t.Errorf("unexpected %q", got)
	default:
	}
}

func deliver(t *testing.T, h *harness, subject string) {
	t.Helper()
	stored, err := h.db.Accept(context.Background(), &store.Delivery{
		MsgID: subject, From: "bob@example.org", Body: []byte(simpleMsg(subject, "delivered")),
		Local: []store.LocalTarget{{UserID: h.user.ID}}, Received: time.Now(),
	})
	if err != nil {
		t.Fatal(err)
	}
	h.ms.Delivered(stored)
}

// A session in IDLE sees mail delivered over SMTP, and flag changes and expunges made by
// another session.
func TestIdleSeesOtherSessions(t *testing.T) {
	h := start(t, "", nil)
	a := h.login(nil)
	w := newWatcher()
	b := h.login(w.handler())
	mustSelect(t, a, "INBOX", false)
	mustSelect(t, b, "INBOX", false)
	idle, err := b.Idle()
	if err != nil {
		t.Fatal(err)
	}

	deliver(t, h, "first")
	w.expect(t, "exists 1")
	appendMsg(t, a, "INBOX", simpleMsg("second", "appended"), nil)
	w.expect(t, "exists 2")
	if err := a.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	if err := a.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagFlagged}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	w.expect(t, `fetch 1 uid 1 [\Flagged]`)
	if err := a.Store(imap.SeqSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	w.expect(t, `fetch 1 uid 1 [\Flagged \Deleted]`)
	if _, err := a.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	w.expect(t, "expunge 1")

	if err := idle.Close(); err != nil {
		t.Fatal(err)
	}
	if err := idle.Wait(); err != nil {
		t.Fatal(err)
	}
	msgs := fetch(t, b, imap.SeqSetNum(1), &imap.FetchOptions{UID: true})
	if len(msgs) != 1 || msgs[0].UID != 2 {
		t.Errorf("b sees %+v", msgs)
	}
	w.expectNone(t)
}

// Sequence numbers do not move under a client until it may be told of an expunge: not
// during FETCH, STORE or SEARCH (RFC 9051 §7.5.1).
func TestExpungeWaitsForClient(t *testing.T) {
	h := start(t, "", nil)
	a := h.login(nil)
	w := newWatcher()
	b := h.login(w.handler())
	for i := range 3 {
		appendMsg(t, a, "INBOX", simpleMsg(fmt.Sprint("m", i), "x"), nil)
	}
	mustSelect(t, a, "INBOX", false)
	mustSelect(t, b, "INBOX", false)
	if err := a.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Expunge().Collect(); err != nil {
		t.Fatal(err)
	}
	deliver(t, h, "late")
	time.Sleep(100 * time.Millisecond) // let the delivery reach b's queue

	msgs := fetch(t, b, imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true})
	var got []string
	for _, m := range msgs {
		got = append(got, fmt.Sprintf("%d:%d", m.SeqNum, m.UID))
	}
	if want := []string{"1:1", "3:3"}; !slices.Equal(got, want) {
		t.Errorf("FETCH 1:* during a pending expunge = %v, want %v", got, want)
	}
	if data, err := b.Search(&imap.SearchCriteria{}, nil).Wait(); err != nil || !slices.Equal(data.AllSeqNums(), []uint32{1, 3}) {
		t.Errorf("SEARCH ALL = %v, %v", data, err)
	}
	w.expectNone(t) // the flag change of message 2 is moot: it is gone
	if err := b.Noop().Wait(); err != nil {
		t.Fatal(err)
	}
	w.expect(t, "expunge 2")
	w.expect(t, "exists 3")
	msgs = fetch(t, b, imap.SeqSet{{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true})
	if len(msgs) != 3 || msgs[1].UID != 3 || msgs[2].UID != 4 {
		t.Errorf("after NOOP: %+v", msgs)
	}
}

// UIDVALIDITY, UIDNEXT and flags live in the database and survive a restart.
func TestStateSurvivesRestart(t *testing.T) {
	path := t.TempDir() + "/repute.db"
	h := start(t, path, nil)
	c := h.login(nil)
	appendMsg(t, c, "INBOX", simpleMsg("one", "x"), nil)
	appendMsg(t, c, "INBOX", simpleMsg("two", "x"), nil)
	before := mustSelect(t, c, "INBOX", false)
	if err := c.Store(imap.SeqSetNum(2), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagFlagged, "$Keep"}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	fetch(t, c, imap.SeqSetNum(1), &imap.FetchOptions{BodySection: []*imap.FetchItemBodySection{{}}})
	c.Logout().Wait()
	h.stop()

	h = start(t, path, nil)
	c = h.login(nil)
	after := mustSelect(t, c, "INBOX", false)
	if after.UIDValidity != before.UIDValidity || after.UIDNext != 3 || after.NumMessages != 2 {
		t.Errorf("after restart %+v, before %+v", after, before)
	}
	msgs := fetch(t, c, imap.SeqSetNum(1, 2), &imap.FetchOptions{Flags: true})
	if len(msgs) != 2 || fmt.Sprint(msgs[0].Flags) != `[\Seen]` || fmt.Sprint(msgs[1].Flags) != `[\Flagged $Keep]` {
		t.Errorf("flags after restart: %+v", msgs)
	}
	if uid := appendMsg(t, c, "INBOX", simpleMsg("three", "x"), nil); uid != 3 {
		t.Errorf("next UID after restart = %d, want 3", uid)
	}
}
