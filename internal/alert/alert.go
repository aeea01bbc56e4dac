// Package alert tells the admin, at once, when Repute's deliverability engine pauses
// sending from one of our source addresses to a mailbox provider, or resumes it, and when
// a check of the server's own set-up (a DNS record, a certificate, a blocklist) starts
// failing or passes again.
//
// A pause is the moment a mail server's reputation is decided. A provider answers a
// block reply (Microsoft's "550 5.7.1 ... (S3140)", Gmail's UnsolicitedIPError) and every
// further attempt from that address makes things worse, so the engine stops sending there
// and tries a single probe later. The admin who is woken at 3 a.m. by the notice needs four
// things in it, in plain words, without opening a dashboard:
//
//   - what happened: which provider refused which of our addresses, when;
//   - why: the reply exactly as received and the category the classifier read in it;
//   - what Repute does meanwhile: the mail stays queued (how much, if known), a fallback
//     relay carries it if one is configured, and when the probe will be tried;
//   - what to do: the advice, the provider's delisting or sender-support page, and the
//     commands that show the state (`repute provider status`) and end the pause
//     (`repute provider resume`).
//
// A Notifier delivers each Notice two ways: as a mail to postmaster@ the server's own
// name (Compose; the Postmaster func stores it, so it reaches the admin's mailbox even
// while outbound mail is the problem) and, optionally, as a JSON POST to a webhook (chat,
// paging). Notify is called from the delivery engine and must never slow it: it only puts
// the notice in a bounded queue per channel; one goroutine per channel sends, in order, so
// a webhook that is down and being retried never delays the mail. A full queue drops the
// notice with a logged warning and counts it (Dropped); Close sends what is queued, within
// a bounded time.
//
// The reply is text from a remote server and is treated as hostile: it is capped in
// length, never placed in a header, and stripped of control characters, so it cannot add
// header fields or break the message's structure.
//
// It imports nothing from Repute. Upstream: the delivery engine (pauses, probes) and
// config validation (ValidWebhook).
package alert

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Kinds of notice.
const (
	Paused      = "paused"       // sending to a provider from an address was paused
	Resumed     = "resumed"      // ... and resumed, after a probe was accepted or by the admin
	ProbeFailed = "probe_failed" // the probe of a paused provider was refused: still paused
	CheckFailed = "check_failed" // a check of the server's set-up (repute check) went from passing to failing
	CheckFixed  = "check_fixed"  // ... and passes again
)

// Notice is one alert.
type Notice struct {
	Kind     string    // Paused, Resumed or ProbeFailed
	Time     time.Time // when it happened; zero: the Notifier's Now at Notify
	Provider string    // provider id, e.g. "microsoft"
	SourceIP string    // our sending address ("" when the kernel chooses)
	Category string    // the classifier's category of the reply, e.g. "ip_reputation"
	Reply    string    // the reply as received, e.g. "550 5.7.1 Unfortunately, messages from [203.0.113.5] weren't sent... (S3140)"
	Advice   string    // what the admin should do
	URL      string    // delisting / sender support page
	Until    time.Time // paused until (when the probe is tried); zero for resumed
	Queued   int       // messages waiting for this provider, if known (0 = unknown)
	Fallback string    // "host:port" of the fallback relay carrying the mail meanwhile, "" none
	// For CheckFailed and CheckFixed: the check's id ("spf") and target ("example.com");
	// Reply holds what the check found, Advice its fix.
	Check  string
	Target string
}

// Defaults of the Notifier's optional fields.
const (
	DefaultQueueSize    = 256
	DefaultCloseTimeout = 15 * time.Second
	DefaultHTTPTimeout  = 10 * time.Second
)

// DefaultBackoff is the wait before the webhook's second and third tries.
var DefaultBackoff = []time.Duration{5 * time.Second, 30 * time.Second}

// Notifier sends notices. Set its fields, then call Notify from any goroutine; Close
// drains. The fields must not change after the first Notify.
type Notifier struct {
	Hostname   string                                      // the server's name, in the mail's From and subject
	Postmaster func(ctx context.Context, msg []byte) error // stores/queues an RFC 5322 message for the postmaster; nil = no mail
	Webhook    string                                      // http(s) URL; "" = none
	Client     *http.Client                                // nil: a client with a 10 s timeout
	Logger     *slog.Logger                                // nil: discard
	Now        func() time.Time                            // nil: time.Now

	// Backoff is the wait before each retry of the webhook, so len(Backoff)+1 tries in
	// all; nil: DefaultBackoff.
	Backoff []time.Duration
	// Sleep waits d or until ctx ends (then it returns ctx's error); nil: a timer.
	Sleep func(ctx context.Context, d time.Duration) error
	// QueueSize bounds the notices waiting per channel; 0: DefaultQueueSize.
	QueueSize int
	// CloseTimeout bounds how long Close keeps sending; 0: DefaultCloseTimeout.
	CloseTimeout time.Duration

	once    sync.Once
	mu      sync.Mutex // guards closed and the sends on the channels' queues
	closed  bool
	chans   []*channel
	wg      sync.WaitGroup
	ctx     context.Context
	cancel  context.CancelFunc
	log     *slog.Logger
	client  *http.Client
	dropped atomic.Uint64
}

// channel is one way of telling the admin, with its own queue and goroutine.
type channel struct {
	name  string
	queue chan Notice
	send  func(context.Context, Notice)
}

// Notify queues x for every configured channel and returns at once: it never blocks the
// caller. A notice that finds a queue full, or comes after Close, is dropped and counted.
func (n *Notifier) Notify(x Notice) {
	n.start()
	if x.Time.IsZero() {
		x.Time = n.now()
	}
	var dropped []string
	n.mu.Lock()
	for _, c := range n.chans {
		if n.closed {
			dropped = append(dropped, c.name)
			continue
		}
		select {
		case c.queue <- x:
		default:
			dropped = append(dropped, c.name)
		}
	}
	n.mu.Unlock()
	for _, name := range dropped {
		total := n.dropped.Add(1)
		if total&(total-1) == 0 { // the 1st, 2nd, 4th, 8th ... drop: a flood cannot flood the log
			n.log.Warn("alert dropped: queue full or notifier closed", "channel", name, "kind", x.Kind,
				"provider", x.Provider, "source_ip", x.SourceIP, "dropped_total", total)
		}
	}
}

// Dropped returns how many notices were dropped (per channel) since the start.
func (n *Notifier) Dropped() uint64 { return n.dropped.Load() }

// Close sends what is queued and stops. It returns when everything is sent or, at the
// latest, CloseTimeout (plus a second) after it was called: then it abandons the sending,
// cancelling a webhook request or wait in progress, and logs what was left unsent.
func (n *Notifier) Close() {
	n.start()
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.closed = true
	for _, c := range n.chans {
		close(c.queue)
	}
	n.mu.Unlock()

	done := make(chan struct{})
	go func() {
		n.wg.Wait()
		close(done)
	}()
	defer n.cancel()
	timeout := n.CloseTimeout
	if timeout <= 0 {
		timeout = DefaultCloseTimeout
	}
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	select {
	case <-done:
		return
	case <-deadline.C:
	}
	n.log.Warn("alerts still sending at shutdown: giving up", "after", timeout)
	n.cancel()
	grace := time.NewTimer(time.Second)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
		n.log.Error("alert sender did not stop after cancellation")
	}
}

// start sets up the channels and their goroutines, once.
func (n *Notifier) start() {
	n.once.Do(func() {
		n.log = n.Logger
		if n.log == nil {
			n.log = slog.New(slog.DiscardHandler)
		}
		n.log = n.log.With("component", "alert")
		n.ctx, n.cancel = context.WithCancel(context.Background())
		size := n.QueueSize
		if size <= 0 {
			size = DefaultQueueSize
		}
		if n.Postmaster != nil {
			n.chans = append(n.chans, &channel{name: "mail", queue: make(chan Notice, size), send: n.mail})
		}
		if n.Webhook != "" {
			if err := ValidWebhook(n.Webhook); err != nil {
				n.log.Error("webhook disabled", "err", err)
			} else {
				n.client = safeClient(n.Client)
				n.chans = append(n.chans, &channel{name: "webhook", queue: make(chan Notice, size), send: n.post})
			}
		}
		for _, c := range n.chans {
			n.wg.Go(func() { n.run(c) })
		}
	})
}

// run sends c's notices in order until its queue is closed; once the Notifier's context
// is cancelled it only counts what is left.
func (n *Notifier) run(c *channel) {
	abandoned := 0
	for x := range c.queue {
		if n.ctx.Err() != nil {
			abandoned++
			n.dropped.Add(1)
			continue
		}
		c.send(n.ctx, x)
	}
	if abandoned > 0 {
		n.log.Error("alerts left unsent at shutdown", "channel", c.name, "count", abandoned)
	}
}

// mail composes x and hands it to the postmaster's mailbox.
func (n *Notifier) mail(ctx context.Context, x Notice) {
	msg, err := Compose(n.Hostname, x, n.now())
	if err != nil {
		n.log.Error("alert mail not composed", "kind", x.Kind, "provider", x.Provider, "source_ip", x.SourceIP, "err", err)
		return
	}
	if err := n.Postmaster(ctx, msg); err != nil {
		n.log.Error("alert mail not stored", "kind", x.Kind, "provider", x.Provider, "source_ip", x.SourceIP,
			"reply", oneLine(x.Reply, maxReply), "err", fmt.Errorf("alert: postmaster: %w", err))
		return
	}
	n.log.Info("alert mailed to postmaster", "kind", x.Kind, "provider", x.Provider, "source_ip", x.SourceIP)
}

func (n *Notifier) now() time.Time {
	if n.Now != nil {
		return n.Now()
	}
	return time.Now()
}

// sleep waits d or until ctx ends.
func (n *Notifier) sleep(ctx context.Context, d time.Duration) error {
	if n.Sleep != nil {
		return n.Sleep(ctx, d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
