package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

const (
	maxWebhookURL  = 2048     // a longer configured URL is refused
	maxRedirects   = 5        // redirects followed, all of the same scheme
	maxRespBody    = 64 << 10 // read (and discarded) of a webhook's answer
	maxRespInError = 200      // of which this much goes into the log
)

// ValidWebhook checks a configured webhook URL: absolute http or https, with a host. Its
// errors never repeat the URL's user information, path or query, which may hold secrets.
func ValidWebhook(s string) error {
	if len(s) > maxWebhookURL {
		return fmt.Errorf("alert: webhook URL longer than %d bytes", maxWebhookURL)
	}
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("alert: webhook URL does not parse") // url's error quotes the whole URL
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("alert: webhook URL scheme %q: want http or https", truncate(u.Scheme, 16))
	}
	if u.Opaque != "" || u.Host == "" || u.Hostname() == "" {
		return errors.New("alert: webhook URL has no host")
	}
	return nil
}

// redacted is the part of a webhook URL that may be logged: scheme and host.
func redacted(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(invalid)"
	}
	return u.Scheme + "://" + u.Host
}

// payload is the JSON of a notice posted to the webhook.
type payload struct {
	Kind     string     `json:"kind"`
	Time     time.Time  `json:"time"`
	Provider string     `json:"provider"`
	SourceIP string     `json:"source_ip"`
	Category string     `json:"category"`
	Reply    string     `json:"reply"`
	Advice   string     `json:"advice"`
	URL      string     `json:"url"`
	Until    *time.Time `json:"until"` // null when zero
	Queued   int        `json:"queued"`
	Fallback string     `json:"fallback"`
	Hostname string     `json:"hostname"`
	Check    string     `json:"check,omitempty"`
	Target   string     `json:"target,omitempty"`
}

// JSON returns the webhook's body for x: the notice with snake_case keys, times in
// RFC 3339 (UTC), until null when zero, plus the server's hostname.
func JSON(hostname string, x Notice) ([]byte, error) {
	x = clean(x)
	p := payload{
		Kind: x.Kind, Time: x.Time.UTC(), Provider: x.Provider, SourceIP: x.SourceIP, Category: x.Category,
		Reply: x.Reply, Advice: x.Advice, URL: x.URL, Queued: x.Queued, Fallback: x.Fallback,
		Hostname: hostname, Check: x.Check, Target: x.Target,
	}
	if !x.Until.IsZero() {
		u := x.Until.UTC()
		p.Until = &u
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("alert: webhook JSON: %w", err)
	}
	return b, nil
}

// errFinal marks a webhook failure that retrying cannot mend.
var errFinal = errors.New("not retried")

// post sends x to the webhook, retrying after each of the Backoff waits, then gives up.
func (n *Notifier) post(ctx context.Context, x Notice) {
	body, err := JSON(n.Hostname, x)
	if err != nil {
		n.log.Error("webhook not sent", "kind", x.Kind, "provider", x.Provider, "err", err)
		return
	}
	waits := n.Backoff
	if waits == nil {
		waits = DefaultBackoff
	}
	log := n.log.With("webhook", redacted(n.Webhook), "kind", x.Kind, "provider", x.Provider, "source_ip", x.SourceIP)
	for try := 1; ; try++ {
		err := n.postOnce(ctx, body)
		if err == nil {
			log.Info("alert posted to webhook", "try", try)
			return
		}
		if try > len(waits) || errors.Is(err, errFinal) || ctx.Err() != nil {
			log.Error("alert not posted to webhook: giving up", "tries", try, "err", err)
			return
		}
		wait := waits[try-1]
		log.Warn("alert not posted to webhook: will retry", "try", try, "retry_in", wait, "err", err)
		if err := n.sleep(ctx, wait); err != nil {
			log.Error("alert not posted to webhook: giving up", "tries", try, "err", err)
			return
		}
	}
}

// postOnce makes one POST of body; a 2xx status is success.
func (n *Notifier) postOnce(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.Webhook, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("request: %w", errFinal)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Repute")
	resp, err := n.client.Do(req)
	if err != nil {
		// url.Error repeats the URL, which may hold a secret: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, maxRespInError))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxRespBody))
	if resp.StatusCode/100 == 2 {
		return nil
	}
	return fmt.Errorf("status %d: %q", resp.StatusCode, strings.TrimSpace(oneLine(string(head), maxRespInError)))
}

// safeClient returns a copy of c (nil: a client with DefaultHTTPTimeout) that follows a
// few redirects, and only those that keep the scheme: a redirect must not turn an https
// URL into http, nor carry the request anywhere but HTTP.
func safeClient(c *http.Client) *http.Client {
	var out http.Client
	if c != nil {
		out = *c
	} else {
		out.Timeout = DefaultHTTPTimeout
	}
	next := out.CheckRedirect
	out.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) > maxRedirects {
			return fmt.Errorf("more than %d redirects: %w", maxRedirects, errFinal)
		}
		if req.URL.Scheme != via[0].URL.Scheme {
			return fmt.Errorf("redirect from %s to %s refused: configure the final URL: %w",
				via[0].URL.Scheme, req.URL.Scheme, errFinal)
		}
		if next != nil {
			return next(req, via)
		}
		return nil
	}
	return &out
}
