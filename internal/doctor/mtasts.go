package doctor

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"slices"
	"strings"
	"time"
)

// PolicyMX are the MX names of the MTA-STS policy: the hostname and mta_sts.mx.
func (s Setup) PolicyMX() []string { return append([]string{s.Hostname}, s.MTASTSMX...) }

// MTASTSPolicy renders the MTA-STS policy (RFC 8461 §3.2) Repute serves for a domain whose
// MX hosts are mx, and the id that the domain's _mta-sts TXT record must carry. The id is
// derived from the policy text, so it changes exactly when the policy does (a sender
// refetches the policy only when the id changes, RFC 8461 §3.1) and the record printed by
// `repute dns records` and the policy served always agree.
func MTASTSPolicy(mode string, maxAge time.Duration, mx []string) (policy, id string) {
	hosts := make([]string, 0, len(mx))
	for _, h := range mx {
		h = strings.ToLower(strings.TrimSuffix(h, "."))
		if h != "" && !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	slices.Sort(hosts)
	var b strings.Builder
	b.WriteString("version: STSv1\r\n")
	fmt.Fprintf(&b, "mode: %s\r\n", mode)
	for _, h := range hosts {
		fmt.Fprintf(&b, "mx: %s\r\n", h)
	}
	fmt.Fprintf(&b, "max_age: %d\r\n", int64(maxAge/time.Second))
	policy = b.String()
	sum := sha256.Sum256([]byte(policy))
	// RFC 8461 §3.1: id is 1 to 32 alphanumeric characters.
	id = strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:15]))
	return policy, id
}
