package pubsub

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"time"
)

// MemoryOptions configures a Memory broker. The zero value works.
type MemoryOptions struct {
	// HistorySize is how many messages are kept per topic. Zero means 1000;
	// a negative value keeps none.
	HistorySize int
	// HistoryTTL is how long a message is kept. Zero means 5 minutes.
	HistoryTTL time.Duration
	// MaxPayload is the largest payload accepted. Zero means 1 MiB.
	MaxPayload int
}

// Memory is the in-process broker: a single node, history kept in memory.
// It is the default broker of package channels. Its epoch is chosen at
// random when it is created, so clients of a restarted process are told
// that their positions cannot be recovered.
type Memory struct {
	opts  MemoryOptions
	epoch string
	now   func() time.Time

	mu      sync.RWMutex // guards topics, handler, closed
	topics  map[string]*memTopic
	handler Handler
	closed  bool
}

type memTopic struct {
	mu     sync.Mutex // serializes offset assignment and delivery: delivery order is offset order
	offset uint64
	subs   int
	ring   []memEntry // circular buffer of the latest messages
	start  int        // index of the oldest entry in ring
	n      int        // number of entries in ring
}

type memEntry struct {
	msg Message
	at  time.Time
}

// NewMemory returns an in-process broker.
func NewMemory(opts MemoryOptions) *Memory {
	if opts.HistorySize == 0 {
		opts.HistorySize = 1000
	}
	if opts.HistorySize < 0 {
		opts.HistorySize = 0
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

// topic returns the topic's state, creating it when create is true.
func (m *Memory) topic(name string, create bool) (*memTopic, error) {
	m.mu.RLock()
	t, closed := m.topics[name], m.closed
	m.mu.RUnlock()
	if closed {
		return nil, ErrClosed
	}
	if t != nil || !create {
		return t, nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if t = m.topics[name]; t == nil {
		t = &memTopic{}
		m.topics[name] = t
	}
	return t, nil
}

// Publish implements Broker. Delivery to the local handler happens before
// Publish returns.
func (m *Memory) Publish(_ context.Context, msg Message) (Position, error) {
	if !ValidTopic(msg.Topic) {
		return Position{}, ErrInvalidTopic
	}
	if len(msg.Payload) > m.opts.MaxPayload {
		return Position{}, ErrTooLarge
	}
	t, err := m.topic(msg.Topic, true)
	if err != nil {
		return Position{}, err
	}
	m.mu.RLock()
	h := m.handler
	m.mu.RUnlock()

	t.mu.Lock()
	defer t.mu.Unlock()
	t.offset++
	msg.Epoch, msg.Offset = m.epoch, t.offset
	if size := m.opts.HistorySize; size > 0 {
		if t.ring == nil {
			t.ring = make([]memEntry, size)
		}
		e := memEntry{msg: msg, at: m.now()}
		if t.n < size {
			t.ring[(t.start+t.n)%size] = e
			t.n++
		} else {
			t.ring[t.start] = e
			t.start = (t.start + 1) % size
		}
	}
	if t.subs > 0 && h != nil {
		h.HandleMessage(&msg)
	}
	return msg.Position(), nil
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
	m.mu.RLock()
	h, closed := m.handler, m.closed
	m.mu.RUnlock()
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
	if !ValidTopic(topic) {
		return ErrInvalidTopic
	}
	t, err := m.topic(topic, true)
	if err != nil {
		return err
	}
	t.mu.Lock()
	t.subs++
	t.mu.Unlock()
	return nil
}

// Unsubscribe implements Broker.
func (m *Memory) Unsubscribe(_ context.Context, topic string) error {
	t, err := m.topic(topic, false)
	if err != nil || t == nil {
		return err
	}
	t.mu.Lock()
	if t.subs > 0 {
		t.subs--
	}
	t.mu.Unlock()
	return nil
}

// History implements Broker.
func (m *Memory) History(_ context.Context, topic string, since Position, limit int) (History, error) {
	t, err := m.topic(topic, false)
	if err != nil {
		return History{}, err
	}
	h := History{Top: Position{Epoch: m.epoch}}
	if t == nil {
		// Nothing was published yet: only "before the first message" is complete.
		h.Complete = since.Offset == 0
		return h, nil
	}
	if limit <= 0 || limit > m.opts.HistorySize {
		limit = m.opts.HistorySize
	}
	cutoff := m.now().Add(-m.opts.HistoryTTL)

	t.mu.Lock()
	defer t.mu.Unlock()
	h.Top.Offset = t.offset
	if since.Epoch != m.epoch {
		return h, nil
	}
	if since.Offset >= t.offset {
		h.Complete = since.Offset == t.offset
		return h, nil
	}
	size := len(t.ring)
	// The oldest retained, unexpired entry.
	first := 0
	for first < t.n && t.ring[(t.start+first)%size].at.Before(cutoff) {
		first++
	}
	if first == t.n {
		return h, nil // everything expired or nothing kept
	}
	oldest := t.ring[(t.start+first)%size].msg.Offset
	if oldest > since.Offset+1 {
		// Trimmed: start from what is still there, but say it is incomplete.
		since.Offset = oldest - 1
	} else {
		h.Complete = true
	}
	skip := int(since.Offset + 1 - oldest)
	for i := first + skip; i < t.n && len(h.Messages) < limit; i++ {
		h.Messages = append(h.Messages, t.ring[(t.start+i)%size].msg)
	}
	if n := len(h.Messages); n == 0 || h.Messages[n-1].Offset != t.offset {
		h.Complete = false
	}
	return h, nil
}

// Close implements Broker.
func (m *Memory) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	return nil
}

var _ AsyncBroker = (*Memory)(nil)
