package classify

// This file reads abuse and complaint reports in the Abuse Reporting Format (ARF,
// RFC 5965), which mailbox providers send through their feedback loops when a user marks
// a message as spam, and which DMARC failure reports reuse (RFC 6591). Downstream, a
// complaint suppresses the complaining recipient and counts against the sending stream's
// reputation, so the report's most useful content is the returned original: its headers
// (X-Repute-Id, List-Unsubscribe, Message-ID) identify what we sent and to whom, even when
// the provider redacts the recipient.
//
// The MIME reading is shared with ParseDSN (dsnParser in dsnmime.go), with the same
// limits.

import (
	"errors"
	"fmt"
	"net/mail"
	"net/netip"
	"net/textproto"
	"strings"
	"time"
)

// ErrNotARF is returned (wrapped) by ParseARF for a message that is not a feedback report.
var ErrNotARF = errors.New("classify: not an ARF feedback report")

// FeedbackReport is an ARF (RFC 5965) abuse or complaint report.
type FeedbackReport struct {
	FeedbackType     string     // "abuse", "fraud", "virus", "other", "not-spam", or "auth-failure" (RFC 6591), lower case; "" if the report lacks it
	UserAgent        string     // the reporting software
	Version          string     // the ARF version, usually "1" (older reporters: "0.1")
	OriginalMailFrom string     // Original-Mail-From, without <>
	OriginalRcptTo   []string   // Original-Rcpt-To (may repeat), without <>; often absent or redacted
	ArrivalDate      time.Time  // Arrival-Date (or the older Received-Date); zero if absent or unparseable
	SourceIP         netip.Addr // Source-IP; the zero Addr if absent or unparseable
	ReportedDomain   []string   // Reported-Domain (may repeat)
	ReportingMTA     string     // Reporting-MTA without "dns;"

	// From the returned original (the message/rfc822 or text/rfc822-headers part).
	OriginalMessageID string   // its Message-ID, with angle brackets
	OriginalFrom      string   // the address in its From
	OriginalTo        []string // the addresses in its To: the complainant when Original-Rcpt-To is missing or redacted, as Yahoo and Microsoft JMRP do (though some redact To as well)

	// OriginalHeaders is the header of the returned original, keyed by canonical field
	// name (use Get and Values, which canonicalise), in order of appearance. Values are
	// unfolded and trimmed but not RFC 2047-decoded. Nil when the report returns no
	// original.
	OriginalHeaders textproto.MIMEHeader
}

// ParseARF reads an ARF feedback report (the full RFC 5322 message).
//
// A report is a multipart/report with report-type=feedback-report (RFC 5965 §2) holding a
// message/feedback-report part. Some reporters (Netease among them) send the same parts in
// a multipart/mixed; a message/feedback-report part anywhere outside an enclosed message is
// therefore accepted too. Without that part the message is not a report, and the error
// wraps ErrNotARF.
//
// Fields the RFC requires but the report lacks (Feedback-Type, User-Agent, Version) are
// left empty: the report is still returned, without an error, because its original may
// still identify the complainant. Callers should treat an empty FeedbackType as "abuse"
// or ignore the report, as their policy prefers.
//
// Only the first 10 MiB of msg are read; repeated fields are kept up to 1000 values, and
// each value is cut at 64 KiB.
func ParseARF(msg []byte) (*FeedbackReport, error) {
	if len(msg) > dsnMaxInput {
		msg = msg[:dsnMaxInput]
	}
	var p dsnParser
	root := p.parse(msg, 0)
	fb := root.find(func(p *dsnPart) bool { return p.mediaType == "message/feedback-report" })
	if fb == nil {
		if root.mediaType == "multipart/report" && strings.EqualFold(root.params["report-type"], "feedback-report") {
			return nil, fmt.Errorf("%w: multipart/report without a message/feedback-report part", ErrNotARF)
		}
		return nil, fmt.Errorf("%w: content type %s has no message/feedback-report part", ErrNotARF, root.mediaType)
	}
	r := &FeedbackReport{}
	arfReadFields(r, fb.body)
	if orig := root.find(func(p *dsnPart) bool { return p.encloses && len(p.enclosed) > 0 }); orig != nil {
		arfReadOriginal(r, orig.enclosed)
	}
	return r, nil
}

// arfReadFields reads the machine-readable part (RFC 5965 §3.1, §3.2). The fields are
// read leniently and across empty lines, since some reporters start the part with an
// empty line or split it into groups.
func arfReadFields(r *FeedbackReport, body []byte) {
	var received time.Time
	for data := body; len(data) > 0; {
		h, rest := dsnParseHeader(data, true)
		for _, f := range h {
			switch strings.ToLower(f.name) {
			case "feedback-type":
				r.FeedbackType = strings.ToLower(strings.TrimSpace(f.value))
			case "user-agent":
				r.UserAgent = f.value
			case "version":
				r.Version = f.value
			case "original-mail-from":
				r.OriginalMailFrom = arfStripAngles(f.value)
			case "original-rcpt-to":
				r.OriginalRcptTo = arfAppend(r.OriginalRcptTo, arfStripAngles(f.value))
			case "arrival-date":
				r.ArrivalDate = arfParseDate(f.value)
			case "received-date": // the name in ARF drafts, still sent by some (AOL, Yahoo)
				received = arfParseDate(f.value)
			case "source-ip":
				r.SourceIP = arfParseIP(f.value)
			case "reported-domain":
				r.ReportedDomain = arfAppend(r.ReportedDomain, strings.TrimSpace(f.value))
			case "reporting-mta":
				r.ReportingMTA = dsnHostValue(f.value)
			}
		}
		if len(rest) >= len(data) { // cannot happen, but progress must be certain
			_, rest = dsnCutLine(data)
		}
		data = rest
	}
	if r.ArrivalDate.IsZero() {
		r.ArrivalDate = received
	}
}

// arfReadOriginal fills in what the returned original's header says.
func arfReadOriginal(r *FeedbackReport, h dsnHeader) {
	r.OriginalHeaders = make(textproto.MIMEHeader, len(h))
	for _, f := range h {
		k := textproto.CanonicalMIMEHeaderKey(f.name)
		r.OriginalHeaders[k] = append(r.OriginalHeaders[k], f.value)
	}
	r.OriginalMessageID = dsnMessageID(h.get("Message-ID"))
	r.OriginalFrom = dsnAddress(h.get("From"))
	for _, v := range h.all("To") {
		r.OriginalTo = arfAddressList(r.OriginalTo, v)
	}
}

// arfAddressList appends the addresses of an address-list field to list, falling back to
// a split at commas when net/mail refuses the field (redacted fields often are invalid).
func arfAddressList(list []string, v string) []string {
	if len(v) <= 16<<10 {
		if as, err := mail.ParseAddressList(v); err == nil {
			for _, a := range as {
				list = arfAppend(list, a.Address)
			}
			return list
		}
	}
	for _, part := range strings.Split(v, ",") {
		list = arfAppend(list, dsnAddress(part))
	}
	return list
}

// arfAppend appends a non-empty value while the list holds fewer than dsnMaxRecipients.
func arfAppend(list []string, v string) []string {
	if v == "" || len(list) >= dsnMaxRecipients {
		return list
	}
	return append(list, v)
}

// arfStripAngles returns an address field value without its angle brackets; "<>" (the
// null sender) becomes "".
func arfStripAngles(v string) string {
	v = strings.TrimSpace(v)
	if i := strings.IndexByte(v, '<'); i >= 0 {
		if j := strings.IndexByte(v[i:], '>'); j > 0 {
			return strings.TrimSpace(v[i+1 : i+j])
		}
	}
	return strings.Trim(v, "<> \t")
}

// arfParseIP reads Source-IP, tolerating brackets, an "IPv6:" prefix (RFC 5321 §4.1.3),
// a port and trailing comments.
func arfParseIP(v string) netip.Addr {
	f := strings.Fields(v)
	if len(f) == 0 {
		return netip.Addr{}
	}
	s := strings.Trim(f[0], "[]();,")
	if len(s) > 5 && strings.EqualFold(s[:5], "ipv6:") {
		s = s[5:]
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap()
	}
	if ap, err := netip.ParseAddrPort(strings.Trim(f[0], "();,")); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// arfZones are the obsolete US zone names of RFC 5322 §4.3, which ARF's own examples use
// ("Thu, 8 Mar 2005 17:40:36 EDT") and time.Parse would take as UTC.
var arfZones = map[string]int{"EST": -5, "EDT": -4, "CST": -6, "CDT": -5, "MST": -7, "MDT": -6, "PST": -8, "PDT": -7}

// arfDateLayouts are tried after net/mail.ParseDate, for dates it refuses.
var arfDateLayouts = []string{
	"Mon, 2 Jan 2006 15:04:05 -0700 (MST)",
	"Mon, 2 Jan 2006 15:04:05",
	"2 Jan 2006 15:04:05",
	"Mon Jan _2 15:04:05 2006",
	"Mon Jan _2 15:04:05 MST 2006",
	time.RFC3339,
	"2006-01-02 15:04:05 -0700",
	"2006-01-02 15:04:05",
}

// arfParseDate reads an RFC 5322 date-time and a few common deviations; the zero time
// if none fits.
func arfParseDate(v string) time.Time {
	v = strings.TrimSpace(v)
	if v == "" || len(v) > 200 {
		return time.Time{}
	}
	t, err := mail.ParseDate(v)
	if err != nil {
		for _, layout := range arfDateLayouts {
			if t, err = time.Parse(layout, v); err == nil {
				break
			}
		}
		if err != nil {
			return time.Time{}
		}
	}
	if name, off := t.Zone(); off == 0 {
		if h, ok := arfZones[name]; ok {
			y, mo, d := t.Date()
			t = time.Date(y, mo, d, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.FixedZone(name, h*3600))
		}
	}
	return t
}
