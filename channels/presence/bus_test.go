package presence_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hearth-rt/hearth/pubsub"
)

// bus is an in-process cluster for tests: each node gets a pubsub.Broker
// (busBroker) that delivers control messages to every node, the sender
// included, asynchronously and in publish order per sender, at most once,
// as a network would. Broadcasts are delivered likewise to subscribed
// nodes (presence does not use them). A node can be cut off (kill) and
// single messages can be lost (drop).
type bus struct {
	t     *testing.T
	mu    sync.Mutex
	nodes []*busBroker
	// drop, when set, is asked about every control message (sender,
	// data); true loses it for every receiver.
	drop func(from *busBroker, data []byte) bool
	// maxControl is the largest control message seen, in bytes.
	maxControl atomic.Int64
}

func newBus(t *testing.T) *bus { return &bus{t: t} }

// controlLimit is the largest control message the bus accepts: what the
// PostgreSQL broker can carry in one notification, once base64-encoded.
const controlLimit = 5800

type busBroker struct {
	bus  *bus
	down atomic.Bool

	mu     sync.Mutex
	h      pubsub.Handler
	subs   map[string]int
	queue  []func(pubsub.Handler)
	closed bool
	cond   *sync.Cond
	done   chan struct{}
	offset map[string]uint64
}

// broker returns a new node's broker. It is closed by t.Cleanup.
func (b *bus) broker() *busBroker {
	bb := &busBroker{bus: b, subs: make(map[string]int), done: make(chan struct{}), offset: make(map[string]uint64)}
	bb.cond = sync.NewCond(&bb.mu)
	b.mu.Lock()
	b.nodes = append(b.nodes, bb)
	b.mu.Unlock()
	go bb.deliver()
	b.t.Cleanup(func() { _ = bb.Close() })
	return bb
}

// kill cuts the node off, as SIGKILL would: from now on nothing it
// publishes reaches anyone, and nothing reaches it.
func (bb *busBroker) kill() { bb.down.Store(true) }

func (bb *busBroker) deliver() {
	defer close(bb.done)
	for {
		bb.mu.Lock()
		for len(bb.queue) == 0 && !bb.closed {
			bb.cond.Wait()
		}
		if bb.closed {
			bb.mu.Unlock()
			return
		}
		q := bb.queue
		bb.queue = nil
		h := bb.h
		bb.mu.Unlock()
		for _, fn := range q {
			if h != nil && !bb.down.Load() {
				fn(h)
			}
		}
	}
}

func (bb *busBroker) enqueue(fn func(pubsub.Handler)) {
	bb.mu.Lock()
	if !bb.closed {
		bb.queue = append(bb.queue, fn)
		bb.cond.Signal()
	}
	bb.mu.Unlock()
}

func (bb *busBroker) peers() []*busBroker {
	bb.bus.mu.Lock()
	defer bb.bus.mu.Unlock()
	return append([]*busBroker(nil), bb.bus.nodes...)
}

func (bb *busBroker) Register(h pubsub.Handler) {
	bb.mu.Lock()
	bb.h = h
	bb.mu.Unlock()
}

func (bb *busBroker) Publish(_ context.Context, m pubsub.Message) (pubsub.Position, error) {
	if bb.down.Load() {
		return pubsub.Position{}, errDown
	}
	bb.mu.Lock()
	bb.offset[m.Topic]++
	m.Epoch, m.Offset = "bus", bb.offset[m.Topic]
	bb.mu.Unlock()
	for _, peer := range bb.peers() {
		peer.mu.Lock()
		subscribed := peer.subs[m.Topic] > 0
		peer.mu.Unlock()
		if subscribed {
			msg := m
			peer.enqueue(func(h pubsub.Handler) { h.HandleMessage(&msg) })
		}
	}
	return m.Position(), nil
}

func (bb *busBroker) PublishControl(_ context.Context, data []byte) error {
	if bb.down.Load() {
		return errDown
	}
	if len(data) > controlLimit {
		bb.bus.t.Errorf("control message of %d bytes: over the %d a notification can carry", len(data), controlLimit)
		return pubsub.ErrTooLarge
	}
	for {
		cur := bb.bus.maxControl.Load()
		if int64(len(data)) <= cur || bb.bus.maxControl.CompareAndSwap(cur, int64(len(data))) {
			break
		}
	}
	bb.bus.mu.Lock()
	drop := bb.bus.drop
	bb.bus.mu.Unlock()
	if drop != nil && drop(bb, data) {
		return nil // lost on the way, as NOTIFY to a disconnected listener is
	}
	d := append([]byte(nil), data...)
	for _, peer := range bb.peers() {
		peer.enqueue(func(h pubsub.Handler) { h.HandleControl(d) })
	}
	return nil
}

func (bb *busBroker) Subscribe(_ context.Context, topic string) error {
	bb.mu.Lock()
	bb.subs[topic]++
	bb.mu.Unlock()
	return nil
}

func (bb *busBroker) Unsubscribe(_ context.Context, topic string) error {
	bb.mu.Lock()
	if bb.subs[topic] > 0 {
		bb.subs[topic]--
	}
	bb.mu.Unlock()
	return nil
}

func (bb *busBroker) History(_ context.Context, topic string, since pubsub.Position, _ int) (pubsub.History, error) {
	bb.mu.Lock()
	defer bb.mu.Unlock()
	top := pubsub.Position{Epoch: "bus", Offset: bb.offset[topic]}
	return pubsub.History{Top: top, Complete: since == top}, nil
}

func (bb *busBroker) Close() error {
	bb.mu.Lock()
	if bb.closed {
		bb.mu.Unlock()
		return nil
	}
	bb.closed = true
	bb.cond.Signal()
	bb.mu.Unlock()
	<-bb.done
	return nil
}

var _ pubsub.Broker = (*busBroker)(nil)
