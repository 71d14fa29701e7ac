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
		batch := c.q
		c.q, c.spare = c.spare, nil
		c.wBytes, c.qBytes = c.qBytes, 0
		withClose := c.closeQ
		c.closeQ = false
		c.mu.Unlock()

		err := c.writeBatch(batch.frames)
		clear(batch.frames)
		batch.frames = batch.frames[:0]

		c.mu.Lock()
		c.spare = batch
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

// writeBatch writes frames with as few system calls as possible.
func (c *conn) writeBatch(batch [][]byte) error {
	if err := c.nc.SetWriteDeadline(time.Now().Add(c.srv.opts.WriteTimeout)); err != nil {
		return err
	}
	for len(batch) > 0 {
		n := min(len(batch), maxBatch)
		var err error
		if n == 1 {
			_, err = c.nc.Write(batch[0])
		} else {
			c.bufs = batch[:n] // a field, so that WriteTo's pointer allocates nothing
			_, err = c.bufs.WriteTo(c.nc)
			c.bufs = nil
		}
		if err != nil {
			return err
		}
		batch = batch[n:]
	}
	return nil
}
