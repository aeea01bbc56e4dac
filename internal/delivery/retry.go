package delivery

import (
	"regexp"
	"strconv"
	"strings"
	"time"
)

// maxRetryHint caps what a server can ask for; the scheduler's own backoff governs beyond.
const maxRetryHint = 24 * time.Hour

// retryHint matches the ways servers say when to come back, e.g. "try again in 5
// minutes", "Greylisted, please retry after 300 seconds", "wait 2 hours",
// "greylisted for 5 min", "try again later (in 10m)".
var retryHint = regexp.MustCompile(`(?i)\b(?:try(?:ing)? again|retry|wait|come back|greylisted for|deferred for)\b[^0-9;]{0,20}?(\d{1,6})\s*(seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h)\b`)

// retryAfter returns the delay a temporary reply asks for, or 0 if it names none.
func retryAfter(text string) time.Duration {
	m := retryHint.FindStringSubmatch(text)
	if m == nil {
		return 0
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		return 0
	}
	var unit time.Duration
	switch u := strings.ToLower(m[2]); {
	case strings.HasPrefix(u, "h"):
		unit = time.Hour
	case strings.HasPrefix(u, "m"):
		unit = time.Minute
	default:
		unit = time.Second
	}
	return min(time.Duration(n)*unit, maxRetryHint)
}
