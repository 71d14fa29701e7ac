package server

import (
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/channels/wire"
)

// conn is one WebSocket connection. It implements [channels.Transport].
//
// Goroutines: exactly one reader (readLoop) for the connection's life, and
// at most one writer (writeLoop), started by Send or Close when there is
// something to write and gone when the queue is empty. The writer alone
// writes to nc. Whichever of the two finishes last tears the connection
// down (closes nc, calls Socket.Closed once, unregisters).
//
// Lock order: conn.mu is a leaf lock; nothing else is taken while it is
// held (Send is called under channels' own locks).
type conn struct {
	srv     *Server
	nc      net.Conn
	sock    *channels.Socket // nil when the connect hook refused with a close code
	id      string
	writeFn func()  // c.writeLoop, made once so that starting a writer allocates nothing
	lim     limiter // the inbound message rate (reader only)
	v1      bool    // speaks Phoenix V1 (vsn 1.0.0): translated in v1.go

	// Reader state, touched only by the reader (the reader goroutine, or
	// the poller's worker serving the connection at the moment).
	pre   []byte                 // bytes net/http read past the request, consumed first
	hdr   [ws.MaxHeaderSize]byte // frame header scratch space
	nread uint64                 // bytes read so far (reader goroutine)
	pr    *polled                // poller state; nil for a reader goroutine
	zin   bool                   // the message being read is compressed (compress.go)

	deflate bool // permessage-deflate was negotiated (compress.go)

	mu        sync.Mutex
	one       []byte      // a lone frame waiting for the writer (queue.go)
	q         *frameQueue // frames waiting for the writer; nil while idle
	spare     *frameQueue // the writer's last batch, reused for the next queue
	qBytes    int         // bytes in q
	wBytes    int         // bytes of the batch being written
	replay    int         // replay bytes reserved and not yet written: queued beyond MaxQueueBytes
	writing   bool        // a writer goroutine runs
	closing   bool        // no more frames accepted: a close frame is queued or the connection ends
	closeQ    bool        // the close frame is in q (always its last frame)
	closeSent bool        // the close frame was written: reads wait for the client's
	failed    bool        // a write failed: nothing more is written
	readDone  bool        // the reader has finished
	code      int         // why the connection ends, for the log
	reason    string
	initiator string // "server" or "client"

	tornDown atomic.Bool

	// coolKey identifies the client for Options.ReconnectCooldown (refuse.go);
	// 0 when it is not tracked (it reads close codes, or cooldowns are off).
	coolKey uint64
}

// limiter is a token bucket for a connection's inbound messages. Only the
// reader uses it: it needs no lock, and it lives in the conn (16 bytes
// instead of a rate.Limiter of 80 and a pointer).
type limiter struct {
	tokens float64 // available now
	last   int64   // monoNow of the last update
}

// allow takes a token if there is one, after adding rate tokens per
// second since the last call, up to burst.
func (l *limiter) allow(rate float64, burst int) bool {
	now := monoNow()
	if l.last != 0 {
		l.tokens = min(float64(burst), l.tokens+float64(now-l.last)*rate/1e9)
	}
	l.last = now
	if l.tokens >= 1 {
		l.tokens--
		return true
	}
	return false
}

var refusedSeq atomic.Uint64

func newConn(s *Server, nc net.Conn, sock *channels.Socket, pre []byte, deflate bool) *conn {
	c := &conn{srv: s, nc: nc, sock: sock, pre: pre, deflate: deflate}
	if sock != nil {
		c.id = sock.ConnID()
	} else {
		c.id = "refused." + strconv.FormatUint(refusedSeq.Add(1), 36)
	}
	c.writeFn = c.writeLoop
	c.lim.tokens = float64(s.opts.MessageBurst)
	if !s.opts.BlockingReads && !netpollDisabled {
		if rc := pollable(nc); rc != nil && s.poll.get(s) != nil {
			c.pr = &polled{rc: rc, state: c.readState()}
		}
	}
	return c
}

// startReading starts the connection's reader: it registers the
// connection with the poller, or starts its reader goroutine.
func (c *conn) startReading() {
	s := c.srv
	s.wg.Add(1) // the reader; ServeHTTP is counted: the group is not at zero
	if c.pr == nil {
		go c.readLoop()
		return
	}
	if err := s.poller().register(c); err != nil {
		s.log.Error("cannot register the connection with epoll: dropping it", "conn", c.id, "err", err)
		c.pr.ended = true
		c.finishRead(true, closeAbnormal, "epoll registration failed")
		s.wg.Done()
	}
}

// Send implements [channels.Transport]: it queues one complete frame and
// never blocks. It returns false when the connection is closing or when
// the frame would take the queue over its byte limit; in that case the
// connection is closed with 4008 "slow consumer".
func (c *conn) Send(frame []byte) bool {
	if c.deflate {
		// A broadcast comes compressed already (RSV1 set); a reply or a
		// push is compressed here, before taking the lock.
		frame = c.srv.deflater.Frame(frame)
	}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return false
	}
	// A frame larger than the limit still goes out when nothing waits
	// before it in the queue (a batch may be in the middle of its write:
	// the client can have read it before the writer counts it as done).
	// Replay bytes (ReserveReplay) are allowed on top of the bound.
	if queued := c.qBytes + c.wBytes; c.qBytes > 0 && queued+len(frame) > c.srv.opts.MaxQueueBytes+c.replay {
		c.closeLocked(channels.CloseSlowConsumer, "slow consumer", true)
		c.mu.Unlock()
		c.srv.log.Warn("closing slow consumer", "conn", c.id, "socket_id", c.socketID(), "queued_bytes", queued)
		return false
	}
	c.enqueueLocked(frame)
	c.startWriterLocked()
	c.mu.Unlock()
	return true
}

// ReserveReplay implements [channels.ReplayTransport]: it lets n more
// bytes be queued beyond MaxQueueBytes, as long as the replay bytes not
// yet written stay within MaxReplayBytes. The reservation shrinks as bytes
// are written (the replay is queued behind what was queued before it, so
// the live bytes queued never exceed MaxQueueBytes).
func (c *conn) ReserveReplay(n int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing || c.replay+n > c.srv.opts.MaxReplayBytes {
		return false
	}
	c.replay += n
	return true
}

// Close implements [channels.Transport]: it queues a close frame after
// what is queued. The connection ends once the client answers with its own
// close frame, or after a grace period.
func (c *conn) Close(code int, reason string) {
	c.mu.Lock()
	c.closeLocked(code, reason, false) // starts the cooldown, if any (refuse.go)
	c.mu.Unlock()
}

// closeLocked queues a close frame (code 0: one without a body) unless the
// connection is already closing. drop discards the frames not yet taken by
// the writer. c.mu must be held.
func (c *conn) closeLocked(code int, reason string, drop bool) {
	if c.closing {
		return
	}
	c.closing = true
	c.code, c.reason, c.initiator = code, reason, "server"
	if c.coolKey != 0 {
		if d := c.srv.cooldownFor(code); d > 0 {
			// Remembered before the close frame can reach the client, so
			// that even its fastest reconnect meets the cooldown (refuse.go).
			c.srv.cool.add(c.coolKey, code, reason, d, time.Now())
		}
	}
	if drop {
		c.dropQueuedLocked()
	}
	c.enqueueLocked(closeFrame(code, reason))
	c.closeQ = true
	c.startWriterLocked()
}

// echoCloseLocked answers a client's close frame. c.mu must be held.
func (c *conn) echoCloseLocked(code int, reason string) {
	if c.closing {
		return
	}
	c.closeLocked(code, "", false)
	c.code, c.reason, c.initiator = code, reason, "client"
}

// startWriterLocked starts the writer if frames wait and none runs. c.mu
// must be held; the reader is alive (closing is set before readDone), so
// the server's WaitGroup is not at zero.
func (c *conn) startWriterLocked() {
	if c.writing || c.failed || c.queuedLocked() == 0 {
		return
	}
	c.writing = true
	c.srv.wg.Add(1)
	go c.writeFn()
}

// sendPong queues a pong frame like any other frame.
func (c *conn) sendPong(payload []byte) {
	f := make([]byte, 0, 2+len(payload))
	f = wire.AppendFrameHeader(f, wire.OpPong, len(payload))
	c.Send(append(f, payload...))
}

// closeFrame builds a close frame; code 0 gives an empty body.
func closeFrame(code int, reason string) []byte {
	if code == 0 {
		return []byte{0x80 | wire.OpClose, 0}
	}
	reason = wire.CloseReason(reason)
	f := make([]byte, 0, 4+len(reason))
	f = wire.AppendFrameHeader(f, wire.OpClose, 2+len(reason))
	f = append(f, byte(code>>8), byte(code))
	return append(f, reason...)
}

// drop closes the network connection at once (shutdown deadline).
func (c *conn) drop() {
	c.mu.Lock()
	if !c.closing {
		c.closing = true
		c.code, c.reason, c.initiator = channels.CloseGoingAway, "dropped at shutdown deadline", "server"
	}
	c.mu.Unlock()
	c.closeNet()
}

// refreshDeadline extends the read deadline by the idle timeout, unless
// the close frame was sent (then the grace deadline stands).
func (c *conn) refreshDeadline() {
	c.mu.Lock()
	if !c.closeSent {
		c.setReadDeadlineLocked(c.srv.opts.IdleTimeout)
	}
	c.mu.Unlock()
}

// setReadDeadlineLocked sets the read deadline d from now: on the network
// connection for a reader goroutine, or for the poller's sweep. c.mu must
// be held (it orders the deadlines the reader and the writer set).
func (c *conn) setReadDeadlineLocked(d time.Duration) {
	if c.pr != nil {
		c.pr.deadline.Store(monoNow() + int64(d))
		return
	}
	_ = c.nc.SetReadDeadline(time.Now().Add(d))
}

// closeNet closes the network connection. A connection served by the
// poller is then woken so that its reader notices, as a blocked reader
// goroutine would.
func (c *conn) closeNet() {
	_ = c.nc.Close()
	if c.pr != nil {
		c.srv.poller().wake(c)
	}
}

func (c *conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// finishRead is the reader's last act. hard means the peer is gone or the
// close handshake is over: nc is closed at once so that a blocked writer
// fails fast. Otherwise the writer still flushes the close frame.
func (c *conn) finishRead(hard bool, code int, reason string) {
	c.mu.Lock()
	if !c.closing {
		c.closing = true
		c.code, c.reason, c.initiator = code, reason, "client"
	}
	if hard {
		c.dropQueuedLocked()
	}
	c.readDone = true
	last := !c.writing
	c.mu.Unlock()
	if hard {
		_ = c.nc.Close()
	}
	if last {
		c.teardown()
	}
}

// teardown ends the connection once both goroutines are done.
func (c *conn) teardown() {
	if c.tornDown.Swap(true) {
		return
	}
	_ = c.nc.Close()
	c.mu.Lock()
	code, reason, by := c.code, c.reason, c.initiator
	c.dropQueuedLocked()
	c.releaseQueuesLocked()
	c.mu.Unlock()
	if c.sock != nil {
		c.sock.Closed()
	}
	c.srv.unregister(c)
	c.srv.log.Debug("disconnected", "conn", c.id, "socket_id", c.socketID(), "code", code, "reason", reason, "by", by)
}

func (c *conn) socketID() string {
	if c.sock == nil {
		return ""
	}
	return c.sock.ID()
}
