package server

import (
	"net"
	"sync"
)

// Outgoing frames wait in one of two places. A lone frame (the common
// case of a broadcast reaching an otherwise quiet connection) waits in
// conn.one, a field of the connection: queuing it takes nothing from a
// pool and allocates nothing. When a second frame comes before the writer
// took the first, both move to a frameQueue from a pool. A connection
// holds a queue only while it has several frames to write, so an idle
// connection keeps no queue memory, and a busy one allocates none.
type frameQueue struct {
	frames [][]byte
	bufs   net.Buffers // the writer's writev argument
}

// maxPooledQueue is the largest queue capacity returned to the pool; a
// queue that grew beyond it during a burst is left to the collector.
const maxPooledQueue = 1024

var queuePool = sync.Pool{New: func() any { return &frameQueue{frames: make([][]byte, 0, 16)} }}

func getQueue() *frameQueue { return queuePool.Get().(*frameQueue) }

// putQueue returns q (which may be nil) to the pool.
func putQueue(q *frameQueue) {
	if q == nil || cap(q.frames) > maxPooledQueue {
		return
	}
	clear(q.frames)
	q.frames = q.frames[:0]
	queuePool.Put(q)
}

// enqueueLocked appends a frame to the connection's queue. c.mu must be
// held.
func (c *conn) enqueueLocked(f []byte) {
	c.qBytes += len(f)
	switch {
	case c.q != nil:
	case c.one == nil:
		c.one = f
		return
	default:
		if c.q, c.spare = c.spare, nil; c.q == nil {
			c.q = getQueue()
		}
		c.q.frames = append(c.q.frames, c.one)
		c.one = nil
	}
	c.q.frames = append(c.q.frames, f)
}

// queuedLocked returns how many frames wait. c.mu must be held.
func (c *conn) queuedLocked() int {
	switch {
	case c.q != nil:
		return len(c.q.frames)
	case c.one != nil:
		return 1
	}
	return 0
}

// takeLocked hands everything queued to the writer: a lone frame, or the
// queue. c.mu must be held.
func (c *conn) takeLocked() (one []byte, batch *frameQueue) {
	one, batch = c.one, c.q
	c.one, c.q = nil, nil
	return one, batch
}

// dropQueuedLocked discards the frames not yet taken by the writer. c.mu
// must be held.
func (c *conn) dropQueuedLocked() {
	if c.q != nil {
		clear(c.q.frames)
		c.q.frames = c.q.frames[:0]
	}
	c.one = nil
	c.qBytes = 0
	c.replay = 0
}

// releaseQueuesLocked returns the connection's queues to the pool once the
// writer is idle. c.mu must be held.
func (c *conn) releaseQueuesLocked() {
	if c.q != nil && len(c.q.frames) == 0 {
		putQueue(c.q)
		c.q = nil
	}
	putQueue(c.spare)
	c.spare = nil
}
