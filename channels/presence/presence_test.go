package presence_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/channels/presence"
	"github.com/hearth-rt/hearth/pubsub"
)

func newSingle(t *testing.T) *app {
	t.Helper()
	return newApp(t, pubsub.NewMemory(pubsub.MemoryOptions{}), "", fast)
}

func TestStateFollowsJoinReply(t *testing.T) {
	a := newSingle(t)
	alice := connect(t, a)
	ref := alice.send("1", "room:1", "phx_join", userJoin("alice", "online"))
	alice.joinRef = "1"
	// The reply comes first, then presence_state with alice herself.
	// Her own join's diff may come before either (the channel receives
	// broadcasts from just before the reply): phoenix.js keeps diffs
	// that arrive before the state and applies them after it.
	m := alice.next()
	for m.Event == presence.EventDiff {
		m = alice.next()
	}
	if m.Event != "phx_reply" || m.Ref != ref {
		t.Fatalf("frame %s %q, want the join reply", m.Event, m.Payload)
	}
	for m = alice.next(); m.Event == presence.EventDiff; m = alice.next() {
	}
	if m.Event != presence.EventState || m.JoinRef != "1" || m.Ref != "" {
		t.Fatalf("frame %s %s, want presence_state pushed on join_ref 1", m.Event, m.Payload)
	}
	var st map[string]struct {
		Metas []map[string]any `json:"metas"`
	}
	must(t, json.Unmarshal(m.Payload, &st))
	metas := st["alice"].Metas
	if len(st) != 1 || len(metas) != 1 || metas[0]["status"] != "online" {
		t.Fatalf("presence_state %s", m.Payload)
	}
	if r, _ := metas[0]["phx_ref"].(string); r == "" || !bytes.HasPrefix(m.Payload, []byte(`{"alice":{"metas":[{"phx_ref":"`)) {
		t.Fatalf("presence_state %s: phx_ref must lead each meta", m.Payload)
	}
	alice.waitView(map[string][]string{"alice": {"online"}})

	bob := connect(t, a)
	bob.join("room:1", userJoin("bob", "away"), "ok")
	want := map[string][]string{"alice": {"online"}, "bob": {"away"}}
	bob.waitView(want)
	alice.waitView(want)
	waitList(t, a.p, "room:1", want)
	if alice.states != 1 || alice.diffs < 1 {
		t.Fatalf("alice got %d states and %d diffs", alice.states, alice.diffs)
	}
	if k, n := a.p.Count("room:1"); k != 2 || n != 2 {
		t.Fatalf("Count = %d keys, %d metas", k, n)
	}
}

func TestUpdateIsLeaveAndJoinWithPrevRef(t *testing.T) {
	a := newSingle(t)
	alice := connect(t, a)
	alice.join("room:1", userJoin("alice", "online"), "ok")
	bob := connect(t, a)
	bob.join("room:1", userJoin("bob", "online"), "ok")
	alice.waitView(map[string][]string{"alice": {"online"}, "bob": {"online"}})
	old := a.p.Get("room:1", "bob")[0].Ref

	bob.push("room:1", "update", map[string]any{"status": "typing"})
	// alice reads diffs until bob's update arrives, in one diff.
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, ok := alice.tryNext(time.Until(deadline))
		if !ok {
			t.Fatal("no diff with bob's update")
		}
		if m.Event != presence.EventDiff || !bytes.Contains(m.Payload, []byte("typing")) {
			continue
		}
		var d struct {
			Joins, Leaves map[string]struct {
				Metas []map[string]any `json:"metas"`
			}
		}
		must(t, json.Unmarshal(m.Payload, &d))
		j, l := d.Joins["bob"].Metas, d.Leaves["bob"].Metas
		if len(j) != 1 || len(l) != 1 {
			t.Fatalf("update diff %s: want one join and one leave for bob", m.Payload)
		}
		if l[0]["phx_ref"] != old || j[0]["phx_ref_prev"] != old || j[0]["phx_ref"] == old || j[0]["status"] != "typing" {
			t.Fatalf("update diff %s: want the old meta (ref %s) to leave and the new to link to it", m.Payload, old)
		}
		break
	}
	alice.waitView(map[string][]string{"alice": {"online"}, "bob": {"typing"}})
	if got := a.p.Get("room:1", "bob"); len(got) != 1 || got[0].Ref == old {
		t.Fatalf("Get after update = %+v", got)
	}
}

func TestLeaveCloseAndUntrack(t *testing.T) {
	a := newSingle(t)
	watcher := connect(t, a)
	watcher.join("room:1", map[string]any{"watch": true}, "ok")
	alice := connect(t, a)
	alice.join("room:1", userJoin("alice", "online"), "ok")
	bob := connect(t, a)
	bob.join("room:1", userJoin("bob", "online"), "ok")
	carol := connect(t, a)
	carol.join("room:1", userJoin("carol", "online"), "ok")
	watcher.waitView(map[string][]string{"alice": {"online"}, "bob": {"online"}, "carol": {"online"}})

	alice.push("room:1", "phx_leave", map[string]any{}) // the channel ends: untracked
	bob.close()                                         // the socket ends: untracked
	carol.push("room:1", "untrack", map[string]any{})   // untracked, channel still joined
	watcher.waitView(map[string][]string{})
	waitList(t, a.p, "room:1", map[string][]string{})
	if k, n := a.p.Count("room:1"); k != 0 || n != 0 {
		t.Fatalf("Count = %d, %d after everyone left", k, n)
	}
	ref := carol.send(carol.joinRef, "room:1", "untrack", map[string]any{})
	carol.expectReply(ref, "error") // not tracked any more
}

func TestSameKeyFromTwoTabs(t *testing.T) {
	a := newSingle(t)
	watcher := connect(t, a)
	watcher.join("room:1", map[string]any{"watch": true}, "ok")
	tab1 := connect(t, a)
	tab1.join("room:1", userJoin("alice", "tab1"), "ok")
	tab2 := connect(t, a)
	tab2.join("room:1", userJoin("alice", "tab2"), "ok")
	watcher.waitView(map[string][]string{"alice": {"tab1", "tab2"}})
	tab1.close()
	watcher.waitView(map[string][]string{"alice": {"tab2"}})
	if got := a.p.Get("room:1", "alice"); len(got) != 1 {
		t.Fatalf("Get = %+v", got)
	}
}

func TestRefusedJoinUntracks(t *testing.T) {
	a := newSingle(t)
	watcher := connect(t, a)
	watcher.join("room:1", map[string]any{"watch": true}, "ok")
	mallory := connect(t, a)
	mallory.join("room:1", map[string]any{"user": "mallory", "refuse": true}, "error")
	waitList(t, a.p, "room:1", map[string][]string{})
	alice := connect(t, a)
	alice.join("room:1", userJoin("alice", "online"), "ok")
	watcher.waitView(map[string][]string{"alice": {"online"}})
	if _, ok := a.p.List("room:1")["mallory"]; ok {
		t.Fatal("a refused join stays tracked")
	}
}

func TestTrackErrors(t *testing.T) {
	a := newSingle(t)
	var got []error
	a.node.Handle("err:*", channels.Handler{
		Join: func(_ context.Context, c *channels.Channel, _ channels.JoinEvent) (channels.JoinReply, error) {
			got = append(got,
				a.p.Track(c, "", nil),
				a.p.Track(c, strings.Repeat("k", presence.MaxKeyLen+1), nil),
				a.p.Track(c, "k", []int{1}),
				a.p.Track(c, "k", map[string]string{"big": strings.Repeat("x", presence.MaxMetaSize)}),
				a.p.Track(c, "k", func() {}),
				a.p.Track(c, "k", nil),
				a.p.Track(c, "k", nil),
				a.p.Update(c, "other", nil),
				a.p.Untrack(c, "other"),
			)
			return channels.JoinReply{}, nil
		},
	})
	c := connect(t, a)
	c.join("err:1", nil, "ok")
	want := []error{presence.ErrInvalidKey, presence.ErrInvalidKey, presence.ErrInvalidMeta, presence.ErrInvalidMeta,
		presence.ErrInvalidMeta, nil, presence.ErrAlreadyTracked, presence.ErrNotTracked, presence.ErrNotTracked}
	for i := range want {
		if !errors.Is(got[i], want[i]) || (want[i] == nil) != (got[i] == nil) {
			t.Errorf("call %d: %v, want %v", i, got[i], want[i])
		}
	}
}

func TestMetaEncoding(t *testing.T) {
	a := newSingle(t)
	cases := []struct {
		name string
		meta any
		want string // the meta without phx_ref
	}{
		{"nil is an empty object", nil, `{}`},
		{"struct", struct {
			Status string `json:"status"`
		}{"online"}, `{"status":"online"}`},
		{"raw JSON with spaces", json.RawMessage(` { "a" : 1 } `), `{"a":1}`},
		{"phx_ref of the app is replaced", map[string]any{"phx_ref": "mine", "phx_ref_prev": "x", "b": true}, `{"b":true}`},
		{"HTML characters stay escaped", map[string]string{"n": "<b>&"}, `{"n":"\u003cb\u003e\u0026"}`},
	}
	var chans []*channels.Channel
	a.node.Handle("meta:*", channels.Handler{
		Join: func(_ context.Context, c *channels.Channel, _ channels.JoinEvent) (channels.JoinReply, error) {
			chans = append(chans, c)
			return channels.JoinReply{}, nil
		},
	})
	c := connect(t, a)
	c.join("meta:1", nil, "ok")
	for i, tc := range cases {
		key := fmt.Sprint("k", i)
		must(t, a.p.Track(chans[0], key, tc.meta))
		m := a.p.Get("meta:1", key)[0]
		var obj map[string]json.RawMessage
		must(t, json.Unmarshal(m.Data, &obj))
		if string(obj["phx_ref"]) != `"`+m.Ref+`"` {
			t.Errorf("%s: %s has no phx_ref %s", tc.name, m.Data, m.Ref)
		}
		delete(obj, "phx_ref")
		rest, _ := json.Marshal(obj)
		if !bytes.HasPrefix(m.Data, []byte(`{"phx_ref":`)) || string(rest) != tc.want {
			t.Errorf("%s: meta %s, want phx_ref first and then %s", tc.name, m.Data, tc.want)
		}
	}
}

// TestDiffsAreBatched: a burst of joins into a watched topic reaches the
// watcher in fewer diffs than joins, and every client's view is exact.
func TestDiffsAreBatched(t *testing.T) {
	opts := fast
	opts.DiffInterval = 200 * time.Millisecond
	a := newApp(t, pubsub.NewMemory(pubsub.MemoryOptions{}), "", opts)
	watcher := connect(t, a)
	watcher.join("room:1", map[string]any{"watch": true}, "ok")
	want := map[string][]string{}
	const n = 200
	var joiners []*client
	for i := range n {
		user := fmt.Sprint("u", i)
		c := connect(t, a)
		c.join("room:1", userJoin(user, "on"), "ok")
		want[user] = []string{"on"}
		joiners = append(joiners, c)
	}
	watcher.waitView(want)
	// Each joiner got a state (shared by the joiners of one interval) and
	// the diffs after it: all end up exact.
	for _, c := range joiners {
		c.waitView(want)
	}
	if watcher.diffs >= n {
		t.Fatalf("%d joins arrived in %d diffs: they are not batched", n, watcher.diffs)
	}
	t.Logf("%d joins arrived in %d diffs", n, watcher.diffs)
}

func TestShutdown(t *testing.T) {
	a := newSingle(t)
	var chans []*channels.Channel
	a.node.Handle("late:*", channels.Handler{
		Join: func(_ context.Context, ch *channels.Channel, _ channels.JoinEvent) (channels.JoinReply, error) {
			chans = append(chans, ch)
			return channels.JoinReply{}, nil
		},
	})
	c := connect(t, a)
	c.join("room:1", userJoin("alice", "on"), "ok")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	must(t, a.p.Shutdown(ctx))
	must(t, a.p.Shutdown(ctx)) // idempotent
	c2 := connect(t, a)
	c2.join("late:1", nil, "ok")
	if err := a.p.Track(chans[0], "bob", nil); !errors.Is(err, presence.ErrClosed) {
		t.Fatalf("Track after Shutdown: %v", err)
	}
}

// TestChangeDuringJoinIsNotLost: a change that happens after a joining
// client's presence_state was taken, and whose diff goes out before the
// join completes, must still reach that client. Package channels subscribes
// a joining channel before Join runs and holds what arrives until the
// reply, so nothing falls between the state and the diffs.
func TestChangeDuringJoinIsNotLost(t *testing.T) {
	a := newSingle(t)
	watcher := connect(t, a)
	watcher.join("room:1", map[string]any{"watch": true}, "ok")
	bob := connect(t, a)
	bob.join("room:1", userJoin("bob", "on"), "ok")
	watcher.waitView(map[string][]string{"bob": {"on"}})

	a.duringJoin = func() {
		a.duringJoin = nil
		bob.close()                                            // bob leaves while alice joins...
		watcher.waitView(map[string][]string{"alice": {"on"}}) // ...and the diff has gone out
	}
	alice := connect(t, a)
	alice.join("room:1", userJoin("alice", "on"), "ok")
	alice.waitView(map[string][]string{"alice": {"on"}})
}
