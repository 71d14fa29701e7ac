package presence

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/hearth-rt/hearth/channels"
)

// Options configures a [Presence]. The zero value works.
type Options struct {
	// Logger receives structured logs. Nil means silent.
	Logger *slog.Logger
	// HeartbeatInterval is how often this node tells the cluster it is
	// alive. Zero means 5 s.
	HeartbeatInterval time.Duration
	// Timeout is how long a node may stay silent before the others remove
	// its presences. It must be longer than HeartbeatInterval. Zero means
	// three heartbeat intervals. See the package documentation for the
	// bound on how long a dead node's presences stay listed.
	Timeout time.Duration
	// DiffInterval is how long changes of a topic are collected into one
	// presence_diff: a topic sends at most one diff per interval, so a
	// reconnect storm into a big room costs one fan-out per interval, not
	// one per member. A change to a quiet topic goes out at once. Zero
	// means 50 ms.
	DiffInterval time.Duration
}

// Event names, as Phoenix and phoenix.js Presence use them.
const (
	EventState = "presence_state"
	EventDiff  = "presence_diff"
)

// Limits on what can be tracked. Every change travels in cluster control
// messages, which must stay small (PostgreSQL NOTIFY payloads are below
// 8000 bytes).
const (
	// MaxKeyLen is the longest key, in bytes.
	MaxKeyLen = 255
	// MaxMetaSize is the largest meta, in bytes of JSON once phx_ref and
	// phx_ref_prev are added.
	MaxMetaSize = 1024
)

// Errors returned by Presence.
var (
	// ErrClosed is returned after Shutdown.
	ErrClosed = errors.New("presence: shut down")
	// ErrAlreadyTracked is returned by Track for a key the channel
	// already tracks (use Update).
	ErrAlreadyTracked = errors.New("presence: key already tracked on this channel")
	// ErrNotTracked is returned by Update and Untrack for a key the
	// channel does not track.
	ErrNotTracked = errors.New("presence: key not tracked on this channel")
	// ErrInvalidKey is returned for an empty key or one over MaxKeyLen.
	ErrInvalidKey = errors.New("presence: key must be 1 to 255 bytes")
	// ErrInvalidMeta is returned for a meta that does not encode to a
	// JSON object, or encodes to more than MaxMetaSize bytes.
	ErrInvalidMeta = errors.New("presence: meta must be a JSON object of at most 1024 bytes")
)

// Meta is one presence of a key: the key as tracked by one channel on one
// node.
type Meta struct {
	// Ref is the meta's phx_ref, unique in the cluster. An update gives
	// the meta a new ref.
	Ref string
	// Node is the ID of the channels.Node whose socket tracks it.
	Node string
	// Data is the JSON object clients receive: the tracked meta with
	// phx_ref (and, after an update, phx_ref_prev) added.
	Data json.RawMessage
}

// Decode unmarshals the meta's JSON object into v.
func (m Meta) Decode(v any) error { return json.Unmarshal(m.Data, v) }

// Presence tracks who is present in which topic across the cluster. Create
// it with [New] before the node serves, and stop it with
// [Presence.Shutdown]. Its methods are safe for concurrent use.
//
// Lock order: a socket's handler lock (held while handlers and OnTerminate
// hooks run), then Presence.mu. Presence never pushes to a channel or
// broadcasts while holding mu.
type Presence struct {
	node *channels.Node
	opts Options
	log  *slog.Logger
	self *member

	ctx    context.Context // cancelled when Shutdown gives up waiting
	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{} // wakes the diff loop
	pkick  chan struct{} // wakes the publisher
	stop   chan struct{} // closed by Shutdown
	once   sync.Once

	mu      sync.Mutex
	closed  bool
	refSeq  uint64
	topics  map[string]*topicState
	dirty   []*topicState
	members map[string]*member // remote members by memberKey
	local   map[*channels.Channel]*tracks
	out     outbox
}

// tracks are the keys one local channel tracks.
type tracks struct {
	keys      map[string]*entry
	statePush bool // presence_state was pushed to it
	ended     bool
}

// New returns a Presence for node and starts its two goroutines (the diff
// loop and the cluster publisher). It registers the node's "presence.*"
// control message handlers, so it must be called before the node serves,
// and at most once per node.
func New(node *channels.Node, opts Options) *Presence {
	if opts.HeartbeatInterval <= 0 {
		opts.HeartbeatInterval = 5 * time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 3 * opts.HeartbeatInterval
	}
	if opts.Timeout <= opts.HeartbeatInterval {
		panic("presence: Timeout must be longer than HeartbeatInterval")
	}
	if opts.DiffInterval <= 0 {
		opts.DiffInterval = 50 * time.Millisecond
	}
	if len(node.ID()) > 128 {
		panic("presence: node IDs longer than 128 bytes are not supported")
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Presence{
		node:    node,
		opts:    opts,
		log:     log.With("node", node.ID()),
		self:    &member{node: node.ID(), inc: hex.EncodeToString(b[:]), self: true, entries: make(map[string]*entry)},
		kick:    make(chan struct{}, 1),
		pkick:   make(chan struct{}, 1),
		stop:    make(chan struct{}),
		topics:  make(map[string]*topicState),
		members: make(map[string]*member),
		local:   make(map[*channels.Channel]*tracks),
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.registerControl()
	p.wg.Add(2)
	go p.diffLoop()
	go p.publishLoop()
	return p
}

// Track makes key present in the channel's topic with meta (any value that
// encodes to a JSON object; nil means {}), until [Presence.Untrack] or the
// end of the channel, whichever comes first.
//
// Call it from Handler.Join: the first Track of a channel pushes the
// topic's presence_state to that client (right after the join reply; see
// [Presence.PushState]), and every subscriber of the topic on every node
// then receives a presence_diff with the join. A refused join untracks by
// itself.
func (p *Presence) Track(c *channels.Channel, key string, meta any) error {
	if len(key) == 0 || len(key) > MaxKeyLen {
		return ErrInvalidKey
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	ref := p.nextRef()
	p.mu.Unlock()
	data, err := encodeMeta(meta, ref, "")
	if err != nil {
		return err
	}

	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	tr := p.local[c]
	first := tr == nil
	if first {
		tr = &tracks{keys: make(map[string]*entry)}
		p.local[c] = tr
	}
	if tr.keys[key] != nil {
		p.mu.Unlock()
		return ErrAlreadyTracked
	}
	e := p.newEntry(p.self, c.Topic(), key, ref, data)
	e.ch = c
	tr.keys[key] = e
	p.insert(e)
	var state, tail []byte
	if !tr.statePush {
		tr.statePush = true
		state, tail = p.snapshot(c.Topic())
	}
	p.mu.Unlock()
	p.wake()

	if first {
		c.OnTerminate(func(error) { p.untrackChannel(c, tr) })
		p.mu.Lock()
		ended := tr.ended
		p.mu.Unlock()
		if ended {
			return channels.ErrNotJoined
		}
	}
	if state != nil {
		return pushState(c, state, tail)
	}
	return nil
}

// pushState pushes a snapshot to one client.
func pushState(c *channels.Channel, state, tail []byte) error {
	if err := c.Push(EventState, json.RawMessage(state)); err != nil || tail == nil {
		return err
	}
	return c.Push(EventDiff, json.RawMessage(tail))
}

// Update replaces the meta of a key the channel tracks (a typing status,
// say). Clients see it as Phoenix shows it: in one presence_diff, a leave
// of the old meta and a join of the new one, whose phx_ref_prev is the old
// meta's phx_ref.
func (p *Presence) Update(c *channels.Channel, key string, meta any) error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return ErrClosed
	}
	tr := p.local[c]
	if tr == nil || tr.keys[key] == nil {
		p.mu.Unlock()
		return ErrNotTracked
	}
	prev := tr.keys[key].ref
	ref := p.nextRef()
	p.mu.Unlock()
	data, err := encodeMeta(meta, ref, prev)
	if err != nil {
		return err
	}

	p.mu.Lock()
	defer p.wake()
	defer p.mu.Unlock()
	old := tr.keys[key]
	if p.closed {
		return ErrClosed
	}
	if old == nil || p.local[c] != tr {
		return ErrNotTracked
	}
	if old.ref != prev {
		// A concurrent Update won: link to the meta it left.
		if data, err = encodeMeta(meta, ref, old.ref); err != nil {
			return err
		}
	}
	p.remove(old)
	e := p.newEntry(p.self, c.Topic(), key, ref, data)
	e.ch = c
	tr.keys[key] = e
	p.insert(e)
	return nil
}

// Untrack removes a key the channel tracks.
func (p *Presence) Untrack(c *channels.Channel, key string) error {
	p.mu.Lock()
	tr := p.local[c]
	if tr == nil || tr.keys[key] == nil {
		p.mu.Unlock()
		return ErrNotTracked
	}
	p.remove(tr.keys[key])
	delete(tr.keys, key)
	p.mu.Unlock()
	p.wake()
	return nil
}

// untrackChannel removes everything a channel tracks; it runs when the
// channel ends.
func (p *Presence) untrackChannel(c *channels.Channel, tr *tracks) {
	p.mu.Lock()
	tr.ended = true
	if p.local[c] == tr {
		delete(p.local, c)
	}
	for key, e := range tr.keys {
		p.remove(e)
		delete(tr.keys, key)
	}
	p.mu.Unlock()
	p.wake()
}

// PushState pushes the topic's presence_state to one client (possibly
// followed by a presence_diff with the latest changes). Track does it by
// itself for the first key a channel tracks; use PushState for clients
// that watch a topic without being tracked in it.
func (p *Presence) PushState(c *channels.Channel) error {
	p.mu.Lock()
	if tr := p.local[c]; tr != nil {
		tr.statePush = true
	}
	state, tail := p.snapshot(c.Topic())
	p.mu.Unlock()
	return pushState(c, state, tail)
}

// List returns the presences of a topic on the whole cluster, by key, as
// this node knows them.
func (p *Presence) List(topic string) map[string][]Meta {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.topics[topic]
	out := make(map[string][]Meta)
	if t == nil {
		return out
	}
	for name, k := range t.keys {
		metas := make([]Meta, len(k.metas))
		for i, e := range k.metas {
			metas[i] = Meta{Ref: e.ref, Node: e.owner.node, Data: bytes.Clone(e.meta)}
		}
		out[name] = metas
	}
	return out
}

// Get returns the metas of one key in a topic, oldest first, or nil.
func (p *Presence) Get(topic, key string) []Meta {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.topics[topic]
	if t == nil || t.keys[key] == nil {
		return nil
	}
	k := t.keys[key]
	metas := make([]Meta, len(k.metas))
	for i, e := range k.metas {
		metas[i] = Meta{Ref: e.ref, Node: e.owner.node, Data: bytes.Clone(e.meta)}
	}
	return metas
}

// Count returns how many keys are present in a topic, and how many metas
// they have in all.
func (p *Presence) Count(topic string) (keys, metas int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t := p.topics[topic]; t != nil {
		return len(t.keys), t.metas
	}
	return 0, 0
}

// Shutdown stops Presence: it sends the last changes and tells the other
// nodes that this node's presences are gone (so they do not wait for the
// timeout), then stops its goroutines. Close the sockets first (package
// server's Shutdown), so that their channels untrack; call it before
// closing the node's broker. If ctx ends first, the goodbye is abandoned
// (the other nodes then remove this node's presences after the timeout)
// and ctx's error is returned once the goroutines have stopped.
func (p *Presence) Shutdown(ctx context.Context) error {
	var err error
	p.once.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		close(p.stop)
		done := make(chan struct{})
		go func() { p.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			err = ctx.Err()
			p.cancel()
			<-done
		}
		p.cancel()
	})
	return err
}

// nextRef returns a new phx_ref: this incarnation's id and a counter, so
// refs never repeat across the cluster or across restarts. mu must be held.
func (p *Presence) nextRef() string {
	p.refSeq++
	return p.self.inc + strconv.FormatUint(p.refSeq, 36)
}

// encodeMeta encodes a meta as the JSON object clients see: phx_ref first,
// then phx_ref_prev for an update, then the application's fields (any
// phx_ref or phx_ref_prev of its own dropped).
func encodeMeta(meta any, ref, prev string) ([]byte, error) {
	var body []byte
	if meta != nil {
		var err error
		if body, err = json.Marshal(meta); err != nil {
			return nil, errors.Join(ErrInvalidMeta, err)
		}
	}
	body = bytes.TrimSpace(body)
	if len(body) == 0 || string(body) == "null" {
		body = []byte("{}")
	}
	if body[0] != '{' {
		return nil, ErrInvalidMeta
	}
	if bytes.Contains(body, []byte(`"phx_ref`)) {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(body, &obj); err != nil {
			return nil, errors.Join(ErrInvalidMeta, err)
		}
		delete(obj, "phx_ref")
		delete(obj, "phx_ref_prev")
		body, _ = json.Marshal(obj)
	}
	b := make([]byte, 0, len(body)+len(ref)+len(prev)+32)
	b = append(b, `{"phx_ref":"`...)
	b = append(b, ref...)
	b = append(b, '"')
	if prev != "" {
		b = append(b, `,"phx_ref_prev":"`...)
		b = append(b, prev...)
		b = append(b, '"')
	}
	if rest := bytes.TrimSpace(body[1:]); len(rest) > 0 && rest[0] != '}' {
		b = append(b, ',')
		b = append(b, rest...)
	} else {
		b = append(b, '}')
	}
	if len(b) > MaxMetaSize {
		return nil, ErrInvalidMeta
	}
	return b, nil
}
