package pubsub

import (
	"container/heap"
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"sync"
	"time"
	"unsafe"
)

// MemoryOptions configures a Memory broker. The zero value works.
//
// The history is bounded four ways: per topic by count (HistorySize) and
// by bytes (HistoryBytes), in time (HistoryTTL), and for the whole broker
// by bytes (MaxHistoryBytes), the oldest messages of any topic going
// first. A message past any bound is freed, not merely hidden; a topic
// that has neither subscribers nor retained messages is forgotten, and
// starts a new epoch if it is used again (clients holding a position in
// the old one are told their recovery is incomplete).
type MemoryOptions struct {
	// HistorySize is how many messages are kept per topic. Zero means 1000;
	// a negative value keeps none.
	HistorySize int
	// HistoryBytes bounds the messages kept per topic, in bytes (payload,
	// event and a fixed overhead per message). Zero means 8 MiB; a negative
	// value means no per-topic byte bound.
	HistoryBytes int
	// MaxHistoryBytes bounds the messages kept by the whole broker, in the
	// same bytes. Zero means 128 MiB; a negative value means no bound.
	MaxHistoryBytes int
	// HistoryTTL is how long a message is kept. Zero means 5 minutes.
	HistoryTTL time.Duration
	// MaxPayload is the largest payload accepted. Zero means 1 MiB.
	MaxPayload int
}

// MemoryUsage is what a Memory broker holds now.
type MemoryUsage struct {
	Topics   int // topics known: subscribed or with retained messages
	Messages int // messages retained
	Bytes    int // bytes retained, as counted against the byte bounds
}

// Memory is the in-process broker: a single node, history kept in memory.
// It is the default broker of package channels. Its epochs are chosen at
// random when it is created, so clients of a restarted process are told
// that their positions cannot be recovered.
type Memory struct {
	opts  MemoryOptions
	epoch string // prefix of every topic's epoch
	now   func() time.Time

	// mu guards everything below and every memTopic field but pub. Lock
	// order: memTopic.pub, then mu.
	mu      sync.Mutex
	topics  map[string]*memTopic
	oldest  topicHeap // topics with retained messages, by their oldest message
	bytes   int       // retained, all topics
	gen     uint64    // topic incarnations created, for their epochs
	handler Handler
	closed  bool
	timer   *time.Timer // frees expired messages while nothing else happens
	armed   bool        // timer is pending
}

type memTopic struct {
	pub sync.Mutex // serializes a topic's publishes: delivery order is offset order

	epoch  string
	offset uint64
	subs   int
	q      []memEntry // retained messages, oldest first from head
	head   int
	bytes  int
	hidx   int  // index in Memory.oldest, -1 when nothing is retained
	dead   bool // forgotten: a publisher holding it looks the topic up again
}

type memEntry struct {
	msg  Message
	at   int64 // Unix nanoseconds
	size int
}

// memEntryOverhead is what a retained message costs besides its strings
// and payload.
const memEntryOverhead = int(unsafe.Sizeof(memEntry{}))

// NewMemory returns an in-process broker.
func NewMemory(opts MemoryOptions) *Memory {
	if opts.HistorySize == 0 {
		opts.HistorySize = 1000
	}
	if opts.HistorySize < 0 {
		opts.HistorySize = 0
	}
	if opts.HistoryBytes == 0 {
		opts.HistoryBytes = 8 << 20
	}
	if opts.MaxHistoryBytes == 0 {
		opts.MaxHistoryBytes = 128 << 20
	}
	if opts.HistoryTTL == 0 {
		opts.HistoryTTL = 5 * time.Minute
	}
	if opts.MaxPayload == 0 {
		opts.MaxPayload = 1 << 20
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &Memory{opts: opts, epoch: hex.EncodeToString(b[:]), now: time.Now, topics: make(map[string]*memTopic)}
}

// Register implements Broker.
func (m *Memory) Register(h Handler) {
	m.mu.Lock()
	m.handler = h
	m.mu.Unlock()
}

// Usage reports what the broker holds now.
func (m *Memory) Usage() MemoryUsage {
	m.mu.Lock()
	defer m.mu.Unlock()
	u := MemoryUsage{Topics: len(m.topics), Bytes: m.bytes}
	for _, t := range m.oldest {
		u.Messages += len(t.q) - t.head
	}
	return u
}

// topicLocked returns the topic's state, creating it when create is true.
// m.mu must be held.
func (m *Memory) topicLocked(name string, create bool) *memTopic {
	t := m.topics[name]
	if t == nil && create {
		m.gen++
		t = &memTopic{epoch: m.epoch + "." + strconv.FormatUint(m.gen, 36), hidx: -1}
		m.topics[name] = t
	}
	return t
}

// forgetLocked drops a topic that has neither subscribers nor retained
// messages. m.mu must be held.
func (m *Memory) forgetLocked(name string, t *memTopic) {
	if t.subs > 0 || t.hidx >= 0 || t.dead {
		return
	}
	t.dead = true
	delete(m.topics, name)
}

// Publish implements Broker. Delivery to the local handler happens before
// Publish returns.
func (m *Memory) Publish(_ context.Context, msg Message) (Position, error) {
	if err := CheckTopic(msg.Topic); err != nil {
		return Position{}, err
	}
	if len(msg.Payload) > m.opts.MaxPayload {
		return Position{}, ErrTooLarge
	}
	for {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return Position{}, ErrClosed
		}
		t := m.topicLocked(msg.Topic, true)
		m.mu.Unlock()

		t.pub.Lock()
		m.mu.Lock()
		now := m.now().UnixNano()
		m.expireLocked(now) // may forget t, if all it had expired
		if t.dead || m.closed {
			// Forgotten (or closed) between the look-up and the lock.
			m.mu.Unlock()
			t.pub.Unlock()
			continue
		}
		t.offset++
		msg.Epoch, msg.Offset = t.epoch, t.offset
		m.retainLocked(t, msg, now)
		h := m.handler
		deliver := t.subs > 0 && h != nil
		m.forgetLocked(msg.Topic, t)
		m.armLocked(now)
		m.mu.Unlock()
		if deliver {
			h.HandleMessage(&msg)
		}
		t.pub.Unlock()
		return msg.Position(), nil
	}
}

// retainLocked adds msg to the topic's history, then trims the history to
// its bounds. m.mu must be held.
func (m *Memory) retainLocked(t *memTopic, msg Message, now int64) {
	o := &m.opts
	if o.HistorySize == 0 {
		return
	}
	size := memEntryOverhead + len(msg.Payload) + len(msg.Event) + len(msg.Exclude)
	if o.HistoryBytes > 0 && size > o.HistoryBytes || o.MaxHistoryBytes > 0 && size > o.MaxHistoryBytes {
		// It can never be retained; keeping older ones would make a gap.
		for t.hidx >= 0 {
			m.dropOldestLocked(t)
		}
		return
	}
	t.q = append(t.q, memEntry{msg: msg, at: now, size: size})
	t.bytes += size
	m.bytes += size
	if t.hidx < 0 {
		heap.Push(&m.oldest, t)
	}
	for len(t.q)-t.head > o.HistorySize || o.HistoryBytes > 0 && t.bytes > o.HistoryBytes {
		m.dropOldestLocked(t)
	}
	for o.MaxHistoryBytes > 0 && m.bytes > o.MaxHistoryBytes {
		m.dropOldestLocked(m.oldest[0])
	}
}

// dropOldestLocked frees the oldest retained message of t, and forgets t
// when that leaves it empty and unsubscribed. m.mu must be held.
func (m *Memory) dropOldestLocked(t *memTopic) {
	e := &t.q[t.head]
	t.bytes -= e.size
	m.bytes -= e.size
	topic := e.msg.Topic
	*e = memEntry{}
	t.head++
	switch n := len(t.q) - t.head; {
	case n == 0:
		t.q, t.head = nil, 0
		heap.Remove(&m.oldest, t.hidx)
		m.forgetLocked(topic, t)
		return
	case t.head >= 32 && t.head*2 >= len(t.q):
		// Compact, into a smaller array when most of it is unused.
		if cap(t.q) > 4*n {
			q := make([]memEntry, n, 2*n)
			copy(q, t.q[t.head:])
			t.q = q
		} else {
			copy(t.q, t.q[t.head:])
			clear(t.q[n:])
			t.q = t.q[:n]
		}
		t.head = 0
	}
	heap.Fix(&m.oldest, t.hidx)
}

// expireLocked frees every message older than the TTL. m.mu must be held.
func (m *Memory) expireLocked(now int64) {
	cutoff := now - int64(m.opts.HistoryTTL)
	for len(m.oldest) > 0 {
		t := m.oldest[0]
		if t.q[t.head].at > cutoff {
			return
		}
		m.dropOldestLocked(t)
	}
}

// armLocked schedules the sweep that frees the oldest message when it
// expires, unless one is pending. Sweeps are spread by at least 1/64 of
// the TTL. m.mu must be held.
func (m *Memory) armLocked(now int64) {
	if m.armed || m.closed || len(m.oldest) == 0 {
		return
	}
	t := m.oldest[0]
	d := time.Duration(t.q[t.head].at + int64(m.opts.HistoryTTL) - now)
	d = max(d, 0) + max(m.opts.HistoryTTL/64, 10*time.Millisecond)
	m.armed = true
	if m.timer == nil {
		m.timer = time.AfterFunc(d, m.sweep)
		return
	}
	m.timer.Reset(d)
}

// sweep frees the expired messages and forgets the topics left empty.
func (m *Memory) sweep() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.armed = false
	if m.closed {
		return
	}
	now := m.now().UnixNano()
	m.expireLocked(now)
	m.armLocked(now)
}

// PublishAsync implements AsyncBroker. The in-process broker has no queue:
// it publishes m before returning, and calls done then.
func (m *Memory) PublishAsync(ctx context.Context, msg Message, done func(Position, error)) error {
	pos, err := m.Publish(ctx, msg)
	if err != nil {
		return err
	}
	if done != nil {
		done(pos, nil)
	}
	return nil
}

// PublishControl implements Broker.
func (m *Memory) PublishControl(_ context.Context, data []byte) error {
	m.mu.Lock()
	h, closed := m.handler, m.closed
	m.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if h != nil {
		h.HandleControl(data)
	}
	return nil
}

// Subscribe implements Broker.
func (m *Memory) Subscribe(_ context.Context, topic string) error {
	if err := CheckTopic(topic); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	m.topicLocked(topic, true).subs++
	return nil
}

// Unsubscribe implements Broker.
func (m *Memory) Unsubscribe(_ context.Context, topic string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	t := m.topicLocked(topic, false)
	if t == nil {
		return nil
	}
	if t.subs > 0 {
		t.subs--
	}
	m.forgetLocked(topic, t)
	return nil
}

// History implements Broker.
func (m *Memory) History(_ context.Context, topic string, since Position, limit int) (History, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return History{}, ErrClosed
	}
	now := m.now().UnixNano()
	m.expireLocked(now)
	t := m.topicLocked(topic, false)
	if t == nil {
		// Nothing is retained and nobody subscribed: a new incarnation
		// (epoch) starts with the next publish or subscribe, and "before
		// the first message" of this answer's epoch means all of it.
		return History{Top: Position{Epoch: m.epoch + ".0"}, Complete: since.Offset == 0}, nil
	}
	h := History{Top: Position{Epoch: t.epoch, Offset: t.offset}}
	if since.Epoch != t.epoch && !(since.Epoch == m.epoch+".0" && since.Offset == 0) {
		return h, nil
	}
	if since.Offset >= t.offset {
		h.Complete = since.Offset == t.offset
		return h, nil
	}
	if limit <= 0 || limit > m.opts.HistorySize {
		limit = m.opts.HistorySize
	}
	q := t.q[t.head:]
	if len(q) == 0 {
		return h, nil // nothing kept
	}
	oldest := q[0].msg.Offset
	if oldest > since.Offset+1 {
		// Trimmed: start from what is still there, but say it is incomplete.
		since.Offset = oldest - 1
	} else {
		h.Complete = true
	}
	q = q[since.Offset+1-oldest:]
	if len(q) > limit {
		q = q[:limit]
	}
	h.Messages = make([]Message, len(q))
	for i := range q {
		h.Messages[i] = q[i].msg
	}
	if n := len(h.Messages); n == 0 || h.Messages[n-1].Offset != t.offset {
		h.Complete = false
	}
	return h, nil
}

// Close implements Broker. It frees the history.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	if m.timer != nil {
		m.timer.Stop()
	}
	m.topics, m.oldest, m.bytes = nil, nil, 0
	return nil
}

// topicHeap orders topics by the time of their oldest retained message.
type topicHeap []*memTopic

func (h topicHeap) Len() int { return len(h) }
func (h topicHeap) Less(i, j int) bool {
	return h[i].q[h[i].head].at < h[j].q[h[j].head].at
}
func (h topicHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx, h[j].hidx = i, j
}
func (h *topicHeap) Push(x any) {
	t := x.(*memTopic)
	t.hidx = len(*h)
	*h = append(*h, t)
}
func (h *topicHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	t.hidx = -1
	return t
}

var _ AsyncBroker = (*Memory)(nil)
