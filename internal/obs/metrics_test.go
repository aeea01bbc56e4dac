package obs

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestMetrics(t *testing.T) {
	var none *Metrics // components built without metrics count nothing, and do not crash
	none.Connection("mx", "accepted")
	none.Auth("spf", "pass")
	none.Lockout()

	m := NewMetrics()
	m.Connection("mx", "accepted")
	m.Connection("mx", "accepted")
	m.Message("submission", "rejected")
	m.RateLimit("message")
	m.LoginFailure("imap")
	m.Lockout()
	m.LockedOutLogin()
	m.Auth("dmarc", "fail")
	m.Listed("zen.example")
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`repute_smtp_connections_total{listener="mx",result="accepted"} 2`,
		`repute_smtp_messages_total{listener="submission",result="rejected"} 1`,
		`repute_rate_limited_total{kind="message"} 1`,
		`repute_login_failures_total{protocol="imap"} 1`,
		"repute_lockouts_total 1",
		"repute_locked_out_logins_total 1",
		`repute_inbound_auth_results_total{method="dmarc",result="fail"} 1`,
		`repute_dnsbl_listings_total{zone="zen.example"} 1`,
		"go_goroutines",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
