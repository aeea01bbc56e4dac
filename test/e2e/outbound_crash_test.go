package e2e

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	outCrashTotal    = 2000 // messages queued
	outCrashSessions = 20   // parallel submission sessions
	outCrashPerConn  = 50   // messages per session before reconnecting
	outCrashKillAt   = 500  // distinct messages at the sink before SIGKILL
)

// TestOutboundCrash queues 2,000 messages for sink.test, whose MX is an SMTP sink in the
// test process that holds every transaction until all are queued. Then it lets delivery
// run, kills the sender with SIGKILL once ~500 messages have arrived, restarts it and
// waits until the queue is empty: every message acknowledged at submission must have
// arrived at least once. A crash may repeat a delivery whose success was not yet
// recorded, so duplicates are allowed; they are counted and logged.
func TestOutboundCrash(t *testing.T) {
	t.Parallel()
	z := newZone(t)
	a := newServer(t, serverOptions{DNS: z.addr, Queue: fastQueue})
	sinkIP, _ := allocIP(t)
	k := startSink(t, net.JoinHostPort(sinkIP, strconv.Itoa(a.opts.RemotePort)), nil, true)
	z.mailDomain("a.test", "mx.a.test", a.ip)
	z.mailDomain("sink.test", "mx.sink.test", sinkIP)
	a.start()

	start := time.Now()
	acked := submitMany(t, a, outCrashTotal)
	t.Logf("%d of %d messages acknowledged by submission in %v", len(acked), outCrashTotal, time.Since(start).Round(time.Millisecond))
	if len(acked) != outCrashTotal {
		t.Errorf("only %d of %d submissions acknowledged (the server was up)", len(acked), outCrashTotal)
	}

	k.open()
	opened := time.Now()
	pid := a.pid()
	for k.unique() < outCrashKillAt { // a tight poll: kill close to the mark
		if time.Since(opened) > 2*time.Minute {
			t.Fatalf("only %d messages at the sink 2 minutes after delivery began; queue: %d entries", k.unique(), len(a.queueList(t)))
		}
		time.Sleep(5 * time.Millisecond)
	}
	a.kill()
	atKill := k.unique()
	t.Logf("SIGKILL pid %d %v after delivery began, %d distinct messages at the sink", pid, time.Since(opened).Round(time.Millisecond), atKill)

	a.start()
	restarted := time.Now()
	a.waitQueueEmpty(t, 3*time.Minute)
	t.Logf("queue empty %v after the restart", time.Since(restarted).Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond) // a delivery recorded just before the last listing

	byID, total := k.counts()
	var lost, dups []string
	for id := range acked {
		if byID[id] == 0 {
			lost = append(lost, id)
		}
	}
	extra := 0
	for id, n := range byID {
		if n > 1 {
			dups = append(dups, fmt.Sprintf("%s×%d", id, n))
		}
		if !acked[id] {
			extra++
		}
	}
	sort.Strings(lost)
	sort.Strings(dups)
	t.Logf("sink: %d messages, %d distinct; %d acknowledged lost; %d duplicated (allowed): %v; %d not acknowledged at submission",
		total, len(byID), len(lost), len(dups), headStrings(dups, 20), extra)
	if len(lost) > 0 {
		t.Errorf("%d acknowledged messages never arrived after SIGKILL and restart: %v", len(lost), headStrings(lost, 30))
	}
}

// submitMany submits n numbered messages from alice to sink.test over
// outCrashSessions parallel sessions and returns the Message-IDs that got 250.
func submitMany(t *testing.T, s *server, n int) map[string]bool {
	t.Helper()
	cfg := s.tlsConfig(t)
	var next atomic.Int64
	var mu sync.Mutex
	acked := map[string]bool{}
	errs := map[string]int{}
	deadline := time.Now().Add(2 * time.Minute)
	var wg sync.WaitGroup
	for w := 0; w < outCrashSessions; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				c, err := s.dialSubmission("alice", cfg)
				if err != nil {
					mu.Lock()
					errs["dial: "+err.Error()]++
					mu.Unlock()
					time.Sleep(50 * time.Millisecond)
					continue
				}
				done := false
				for sent := 0; sent < outCrashPerConn; sent++ {
					i := int(next.Add(1))
					if i > n {
						done = true
						break
					}
					id := fmt.Sprintf("ocrash-%d@a.test", i)
					rcpt := fmt.Sprintf("user%d@sink.test", i%10)
					msg := outboundMessage("alice@a.test", []string{rcpt}, fmt.Sprintf("outbound crash %d", i),
						strings.TrimSuffix(id, "@a.test"),
						strings.Repeat(fmt.Sprintf("message %d, a line of filler text to make it look like mail\r\n", i), 12))
					err := sendMessage(c, "alice@a.test", []string{rcpt}, msg)
					mu.Lock()
					if err == nil {
						acked[id] = true
					} else {
						errs[err.Error()]++
					}
					mu.Unlock()
					if err != nil {
						break
					}
				}
				_ = c.Quit()
				c.Close()
				if done {
					return
				}
			}
		}()
	}
	wg.Wait()
	for e, k := range errs {
		t.Errorf("submission: %d× %s", k, e)
	}
	return acked
}

func headStrings(xs []string, n int) []string {
	if len(xs) > n {
		return xs[:n]
	}
	return xs
}
