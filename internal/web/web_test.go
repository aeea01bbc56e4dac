package web

import (
	"github.com/repute-mail/repute/internal/outcome"

	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/repute-mail/repute/internal/store"
	"github.com/repute-mail/repute/internal/unsubscribe"
)

func TestUnsubscribe(t *testing.T) {
	ctx := context.Background()
	db, err := store.Open(ctx, store.Options{Path: filepath.Join(t.TempDir(), "r.db"), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	key := []byte("k")
	log := slog.New(slog.DiscardHandler)
	bus := &outcome.Bus{}
	bus.Subscribe(outcome.Counts(db, log))
	bus.Subscribe(outcome.Suppressions(db, bus, log))
	h := (&Server{DB: db, UnsubscribeKey: key, Outcomes: &outcome.Recorder{Bus: bus}, Logger: log}).Handler()
	path := "/unsubscribe/" + unsubscribe.Token(key, "a.test", "bob@remote.test")
	do := func(method, path, body string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(method, path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		h.ServeHTTP(rec, req)
		return rec
	}
	suppressed := func() bool {
		s, err := db.Suppressed(ctx, "a.test", "bob@remote.test")
		return err == nil && s != nil && s.Reason == "unsubscribe"
	}

	if rec := do("GET", path, ""); rec.Code != 200 || !strings.Contains(rec.Body.String(), `<form method="post">`) || suppressed() {
		t.Fatalf("GET: %d, suppressed %v:\n%s", rec.Code, suppressed(), rec.Body)
	}
	if rec := do("PUT", path, ""); rec.Code != http.StatusMethodNotAllowed || suppressed() {
		t.Errorf("PUT: %d", rec.Code)
	}
	if rec := do("POST", "/unsubscribe/forged.token", "List-Unsubscribe=One-Click"); rec.Code != 404 || suppressed() {
		t.Errorf("forged token: %d", rec.Code)
	}
	if rec := do("POST", path, "List-Unsubscribe=One-Click"); rec.Code != 200 || !suppressed() {
		t.Errorf("POST: %d, suppressed %v", rec.Code, suppressed())
	}
	if rec := do("POST", path, "List-Unsubscribe=One-Click"); rec.Code != 200 {
		t.Errorf("second POST: %d, want 200 (idempotent)", rec.Code)
	}
	if rs, _ := db.Rates(ctx, db.Now().Add(-time.Hour), true, false); len(rs) != 1 || rs[0].Unsubscribes != 1 {
		t.Errorf("rates: %+v", rs)
	}
}
