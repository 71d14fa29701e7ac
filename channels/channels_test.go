package channels_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/pubsub"
)

// chatNode returns a node with an open "room:*" channel that echoes pings
// and broadcasts new_msg.
func chatNode(t *testing.T, opts channels.Options) *channels.Node {
	t.Helper()
	n := channels.New(opts)
	n.Handle("room:*", channels.Handler{
		Join: func(ctx context.Context, c *channels.Channel, ev channels.JoinEvent) (channels.JoinReply, error) {
			var p struct{ Deny string }
			_ = json.Unmarshal(ev.Params, &p)
			if p.Deny != "" {
				return channels.JoinReply{}, channels.Refuse(p.Deny)
			}
			return channels.JoinReply{Response: map[string]string{"topic": ev.Topic}}, nil
		},
		In: func(ctx context.Context, c *channels.Channel, ev channels.InEvent) (channels.Reply, error) {
			switch ev.Event {
			case "ping":
				if ev.Binary {
					return channels.OK(ev.Payload), nil
				}
				return channels.OK(json.RawMessage(ev.Payload)), nil
			case "shout":
				return channels.NoReply, c.Broadcast(ctx, "shout", json.RawMessage(ev.Payload))
			case "whisper":
				return channels.NoReply, c.BroadcastFrom(ctx, "shout", json.RawMessage(ev.Payload))
			case "later":
				go func() { _ = c.Reply(ev.Ref, channels.OK(map[string]bool{"late": true})) }()
				return channels.NoReply, nil
			case "stop":
				return channels.NoReply, channels.ErrStop
			case "boom":
				panic("boom")
			}
			return channels.Reply{}, channels.Refuse("unknown event")
		},
	})
	t.Cleanup(n.Wait)
	return n
}

func TestJoinPushReply(t *testing.T) {
	n := chatNode(t, channels.Options{})
	c := connect(t, n, nil)
	jr, resp := c.join("room:1", map[string]any{}, "ok")
	if string(resp) != `{"topic":"room:1"}` {
		t.Fatalf("join response %s", resp)
	}
	ref := c.send(jr, "room:1", "ping", map[string]int{"n": 7})
	if got := c.expectReply(ref, "ok"); string(got) != `{"n":7}` {
		t.Fatalf("ping reply %s", got)
	}
	ref = c.send(jr, "room:1", "nope", nil)
	if got := c.expectReply(ref, "error"); string(got) != `{"reason":"unknown event"}` {
		t.Fatalf("error reply %s", got)
	}
	ref = c.send(jr, "room:1", "later", nil)
	if got := c.expectReply(ref, "ok"); string(got) != `{"late":true}` {
		t.Fatalf("late reply %s", got)
	}
}

func TestJoinRefusedAndUnmatched(t *testing.T) {
	n := chatNode(t, channels.Options{})
	c := connect(t, n, nil)
	if _, resp := c.join("room:1", map[string]string{"deny": "unauthorized"}, "error"); string(resp) != `{"reason":"unauthorized"}` {
		t.Fatalf("refusal %s", resp)
	}
	if _, resp := c.join("nothere:1", nil, "error"); string(resp) != `{"reason":"unmatched topic"}` {
		t.Fatalf("unmatched %s", resp)
	}
	ref := c.send("9", "room:2", "ping", nil)
	if resp := c.expectReply(ref, "error"); string(resp) != `{"reason":"unmatched topic"}` {
		t.Fatalf("push to unjoined topic %s", resp)
	}
}

func TestBroadcastAndBroadcastFrom(t *testing.T) {
	n := chatNode(t, channels.Options{})
	a, b := connect(t, n, nil), connect(t, n, nil)
	ja, _ := a.join("room:1", nil, "ok")
	b.join("room:1", nil, "ok")

	if err := n.Broadcast(context.Background(), "room:1", "news", map[string]int{"n": 1}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client{a, b} {
		m := c.next()
		if m.Event != "news" || m.Topic != "room:1" || m.JoinRef != "" || m.Ref != "@1" || string(m.Payload) != `{"n":1}` {
			t.Fatalf("broadcast = %+v %s", m.Message, m.Payload)
		}
	}
	a.send(ja, "room:1", "whisper", map[string]int{"n": 2})
	if m := b.next(); m.Event != "shout" || m.Ref != "@2" {
		t.Fatalf("broadcast-from to b = %+v", m.Message)
	}
	a.noFrame()
	a.send(ja, "room:1", "shout", map[string]int{"n": 3})
	if m := a.next(); m.Event != "shout" || string(m.Payload) != `{"n":3}` {
		t.Fatalf("broadcast to sender = %+v", m.Message)
	}
}

func TestLeaveAndDuplicateJoin(t *testing.T) {
	var terminated []error
	var mu sync.Mutex
	n := channels.New(channels.Options{})
	n.Handle("room:*", channels.Handler{
		Join: func(context.Context, *channels.Channel, channels.JoinEvent) (channels.JoinReply, error) {
			return channels.JoinReply{}, nil
		},
		Terminate: func(c *channels.Channel, reason error) {
			mu.Lock()
			terminated = append(terminated, reason)
			mu.Unlock()
		},
	})
	c := connect(t, n, nil)
	first, _ := c.join("room:1", nil, "ok")
	second := itoa(c.ref + 1)
	ref := c.send(second, "room:1", "phx_join", nil)
	if m := c.next(); m.Event != "phx_close" || m.JoinRef != first || m.Ref != first {
		t.Fatalf("old channel should get phx_close with its join ref, got %+v", m.Message)
	}
	c.expectReply(ref, "ok")
	// A message with the old join ref is dropped.
	c.send(first, "room:1", "anything", nil)
	c.noFrame()
	// Leave with the current join ref.
	ref = c.send(second, "room:1", "phx_leave", nil)
	c.expectReply(ref, "ok")
	if err := n.Broadcast(context.Background(), "room:1", "x", nil); err != nil {
		t.Fatal(err)
	}
	c.noFrame()
	mu.Lock()
	defer mu.Unlock()
	if len(terminated) != 2 || !errors.Is(terminated[0], channels.ErrRejoined) || !errors.Is(terminated[1], channels.ErrLeft) {
		t.Fatalf("terminate reasons = %v", terminated)
	}
}

func TestHandlerPanicCrashesOnlyItsChannel(t *testing.T) {
	var reason atomic.Value
	n := chatNode(t, channels.Options{})
	n.Handle("watch:*", channels.Handler{
		Join: func(context.Context, *channels.Channel, channels.JoinEvent) (channels.JoinReply, error) {
			panic("join panics")
		},
	})
	c := connect(t, n, nil)
	jr, _ := c.join("room:1", nil, "ok")
	j2, _ := c.join("room:2", nil, "ok")
	_ = reason
	c.send(jr, "room:1", "boom", nil)
	if m := c.next(); m.Event != "phx_error" || m.Topic != "room:1" || m.JoinRef != jr {
		t.Fatalf("want phx_error for room:1, got %+v", m.Message)
	}
	// The other channel still works.
	ref := c.send(j2, "room:2", "ping", map[string]int{"ok": 1})
	c.expectReply(ref, "ok")
	// A join that panics is refused with "join crashed".
	if _, resp := c.join("watch:1", nil, "error"); string(resp) != `{"reason":"join crashed"}` {
		t.Fatalf("join crash reply %s", resp)
	}
	// Stop closes normally.
	c.send(j2, "room:2", "stop", nil)
	if m := c.next(); m.Event != "phx_close" || m.Topic != "room:2" {
		t.Fatalf("want phx_close, got %+v", m.Message)
	}
}

func TestIntercept(t *testing.T) {
	n := channels.New(channels.Options{})
	n.Handle("room:*", channels.Handler{
		Join: func(_ context.Context, c *channels.Channel, ev channels.JoinEvent) (channels.JoinReply, error) {
			var p struct{ Name string }
			_ = json.Unmarshal(ev.Params, &p)
			c.Set("name", p.Name)
			return channels.JoinReply{}, nil
		},
		Intercept: []string{"dm"},
		Out: func(_ context.Context, c *channels.Channel, ev channels.OutEvent) error {
			var p struct{ To, Body string }
			if err := json.Unmarshal(ev.Payload, &p); err != nil {
				return err
			}
			if p.To != c.Get("name") {
				return nil // not for this subscriber
			}
			return c.Push("dm", map[string]string{"body": strings.ToUpper(p.Body)})
		},
	})
	t.Cleanup(n.Wait)
	a, b := connect(t, n, nil), connect(t, n, nil)
	ja, _ := a.join("room:1", map[string]string{"name": "ann"}, "ok")
	b.join("room:1", map[string]string{"name": "bob"}, "ok")
	ctx := context.Background()
	for _, to := range []string{"bob", "ann", "bob"} {
		if err := n.Broadcast(ctx, "room:1", "dm", map[string]string{"to": to, "body": "hi " + to}); err != nil {
			t.Fatal(err)
		}
	}
	if err := n.Broadcast(ctx, "room:1", "plain", nil); err != nil {
		t.Fatal(err)
	}
	if m := a.next(); m.Event != "dm" || m.JoinRef != ja || string(m.Payload) != `{"body":"HI ANN"}` {
		t.Fatalf("ann got %+v %s", m.Message, m.Payload)
	}
	for i := 0; i < 2; i++ {
		if m := b.next(); m.Event != "dm" || string(m.Payload) != `{"body":"HI BOB"}` {
			t.Fatalf("bob got %+v %s", m.Message, m.Payload)
		}
	}
	// The non-intercepted event goes through the fastlane.
	if m := b.next(); m.Event != "plain" {
		t.Fatalf("bob got %+v", m.Message)
	}
}

func TestPushDuringJoinFollowsReply(t *testing.T) {
	n := channels.New(channels.Options{})
	n.Handle("room:*", channels.Handler{
		Join: func(_ context.Context, c *channels.Channel, _ channels.JoinEvent) (channels.JoinReply, error) {
			if err := c.Push("welcome", map[string]string{"hi": "there"}); err != nil {
				return channels.JoinReply{}, err
			}
			return channels.JoinReply{}, nil
		},
	})
	c := connect(t, n, nil)
	jr, _ := c.join("room:1", nil, "ok")
	if m := c.next(); m.Event != "welcome" || m.JoinRef != jr {
		t.Fatalf("want welcome push after the reply, got %+v", m.Message)
	}
}

func TestBinaryPushAndBroadcast(t *testing.T) {
	n := chatNode(t, channels.Options{})
	plain := connect(t, n, nil)
	ext := connect(t, n, map[string][]string{channels.ExtParam: {"1"}})
	jr, _ := plain.join("room:1", nil, "ok")
	ext.join("room:1", nil, "ok")

	push := append([]byte{0, byte(len(jr)), 2, 6, 4}, jr+"99room:1ping"...)
	push = append(push, 1, 2, 3)
	if err := plain.s.HandleMessage(push, true); err != nil {
		t.Fatal(err)
	}
	if m := plain.next(); !m.Binary || m.Event != "phx_reply:ok" || m.Ref != "99" || string(m.Payload) != "\x01\x02\x03" {
		t.Fatalf("binary reply = %+v", m.Message)
	}
	if err := n.Broadcast(context.Background(), "room:1", "blob", []byte{7, 8}); err != nil {
		t.Fatal(err)
	}
	if m := plain.next(); !m.Binary || m.Event != "blob" || m.Ref != "" || string(m.Payload) != "\x07\x08" {
		t.Fatalf("plain client binary broadcast = %+v", m.Message)
	}
	if m := ext.next(); !m.Binary || m.Event != "blob" || m.Ref != "@1" || string(m.Payload) != "\x07\x08" {
		t.Fatalf("extension client binary broadcast = %+v", m.Message)
	}
}

func TestTooManyChannels(t *testing.T) {
	n := chatNode(t, channels.Options{MaxChannels: 2})
	c := connect(t, n, nil)
	c.join("room:1", nil, "ok")
	c.join("room:2", nil, "ok")
	if _, resp := c.join("room:3", nil, "error"); string(resp) != `{"reason":"too many channels joined"}` {
		t.Fatalf("third join %s", resp)
	}
	// Rejoining a joined topic is still allowed at the limit.
	ref := c.send(itoa(c.ref+1), "room:2", "phx_join", nil)
	if m := c.next(); m.Event != "phx_close" {
		t.Fatalf("want phx_close of the replaced channel, got %+v", m.Message)
	}
	c.expectReply(ref, "ok")
}

func TestHeartbeatAndInvalidMessages(t *testing.T) {
	n := chatNode(t, channels.Options{})
	c := connect(t, n, nil)
	ref := c.send("", "phoenix", "heartbeat", map[string]any{})
	if m := c.next(); m.Event != "phx_reply" || m.Ref != ref || m.Topic != "phoenix" || string(m.Payload) != `{"status":"ok","response":{}}` {
		t.Fatalf("heartbeat reply %+v %s", m.Message, m.Payload)
	}
	err := c.s.HandleMessage([]byte(`{"not":"an array"}`), false)
	code, reason := channels.CloseCode(err)
	if code != channels.CloseInvalidPayload || !strings.Contains(reason, "not a JSON array") {
		t.Fatalf("invalid JSON: code %d reason %q", code, reason)
	}
}

func TestDisconnectByID(t *testing.T) {
	n := channels.New(channels.Options{Connect: func(_ context.Context, ev channels.ConnectEvent) (channels.ConnectReply, error) {
		return channels.ConnectReply{ID: "user:" + ev.Params.Get("u")}, nil
	}})
	a1 := connect(t, n, map[string][]string{"u": {"a"}})
	a2 := connect(t, n, map[string][]string{"u": {"a"}})
	b := connect(t, n, map[string][]string{"u": {"b"}})
	if err := n.Disconnect(context.Background(), "user:a", 0, "bye"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client{a1, a2} {
		c.r.mu.Lock()
		code, reason := c.r.code, c.r.reason
		c.r.mu.Unlock()
		if code != channels.CloseDisconnected || reason != "bye" {
			t.Fatalf("disconnect: code %d reason %q", code, reason)
		}
	}
	if b.r.code != 0 {
		t.Fatalf("other user's socket was closed")
	}
}

// hearthPos extracts the "$hearth" part of a join response.
func hearthPos(t *testing.T, resp json.RawMessage) (pos pubsub.Position, recovered *bool, replayed int) {
	t.Helper()
	pos, recovered, replayed, _ = hearthReply(t, resp)
	return pos, recovered, replayed
}

// hearthReply is hearthPos with the reason of an incomplete recovery.
func hearthReply(t *testing.T, resp json.RawMessage) (pos pubsub.Position, recovered *bool, replayed int, reason string) {
	t.Helper()
	var r struct {
		H struct {
			Epoch     string `json:"epoch"`
			Offset    uint64 `json:"offset"`
			Recovered *bool  `json:"recovered"`
			Replayed  int    `json:"replayed"`
			Reason    string `json:"reason"`
		} `json:"$hearth"`
	}
	if err := json.Unmarshal(resp, &r); err != nil {
		t.Fatal(err)
	}
	return pubsub.Position{Epoch: r.H.Epoch, Offset: r.H.Offset}, r.H.Recovered, r.H.Replayed, r.H.Reason
}

func TestRecovery(t *testing.T) {
	n := chatNode(t, channels.Options{})
	ctx := context.Background()
	c := connect(t, n, nil)
	_, resp := c.join("room:1", map[string]any{"$hearth": map[string]any{}}, "ok")
	pos, rec, _ := hearthPos(t, resp)
	if pos.Epoch == "" || pos.Offset != 0 || rec != nil {
		t.Fatalf("first join position %+v recovered %v (response %s)", pos, rec, resp)
	}
	if !strings.Contains(string(resp), `"topic":"room:1"`) {
		t.Fatalf("the app's response was lost: %s", resp)
	}
	for i := 1; i <= 3; i++ {
		if err := n.Broadcast(ctx, "room:1", "m", map[string]int{"i": i}); err != nil {
			t.Fatal(err)
		}
		if m := c.next(); m.Ref != "@"+itoa(i) {
			t.Fatalf("live message %d has ref %q", i, m.Ref)
		}
	}
	pos.Offset = 3
	c.close() // the client goes away ...
	for i := 4; i <= 6; i++ {
		if err := n.Broadcast(ctx, "room:1", "m", map[string]int{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	// ... and comes back with its position.
	c2 := connect(t, n, nil)
	_, resp = c2.join("room:1", map[string]any{"$hearth": map[string]any{"since": pos}}, "ok")
	top, rec, replayed := hearthPos(t, resp)
	if rec == nil || !*rec || replayed != 3 || top.Offset != 6 {
		t.Fatalf("recovery: top %+v recovered %v replayed %d", top, rec, replayed)
	}
	for i := 4; i <= 7; i++ {
		if i == 7 {
			if err := n.Broadcast(ctx, "room:1", "m", map[string]int{"i": i}); err != nil {
				t.Fatal(err)
			}
		}
		m := c2.next()
		var p struct{ I int }
		_ = json.Unmarshal(m.Payload, &p)
		if p.I != i || m.Ref != "@"+itoa(i) {
			t.Fatalf("after recovery want message %d, got %+v %s", i, m.Message, m.Payload)
		}
	}
	c2.noFrame()
}

func TestRecoveryIncomplete(t *testing.T) {
	ctx := context.Background()
	n := chatNode(t, channels.Options{Broker: pubsub.NewMemory(pubsub.MemoryOptions{HistorySize: 2})})
	for i := 0; i < 5; i++ {
		if err := n.Broadcast(ctx, "room:1", "m", nil); err != nil {
			t.Fatal(err)
		}
	}
	c := connect(t, n, nil)
	_, resp := c.join("room:1", map[string]any{"$hearth": map[string]any{}}, "ok")
	top, _, _ := hearthPos(t, resp)

	for name, tc := range map[string]struct {
		since  pubsub.Position
		reason string
	}{
		"trimmed":        {pubsub.Position{Epoch: top.Epoch, Offset: 1}, channels.RecoveryTrimmed},
		"epoch changed":  {pubsub.Position{Epoch: "another", Offset: 5}, channels.RecoveryNewEpoch},
		"ahead of top":   {pubsub.Position{Epoch: top.Epoch, Offset: 9}, channels.RecoveryAhead},
		"complete (top)": {pubsub.Position{Epoch: top.Epoch, Offset: 5}, ""},
	} {
		t.Run(name, func(t *testing.T) {
			since := tc.since
			c := connect(t, n, nil)
			_, resp := c.join("room:1", map[string]any{"$hearth": map[string]any{"since": since}}, "ok")
			pos, rec, replayed, reason := hearthReply(t, resp)
			want := name == "complete (top)"
			if rec == nil || *rec != want || replayed != 0 || pos.Offset != 5 || reason != tc.reason {
				t.Fatalf("since %+v: recovered %v replayed %d top %+v reason %q, want reason %q", since, rec, replayed, pos, reason, tc.reason)
			}
			c.noFrame()
		})
	}
}

// TestRecoveryOverLimit: a client that missed more than one recovery
// replays is told so, with the reason "limit".
func TestRecoveryOverLimit(t *testing.T) {
	ctx := context.Background()
	n := chatNode(t, channels.Options{HistoryLimit: 2})
	c := connect(t, n, nil)
	_, resp := c.join("room:1", map[string]any{"$hearth": map[string]any{}}, "ok")
	top, _, _ := hearthPos(t, resp)
	for i := 0; i < 5; i++ {
		if err := n.Broadcast(ctx, "room:1", "m", nil); err != nil {
			t.Fatal(err)
		}
	}
	c2 := connect(t, n, nil)
	_, resp = c2.join("room:1", map[string]any{"$hearth": map[string]any{"since": top}}, "ok")
	pos, rec, replayed, reason := hearthReply(t, resp)
	if rec == nil || *rec || replayed != 0 || pos.Offset != 5 || reason != channels.RecoveryLimit {
		t.Fatalf("recovered %v replayed %d top %+v reason %q, want an incomplete recovery for reason %q", rec, replayed, pos, reason, channels.RecoveryLimit)
	}
	c2.noFrame()
}

// TestRecoveryUnderLoad joins with recovery while another goroutine keeps
// broadcasting: the client must see every offset exactly once, in order.
func TestRecoveryUnderLoad(t *testing.T) {
	ctx := context.Background()
	n := chatNode(t, channels.Options{})
	for i := 0; i < 50; i++ {
		if err := n.Broadcast(ctx, "room:1", "m", nil); err != nil {
			t.Fatal(err)
		}
	}
	probe := connect(t, n, nil)
	_, resp := probe.join("room:1", map[string]any{"$hearth": map[string]any{}}, "ok")
	top, _, _ := hearthPos(t, resp)
	probe.close()

	const extra = 500
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < extra; i++ {
			if err := n.Broadcast(ctx, "room:1", "m", nil); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	c := connect(t, n, nil)
	_, resp = c.join("room:1", map[string]any{"$hearth": map[string]any{"since": pubsub.Position{Epoch: top.Epoch, Offset: 10}}}, "ok")
	if _, rec, _ := hearthPos(t, resp); rec == nil || !*rec {
		t.Fatalf("recovery under load not complete: %s", resp)
	}
	<-done
	for want := uint64(11); want <= 50+extra; want++ {
		m := c.next()
		if m.Ref != "@"+strconvU(want) {
			t.Fatalf("want offset %d, got ref %q", want, m.Ref)
		}
	}
	c.noFrame()
}

func strconvU(u uint64) string { return itoa(int(u)) }

// TestConcurrentJoinsAndBroadcasts exercises the hub under the race detector.
func TestConcurrentJoinsAndBroadcasts(t *testing.T) {
	n := chatNode(t, channels.Options{})
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			c := connect(t, n, nil)
			for i := 0; i < 50; i++ {
				topic := "room:" + itoa(i%4)
				jr := itoa(c.ref + 1)
				c.send(jr, topic, "phx_join", nil)
				if err := n.Broadcast(ctx, topic, "m", nil); err != nil {
					t.Error(err)
				}
				c.send(jr, topic, "shout", nil)
				c.send(jr, topic, "phx_leave", nil)
			}
		}(g)
	}
	wg.Wait()
}

func TestStats(t *testing.T) {
	n := chatNode(t, channels.Options{})
	a, b := connect(t, n, nil), connect(t, n, nil)
	ja, _ := a.join("room:1", nil, "ok")
	b.join("room:1", nil, "ok")
	// A refused rejoin still ends a's first channel.
	ref := a.send(itoa(a.ref+1), "room:1", "phx_join", map[string]string{"deny": "no"})
	if m := a.next(); m.Event != "phx_close" || m.JoinRef != ja {
		t.Fatalf("want phx_close, got %+v", m.Message)
	}
	a.expectReply(ref, "error")
	if err := n.Broadcast(context.Background(), "room:1", "m", nil); err != nil {
		t.Fatal(err)
	}
	b.next()
	st := n.Stats()
	if st.Sockets != 2 || st.Channels != 1 || st.JoinsOK != 2 || st.JoinsRefused != 1 || st.Broadcasts != 1 || st.Deliveries != 1 {
		t.Fatalf("stats = %+v", st)
	}
}
