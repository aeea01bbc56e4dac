package session

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"

	"github.com/repute-mail/repute/internal/smtp"
)

// errBareLF marks message data with a line ending other than CRLF. Accepting it is what
// makes SMTP smuggling possible (a "\n.\n" that some later hop reads as end of data), so
// such messages are refused (RFC 5321 §2.3.8).
var errBareLF = smtp.Errorf(554, "5.5.2", "Message refused: bare LF or CR in message data; lines must end with CRLF (RFC 5321 section 2.3.8)")

// errNUL marks message data with a NUL byte. RFC 5322 §2.3 does not allow it, and a
// relay that passes it on lets a receiver that strips NULs see "\r\n\x00.\r\n" as the end
// of the data: SMTP smuggling one hop further on, through our address.
var errNUL = smtp.Errorf(554, "5.6.0", "Message refused: NUL character in message data (RFC 5322 section 2.3)")

// errTooBig is the reply to data beyond the message size limit.
func errTooBig(max int64) *smtp.Reply {
	return smtp.Errorf(552, "5.3.4", "Message size exceeds fixed maximum message size (%d bytes)", max)
}

// fits reports whether n more bytes may join have bytes under a limit of max. It is
// written so that no sum is ever formed: n comes from the client and may be anything up
// to MaxInt64 (0 <= have <= max is the caller's invariant).
func fits(have, n, max int64) bool {
	return n >= 0 && n <= max-have
}

func (c *conn) cmdData(arg string) {
	if !c.requireGreeting() {
		return
	}
	switch {
	case arg != "":
		c.protocolError(smtp.Errorf(501, "5.5.4", "DATA takes no arguments"))
		return
	case c.tx == nil:
		c.protocolError(smtp.Errorf(503, "5.5.1", "Need MAIL command first"))
		return
	case len(c.tx.rcpts) == 0:
		c.protocolError(smtp.Errorf(503, "5.5.1", "Need RCPT command first (no valid recipients)"))
		return
	}
	c.reply(&smtp.Reply{Code: 354, Text: "End data with <CR><LF>.<CR><LF>"})
	if err := c.flush(); err != nil {
		c.closing = true
		return
	}
	c.nc.SetReadDeadline(c.srv.Now().Add(c.srv.DataTimeout))
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer putBuf(buf)
	err := readDotData(c.br, buf, c.srv.MaxMessageSize)
	var re *smtp.Reply
	switch {
	case err == nil:
		c.finish(buf.Bytes())
		return
	case errors.As(err, &re):
		c.replyErr(err)
		c.resetTx()
		return
	}
	// The connection broke or timed out mid-message: nothing was acknowledged.
	c.log.Info("smtp: DATA aborted", "err", err)
	c.closing = true
}

func putBuf(b *bytes.Buffer) {
	if b.Cap() <= 1<<20 {
		bufPool.Put(b)
	}
}

// readDotData reads dot-stuffed message data up to its end (RFC 5321 §4.5.2) into out,
// undoing the stuffing. It returns nil, an *smtp.Reply refusing the message, or the read
// error that broke the connection.
//
// End of data is a "." line that follows a real CRLF: the bytes CRLF "." CRLF, where the
// start of the data counts as following a CRLF. Nothing else ends it. After "\n.\r\n",
// "\r.\r\n", "\n.\n" and the like the data goes on, however much what follows looks like
// commands: that is what keeps SMTP smuggling out, since a client cannot make this server
// see two messages where a peer that reads the same bytes correctly sees one. A line that
// ends in a bare LF or holds a bare CR refuses the message (errBareLF), a NUL byte refuses
// it (errNUL), and so does going over max (552 5.3.4); either way the data is read to its real end, so that client and
// server stay in step.
//
// The data streams from the read buffer into out piece by piece, so a line of any length
// is kept whole and nothing beyond max is ever held in memory.
func readDotData(br *bufio.Reader, out *bytes.Buffer, max int64) error {
	var (
		failure   error
		lineStart = true  // the next piece starts a line
		afterCRLF = true  // the line starting there follows a real CRLF (or opens the data)
		cr        = false // the previous piece, part of a long line, ended in CR
	)
	for {
		piece, err := br.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		whole := err == nil // the piece ends its line
		if lineStart && afterCRLF {
			// A line shorter than the read buffer always comes whole, and the buffer holds
			// more than 3 bytes, so ".\r\n" cannot be split across pieces.
			if whole && string(piece) == ".\r\n" {
				return failure
			}
			if piece[0] == '.' {
				piece = piece[1:] // RFC 5321 §4.5.2: undo the dot-stuffing
			}
		}
		proper, crlf := checkPiece(piece, whole, &cr)
		switch {
		case failure != nil:
		case !proper:
			failure = errBareLF
		case bytes.IndexByte(piece, 0) >= 0:
			failure = errNUL
		}
		if failure == nil {
			if fits(int64(out.Len()), int64(len(piece)), max) {
				out.Write(piece)
			} else {
				failure = errTooBig(max)
			}
		}
		lineStart = whole
		if whole {
			afterCRLF = crlf
		}
	}
}

// checkPiece looks at the next piece of a line for bare CR and LF. A whole piece ends
// with the line's LF; a partial one is the read buffer's worth of a longer line. cr says
// whether the previous partial piece ended in CR and is updated. proper is false if a
// bare CR or LF was found; crlf reports that a whole piece ends its line with a real CRLF.
func checkPiece(piece []byte, whole bool, cr *bool) (proper, crlf bool) {
	proper = true
	if *cr {
		*cr = false
		if whole && len(piece) == 1 {
			return true, true // the CR and this LF end the line
		}
		proper = false
	}
	body := piece
	n := len(body)
	switch {
	case whole && n >= 2 && body[n-2] == '\r':
		crlf, body = true, body[:n-2]
	case whole:
		proper, body = false, body[:n-1] // bare LF
	case n > 0 && body[n-1] == '\r':
		*cr, body = true, body[:n-1]
	}
	if bytes.IndexByte(body, '\r') >= 0 {
		proper = false
	}
	return proper, crlf
}

// cmdBdat handles RFC 3030 CHUNKING. The chunk is raw bytes: it is never looked at for
// commands or an end-of-data line, and a message with a bare CR or LF, or a NUL, in it is
// refused like one sent with DATA.
//
// The chunk is always read, even when the command is refused, because the client sends
// it without waiting for a reply. The one exception is a chunk that could not be stored
// and is larger than the message size limit: reading that much for nothing would let a
// client that claims 2^63 bytes keep the session busy until the data timeout, so it is
// answered (552 5.3.4, or the refusal) and the connection is closed instead, as after a
// BDAT command whose size cannot be parsed. An honest client never gets there: it
// learns the limit from EHLO SIZE and is told at MAIL FROM SIZE=.
func (c *conn) cmdBdat(arg string) {
	size, last, ok := parseBdat(arg)
	if !ok {
		c.protocolError(smtp.Errorf(501, "5.5.4", "Syntax: BDAT size [LAST]"))
		c.closing = true // the chunk size is unknown: we cannot stay in step
		return
	}
	var refuse *smtp.Reply
	switch {
	case c.helo == "":
		refuse = smtp.Errorf(503, "5.5.1", "Send EHLO first")
	case c.tx == nil:
		refuse = smtp.Errorf(503, "5.5.1", "Need MAIL command first")
	case len(c.tx.rcpts) == 0:
		refuse = smtp.Errorf(503, "5.5.1", "Need RCPT command first (no valid recipients)")
	}
	if c.bdat == nil && refuse == nil {
		c.bdat = new(bytes.Buffer)
	}
	max := c.srv.MaxMessageSize
	if refuse == nil && c.bdatFail == nil && !fits(int64(c.bdat.Len()), size, max) {
		c.bdatFail = errTooBig(max)
	}
	keep := refuse == nil && c.bdatFail == nil
	if !keep && size > max {
		c.log.Info("smtp: BDAT chunk over the message size limit not read; closing", "size", size, "max", max)
		if refuse != nil {
			c.protocolError(refuse)
		} else {
			c.replyErr(c.bdatFail)
		}
		c.resetTx()
		c.closing = true
		return
	}
	var dst io.Writer = io.Discard
	if keep {
		dst = c.bdat
	}
	c.nc.SetReadDeadline(c.srv.Now().Add(c.srv.DataTimeout))
	if _, err := io.CopyN(dst, c.br, size); err != nil {
		c.log.Info("smtp: BDAT aborted", "err", err)
		c.closing = true
		return
	}
	switch {
	case refuse != nil:
		c.protocolError(refuse)
	case c.bdatFail != nil:
		// RFC 3030 §2: once a chunk is refused the message is; every further chunk up to
		// LAST gets the same answer, and LAST ends the transaction.
		c.replyErr(c.bdatFail)
		if last {
			c.resetTx()
		}
	case !last:
		c.reply(smtp.Errorf(250, "2.0.0", "%d bytes received", size))
	case !properText(c.bdat.Bytes()):
		c.replyErr(errBareLF)
		c.resetTx()
	case bytes.IndexByte(c.bdat.Bytes(), 0) >= 0:
		c.replyErr(errNUL)
		c.resetTx()
	default:
		c.finish(c.bdat.Bytes())
	}
}

// parseBdat parses the arguments of BDAT: a chunk size of digits only (RFC 3030
// chunk-size = 1*DIGIT) that fits in an int64, and an optional LAST.
func parseBdat(arg string) (size int64, last, ok bool) {
	f := strings.Fields(arg)
	if len(f) == 0 || len(f) > 2 || len(f) == 2 && !strings.EqualFold(f[1], "LAST") {
		return 0, false, false
	}
	for i := 0; i < len(f[0]); i++ {
		if f[0][i] < '0' || f[0][i] > '9' {
			return 0, false, false
		}
	}
	size, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return 0, false, false
	}
	return size, len(f) == 2, true
}

// properText reports whether every line of b ends in CRLF and no lone CR or LF occurs.
func properText(b []byte) bool {
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return bytes.IndexByte(b, '\r') < 0 // last line without CRLF; finish adds it
		}
		if !properLine(b[:i+1]) {
			return false
		}
		b = b[i+1:]
	}
	return true
}

// properLine reports whether line ends in CRLF and has no other CR or LF.
func properLine(line []byte) bool {
	n := len(line)
	if n < 2 || line[n-2] != '\r' {
		return false
	}
	return bytes.IndexByte(line[:n-2], '\r') < 0
}
