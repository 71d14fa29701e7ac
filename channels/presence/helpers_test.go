package presence_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/channels/presence"
	"github.com/hearth-rt/hearth/channels/wire"
	"github.com/hearth-rt/hearth/internal/pgtest"
	"github.com/hearth-rt/hearth/pubsub"
)

func TestMain(m *testing.M) {
	if helperMain() {
		return
	}
	code := m.Run()
	pgtest.Shutdown()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// Fast timings for tests: a silent node leaves within about 600 ms.
var fast = presence.Options{
	HeartbeatInterval: 100 * time.Millisecond,
	Timeout:           400 * time.Millisecond,
	DiffInterval:      10 * time.Millisecond,
}

// app is one Hearth node with presence on "room:*": a join with
// {"user": u, "meta": {...}} tracks u; the events "update" (payload: the
// new meta) and "untrack" change it; a join with "watch": true only
// receives the state; a join with "refuse": true tracks, then refuses.
type app struct {
	node *channels.Node
	p    *presence.Presence
	// duringJoin, when set, runs in Join right after Track.
	duringJoin func()
}

func newApp(t *testing.T, broker pubsub.Broker, nodeID string, opts presence.Options) *app {
	t.Helper()
	// channels.New registers the node with its broker, which may deliver
	// control messages from the other nodes at once, while presence.New
	// registers its handlers: channels guards that (no gate needed).
	n := channels.New(channels.Options{Broker: broker, NodeID: nodeID})
	a := &app{node: n, p: presence.New(n, opts)}
	n.Handle("room:*", channels.Handler{
		Join: func(_ context.Context, c *channels.Channel, ev channels.JoinEvent) (channels.JoinReply, error) {
			var params struct {
				User   string          `json:"user"`
				Meta   json.RawMessage `json:"meta"`
				Watch  bool            `json:"watch"`
				Refuse bool            `json:"refuse"`
				Many   int             `json:"many"`
			}
			if err := json.Unmarshal(ev.Params, &params); err != nil {
				return channels.JoinReply{}, channels.Refuse("bad params")
			}
			c.Set("user", params.User)
			if params.Watch {
				return channels.JoinReply{}, a.p.PushState(c)
			}
			var meta any
			if params.Meta != nil {
				meta = params.Meta
			}
			for i := range params.Many {
				if err := a.p.Track(c, params.User+strconv.Itoa(i), meta); err != nil {
					return channels.JoinReply{}, err
				}
			}
			if params.Many > 0 {
				return channels.JoinReply{}, nil
			}
			if err := a.p.Track(c, params.User, meta); err != nil {
				return channels.JoinReply{}, err
			}
			if a.duringJoin != nil {
				a.duringJoin()
			}
			if params.Refuse {
				return channels.JoinReply{}, channels.Refuse("refused after tracking")
			}
			return channels.JoinReply{}, nil
		},
		In: func(_ context.Context, c *channels.Channel, ev channels.InEvent) (channels.Reply, error) {
			user, _ := c.Get("user").(string)
			var err error
			switch ev.Event {
			case "update":
				err = a.p.Update(c, user, json.RawMessage(ev.Payload))
			case "untrack":
				err = a.p.Untrack(c, user)
			default:
				return channels.ErrorReply(map[string]string{"reason": "unknown event"}), nil
			}
			if err != nil {
				return channels.ErrorReply(map[string]string{"reason": err.Error()}), nil
			}
			return channels.OK(nil), nil
		},
	})
	t.Cleanup(func() { a.shutdown(t) })
	return a
}

func (a *app) shutdown(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.p.Shutdown(ctx); err != nil {
		t.Errorf("presence shutdown: %v", err)
	}
	a.node.CloseAll(channels.CloseGoingAway, "test over")
	a.node.Wait()
}

// recorder is a channels.Transport that keeps every frame.
type recorder struct {
	mu     sync.Mutex
	frames [][]byte
	closed bool
	wake   chan struct{}
}

func (r *recorder) Send(f []byte) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.frames = append(r.frames, f)
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return true
}

func (r *recorder) Close(int, string) {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
}

// client is one socket driven through the Transport seam. It keeps the
// presence view a Phoenix client builds from the frames it receives.
type client struct {
	t    *testing.T
	s    *channels.Socket
	r    *recorder
	seen int
	ref  int

	joinRef string
	view    *view
	diffs   int // presence_diff frames received
	states  int // presence_state frames received
}

func connect(t *testing.T, a *app) *client {
	t.Helper()
	s, err := a.node.NewSocket(context.Background(), channels.ConnectEvent{Params: url.Values{}})
	if err != nil {
		t.Fatalf("NewSocket: %v", err)
	}
	c := &client{t: t, s: s, r: &recorder{wake: make(chan struct{}, 1)}, view: newView()}
	s.Start(c.r)
	t.Cleanup(c.close)
	return c
}

// close ends the socket, as a dropped connection does.
func (c *client) close() {
	if c.s != nil {
		c.s.Closed()
		c.s = nil
	}
}

func (c *client) send(joinRef, topic, event string, payload any) string {
	c.t.Helper()
	c.ref++
	ref := strconv.Itoa(c.ref)
	p, err := json.Marshal(payload)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := c.s.HandleMessage(wire.AppendText(nil, joinRef, ref, topic, event, p), false); err != nil {
		c.t.Fatalf("HandleMessage: %v", err)
	}
	return ref
}

// next returns the next frame within 5 s, applying presence frames to the
// client's view.
func (c *client) next() wire.Message {
	c.t.Helper()
	m, ok := c.tryNext(5 * time.Second)
	if !ok {
		c.t.Fatalf("no frame within 5s")
	}
	return m
}

func (c *client) tryNext(d time.Duration) (wire.Message, bool) {
	c.t.Helper()
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for {
		c.r.mu.Lock()
		if c.seen < len(c.r.frames) {
			f := c.r.frames[c.seen]
			c.seen++
			c.r.mu.Unlock()
			return c.decode(f), true
		}
		c.r.mu.Unlock()
		select {
		case <-c.r.wake:
		case <-deadline.C:
			return wire.Message{}, false
		}
	}
}

func (c *client) decode(f []byte) wire.Message {
	c.t.Helper()
	if f[0]&0x0f != wire.OpText {
		c.t.Fatalf("unexpected binary frame")
	}
	p := f[2:]
	switch f[1] & 0x7f {
	case 126:
		p = f[4:]
	case 127:
		p = f[10:]
	}
	m, err := wire.DecodeText(p)
	if err != nil {
		c.t.Fatalf("undecodable frame %q: %v", p, err)
	}
	switch m.Event {
	case presence.EventState:
		c.states++
		if m.JoinRef != c.joinRef {
			c.t.Fatalf("presence_state with join_ref %q, want %q", m.JoinRef, c.joinRef)
		}
		c.view.syncState(c.t, m.Payload)
	case presence.EventDiff:
		c.diffs++
		c.view.syncDiff(c.t, m.Payload)
	}
	return m
}

// join joins topic and checks the reply's status.
func (c *client) join(topic string, params any, status string) {
	c.t.Helper()
	c.joinRef = strconv.Itoa(c.ref + 1)
	ref := c.send(c.joinRef, topic, "phx_join", params)
	c.expectReply(ref, status)
}

func (c *client) expectReply(ref, status string) {
	c.t.Helper()
	for {
		m := c.next()
		if m.Event != "phx_reply" {
			continue // presence frames may come first
		}
		if m.Ref != ref {
			c.t.Fatalf("reply to ref %s, want %s", m.Ref, ref)
		}
		var r struct {
			Status   string          `json:"status"`
			Response json.RawMessage `json:"response"`
		}
		if err := json.Unmarshal(m.Payload, &r); err != nil {
			c.t.Fatal(err)
		}
		if r.Status != status {
			c.t.Fatalf("reply to ref %s: %s %s, want %s", ref, r.Status, r.Response, status)
		}
		return
	}
}

// push sends an event on the joined channel and waits for an ok reply.
func (c *client) push(topic, event string, payload any) {
	c.t.Helper()
	ref := c.send(c.joinRef, topic, event, payload)
	c.expectReply(ref, "ok")
}

// waitView reads frames until the client's view equals want (key ->
// sorted list of one meta field, "status"), or fails after 10 s.
func (c *client) waitView(want map[string][]string) {
	c.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := c.view.summary()
		if equalSummary(got, want) {
			return
		}
		left := time.Until(deadline)
		if left <= 0 {
			c.t.Fatalf("presence view %v, want %v", got, want)
		}
		c.tryNext(left)
	}
}

// view is a Phoenix client's presence state, built with the semantics of
// phoenix.js Presence.syncState and syncDiff.
type view struct {
	keys map[string][]map[string]any
	// onJoin and onLeave calls, as "key" and "key" lists.
	joins, leaves []string
}

func newView() *view { return &view{keys: make(map[string][]map[string]any)} }

type wirePresence map[string]struct {
	Metas []map[string]any `json:"metas"`
}

func (v *view) syncState(t *testing.T, payload []byte) {
	t.Helper()
	var st wirePresence
	if err := json.Unmarshal(payload, &st); err != nil {
		t.Fatalf("presence_state %s: %v", payload, err)
	}
	joins, leaves := wirePresence{}, wirePresence{}
	for key, metas := range v.keys {
		if _, ok := st[key]; !ok {
			leaves[key] = struct {
				Metas []map[string]any `json:"metas"`
			}{metas}
		}
	}
	for key, p := range st {
		cur := refs(v.keys[key])
		var joined []map[string]any
		for _, m := range p.Metas {
			if !cur[ref(m)] {
				joined = append(joined, m)
			}
		}
		newRefs := refs(p.Metas)
		var left []map[string]any
		for _, m := range v.keys[key] {
			if !newRefs[ref(m)] {
				left = append(left, m)
			}
		}
		if len(joined) > 0 {
			joins[key] = struct {
				Metas []map[string]any `json:"metas"`
			}{joined}
		}
		if len(left) > 0 {
			leaves[key] = struct {
				Metas []map[string]any `json:"metas"`
			}{left}
		}
	}
	v.apply(joins, leaves)
}

func (v *view) syncDiff(t *testing.T, payload []byte) {
	t.Helper()
	var d struct {
		Joins  wirePresence `json:"joins"`
		Leaves wirePresence `json:"leaves"`
	}
	if err := json.Unmarshal(payload, &d); err != nil {
		t.Fatalf("presence_diff %s: %v", payload, err)
	}
	if d.Joins == nil || d.Leaves == nil {
		t.Fatalf("presence_diff %s: joins and leaves must both be objects", payload)
	}
	v.apply(d.Joins, d.Leaves)
}

func (v *view) apply(joins, leaves wirePresence) {
	for key, p := range joins {
		joined := refs(p.Metas)
		var kept []map[string]any
		for _, m := range v.keys[key] {
			if !joined[ref(m)] {
				kept = append(kept, m)
			}
		}
		v.keys[key] = append(kept, p.Metas...)
		v.joins = append(v.joins, key)
	}
	for key, p := range leaves {
		cur, ok := v.keys[key]
		if !ok {
			continue
		}
		gone := refs(p.Metas)
		var kept []map[string]any
		for _, m := range cur {
			if !gone[ref(m)] {
				kept = append(kept, m)
			}
		}
		v.leaves = append(v.leaves, key)
		if len(kept) == 0 {
			delete(v.keys, key)
		} else {
			v.keys[key] = kept
		}
	}
}

func ref(m map[string]any) string { s, _ := m["phx_ref"].(string); return s }

func refs(metas []map[string]any) map[string]bool {
	out := make(map[string]bool, len(metas))
	for _, m := range metas {
		out[ref(m)] = true
	}
	return out
}

// summary is the view as key -> sorted "status" fields of its metas ("-"
// for a meta without one).
func (v *view) summary() map[string][]string {
	out := make(map[string][]string, len(v.keys))
	for key, metas := range v.keys {
		out[key] = statuses(metas)
	}
	return out
}

func statuses(metas []map[string]any) []string {
	var s []string
	for _, m := range metas {
		st, ok := m["status"].(string)
		if !ok {
			st = "-"
		}
		s = append(s, st)
	}
	sort.Strings(s)
	return s
}

// listSummary is Presence.List in the same shape as view.summary.
func listSummary(t *testing.T, p *presence.Presence, topic string) map[string][]string {
	t.Helper()
	out := make(map[string][]string)
	for key, metas := range p.List(topic) {
		var ms []map[string]any
		for _, m := range metas {
			var d map[string]any
			if err := m.Decode(&d); err != nil {
				t.Fatal(err)
			}
			if d["phx_ref"] != m.Ref {
				t.Fatalf("meta %s: phx_ref is not %q", m.Data, m.Ref)
			}
			ms = append(ms, d)
		}
		out[key] = statuses(ms)
	}
	return out
}

// waitList polls Presence.List until it equals want, or fails after 10 s.
func waitList(t *testing.T, p *presence.Presence, topic string, want map[string][]string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := listSummary(t, p, topic)
		if equalSummary(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("List(%q) = %v, want %v", topic, got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func equalSummary(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || strings.Join(v, ",") != strings.Join(w, ",") {
			return false
		}
	}
	return true
}

func userJoin(user, status string) map[string]any {
	return map[string]any{"user": user, "meta": map[string]any{"status": status}}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var errDown = errors.New("bus: node is down")
