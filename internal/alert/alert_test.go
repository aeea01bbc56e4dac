package alert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// mailbox is a Postmaster that keeps the messages it is given.
type mailbox struct {
	mu   sync.Mutex
	msgs [][]byte
}

func (m *mailbox) store(_ context.Context, msg []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.msgs = append(m.msgs, msg)
	return nil
}

func (m *mailbox) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.msgs)
}

// Close sends everything queued, on both channels, in order.
func TestCloseDrains(t *testing.T) {
	const total = 50
	h := newHook(t)
	var box mailbox
	n := &Notifier{Hostname: "mx.example.com", Postmaster: box.store, Webhook: h.srv.URL}
	for i := range total {
		x := pausedNotice()
		x.Queued = i + 1
		n.Notify(x)
	}
	n.Close()
	if box.count() != total || h.requests() != total {
		t.Fatalf("%d mails and %d posts, want %d each", box.count(), h.requests(), total)
	}
	for i := range total {
		_, body := parse(t, box.msgs[i])
		if want := fmt.Sprintf("The %d messages", i+1); !strings.Contains(body, want) {
			t.Errorf("mail %d lacks %q", i, want)
		}
		var p struct{ Queued int }
		if err := json.Unmarshal(h.bodies[i], &p); err != nil || p.Queued != i+1 {
			t.Errorf("post %d: queued %d, %v", i, p.Queued, err)
		}
	}
	if n.Dropped() != 0 {
		t.Errorf("%d dropped", n.Dropped())
	}
}

// Notify never waits, however stuck the sending is: past the queue's bound notices are
// dropped and counted, and the queued ones are still sent.
func TestNotifyNeverBlocks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		var box mailbox
		n := &Notifier{Hostname: "mx.example.com", QueueSize: 4,
			Postmaster: func(ctx context.Context, msg []byte) error {
				<-release
				return box.store(ctx, msg)
			}}
		n.Notify(pausedNotice())
		synctest.Wait() // the sender has taken the first notice and is stuck
		start := time.Now()
		for range 1000 {
			n.Notify(pausedNotice()) // a blocking Notify would deadlock the bubble
		}
		if time.Since(start) != 0 {
			t.Errorf("Notify took %v", time.Since(start))
		}
		if got, want := n.Dropped(), uint64(1000-4); got != want {
			t.Errorf("dropped %d, want %d", got, want)
		}
		close(release)
		n.Close()
		if box.count() != 5 {
			t.Errorf("%d mails, want 5", box.count())
		}
		n.Notify(pausedNotice()) // after Close: dropped, no panic
		if got, want := n.Dropped(), uint64(1000-4+1); got != want {
			t.Errorf("dropped %d after Close, want %d", got, want)
		}
	})
}

// Close gives up after CloseTimeout: a sender that heeds its context stops then; one that
// does not is left behind a second later.
func TestCloseBounded(t *testing.T) {
	cases := []struct {
		name      string
		heedsCtx  bool
		wantAfter time.Duration
	}{
		{"sender stops when cancelled", true, 3 * time.Second},
		{"sender ignores cancellation", false, 4 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				release := make(chan struct{})
				n := &Notifier{Hostname: "mx.example.com", CloseTimeout: 3 * time.Second,
					Postmaster: func(ctx context.Context, msg []byte) error {
						if c.heedsCtx {
							<-ctx.Done()
							return ctx.Err()
						}
						<-release
						return nil
					}}
				for range 3 {
					n.Notify(pausedNotice())
				}
				start := time.Now()
				n.Close()
				if d := time.Since(start); d != c.wantAfter {
					t.Errorf("Close took %v, want %v", d, c.wantAfter)
				}
				close(release)
				synctest.Wait()
				if c.heedsCtx && n.Dropped() != 2 {
					t.Errorf("%d counted as dropped, want the 2 never tried", n.Dropped())
				}
			})
		})
	}
}

// Without Postmaster or Webhook a Notifier does nothing, quietly.
func TestNoChannels(t *testing.T) {
	n := &Notifier{}
	n.Notify(pausedNotice())
	n.Close()
	n.Close()
	if n.Dropped() != 0 {
		t.Errorf("%d dropped", n.Dropped())
	}
}

// A notice without a time gets the Notifier's clock's.
func TestNotifyStampsTime(t *testing.T) {
	var box mailbox
	n := &Notifier{Hostname: "mx.example.com", Postmaster: box.store, Now: func() time.Time { return t0 }}
	x := pausedNotice()
	x.Time = time.Time{}
	n.Notify(x)
	n.Close()
	_, body := parse(t, box.msgs[0])
	if !strings.Contains(body, "At Mon 3 Mar 2025 03:06:00 UTC") {
		t.Errorf("body:\n%s", body)
	}
}

// A failed store is logged, not retried, and does not stop later notices.
func TestPostmasterError(t *testing.T) {
	var logs syncBuffer
	calls := 0
	n := &Notifier{Hostname: "mx.example.com", Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Postmaster: func(context.Context, []byte) error { calls++; return errors.New("disk full") }}
	n.Notify(pausedNotice())
	n.Notify(pausedNotice())
	n.Close()
	if calls != 2 || !strings.Contains(logs.String(), "disk full") {
		t.Errorf("%d calls, log:\n%s", calls, logs.String())
	}
}

// pipeListener is an in-memory network for an http.Server inside a synctest bubble, where
// the fake clock advances only while every goroutine waits on something of the bubble.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80} }

func (l *pipeListener) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	client, server := net.Pipe()
	select {
	case l.conns <- server:
		return client, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// The default backoff waits on the clock: tries at once, after 5 s and 30 s more.
func TestWebhookBackoffClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := newPipeListener()
		var mu sync.Mutex
		var at []time.Duration
		start := time.Now()
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			at = append(at, time.Since(start))
			fail := len(at) < 3
			mu.Unlock()
			if fail {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
		})}
		go srv.Serve(l)
		tr := &http.Transport{DialContext: l.dial}
		n := &Notifier{Hostname: "mx.example.com", Webhook: "http://hooks.example/alert", Client: &http.Client{Transport: tr},
			CloseTimeout: time.Minute}
		n.Notify(pausedNotice())
		n.Close()
		tr.CloseIdleConnections()
		srv.Close()
		want := []time.Duration{0, 5 * time.Second, 35 * time.Second}
		if fmt.Sprint(at) != fmt.Sprint(want) {
			t.Errorf("tries at %v, want %v", at, want)
		}
	})
}
