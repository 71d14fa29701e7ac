package server

import (
	"errors"
	"net"
	"time"
)

// maxBatch is the most frames written with one writev. It bounds the iovec
// array the runtime caches per file descriptor (16 bytes per frame).
const maxBatch = 64

// writeLoop is the connection's writer: it runs while frames are queued,
// writing everything queued at once (one writev per up to maxBatch frames),
// and exits when the queue is empty.
func (c *conn) writeLoop() {
	defer c.srv.wg.Done()
	for {
		c.mu.Lock()
		if c.queuedLocked() == 0 || c.failed {
			c.writing = false
			c.releaseQueuesLocked()
			last := c.readDone
			c.mu.Unlock()
			if last {
				c.teardown()
			}
			return
		}
		one, batch := c.takeLocked()
		c.wBytes, c.qBytes = c.qBytes, 0
		withClose := c.closeQ
		c.closeQ = false
		c.mu.Unlock()

		var err error
		if batch == nil {
			err = c.writeOne(one)
		} else {
			err = c.writeBatch(batch)
			clear(batch.frames)
			batch.frames = batch.frames[:0]
		}

		c.mu.Lock()
		if batch != nil {
			if c.spare == nil {
				c.spare = batch
			} else {
				putQueue(batch)
			}
		}
		c.replay = max(c.replay-c.wBytes, 0)
		c.wBytes = 0
		if err != nil {
			c.failed = true
			if !c.closing {
				c.closing = true
				c.code, c.reason, c.initiator = 1006, "write failed", "server"
			}
			c.dropQueuedLocked()
			c.mu.Unlock()
			c.closeNet() // the reader fails and finishes
			if !errors.Is(err, net.ErrClosed) {
				c.srv.log.Warn("write failed: connection dropped", "conn", c.id, "socket_id", c.socketID(), "err", err)
			}
			continue
		}
		if withClose {
			// Now wait a little for the client's close frame, whatever the
			// reader's idle deadline was.
			c.closeSent = true
			c.setReadDeadlineLocked(closeGrace)
		}
		c.mu.Unlock()
	}
}

// startWrite sets the deadline of a write: on the network connection for
// a reader goroutine's connection, else for the poller's sweep, which
// drops the connection when it passes (no timer per connection, and no
// timer to reset per write).
func (c *conn) startWrite() error {
	if c.pr != nil {
		c.pr.wdl.Store(monoNow() + int64(c.srv.opts.WriteTimeout))
		return nil
	}
	return c.nc.SetWriteDeadline(time.Now().Add(c.srv.opts.WriteTimeout))
}

// endWrite clears the sweep's write deadline.
func (c *conn) endWrite() {
	if c.pr != nil {
		c.pr.wdl.Store(0)
	}
}

// writeOne writes a lone frame.
func (c *conn) writeOne(f []byte) error {
	if err := c.startWrite(); err != nil {
		return err
	}
	_, err := c.nc.Write(f)
	c.endWrite()
	return err
}

// writeBatch writes the frames of q with as few system calls as possible.
func (c *conn) writeBatch(q *frameQueue) error {
	if err := c.startWrite(); err != nil {
		return err
	}
	defer c.endWrite()
	batch := q.frames
	for len(batch) > 0 {
		n := min(len(batch), maxBatch)
		var err error
		if n == 1 {
			_, err = c.nc.Write(batch[0])
		} else {
			q.bufs = batch[:n] // a field, so that WriteTo's pointer allocates nothing
			_, err = q.bufs.WriteTo(c.nc)
			q.bufs = nil
		}
		if err != nil {
			return err
		}
		batch = batch[n:]
	}
	return nil
}
