package alert

import (
	"bytes"
	"io"
	"maps"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	t0        = time.Date(2025, 3, 3, 3, 6, 0, 0, time.UTC)
	s3140     = "550 5.7.1 Unfortunately, messages from [203.0.113.5] weren't sent. Please contact your Internet service provider since part of their network is on our block list (S3140). You can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors."
	msAdvice  = "Request delisting for 203.0.113.5 at the Microsoft sender support page, and check that its PTR record and the SPF, DKIM and DMARC of the sending domains are in order."
	msURL     = "https://sender.office.com/"
	wantField = []string{"From", "To", "Subject", "Date", "Message-Id", "Auto-Submitted", "X-Repute-Alert",
		"Mime-Version", "Content-Type", "Content-Transfer-Encoding"}
)

func pausedNotice() Notice {
	return Notice{Kind: Paused, Time: t0, Provider: "microsoft", SourceIP: "203.0.113.5", Category: "ip_reputation",
		Reply: s3140, Advice: msAdvice, URL: msURL, Until: t0.Add(time.Hour), Queued: 1234, Fallback: "relay.example.net:587"}
}

// parse checks that raw is a well-formed 7-bit RFC 5322 message with CRLF line ends, no
// line longer than 998 octets and exactly the header fields Compose writes, and returns
// its header and decoded body.
func parse(t testing.TB, raw []byte) (mail.Header, string) {
	t.Helper()
	if n := bytes.Count(raw, []byte("\r\n")); n != bytes.Count(raw, []byte("\n")) || n != bytes.Count(raw, []byte("\r")) {
		t.Fatalf("bare CR or LF in\n%s", raw)
	}
	for i, l := range bytes.Split(raw, []byte("\r\n")) {
		if len(l) > 998 {
			t.Fatalf("line %d is %d octets", i+1, len(l))
		}
	}
	for _, c := range raw {
		if c >= 0x80 || c == 0 {
			t.Fatalf("byte %#x in a 7-bit message", c)
		}
	}
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("net/mail: %v\n%s", err, raw)
	}
	if got := slices.Sorted(maps.Keys(m.Header)); !slices.Equal(got, slices.Sorted(slices.Values(wantField))) {
		t.Fatalf("header fields %v, want %v", got, wantField)
	}
	for k, v := range m.Header {
		if len(v) != 1 {
			t.Fatalf("%s appears %d times", k, len(v))
		}
	}
	var r io.Reader = m.Body
	switch cte := m.Header.Get("Content-Transfer-Encoding"); cte {
	case "quoted-printable":
		r = quotedprintable.NewReader(m.Body)
	case "7bit":
	default:
		t.Fatalf("Content-Transfer-Encoding %q", cte)
	}
	body, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("body: %v", err)
	}
	return m.Header, strings.ReplaceAll(string(body), "\r\n", "\n")
}

func subject(t testing.TB, h mail.Header) string {
	t.Helper()
	s, err := new(mime.WordDecoder).DecodeHeader(h.Get("Subject"))
	if err != nil {
		t.Fatalf("subject %q: %v", h.Get("Subject"), err)
	}
	return s
}

func TestComposeKinds(t *testing.T) {
	noIP := pausedNotice()
	noIP.SourceIP, noIP.Fallback, noIP.Queued, noIP.Until = "", "", 0, time.Time{}
	probe := pausedNotice()
	probe.Kind, probe.Until = ProbeFailed, t0.Add(4*time.Hour)
	resumed := Notice{Kind: Resumed, Time: t0, Provider: "gmail", SourceIP: "2001:db8::25", Reply: "250 2.0.0 OK", Queued: 7}
	utf8 := pausedNotice()
	utf8.Provider, utf8.Reply = "yahoo", "554 5.7.9 Message refusé — réputation (TSS04)"
	cases := []struct {
		name    string
		x       Notice
		subject string
		want    []string
		not     []string
	}{
		{"paused", pausedNotice(), "[repute mx.example.com] Sending to microsoft paused for 203.0.113.5 (ip_reputation)",
			[]string{"Repute has paused sending to microsoft from 203.0.113.5.", "Mon 3 Mar 2025 03:06:00 UTC",
				"    > 550 5.7.1 Unfortunately, messages from [203.0.113.5] weren't sent.",
				"The 1234 messages waiting for microsoft stay in the queue", "fallback relay relay.example.net:587",
				"Mon 3 Mar 2025 04:06:00 UTC (in 1h)", "ip_reputation", "Request delisting for 203.0.113.5",
				"\n  https://sender.office.com/\n", "    repute provider status\n",
				"    repute provider resume microsoft --ip 203.0.113.5\n", "\n-- \nRepute on mx.example.com\n"},
			nil},
		{"default address, nothing known", noIP, "[repute mx.example.com] Sending to microsoft paused for the default address (ip_reputation)",
			[]string{"from this server's default address", "The mail for microsoft stays in the queue", "No fallback relay is configured",
				"    repute provider resume microsoft\n"},
			[]string{"--ip", "will try one message"}},
		{"probe failed", probe, "[repute mx.example.com] Sending to microsoft still paused for 203.0.113.5: probe refused (ip_reputation)",
			[]string{"stays paused: the probe message was refused again", "(in 4h)", "repute provider resume microsoft --ip 203.0.113.5"},
			nil},
		{"resumed", resumed, "[repute mx.example.com] Sending to gmail resumed for 2001:db8::25",
			[]string{"Repute has resumed sending to gmail from 2001:db8::25.", "    > 250 2.0.0 OK",
				"The 7 messages waiting for gmail are being sent again", "repute provider status"},
			[]string{"repute provider resume", "stay in the queue"}},
		{"utf-8 reply", utf8, "[repute mx.example.com] Sending to yahoo paused for 203.0.113.5 (ip_reputation)",
			[]string{"    > 554 5.7.9 Message refusé — réputation (TSS04)"}, nil},
		{"check failed", Notice{Kind: CheckFailed, Time: t0, Check: "spf", Target: "example.com",
			Reply:  `"v=spf1 ip4:192.0.2.250 -all" does not authorise every address mail leaves from`,
			Advice: `publish one TXT record at example.com: "v=spf1 ip4:203.0.113.5 -all"`},
			"[repute mx.example.com] Check spf failed for example.com",
			[]string{"The check spf of example.com started failing at Mon 3 Mar 2025 03:06:00 UTC",
				`    > "v=spf1 ip4:192.0.2.250 -all" does not authorise`, `publish one TXT record at example.com`,
				"    repute check\n"},
			[]string{"repute provider"}},
		{"check fixed", Notice{Kind: CheckFixed, Time: t0, Check: "spf", Target: "example.com", Reply: "passes"},
			"[repute mx.example.com] Check spf passes again for example.com",
			[]string{"The check spf of example.com passes again"}, []string{"What to do"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			raw, err := Compose("mx.example.com", c.x, t0.Add(time.Second))
			if err != nil {
				t.Fatal(err)
			}
			h, body := parse(t, raw)
			if got := subject(t, h); got != c.subject {
				t.Errorf("Subject %q\nwant     %q", got, c.subject)
			}
			fields := map[string]string{
				"From": `"Repute" <postmaster@mx.example.com>`, "To": "<postmaster@mx.example.com>",
				"Auto-Submitted": "auto-generated", "X-Repute-Alert": c.x.Kind,
				"Content-Type": "text/plain; charset=utf-8", "Date": "Mon, 03 Mar 2025 03:06:01 +0000",
			}
			for k, v := range fields {
				if got := h.Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			if from, err := h.AddressList("From"); err != nil || from[0].Address != "postmaster@mx.example.com" {
				t.Errorf("From: %v %v", from, err)
			}
			if id := h.Get("Message-Id"); !strings.HasPrefix(id, "<alert.") || !strings.HasSuffix(id, "@mx.example.com>") {
				t.Errorf("Message-ID %q", id)
			}
			flat := strings.Join(strings.Fields(body), " ") // prose is wrapped
			for _, w := range c.want {
				if !strings.Contains(body, w) && !strings.Contains(flat, w) {
					t.Errorf("body lacks %q:\n%s", w, body)
				}
			}
			for _, w := range c.not {
				if strings.Contains(body, w) {
					t.Errorf("body has %q:\n%s", w, body)
				}
			}
		})
	}
}

// A hostile reply (or any field) with line breaks cannot add header fields or end the
// header early: it only ever appears quoted in the body.
func TestComposeInjection(t *testing.T) {
	cases := []struct {
		name string
		edit func(*Notice)
	}{
		{"CRLF in reply", func(x *Notice) { x.Reply = "550 no\r\nBcc: victim@example.org\r\nSubject: pwned" }},
		{"empty line in reply", func(x *Notice) { x.Reply = "550 no\r\n\r\nX-Injected: 1\r\n\r\n" }},
		{"bare CR and LF", func(x *Notice) { x.Reply = "550 a\rX-Injected: 1\nX-Injected: 2\x00\x1b[31m\x7f" }},
		{"unicode line separators", func(x *Notice) { x.Reply = "550 a\u2028X-Injected: 1\u0085X-Injected: 2" }},
		{"fields", func(x *Notice) {
			x.Provider = "microsoft\r\nBcc: victim@example.org"
			x.Category = "ip\nX-Injected: 1"
			x.SourceIP = "203.0.113.5\r\n\r\nbody"
			x.Advice, x.URL, x.Fallback = "a\r\nX-Injected: 1", "https://x/\r\nX-Injected: 1", "r:25\nX-Injected: 1"
		}},
		{"invalid utf-8", func(x *Notice) { x.Reply = "550 \xff\xfe\r\nX-Injected: \xc3" }},
		{"encoded-word lookalike", func(x *Notice) { x.Category = "=?utf-8?q?=0D=0ABcc:_x?=" }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x := pausedNotice()
			c.edit(&x)
			raw, err := Compose("mx.example.com", x, t0)
			if err != nil {
				t.Fatal(err)
			}
			h, body := parse(t, raw) // exactly the expected fields, each once
			if s := subject(t, h); strings.ContainsAny(s, "\r\n") {
				t.Errorf("subject %q", s)
			}
			for _, l := range strings.Split(body, "\n") {
				if strings.HasPrefix(l, "X-Injected") || strings.HasPrefix(l, "Bcc") {
					t.Errorf("unquoted line %q in body:\n%s", l, body)
				}
			}
		})
	}
}

// Huge or endless input makes a bounded, still well-formed message.
func TestComposeLimits(t *testing.T) {
	x := pausedNotice()
	x.Reply = "550 " + strings.Repeat("é", 100_000)
	x.Advice = strings.Repeat("word ", 10_000)
	x.URL = "https://example.com/" + strings.Repeat("a", 5000)
	x.Provider = strings.Repeat("p", 5000)
	raw, err := Compose(strings.Repeat("a.", 126)+"b", x, t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) > 32<<10 {
		t.Errorf("message of %d bytes", len(raw))
	}
	_, body := parse(t, raw)
	if !strings.Contains(body, " [...]") {
		t.Error("no truncation mark")
	}
}

func TestComposeRefuses(t *testing.T) {
	cases := []struct {
		name, host string
		kind       string
	}{
		{"empty hostname", "", Paused},
		{"hostname with CRLF", "mx.example.com\r\nBcc: x", Paused},
		{"hostname with space", "mx example", Paused},
		{"hostname with @", "a@b", Paused},
		{"non-ASCII hostname", "mx.exämple.com", Paused},
		{"empty label", "mx..example", Paused},
		{"unknown kind", "mx.example.com", "exploded"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			x := pausedNotice()
			x.Kind = c.kind
			if raw, err := Compose(c.host, x, t0); err == nil {
				t.Errorf("composed\n%s", raw)
			}
		})
	}
}

func TestShellWord(t *testing.T) {
	for in, want := range map[string]string{
		"microsoft": "microsoft", "2001:db8::1": "2001:db8::1", "a b": "'a b'", "it's": `'it'\''s'`, "$(x)": "'$(x)'", "": "''",
	} {
		if got := shellWord(in); got != want {
			t.Errorf("shellWord(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzCompose: whatever the notice holds, the mail is well formed with exactly the
// expected header fields, and its subject is one line.
func FuzzCompose(f *testing.F) {
	f.Add("paused", "microsoft", "203.0.113.5", "ip_reputation", s3140, msAdvice, msURL, "relay:25")
	f.Add("resumed", "gmail", "", "", "250 2.0.0 OK", "", "", "")
	f.Add("probe_failed", "x\r\nBcc: y", "a\nb", "=?utf-8?q?a?=", "550\r\n\r\nX: 1", "é\x00", "\xff", "\r")
	f.Fuzz(func(t *testing.T, kind, provider, ip, category, reply, advice, url, fallback string) {
		x := Notice{Kind: kind, Time: t0, Provider: provider, SourceIP: ip, Category: category, Reply: reply,
			Advice: advice, URL: url, Fallback: fallback, Until: t0.Add(time.Hour), Queued: 3}
		raw, err := Compose("mx.example.com", x, t0)
		if err != nil {
			if kind == Paused || kind == Resumed || kind == ProbeFailed {
				t.Fatalf("kind %q: %v", kind, err)
			}
			return
		}
		h, _ := parse(t, raw)
		if s := subject(t, h); strings.ContainsAny(s, "\r\n") {
			t.Fatalf("subject %q", s)
		}
	})
}
