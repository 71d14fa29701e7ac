package server

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hearth-rt/hearth/channels"
)

// rawFrame builds a masked client frame. rsv sets the RSV bits (0-7).
func rawFrame(fin bool, rsv, op byte, payload []byte) []byte {
	b0 := op | rsv<<4
	if fin {
		b0 |= 0x80
	}
	f := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		f = append(f, 0x80|byte(n))
	case n <= 0xffff:
		f = append(f, 0x80|126)
		f = binary.BigEndian.AppendUint16(f, uint16(n))
	default:
		f = append(f, 0x80|127)
		f = binary.BigEndian.AppendUint64(f, uint64(n))
	}
	mask := [4]byte{0x12, 0x34, 0x56, 0x78}
	f = append(f, mask[:]...)
	for i, b := range payload {
		f = append(f, b^mask[i%4])
	}
	return f
}

// writeRaw writes bytes on the client's connection, bypassing its framing.
func (c *client) writeRaw(b []byte) {
	c.t.Helper()
	if _, err := c.ws.NetConn().Write(b); err != nil {
		c.t.Fatalf("raw write: %v", err)
	}
}

// dialAs connects as a client of its own (a query naming who): the server's
// reconnect cooldown after a close it caused (refuse.go) concerns that
// client alone.
func dialAs(t testing.TB, srv *testServer, who string) *client {
	t.Helper()
	c, err := dialWith(t, srv.url, dialOpts{query: "who=" + url.QueryEscape(who)})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	return c
}

func TestIdleTimeout(t *testing.T) {
	t.Run("silent client closed", func(t *testing.T) {
		srv := newTestServer(t, Options{IdleTimeout: 200 * time.Millisecond}, channels.Options{}, nil)
		c := dial(t, srv.url)
		c.expectClose(channels.CloseGoingAway, "idle timeout")
		eventually(t, "the connection to end", func() bool { return srv.Connections() == 0 })
	})
	t.Run("every frame refreshes the deadline", func(t *testing.T) {
		srv := newTestServer(t, Options{IdleTimeout: time.Second}, channels.Options{}, nil)
		c := dial(t, srv.url)
		// Heartbeats every tenth of the timeout for two and a half
		// timeouts: the connection must stay open throughout.
		for range 25 {
			c.heartbeat()
			time.Sleep(100 * time.Millisecond)
		}
		if n := srv.Connections(); n != 1 {
			t.Fatalf("%d connections, want 1", n)
		}
	})
}

func TestOversizeMessage(t *testing.T) {
	srv := newTestServer(t, Options{MaxMessageSize: 1024}, channels.Options{}, nil)

	t.Run("one frame", func(t *testing.T) {
		c := dialAs(t, srv, t.Name())
		c.send("", "1", "phoenix", "heartbeat", map[string]string{"pad": strings.Repeat("x", 2000)})
		c.expectClose(channels.CloseTooBig, "message too big")
	})
	t.Run("fragments", func(t *testing.T) {
		c := dialAs(t, srv, t.Name())
		part := []byte(strings.Repeat("x", 600))
		c.writeRaw(rawFrame(false, 0, 0x1, part))
		c.writeRaw(rawFrame(true, 0, 0x0, part))
		c.expectClose(channels.CloseTooBig, "message too big")
	})
	t.Run("at the limit", func(t *testing.T) {
		c := dialAs(t, srv, t.Name())
		head := `[null,"1","phoenix","heartbeat",{"p":"`
		tail := `"}]`
		c.sendRaw(websocket.TextMessage, []byte(head+strings.Repeat("y", 1024-len(head)-len(tail))+tail))
		c.expectReply("phoenix", "1", "ok")
	})
}

func TestInvalidMessages(t *testing.T) {
	srv := newTestServer(t, Options{}, channels.Options{}, nil)
	bystander := joinedSocket(t, srv, "room:calm")

	cases := []struct {
		name   string
		data   string
		binary bool
		reason string
	}{
		{name: "not JSON", data: `hello`, reason: "invalid message: message is not a JSON array"},
		{name: "object", data: `{"topic":"room:1"}`, reason: "invalid message: message is not a JSON array"},
		{name: "four elements", data: `[null,"1","room:1","ping"]`, reason: "invalid message: message array must have exactly 5 elements"},
		{name: "six elements", data: `[null,"1","room:1","ping",{},1]`, reason: "invalid message: message array must have exactly 5 elements"},
		{name: "numeric ref", data: `[null,1,"room:1","ping",{}]`, reason: "invalid message: ref must be a string or null"},
		{name: "null topic", data: `[null,"1",null,"ping",{}]`, reason: "invalid message: topic must be a string"},
		{name: "truncated", data: `[null,"1","room:1","ping",{}`},
		{name: "binary reply kind", data: "\x01\x00\x00\x01\x01\x00tx", binary: true},
		{name: "binary too short", data: "\x00\x05", binary: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialAs(t, srv, t.Name())
			typ := websocket.TextMessage
			if tc.binary {
				typ = websocket.BinaryMessage
			}
			c.sendRaw(typ, []byte(tc.data))
			code, reason := c.readClose()
			if code != channels.CloseInvalidPayload || !strings.HasPrefix(reason, "invalid message: ") {
				t.Fatalf("closed with %d %q, want 1007 and a reason", code, reason)
			}
			if tc.reason != "" && reason != tc.reason {
				t.Fatalf("reason %q, want %q", reason, tc.reason)
			}
		})
	}
	t.Run("invalid UTF-8", func(t *testing.T) {
		c := dialAs(t, srv, t.Name())
		c.sendRaw(websocket.TextMessage, []byte("[null,\"1\",\"phoenix\",\"heartbeat\",\"\xff\xfe\"]"))
		c.expectClose(channels.CloseInvalidPayload, "invalid UTF-8 in text message")
	})
	// The other socket did not notice.
	bystander.t = t
	ref := bystander.nextRef()
	bystander.send("1", ref, "room:calm", "ping", map[string]any{})
	bystander.expectReply("room:calm", ref, "ok")
}

func TestProtocolErrors(t *testing.T) {
	srv := newTestServer(t, Options{}, channels.Options{}, nil)
	unmasked := rawFrame(true, 0, 0x1, []byte("[]"))
	unmasked[1] &^= 0x80
	unmasked = append(unmasked[:2], []byte("[]")...)
	cases := []struct {
		name  string
		frame []byte
	}{
		{name: "reserved bit", frame: rawFrame(true, 4, 0x1, []byte("[]"))},
		{name: "reserved data opcode", frame: rawFrame(true, 0, 0x3, nil)},
		{name: "reserved control opcode", frame: rawFrame(true, 0, 0xB, nil)},
		{name: "unmasked", frame: unmasked},
		{name: "continuation first", frame: rawFrame(true, 0, 0x0, []byte("x"))},
		{name: "fragmented ping", frame: rawFrame(false, 0, 0x9, nil)},
		{name: "long ping", frame: rawFrame(true, 0, 0x9, make([]byte, 126))},
		{name: "new message inside a fragmented one", frame: append(rawFrame(false, 0, 0x1, []byte("[")), rawFrame(true, 0, 0x1, []byte("[]"))...)},
		{name: "bad close code", frame: rawFrame(true, 0, 0x8, []byte{0x03, 0xe8 + 5})}, // 1005
		{name: "one byte close payload", frame: rawFrame(true, 0, 0x8, []byte{0x03})},   //
		{name: "64-bit length with its top bit set", frame: []byte{0x81, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4}},
		{name: "close code 999", frame: rawFrame(true, 0, 0x8, binary.BigEndian.AppendUint16(nil, 999))}, //
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialAs(t, srv, t.Name())
			c.writeRaw(tc.frame)
			c.expectClose(channels.CloseProtocolError, "")
		})
	}
	eventually(t, "connections to end", func() bool { return srv.Connections() == 0 })
}

func TestFragmentedMessageWithPing(t *testing.T) {
	srv := newTestServer(t, Options{}, channels.Options{}, nil)
	c := dial(t, srv.url)
	pong := make(chan string, 1)
	c.ws.SetPongHandler(func(data string) error { pong <- data; return nil })

	c.writeRaw(rawFrame(false, 0, 0x1, []byte(`[null,"3",`)))
	c.writeRaw(rawFrame(true, 0, 0x9, []byte("mid-message")))
	c.writeRaw(rawFrame(false, 0, 0x0, []byte(`"phoenix","heart`)))
	c.writeRaw(rawFrame(true, 0, 0x0, []byte(`beat",{}]`)))
	c.expectReply("phoenix", "3", "ok")
	select {
	case p := <-pong:
		if p != "mid-message" {
			t.Fatalf("pong %q", p)
		}
	default:
		t.Fatal("no pong before the heartbeat reply")
	}
}

func TestClientClose(t *testing.T) {
	srv := newTestServer(t, Options{}, channels.Options{}, nil)
	c := joinedSocket(t, srv, "room:bye")
	msg := websocket.FormatCloseMessage(4000, "see you")
	if err := c.ws.WriteControl(websocket.CloseMessage, msg, deadline()); err != nil {
		t.Fatal(err)
	}
	c.expectClose(4000, "") // the server echoes the code
	eventually(t, "connection to end", func() bool { return srv.Connections() == 0 })
	eventually(t, "Terminate", func() bool {
		return contains(srv.rec.terminations(), "room:bye channels: socket closed")
	})
	if n := srv.node.Sockets(); n != 0 {
		t.Fatalf("node still has %d sockets", n)
	}
}

func TestAbruptDisconnect(t *testing.T) {
	srv := newTestServer(t, Options{}, channels.Options{}, nil)
	c := joinedSocket(t, srv, "room:gone")
	_ = c.ws.NetConn().Close()
	eventually(t, "connection to end", func() bool { return srv.Connections() == 0 && srv.node.Sockets() == 0 })
}

func TestRateLimit(t *testing.T) {
	srv := newTestServer(t, Options{MessageRate: 10, MessageBurst: 5}, channels.Options{}, nil)
	c := dial(t, srv.url)
	for range 20 {
		c.send("", c.nextRef(), "phoenix", "heartbeat", map[string]any{})
	}
	replies := 0
	for {
		m, err := c.tryRead()
		if err != nil {
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != channels.CloseRateLimited || ce.Text != "rate limit exceeded" {
				t.Fatalf("got %v, want close 4029", err)
			}
			break
		}
		if m.Event == "phx_reply" {
			replies++
		}
	}
	if replies < 5 || replies >= 20 {
		t.Fatalf("%d heartbeats answered before the close; want the burst (5) and not all", replies)
	}
}

// smallBuffers wraps a listener so that accepted connections have small
// kernel send buffers: a client that stops reading fills them quickly.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4096)
	}
	return c, err
}

// smallReadBuffer dials with a small kernel receive buffer.
func smallReadBuffer(network, addr string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.Dial(network, addr)
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	return c, err
}

func TestSlowConsumer(t *testing.T) {
	srv := newTestServer(t, Options{MaxQueueBytes: 64 << 10}, channels.Options{},
		func(l net.Listener) net.Listener { return smallBuffers{l} })
	fast := joinedSocket(t, srv, "room:feed")
	slow, err := dialWith(t, srv.url, dialOpts{netDial: smallReadBuffer})
	if err != nil {
		t.Fatal(err)
	}
	slow.mustJoin("room:feed", nil)

	// The slow client reads nothing while the fast one takes every
	// message; each broadcast waits for the fast client, so the fast
	// client's queue never holds more than one.
	const n = 200
	payload := map[string]any{"pad": strings.Repeat("z", 4096)}
	for i := range n {
		payload["i"] = i
		if err := srv.node.Broadcast(context.Background(), "room:feed", "tick", payload); err != nil {
			t.Fatal(err)
		}
		m := fast.expect("room:feed", "tick")
		if !strings.HasPrefix(string(m.Payload), `{"i":`+strconv.Itoa(i)+`,`) {
			t.Fatalf("fast client got %.20s... at %d", m.Payload, i)
		}
	}
	// Now the slow client reads what it got, then the close.
	got := 0
	var code int
	var reason string
	for {
		m, err := slow.tryRead()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				code, reason = ce.Code, ce.Text
			} else {
				t.Fatalf("slow client: %v", err)
			}
			break
		}
		if m.Event == "tick" {
			got++
		}
	}
	if code != channels.CloseSlowConsumer || reason != "slow consumer" {
		t.Fatalf("slow client closed with %d %q", code, reason)
	}
	if got >= n {
		t.Fatalf("slow client received all %d messages", got)
	}
	fast.heartbeat()
	t.Logf("slow client received %d of %d before the close", got, n)
	// Its reconnect meets the cooldown (refuse.go): 429 before the upgrade,
	// so that phoenix.js's backoff holds.
	if c, err := dialWith(t, srv.url, dialOpts{netDial: smallReadBuffer}); err == nil || c.resp == nil || c.resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("reconnect after 4008: %v, want HTTP 429", err)
	}
}

func TestWriteTimeout(t *testing.T) {
	srv := newTestServer(t, Options{WriteTimeout: 200 * time.Millisecond, MaxQueueBytes: 16 << 20}, channels.Options{},
		func(l net.Listener) net.Listener { return smallBuffers{l} })
	stuck, err := dialWith(t, srv.url, dialOpts{netDial: smallReadBuffer})
	if err != nil {
		t.Fatal(err)
	}
	stuck.mustJoin("room:stuck", nil)
	payload := map[string]string{"pad": strings.Repeat("w", 16<<10)}
	for range 64 {
		if err := srv.node.Broadcast(context.Background(), "room:stuck", "tick", payload); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the stuck connection to be dropped", func() bool { return srv.Connections() == 0 })
}

func TestDisconnectByID(t *testing.T) {
	srv := newTestServer(t, Options{}, channels.Options{}, nil)
	alice, err := dialWith(t, srv.url, dialOpts{query: "user=alice"})
	if err != nil {
		t.Fatal(err)
	}
	bob, err := dialWith(t, srv.url, dialOpts{query: "user=bob"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "sockets", func() bool { return srv.node.Sockets() == 2 })
	if err := srv.node.Disconnect(context.Background(), "alice", 0, "logged out"); err != nil {
		t.Fatal(err)
	}
	alice.expectClose(channels.CloseDisconnected, "logged out")
	bob.heartbeat()
}

func TestShutdown(t *testing.T) {
	srv := newTestServer(t, Options{}, channels.Options{}, nil)
	var clients []*client
	for i := range 5 {
		c := joinedSocket(t, srv, "room:"+strconv.Itoa(i%2))
		clients = append(clients, c)
	}
	var wg sync.WaitGroup
	codes := make([]int, len(clients))
	reasons := make([]string, len(clients))
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				_ = c.ws.SetReadDeadline(deadline())
				if _, _, err := c.ws.ReadMessage(); err != nil {
					var ce *websocket.CloseError
					if errors.As(err, &ce) {
						codes[i], reasons[i] = ce.Code, ce.Text
					}
					return
				}
			}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	wg.Wait()
	for i := range clients {
		if codes[i] != channels.CloseServiceRestart || !strings.HasPrefix(reasons[i], "service restart retry_after_ms=") {
			t.Errorf("client %d closed with %d %q", i, codes[i], reasons[i])
		}
	}
	if n := srv.Connections(); n != 0 {
		t.Fatalf("%d connections after Shutdown", n)
	}
	if n := srv.node.Sockets(); n != 0 {
		t.Fatalf("%d sockets after Shutdown", n)
	}
	c, err := dialWith(t, srv.url, dialOpts{})
	if !errors.Is(err, websocket.ErrBadHandshake) || c.resp == nil || c.resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial after Shutdown: %v", err)
	}
}

func TestShutdownDeadline(t *testing.T) {
	srv := newTestServer(t, Options{}, channels.Options{}, nil)
	mute := joinedSocket(t, srv, "room:mute") // never reads: never answers the close
	_ = mute
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want the context's deadline error", err)
	}
	eventually(t, "dropped connections to end", func() bool { return srv.Connections() == 0 })
}

func TestFrameLargerThanQueueLimit(t *testing.T) {
	// A frame bigger than MaxQueueBytes still reaches a client whose queue
	// is empty: the limit is about falling behind, not about size.
	srv := newTestServer(t, Options{MaxQueueBytes: 16 << 10}, channels.Options{}, nil)
	c := joinedSocket(t, srv, "room:big")
	big := strings.Repeat("b", 40<<10)
	if err := srv.node.Broadcast(context.Background(), "room:big", "big", map[string]string{"b": big}); err != nil {
		t.Fatal(err)
	}
	m := c.expect("room:big", "big")
	if len(m.Payload) < 40<<10 {
		t.Fatalf("payload of %d bytes", len(m.Payload))
	}
	c.heartbeat()
}
