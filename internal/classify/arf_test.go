package classify

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// arfCase is the expected reading of one file in testdata/arf.
type arfCase struct {
	file                      string
	feedbackType, ua, version string
	mailFrom, mta             string
	rcptTo, domains           []string
	arrival                   time.Time
	ip                        string
	msgID, from               string
	to                        []string
	headers                   map[string]string // header → expected first value in OriginalHeaders
}

var arfCases = []arfCase{
	{file: "rfc5965-simple.eml", feedbackType: "abuse", ua: "SomeGenerator/1.0", version: "1",
		msgID: "8787KJKJ3K4J3K4J3K4J3.mail@example.net", from: "somespammer@example.net",
		headers: map[string]string{"Subject": "Earn money", "Content-Type": "text/plain"}},
	{file: "rfc5965-full.eml", feedbackType: "abuse", ua: "SomeGenerator/1.0", version: "1",
		mailFrom: "somespammer@example.net", mta: "mail.example.com",
		rcptTo: []string{"user@example.com", "user2@example.com"}, domains: []string{"example.net"},
		arrival: time.Date(2005, 3, 8, 14, 0, 0, 0, time.FixedZone("EDT", -4*3600)), ip: "192.0.2.1",
		msgID: "<8787KJKJ3K4J3K4J3K4J3.mail@example.net>", from: "somespammer@example.net",
		headers: map[string]string{"Received": "from mailserver.example.net (mailserver.example.net        [192.0.2.1]) by example.com with ESMTP id M63d4137594e46;        Tue, 08 Mar 2005 14:00:00 -0400"}},
	{file: "yahoo-cfl.eml", feedbackType: "abuse", ua: "Yahoo!-Mail-Feedback/2.0", version: "0.1",
		mailFrom: "bounces+0f2k3m4n@mail.example.com", domains: []string{"example.com"},
		arrival: time.Date(2025, 3, 4, 16, 0, 0, 0, time.UTC), ip: "192.0.2.5",
		msgID: "<deals-week10.4711@example.com>", from: "deals@example.com", to: []string{"reader@yahoo.com"},
		headers: map[string]string{"X-Repute-Id": "0f2k3m4n5p6q7r8s",
			"List-Unsubscribe":      "<https://example.com/u/abc>, <mailto:unsub-abc@example.com>",
			"List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}},
	{file: "microsoft-jmrp.eml", feedbackType: "abuse", ua: "Microsoft Junk Mail Reporting Program", version: "1.0",
		arrival: time.Date(2025, 3, 4, 17, 10, 11, 0, time.UTC), ip: "192.0.2.5",
		msgID: "<newsletter-2025-03.78@example.com>", from: "news@example.com", to: []string{"redacted@hotmail.com"},
		headers: map[string]string{"X-Repute-Id": "1a2b3c4d5e6f7g8h", "X-Hmxmroriginalrecipient": "<removed>"}},
	{file: "aol.eml", feedbackType: "abuse", ua: "AOL SComp", version: "0.1", domains: []string{"example.com"},
		arrival: time.Date(2025, 3, 4, 15, 11, 12, 0, time.UTC), ip: "192.0.2.5",
		msgID: "<promo-aol-3@example.com>", from: "promo@example.com", to: []string{"redacted@aol.com"},
		headers: map[string]string{"X-Repute-Id": "2b3c4d5e6f7g8h9i", "Return-Path": "<bounce-promo@example.com>"}},
	{file: "missing-fields.eml", rcptTo: []string{"complainer@isp.example"}, ip: "2001:db8::25",
		msgID: "<mf-orig@example.com>", from: "news@example.com", to: []string{"complainer@isp.example", "other@isp.example"},
		headers: map[string]string{"X-Repute-Id": "3c4d5e6f7g8h9i0j"}},
	{file: "mixed-base64.eml", feedbackType: "not-spam", ua: "ExampleFBL/3.1", version: "1",
		arrival: time.Date(2025, 3, 4, 3, 0, 0, 0, time.UTC), ip: "192.0.2.99",
		msgID: "<mixed-orig@example.com>", from: "news@example.com", to: []string{"redacted@mail.isp.example"}},
}

// arfNotReports are files in testdata/arf that ParseARF must refuse.
var arfNotReports = []string{"no-feedback-part.eml"}

func TestParseARFTestdata(t *testing.T) {
	for _, tc := range arfCases {
		eachLineEnding(t, "arf", tc.file, func(t *testing.T, data []byte) {
			r, err := ParseARF(data)
			if err != nil {
				t.Fatalf("ParseARF: %v", err)
			}
			arfCheck(t, r, tc)
		})
	}
}

func arfCheck(t *testing.T, r *FeedbackReport, tc arfCase) {
	t.Helper()
	str := func(what, got, want string) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %q, want %q", what, got, want)
		}
	}
	list := func(what string, got, want []string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("%s = %q, want %q", what, got, want)
		}
	}
	str("FeedbackType", r.FeedbackType, tc.feedbackType)
	str("UserAgent", r.UserAgent, tc.ua)
	str("Version", r.Version, tc.version)
	str("OriginalMailFrom", r.OriginalMailFrom, tc.mailFrom)
	str("ReportingMTA", r.ReportingMTA, tc.mta)
	list("OriginalRcptTo", r.OriginalRcptTo, tc.rcptTo)
	list("ReportedDomain", r.ReportedDomain, tc.domains)
	if !r.ArrivalDate.Equal(tc.arrival) {
		t.Errorf("ArrivalDate = %v, want %v", r.ArrivalDate, tc.arrival)
	}
	var wantIP netip.Addr
	if tc.ip != "" {
		wantIP = netip.MustParseAddr(tc.ip)
	}
	if r.SourceIP != wantIP {
		t.Errorf("SourceIP = %v, want %v", r.SourceIP, wantIP)
	}
	str("OriginalMessageID", r.OriginalMessageID, tc.msgID)
	str("OriginalFrom", r.OriginalFrom, tc.from)
	list("OriginalTo", r.OriginalTo, tc.to)
	for k, v := range tc.headers {
		str("OriginalHeaders "+k, r.OriginalHeaders.Get(k), v)
	}
	if tc.msgID != "" && r.OriginalHeaders.Get("message-id") == "" {
		t.Errorf("OriginalHeaders lacks Message-ID: %v", r.OriginalHeaders)
	}
}

func TestParseARFTestdataCovered(t *testing.T) {
	known := map[string]bool{}
	for _, tc := range arfCases {
		known[tc.file] = true
	}
	for _, f := range arfNotReports {
		known[f] = true
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "arf", "*.eml"))
	for _, f := range files {
		if !known[filepath.Base(f)] {
			t.Errorf("%s has no expectation in arfCases or arfNotReports", f)
		}
	}
}

func TestParseARFNotReport(t *testing.T) {
	inputs := map[string][]byte{
		"empty":      nil,
		"plain mail": []byte("From: a@example.com\nSubject: hi\n\nhello"),
		"feedback type in a text part": []byte("From: a@example.com\nContent-Type: multipart/mixed; boundary=x\n\n--x\n" +
			"Content-Type: text/plain\n\nFeedback-Type: abuse\n--x--\n"),
		"report in an enclosed message": []byte("From: a@example.com\nContent-Type: message/rfc822\n\n" +
			"Content-Type: multipart/report; report-type=feedback-report; boundary=y\n\n--y\n" +
			"Content-Type: message/feedback-report\n\nFeedback-Type: abuse\n--y--\n"),
	}
	for _, f := range arfNotReports {
		data, err := os.ReadFile(filepath.Join("testdata", "arf", f))
		if err != nil {
			t.Fatal(err)
		}
		inputs[f] = data
	}
	dsns, _ := filepath.Glob(filepath.Join("testdata", "dsn", "*.eml"))
	for _, f := range dsns {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inputs["dsn/"+filepath.Base(f)] = data
	}
	for name, data := range inputs {
		t.Run(name, func(t *testing.T) {
			r, err := ParseARF(data)
			if !errors.Is(err, ErrNotARF) || r != nil {
				t.Fatalf("ParseARF = %+v, %v; want ErrNotARF", r, err)
			}
		})
	}
}

// TestParseARFConformance reads the DMARC failure reports (RFC 6591: ARF with
// Feedback-Type auth-failure) among the shared real-world samples.
func TestParseARFConformance(t *testing.T) {
	files := dsnConformanceFiles(t)
	seen := 0
	for _, f := range files {
		if !strings.Contains(filepath.ToSlash(f), "/failure/") {
			continue
		}
		seen++
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r, err := ParseARF(data)
		name := filepath.Base(f)
		if strings.Contains(name, "no_arf_part") {
			if !errors.Is(err, ErrNotARF) {
				t.Errorf("%s: got %+v, %v; want ErrNotARF", name, r, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if r.FeedbackType != "auth-failure" || r.UserAgent == "" || !r.SourceIP.IsValid() || r.ArrivalDate.IsZero() ||
			len(r.ReportedDomain) == 0 || r.OriginalHeaders == nil || r.OriginalMessageID == "" {
			t.Errorf("%s: incomplete report %+v", name, r)
		}
	}
	if seen == 0 {
		t.Skip("no DMARC failure samples in the shared conformance data")
	}
}

func TestParseARFLimits(t *testing.T) {
	var b strings.Builder
	b.WriteString("From: fbl@x\nContent-Type: multipart/report; report-type=feedback-report; boundary=z\n\n--z\n" +
		"Content-Type: message/feedback-report\n\nFeedback-Type: abuse\n")
	for range 3000 {
		b.WriteString("Original-Rcpt-To: <a@b.example>\nReported-Domain: b.example\n")
	}
	b.WriteString("\n--z\nContent-Type: text/rfc822-headers\n\nTo: ")
	for range 3000 {
		b.WriteString("c@d.example, ")
	}
	b.WriteString("e@f.example\nX-Big: " + strings.Repeat("y", 200000) + "\n\n--z--\n")
	start := time.Now()
	r, err := ParseARF([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.OriginalRcptTo) != dsnMaxRecipients || len(r.ReportedDomain) != dsnMaxRecipients || len(r.OriginalTo) != dsnMaxRecipients {
		t.Errorf("lists not capped: %d %d %d", len(r.OriginalRcptTo), len(r.ReportedDomain), len(r.OriginalTo))
	}
	if n := len(r.OriginalHeaders.Get("X-Big")); n > dsnMaxField {
		t.Errorf("header value of %d bytes", n)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestARFParseHelpers(t *testing.T) {
	ips := map[string]string{
		"192.0.2.1":              "192.0.2.1",
		"[192.0.2.1]":            "192.0.2.1",
		"IPv6:2001:db8::1":       "2001:db8::1",
		"[IPv6:2001:db8::1]":     "2001:db8::1",
		"192.0.2.1 (mx.example)": "192.0.2.1",
		"::ffff:192.0.2.7":       "192.0.2.7",
		"192.0.2.1:25":           "192.0.2.1",
		"not an ip":              "invalid IP",
		"":                       "invalid IP",
	}
	for in, want := range ips {
		if got := arfParseIP(in).String(); got != want {
			t.Errorf("arfParseIP(%q) = %s, want %s", in, got, want)
		}
	}
	dates := map[string]time.Time{
		"Thu, 8 Mar 2005 17:40:36 EDT":          time.Date(2005, 3, 8, 21, 40, 36, 0, time.UTC),
		"Tue, 04 Mar 2025 09:10:11 -0800 (PST)": time.Date(2025, 3, 4, 17, 10, 11, 0, time.UTC),
		"4 Mar 2025 11:00:00 +0800":             time.Date(2025, 3, 4, 3, 0, 0, 0, time.UTC),
		"2025-03-04T10:00:00Z":                  time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC),
		"yesterday":                             {},
	}
	for in, want := range dates {
		if got := arfParseDate(in); !got.Equal(want) {
			t.Errorf("arfParseDate(%q) = %v, want %v", in, got, want)
		}
	}
}
