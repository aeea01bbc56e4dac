package provsim

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// Protocol bounds.
const (
	maxCommandLine = 1000 // bytes of a command line with its CRLF (RFC 5321 §4.5.3.1.4 allows 512; extensions need more)
	maxRecipients  = 100  // recipients per transaction (RFC 5321 §4.5.3.1.8's minimum)
	maxBadCommands = 10   // unknown or malformed commands before the server hangs up
)

var errLineTooLong = errors.New("line too long")

// transaction is the state of a mail transaction between MAIL and the end of DATA.
type transaction struct {
	from  string
	to    []string
	token bool // the rate token is taken (Microsoft takes it at the first RCPT)
}

// session is one SMTP connection.
type session struct {
	s       *Server
	raw     net.Conn
	conn    net.Conn // raw, or the TLS connection after STARTTLS
	r       *bufio.Reader
	w       *bufio.Writer
	ip      string
	id      uint64
	refused bool // over the connection cap, refused at the HELO stage (Google)
	tls     bool
	helo    string
	started int // transactions started on this connection
	tx      *transaction
	bad     int
}

func (s *Server) session(c net.Conn) {
	ip := c.RemoteAddr().String()
	if h, _, err := net.SplitHostPort(ip); err == nil {
		ip = h
	}
	ss := &session{s: s, raw: c, conn: c, r: bufio.NewReader(c), w: bufio.NewWriter(c), ip: ip, id: s.nextID.Add(1)}
	defer func() { ss.w.Flush() }()
	refuse := s.connect(ip)
	if !refuse {
		defer s.disconnect(ip)
	}
	s.logf("provsim %s: connection %d from %s", s.prof.Provider, ss.id, ip)
	if refuse {
		if ss.stage(EventConnections) == StageGreeting {
			ss.limit(EventConnections, "")
			return
		}
		ss.refused = true
	}
	ss.send(ss.banner())
	for {
		// Pipelined commands (RFC 2920) are all answered before the replies go out.
		if ss.r.Buffered() == 0 && ss.w.Flush() != nil {
			return
		}
		ss.deadline()
		line, err := ss.readLine()
		if errors.Is(err, errLineTooLong) {
			ss.send("500 5.5.2 Line too long")
			if ss.badCommand() {
				return
			}
			continue
		}
		if err != nil || ss.command(line) {
			return
		}
	}
}

func (ss *session) deadline() {
	ss.conn.SetDeadline(time.Now().Add(ss.s.cfg.CommandTimeout))
}

// send writes a reply (lines separated by CRLF, without the final CRLF).
func (ss *session) send(text string) {
	ss.w.WriteString(text)
	ss.w.WriteString("\r\n")
}

// replyFor is the provider's reply for e in this session.
func (ss *session) replyFor(e Event, cmd string) Reply {
	return replyFor(ss.s.prof.Provider, e, ss.ip, ss.s.host, fmt.Sprintf("ps%x.%d", ss.id, ss.started), cmd)
}

// stage is the stage at which the provider answers e.
func (ss *session) stage(e Event) Stage { return ss.s.stages[e] }

// limit sends the provider's reply for e, records it, and says whether the connection
// closes.
func (ss *session) limit(e Event, cmd string) (done bool) {
	r := ss.replyFor(e, cmd)
	switch e {
	case EventBlock:
		ss.s.blockReplied(ss.ip)
	default:
		ss.s.deferred(ss.ip, e)
	}
	ss.s.logf("provsim %s: connection %d from %s: %s: %s", ss.s.prof.Provider, ss.id, ss.ip, e, strings.SplitN(r.Text, "\r\n", 2)[0])
	ss.send(r.Text)
	return r.Close
}

func (ss *session) banner() string {
	h := ss.s.host
	switch ss.s.prof.Provider {
	case Google:
		return fmt.Sprintf("220 %s ESMTP ps%x - gsmtp", h, ss.id)
	case Microsoft:
		return "220 " + h + " Microsoft ESMTP MAIL Service ready at " + ss.s.cfg.Now().UTC().Format(time.RFC1123Z)
	}
	return "220 " + h + " ESMTP ready"
}

// badCommand counts an unknown or malformed command and says whether that was one too
// many, after telling the client.
func (ss *session) badCommand() bool {
	ss.bad++
	if ss.bad < maxBadCommands {
		return false
	}
	ss.send("421 4.7.0 " + ss.s.host + " Too many errors, closing connection")
	return true
}

// readLine reads a command line without its line ending. A line over maxCommandLine is
// read to its end and dropped with errLineTooLong.
func (ss *session) readLine() (string, error) {
	var line []byte
	tooLong := false
	for {
		chunk, err := ss.r.ReadSlice('\n')
		if len(line)+len(chunk) > maxCommandLine {
			tooLong = true
		} else {
			line = append(line, chunk...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			return "", err
		}
		break
	}
	if tooLong {
		return "", errLineTooLong
	}
	return strings.TrimRight(string(line), "\r\n"), nil
}

// command handles one command line and says whether the session ends.
func (ss *session) command(line string) (done bool) {
	verb, arg, _ := strings.Cut(line, " ")
	verb = strings.ToUpper(verb)
	arg = strings.TrimSpace(arg)
	if ss.refused { // Google refuses a connection over the cap at the HELO stage
		if verb == "QUIT" {
			ss.send("221 2.0.0 closing connection")
			return true
		}
		cmd := ""
		if verb == "EHLO" || verb == "HELO" {
			cmd = verb
		}
		ss.limit(EventConnections, cmd)
		return true
	}
	switch verb {
	case "EHLO", "HELO":
		return ss.hello(verb, arg)
	case "STARTTLS":
		return ss.startTLS(arg)
	case "MAIL":
		return ss.mail(arg)
	case "RCPT":
		return ss.rcpt(arg)
	case "DATA":
		return ss.data(arg)
	case "RSET":
		ss.tx = nil
		ss.send("250 2.0.0 OK")
	case "NOOP":
		ss.send("250 2.0.0 OK")
	case "VRFY":
		ss.send("252 2.1.5 Cannot VRFY user, but will accept message and attempt delivery")
	case "QUIT":
		ss.send("221 2.0.0 " + ss.s.host + " closing connection")
		return true
	default:
		ss.send("500 5.5.1 Command unrecognized")
		return ss.badCommand()
	}
	return false
}

func (ss *session) hello(verb, arg string) bool {
	if arg == "" {
		ss.send("501 5.5.4 Syntax: " + verb + " hostname")
		return ss.badCommand()
	}
	ss.helo, ss.tx = arg, nil
	if verb == "HELO" {
		ss.send("250 " + ss.s.host)
		return false
	}
	var greet string
	switch ss.s.prof.Provider {
	case Google:
		greet = ss.s.host + " at your service, [" + ss.ip + "]"
	case Microsoft:
		greet = ss.s.host + " Hello [" + ss.ip + "]"
	default:
		greet = "hello [" + ss.ip + "], pleased to meet you"
	}
	ext := []string{greet, "SIZE " + strconv.FormatInt(ss.s.cfg.MaxMessageSize, 10), "8BITMIME", "PIPELINING", "ENHANCEDSTATUSCODES"}
	if ss.s.cfg.TLS != nil && !ss.tls {
		ext = append(ext, "STARTTLS")
	}
	for i, e := range ext {
		sep := "-"
		if i == len(ext)-1 {
			sep = " "
		}
		ss.send("250" + sep + e)
	}
	return false
}

func (ss *session) startTLS(arg string) bool {
	switch {
	case ss.s.cfg.TLS == nil:
		ss.send("502 5.5.1 STARTTLS not available")
		return false
	case ss.tls:
		ss.send("503 5.5.1 TLS already active")
		return false
	case arg != "":
		ss.send("501 5.5.4 Syntax: STARTTLS")
		return false
	}
	ss.send("220 2.0.0 Ready to start TLS")
	if ss.w.Flush() != nil || ss.r.Buffered() > 0 {
		// A command pipelined after STARTTLS would be taken as sent over TLS (the
		// plaintext command injection of CVE-2011-0411); drop the connection.
		return true
	}
	tc := tls.Server(ss.raw, ss.s.cfg.TLS)
	tc.SetDeadline(time.Now().Add(ss.s.cfg.CommandTimeout))
	if err := tc.Handshake(); err != nil {
		ss.s.logf("provsim %s: connection %d: TLS handshake: %v", ss.s.prof.Provider, ss.id, err)
		return true
	}
	ss.conn, ss.r, ss.w = tc, bufio.NewReader(tc), bufio.NewWriter(tc)
	ss.tls, ss.helo, ss.tx = true, "", nil
	return false
}

func (ss *session) mail(arg string) bool {
	switch {
	case ss.helo == "":
		ss.send("503 5.5.1 EHLO or HELO first")
		return false
	case ss.tx != nil:
		ss.send("503 5.5.1 Nested MAIL command")
		return false
	}
	from, params, ok := parsePath(arg, "FROM:")
	if !ok {
		ss.send("501 5.5.4 Syntax: MAIL FROM:<address>")
		return ss.badCommand()
	}
	var size int64
	for k, v := range params {
		switch k {
		case "SIZE":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < 0 {
				ss.send("501 5.5.4 Bad SIZE parameter")
				return false
			}
			size = n
		case "BODY":
			if v != "7BIT" && v != "8BITMIME" {
				ss.send("501 5.5.4 Bad BODY parameter")
				return false
			}
		default:
			ss.send("555 5.5.4 Unsupported MAIL parameter " + k)
			return false
		}
	}
	blocked := ss.s.startTransaction(ss.ip)
	ss.started++
	if n := ss.s.prof.MaxMessagesPerConnection; n > 0 && ss.started > n {
		return ss.limit(EventPerConnection, "")
	}
	if blocked && ss.stage(EventBlock) == StageMail {
		return ss.limit(EventBlock, "")
	}
	tx := &transaction{from: from}
	if ss.stage(EventRate) == StageMail {
		if !ss.s.take(ss.ip) {
			return ss.limit(EventRate, "")
		}
		tx.token = true
	}
	if size > ss.s.cfg.MaxMessageSize {
		ss.send("552 5.3.4 Message size exceeds fixed maximum message size")
		return false
	}
	ss.tx = tx
	ss.send("250 2.1.0 Sender OK")
	return false
}

func (ss *session) rcpt(arg string) bool {
	if ss.tx == nil {
		ss.send("503 5.5.1 MAIL first")
		return false
	}
	to, params, ok := parsePath(arg, "TO:")
	if !ok || to == "" {
		ss.send("501 5.5.4 Syntax: RCPT TO:<address>")
		return ss.badCommand()
	}
	if len(params) > 0 {
		ss.send("555 5.5.4 Unsupported RCPT parameter")
		return false
	}
	if len(ss.tx.to) >= maxRecipients {
		ss.send("452 4.5.3 Too many recipients")
		return false
	}
	if !ss.tx.token && ss.stage(EventRate) == StageRcpt {
		if !ss.s.take(ss.ip) {
			return ss.limit(EventRate, "")
		}
		ss.tx.token = true
	}
	ss.tx.to = append(ss.tx.to, to)
	ss.send("250 2.1.5 Recipient OK")
	return false
}

func (ss *session) data(arg string) bool {
	switch {
	case ss.tx == nil:
		ss.send("503 5.5.1 MAIL first")
		return false
	case len(ss.tx.to) == 0:
		ss.send("554 5.5.1 No valid recipients")
		return false
	case arg != "":
		ss.send("501 5.5.4 Syntax: DATA")
		return false
	}
	ss.send("354 Go ahead, end with <CRLF>.<CRLF>")
	if ss.w.Flush() != nil {
		return true
	}
	tx := ss.tx
	ss.tx = nil
	size, body, err := ss.readData()
	switch {
	case errors.Is(err, errTooBig):
		ss.send("552 5.3.4 Message size exceeds fixed maximum message size")
		return true
	case err != nil:
		return true
	case size > ss.s.cfg.MaxMessageSize:
		ss.send("552 5.3.4 Message size exceeds fixed maximum message size")
		return false
	}
	if ss.stage(EventBlock) == StageData && ss.s.isBlocked(ss.ip) {
		return ss.limit(EventBlock, "")
	}
	if !tx.token && ss.stage(EventRate) == StageData && !ss.s.take(ss.ip) {
		return ss.limit(EventRate, "")
	}
	ss.s.accepted(Message{
		Provider: ss.s.prof.Provider, SenderIP: ss.ip, Helo: ss.helo,
		From: tx.from, To: tx.to, Size: size, Body: body, At: ss.s.cfg.Now(),
	})
	switch ss.s.prof.Provider {
	case Google:
		ss.send(fmt.Sprintf("250 2.0.0 OK ps%x.%d - gsmtp", ss.id, ss.started))
	case Microsoft:
		ss.send(fmt.Sprintf("250 2.6.0 <ps%x.%d@%s> Queued mail for delivery", ss.id, ss.started, ss.s.host))
	default:
		ss.send("250 ok dirdel")
	}
	return false
}

// errTooBig is a message so far over the size limit that the server stops reading it.
var errTooBig = errors.New("message far too large")

// readData reads message data up to the line "." after a CRLF, undoing dot-stuffing
// (RFC 5321 §4.5.2). Only CRLF "." CRLF ends the data: a "." line after a bare LF, or
// ended by a bare LF, is data. It returns the size of the data and, when bodies are
// kept and it fits, the data itself. Lines of any length are read in pieces, so memory
// stays bounded; data more than 1 MiB over MaxMessageSize ends with errTooBig.
func (ss *session) readData() (size int64, body []byte, err error) {
	keep := ss.s.keepBodies > 0
	limit := ss.s.cfg.MaxMessageSize
	lineStart, afterCRLF := true, true // the DATA command ended with CRLF
	var last byte = '\n'
	for {
		ss.deadline()
		chunk, err := ss.r.ReadSlice('\n')
		complete := err == nil
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return 0, nil, err
		}
		if lineStart && complete && afterCRLF && bytes.Equal(chunk, []byte(".\r\n")) {
			if !keep {
				body = nil
			}
			return size, body, nil
		}
		data := chunk
		if lineStart && len(data) > 0 && data[0] == '.' {
			data = data[1:]
		}
		size += int64(len(data))
		if size > limit+1<<20 {
			return size, nil, errTooBig
		}
		if keep && size <= limit && size <= ss.s.keepBodies {
			body = append(body, data...)
		} else {
			keep = false
		}
		if complete {
			afterCRLF = (len(chunk) >= 2 && chunk[len(chunk)-2] == '\r') || (len(chunk) == 1 && last == '\r')
		}
		if len(chunk) > 0 {
			last = chunk[len(chunk)-1]
		}
		lineStart = complete
	}
}

// parsePath parses "FROM:<path> params" or "TO:<path> params" (the keyword
// case-insensitive, spaces after the colon tolerated). It returns the address without
// angle brackets ("" for the null path) and the parameters with upper-case keys.
func parsePath(arg, keyword string) (addr string, params map[string]string, ok bool) {
	if len(arg) < len(keyword) || !strings.EqualFold(arg[:len(keyword)], keyword) {
		return "", nil, false
	}
	rest := strings.TrimLeft(arg[len(keyword):], " ")
	if !strings.HasPrefix(rest, "<") {
		return "", nil, false
	}
	end := strings.IndexByte(rest, '>')
	if end < 0 {
		return "", nil, false
	}
	addr = rest[1:end]
	if strings.ContainsAny(addr, " <") {
		return "", nil, false
	}
	params = map[string]string{}
	for _, p := range strings.Fields(rest[end+1:]) {
		k, v, _ := strings.Cut(p, "=")
		params[strings.ToUpper(k)] = strings.ToUpper(v)
	}
	return addr, params, true
}
