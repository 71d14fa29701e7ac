package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"sort"
	"sync"
	"time"

	"github.com/hearth-rt/hearth/channels"
)

// Cluster protocol, on the node's control messages (at most once, not
// stored):
//
//   - api.hb: a node's state (NodeInfo), every HeartbeatInterval, every
//     second while a dashboard is open anywhere (Watching).
//   - api.ask: a request to every node (topics, a user's sockets, a topic's
//     subscribers), with an id.
//   - api.answer: one node's answer to an ask, addressed to its sender.
//
// Control messages must stay small (NOTIFY payloads are under 8000 bytes
// and the PostgreSQL broker base64-encodes them), so lists are cut to
// maxControl bytes of JSON and say so (Truncated).
const (
	ctlHeartbeat = "api.hb"
	ctlAsk       = "api.ask"
	ctlAnswer    = "api.answer"

	askTopics = "topics"
	askUser   = "user"
	askTopic  = "topic"

	maxControl      = 5000
	topTopics       = 10
	maxSocketTopics = 10 // topics listed per socket in an answer
)

// NodeInfo is one node's state, as GET /nodes and the dashboard show it.
type NodeInfo struct {
	Node    string `json:"node"`
	Version string `json:"version"`
	// State is "ready", "draining", "not ready" or, for a node not heard
	// from for three heartbeats, "unreachable".
	State    string `json:"state"`
	Ready    bool   `json:"ready"`
	Listener string `json:"listener,omitempty"`
	Sockets  int    `json:"sockets"`
	Channels int    `json:"channels"`
	Topics   int    `json:"topics"`

	JoinsOK            uint64 `json:"joins_ok"`
	JoinsRefused       uint64 `json:"joins_refused"`
	JoinsShed          uint64 `json:"joins_shed"`
	ConnectionsShed    uint64 `json:"connections_shed"`
	SlowConsumerCloses uint64 `json:"slow_consumer_closes"`
	RateLimitCloses    uint64 `json:"rate_limit_closes"`
	MessagesIn         uint64 `json:"messages_in"`
	Broadcasts         uint64 `json:"broadcasts"`
	Deliveries         uint64 `json:"deliveries"`

	// Rates per second over the last heartbeat interval: client messages
	// in, broadcast frames out (deliveries), broadcasts fanned out.
	InRate        float64 `json:"in_per_sec"`
	OutRate       float64 `json:"out_per_sec"`
	BroadcastRate float64 `json:"broadcasts_per_sec"`
	// PublishMs is the broker's mean publish time over the last interval
	// (queue and commit), when it measures one; RoundTripMs the time a
	// heartbeat of this node took through the broker back to itself.
	PublishMs   float64 `json:"publish_ms"`
	RoundTripMs float64 `json:"round_trip_ms"`

	TopTopics []TopicCount `json:"top_topics,omitempty"`
	Watching  bool         `json:"watching,omitempty"`
	SentAt    int64        `json:"sent_at"` // unix milliseconds
	Inc       string       `json:"inc"`     // this incarnation of the node
	UptimeSec int64        `json:"uptime_sec"`
}

// TopicCount is a topic and its subscribers on one node.
type TopicCount struct {
	Topic string `json:"t"`
	Count int    `json:"n"`
}

type askMsg struct {
	ID   string `json:"id"`
	From string `json:"from"` // incarnation of the asking API
	Kind string `json:"kind"`
	Arg  string `json:"arg,omitempty"`
}

type answerMsg struct {
	ID        string                `json:"id"`
	To        string                `json:"to"`
	Node      string                `json:"node"`
	Topics    []TopicCount          `json:"topics,omitempty"`
	Sockets   []channels.SocketInfo `json:"sockets,omitempty"`
	Truncated bool                  `json:"truncated,omitempty"`
}

type peer struct {
	info NodeInfo
	seen time.Time
}

// cluster is the API's view of the other nodes, and its heartbeat.
type cluster struct {
	a       *API
	inc     string
	started time.Time

	mu      sync.Mutex
	peers   map[string]*peer // by node id
	pending map[string]chan answerMsg
	watchAt time.Time // last time any node said a dashboard is open
	closed  bool      // no new goroutines: close waits for wg
	last    sample
	rtt     float64
	self    NodeInfo

	dash *dashboard

	wake chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

type sample struct {
	at                             time.Time
	in, out, broadcasts, published uint64
	publishSeconds                 float64
}

func newCluster(a *API) *cluster {
	var b [6]byte
	_, _ = rand.Read(b[:])
	c := &cluster{
		a: a, inc: hex.EncodeToString(b[:]), started: time.Now(),
		peers: map[string]*peer{}, pending: map[string]chan answerMsg{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}),
	}
	c.dash = newDashboard(a, c)
	n := a.node
	n.HandleControl(ctlHeartbeat, c.onHeartbeat)
	n.HandleControl(ctlAsk, c.onAsk)
	n.HandleControl(ctlAnswer, c.onAnswer)
	c.wg.Add(1)
	go c.run()
	return c
}

func (c *cluster) close() {
	c.once.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.mu.Unlock()
		close(c.stop)
	})
	c.wg.Wait()
}

// goAdd counts a new goroutine, unless the cluster is closed.
func (c *cluster) goAdd() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.wg.Add(1)
	return true
}

// watching reports whether a dashboard is open on some node.
func (c *cluster) watching() bool {
	if c.dash.open() {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Since(c.watchAt) < 3*time.Second
}

// run sends the heartbeat: every HeartbeatInterval, every second while a
// dashboard is open anywhere, and at once when a dashboard opens here.
func (c *cluster) run() {
	defer c.wg.Done()
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-c.wake:
		case <-t.C:
		}
		c.beat()
		d := c.a.opts.HeartbeatInterval
		if c.watching() {
			d = min(d, time.Second)
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(d)
	}
}

// measure samples this node's counters: cheap atomic loads, once per
// heartbeat.
func (c *cluster) measure() NodeInfo {
	a := c.a
	st := a.node.Stats()
	h := Health{Ready: true}
	if a.opts.Health != nil {
		h = a.opts.Health()
	}
	now := time.Now()
	topN, ntopics := topOfNode(a.node, topTopics)
	info := NodeInfo{
		Node: a.node.ID(), Version: a.version, Ready: h.Ready, Listener: h.Listener,
		Sockets: st.Sockets, Channels: st.Channels, Topics: ntopics,
		JoinsOK: st.JoinsOK, JoinsRefused: st.JoinsRefused, JoinsShed: st.JoinsShed,
		ConnectionsShed: h.ConnectionsShed, SlowConsumerCloses: h.SlowConsumerCloses, RateLimitCloses: h.RateLimitCloses,
		MessagesIn: st.MessagesIn, Broadcasts: st.Broadcasts, Deliveries: st.Deliveries,
		TopTopics: topN, Watching: c.dash.open(),
		SentAt: now.UnixMilli(), Inc: c.inc, UptimeSec: int64(now.Sub(c.started).Seconds()),
	}
	switch {
	case h.Draining:
		info.State = "draining"
	case !h.Ready:
		info.State = "not ready"
	default:
		info.State = "ready"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.last; !p.at.IsZero() {
		if dt := now.Sub(p.at).Seconds(); dt > 0 {
			info.InRate = float64(st.MessagesIn-p.in) / dt
			info.OutRate = float64(st.Deliveries-p.out) / dt
			info.BroadcastRate = float64(st.Broadcasts-p.broadcasts) / dt
		}
		if dn := h.Published - p.published; dn > 0 {
			info.PublishMs = (h.PublishSeconds - p.publishSeconds) / float64(dn) * 1000
		}
	}
	c.last = sample{at: now, in: st.MessagesIn, out: st.Deliveries, broadcasts: st.Broadcasts, published: h.Published, publishSeconds: h.PublishSeconds}
	info.RoundTripMs = c.rtt
	c.self = info
	return info
}

// topOfNode returns the node's n topics with the most subscribers, most
// first, and how many topics it has, without copying the registry.
func topOfNode(node *channels.Node, n int) ([]TopicCount, int) {
	out := make([]TopicCount, 0, n+1)
	total := 0
	node.EachTopic(func(t string, k int) {
		total++
		if n <= 0 || len(out) == n && !more(TopicCount{t, k}, out[n-1]) {
			return
		}
		i := sort.Search(len(out), func(i int) bool { return more(TopicCount{t, k}, out[i]) })
		out = append(out, TopicCount{})
		copy(out[i+1:], out[i:])
		out[i] = TopicCount{t, k}
		if len(out) > n {
			out = out[:n]
		}
	})
	return out, total
}

// more orders topics by subscribers, most first, then by name.
func more(a, b TopicCount) bool {
	if a.Count != b.Count {
		return a.Count > b.Count
	}
	return a.Topic < b.Topic
}

// top returns the n topics with the most subscribers, most first.
func top(topics map[string]int, n int) []TopicCount {
	out := make([]TopicCount, 0, len(topics))
	for t, k := range topics {
		out = append(out, TopicCount{t, k})
	}
	sort.Slice(out, func(i, j int) bool { return more(out[i], out[j]) })
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out
}

func (c *cluster) beat() {
	info := c.measure()
	b, _ := json.Marshal(info)
	for len(b) > maxControl && len(info.TopTopics) > 0 {
		info.TopTopics = info.TopTopics[:len(info.TopTopics)/2]
		b, _ = json.Marshal(info)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.a.node.PublishControl(ctx, ctlHeartbeat, b); err != nil {
		c.a.log.Warn("api: heartbeat failed", "err", err)
	}
}

func (c *cluster) onHeartbeat(b []byte) {
	var info NodeInfo
	if err := json.Unmarshal(b, &info); err != nil || info.Node == "" {
		c.a.log.Warn("api: malformed heartbeat ignored")
		return
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if info.Watching {
		if now.Sub(c.watchAt) >= 3*time.Second {
			// A dashboard opened somewhere: beat now, then every second.
			select {
			case c.wake <- struct{}{}:
			default:
			}
		}
		c.watchAt = now
	}
	if info.Inc == c.inc {
		c.rtt = float64(now.UnixMilli()-info.SentAt) + 0 // same clock: the broker's round trip
		return
	}
	c.peers[info.Node] = &peer{info: info, seen: now}
}

// nodeList returns this node (measured now) and the others as last heard,
// sorted by id. Nodes silent for three heartbeats are "unreachable";
// after ten they are forgotten.
func (c *cluster) nodeList() []NodeInfo {
	c.mu.Lock()
	self := c.self
	c.mu.Unlock()
	if self.Node == "" {
		self = c.measure()
	} else {
		// Counts as of now; the rates stay those of the last heartbeat.
		st := c.a.node.Stats()
		self.Sockets, self.Channels = st.Sockets, st.Channels
		self.JoinsOK, self.JoinsRefused, self.JoinsShed = st.JoinsOK, st.JoinsRefused, st.JoinsShed
		self.MessagesIn, self.Broadcasts, self.Deliveries = st.MessagesIn, st.Broadcasts, st.Deliveries
		self.Watching = c.dash.open()
	}
	out := []NodeInfo{self}
	hb := c.a.opts.HeartbeatInterval
	now := time.Now()
	c.mu.Lock()
	for id, p := range c.peers {
		age := now.Sub(p.seen)
		if age > 10*hb {
			delete(c.peers, id)
			continue
		}
		info := p.info
		if age > 3*hb {
			info.State, info.Ready = "unreachable", false
		}
		out = append(out, info)
	}
	c.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}

// ask sends a question to every node and collects the answers until every
// node known to be alive answered or AskTimeout passed. missing lists the
// nodes that did not answer.
func (c *cluster) ask(ctx context.Context, kind, arg string) (answers []answerMsg, missing []string, err error) {
	var b [8]byte
	_, _ = rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	ch := make(chan answerMsg, 64)
	want := map[string]bool{c.a.node.ID(): true}
	c.mu.Lock()
	c.pending[id] = ch
	for node, p := range c.peers {
		if time.Since(p.seen) <= 3*c.a.opts.HeartbeatInterval {
			want[node] = true
		}
	}
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
	}()
	msg, _ := json.Marshal(askMsg{ID: id, From: c.inc, Kind: kind, Arg: arg})
	if err := c.a.node.PublishControl(ctx, ctlAsk, msg); err != nil {
		return nil, nil, err
	}
	t := time.NewTimer(c.a.opts.AskTimeout)
	defer t.Stop()
	got := map[string]bool{}
	for len(got) < len(want) || !allIn(want, got) {
		select {
		case an := <-ch:
			if !got[an.Node] {
				got[an.Node] = true
				answers = append(answers, an)
			}
			continue
		case <-t.C:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
		break
	}
	for node := range want {
		if !got[node] {
			missing = append(missing, node)
		}
	}
	sort.Strings(missing)
	if missing == nil {
		missing = []string{}
	}
	return answers, missing, nil
}

func allIn(want, got map[string]bool) bool {
	for k := range want {
		if !got[k] {
			return false
		}
	}
	return true
}

// onAsk answers on a goroutine of its own: listing sockets waits for their
// handlers, which must not hold up the broker's delivery.
func (c *cluster) onAsk(b []byte) {
	var q askMsg
	if err := json.Unmarshal(b, &q); err != nil || q.ID == "" {
		c.a.log.Warn("api: malformed ask ignored")
		return
	}
	if !c.goAdd() {
		return
	}
	go func() {
		defer c.wg.Done()
		an := answerMsg{ID: q.ID, To: q.From, Node: c.a.node.ID()}
		n := c.a.node
		switch q.Kind {
		case askTopics:
			an.Topics = top(n.Topics(), 0)
		case askUser:
			an.Sockets = n.SocketsOf(q.Arg, 100)
		case askTopic:
			an.Sockets = n.Subscribers(q.Arg, 100)
		default:
			return
		}
		for i := range an.Sockets {
			if t := an.Sockets[i].Topics; len(t) > maxSocketTopics {
				an.Sockets[i].Topics, an.Truncated = t[:maxSocketTopics], true
			}
		}
		out, _ := json.Marshal(an)
		for len(out) > maxControl {
			an.Truncated = true
			switch {
			case len(an.Topics) > 0:
				an.Topics = an.Topics[:len(an.Topics)/2]
			case len(an.Sockets) > 0:
				an.Sockets = an.Sockets[:len(an.Sockets)/2]
			}
			out, _ = json.Marshal(an)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := n.PublishControl(ctx, ctlAnswer, out); err != nil {
			c.a.log.Warn("api: answer failed", "err", err)
		}
	}()
}

func (c *cluster) onAnswer(b []byte) {
	var an answerMsg
	if err := json.Unmarshal(b, &an); err != nil {
		c.a.log.Warn("api: malformed answer ignored")
		return
	}
	if an.To != c.inc {
		return
	}
	c.mu.Lock()
	ch := c.pending[an.ID]
	c.mu.Unlock()
	if ch != nil {
		select {
		case ch <- an:
		default:
		}
	}
}
