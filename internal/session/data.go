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

// readDotData reads dot-stuffed message data up to the "." line (RFC 5321 §4.5.2), undoing
// the stuffing. Overlong and malformed messages are read to their end before the error is
// returned, so the client and server stay in step.
func readDotData(br *bufio.Reader, out *bytes.Buffer, max int64) error {
	var failure error
	for {
		line, err := readDataLine(br)
		if err != nil {
			return err
		}
		if bytes.Equal(line, []byte(".\r\n")) {
			return failure
		}
		if failure != nil {
			continue
		}
		if !properLine(line) {
			failure = errBareLF
			continue
		}
		if line[0] == '.' {
			line = line[1:]
		}
		if int64(out.Len()+len(line)) > max {
			failure = smtp.Errorf(552, "5.3.4", "Message size exceeds fixed maximum message size (%d bytes)", max)
			continue
		}
		out.Write(line)
	}
}

// readDataLine returns the next line including its ending, of any length.
func readDataLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err == nil {
		return line, nil
	}
	if err != bufio.ErrBufferFull {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	long := append([]byte(nil), line...)
	for {
		more, err := br.ReadSlice('\n')
		long = append(long, more...)
		if err == nil {
			return long, nil
		}
		if err != bufio.ErrBufferFull {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
		if len(long) > 1<<20 {
			// A megabyte without a line end: keep memory bounded, still read on.
			long = long[:0]
			long = append(long, 'x')
		}
	}
}

// properLine reports whether line ends in CRLF and has no other CR or LF.
func properLine(line []byte) bool {
	n := len(line)
	if n < 2 || line[n-2] != '\r' {
		return false
	}
	return bytes.IndexByte(line[:n-2], '\r') < 0
}

// cmdBdat handles RFC 3030 CHUNKING. The chunk is always read, even when the command is
// refused, because the client sends it without waiting for a reply.
func (c *conn) cmdBdat(arg string) {
	f := strings.Fields(arg)
	if len(f) == 0 || len(f) > 2 || len(f) == 2 && !strings.EqualFold(f[1], "LAST") {
		c.protocolError(smtp.Errorf(501, "5.5.4", "Syntax: BDAT size [LAST]"))
		c.closing = true // the chunk size is unknown: we cannot stay in step
		return
	}
	size, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || size < 0 {
		c.protocolError(smtp.Errorf(501, "5.5.4", "Bad BDAT size"))
		c.closing = true
		return
	}
	last := len(f) == 2
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
	c.nc.SetReadDeadline(c.srv.Now().Add(c.srv.DataTimeout))
	if refuse == nil && c.bdatFail == nil && int64(c.bdat.Len())+size > c.srv.MaxMessageSize {
		c.bdatFail = smtp.Errorf(552, "5.3.4", "Message size exceeds fixed maximum message size (%d bytes)", c.srv.MaxMessageSize)
	}
	var dst io.Writer = io.Discard
	if refuse == nil && c.bdatFail == nil {
		dst = c.bdat
	}
	if _, err := io.CopyN(dst, c.br, size); err != nil {
		c.log.Info("smtp: BDAT aborted", "err", err)
		c.closing = true
		return
	}
	if refuse != nil {
		c.protocolError(refuse)
		return
	}
	if !last {
		c.reply(smtp.Errorf(250, "2.0.0", "%d bytes received", size))
		return
	}
	if c.bdatFail != nil {
		c.replyErr(c.bdatFail)
		c.resetTx()
		return
	}
	body := c.bdat.Bytes()
	if !properText(body) {
		c.replyErr(errBareLF)
		c.resetTx()
		return
	}
	c.finish(body)
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
