// Package web is Repute's HTTP side: the one-click unsubscribe of RFC 8058, the MTA-STS
// policy of every local domain (mtasts.go) and the client set-up endpoints (Thunderbird
// autoconfig, Outlook autodiscover, an Apple profile; autoconfig.go).
//
// One-click unsubscribe: a POST to the List-Unsubscribe URL of a bulk message suppresses the recipient
// for the sending domain at once. A GET (a person clicking the link, or a link scanner
// visiting it) only shows a page with a button that sends that POST: mail filters fetch
// links in messages, and they must not unsubscribe anyone by doing so.
//
// It only reads the store: an unsubscribe is an outcome, recorded through
// internal/outcome like a bounce or a complaint.
//
// Upstream: internal/app (listen.http and listen.https). Downstream: internal/outcome,
// internal/unsubscribe; internal/store for reading.
package web

import (
	"context"
	"html/template"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/repute-mail/repute/internal/obs"
	"github.com/repute-mail/repute/internal/outcome"
	"github.com/repute-mail/repute/internal/store"
	"github.com/repute-mail/repute/internal/unsubscribe"
)

// Server holds what the handlers need.
type Server struct {
	DB             Store
	UnsubscribeKey []byte
	Outcomes       *outcome.Recorder // records unsubscribes (suppression, counts, event log)
	Logger         *slog.Logger

	// Mail set-up (mtasts.go, autoconfig.go).
	Hostname string                                      // the mail server's name: MX, IMAP and submission host
	Domains  func(ctx context.Context) ([]string, error) // the local domains; nil = none
	// MTASTSMode is the policy's mode ("enforce", "testing" or "none"); "" serves no
	// policy, for a listener that is not HTTPS.
	MTASTSMode   string
	MTASTSMaxAge time.Duration
	// MX are further MX hosts the policy names beside Hostname (mta_sts.mx).
	MX    []string
	Ports ClientPorts // what mail clients are told to use
}

// Store is what the handlers read; every change goes through Outcomes.
type Store interface {
	Suppressed(ctx context.Context, senderDomain, address string) (*store.Suppression, error)
}

// maxBody bounds a request body; the one-click POST is 26 bytes.
const maxBody = 4096

// Handler returns the routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/unsubscribe/{token}", s.unsubscribe)
	// A GET pattern also matches HEAD; other methods get 405.
	mux.HandleFunc("GET "+mtaSTSPath, s.mtaSTS)
	mux.HandleFunc("GET "+autoconfigPath, s.autoconfig)
	mux.HandleFunc("GET "+wellKnownConfig, s.autoconfig)
	mux.HandleFunc("GET "+mobileconfigPath, s.mobileconfig)
	return s.autodiscoverAnyCase(mux)
}

var page = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{{.Title}}</title></head>
<body style="font-family: sans-serif; max-width: 36em; margin: 3em auto">
<h1>{{.Title}}</h1><p>{{.Text}}</p>
{{if .Form}}<form method="post"><input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Unsubscribe {{.Rcpt}}</button></form>{{end}}
</body></html>
`))

type pageData struct {
	Title, Text, Rcpt string
	Form              bool
}

func (s *Server) unsubscribe(w http.ResponseWriter, r *http.Request) {
	domain, rcpt, err := unsubscribe.Parse(s.UnsubscribeKey, r.PathValue("token"))
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	if err != nil {
		w.WriteHeader(http.StatusNotFound)
		page.Execute(w, pageData{Title: "Link not valid", Text: "This unsubscribe link is not valid. It may have been cut off or changed."})
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		page.Execute(w, pageData{Title: "Unsubscribe", Rcpt: rcpt, Form: true,
			Text: "Stop receiving mail from " + domain + " at " + rcpt + "?"})
		return
	case http.MethodPost:
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	r.ParseForm() // RFC 8058 §3.2: the body is "List-Unsubscribe=One-Click"; any POST counts
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	// A second click is not a second unsubscribe.
	prev, err := s.DB.Suppressed(ctx, domain, rcpt)
	if err == nil && (prev == nil || prev.Reason != "unsubscribe") {
		err = s.Outcomes.Record(ctx, outcome.Event{SenderDomain: domain, Source: "unsubscribe",
			Detail: "one-click unsubscribe from " + clientOf(r), Event: obs.Event{Time: time.Now(), Event: obs.Unsubscribed,
				Rcpt: rcpt, Text: "unsubscribe via one-click link, for " + domain}})
	}
	if err != nil {
		s.Logger.Error("web: unsubscribe failed", "rcpt", rcpt, "sender_domain", domain, "err", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		page.Execute(w, pageData{Title: "Please try again", Text: "The unsubscribe could not be recorded just now. Please try again in a few minutes."})
		return
	}
	s.Logger.Info("web: unsubscribed", "rcpt", rcpt, "sender_domain", domain)
	page.Execute(w, pageData{Title: "Unsubscribed", Text: rcpt + " will get no more mail from " + domain + "."})
}

func clientOf(r *http.Request) string {
	host := r.RemoteAddr
	if i := strings.LastIndexByte(host, ':'); i > 0 {
		host = host[:i]
	}
	return host
}
