package e2e

import (
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// imapSessionLimit bounds one IMAP client session of the harness: the connection is
// closed when it runs out, so a hung server fails the test instead of hanging it.
const imapSessionLimit = 2 * time.Minute

// storedMessage is what IMAP shows of one message.
type storedMessage struct {
	UID       uint32
	Subject   string
	MessageID string // without angle brackets
	Flags     []string
	Body      string // the whole message, when requested
}

// imapLogin opens an IMAP session on the STARTTLS port as the given user of the server's
// domain.
func (s *server) imapLogin(t *testing.T, user string) *imapclient.Client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", s.IMAP(), wireTimeout)
	if err != nil {
		t.Fatalf("IMAP dial %s: %v", s.IMAP(), err)
	}
	watchdog := time.AfterFunc(imapSessionLimit, func() { conn.Close() })
	t.Cleanup(func() { watchdog.Stop(); conn.Close() })
	c, err := imapclient.NewStartTLS(conn, &imapclient.Options{TLSConfig: s.tlsConfig(t)})
	if err != nil {
		t.Fatalf("IMAP STARTTLS: %v", err)
	}
	if err := c.Login(s.mailAddr(user), password(user)).Wait(); err != nil {
		t.Fatalf("IMAP LOGIN %s: %v", s.mailAddr(user), err)
	}
	return c
}

// mailbox lists a mailbox of a test user: its UIDVALIDITY and every message, sorted by UID.
func (s *server) mailbox(t *testing.T, user, name string, withBody bool) (uidValidity uint32, msgs []storedMessage) {
	t.Helper()
	c := s.imapLogin(t, user)
	defer func() { c.Logout(); c.Close() }()
	sel, err := c.Select(name, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatalf("IMAP EXAMINE %s: %v", name, err)
	}
	if sel.NumMessages == 0 {
		return sel.UIDValidity, nil
	}
	opts := &imap.FetchOptions{UID: true, Envelope: true, Flags: true}
	body := &imap.FetchItemBodySection{Peek: true}
	if withBody {
		opts.BodySection = []*imap.FetchItemBodySection{body}
	}
	var all imap.SeqSet
	all.AddRange(1, 0) // 1:*
	bufs, err := c.Fetch(all, opts).Collect()
	if err != nil {
		t.Fatalf("IMAP FETCH 1:* in %s: %v", name, err)
	}
	for _, b := range bufs {
		m := storedMessage{UID: uint32(b.UID)}
		if b.Envelope != nil {
			m.Subject = b.Envelope.Subject
			m.MessageID = strings.Trim(b.Envelope.MessageID, "<>")
		}
		for _, f := range b.Flags {
			m.Flags = append(m.Flags, string(f))
		}
		if withBody {
			m.Body = string(b.FindBodySection(body))
		}
		msgs = append(msgs, m)
	}
	sort.Slice(msgs, func(i, j int) bool { return msgs[i].UID < msgs[j].UID })
	return sel.UIDValidity, msgs
}

// inbox is mailbox(user, "INBOX") without bodies.
func (s *server) inbox(t *testing.T, user string) []storedMessage {
	t.Helper()
	_, msgs := s.mailbox(t, user, "INBOX", false)
	return msgs
}

// subjects returns the subjects of msgs.
func subjects(msgs []storedMessage) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, m.Subject)
	}
	return out
}

func hasSubject(msgs []storedMessage, subject string) bool {
	for _, m := range msgs {
		if m.Subject == subject {
			return true
		}
	}
	return false
}
