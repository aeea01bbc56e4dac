package web

import (
	"bytes"
	"encoding/xml"
	"errors"
	"net/http"
	"testing"
)

// FuzzAutodiscover feeds request bodies to the autodiscover endpoint. Whatever the body,
// the answer is 400 or 413 exactly when parseAutodiscover refuses it; otherwise it is a
// well-formed 2006a settings or error response, and settings name the parsed address
// as the login. The seed corpus is in testdata/fuzz/FuzzAutodiscover.
func FuzzAutodiscover(f *testing.F) {
	f.Add([]byte(outlookRequest("bob@example.org", adOutlookNS)))
	h := setupServer().Handler()
	f.Fuzz(func(t *testing.T, body []byte) {
		q, perr := parseAutodiscover(bytes.NewReader(body))
		rec := serve(h, "POST", "autodiscover.example.org", autodiscoverPath, bytes.NewReader(body))
		if perr != nil {
			if !errors.Is(perr, errBadRequest) {
				t.Fatalf("error not marked as a bad request: %v", perr)
			}
			if rec.Code != http.StatusBadRequest && rec.Code != http.StatusRequestEntityTooLarge {
				t.Fatalf("refused body answered %d", rec.Code)
			}
			return
		}
		if q.Address.Local == "" || q.Address.Domain == "" {
			t.Fatalf("parsed an empty address: %+v", q)
		}
		if rec.Code != http.StatusOK {
			if rec.Code == http.StatusRequestEntityTooLarge && len(body) > maxAutodiscover {
				return
			}
			t.Fatalf("parsed request %+v answered %d: %s", q, rec.Code, rec.Body)
		}
		var e odError
		if xml.Unmarshal(rec.Body.Bytes(), &e) == nil && e.Response.Error.ErrorCode != 0 {
			return
		}
		var r odResponse
		if err := xml.Unmarshal(rec.Body.Bytes(), &r); err != nil {
			t.Fatalf("response does not parse: %v\n%s", err, rec.Body)
		}
		p := r.Response.Account.Protocol
		if len(p) != 2 || p[0].LoginName != q.Address.String() || p[1].LoginName != q.Address.String() {
			t.Fatalf("settings for %q: %+v", q.Address.String(), p)
		}
	})
}
