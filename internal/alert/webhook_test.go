package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestValidWebhook(t *testing.T) {
	cases := []struct {
		url string
		ok  bool
	}{
		{"https://hooks.example.com/services/T0/B0/secret", true},
		{"http://127.0.0.1:8080/alert", true},
		{"HTTPS://example.com", true},
		{"https://user:secret@example.com/hook", true}, // basic auth is allowed, never logged
		{"https://[2001:db8::1]:8443/x?token=secret", true},
		{"", false},
		{"example.com/hook", false},
		{"ftp://example.com/hook", false},
		{"file:///etc/passwd", false},
		{"javascript:alert(1)", false},
		{"https:opaque", false},
		{"https://", false},
		{"https://:443/x", false},
		{"https://user:secret@/x", false},
		{"https://exa mple.com/", false},
		{"https://example.com/\r\nX: 1", false},
		{"https://example.com:port/", false},
		{"https://example.com/" + strings.Repeat("a", maxWebhookURL), false},
	}
	for _, c := range cases {
		err := ValidWebhook(c.url)
		if (err == nil) != c.ok {
			t.Errorf("ValidWebhook(%q) = %v, want ok %v", c.url, err, c.ok)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("error %q repeats a secret", err)
		}
	}
}

// FuzzValidWebhook: an accepted URL is one the HTTP client can send to, and no error
// repeats the URL's user information.
func FuzzValidWebhook(f *testing.F) {
	f.Add("https://user:pa55word@example.com/hook")
	f.Add("http://[::1]:80/%zz")
	f.Add("https://pa55word@:0")
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidWebhook(s)
		if err != nil {
			if strings.Contains(s, "pa55word") && strings.Contains(err.Error(), "pa55word") {
				t.Fatalf("error %q repeats the password", err)
			}
			return
		}
		req, err := http.NewRequest(http.MethodPost, s, nil)
		if err != nil {
			t.Fatalf("accepted %q, but: %v", s, err)
		}
		if req.URL.Scheme != "http" && req.URL.Scheme != "https" || req.URL.Hostname() == "" {
			t.Fatalf("accepted %q", s)
		}
	})
}

// hook is a webhook receiver on 127.0.0.1 that answers the statuses of its script in turn
// (then 200) and records what it received.
type hook struct {
	srv    *httptest.Server
	mu     sync.Mutex
	script []int
	got    []*http.Request
	bodies [][]byte
}

func newHook(t *testing.T, script ...int) *hook {
	h := &hook{script: script}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.got = append(h.got, r)
		h.bodies = append(h.bodies, body)
		status := http.StatusOK
		if len(h.script) > 0 {
			status, h.script = h.script[0], h.script[1:]
		}
		h.mu.Unlock()
		if status == http.StatusTemporaryRedirect {
			http.Redirect(w, r, r.URL.Query().Get("to"), status)
			return
		}
		w.WriteHeader(status)
		w.Write(bytes.Repeat([]byte("x"), 1<<20)) // a large answer is read only in part
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) requests() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.got)
}

// recordSleep is a Sleep that returns at once and records the waits asked for.
type recordSleep struct {
	mu    sync.Mutex
	waits []time.Duration
}

func (r *recordSleep) sleep(_ context.Context, d time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.waits = append(r.waits, d)
	return nil
}

// syncBuffer is a log destination safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// The webhook receives the notice as JSON with the documented keys.
func TestWebhookPayload(t *testing.T) {
	resumed := Notice{Kind: Resumed, Time: t0.In(time.FixedZone("CET", 3600)), Provider: "gmail", Reply: "250 2.0.0 OK"}
	cases := []struct {
		name string
		x    Notice
		want map[string]any
	}{
		{"paused", pausedNotice(), map[string]any{
			"kind": "paused", "time": "2025-03-03T03:06:00Z", "provider": "microsoft", "source_ip": "203.0.113.5",
			"category": "ip_reputation", "reply": s3140, "advice": msAdvice, "url": msURL,
			"until": "2025-03-03T04:06:00Z", "queued": 1234.0, "fallback": "relay.example.net:587", "hostname": "mx.example.com"}},
		{"resumed", resumed, map[string]any{
			"kind": "resumed", "time": "2025-03-03T03:06:00Z", "provider": "gmail", "source_ip": "", "category": "",
			"reply": "250 2.0.0 OK", "advice": "", "url": "", "until": nil, "queued": 0.0, "fallback": "", "hostname": "mx.example.com"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHook(t)
			n := &Notifier{Hostname: "mx.example.com", Webhook: h.srv.URL + "/hook?token=abc"}
			n.Notify(c.x)
			n.Close()
			if h.requests() != 1 {
				t.Fatalf("%d requests", h.requests())
			}
			r := h.got[0]
			if r.Method != http.MethodPost || r.URL.Path != "/hook" || r.URL.Query().Get("token") != "abc" {
				t.Errorf("%s %s", r.Method, r.URL)
			}
			if ct, ua := r.Header.Get("Content-Type"), r.Header.Get("User-Agent"); ct != "application/json" || ua != "Repute" {
				t.Errorf("Content-Type %q, User-Agent %q", ct, ua)
			}
			var got map[string]any
			if err := json.Unmarshal(h.bodies[0], &got); err != nil {
				t.Fatalf("%s: %v", h.bodies[0], err)
			}
			if !maps.Equal(got, c.want) {
				t.Errorf("JSON\n%v\nwant\n%v", got, c.want)
			}
		})
	}
}

// A failed post is retried after each backoff wait; a redirect to another scheme is not
// followed and not retried; a success ends the tries.
func TestWebhookRetry(t *testing.T) {
	cases := []struct {
		name     string
		script   []int
		redirect string
		requests int
		waits    []time.Duration
		log      string
	}{
		{"ok", []int{200}, "", 1, nil, "alert posted to webhook"},
		{"204", []int{204}, "", 1, nil, "alert posted to webhook"},
		{"500 then ok", []int{500}, "", 2, []time.Duration{5 * time.Second}, "alert posted to webhook"},
		{"503 502 then ok", []int{503, 502}, "", 3, []time.Duration{5 * time.Second, 30 * time.Second}, "alert posted to webhook"},
		{"always 500", []int{500, 500, 500}, "", 3, []time.Duration{5 * time.Second, 30 * time.Second}, "giving up"},
		{"404", []int{404, 404, 404}, "", 3, []time.Duration{5 * time.Second, 30 * time.Second}, "status 404"},
		{"redirect same scheme", []int{307}, "/elsewhere", 2, nil, "alert posted to webhook"},
		{"redirect to https", []int{307}, "https://127.0.0.1:1/x", 1, nil, "redirect from http to https refused"},
		{"redirect to ftp", []int{307}, "ftp://127.0.0.1/x", 1, nil, "refused"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHook(t, c.script...)
			var logs syncBuffer
			var rs recordSleep
			n := &Notifier{Hostname: "mx.example.com", Webhook: h.srv.URL + "/hook?to=" + c.redirect,
				Sleep: rs.sleep, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
			n.Notify(pausedNotice())
			n.Close()
			if got := h.requests(); got != c.requests {
				t.Errorf("%d requests, want %d", got, c.requests)
			}
			if !slices.Equal(rs.waits, c.waits) {
				t.Errorf("waits %v, want %v", rs.waits, c.waits)
			}
			if !strings.Contains(logs.String(), c.log) {
				t.Errorf("log lacks %q:\n%s", c.log, logs.String())
			}
		})
	}
}

// A webhook that cannot be reached is tried three times; the log names its host but
// never its user information, path or query.
func TestWebhookUnreachable(t *testing.T) {
	h := newHook(t)
	url := strings.Replace(h.srv.URL, "http://", "http://admin:pw-secret@", 1) + "/hook/tok-secret?key=q-secret"
	h.srv.Close()
	var logs syncBuffer
	var rs recordSleep
	n := &Notifier{Hostname: "mx.example.com", Webhook: url, Sleep: rs.sleep, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	n.Notify(pausedNotice())
	n.Close()
	out := logs.String()
	if len(rs.waits) != 2 || !strings.Contains(out, "giving up") || !strings.Contains(out, strings.TrimPrefix(h.srv.URL, "http://")) {
		t.Errorf("waits %v, log:\n%s", rs.waits, out)
	}
	if strings.Contains(out, "secret") {
		t.Errorf("log repeats a secret:\n%s", out)
	}
}

// An invalid webhook URL disables the webhook, with an error in the log; mail still goes.
func TestWebhookInvalidDisabled(t *testing.T) {
	var logs syncBuffer
	var mails int
	n := &Notifier{Hostname: "mx.example.com", Webhook: "ftp://u:secret@example.com/", Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Postmaster: func(context.Context, []byte) error { mails++; return nil }}
	n.Notify(pausedNotice())
	n.Close()
	if mails != 1 || !strings.Contains(logs.String(), "webhook disabled") || strings.Contains(logs.String(), "secret") {
		t.Errorf("%d mails, log:\n%s", mails, logs.String())
	}
}

// TestJSONCheckNotice: a check notice carries the check and its target; the others omit
// the two keys.
func TestJSONCheckNotice(t *testing.T) {
	b, err := JSON("mx.example.com", Notice{Kind: CheckFailed, Time: t0, Check: "dkim", Target: "r1._domainkey.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"kind":"check_failed"`, `"check":"dkim"`, `"target":"r1._domainkey.example.com"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
	b, _ = JSON("mx.example.com", Notice{Kind: Paused, Time: t0, Provider: "microsoft"})
	if strings.Contains(string(b), `"check"`) || strings.Contains(string(b), `"target"`) {
		t.Errorf("a pause notice has check keys: %s", b)
	}
}
