package bench

import (
	"bufio"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// WebSocket opcodes the load client understands.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// maxFrame bounds what a load client accepts in one message.
const maxFrame = 1 << 20

// HandshakeError is an upgrade the server refused with an HTTP status.
type HandshakeError struct {
	Status int
	// RetryAfter is the Retry-After header of a 503 or 429, zero if absent.
	RetryAfter time.Duration
}

// Error implements error.
func (e *HandshakeError) Error() string {
	return "bench: upgrade refused with HTTP " + strconv.Itoa(e.Status)
}

// CloseError is a close frame received from the server.
type CloseError struct {
	Code   int
	Reason string
}

// Error implements error.
func (e *CloseError) Error() string {
	return "bench: closed by server with " + strconv.Itoa(e.Code) + " " + e.Reason
}

// wsConn is a minimal client-side WebSocket connection: one reader (the
// client's goroutine) and writers serialized by a mutex. It keeps a small
// read buffer so that thousands fit in one process.
type wsConn struct {
	c   net.Conn
	br  *bufio.Reader
	buf []byte // reassembly of the current message

	deflate bool   // permessage-deflate was negotiated (compress.go)
	zbuf    []byte // the current message, inflated

	wmu  sync.Mutex
	wbuf []byte
}

// dialer dials loopback connections from a chosen source address.
type dialer struct {
	timeout time.Duration
	netd    map[string]*net.Dialer // by source IP
	mu      sync.Mutex
}

func (d *dialer) get(src string) *net.Dialer {
	d.mu.Lock()
	defer d.mu.Unlock()
	if nd := d.netd[src]; nd != nil {
		return nd
	}
	if d.netd == nil {
		d.netd = make(map[string]*net.Dialer)
	}
	nd := &net.Dialer{Timeout: d.timeout, Control: bindNoPort}
	if src != "" {
		nd.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	d.netd[src] = nd
	return nd
}

// dialWS opens a WebSocket to ws://addr+path from source address src.
func (d *dialer) dialWS(ctx context.Context, src, addr, path string, deflate bool) (*wsConn, error) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	c, err := d.get(src).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	var key [16]byte
	binary.LittleEndian.PutUint64(key[:], rand.Uint64())
	binary.LittleEndian.PutUint64(key[8:], rand.Uint64())
	k := base64.StdEncoding.EncodeToString(key[:])
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + k +
		"\r\nSec-WebSocket-Version: 13\r\nOrigin: http://" + addr + "\r\n" + deflateOffer(deflate) + "\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		c.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(c, 1024)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		he := &HandshakeError{Status: resp.StatusCode}
		if s := resp.Header.Get("Retry-After"); s != "" {
			if n, err := strconv.Atoi(strings.TrimSpace(s)); err == nil {
				he.RetryAfter = time.Duration(n) * time.Second
			}
		}
		c.Close()
		return nil, he
	}
	h := sha1.Sum([]byte(k + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if resp.Header.Get("Sec-WebSocket-Accept") != base64.StdEncoding.EncodeToString(h[:]) {
		c.Close()
		return nil, errors.New("bench: bad Sec-WebSocket-Accept")
	}
	_ = c.SetDeadline(time.Time{})
	w := &wsConn{c: c, br: br}
	if deflate {
		if w.deflate = deflateAccepted(resp.Header); !w.deflate {
			c.Close()
			return nil, errors.New("bench: the server did not accept permessage-deflate")
		}
	}
	return w, nil
}

// readMessage returns the next data message (text or binary). It answers
// pings and returns a *CloseError when the server closes. The returned
// slice is valid until the next call.
func (w *wsConn) readMessage() (op byte, data []byte, err error) {
	w.buf = w.buf[:0]
	var msgOp byte
	compressed := false
	for {
		var h [2]byte
		if _, err := io.ReadFull(w.br, h[:]); err != nil {
			return 0, nil, err
		}
		fin, opcode := h[0]&0x80 != 0, h[0]&0x0F
		if h[0]&0x40 != 0 && opcode != opContinuation && opcode < opClose {
			if !w.deflate {
				return 0, nil, errors.New("bench: compressed frame without permessage-deflate")
			}
			compressed = true
		}
		if h[1]&0x80 != 0 {
			return 0, nil, errors.New("bench: server sent a masked frame")
		}
		n := int64(h[1] & 0x7F)
		switch n {
		case 126:
			var e [2]byte
			if _, err := io.ReadFull(w.br, e[:]); err != nil {
				return 0, nil, err
			}
			n = int64(binary.BigEndian.Uint16(e[:]))
		case 127:
			var e [8]byte
			if _, err := io.ReadFull(w.br, e[:]); err != nil {
				return 0, nil, err
			}
			n = int64(binary.BigEndian.Uint64(e[:]))
		}
		if n > maxFrame || int64(len(w.buf))+n > maxFrame {
			return 0, nil, errors.New("bench: message too large")
		}
		if opcode >= opClose {
			var p [125]byte
			if n > 125 {
				return 0, nil, errors.New("bench: control frame too long")
			}
			if _, err := io.ReadFull(w.br, p[:n]); err != nil {
				return 0, nil, err
			}
			switch opcode {
			case opPing:
				if err := w.write(opPong, p[:n]); err != nil {
					return 0, nil, err
				}
			case opClose:
				ce := &CloseError{Code: 1005}
				if n >= 2 {
					ce.Code = int(binary.BigEndian.Uint16(p[:2]))
					ce.Reason = string(p[2:n])
				}
				var echo [2]byte
				binary.BigEndian.PutUint16(echo[:], uint16(ce.Code))
				_ = w.write(opClose, echo[:])
				return 0, nil, ce
			}
			continue
		}
		start := len(w.buf)
		w.buf = slices.Grow(w.buf, int(n))[:start+int(n)]
		if _, err := io.ReadFull(w.br, w.buf[start:]); err != nil {
			return 0, nil, err
		}
		if opcode != opContinuation {
			msgOp = opcode
		}
		if fin {
			if compressed {
				return w.inflate(msgOp)
			}
			return msgOp, w.buf, nil
		}
	}
}

// write sends one masked frame. Safe for concurrent use.
func (w *wsConn) write(op byte, payload []byte) error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	b := w.wbuf[:0]
	b = append(b, 0x80|op)
	n := len(payload)
	switch {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n <= 0xFFFF:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	var mask [4]byte
	binary.LittleEndian.PutUint32(mask[:], rand.Uint32())
	b = append(b, mask[:]...)
	start := len(b)
	b = append(b, payload...)
	for i := range payload {
		b[start+i] ^= mask[i&3]
	}
	_ = w.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := w.c.Write(b)
	if cap(b) <= 4096 {
		w.wbuf = b[:0]
	} else {
		w.wbuf = nil
	}
	return err
}

// writeText sends a text message.
func (w *wsConn) writeText(p []byte) error { return w.write(opText, p) }

// closeWith sends a close frame and closes the connection.
func (w *wsConn) closeWith(code int) {
	var p [2]byte
	binary.BigEndian.PutUint16(p[:], uint16(code))
	_ = w.write(opClose, p[:])
	w.c.Close()
}

// describeErr classifies a connection error into a short stable label used
// as a counter name: "close_1012", "http_503", "refused", "timeout", "eof", ...
func describeErr(err error) string {
	var ce *CloseError
	if errors.As(err, &ce) {
		return "close_" + strconv.Itoa(ce.Code)
	}
	var he *HandshakeError
	if errors.As(err, &he) {
		return "http_" + strconv.Itoa(he.Status)
	}
	var pe *PollError
	if errors.As(err, &pe) {
		return "poll_" + strconv.Itoa(pe.Status)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "eof"
	}
	s := err.Error()
	switch {
	case strings.Contains(s, "connection refused"):
		return "refused"
	case strings.Contains(s, "connection reset"):
		return "reset"
	case strings.Contains(s, "broken pipe"):
		return "broken_pipe"
	case strings.Contains(s, "address already in use"), strings.Contains(s, "cannot assign requested address"):
		return "no_ports"
	case strings.Contains(s, "too many open files"):
		return "emfile"
	case strings.Contains(s, "use of closed network connection"):
		return "closed"
	}
	return "other"
}
