package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// imaplibScript drives Python's imaplib (Debian's /usr/bin/python3) against the server
// and prints what it saw as one JSON object. Arguments: host port user password cafile
// action [uid]; action "read" only reads, "flag" also sets \Flagged on the UID.
const imaplibScript = `
import email, email.policy, imaplib, json, re, ssl, sys

host, port, user, pw, cafile, action = sys.argv[1:7]
ctx = ssl.create_default_context(cafile=cafile)
ctx.check_hostname = False  # the certificate names the hostname, we connect by IP

m = imaplib.IMAP4(host, int(port))
m.starttls(ssl_context=ctx)
typ, _ = m.login(user, pw)
out = {"login": typ}

typ, data = m.list()
out["list"] = [d.decode() for d in data if d]

typ, data = m.status("INBOX", "(MESSAGES UIDNEXT UIDVALIDITY)")
st = data[0].decode()
out["status"] = st
out["uidvalidity"] = int(re.search(r"UIDVALIDITY (\d+)", st).group(1))

typ, data = m.select("INBOX")
out["select"] = typ
out["exists"] = int(data[0])

if action == "flag":
    typ, data = m.uid("STORE", sys.argv[7], "+FLAGS", "(\\Flagged)")
    out["store"] = typ

typ, data = m.uid("SEARCH", None, "ALL")
out["uids"] = [int(u) for u in data[0].split()]
typ, data = m.uid("SEARCH", None, "FLAGGED")
out["flagged"] = [int(u) for u in data[0].split()]
typ, data = m.uid("SEARCH", None, "SUBJECT", '"e2e via MX"')
out["search_subject"] = [int(u) for u in data[0].split()]

msgs = []
for uid in out["uids"]:
    typ, data = m.uid("FETCH", str(uid), "(FLAGS)")
    flags = sorted(re.search(rb"FLAGS \(([^)]*)\)", data[0]).group(1).decode().split())
    typ, data = m.uid("FETCH", str(uid), "(BODY.PEEK[])")
    raw = next(part[1] for part in data if isinstance(part, tuple))
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    msgs.append({"uid": uid, "flags": flags, "subject": str(msg["subject"]),
                 "body": msg.get_body(("plain",)).get_content().strip()})
out["messages"] = msgs
m.logout()
print(json.dumps(out))
`

// imaplibResult is the JSON imaplibScript prints.
type imaplibResult struct {
	Login         string   `json:"login"`
	List          []string `json:"list"`
	Status        string   `json:"status"`
	UIDValidity   uint32   `json:"uidvalidity"`
	Exists        int      `json:"exists"`
	Store         string   `json:"store"`
	UIDs          []uint32 `json:"uids"`
	Flagged       []uint32 `json:"flagged"`
	SearchSubject []uint32 `json:"search_subject"`
	Messages      []struct {
		UID     uint32   `json:"uid"`
		Flags   []string `json:"flags"`
		Subject string   `json:"subject"`
		Body    string   `json:"body"`
	} `json:"messages"`
}

func runImaplib(t *testing.T, s *server, user, action string, args ...string) imaplibResult {
	t.Helper()
	py := needTool(t, "/usr/bin/python3", "python3")
	script := filepath.Join(t.TempDir(), "imap.py")
	if err := os.WriteFile(script, []byte(imaplibScript), 0o644); err != nil {
		t.Fatal(err)
	}
	argv := append([]string{script, s.ip, strconv.Itoa(s.ports.IMAP), address(user), password(user), s.certPath(), action}, args...)
	out, err := runTool(t, py, argv...)
	if err != nil {
		t.Fatalf("python3 imaplib (%s): %v\n%s", action, err, out)
	}
	var res imaplibResult
	if err := json.Unmarshal([]byte(lastLine(out)), &res); err != nil {
		t.Fatalf("python3 imaplib output: %v\n%s", err, out)
	}
	return res
}

// runTool runs an external client with a time limit and returns its combined output.
func runTool(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// swaksSend runs swaks with the given extra arguments and checks that the message was
// accepted (exit 0 and a 250 reply to the end of DATA).
func swaksSend(t *testing.T, args ...string) string {
	t.Helper()
	swaks := needTool(t, "swaks", "swaks")
	out, err := runTool(t, swaks, append([]string{"--timeout", "20"}, args...)...)
	if err != nil {
		t.Fatalf("swaks %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if !regexp.MustCompile(`(?m)^<[-~]  250 .*\n [-~]> QUIT`).MatchString(out) {
		t.Fatalf("swaks: no 250 after DATA:\n%s", out)
	}
	return out
}

// TestClientsInterop is the acceptance path with real clients: swaks delivers to the MX
// port and submits with STARTTLS + AUTH PLAIN; Python's imaplib lists, searches,
// fetches and flags; curl lists and fetches by UID; after a restart on the same data
// directory UIDs, UIDVALIDITY and flags are unchanged.
func TestClientsInterop(t *testing.T) {
	t.Parallel()
	needTool(t, "swaks", "swaks")
	needTool(t, "/usr/bin/python3", "python3")
	curl := needTool(t, "curl", "curl")
	s := startServer(t, serverOptions{})

	// 1. Plain SMTP to the MX port from an outside sender.
	swaksSend(t, "--server", s.SMTP(), "--ehlo", "client.remote.test",
		"--from", "sender@"+remoteDomain, "--to", address("alice"),
		"--header", "Subject: e2e via MX", "--body", "first body, via the MX port")

	// 2. Submission on 587: STARTTLS required, then AUTH PLAIN.
	out := swaksSend(t, "--server", s.Submission(), "--ehlo", "client.remote.test", "--tls",
		"--auth", "PLAIN", "--auth-user", address("bob"), "--auth-password", password("bob"),
		"--from", address("bob"), "--to", address("alice"),
		"--header", "Subject: e2e via submission", "--body", "second body, submitted by bob")
	if !regexp.MustCompile(`(?m)^<[-~]  235 `).MatchString(out) {
		t.Errorf("swaks submission: no 235 reply to AUTH:\n%s", out)
	}

	// 3. imaplib: special-use folders, STATUS, SELECT, SEARCH, FETCH, STORE.
	before := runImaplib(t, s, "alice", "read")
	listing := strings.Join(before.List, "\n")
	for _, want := range []string{"INBOX", `\Sent`, `\Drafts`, `\Trash`, `\Junk`, `\Archive`} {
		if !strings.Contains(listing, want) {
			t.Errorf("LIST does not show %s:\n%s", want, listing)
		}
	}
	for _, name := range []string{"Sent", "Drafts", "Trash", "Junk", "Archive"} {
		if !regexp.MustCompile(`(?m)\\` + name + `\b.*\b"?` + name + `"?$`).MatchString(listing) {
			t.Errorf("LIST: no mailbox %s with attribute \\%s:\n%s", name, name, listing)
		}
	}
	if before.Exists != 2 || len(before.UIDs) != 2 || len(before.Messages) != 2 {
		t.Fatalf("INBOX: %d messages (UIDs %v), want the 2 sent", before.Exists, before.UIDs)
	}
	byMX, bySub := before.Messages[0], before.Messages[1]
	if byMX.Subject != "e2e via MX" || !strings.Contains(byMX.Body, "first body, via the MX port") {
		t.Errorf("first message: subject %q body %q", byMX.Subject, byMX.Body)
	}
	if bySub.Subject != "e2e via submission" || !strings.Contains(bySub.Body, "second body, submitted by bob") {
		t.Errorf("second message: subject %q body %q", bySub.Subject, bySub.Body)
	}
	if !slices.Equal(before.SearchSubject, []uint32{byMX.UID}) {
		t.Errorf(`UID SEARCH SUBJECT "e2e via MX" = %v, want [%d]`, before.SearchSubject, byMX.UID)
	}
	flagged := runImaplib(t, s, "alice", "flag", strconv.Itoa(int(byMX.UID)))
	if flagged.Store != "OK" || !slices.Equal(flagged.Flagged, []uint32{byMX.UID}) {
		t.Errorf(`UID STORE %d +FLAGS (\Flagged): %s; SEARCH FLAGGED = %v`, byMX.UID, flagged.Store, flagged.Flagged)
	}

	// 4. curl: list mailboxes, fetch by UID.
	curlBase := []string{"-sS", "--max-time", "20", "--ssl-reqd", "-k", "--user", address("alice") + ":" + password("alice")}
	imapURL := "imap://" + s.IMAP() + "/"
	out, err := runTool(t, curl, append(curlBase, imapURL)...)
	if err != nil || !strings.Contains(out, "INBOX") || !strings.Contains(out, "Sent") {
		t.Errorf("curl %s (list): %v\n%s", imapURL, err, out)
	}
	fetchURL := imapURL + "INBOX;UID=" + strconv.Itoa(int(bySub.UID))
	out, err = runTool(t, curl, append(curlBase, fetchURL)...)
	if err != nil || !strings.Contains(out, "Subject: e2e via submission") || !strings.Contains(out, "second body") {
		t.Errorf("curl %s (fetch): %v\n%s", fetchURL, err, out)
	}

	// 5. Restart on the same data directory: nothing about the mailbox may change.
	// (curl fetched with BODY[], which sets \Seen: take the baseline now.)
	last := runImaplib(t, s, "alice", "read")
	s.restart()
	after := runImaplib(t, s, "alice", "read")
	if after.UIDValidity != last.UIDValidity {
		t.Errorf("UIDVALIDITY changed across restart: %d -> %d", last.UIDValidity, after.UIDValidity)
	}
	if !slices.Equal(after.UIDs, last.UIDs) {
		t.Errorf("UIDs changed across restart: %v -> %v", last.UIDs, after.UIDs)
	}
	if !slices.Equal(after.Flagged, []uint32{byMX.UID}) {
		t.Errorf("\\Flagged after restart: SEARCH FLAGGED = %v, want [%d]", after.Flagged, byMX.UID)
	}
	for i, m := range after.Messages {
		if i < len(last.Messages) && !slices.Equal(m.Flags, last.Messages[i].Flags) {
			t.Errorf("UID %d flags changed across restart: %v -> %v", m.UID, last.Messages[i].Flags, m.Flags)
		}
	}
	if len(last.Messages) == 2 && !slices.Contains(last.Messages[1].Flags, `\Seen`) {
		t.Errorf("UID %d after curl fetched BODY[]: flags %v, want \\Seen (RFC 9051 §6.4.5)", bySub.UID, last.Messages[1].Flags)
	}
	for _, m := range after.Messages {
		t.Logf("after restart: UIDVALIDITY %d, UID %d, flags %v", after.UIDValidity, m.UID, m.Flags)
	}
}
