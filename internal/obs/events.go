// Package obs is observability: the developer trace log (log/slog set-up), Prometheus
// metrics on a private registry (metrics.go) and the mail-event log, one JSON object per
// line in data_dir/events.log with a closed vocabulary of events and stable field names
// (DESIGN.md §5.5) that the dashboard and reputation engine read.
//
// The event log is a record, not the source of truth: the store is. Lines are buffered and
// flushed at least once a second and on Close, so writing an event never waits for the disk.
//
// It imports nothing from Repute. Upstream: every component that handles a message.
package obs

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// Event kinds.
const (
	Received     = "received"
	Queued       = "queued"
	Delivered    = "delivered"
	Deferred     = "deferred"
	Bounced      = "bounced"
	Suppressed   = "suppressed"
	Throttled    = "throttled"
	Paused       = "paused"
	Resumed      = "resumed"
	Complained   = "complained"
	Unsubscribed = "unsubscribed"
)

// Event is one line of the mail-event log. Field names are a contract.
type Event struct {
	Time         time.Time `json:"time"`
	Event        string    `json:"event"`
	MsgID        string    `json:"msg_id"`
	From         string    `json:"from"`
	Rcpt         string    `json:"rcpt"`
	Provider     string    `json:"provider"`
	SourceIP     string    `json:"source_ip"`
	MX           string    `json:"mx"`
	Code         int       `json:"code"`
	EnhancedCode string    `json:"enhanced_code"`
	Text         string    `json:"text"`
	Category     string    `json:"category"`
	DelayS       float64   `json:"delay_s"`
	// Fields beyond the contract, present where they apply.
	Size     int64  `json:"size,omitempty"`
	ClientIP string `json:"client_ip,omitempty"`
	User     string `json:"user,omitempty"`
	// Delivery attempts: the MX's address, TLS version and how it was verified ("dane",
	// "pkix" or ""), the attempt's duration, and its TLS-RPT result type (RFC 8460).
	IP          string  `json:"ip,omitempty"`
	TLS         string  `json:"tls,omitempty"`
	TLSVerified string  `json:"tls_verified,omitempty"`
	DurationS   float64 `json:"duration_s,omitempty"`
	Attempt     int     `json:"attempt,omitempty"`
	TLSRPT      string  `json:"tlsrpt,omitempty"`
}

// EventLog appends events to a file. The zero value discards events.
type EventLog struct {
	mu   sync.Mutex
	w    *bufio.Writer
	f    io.WriteCloser
	stop chan struct{}
	done chan struct{}
	log  *slog.Logger
}

// OpenEventLog opens path for appending and starts the periodic flush.
func OpenEventLog(path string, log *slog.Logger) (*EventLog, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open event log: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	l := &EventLog{w: bufio.NewWriterSize(f, 64<<10), f: f, stop: make(chan struct{}), done: make(chan struct{}), log: log}
	go l.flusher()
	return l, nil
}

func (l *EventLog) flusher() {
	defer close(l.done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			l.mu.Lock()
			if err := l.w.Flush(); err != nil {
				l.log.Warn("event log: flush failed", "err", err)
			}
			l.mu.Unlock()
		case <-l.stop:
			return
		}
	}
}

// Emit appends one event. Texts are kept to one line.
func (l *EventLog) Emit(e Event) {
	if l == nil || l.w == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Time = e.Time.UTC()
	e.Text = strings.ReplaceAll(e.Text, "\n", " ")
	b, err := json.Marshal(e)
	if err != nil {
		return
	}
	b = append(b, '\n')
	l.mu.Lock()
	l.w.Write(b)
	l.mu.Unlock()
}

// Close flushes and closes the file.
func (l *EventLog) Close() error {
	if l == nil || l.w == nil {
		return nil
	}
	close(l.stop)
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	err := l.w.Flush()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}
