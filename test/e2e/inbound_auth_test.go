package e2e

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestInboundAuth runs two Repute hosts, a.test and b.test, against a DNS server of the
// test in which a.test publishes SPF, DKIM and DMARC p=reject. It checks what b's MX does
// with mail claiming to come from a.test: the real thing arrives with spf, dkim and dmarc
// pass in Authentication-Results; a forged From is rejected at DATA with 550 5.7.1; a
// domain whose DNS does not answer gets 451 4.4.3; an Authentication-Results field forged
// with b's name is removed; mail forwarded by an alias of b carries an ARC chain that
// Debian's python3-dkim accepts.
func TestInboundAuth(t *testing.T) {
	t.Parallel()
	z := newZone(t)
	a, b := hostPair(t, z, serverOptions{Queue: fastQueue}, serverOptions{Queue: fastQueue, Metrics: true})
	z.add(`_dmarc.a.test. TXT "v=DMARC1; p=reject; adkim=s; aspf=s"`,
		`q.test. TXT "v=spf1 -all"`, `_dmarc.q.test. TXT "v=DMARC1; p=quarantine"`)
	z.silent("dead.test")
	publishDKIM(t, z, a, "a.test")
	bKeys := publishDKIM(t, z, b, "b.test")
	b.mustCLI("", "alias", "add", "fwd@b.test", "dave@a.test")
	a.start()
	b.start()

	t.Run("legitimate", func(t *testing.T) {
		subj := "legit " + uniqueID()
		a.submit(t, "alice", []string{"bob@b.test"}, subj)
		m := b.waitForMessage(t, "bob", deliveryTimeout, fmt.Sprintf("%q", subj), withSubject(subj))
		ar := authResults(m.Body, "mx.b.test")
		if len(ar) != 1 {
			t.Fatalf("want one Authentication-Results of mx.b.test, got %d:\n%s", len(ar), headerBlock(m.Body))
		}
		for _, want := range []string{"spf=pass smtp.mailfrom=a.test", "dkim=pass header.d=a.test", "dmarc=pass", "header.from=a.test"} {
			if !strings.Contains(ar[0], want) {
				t.Errorf("Authentication-Results lacks %q: %s", want, ar[0])
			}
		}
	})

	t.Run("forged From with p=reject", func(t *testing.T) {
		// SPF passes for remote.test (the test zone allows loopback), but the From
		// domain a.test is neither aligned with it nor signed.
		subj := "forged " + uniqueID()
		r := sendRaw(t, b.SMTP(), "ceo@remote.test", "bob@b.test",
			message("ceo@a.test", "bob@b.test", subj, "Please wire the money."), wireTimeout)
		checkReply(t, "end of DATA", r, 550, "5.7.1")
		if !strings.Contains(r.String(), "a.test") {
			t.Errorf("the rejection should name the From domain: %v", r)
		}
		for _, m := range b.messages(t, "bob", "INBOX", false) {
			if m.Subject == subj {
				t.Fatal("the forged message was delivered")
			}
		}
	})

	t.Run("p=quarantine goes to Junk", func(t *testing.T) {
		subj := "quarantined " + uniqueID()
		r := sendRaw(t, b.SMTP(), "news@q.test", "carol@b.test", message("news@q.test", "carol@b.test", subj, "Hello."), wireTimeout)
		checkReply(t, "end of DATA", r, 250, "2.0.0")
		found := false
		for _, m := range b.messages(t, "carol", "Junk", true) {
			if m.Subject == subj {
				found = true
				if ar := authResults(m.Body, "mx.b.test"); len(ar) != 1 || !strings.Contains(ar[0], "dmarc=fail") {
					t.Errorf("Authentication-Results: %q", ar)
				}
			}
		}
		if !found {
			t.Error("the message is not in carol's Junk folder")
		}
	})

	t.Run("forged Authentication-Results removed", func(t *testing.T) {
		subj := "fake results " + uniqueID()
		r := sendRaw(t, b.SMTP(), "someone@remote.test", "bob@b.test",
			"Authentication-Results: MX.B.TEST;\r\n\tdmarc=pass header.from=bank.example\r\n"+
				"Authentication-Results: other.example; spf=pass smtp.mailfrom=x.example\r\n"+
				message("someone@remote.test", "bob@b.test", subj, "Trust me."), wireTimeout)
		checkReply(t, "end of DATA", r, 250, "2.0.0")
		m := b.waitForMessage(t, "bob", deliveryTimeout, fmt.Sprintf("%q", subj), withSubject(subj))
		ours := authResults(m.Body, "mx.b.test")
		if len(ours) != 1 || strings.Contains(ours[0], "bank.example") {
			t.Errorf("want only our own Authentication-Results, got %q", ours)
		}
		if len(authResults(m.Body, "other.example")) != 1 {
			t.Errorf("another server's Authentication-Results must stay:\n%s", headerBlock(m.Body))
		}
	})

	t.Run("DNS timeout gives 451", func(t *testing.T) {
		// The resolver gives up after its own timeouts (two tries of 5 s per lookup).
		r := sendRaw(t, b.SMTP(), "user@dead.test", "bob@b.test",
			message("user@dead.test", "bob@b.test", "dead dns "+uniqueID(), "Hello."), 60*time.Second)
		checkReply(t, "end of DATA", r, 451, "4.4.3")
	})

	t.Run("alias forwarding is ARC-sealed", func(t *testing.T) {
		subj := "forwarded " + uniqueID()
		a.submit(t, "alice", []string{"fwd@b.test"}, subj)
		m := a.waitForMessage(t, "dave", deliveryTimeout, fmt.Sprintf("%q", subj), withSubject(subj))
		if !strings.Contains(headerBlock(m.Body), "ARC-Seal: i=1;") {
			t.Fatalf("no ARC-Seal i=1 in the forwarded message:\n%s", headerBlock(m.Body))
		}
		if ar := authResults(m.Body, "mx.a.test"); len(ar) != 1 || !strings.Contains(ar[0], "arc=pass") {
			t.Errorf("a's own verdict on the ARC chain: %q", ar)
		}
		arcVerify(t, []byte(m.Body), bKeys)
		arcverifyCommand(t, z, []byte(m.Body))
	})

	t.Run("metrics", func(t *testing.T) {
		body := httpGet(t, b.MetricsURL())
		for _, want := range []string{
			`repute_inbound_auth_results_total{method="dmarc",result="pass"}`,
			`repute_smtp_messages_total{listener="mx",result="rejected"}`,
			`repute_smtp_messages_total{listener="mx",result="junk"}`,
			`repute_smtp_messages_total{listener="mx",result="deferred"}`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	})
}

// sendRaw sends one message from client.remote.test over a bare socket and returns the
// reply to the end of its data, waiting up to wait for it.
func sendRaw(t *testing.T, addr, from, rcpt, data string, wait time.Duration) reply {
	t.Helper()
	c := dialRawGreeted(t, addr)
	defer c.close()
	c.expect("EHLO client.remote.test", 250, "")
	c.expect("MAIL FROM:<"+from+">", 250, "")
	c.expect("RCPT TO:<"+rcpt+">", 250, "")
	c.expect("DATA", 354, "")
	c.write(data + ".\r\n")
	return c.readWithin(wait)
}

// authResults returns the Authentication-Results fields of raw whose authserv-id is id,
// unfolded.
func authResults(raw, id string) []string {
	var out []string
	for _, f := range headerFields(raw) {
		name, value, _ := strings.Cut(f, ":")
		if !strings.EqualFold(strings.TrimSpace(name), "Authentication-Results") {
			continue
		}
		sid, _, _ := strings.Cut(strings.TrimSpace(value), ";")
		if strings.EqualFold(strings.TrimSpace(sid), id) {
			out = append(out, value)
		}
	}
	return out
}

// headerFields splits the header of raw into unfolded fields.
func headerFields(raw string) []string {
	var fields []string
	for _, line := range strings.Split(headerBlock(raw), "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" {
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && len(fields) > 0 {
			fields[len(fields)-1] += " " + strings.TrimSpace(line)
			continue
		}
		fields = append(fields, line)
	}
	return fields
}

// readWithin reads a reply allowing d instead of the usual wire timeout.
func (c *rawSMTP) readWithin(d time.Duration) reply {
	c.t.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(d))
	var r reply
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("reading reply within %v: %v", d, err)
		}
		line = strings.TrimRight(line, "\r\n")
		if len(line) < 4 {
			c.t.Fatalf("malformed reply line %q", line)
		}
		fmt.Sscanf(line[:3], "%d", &r.Code)
		r.Lines = append(r.Lines, line[4:])
		if line[3] != '-' {
			return r
		}
	}
}

// arcVerify runs python3-dkim's ARC verification on msg, answering key lookups from keys.
func arcVerify(t *testing.T, msg []byte, keys map[string]string) {
	t.Helper()
	out, err := runPythonDKIM(t, msg, keys, `cv, results, comment = dkim.arc_verify(msg, dnsfunc=dnsfunc)
print(cv.decode(), comment)
`)
	if err != nil || !strings.HasPrefix(out, "pass") {
		t.Errorf("python3-dkim arc_verify: %v: %s", err, out)
	}
}

// arcverifyCommand runs Debian's arcverify command on msg, with a private resolv.conf
// naming the test's zone served on a loopback address of its own.
func arcverifyCommand(t *testing.T, z *zone, msg []byte) {
	t.Helper()
	arcverify := needTool(t, "/usr/bin/arcverify", "python3-dkim")
	ip := allocAddr(t, true, 53)
	z.listen(ip)
	args := append(withResolvConf(t, ip), arcverify)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin = bytes.NewReader(msg)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "cv=b'pass'") {
		t.Errorf("arcverify: %v: %s", err, out)
	}
}

// httpGet fetches url and returns the body.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	c := &http.Client{Timeout: wireTimeout}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
	return string(b)
}

// TestBruteForce guesses passwords against the real binary: after 10 failures from one
// address that address is locked out (454 4.7.0, even for the right password), while the
// right password from another address still works; the lockout shows in /metrics.
func TestBruteForce(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverOptions{Metrics: true})
	attacker, other := "127.0.0.1", "127.0.0.201"
	auth := func(from, pass string) reply {
		t.Helper()
		c := dialRawFrom(t, from, s.Submission())
		defer c.close()
		return c.authPlain(s, address("alice"), pass)
	}
	var codes []int
	for i := 0; i < 20; i++ {
		codes = append(codes, auth(attacker, fmt.Sprintf("wrong-%d", i)).Code)
	}
	if codes[0] != 535 || codes[19] != 454 {
		t.Fatalf("replies to 20 wrong passwords: %v; want 535 first and 454 at the end", codes)
	}
	if r := auth(attacker, password("alice")); r.Code != 454 || r.Enhanced() != "4.7.0" {
		t.Errorf("right password from the locked-out address: %v, want 454 4.7.0", r)
	}
	if r := auth(other, password("alice")); r.Code != 235 {
		t.Errorf("right password from another address: %v, want 235", r)
	}
	body := httpGet(t, s.MetricsURL())
	if !regexp.MustCompile(`(?m)^repute_lockouts_total 1$`).MatchString(body) {
		t.Errorf("/metrics: want repute_lockouts_total 1 in\n%s", grepLines(body, "repute_"))
	}
	if !regexp.MustCompile(`(?m)^repute_login_failures_total\{protocol="smtp"\} (\d+)$`).MatchString(body) {
		t.Errorf("/metrics: no SMTP login failures in\n%s", grepLines(body, "repute_"))
	}
}

// authPlain upgrades a fresh connection to TLS and logs in, returning the AUTH reply.
func (c *rawSMTP) authPlain(s *server, user, pass string) reply {
	c.t.Helper()
	c.ehlo("client.test")
	c.startTLS(s.tlsConfig(c.t))
	c.ehlo("client.test")
	token := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
	c.write("AUTH PLAIN " + token + "\r\n")
	return c.readWithin(30 * time.Second) // failures are answered after a delay
}

// dialSubmissionRaw returns a raw connection to the submission port, logged in as a
// default user.
func (s *server) dialSubmissionRaw(t *testing.T, local string) *rawSMTP {
	t.Helper()
	c := dialRawGreeted(t, s.Submission())
	if r := c.authPlain(s, s.mailAddr(local), password(local)); r.Code != 235 {
		t.Fatalf("AUTH as %s: %v", local, r)
	}
	return c
}

// dialRawFrom is dialRaw from a chosen loopback source address.
func dialRawFrom(t *testing.T, from, addr string) *rawSMTP {
	t.Helper()
	d := net.Dialer{Timeout: wireTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, from, err)
	}
	t.Cleanup(func() { c.Close() })
	rc := &rawSMTP{t: t, conn: c, r: bufio.NewReader(c)}
	if r := rc.read(); r.Code != 220 {
		t.Fatalf("banner: %v", r)
	}
	return rc
}

func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
