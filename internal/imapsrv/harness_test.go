package imapsrv

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/repute-mail/repute/internal/mailstore"
	"github.com/repute-mail/repute/internal/store"
	"github.com/repute-mail/repute/internal/testcert"
)

const (
	testUser = "alice@example.test"
	testPass = "correct horse"
)

// testTLS returns a server configuration with a fresh self-signed certificate for
// 127.0.0.1 and a client configuration that trusts it.
func testTLS(t *testing.T) (server, client *tls.Config) {
	return testcert.SelfSigned(t, "localhost", "127.0.0.1")
}

// harness is a store, a Mailstore and a Server on two loopback listeners: plaintext
// (STARTTLS) and implicit TLS.
type harness struct {
	t         *testing.T
	db        *store.DB
	ms        *mailstore.Mailstore
	srv       *Server
	user      store.User
	plain     string
	implicit  string
	clientTLS *tls.Config
	served    sync.WaitGroup
	serveErrs chan error
	stopOnce  sync.Once
}

// start opens (or reopens) the database at path ("" for a new one) and starts a server.
func start(t *testing.T, path string, configure func(*Server)) *harness {
	t.Helper()
	ctx := context.Background()
	if path == "" {
		path = filepath.Join(t.TempDir(), "repute.db")
	}
	db, err := store.Open(ctx, store.Options{Path: path, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, db: db, ms: mailstore.New(db, quiet), serveErrs: make(chan error, 2)}
	if _, err := db.AddDomain(ctx, "example.test"); err != nil && !errors.Is(err, store.ErrExists) {
		t.Fatal(err)
	}
	if h.user, err = db.UserByAddress(ctx, testUser); errors.Is(err, store.ErrNotFound) {
		h.user, err = db.AddUser(ctx, testUser, testPass)
	}
	if err != nil {
		t.Fatal(err)
	}
	serverTLS, clientTLS := testTLS(t)
	h.clientTLS = clientTLS
	h.srv = &Server{Mailstore: h.ms, TLSConfig: serverTLS, Logger: quiet}
	if configure != nil {
		configure(h.srv)
	}
	plain, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	implicit, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.plain, h.implicit = plain.Addr().String(), implicit.Addr().String()
	for _, l := range []net.Listener{plain, tls.NewListener(implicit, serverTLS)} {
		h.served.Add(1)
		go func() {
			defer h.served.Done()
			h.serveErrs <- h.srv.Serve(l)
		}()
	}
	t.Cleanup(h.stop)
	return h
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// stop shuts the server down and closes the database.
func (h *harness) stop() {
	h.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.srv.Shutdown(ctx); err != nil {
			h.t.Errorf("shutdown: %v", err)
		}
		h.served.Wait()
		for range 2 {
			if err := <-h.serveErrs; !errors.Is(err, ErrServerClosed) || !errors.Is(err, net.ErrClosed) {
				h.t.Errorf("Serve returned %v, want ErrServerClosed", err)
			}
		}
		h.db.Close()
	})
}

func (h *harness) options(handler *imapclient.UnilateralDataHandler) *imapclient.Options {
	return &imapclient.Options{TLSConfig: h.clientTLS, UnilateralDataHandler: handler}
}

// login connects over implicit TLS and logs in.
func (h *harness) login(handler *imapclient.UnilateralDataHandler) *imapclient.Client {
	h.t.Helper()
	c, err := imapclient.DialTLS(h.implicit, h.options(handler))
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { c.Close() })
	if err := c.Login(testUser, testPass).Wait(); err != nil {
		h.t.Fatal(err)
	}
	return c
}

// appendMsg appends a message and returns its UID.
func appendMsg(t *testing.T, c *imapclient.Client, mailbox, msg string, options *imap.AppendOptions) imap.UID {
	t.Helper()
	cmd := c.Append(mailbox, int64(len(msg)), options)
	if _, err := io.WriteString(cmd, msg); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := cmd.Wait()
	if err != nil {
		t.Fatalf("append to %s: %v", mailbox, err)
	}
	return data.UID
}

func mustSelect(t *testing.T, c *imapclient.Client, mailbox string, readOnly bool) *imap.SelectData {
	t.Helper()
	data, err := c.Select(mailbox, &imap.SelectOptions{ReadOnly: readOnly}).Wait()
	if err != nil {
		t.Fatalf("select %s: %v", mailbox, err)
	}
	return data
}

func fetch(t *testing.T, c *imapclient.Client, set imap.NumSet, options *imap.FetchOptions) []*imapclient.FetchMessageBuffer {
	t.Helper()
	msgs, err := c.Fetch(set, options).Collect()
	if err != nil {
		t.Fatalf("fetch %v: %v", set, err)
	}
	return msgs
}

func simpleMsg(subject, body string) string {
	return "From: Bob <bob@example.org>\r\nTo: alice@example.test\r\nSubject: " + subject +
		"\r\nDate: Mon, 02 Jan 2006 15:04:05 -0700\r\nMessage-ID: <" + subject + "@example.org>\r\n\r\n" + body + "\r\n"
}

func imapCode(err error) imap.ResponseCode {
	var ie *imap.Error
	if errors.As(err, &ie) {
		return ie.Code
	}
	return ""
}
