package server

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/hearth-rt/hearth/channels"
)

// Close codes the reader uses besides those of package channels.
const (
	closeAbnormal = 1006 // no close frame: the connection just ended (logs only)
)

// readLoop is the connection's only reader. It holds no buffer while the
// client is silent: it blocks reading a frame header into a few bytes of
// the conn, then reads the payload into a pooled buffer that goes back to
// the pool once the message is handled.
func (c *conn) readLoop() {
	defer c.srv.wg.Done()
	hard, code, reason := c.read()
	c.finishRead(hard, code, reason)
}

// Read reads from the network, after the bytes net/http had buffered.
func (c *conn) Read(p []byte) (int, error) {
	if len(c.pre) > 0 {
		n := copy(p, c.pre)
		c.pre = c.pre[n:]
		if len(c.pre) == 0 {
			c.pre = nil
		}
		c.nread += uint64(n)
		return n, nil
	}
	n, err := c.nc.Read(p)
	c.nread += uint64(n)
	return n, err
}

// idle reports whether err is the idle timeout of an open connection, and
// if so closes it with 1001 "idle timeout".
func (c *conn) idle(err error) bool {
	if !errors.Is(err, os.ErrDeadlineExceeded) || c.isClosing() {
		return false
	}
	c.srv.log.Debug("closing: idle timeout", "conn", c.id, "socket_id", c.socketID())
	c.Close(channels.CloseGoingAway, "idle timeout")
	return true
}

// read reads frames until the connection ends. It reports whether the
// connection is finished for good (hard: nothing more needs writing) and,
// when the client ended it without a close frame, the code and reason to
// log.
func (c *conn) read() (hard bool, code int, reason string) {
	var (
		state = c.readState()
		msg   *[]byte // the message being assembled
		op    ws.OpCode
	)
	defer func() {
		if msg != nil {
			putBuf(msg)
		}
	}()
	limit := c.srv.opts.MaxMessageSize
	for {
		if msg == nil {
			// Frames of an unfinished message do not restart the idle
			// timer: the whole message must come within it.
			c.refreshDeadline()
		}
		before := c.nread
		h, err := ws.ReadHeaderBuffer(c, c.hdr[:])
		if err != nil {
			if c.nread == before && c.idle(err) {
				// At a frame boundary: wait for the client's close frame.
				// An unfinished message is dropped.
				if msg != nil {
					putBuf(msg)
					msg = nil
					state = state.Clear(ws.StateFragmented)
				}
				continue
			}
			if errors.Is(err, ws.ErrHeaderLengthMSB) || errors.Is(err, ws.ErrHeaderLengthUnexpected) {
				return c.fail(channels.CloseProtocolError, "protocol error: "+err.Error())
			}
			return c.readError(err)
		}
		if err := ws.CheckHeader(h, state); err != nil {
			return c.fail(channels.CloseProtocolError, "protocol error: "+err.Error())
		}
		if err := c.checkRsv(h); err != nil {
			return c.fail(channels.CloseProtocolError, err.Error())
		}
		if h.OpCode.IsControl() {
			end, err := c.control(h)
			if err != nil {
				return c.readError(err)
			}
			if end {
				return false, 0, ""
			}
			continue
		}

		var have int64
		if msg != nil {
			have = int64(len(*msg))
		}
		if h.Length > limit-have {
			return c.fail(channels.CloseTooBig, "message too big")
		}
		if h.OpCode != ws.OpContinuation {
			op = h.OpCode
		}
		n := int(h.Length)
		if msg == nil {
			msg = getBuf(n)
		} else {
			msg = growBuf(msg, n)
		}
		start := len(*msg)
		*msg = (*msg)[:start+n]
		if _, err := io.ReadFull(c, (*msg)[start:]); err != nil {
			return c.readError(err)
		}
		ws.Cipher((*msg)[start:], h.Mask, 0)
		if !h.Fin {
			state = state.Set(ws.StateFragmented)
			c.fragment()
			continue
		}
		state = state.Clear(ws.StateFragmented)
		c.message(*msg, op == ws.OpBinary)
		putBuf(msg)
		msg = nil
	}
}

// message handles one complete data message.
func (c *conn) message(data []byte, binary bool) {
	if c.isClosing() {
		// Waiting for the client's close frame (a connection refused with a
		// close code starts so): data is ignored.
		return
	}
	if !c.allow() {
		return
	}
	if c.zin { // compress.go
		c.zin = false
		p, ok := c.inflate(data)
		if !ok {
			return
		}
		defer putBuf(p)
		data = *p
	}
	if !binary && !utf8.Valid(data) {
		c.srv.log.Debug("closing: invalid UTF-8", "conn", c.id, "socket_id", c.socketID())
		c.Close(channels.CloseInvalidPayload, "invalid UTF-8 in text message")
		return
	}
	if c.v1 {
		var ok bool
		if data, ok = c.fromV1(data, binary); !ok {
			return
		}
	}
	if err := c.sock.HandleMessage(data, binary); err != nil {
		code, reason := channels.CloseCode(err)
		if code == channels.CloseInternalError {
			c.srv.log.Error("closing: message handling failed", "conn", c.id, "socket_id", c.socketID(), "err", err)
		} else {
			c.srv.log.Debug("closing: invalid message", "conn", c.id, "socket_id", c.socketID(), "code", code, "reason", reason)
		}
		c.Close(code, reason)
	}
}

// fragment counts a frame that does not finish its message against the
// message rate, so that a stream of fragments costs what as many messages
// would.
func (c *conn) fragment() {
	if !c.isClosing() {
		c.allow()
	}
}

// allow applies the rate limit to one inbound message or ping, closing
// the connection with 4029 when it is exceeded.
func (c *conn) allow() bool {
	if o := &c.srv.opts; o.MessageRate <= 0 || c.lim.allow(o.MessageRate, o.MessageBurst) {
		return true
	}
	c.srv.log.Info("closing: rate limit exceeded", "conn", c.id, "socket_id", c.socketID())
	c.Close(channels.CloseRateLimited, "rate limit exceeded")
	return false
}

// control reads and handles a control frame. It reports end when the
// close handshake is done from the reader's side.
func (c *conn) control(h ws.Header) (end bool, err error) {
	p := getBuf(int(h.Length))
	defer putBuf(p)
	*p = (*p)[:h.Length]
	if _, err := io.ReadFull(c, *p); err != nil {
		return false, err
	}
	ws.Cipher(*p, h.Mask, 0)
	return c.controlFrame(h.OpCode, *p), nil
}

// controlFrame handles the unmasked payload of a control frame. It reports
// end when the close handshake is done from the reader's side.
func (c *conn) controlFrame(op ws.OpCode, p []byte) (end bool) {
	switch op {
	case ws.OpPing:
		if !c.isClosing() && c.allow() {
			c.sendPong(p)
		}
	case ws.OpPong:
		// Unsolicited pongs cost like any message.
		if !c.isClosing() {
			c.allow()
		}
	case ws.OpClose:
		c.peerClose(p)
		return true
	}
	return false
}

// peerClose answers the client's close frame: it echoes the status code,
// or, if the frame is malformed, closes with 1002 or 1007. When the server
// had sent (or queued) its own close frame first, the handshake is simply
// complete.
func (c *conn) peerClose(p []byte) {
	code, reason, problem := 0, "", 0
	switch {
	case len(p) == 1:
		problem = channels.CloseProtocolError
	case len(p) >= 2:
		code = int(binary.BigEndian.Uint16(p))
		reason = string(p[2:])
		if !validCloseCode(code) {
			problem = channels.CloseProtocolError
		} else if !utf8.ValidString(reason) {
			problem = channels.CloseInvalidPayload
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.closing:
		// The server closed first: the handshake is complete.
	case problem == channels.CloseProtocolError:
		c.closeLocked(problem, "invalid close frame", false)
	case problem != 0:
		c.closeLocked(problem, "invalid UTF-8 in close reason", false)
	default:
		c.echoCloseLocked(code, truncate(reason, 123))
	}
}

// validCloseCode reports whether a client may send code in a close frame
// (RFC 6455 section 7.4 and the IANA registry).
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// fail closes the connection after a violation that leaves the stream
// unreadable, then drains what the client still sends.
func (c *conn) fail(code int, reason string) (bool, int, string) {
	c.violation(code, reason)
	return c.drain()
}

// violation closes the connection after a violation that leaves the
// stream unreadable; the reader then drains.
func (c *conn) violation(code int, reason string) {
	c.srv.log.Debug("closing: protocol violation", "conn", c.id, "socket_id", c.socketID(), "code", code, "reason", reason)
	c.Close(code, reason)
}

// startDrain sets the deadline for draining: the writer sets the grace
// deadline once the close frame is out; until then, allow for the write.
func (c *conn) startDrain() {
	c.mu.Lock()
	if !c.closeSent {
		c.setReadDeadlineLocked(c.srv.opts.WriteTimeout + closeGrace)
	}
	c.mu.Unlock()
}

// drain discards what the client sends until it closes the connection or
// the grace period after the close frame ends. Closing a TCP connection
// with unread data would reset it, and the client could lose the close
// frame.
func (c *conn) drain() (bool, int, string) {
	c.startDrain()
	p := getBuf(4096)
	defer putBuf(p)
	b := (*p)[:cap(*p)]
	for {
		if _, err := c.Read(b); err != nil {
			return true, closeAbnormal, "connection lost"
		}
	}
}

// readError ends reading after a network error. An idle timeout in the
// middle of a frame closes with 1001, then drains what the client sends.
func (c *conn) readError(err error) (bool, int, string) {
	if c.idle(err) {
		return c.drain()
	}
	return lost(err)
}

// lost returns how the connection ended after a read error that is not an
// idle timeout.
func lost(err error) (bool, int, string) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true, closeAbnormal, "no close frame from client"
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true, closeAbnormal, "connection closed without a close frame"
	}
	if errors.Is(err, net.ErrClosed) {
		return true, closeAbnormal, "connection closed"
	}
	return true, closeAbnormal, "read error: " + err.Error()
}
