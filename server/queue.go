package server

import "sync"

// frameQueue is a list of frames waiting to be written. Queues are pooled:
// a connection holds one only while it has something to write, so an idle
// connection keeps no queue memory, and a busy one allocates none.
type frameQueue struct {
	frames [][]byte
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
	if c.q == nil {
		c.q = getQueue()
	}
	c.q.frames = append(c.q.frames, f)
	c.qBytes += len(f)
}

// queuedLocked returns how many frames wait. c.mu must be held.
func (c *conn) queuedLocked() int {
	if c.q == nil {
		return 0
	}
	return len(c.q.frames)
}

// dropQueuedLocked discards the frames not yet taken by the writer. c.mu
// must be held.
func (c *conn) dropQueuedLocked() {
	if c.q != nil {
		clear(c.q.frames)
		c.q.frames = c.q.frames[:0]
	}
	c.qBytes = 0
}

// releaseQueuesLocked returns the connection's queues to the pool once the
// writer is idle. c.mu must be held.
func (c *conn) releaseQueuesLocked() {
	if c.queuedLocked() == 0 {
		putQueue(c.q)
		c.q = nil
	}
	putQueue(c.spare)
	c.spare = nil
}
