package policy

// Inbound sender authentication: what the MX session asks at each stage, and the verdict
// it acts on after DATA.
//
// A message with several From fields or several authors is rejected too: DMARC cannot
// tell whose policy applies, and mail readers show only one of them.
//
// Stages: iprev (FCrDNS) when the client connects and SPF when MAIL FROM arrives both run
// in the background while the client goes on talking; DKIM, ARC and DMARC need the
// message, so they run after DATA. The verdict is then one of four actions:
//
//   - DMARC fail with disposition reject: 550 5.7.1 with the reason;
//   - DMARC fail with disposition quarantine: accepted into the recipients' Junk folder;
//   - the DMARC verdict could not be reached because of DNS trouble: 451 4.4.3, so the
//     sender retries (a DNS hiccup must never turn into a permanent rejection);
//   - otherwise accepted.
//
// SPF fail alone rejects nothing: rejecting at MAIL FROM would pre-empt the domain owner's
// DMARC policy (RFC 7489 §10.1) and break forwarding that DKIM or ARC would have saved.
// Every result goes into one Authentication-Results field (RFC 8601) under our host name,
// and copies of that field claiming our name that arrive from outside are removed first.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/repute-mail/repute/internal/auth"
	"github.com/repute-mail/repute/internal/dns"
)

// Verifier runs the inbound checks. It is safe for concurrent use.
type Verifier struct {
	Resolver   dns.Resolver
	AuthservID string        // our host name: the authserv-id of the fields we write
	Timeout    time.Duration // per stage; 0 = 20 s
	Sample     func() int    // DMARC pct= sampling, [0,100); nil = random
	// Seal adds an ARC set signed for the local domain to a message we forward; nil
	// disables ARC sealing.
	Seal func(ctx context.Context, domain string, msg []byte, authservID, results string, chain auth.ARCResult) ([]byte, error)
}

// Action is what the session does with a message after the checks.
type Action int

const (
	Accept Action = iota
	Junk          // accept into the Junk folder (DMARC quarantine)
	Reject        // 550 5.7.1
	Defer         // 451 4.4.3
)

func (a Action) String() string {
	return [...]string{"accept", "junk", "reject", "defer"}[a]
}

// Verdict is the outcome of all checks on one message.
type Verdict struct {
	IPRev  auth.IPRevResult
	SPF    auth.SPFResult
	DKIM   []auth.DKIMResult
	ARC    auth.ARCResult
	DMARC  auth.DMARCResult
	Action Action
	Reason string // why, for Reject and Defer: safe to show the client
	Detail string // the underlying error, for the log only
}

func (v *Verifier) timeout() time.Duration {
	if v.Timeout > 0 {
		return v.Timeout
	}
	return 20 * time.Second
}

// IPRev checks the client address's reverse DNS (at connect).
func (v *Verifier) IPRev(ip netip.Addr) auth.IPRevResult {
	ctx, cancel := context.WithTimeout(context.Background(), v.timeout())
	defer cancel()
	return auth.CheckIPRev(ctx, v.Resolver, ip)
}

// SPF checks the MAIL FROM identity (or HELO, for the null sender) of a transaction.
func (v *Verifier) SPF(ip netip.Addr, helo, mailFrom string) auth.SPFResult {
	ctx, cancel := context.WithTimeout(context.Background(), v.timeout())
	defer cancel()
	return auth.CheckSPF(ctx, v.Resolver, ip, helo, mailFrom)
}

// Clean removes Authentication-Results fields that claim to be ours (RFC 8601 §5): only
// the copy we add ourselves may carry our name, or a forger could vouch for a message.
func (v *Verifier) Clean(msg []byte) []byte {
	return auth.StripAuthResults(msg, v.AuthservID)
}

// Message verifies a received message (without our trace fields) given the results of
// the earlier stages, and decides what to do with it.
func (v *Verifier) Message(iprev auth.IPRevResult, spf auth.SPFResult, msg []byte) Verdict {
	ctx, cancel := context.WithTimeout(context.Background(), v.timeout())
	defer cancel()
	vd := Verdict{IPRev: iprev, SPF: spf}
	vd.DKIM = auth.VerifyDKIM(ctx, v.Resolver, msg)
	vd.ARC = auth.VerifyARC(ctx, v.Resolver, msg)
	vd.DMARC = auth.CheckDMARC(ctx, v.Resolver, msg, spf, vd.DKIM, v.Sample)
	d := vd.DMARC
	switch {
	case d.Result == "temperror":
		vd.Action = Defer
		// The reply names the cause, not the lookup's details (resolver addresses and
		// errors are ours): those go to the log with the verdict.
		vd.Reason = fmt.Sprintf("DMARC check for %s failed temporarily (DNS); try again later", orUnknown(d.Domain))
		vd.Detail = errText(d)
	case d.Result == "fail" && d.Disposition == "reject":
		vd.Action = Reject
		vd.Reason = d.Reason
		if vd.Reason == "" {
			vd.Reason = fmt.Sprintf("DMARC policy of %s rejects this message: not authenticated as coming from it", d.Domain)
		}
	case d.Result == "fail" && d.Disposition == "quarantine":
		vd.Action = Junk
	case d.Result == "permerror" && errors.Is(d.Err, auth.ErrSeveralAuthors):
		vd.Action = Reject
		vd.Reason = fmt.Sprintf("Message refused: %v; DMARC needs exactly one author (RFC 7489 section 6.6.1)", d.Err)
	}
	return vd
}

// methods renders every result as a method of an Authentication-Results field.
func (vd Verdict) methods(client netip.Addr) []string {
	var m []string
	if vd.IPRev.Result != "" {
		m = append(m, vd.IPRev.AuthResults(client))
	}
	if vd.SPF.Result != "" {
		m = append(m, vd.SPF.AuthResults())
	}
	for _, d := range vd.DKIM {
		m = append(m, d.AuthResults())
	}
	if vd.ARC.Result != "" {
		m = append(m, vd.ARC.AuthResults())
	}
	if vd.DMARC.Result != "" {
		m = append(m, vd.DMARC.AuthResults())
	}
	return m
}

// Header is the complete Authentication-Results field for the message.
func (v *Verifier) Header(vd Verdict, client netip.Addr) string {
	return auth.AuthResultsHeader(v.AuthservID, vd.methods(client)...)
}

// SealForward adds an ARC set for domain (the local domain of the alias that forwards)
// to msg, recording this verdict for the next hop. Without a sealer msg is returned as is.
func (v *Verifier) SealForward(domain string, msg []byte, vd Verdict, client netip.Addr) ([]byte, error) {
	if v.Seal == nil {
		return msg, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), v.timeout())
	defer cancel()
	return v.Seal(ctx, domain, msg, v.AuthservID, strings.Join(vd.methods(client), "; "), vd.ARC)
}

func orUnknown(s string) string {
	if s == "" {
		return "the From domain"
	}
	return s
}

func errText(d auth.DMARCResult) string {
	if d.Err != nil {
		return d.Err.Error()
	}
	return d.Reason
}

// Checks are the checks of one SMTP connection. The early stages run in the background:
// Start begins iprev at connect, MailFrom begins SPF; Verify waits for both before it
// looks at the message. Only the connection's own goroutine may call its methods.
type Checks struct {
	v     *Verifier
	ip    netip.Addr
	iprev chan auth.IPRevResult
	spf   chan auth.SPFResult
}

// Start begins the checks of a connection from ip.
func (v *Verifier) Start(ip netip.Addr) *Checks {
	c := &Checks{v: v, ip: ip, iprev: make(chan auth.IPRevResult, 1)}
	go func() { c.iprev <- v.IPRev(ip) }()
	return c
}

// MailFrom begins the SPF check of a new transaction.
func (c *Checks) MailFrom(helo, mailFrom string) {
	ch := make(chan auth.SPFResult, 1)
	c.spf = ch
	go func() { ch <- c.v.SPF(c.ip, helo, mailFrom) }()
}

// Verify checks the message of the current transaction.
func (c *Checks) Verify(msg []byte) Verdict {
	iprev := <-c.iprev
	c.iprev <- iprev // keep it for the next transaction
	var spf auth.SPFResult
	if c.spf != nil {
		spf = <-c.spf
		c.spf <- spf
	}
	return c.v.Message(iprev, spf, msg)
}

// Each calls f with every method and its result, for counting.
func (vd Verdict) Each(f func(method, result string)) {
	if vd.IPRev.Result != "" {
		f("iprev", vd.IPRev.Result)
	}
	if vd.SPF.Result != "" {
		f("spf", vd.SPF.Result)
	}
	for _, d := range vd.DKIM {
		f("dkim", d.Result)
	}
	if vd.ARC.Result != "" {
		f("arc", vd.ARC.Result)
	}
	if vd.DMARC.Result != "" {
		f("dmarc", vd.DMARC.Result)
	}
}
