// Package obs is observability: the developer trace log (log/slog set-up), Prometheus
// metrics on a private registry (metrics.go) and the mail-event log, one JSON object per
// line in data_dir/events.log with a closed vocabulary of events and stable field names
// (docs/CONTRACTS.md §5) that the dashboard and reputation engine read.
//
// The event log is a record, not the source of truth: the store is. What it guarantees:
//
//   - Each Emit is exactly one write(2) of one whole line to the file, opened with
//     O_APPEND, with no buffering in the process. Once Emit returns the line is in the
//     kernel, so a crash of the process (kill -9, a panic, the OOM killer) loses no event
//     already emitted and never leaves part of a line; and lines from other processes
//     appending to the same file (repute sendmail) never interleave with ours.
//   - Against power loss or a kernel crash, a background syncer fsyncs the file whenever
//     lines have been written since its last fsync began; one fsync covers every line
//     written before it, however many (group commit). A line is on disk once the first
//     fsync that starts after its Emit returned has finished, normally within a few
//     milliseconds. A power loss can lose the lines emitted since the last finished fsync,
//     and may leave the last of them in part; ReadEvents skips such a line.
//   - Emit never waits for an fsync, so the SMTP hot path does not wait for the disk; it
//     waits only for the write into the kernel's page cache. Close fsyncs before it
//     returns: everything emitted before Close is on disk when Close returns.
//
// It imports nothing from Repute. Upstream: every component that handles a message.
package obs

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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
	Complained   = "complained"    // a feedback-loop complaint (ARF) about a message
	Unsubscribed = "unsubscribed"  // a recipient unsubscribed (one-click link or mailto)
	Listed       = "listed"        // a sending IP or domain appeared on a blocklist
	Delisted     = "delisted"      // ... and left it
	CheckChanged = "check_changed" // a reputation check (DNS records, blocklists, ...) changed state
	Alert        = "alert"         // something the operator should look at
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
	// throttled: why mail was held back (cap, rate, backoff, paused, connections) and
	// when it is due again.
	Reason      string    `json:"reason,omitempty"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	// paused and resumed: what the admin should do, and where.
	Advice string `json:"advice,omitempty"`
	URL    string `json:"url,omitempty"`
}

// EventLog appends events to a file. The zero value discards events.
type EventLog struct {
	f    *os.File
	sync func() error // f.Sync; tests replace it
	log  *slog.Logger

	mu      sync.Mutex // one line (and its repair after a failed write) at a time
	closed  bool
	failing bool // the last write failed; logged once per run of failures

	wake      chan struct{} // holds a token when lines were written since the last fsync began
	stop      chan struct{}
	done      chan struct{}
	syncFails atomic.Bool
	closeOnce sync.Once
	closeErr  error
}

// OpenEventLog opens path for appending, creating it (mode 0640) if needed, and starts the
// background syncer.
func OpenEventLog(path string, log *slog.Logger) (*EventLog, error) {
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open event log: %w", err)
	}
	if log == nil {
		log = slog.Default()
	}
	if errors.Is(statErr, fs.ErrNotExist) {
		// A new file's name is in its directory, which must reach the disk too. Some file
		// systems cannot fsync a directory; that costs durability of the name, not events.
		if err := syncDir(filepath.Dir(path)); err != nil {
			log.Warn("event log: cannot fsync the directory of the new file", "path", path, "err", err)
		}
	}
	return newEventLog(f, f.Sync, log), nil
}

func newEventLog(f *os.File, sync func() error, log *slog.Logger) *EventLog {
	if log == nil {
		log = slog.Default()
	}
	l := &EventLog{f: f, sync: sync, log: log,
		wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go l.syncer()
	return l
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncer fsyncs the file each time lines have been written since the last fsync began.
// The token is taken before the fsync starts, so a line written during an fsync (which may
// or may not cover it) leaves a token for the next one.
func (l *EventLog) syncer() {
	defer close(l.done)
	for {
		select {
		case <-l.wake:
			l.syncNow()
		case <-l.stop:
			return
		}
	}
}

func (l *EventLog) syncNow() error {
	err := l.sync()
	switch {
	case err != nil && !l.syncFails.Swap(true):
		l.log.Error("event log: fsync failed; events may not survive a power loss", "err", err)
	case err == nil && l.syncFails.Swap(false):
		l.log.Info("event log: fsync works again")
	}
	return err
}

// Emit appends one event as one line, in one write, and returns without waiting for the
// disk. Texts are kept to one line. Events emitted after Close are dropped.
func (l *EventLog) Emit(e Event) {
	if l == nil || l.f == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Time = e.Time.UTC()
	if !e.NextAttempt.IsZero() {
		e.NextAttempt = e.NextAttempt.UTC()
	}
	e.Text = strings.ReplaceAll(e.Text, "\n", " ")
	b, err := json.Marshal(e) // escapes every control character: the line has no newline
	if err != nil {
		return
	}
	b = append(b, '\n')
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	n, err := l.f.Write(b)
	if err != nil && n > 0 {
		// Part of the line was written (the disk filled up): end it, so that the next
		// line starts on a line of its own and only this one is lost.
		l.f.Write([]byte{'\n'})
	}
	l.noteWrite(err)
	l.mu.Unlock()
	if err == nil {
		select {
		case l.wake <- struct{}{}:
		default: // a token is already there; the next fsync covers this line too
		}
	}
}

// noteWrite logs the first failed write of a run, and the end of the run. l.mu is held.
func (l *EventLog) noteWrite(err error) {
	switch {
	case err != nil && !l.failing:
		l.failing = true
		l.log.Error("event log: write failed; events are being lost", "err", err)
	case err == nil && l.failing:
		l.failing = false
		l.log.Info("event log: writing works again")
	}
}

// Close stops the syncer, fsyncs the file and closes it.
func (l *EventLog) Close() error {
	if l == nil || l.f == nil {
		return nil
	}
	l.closeOnce.Do(func() {
		close(l.stop)
		<-l.done
		l.mu.Lock()
		defer l.mu.Unlock()
		l.closed = true
		err := l.syncNow()
		if cerr := l.f.Close(); err == nil {
			err = cerr
		}
		l.closeErr = err
	})
	return l.closeErr
}

// maxEventLine bounds a line ReadEvents decodes; longer lines are invalid. Real events
// are well under 10 KiB.
const maxEventLine = 1 << 20

// maxReportedLines bounds the invalid lines an InvalidLinesError lists (it counts all).
const maxReportedLines = 100

// InvalidLinesError reports the lines ReadEvents skipped because they were not events.
type InvalidLinesError struct {
	Count int           // invalid lines in all
	Lines []InvalidLine // the first of them, at most 100
}

// InvalidLine is one line ReadEvents skipped.
type InvalidLine struct {
	Line int // 1-based
	Err  error
}

func (e *InvalidLinesError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "events log: %d invalid line(s) skipped", e.Count)
	for i, l := range e.Lines {
		if i == 3 {
			b.WriteString("; ...")
			break
		}
		fmt.Fprintf(&b, "; line %d: %v", l.Line, l.Err)
	}
	return b.String()
}

// ReadEvents reads a mail-event log from r and calls fn with each event, in order.
//
// The last line is skipped without complaint if it is not an event: it is a write cut short
// by a crash or a power loss, or one in progress while r is read. Other lines that are not
// events (not a JSON object with an "event" field, or longer than 1 MiB) are skipped and
// reported: after reading everything else, ReadEvents returns an *InvalidLinesError.
// Blank lines are ignored. An error from fn stops reading and is returned as it is; an
// error reading r stops reading and is returned wrapped.
func ReadEvents(r io.Reader, fn func(Event) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var invalid InvalidLinesError
	// Each line is held until another one follows: only then is it known not to be the last.
	var held []byte
	heldNo := 0
	for n := 1; ; n++ {
		line, complete, err := readLine(br)
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read events: %w", err)
		}
		if len(bytes.TrimSpace(line)) > 0 {
			if heldNo > 0 {
				if err := deliver(held, heldNo, fn, &invalid); err != nil {
					return err
				}
			}
			held, heldNo = append(held[:0], line...), n
		}
		if !complete {
			break
		}
	}
	if heldNo > 0 {
		if ev, err := decodeEvent(held); err == nil {
			if err := fn(ev); err != nil {
				return err
			}
		}
	}
	if invalid.Count > 0 {
		return &invalid
	}
	return nil
}

// deliver passes line n to fn, or records it as invalid.
func deliver(line []byte, n int, fn func(Event) error, invalid *InvalidLinesError) error {
	ev, err := decodeEvent(line)
	if err != nil {
		invalid.Count++
		if len(invalid.Lines) < maxReportedLines {
			invalid.Lines = append(invalid.Lines, InvalidLine{Line: n, Err: err})
		}
		return nil
	}
	return fn(ev)
}

// decodeEvent decodes one line (without its newline).
func decodeEvent(line []byte) (Event, error) {
	var ev Event
	line = bytes.TrimSpace(line)
	switch {
	case len(line) > maxEventLine:
		return ev, fmt.Errorf("longer than %d bytes", maxEventLine)
	case len(line) == 0 || line[0] != '{':
		return ev, errors.New("not a JSON object")
	}
	if err := json.Unmarshal(line, &ev); err != nil {
		return ev, err
	}
	if ev.Event == "" {
		return ev, errors.New(`no "event" field`)
	}
	return ev, nil
}

// readLine reads one line without its newline. complete is false if the input ended (or
// failed) before a newline. A line longer than maxEventLine is consumed to its end and
// returned cut to maxEventLine+1 bytes, so that it decodes as too long.
func readLine(br *bufio.Reader) (line []byte, complete bool, err error) {
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line) <= maxEventLine {
			line = append(line, chunk[:min(len(chunk), maxEventLine+1-len(line))]...)
		}
		switch {
		case err == nil:
			return bytes.TrimSuffix(line, []byte("\n")), true, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		default:
			return line, false, err
		}
	}
}
