package server

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/hearth-rt/hearth/channels"
)

// The tests in this file run the channels core end to end through real
// WebSocket connections.

func TestJoin(t *testing.T) {
	srv := newTestServer(t, Options{}, channels.Options{}, nil)
	c := dial(t, srv.url)

	t.Run("ok", func(t *testing.T) {
		c.t = t
		_, status, resp := c.join("room:1", map[string]any{})
		if status != "ok" || string(resp) != `{"topic":"room:1"}` {
			t.Fatalf("join: %s %s", status, resp)
		}
	})
	t.Run("refused with reason", func(t *testing.T) {
		c.t = t
		_, status, resp := c.join("room:2", map[string]any{"refuse": "members only"})
		if status != "error" || string(resp) != `{"reason":"members only"}` {
			t.Fatalf("join: %s %s", status, resp)
		}
	})
	t.Run("unmatched topic", func(t *testing.T) {
		c.t = t
		_, status, resp := c.join("nowhere:1", map[string]any{})
		if status != "error" || string(resp) != `{"reason":"unmatched topic"}` {
			t.Fatalf("join: %s %s", status, resp)
		}
	})
}

func TestPushWithReply(t *testing.T) {
	srv := newTestServer(t, Options{}, channels.Options{}, nil)
	c := joinedSocket(t, srv, "room:1")
	joinRef := "1"
	ref := c.nextRef()
	c.send(joinRef, ref, "room:1", "ping", map[string]any{"n": 42})
	resp := c.expectReply("room:1", ref, "ok")
	if string(resp) != `{"n":42}` {
		t.Fatalf("reply response %s", resp)
	}

	ref = c.nextRef()
	c.send(joinRef, ref, "room:1", "bogus", nil)
	resp = c.expectReply("room:1", ref, "error")
	if string(resp) != `{"reason":"unknown event"}` {
		t.Fatalf("reply response %s", resp)
	}

	// A push from the server carries the join ref and no ref.
	ref = c.nextRef()
	c.send(joinRef, ref, "room:1", "push_me", map[string]any{"x": 1})
	m := c.expect("room:1", "pushed")
	if m.JoinRef != joinRef || m.Ref != "" || string(m.Payload) != `{"x":1}` {
		t.Fatalf("push %v", m)
	}
	c.expectReply("room:1", ref, "ok")
}

func TestUnmatchedTopic(t *testing.T) {
	srv := newTestServer(t, Options{}, channels.Options{}, nil)
	c := dial(t, srv.url)
	ref := c.nextRef()
	c.send("7", ref, "room:never-joined", "ping", map[string]any{})
	resp := c.expectReply("room:never-joined", ref, "error")
	if string(resp) != `{"reason":"unmatched topic"}` {
		t.Fatalf("response %s", resp)
	}
}

func TestHeartbeat(t *testing.T) {
	srv := newTestServer(t, Options{}, channels.Options{}, nil)
	c := dial(t, srv.url)
	c.send("", "5", "phoenix", "heartbeat", map[string]any{})
	m := c.expect("phoenix", "phx_reply")
	if m.JoinRef != "" || m.Ref != "5" || string(m.Payload) != `{"status":"ok","response":{}}` {
		t.Fatalf("heartbeat reply %v", m)
	}
}

func TestBroadcast(t *testing.T) {
	srv := newTestServer(t, Options{}, channels.Options{}, nil)
	a := joinedSocket(t, srv, "room:b")
	b := joinedSocket(t, srv, "room:b")
	other := joinedSocket(t, srv, "room:other")

	t.Run("node", func(t *testing.T) {
		if err := srv.node.Broadcast(context.Background(), "room:b", "news", map[string]string{"from": "app"}); err != nil {
			t.Fatal(err)
		}
		for _, c := range []*client{a, b} {
			c.t = t
			m := c.expect("room:b", "news")
			if m.JoinRef != "" || string(m.Payload) != `{"from":"app"}` {
				t.Fatalf("broadcast %v", m)
			}
		}
	})
	t.Run("channel, sender included", func(t *testing.T) {
		a.t, b.t = t, t
		ref := a.nextRef()
		a.send("1", ref, "room:b", "shout", map[string]string{"from": "a"})
		got := false
		for range 2 { // the reply and the broadcast, in either order
			m := a.read()
			switch m.Event {
			case "phx_reply":
			case "shout":
				got = string(m.Payload) == `{"from":"a"}`
			}
		}
		if !got {
			t.Fatal("sender did not receive its broadcast")
		}
		m := b.expect("room:b", "shout")
		if string(m.Payload) != `{"from":"a"}` {
			t.Fatalf("broadcast %v", m)
		}
	})
	t.Run("from, sender excluded", func(t *testing.T) {
		a.t, b.t = t, t
		ref := a.nextRef()
		a.send("1", ref, "room:b", "shout_from", map[string]string{"from": "a2"})
		a.expectReply("room:b", ref, "ok")
		m := b.expect("room:b", "shout")
		if string(m.Payload) != `{"from":"a2"}` {
			t.Fatalf("broadcast %v", m)
		}
		// Whatever the server sent a before this heartbeat's reply was
		// read: the broadcast was not among it.
		a.heartbeat()
	})
	other.t = t
	other.heartbeat() // nothing for room:b reached room:other
}

func TestIntercept(t *testing.T) {
	srv := newTestServer(t, Options{}, channels.Options{}, nil)
	loud := dial(t, srv.url)
	loud.mustJoin("filtered:1", map[string]any{})
	mute := dial(t, srv.url)
	mute.mustJoin("filtered:1", map[string]any{"mute": true})

	if err := srv.node.Broadcast(context.Background(), "filtered:1", "news", map[string]any{"n": 1}); err != nil {
		t.Fatal(err)
	}
	if err := srv.node.Broadcast(context.Background(), "filtered:1", "plain", map[string]any{"n": 2}); err != nil {
		t.Fatal(err)
	}
	m := loud.expect("filtered:1", "news")
	if m.JoinRef != "1" || string(m.Payload) != `{"filtered":true,"n":1}` {
		t.Fatalf("intercepted broadcast %v", m)
	}
	loud.expect("filtered:1", "plain")
	// The muted socket gets the event that is not intercepted only.
	m = mute.expect("filtered:1", "plain")
	if string(m.Payload) != `{"n":2}` {
		t.Fatalf("broadcast %v", m)
	}
	mute.heartbeat()
}

func TestLeave(t *testing.T) {
	srv := newTestServer(t, Options{}, channels.Options{}, nil)
	c := joinedSocket(t, srv, "room:l")
	ref := c.nextRef()
	c.send("1", ref, "room:l", "phx_leave", map[string]any{})
	c.expectReply("room:l", ref, "ok")
	eventually(t, "Terminate after leave", func() bool {
		return contains(srv.rec.terminations(), "room:l channels: client left")
	})
	if err := srv.node.Broadcast(context.Background(), "room:l", "news", map[string]any{}); err != nil {
		t.Fatal(err)
	}
	c.heartbeat() // the broadcast did not come before the reply
	ref = c.nextRef()
	c.send("1", ref, "room:l", "ping", map[string]any{})
	c.expectReply("room:l", ref, "error") // unmatched topic: not joined any more
}

func TestDuplicateJoin(t *testing.T) {
	srv := newTestServer(t, Options{}, channels.Options{}, nil)
	c := dial(t, srv.url)
	old := c.mustJoin("room:d", map[string]any{})

	ref := c.nextRef()
	c.send(ref, ref, "room:d", "phx_join", map[string]any{})
	m := c.expect("room:d", "phx_close")
	if m.JoinRef != old {
		t.Fatalf("phx_close %v, want join_ref %s", m, old)
	}
	m = c.expect("room:d", "phx_reply")
	if st, _ := m.reply(); st != "ok" || m.JoinRef != ref {
		t.Fatalf("second join reply %v", m)
	}

	t.Run("stale join_ref dropped", func(t *testing.T) {
		c.t = t
		c.send(old, c.nextRef(), "room:d", "ping", map[string]any{})
		c.heartbeat() // no reply to the stale push came before this one
		pr := c.nextRef()
		c.send(ref, pr, "room:d", "ping", map[string]any{"ok": true})
		c.expectReply("room:d", pr, "ok")
	})
}

func TestTooManyChannels(t *testing.T) {
	srv := newTestServer(t, Options{}, channels.Options{MaxChannels: 2}, nil)
	c := dial(t, srv.url)
	c.mustJoin("room:1", nil)
	c.mustJoin("room:2", nil)
	_, status, resp := c.join("room:3", nil)
	if status != "error" || string(resp) != `{"reason":"too many channels joined"}` {
		t.Fatalf("third join: %s %s", status, resp)
	}
}

func TestBinaryRoundTrip(t *testing.T) {
	srv := newTestServer(t, Options{}, channels.Options{}, nil)
	a := joinedSocket(t, srv, "room:bin")
	b := joinedSocket(t, srv, "room:bin")
	payload := []byte{0, 1, 2, 0xff, 0xfe, 'x'}

	a.sendBinary("1", "9", "room:bin", "ping", payload)
	m := a.read()
	if !m.Binary || m.Kind != 1 || m.JoinRef != "1" || m.Ref != "9" || m.Topic != "room:bin" || m.Status != "ok" || !bytes.Equal(m.Data, payload) {
		t.Fatalf("binary reply %+v", m)
	}

	a.sendBinary("1", "10", "room:bin", "shout_from", payload)
	a.expectReply("room:bin", "10", "ok")
	m = b.read()
	if !m.Binary || m.Kind != 2 || m.Topic != "room:bin" || m.Event != "shout" || !bytes.Equal(m.Data, payload) {
		t.Fatalf("binary broadcast %+v", m)
	}

	a.sendBinary("1", "11", "room:bin", "push_me", payload)
	m = a.read()
	if !m.Binary || m.Kind != 0 || m.JoinRef != "1" || m.Event != "pushed" || !bytes.Equal(m.Data, payload) {
		t.Fatalf("binary push %+v", m)
	}
}

func TestHandlerPanic(t *testing.T) {
	srv := newTestServer(t, Options{}, channels.Options{}, nil)
	a := joinedSocket(t, srv, "room:p")
	b := joinedSocket(t, srv, "room:p")

	a.send("1", a.nextRef(), "room:p", "crash", map[string]any{})
	m := a.expect("room:p", "phx_error")
	if m.JoinRef != "1" {
		t.Fatalf("phx_error %v", m)
	}
	eventually(t, "Terminate with the panic", func() bool {
		return contains(srv.rec.terminations(), "room:p channels: handler panicked")
	})
	// The server and the other socket go on; the crashed client rejoins.
	ref := b.nextRef()
	b.send("1", ref, "room:p", "ping", map[string]any{})
	b.expectReply("room:p", ref, "ok")
	a.mustJoin("room:p", nil)
	if n := srv.Connections(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.HasPrefix(x, s) {
			return true
		}
	}
	return false
}

func TestRefsAreStrings(t *testing.T) {
	// A Phoenix client never sees a bare number in a ref slot.
	srv := newTestServer(t, Options{}, channels.Options{}, nil)
	c := joinedSocket(t, srv, "room:r")
	if err := srv.node.Broadcast(context.Background(), "room:r", "news", map[string]any{}); err != nil {
		t.Fatal(err)
	}
	_ = c.ws.SetReadDeadline(deadline())
	_, raw, err := c.ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	var arr []any
	if err := json.Unmarshal(raw, &arr); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, isNum := arr[i].(float64); isNum {
			t.Fatalf("ref slot %d is a number in %s", i, raw)
		}
	}
}
