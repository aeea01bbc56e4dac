package session

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/repute-mail/repute/internal/store"
)

// FuzzSession feeds arbitrary client input to a whole SMTP session (MX and submission) on a
// real store: the session must never panic, must answer every line with a well-formed
// reply, and must end when the client does.
func FuzzSession(f *testing.F) {
	seeds := []string{
		"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@a.test>\r\nDATA\r\nSubject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n",
		"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<u@a.test>\r\nBDAT 4 LAST\r\nabcd\r\n",
		"HELO c\r\nMAIL FROM:<a@@b>\r\nRCPT TO:<u@a.test>\r\nDATA\r\n",
		"EHLO c\r\nAUTH PLAIN AHVAYS50ZXN0AHB3\r\nAUTH LOGIN\r\n*\r\n",
		"EHLO c\r\nMAIL FROM:<a@b.test> SIZE=99999999999999999999\r\n",
		"EHLO c\r\nMAIL FROM:<a@b.test>\r\nRCPT TO:<u@a.test>\r\nDATA\r\nx\n.\n\r\n.\r\n",
		"BDAT -1\r\nBDAT x LAST\r\nSTARTTLS\r\n",
		"\x00\xff\r\n\r\n \r\nGET / HTTP/1.1\r\n",
	}
	for _, s := range seeds {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	ctx := context.Background()
	db, err := store.Open(ctx, store.Options{Path: filepath.Join(f.TempDir(), "r.db")})
	if err != nil {
		f.Fatal(err)
	}
	defer db.Close()
	db.AddDomain(ctx, "a.test")
	db.AddUser(ctx, "u@a.test", "pw")
	auth := func(ctx context.Context, u, p string, _ netip.Addr) (store.User, error) {
		return store.User{}, store.ErrBadCredentials
	}
	f.Fuzz(func(t *testing.T, input []byte, submission bool) {
		s := &Server{Hostname: "mx.a.test", DB: db, Authenticate: auth, MaxMessageSize: 4096,
			MaxRecipients: 5, CommandTimeout: 2 * time.Second, DataTimeout: 2 * time.Second,
			Logger: slog.New(slog.DiscardHandler)}
		if submission {
			s.Mode = Submission
		}
		s.defaults()
		server, client := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			newConn(s, server, netip.MustParseAddr("192.0.2.1")).serve()
		}()
		go func() {
			client.Write(input)
			client.Close()
		}()
		br := bufio.NewReader(client)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				if err != io.EOF && err != io.ErrClosedPipe {
					break
				}
				break
			}
			if len(line) < 5 || line[0] < '2' || line[0] > '5' || (line[3] != ' ' && line[3] != '-') {
				t.Fatalf("malformed reply line %q", line)
			}
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("session did not end after the client closed")
		}
	})
}
