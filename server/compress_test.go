package server

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/hearth-rt/hearth/channels"
)

// countingConn counts the bytes read from the network.
type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// dialCounting dials url with gorilla, offering permessage-deflate when
// compress is set, and counts the bytes the client reads.
func dialCounting(t *testing.T, url string, compress bool) (*client, *atomic.Int64) {
	t.Helper()
	n := new(atomic.Int64)
	d := websocket.Dialer{
		HandshakeTimeout:  wait,
		EnableCompression: compress,
		NetDial: func(network, addr string) (net.Conn, error) {
			nc, err := net.Dial(network, addr)
			if err != nil {
				return nil, err
			}
			return countingConn{nc, n}, nil
		},
	}
	ws, resp, err := d.Dial(url+"?vsn=2.0.0", nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = ws.Close() })
	ext := resp.Header.Get("Sec-WebSocket-Extensions")
	if compress != (ext != "") {
		t.Fatalf("offered compression: %v; the server answered %q", compress, ext)
	}
	return &client{t: t, ws: ws, resp: resp}, n
}

// upgradeWith sends an upgrade request offering extensions and returns the
// response status and its Sec-WebSocket-Extensions header.
func upgradeWith(t *testing.T, srv *testServer, extensions string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.http.URL+"/socket/websocket?vsn=2.0.0", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	if extensions != "" {
		req.Header.Set("Sec-WebSocket-Extensions", extensions)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Sec-WebSocket-Extensions")
}

func TestCompressionNegotiation(t *testing.T) {
	const accepted = "permessage-deflate;server_no_context_takeover;client_no_context_takeover"
	on := newTestServer(t, Options{Compression: Compression{Enabled: true}}, channels.Options{}, nil)
	off := newTestServer(t, Options{}, channels.Options{}, nil)
	for _, tc := range []struct {
		name, offer, want string
		srv               *testServer
	}{
		{"browser offer", "permessage-deflate; client_max_window_bits", accepted, on},
		{"bare offer", "permessage-deflate", accepted, on},
		{"both no-context-takeover", "permessage-deflate; server_no_context_takeover; client_no_context_takeover", accepted, on},
		{"full server window", "permessage-deflate; server_max_window_bits=15", accepted, on},
		{"client window value", "permessage-deflate; client_max_window_bits=10", accepted, on},
		{"small server window declined", "permessage-deflate; server_max_window_bits=10", "", on},
		{"fallback offer taken", "permessage-deflate; server_max_window_bits=9, permessage-deflate", accepted, on},
		{"first acceptable offer only", "permessage-deflate, permessage-deflate; client_max_window_bits", accepted, on},
		{"unknown parameter declined", "permessage-deflate; level=9", "", on},
		{"invalid window declined", "permessage-deflate; server_max_window_bits=99", "", on},
		{"duplicate parameter declined", "permessage-deflate; server_no_context_takeover; server_no_context_takeover", "", on},
		{"other extension ignored", "x-webkit-deflate-frame", "", on},
		{"no offer", "", "", on},
		{"compression off", "permessage-deflate; client_max_window_bits", "", off},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, ext := upgradeWith(t, tc.srv, tc.offer)
			ext = strings.ReplaceAll(ext, " ", "")
			if status != http.StatusSwitchingProtocols || ext != tc.want {
				t.Fatalf("offer %q: %d %q, want 101 %q", tc.offer, status, ext, tc.want)
			}
		})
	}
}

func TestCompressionOptions(t *testing.T) {
	node, _ := newTestNode(t, channels.Options{})
	defer func() { _ = node.Broker().Close() }()
	s := New(node, Options{Compression: Compression{Enabled: true}})
	if d := s.deflater; d == nil || d.Level() != flate.BestSpeed || d.MinSize() != 256 {
		t.Fatalf("defaults: %+v", s.deflater)
	}
	if s := New(node, Options{}); s.deflater != nil {
		t.Fatal("compression is on by default")
	}
	if s := New(node, Options{Compression: Compression{Enabled: true, Level: 9, MinSize: -1}}); s.deflater.Level() != 9 || s.deflater.MinSize() != 0 {
		t.Fatalf("Level 9, MinSize -1: %d %d", s.deflater.Level(), s.deflater.MinSize())
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "Compression.Level") {
			t.Fatalf("level 12: recovered %v", r)
		}
	}()
	New(node, Options{Compression: Compression{Enabled: true, Level: 12}})
}

// repetitive returns a JSON document of about n bytes that compresses well,
// as chat history or a feed does.
func repetitive(n int) json.RawMessage {
	var b strings.Builder
	b.WriteString(`{"messages":[`)
	for i := 0; b.Len() < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"user":"ada","room":"lobby","body":"see you at the meeting `)
		b.WriteString(string(rune('a' + i%26)))
		b.WriteString(`","ts":1700000000}`)
	}
	b.WriteString(`]}`)
	return json.RawMessage(b.String())
}

// Repetitive payloads reach a compressing client intact at a third or
// less of what a client without compression reads; replies, pushes and
// compressed client messages work both ways.
func TestCompressedTraffic(t *testing.T) {
	srv := newTestServer(t, Options{Compression: Compression{Enabled: true}}, channels.Options{}, nil)
	zc, zn := dialCounting(t, srv.url, true)
	pc, pn := dialCounting(t, srv.url, false)
	zj := zc.mustJoin("room:z", map[string]any{})
	pc.mustJoin("room:z", map[string]any{})

	doc := repetitive(4096)
	z0, p0 := zn.Load(), pn.Load()
	const rounds = 10
	for range rounds {
		if err := srv.node.Broadcast(context.Background(), "room:z", "doc", doc); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []*client{zc, pc} {
		for range rounds {
			if m := c.expect("room:z", "doc"); !bytes.Equal(m.Payload, doc) {
				t.Fatalf("broadcast payload changed: %.80s...", m.Payload)
			}
		}
	}
	zb, pb := zn.Load()-z0, pn.Load()-p0
	t.Logf("%d broadcasts of %d bytes: %d bytes on the wire compressed, %d plain", rounds, len(doc), zb, pb)
	if zb*3 > pb {
		t.Fatalf("compressed client read %d bytes, plain client %d: want a third or less", zb, pb)
	}

	// A compressed client message, its reply, and a push.
	zc.ws.EnableWriteCompression(true)
	ref := zc.nextRef()
	zc.send(zj, ref, "room:z", "ping", doc)
	if resp := zc.expectReply("room:z", ref, "ok"); !bytes.Equal(resp, doc) {
		t.Fatalf("echo of a compressed message: %.80s...", resp)
	}
	ref = zc.nextRef()
	zc.send(zj, ref, "room:z", "push_me", doc)
	if m := zc.expect("room:z", "pushed"); !bytes.Equal(m.Payload, doc) {
		t.Fatalf("push: %.80s...", m.Payload)
	}
	zc.expectReply("room:z", ref, "ok")
	zc.heartbeat() // short messages go uncompressed both ways
	zc.ws.EnableWriteCompression(false)
	zc.heartbeat()
}

// sendFrame writes a raw frame on c's connection.
func sendFrame(t *testing.T, c *client, f []byte) {
	t.Helper()
	_ = c.ws.NetConn().SetWriteDeadline(time.Now().Add(wait))
	if _, err := c.ws.NetConn().Write(f); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// deflated compresses p as a permessage-deflate client does.
func deflated(t *testing.T, p []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, _ := flate.NewWriter(&buf, flate.BestCompression)
	_, _ = w.Write(p)
	_ = w.Flush()
	return bytes.TrimSuffix(buf.Bytes(), []byte{0, 0, 0xff, 0xff})
}

// Inbound compressed messages: the size limit applies to the inflated
// message, bits the connection may not set close it with 1002, invalid
// compressed data with 1007, and a compressed message may be fragmented.
func TestCompressedInboundLimits(t *testing.T) {
	// Each case reconnects from the same address after a close for what
	// the client did: no reconnect cooldown (refuse.go) in between.
	srv := newTestServer(t, Options{Compression: Compression{Enabled: true}, MaxMessageSize: 64 << 10, ReconnectCooldown: -1}, channels.Options{}, nil)
	plainSrv := newTestServer(t, Options{ReconnectCooldown: -1}, channels.Options{}, nil)
	msg := func(body string) []byte {
		return []byte(`["1","2","room:z","ping",{"body":"` + body + `"}]`)
	}
	for _, tc := range []struct {
		name   string
		srv    *testServer
		frames [][]byte
		code   int
		reason string
	}{
		{"zip bomb", srv, [][]byte{rawFrame(true, 4, 0x1, deflated(t, msg(strings.Repeat(" ", 10<<20))))}, 1009, "message too big"},
		{"just over the limit", srv, [][]byte{rawFrame(true, 4, 0x1, deflated(t, msg(strings.Repeat("x", 64<<10))))}, 1009, "message too big"},
		{"RSV1 without compression", plainSrv, [][]byte{rawFrame(true, 4, 0x1, deflated(t, msg("hi")))}, 1002, ""},
		{"RSV1 on a ping", srv, [][]byte{rawFrame(true, 4, 0x9, deflated(t, []byte("hi")))}, 1002, ""},
		{"RSV1 on a continuation", srv, [][]byte{rawFrame(false, 4, 0x1, deflated(t, msg("hi"))), rawFrame(true, 4, 0x0, nil)}, 1002, ""},
		{"RSV2", srv, [][]byte{rawFrame(true, 2, 0x1, msg("hi"))}, 1002, ""},
		{"invalid deflate data", srv, [][]byte{rawFrame(true, 4, 0x1, []byte{0xff, 0xfe, 0xfd, 0xfc})}, 1007, "invalid compressed message"},
		{"inflated text not UTF-8", srv, [][]byte{rawFrame(true, 4, 0x1, deflated(t, []byte{0xff, 0xfe}))}, 1007, "invalid UTF-8 in text message"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := dialCounting(t, tc.srv.url, tc.srv == srv)
			c.mustJoin("room:z", map[string]any{})
			for _, f := range tc.frames {
				sendFrame(t, c, f)
			}
			c.expectClose(tc.code, tc.reason)
		})
	}

	t.Run("fragmented compressed message", func(t *testing.T) {
		c, _ := dialCounting(t, srv.url, true)
		jr := c.mustJoin("room:z", map[string]any{})
		body := strings.Repeat("abc", 20000) // 60 KB inflated: under the limit
		z := deflated(t, []byte(`["`+jr+`","7","room:z","ping",{"body":"`+body+`"}]`))
		half := len(z) / 2
		sendFrame(t, c, rawFrame(false, 4, 0x1, z[:half]))
		sendFrame(t, c, rawFrame(true, 0, 0x9, []byte("between"))) // a ping between fragments
		sendFrame(t, c, rawFrame(true, 0, 0x0, z[half:]))
		resp := c.expectReply("room:z", "7", "ok")
		if !strings.Contains(string(resp), body) {
			t.Fatalf("echo: %.80s...", resp)
		}
		// The next, uncompressed message is read as such.
		c.heartbeat()
	})
}

// A zip bomb counts like any message too big for the reconnect cooldown
// (refuse.go): a phoenix.js client that sent one is refused with 429
// before its next upgrade.
func TestCompressedBombCoolsDown(t *testing.T) {
	srv := newTestServer(t, Options{Compression: Compression{Enabled: true}, ReconnectCooldown: time.Minute}, channels.Options{}, nil)
	c, _ := dialCounting(t, srv.url, true)
	c.mustJoin("room:z", map[string]any{})
	sendFrame(t, c, rawFrame(true, 4, 0x1, deflated(t, []byte(`["1","2","room:z","ping",{"b":"`+strings.Repeat(" ", 1<<20)+`"}]`))))
	c.expectClose(channels.CloseTooBig, "message too big")
	eventually(t, "the connection to end", func() bool { return srv.Connections() == 0 })
	if got := tryConnect(t, srv.url, ""); got.status != http.StatusTooManyRequests {
		t.Fatalf("reconnect after a zip bomb: %+v, want HTTP 429", got)
	}
}
