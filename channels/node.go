package channels

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hearth-rt/hearth/channels/wire"
	"github.com/hearth-rt/hearth/pubsub"
)

// Options configures a Node. The zero value works: an in-process broker,
// everyone may connect, 100 channels per socket, no logging.
type Options struct {
	// Broker carries broadcasts between nodes and keeps history. Nil means
	// a new in-process pubsub.Memory. The node registers itself with it;
	// the caller still owns it and closes it after the node.
	Broker pubsub.Broker
	// Connect authorizes sockets. Nil accepts everyone anonymously.
	Connect ConnectFunc
	// MaxChannels is how many channels one socket may join. Zero means 100.
	MaxChannels int
	// MaxOutQueue is how many intercepted broadcasts may wait for one
	// socket's Out handler before the socket is closed as a slow consumer.
	// Zero means 1024.
	MaxOutQueue int
	// JoinRate limits joins per second on this node (admission control
	// against reconnect storms). Zero means 5,000; negative, no limit.
	JoinRate float64
	// JoinBurst is how many joins may come at once above JoinRate. Zero
	// means twice JoinRate.
	JoinBurst int
	// JoinRatePerIP limits joins per second per client IP (the address the
	// transport resolved, trusted proxies included), so that one address
	// (a NAT, a misbehaving script) cannot take the whole node's rate.
	// Zero means a quarter of JoinRate; negative, no limit.
	JoinRatePerIP float64
	// JoinBurstPerIP is the per-IP burst. Zero means a quarter of
	// JoinBurst, at least 200 (a page rejoining all its channels at once).
	JoinBurstPerIP int
	// HistoryLimit is the most messages replayed to a recovering client.
	// Zero means 1000; beyond it recovery is reported incomplete.
	HistoryLimit int
	// Refresh, when set, pushes fresh tokens to sockets whose connect hook
	// gave an expiry (ConnectReply.ExpiresAt), re-checking the session each
	// time. Nil means no refresh.
	Refresh *RefreshOptions
	// NodeID names this node in logs and in socket ids. Empty means random.
	NodeID string
	// Logger receives structured logs. Nil means silent.
	Logger *slog.Logger
}

// Node is one server's channel layer: the topic router, the local hub of
// subscriptions and the bridge to the cluster broker. Create it with [New],
// register channels with [Node.Handle], then serve it with package server.
type Node struct {
	opts   Options
	broker pubsub.Broker
	router router
	hub    hub
	log    *slog.Logger

	wg sync.WaitGroup // Out workers and token refreshes

	seq     atomic.Uint64
	started atomic.Bool
	stats   nodeStats
	joins   *joinLimiter

	cmu     sync.RWMutex // guards control: the broker may deliver while handlers register
	control map[string]func([]byte)

	mu      sync.Mutex // guards sockets, count, byID and the sockets' prev/next
	sockets *Socket    // a list linked through Socket.prev/next
	count   int
	byID    map[string]map[*Socket]struct{}
}

// New returns a Node. Register its handlers with [Node.Handle] before
// serving.
func New(opts Options) *Node {
	if opts.Broker == nil {
		opts.Broker = pubsub.NewMemory(pubsub.MemoryOptions{})
	}
	if opts.MaxChannels == 0 {
		opts.MaxChannels = 100
	}
	if opts.MaxOutQueue == 0 {
		opts.MaxOutQueue = 1024
	}
	if opts.JoinRate == 0 {
		opts.JoinRate = 5000
	}
	if opts.JoinBurst == 0 {
		opts.JoinBurst = int(2 * max(opts.JoinRate, 1))
	}
	if opts.JoinRatePerIP == 0 {
		opts.JoinRatePerIP = max(opts.JoinRate/4, 1)
		if opts.JoinRate < 0 {
			opts.JoinRatePerIP = -1
		}
	}
	if opts.JoinBurstPerIP == 0 {
		opts.JoinBurstPerIP = max(opts.JoinBurst/4, 200)
	}
	if opts.HistoryLimit == 0 {
		opts.HistoryLimit = 1000
	}
	if opts.NodeID == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		opts.NodeID = hex.EncodeToString(b[:])
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Node{
		opts:    opts,
		broker:  opts.Broker,
		log:     log.With("node", opts.NodeID),
		byID:    make(map[string]map[*Socket]struct{}),
		control: make(map[string]func([]byte)),
	}
	n.hub.init()
	n.hub.stats = &n.stats
	n.hub.log = n.log
	n.joins = newJoinLimiter(&n.opts)
	n.broker.Register((*brokerHandler)(n))
	return n
}

// ID returns the node's id.
func (n *Node) ID() string { return n.opts.NodeID }

// Broker returns the node's broker.
func (n *Node) Broker() pubsub.Broker { return n.broker }

// Handle registers the handler for a topic pattern: an exact topic
// ("room:lobby") or a prefix ending in '*' ("room:*"). It panics on an
// invalid or duplicate pattern, or when called after the first socket
// connected.
func (n *Node) Handle(pattern string, h Handler) {
	if n.started.Load() {
		panic("channels: Handle called after the node started serving")
	}
	n.router.add(pattern, h)
}

// Broadcast sends an event to every subscriber of topic on every node. It
// can be called from anywhere: an HTTP handler, a background job. The
// payload is encoded as described at [Channel.Push]. It returns once the
// broker accepted the message (for Postgres: committed).
func (n *Node) Broadcast(ctx context.Context, topic, event string, payload any) error {
	return n.publish(ctx, topic, event, payload, "")
}

// BroadcastAsync is Broadcast without waiting for the broker to store the
// message: it returns once the message is queued, blocking only while the
// broker's publishing queue is full (until ctx ends; ctx has no say over a
// queued message). done, when not nil, is called once with the outcome, on
// a goroutine of the broker: it must not block. The broadcasts made with
// BroadcastAsync to a topic are delivered in the order of the calls, so a
// loop that forwards a feed keeps its order and is not held to one
// database round trip per message. With a broker that does not implement
// pubsub.AsyncBroker it publishes before returning. An error means nothing
// was queued, and done is not called.
func (n *Node) BroadcastAsync(ctx context.Context, topic, event string, payload any, done func(error)) error {
	m, err := message(topic, event, payload, "")
	if err != nil {
		return err
	}
	var cb func(pubsub.Position, error)
	if done != nil {
		cb = func(_ pubsub.Position, err error) {
			if err != nil {
				err = broadcastErr(topic, err)
			}
			done(err)
		}
	}
	ab, ok := n.broker.(pubsub.AsyncBroker)
	if !ok {
		pos, err := n.broker.Publish(ctx, m)
		if err != nil {
			return broadcastErr(topic, err)
		}
		if cb != nil {
			cb(pos, nil)
		}
		return nil
	}
	if err := ab.PublishAsync(ctx, m, cb); err != nil {
		return broadcastErr(topic, err)
	}
	return nil
}

// broadcastErr says which broadcast a broker error is about.
func broadcastErr(topic string, err error) error {
	return errors.Join(errors.New("channels: broadcast to "+topic), err)
}

// message validates and encodes a broadcast.
func message(topic, event string, payload any, exclude string) (pubsub.Message, error) {
	if event == "" || len(event) > 255 {
		return pubsub.Message{}, errors.New("channels: event must be 1 to 255 bytes")
	}
	data, binary, err := encodePayload(payload)
	if err != nil {
		return pubsub.Message{}, err
	}
	return pubsub.Message{Topic: topic, Event: event, Payload: data, Binary: binary, Exclude: exclude}, nil
}

func (n *Node) publish(ctx context.Context, topic, event string, payload any, exclude string) error {
	m, err := message(topic, event, payload, exclude)
	if err != nil {
		return err
	}
	pos, err := n.broker.Publish(ctx, m)
	if err != nil {
		return broadcastErr(topic, err)
	}
	if n.log.Enabled(ctx, slog.LevelDebug) {
		// topic@offset identifies the broadcast on every node.
		n.log.Debug("broadcast published", "msg", topic+"@"+strconv.FormatUint(pos.Offset, 10), "event", event, "from", exclude)
	}
	return nil
}

// Disconnect closes every socket whose ConnectReply.ID is id, on every node
// of the cluster, with close code 4100 (the client may reconnect, and its
// connect hook decides again) unless code is given.
func (n *Node) Disconnect(ctx context.Context, id string, code int, reason string) error {
	if code == 0 {
		code = CloseDisconnected
	}
	b, err := json.Marshal(disconnectMsg{ID: id, Code: code, Reason: reason})
	if err != nil {
		return err
	}
	return n.PublishControl(ctx, controlDisconnect, b)
}

// HandleControl registers fn to receive the cluster control messages of
// type typ, published with [Node.PublishControl] on any node (this one
// included). Extensions such as presence use it. Types starting with
// "hearth." are reserved. It panics when typ is registered twice or the
// node already serves.
func (n *Node) HandleControl(typ string, fn func(data []byte)) {
	if n.started.Load() {
		panic("channels: HandleControl called after the node started serving")
	}
	if typ == "" || strings.ContainsAny(typ, "\n\x00") {
		panic("channels: invalid control type")
	}
	n.cmu.Lock()
	defer n.cmu.Unlock()
	if _, dup := n.control[typ]; dup {
		panic("channels: control type " + typ + " registered twice")
	}
	n.control[typ] = fn
}

// PublishControl sends a control message of type typ to every node of the
// cluster, at most once and without storing it.
func (n *Node) PublishControl(ctx context.Context, typ string, data []byte) error {
	b := make([]byte, 0, len(typ)+1+len(data))
	b = append(append(append(b, typ...), '\n'), data...)
	return n.broker.PublishControl(ctx, b)
}

// LocalBroadcast sends an event to the subscribers of topic on this node
// only. It is not stored and carries no stream position, so recovery never
// replays it: it suits derived, node-local state such as presence diffs.
func (n *Node) LocalBroadcast(topic, event string, payload any) error {
	data, binary, err := encodePayload(payload)
	if err != nil {
		return err
	}
	n.hub.fanout(&pubsub.Message{Topic: topic, Event: event, Payload: data, Binary: binary})
	return nil
}

// Stats are a node's counters since it started, for metrics.
type Stats struct {
	Sockets  int // connected now
	Channels int // joined now

	JoinsOK, JoinsRefused, JoinsCrashed uint64
	JoinsShed                           uint64 // refused by join admission control
	MessagesIn                          uint64 // client pushes handled by In (heartbeats, joins and leaves excluded)
	Broadcasts                          uint64 // broadcasts fanned out on this node
	Deliveries                          uint64 // broadcast frames queued to sockets
	Recoveries, RecoveriesIncomplete    uint64 // joins that asked for recovery, and those that could not be complete
	Replayed                            uint64 // messages replayed by recovery
	ChannelCrashes                      uint64
	TokenRefreshes, Revocations         uint64
}

type nodeStats struct {
	channels                                       atomic.Int64
	joinsOK, joinsRefused, joinsCrashed, joinsShed atomic.Uint64
	messagesIn, broadcasts, deliveries             atomic.Uint64
	recoveries, recoveriesIncomplete, replayed     atomic.Uint64
	crashes, tokenRefreshes, revocations           atomic.Uint64
}

// Stats returns the node's counters.
func (n *Node) Stats() Stats {
	st := &n.stats
	return Stats{
		Sockets: n.Sockets(), Channels: int(st.channels.Load()),
		JoinsOK: st.joinsOK.Load(), JoinsRefused: st.joinsRefused.Load(), JoinsCrashed: st.joinsCrashed.Load(), JoinsShed: st.joinsShed.Load(),
		MessagesIn: st.messagesIn.Load(), Broadcasts: st.broadcasts.Load(), Deliveries: st.deliveries.Load(),
		Recoveries: st.recoveries.Load(), RecoveriesIncomplete: st.recoveriesIncomplete.Load(), Replayed: st.replayed.Load(),
		ChannelCrashes: st.crashes.Load(), TokenRefreshes: st.tokenRefreshes.Load(), Revocations: st.revocations.Load(),
	}
}

// Sockets returns how many sockets are connected to this node.
func (n *Node) Sockets() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.count
}

// CloseAll closes every socket of this node with code and reason. Package
// server uses it on shutdown.
func (n *Node) CloseAll(code int, reason string) {
	for _, s := range n.socketList() {
		s.Close(code, reason)
	}
}

func (n *Node) socketList() []*Socket {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]*Socket, 0, n.count)
	for s := n.sockets; s != nil; s = s.next {
		out = append(out, s)
	}
	return out
}

// Wait blocks until every background worker of the node has finished. Call
// it after all sockets are closed.
func (n *Node) Wait() { n.wg.Wait() }

const controlDisconnect = "hearth.disconnect"

type disconnectMsg struct {
	ID     string `json:"id"`
	Code   int    `json:"code,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// brokerHandler is the node seen as a pubsub.Handler, kept off the Node's
// own method set.
type brokerHandler Node

func (h *brokerHandler) HandleMessage(m *pubsub.Message) { (*Node)(h).hub.fanout(m) }

func (h *brokerHandler) HandleControl(data []byte) {
	n := (*Node)(h)
	i := bytes.IndexByte(data, '\n')
	if i < 0 {
		n.log.Warn("invalid control message: no type")
		return
	}
	typ, body := string(data[:i]), data[i+1:]
	if typ == controlDisconnect {
		n.disconnectLocal(body)
		return
	}
	if typ == controlUnsubscribe {
		n.unsubscribeLocal(body)
		return
	}
	n.cmu.RLock()
	fn := n.control[typ]
	n.cmu.RUnlock()
	if fn != nil {
		fn(body)
	}
}

func (n *Node) disconnectLocal(body []byte) {
	var c disconnectMsg
	if err := json.Unmarshal(body, &c); err != nil {
		n.log.Warn("invalid disconnect message", "err", err)
		return
	}
	n.mu.Lock()
	var list []*Socket
	for s := range n.byID[c.ID] {
		list = append(list, s)
	}
	n.mu.Unlock()
	for _, s := range list {
		n.log.Info("socket disconnected by request", "socket_id", s.id, "conn", s.connID, "code", c.Code)
		s.Close(c.Code, c.Reason)
	}
}

func (n *Node) register(s *Socket) {
	n.started.Store(true)
	n.mu.Lock()
	s.next = n.sockets
	if s.next != nil {
		s.next.prev = s
	}
	n.sockets = s
	n.count++
	if s.id != "" {
		m := n.byID[s.id]
		if m == nil {
			m = make(map[*Socket]struct{})
			n.byID[s.id] = m
		}
		m[s] = struct{}{}
	}
	n.mu.Unlock()
}

func (n *Node) unregister(s *Socket) {
	n.mu.Lock()
	switch {
	case s.prev != nil:
		s.prev.next = s.next
	case n.sockets == s:
		n.sockets = s.next
	default:
		n.mu.Unlock()
		return // not registered
	}
	if s.next != nil {
		s.next.prev = s.prev
	}
	s.prev, s.next = nil, nil
	n.count--
	if m := n.byID[s.id]; m != nil {
		delete(m, s)
		if len(m) == 0 {
			delete(n.byID, s.id)
		}
	}
	n.mu.Unlock()
}

// NewSocket runs the connect hook for a client that wants to connect. On
// success the transport upgrades and calls [Socket.Start]. It is part of
// the [Transport] contract.
func (n *Node) NewSocket(ctx context.Context, ev ConnectEvent) (*Socket, error) {
	n.started.Store(true)
	var reply ConnectReply
	if n.opts.Connect != nil {
		var err error
		if reply, err = n.opts.Connect(ctx, ev); err != nil {
			return nil, err
		}
	}
	s := &Socket{
		node:      n,
		id:        reply.ID,
		assigns:   reply.Assigns,
		connID:    n.opts.NodeID + "." + strconv.FormatUint(n.seq.Add(1), 36),
		ip:        clientIP(ev.RemoteAddr),
		hearthExt: ev.Params.Get(ExtParam) != "",
	}
	if n.opts.Refresh != nil && !reply.ExpiresAt.IsZero() {
		if !time.Now().Before(reply.ExpiresAt) {
			// Expired already (a verifier's leeway let it through): refuse
			// now, before the transport upgrades, rather than close the
			// socket as soon as it starts.
			return nil, &CloseError{Code: CloseTokenExpired, Reason: "token expired"}
		}
		s.refresh = &refresher{expiresAt: reply.ExpiresAt}
	}
	return s, nil
}

// ExtParam is the socket URL query parameter with which a client announces
// that it understands Hearth's extensions of the Phoenix framing (binary
// broadcasts that carry their stream position). See docs/protocol.md.
const ExtParam = "_hearth"

func closeCode(err error) (int, string) {
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce.Code, ce.Reason
	}
	var de *wire.DecodeError
	if errors.As(err, &de) {
		return CloseInvalidPayload, wire.CloseReason("invalid message: " + de.Reason)
	}
	return CloseInternalError, "internal error"
}
