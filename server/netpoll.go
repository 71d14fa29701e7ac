package server

import (
	"errors"
	"net"
	"os"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"

	"github.com/hearth-rt/hearth/channels"
)

// The poller serves idle connections without a goroutine or a buffer each
// (the design of "A Million WebSockets and Go"): every connection is
// registered, one-shot, in an epoll instance; one goroutine waits for
// readiness and hands ready connections to an elastic pool of workers. A
// worker reads what the connection has (non-blocking reads through
// syscall.RawConn, never a blocking read: a client dripping one byte at a
// time cannot hold a worker), parses frames incrementally, handles
// complete messages, and re-arms the connection. Bytes of a frame that is
// not complete yet are kept in pooled buffers that the connection holds
// only until the frame is done. Read deadlines (idle timeout, close
// handshake, drain) are checked by a periodic sweep of the connections in
// the poller goroutine, without a timer per connection.
//
// Workers exist only while there is work: a dispatch wakes an idle worker
// or starts a new one, up to a few per CPU (baseWorkers); beyond that,
// ready connections wait in a queue, so that a burst of events does not
// start a goroutine per connection. A worker idle for workerLinger ends.
// A message handler that blocks (a Join querying a database) holds its
// worker, as it would hold the connection's reader goroutine: when the
// queue makes no progress for starveAfter, the poller starts one more
// worker (up to maxWorkers), so that blocked handlers never stall the
// other connections for long.

const (
	// baseWorkersPerCPU is how many workers per GOMAXPROCS start at once
	// when there is work.
	baseWorkersPerCPU = 4
	// starveAfter is how long queued connections may wait without any
	// worker becoming free before another worker starts.
	starveAfter = 5 * time.Millisecond
	// maxWorkers bounds the poller's workers, that is how many
	// connections' messages are handled at once.
	maxWorkers = 4096
	// workerLinger is how long an idle worker waits for work before it
	// ends.
	workerLinger = 2 * time.Second
	// readBufSize is each worker's read buffer.
	readBufSize = 16 << 10
	// maxReadsPerStep bounds the reads of one connection per turn, so that
	// a client sending fast does not hold a worker forever; the poller
	// hands it back at once when more is buffered.
	maxReadsPerStep = 4
	// maxSweepTick bounds the interval of the deadline sweep.
	maxSweepTick = 250 * time.Millisecond
	// minSweepTick bounds it from below (short idle timeouts, in tests).
	minSweepTick = 5 * time.Millisecond
)

// netpollDisabled makes every connection use a reader goroutine (tests run
// the suite in both modes).
var netpollDisabled bool

// errWouldBlock is a non-blocking read that found nothing to read.
var errWouldBlock = errors.New("server: read would block")

// procStart is the origin of monoNow.
var procStart = time.Now()

// monoNow returns monotonic nanoseconds, for the sweep's deadlines.
func monoNow() int64 { return int64(time.Since(procStart)) }

// polled is the state of a connection served by the poller.
type polled struct {
	rc       syscall.RawConn
	slot     int32        // index in poller.conns
	gen      uint32       // registration generation, to drop stale events
	sched    atomic.Int32 // 0 idle, 1 dispatched or being served, 2 serve again
	deadline atomic.Int64 // read deadline (monoNow), 0 for none
	wdl      atomic.Int64 // write deadline (monoNow) of the write in progress, 0 for none

	// The reader's state, touched only by the worker serving the
	// connection (dispatch hands it over with a happens-before edge).
	state    ws.State  // fragmented or not
	hn       uint8     // header bytes held in conn.hdr
	inFrame  bool      // the header is complete, payload bytes are pending
	draining bool      // after a violation or a mid-frame timeout: discard input
	ended    bool      // the reader is finished
	op       ws.OpCode // opcode of the message being assembled
	fh       ws.Header // the frame being read
	rem      int64     // its payload bytes still to come
	start    int       // where its payload starts in msg
	msg      *[]byte   // the data message being assembled (pooled)
	ctl      *[]byte   // the control frame being assembled (pooled)
}

// schedule marks the connection for a worker. It reports whether the
// caller must dispatch it (false: it is dispatched already, and the worker
// will serve it again).
func (pr *polled) schedule() bool {
	for {
		switch s := pr.sched.Load(); s {
		case 0:
			if pr.sched.CompareAndSwap(0, 1) {
				return true
			}
		case 1:
			if pr.sched.CompareAndSwap(1, 2) {
				return false
			}
		default:
			return false
		}
	}
}

// stop is how the reader ended (the arguments of finishRead).
type stop struct {
	hard   bool
	code   int
	reason string
}

// pollerRef is the server's poller, made on first use.
type pollerRef struct {
	mu      sync.Mutex
	p       *poller
	err     error
	stopped bool
}

// get returns the poller, or nil if connections must use reader
// goroutines (not Linux, the poller could not start, or it was stopped).
func (r *pollerRef) get(s *Server) *poller {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped || r.err != nil {
		return nil
	}
	if r.p == nil {
		r.p, r.err = newPoller(s)
		if r.err != nil {
			s.log.Warn("epoll unavailable: one reader goroutine per connection", "err", r.err)
			return nil
		}
	}
	return r.p
}

// stop ends the poller once no connection uses it any more.
func (r *pollerRef) stop() {
	r.mu.Lock()
	r.stopped = true
	p := r.p
	r.mu.Unlock()
	if p != nil {
		p.stop()
	}
}

// poller returns the server's poller, once a connection uses it.
func (s *Server) poller() *poller { return s.poll.p }

// poller waits for readiness and runs the workers.
type poller struct {
	srv  *Server
	ep   *epoll
	tick time.Duration

	mu       sync.Mutex // guards the fields below
	conns    []*conn    // by slot; nil for a free slot
	free     []int32
	gen      uint32
	ready    []*conn   // dispatched, waiting for a worker
	idle     []*worker // idle workers, the most recent last
	workers  int
	base     int   // workers started without waiting
	progress int64 // monoNow when a worker last took a queued connection
	stopped  bool

	wg sync.WaitGroup // the loop and the workers
}

func newPoller(s *Server) (*poller, error) {
	ep, err := newEpoll()
	if err != nil {
		return nil, err
	}
	tick := min(s.opts.IdleTimeout, s.opts.WriteTimeout, closeGrace) / 16
	tick = max(minSweepTick, min(maxSweepTick, tick))
	p := &poller{srv: s, ep: ep, tick: tick, base: baseWorkersPerCPU * runtime.GOMAXPROCS(0)}
	p.wg.Add(1)
	go p.loop()
	return p, nil
}

// pollable returns the raw connection of nc when the poller can serve it:
// a plain TCP or Unix socket (not TLS, not a wrapper).
func pollable(nc net.Conn) syscall.RawConn {
	var sc syscall.Conn
	switch c := nc.(type) {
	case *net.TCPConn:
		sc = c
	case *net.UnixConn:
		sc = c
	default:
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// register adds a connection and arms it.
func (p *poller) register(c *conn) error {
	pr := c.pr
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return errors.New("server: poller stopped")
	}
	if n := len(p.free); n > 0 {
		pr.slot = p.free[n-1]
		p.free = p.free[:n-1]
		p.conns[pr.slot] = c
	} else {
		pr.slot = int32(len(p.conns))
		p.conns = append(p.conns, c)
	}
	p.gen++
	pr.gen = p.gen
	p.mu.Unlock()
	c.refreshDeadline()
	if err := p.ep.add(pr.rc, pr.slot, pr.gen); err != nil {
		p.release(c)
		return err
	}
	if len(c.pre) > 0 {
		// Bytes net/http read past the request: a worker handles them
		// now (after the registration, which its re-arming modifies).
		p.wake(c)
	}
	return nil
}

// unregister removes a connection whose reader finished.
func (p *poller) unregister(c *conn) {
	_ = p.ep.del(c.pr.rc)
	p.release(c)
}

func (p *poller) release(c *conn) {
	p.mu.Lock()
	if p.conns[c.pr.slot] == c {
		p.conns[c.pr.slot] = nil
		p.free = append(p.free, c.pr.slot)
	}
	p.mu.Unlock()
}

// wake has a worker serve c: read what it has, check its deadline, notice
// that it was closed.
func (p *poller) wake(c *conn) {
	if !c.pr.schedule() {
		return
	}
	p.mu.Lock()
	p.dispatchLocked(c)
	p.mu.Unlock()
}

// dispatchLocked gives a scheduled connection to a worker. p.mu must be
// held.
func (p *poller) dispatchLocked(c *conn) {
	if n := len(p.idle); n > 0 {
		w := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		w.next = c
		w.wake <- struct{}{}
		return
	}
	if p.workers < p.base && !p.stopped {
		p.startWorkerLocked(c)
		return
	}
	if len(p.ready) == 0 {
		p.progress = monoNow()
	}
	p.ready = append(p.ready, c)
}

// startWorkerLocked starts a worker serving c (nil: the queue). p.mu must
// be held.
func (p *poller) startWorkerLocked(c *conn) {
	p.workers++
	w := &worker{p: p, wake: make(chan struct{}, 1), next: c}
	w.io.init(p.ep)
	p.wg.Add(1)
	go w.loop()
}

// loop waits for readiness and sweeps deadlines.
func (p *poller) loop() {
	defer p.wg.Done()
	events := make([]pollEvent, 256)
	var late []*conn // writes past their deadline
	next := monoNow() + int64(p.tick)
	starving := false
	for {
		wait := max(0, time.Duration(next-monoNow()))
		if starving {
			wait = min(wait, starveAfter)
		}
		n, err := p.ep.wait(events, wait)
		if err != nil {
			p.srv.log.Error("epoll wait failed", "err", err)
			time.Sleep(p.tick)
		}
		now := monoNow()
		p.mu.Lock()
		if p.stopped {
			p.mu.Unlock()
			return
		}
		for _, ev := range events[:n] {
			if ev.slot < 0 || int(ev.slot) >= len(p.conns) {
				continue
			}
			c := p.conns[ev.slot]
			if c != nil && c.pr.gen == ev.gen && c.pr.schedule() {
				p.dispatchLocked(c)
			}
		}
		if now >= next {
			for _, c := range p.conns {
				if c == nil {
					continue
				}
				if dl := c.pr.deadline.Load(); dl != 0 && now >= dl && c.pr.schedule() {
					p.dispatchLocked(c)
				}
				if dl := c.pr.wdl.Load(); dl != 0 && now >= dl {
					late = append(late, c)
				}
			}
			next = now + int64(p.tick)
		}
		if len(p.ready) > 0 && now-p.progress >= int64(starveAfter) && p.workers < maxWorkers {
			// Every worker is busy (handlers blocking): one more.
			p.startWorkerLocked(nil)
			p.progress = now
		}
		starving = len(p.ready) > 0
		p.mu.Unlock()
		for i, c := range late {
			c.writeTimedOut()
			late[i] = nil
		}
		late = late[:0]
	}
}

// stop ends the loop and the workers and closes the epoll instance. No
// connection may be registered any more.
func (p *poller) stop() {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	p.stopped = true
	for _, w := range p.idle {
		w.next = nil
		w.wake <- struct{}{}
	}
	p.idle = nil
	p.mu.Unlock()
	p.ep.interrupt()
	p.wg.Wait()
	p.ep.close()
}

// worker serves ready connections, one at a time.
type worker struct {
	p    *poller
	wake chan struct{} // a connection in next, or stop
	next *conn
	io   workerIO
}

func (w *worker) loop() {
	p := w.p
	defer p.wg.Done()
	defer w.io.release()
	t := time.NewTimer(workerLinger)
	defer t.Stop()
	for {
		if c := w.next; c != nil {
			w.next = nil
			w.serve(c)
		}
		p.mu.Lock()
		if n := len(p.ready); n > 0 {
			w.next = p.ready[0]
			p.ready[0] = nil
			p.ready = p.ready[1:]
			if len(p.ready) == 0 {
				p.ready = nil
			}
			p.progress = monoNow()
			p.mu.Unlock()
			continue
		}
		if p.stopped {
			p.workers--
			p.mu.Unlock()
			return
		}
		p.idle = append(p.idle, w)
		p.mu.Unlock()
		t.Reset(workerLinger)
		select {
		case <-w.wake:
			continue
		case <-t.C:
		}
		p.mu.Lock()
		if i := slices.Index(p.idle, w); i >= 0 {
			p.idle = slices.Delete(p.idle, i, i+1)
			p.workers--
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		<-w.wake // handed a connection (or stop) as the timer fired
	}
}

// serve runs c's reader until nothing more was signalled for it.
func (w *worker) serve(c *conn) {
	pr := c.pr
	for {
		c.pollStep(w)
		if pr.sched.CompareAndSwap(1, 0) {
			return
		}
		pr.sched.Store(1)
	}
}

// pollStep is the poller's reader: it takes what the connection has (the
// bytes net/http read past the request, then the network's, without ever
// waiting), applies an expired read deadline, notices a closed connection,
// and re-arms the connection in the poller.
func (c *conn) pollStep(w *worker) {
	pr := c.pr
	if pr.ended {
		return
	}
	if p := c.pre; p != nil {
		c.pre = nil
		if st, done := c.feed(p); done {
			c.endPolled(st)
			return
		}
	}
	for range maxReadsPerStep {
		n, err := w.io.read(pr.rc)
		if err == errWouldBlock {
			break
		}
		if err != nil {
			if pr.draining {
				c.endPolled(stop{true, closeAbnormal, "connection lost"})
			} else {
				c.endPolled(lostStop(err))
			}
			return
		}
		if st, done := c.feed(w.io.buf[:n]); done {
			c.endPolled(st)
			return
		}
		if n < len(w.io.buf) {
			break
		}
	}
	if dl := pr.deadline.Load(); dl != 0 && monoNow() >= dl {
		if st, done := c.expired(); done {
			c.endPolled(st)
			return
		}
	}
	if err := w.io.rearm(pr.rc, pr.slot, pr.gen); err != nil {
		c.endPolled(lostStop(err))
	}
}

func lostStop(err error) stop {
	hard, code, reason := lost(err)
	return stop{hard, code, reason}
}

// expired applies a read deadline that passed, as a reader goroutine's
// read failing with a timeout would.
func (c *conn) expired() (stop, bool) {
	pr := c.pr
	switch {
	case pr.draining:
		return stop{true, closeAbnormal, "connection lost"}, true
	case c.isClosing():
		return lostStop(os.ErrDeadlineExceeded), true
	}
	c.srv.log.Debug("closing: idle timeout", "conn", c.id, "socket_id", c.socketID())
	c.Close(channels.CloseGoingAway, "idle timeout")
	if pr.hn == 0 && !pr.inFrame {
		// At a frame boundary: wait for the client's close frame. An
		// unfinished message is dropped.
		if pr.msg != nil {
			putBuf(pr.msg)
			pr.msg = nil
			pr.state = pr.state.Clear(ws.StateFragmented)
		}
		c.refreshDeadline()
		return stop{}, false
	}
	c.pollDrain()
	return stop{}, false
}

// pollViolation closes the connection after a violation and discards
// what the client sends from then on.
func (c *conn) pollViolation(code int, reason string) (stop, bool) {
	c.violation(code, reason)
	c.pollDrain()
	return stop{}, false
}

func (c *conn) pollDrain() {
	c.pr.draining = true
	c.releaseFrame()
	c.startDrain()
}

// releaseFrame returns the buffers of an incomplete frame or message.
func (c *conn) releaseFrame() {
	pr := c.pr
	if pr.msg != nil {
		putBuf(pr.msg)
		pr.msg = nil
	}
	if pr.ctl != nil {
		putBuf(pr.ctl)
		pr.ctl = nil
	}
}

// endPolled finishes the poller's reader.
func (c *conn) endPolled(st stop) {
	c.pr.ended = true
	c.releaseFrame()
	c.srv.poller().unregister(c)
	c.finishRead(st.hard, st.code, st.reason)
	c.srv.wg.Done()
}

// feed parses bytes from the network: frame headers into conn.hdr,
// payloads that arrived whole are handled where they are (unmasked in
// place), others are assembled in pooled buffers. It reports done when
// the reader is finished (the client's close frame arrived).
func (c *conn) feed(p []byte) (stop, bool) {
	pr := c.pr
	limit := c.srv.opts.MaxMessageSize
	for len(p) > 0 {
		if pr.draining {
			return stop{}, false
		}
		if !pr.inFrame {
			k, hl := c.takeHeader(p)
			p = p[k:]
			if hl == 0 {
				return stop{}, false // the header is not complete yet
			}
			pr.hn = 0
			h, err := parseHeader(c.hdr[:hl])
			if err != nil {
				return c.pollViolation(channels.CloseProtocolError, "protocol error: "+err.Error())
			}
			if err := ws.CheckHeader(h, pr.state); err != nil {
				return c.pollViolation(channels.CloseProtocolError, "protocol error: "+err.Error())
			}
			if err := c.checkRsv(h); err != nil {
				return c.pollViolation(channels.CloseProtocolError, err.Error())
			}
			control := h.OpCode.IsControl()
			if !control {
				var have int64
				if pr.msg != nil {
					have = int64(len(*pr.msg))
				}
				if h.Length > limit-have {
					return c.pollViolation(channels.CloseTooBig, "message too big")
				}
				if h.OpCode != ws.OpContinuation {
					pr.op = h.OpCode
				}
			}
			if int64(len(p)) >= h.Length && (control || (pr.msg == nil && h.Fin)) {
				// The whole frame is here: handle it in place.
				n := int(h.Length)
				payload := p[:n:n]
				p = p[n:]
				ws.Cipher(payload, h.Mask, 0)
				if st, done := c.frameDone(h, payload, true); done {
					return st, true
				}
				continue
			}
			pr.fh, pr.rem, pr.inFrame = h, h.Length, true
			n := int(h.Length)
			if control {
				pr.ctl = getBuf(n)
			} else {
				if pr.msg == nil {
					pr.msg = getBuf(n)
				} else {
					pr.msg = growBuf(pr.msg, n)
				}
				pr.start = len(*pr.msg)
			}
		}
		k := int(min(pr.rem, int64(len(p))))
		dst := pr.msg
		if pr.fh.OpCode.IsControl() {
			dst = pr.ctl
		}
		*dst = append(*dst, p[:k]...)
		p = p[k:]
		pr.rem -= int64(k)
		if pr.rem > 0 {
			return stop{}, false
		}
		pr.inFrame = false
		h := pr.fh
		if h.OpCode.IsControl() {
			ctl := pr.ctl
			pr.ctl = nil
			ws.Cipher(*ctl, h.Mask, 0)
			st, done := c.frameDone(h, *ctl, true)
			putBuf(ctl)
			if done {
				return st, true
			}
			continue
		}
		ws.Cipher((*pr.msg)[pr.start:], h.Mask, 0)
		if st, done := c.frameDone(h, nil, false); done {
			return st, true
		}
	}
	return stop{}, false
}

// frameDone handles a complete frame: payload is the whole (unmasked)
// payload when whole is set, else the frame's payload was appended to the
// message being assembled.
func (c *conn) frameDone(h ws.Header, payload []byte, whole bool) (stop, bool) {
	pr := c.pr
	switch {
	case h.OpCode.IsControl():
		if c.controlFrame(h.OpCode, payload) {
			return stop{}, true
		}
	case whole:
		c.message(payload, h.OpCode == ws.OpBinary)
	case !h.Fin:
		pr.state = pr.state.Set(ws.StateFragmented)
		c.fragment()
	default:
		pr.state = pr.state.Clear(ws.StateFragmented)
		c.message(*pr.msg, pr.op == ws.OpBinary)
		putBuf(pr.msg)
		pr.msg = nil
	}
	if pr.msg == nil {
		// Every frame restarts the idle timer, except those of an
		// unfinished message: the whole message must come within it.
		c.refreshDeadline()
	}
	return stop{}, false
}

// takeHeader copies frame header bytes from p into conn.hdr. It returns
// how many bytes it took and, once the header is complete, its length.
func (c *conn) takeHeader(p []byte) (took, hl int) {
	pr := c.pr
	for {
		need := 2
		if pr.hn >= 2 {
			need = headerLen(c.hdr[0], c.hdr[1])
		}
		if int(pr.hn) >= need {
			return took, need
		}
		if len(p) == took {
			return took, 0
		}
		k := copy(c.hdr[pr.hn:need], p[took:])
		pr.hn += uint8(k)
		took += k
	}
}

// headerLen returns the length of a frame header from its first two bytes.
func headerLen(b0, b1 byte) int {
	n := 2
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}

// parseHeader decodes a complete frame header, as ws.ReadHeader does.
func parseHeader(b []byte) (ws.Header, error) {
	h := ws.Header{
		Fin:    b[0]&0x80 != 0,
		Rsv:    (b[0] & 0x70) >> 4,
		OpCode: ws.OpCode(b[0] & 0x0f),
		Masked: b[1]&0x80 != 0,
	}
	rest := b[2:]
	switch l := b[1] & 0x7f; l {
	case 126:
		h.Length = int64(rest[0])<<8 | int64(rest[1])
		rest = rest[2:]
	case 127:
		if rest[0]&0x80 != 0 {
			return h, ws.ErrHeaderLengthMSB
		}
		for _, x := range rest[:8] {
			h.Length = h.Length<<8 | int64(x)
		}
		rest = rest[8:]
	default:
		h.Length = int64(l)
	}
	if h.Masked {
		copy(h.Mask[:], rest)
	}
	return h, nil
}

// writeTimedOut drops a connection whose write did not complete within
// WriteTimeout: closing it makes the write fail (the writer then ends the
// connection, as after a write deadline).
func (c *conn) writeTimedOut() {
	if c.pr.wdl.Swap(0) == 0 {
		return // the write just completed
	}
	c.srv.log.Warn("write timed out: connection dropped", "conn", c.id, "socket_id", c.socketID())
	c.closeNet()
}
