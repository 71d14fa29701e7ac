package presence_test

import (
	"bytes"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Clusters of nodes on the in-process bus. The same scenarios run on
// PostgreSQL in postgres_test.go.

func TestClusterJoinUpdateLeave(t *testing.T) {
	b := newBus(t)
	n1 := newApp(t, b.broker(), "", fast)
	n2 := newApp(t, b.broker(), "", fast)
	testJoinUpdateLeave(t, n1, n2)
}

// testJoinUpdateLeave: presences tracked on one node are seen by clients
// of the other, and changes travel both ways.
func testJoinUpdateLeave(t *testing.T, n1, n2 *app) {
	w1 := connect(t, n1)
	w1.join("room:x", map[string]any{"watch": true}, "ok")
	w2 := connect(t, n2)
	w2.join("room:x", map[string]any{"watch": true}, "ok")

	alice := connect(t, n1)
	alice.join("room:x", userJoin("alice", "online"), "ok")
	bob := connect(t, n2)
	bob.join("room:x", userJoin("bob", "online"), "ok")
	both := map[string][]string{"alice": {"online"}, "bob": {"online"}}
	w1.waitView(both)
	w2.waitView(both)
	alice.waitView(both)
	bob.waitView(both)
	waitList(t, n1.p, "room:x", both)
	waitList(t, n2.p, "room:x", both)
	if m := n1.p.Get("room:x", "bob"); len(m) != 1 || m[0].Node != n2.node.ID() {
		t.Fatalf("bob on node 1: %+v, want one meta owned by %s", m, n2.node.ID())
	}

	// A late joiner on node 2 gets the whole cluster's state at once.
	carol := connect(t, n2)
	carol.join("room:x", userJoin("carol", "online"), "ok")
	for carol.states == 0 {
		carol.next()
	}
	got := carol.view.summary()
	delete(got, "carol") // her own join may come in the next diff
	if !equalSummary(got, both) {
		t.Fatalf("carol's first state: %v", got)
	}

	bob.push("room:x", "update", map[string]any{"status": "typing"})
	alice.push("room:x", "update", map[string]any{"status": "away"})
	changed := map[string][]string{"alice": {"away"}, "bob": {"typing"}, "carol": {"online"}}
	w1.waitView(changed)
	w2.waitView(changed)

	bob.push("room:x", "phx_leave", map[string]any{})
	carol.close()
	left := map[string][]string{"alice": {"away"}}
	w1.waitView(left)
	w2.waitView(left)
	alice.waitView(left)
	waitList(t, n1.p, "room:x", left)
	waitList(t, n2.p, "room:x", left)
	if !strings.Contains(strings.Join(w1.view.leaves, ","), "bob") {
		t.Fatalf("node 1's watcher saw no leave for bob: %v", w1.view.leaves)
	}
}

func TestClusterNodeDeathTimesOut(t *testing.T) {
	b := newBus(t)
	n1 := newApp(t, b.broker(), "", fast)
	b2 := b.broker()
	n2 := newApp(t, b2, "", fast)
	w1 := connect(t, n1)
	w1.join("room:x", map[string]any{"watch": true}, "ok")
	alice := connect(t, n1)
	alice.join("room:x", userJoin("alice", "on"), "ok")
	for i := range 3 {
		c := connect(t, n2)
		c.join("room:x", userJoin(fmt.Sprint("b", i), "on"), "ok")
	}
	w1.waitView(map[string][]string{"alice": {"on"}, "b0": {"on"}, "b1": {"on"}, "b2": {"on"}})

	// Node 2 vanishes without a word: no untrack, no goodbye.
	b2.kill()
	killed := time.Now()
	w1.waitView(map[string][]string{"alice": {"on"}})
	took := time.Since(killed)
	bound := fast.Timeout + fast.HeartbeatInterval/5 + fast.DiffInterval
	t.Logf("presences of the dead node left after %v (bound %v plus delivery)", took.Round(time.Millisecond), bound)
	if took < fast.Timeout-fast.HeartbeatInterval {
		t.Fatalf("presences left after %v: before the timeout, from a live-looking node", took)
	}
	waitList(t, n1.p, "room:x", map[string][]string{"alice": {"on"}})
}

func TestClusterGoodbyeOnShutdown(t *testing.T) {
	b := newBus(t)
	slow := fast
	slow.Timeout = time.Minute // the goodbye, not the timeout, must remove them
	n1 := newApp(t, b.broker(), "", slow)
	n2 := newApp(t, b.broker(), "", slow)
	w1 := connect(t, n1)
	w1.join("room:x", map[string]any{"watch": true}, "ok")
	bob := connect(t, n2)
	bob.join("room:x", userJoin("bob", "on"), "ok")
	w1.waitView(map[string][]string{"bob": {"on"}})
	n2.shutdown(t) // presence goes first, the socket stays: the goodbye covers it
	w1.waitView(map[string][]string{})
}

// TestClusterRestartedNodeLeavesNoGhosts: a node restarted with the same
// NodeID (its previous run killed) replaces its previous run's presences
// at once, without waiting for the timeout.
func TestClusterRestartedNodeLeavesNoGhosts(t *testing.T) {
	b := newBus(t)
	slow := fast
	slow.Timeout = time.Minute
	n1 := newApp(t, b.broker(), "node-1", slow)
	b2 := b.broker()
	n2 := newApp(t, b2, "node-2", slow)
	w1 := connect(t, n1)
	w1.join("room:x", map[string]any{"watch": true}, "ok")
	old := connect(t, n2)
	old.join("room:x", userJoin("bob", "old"), "ok")
	w1.waitView(map[string][]string{"bob": {"old"}})

	b2.kill()
	again := newApp(t, b.broker(), "node-2", slow)
	w1.waitView(map[string][]string{}) // the new run said hello: the old one is gone
	bob := connect(t, again)
	bob.join("room:x", userJoin("bob", "new"), "ok")
	w1.waitView(map[string][]string{"bob": {"new"}})
}

// TestClusterNewNodeLearnsState: a node that starts after others learns
// their presences at once (it asks for them), not at the next heartbeat.
func TestClusterNewNodeLearnsState(t *testing.T) {
	b := newBus(t)
	slow := fast
	slow.HeartbeatInterval, slow.Timeout = 10*time.Second, 30*time.Second
	n1 := newApp(t, b.broker(), "", slow)
	want := map[string][]string{}
	for i := range 50 {
		c := connect(t, n1)
		user := fmt.Sprint("u", i)
		c.join("room:x", userJoin(user, "on"), "ok")
		want[user] = []string{"on"}
	}
	n2 := newApp(t, b.broker(), "", slow)
	waitList(t, n2.p, "room:x", want)
	w2 := connect(t, n2)
	w2.join("room:x", map[string]any{"watch": true}, "ok")
	w2.waitView(want)
	if w2.states != 1 || w2.diffs != 0 {
		t.Fatalf("the new node's client got %d states and %d diffs, want all in one state", w2.states, w2.diffs)
	}
}

// TestClusterResyncAfterLostMessages: messages lost on the way (a
// listener that reconnected, say) are noticed by the numbering and
// repaired by a state transfer.
func TestClusterResyncAfterLostMessages(t *testing.T) {
	opts := fast
	opts.Timeout = 5 * time.Second // losses, not timeouts, are tested here
	setup := func(t *testing.T) (b *bus, b2 *busBroker, n2 *app, w1 *client, want map[string][]string) {
		b = newBus(t)
		n1 := newApp(t, b.broker(), "", opts)
		b2 = b.broker()
		n2 = newApp(t, b2, "", opts)
		w1 = connect(t, n1)
		w1.join("room:x", map[string]any{"watch": true}, "ok")
		// Let the start-up exchange settle first.
		first := connect(t, n2)
		first.join("room:x", userJoin("first", "on"), "ok")
		w1.waitView(map[string][]string{"first": {"on"}})
		return b, b2, n2, w1, map[string][]string{"first": {"on"}}
	}
	is := func(data []byte, typ string) bool { return bytes.HasPrefix(data, []byte(typ+"\n")) }

	t.Run("delta", func(t *testing.T) {
		b, b2, n2, w1, want := setup(t)
		var lost atomic.Int32
		b.mu.Lock()
		b.drop = func(from *busBroker, data []byte) bool {
			return from == b2 && is(data, typeDelta) && lost.CompareAndSwap(0, 1)
		}
		b.mu.Unlock()
		// Join until a delta was lost (the first change may travel in a
		// state transfer instead).
		for i := 0; lost.Load() == 0; i++ {
			if i == 50 {
				t.Fatal("no delta was lost")
			}
			c := connect(t, n2)
			user := fmt.Sprint("u", i)
			c.join("room:x", userJoin(user, "on"), "ok")
			want[user] = []string{"on"}
			waitList(t, n2.p, "room:x", want)
		}
		w1.waitView(want)
	})

	t.Run("delta and state", func(t *testing.T) {
		b, b2, n2, w1, want := setup(t)
		var states atomic.Int32
		b.mu.Lock()
		b.drop = func(from *busBroker, data []byte) bool {
			if from != b2 {
				return false
			}
			// Every change is lost; so are the first two state transfers.
			return is(data, typeDelta) || (is(data, typeState) && states.Add(1) <= 2)
		}
		b.mu.Unlock()
		c := connect(t, n2)
		c.join("room:x", userJoin("late", "on"), "ok")
		want["late"] = []string{"on"}
		w1.waitView(want)
		if n := states.Load(); n < 3 {
			t.Fatalf("%d state transfers, want the third to repair the view", n)
		}
	})
}

const (
	typeDelta = "presence.delta"
	typeState = "presence.state"
)

// TestClusterLargeStateInSmallMessages: a big state transfer is split
// into control messages a PostgreSQL notification can carry.
func TestClusterLargeStateInSmallMessages(t *testing.T) {
	b := newBus(t)
	slow := fast
	slow.HeartbeatInterval, slow.Timeout = 10*time.Second, 30*time.Second
	n1 := newApp(t, b.broker(), "", slow)
	want := map[string][]string{}
	big := strings.Repeat("x", 900)
	c := connect(t, n1)
	const user = "user-with-a-longish-name-"
	c.join("room:x", map[string]any{"user": user, "many": 300, "meta": map[string]any{"status": "on", "pad": big}}, "ok")
	for i := range 300 {
		want[fmt.Sprint(user, i)] = []string{"on"}
	}
	n2 := newApp(t, b.broker(), "", slow)
	waitList(t, n2.p, "room:x", want)
	if m := b.maxControl.Load(); m > 5000 || m < 4000 {
		t.Fatalf("largest control message: %d bytes, want parts filled up to 5000", m)
	}
}
