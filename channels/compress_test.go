package channels_test

import (
	"bytes"
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/channels/wire"
)

// zrecorder is a recorder whose connection negotiated compression.
type zrecorder struct {
	*recorder
	d *wire.Deflater
}

func (z zrecorder) Deflater() *wire.Deflater { return z.d }

func connectZ(t *testing.T, n *channels.Node, params url.Values, d *wire.Deflater) *client {
	t.Helper()
	s, err := n.NewSocket(context.Background(), channels.ConnectEvent{Params: params})
	if err != nil {
		t.Fatalf("NewSocket: %v", err)
	}
	c := &client{t: t, s: s, r: newRecorder()}
	s.Start(zrecorder{c.r, d})
	t.Cleanup(c.close)
	return c
}

// lastFrame waits for c's next frame and returns it as sent.
func (c *client) lastFrame() []byte {
	c.t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		c.r.mu.Lock()
		if c.seen < len(c.r.frames) {
			f := c.r.frames[c.seen]
			c.seen++
			c.r.mu.Unlock()
			return f
		}
		c.r.mu.Unlock()
		select {
		case <-c.r.wake:
		case <-deadline:
			c.t.Fatal("no frame from the server within 5s")
		}
	}
}

// inflateFrame returns the payload of a compressed server frame, inflated.
func inflateFrame(t *testing.T, f []byte) []byte {
	t.Helper()
	if f[0]&wire.RSV1 == 0 {
		t.Fatalf("frame %q is not compressed", f)
	}
	_, z := unframe(t, f)
	p, err := wire.Inflate(nil, z, 1<<20, nil)
	if err != nil {
		t.Fatalf("Inflate: %v", err)
	}
	return p
}

// A broadcast is compressed once: every compressing subscriber gets the
// very same bytes (one backing array), every other subscriber the same
// plain frame, and the Hearth binary variant is compressed on its own.
func TestBroadcastCompressedOnce(t *testing.T) {
	n := chatNode(t, channels.Options{})
	d := wire.NewDeflater(1, 64)
	var zs, plains []*client
	for range 3 {
		zs = append(zs, connectZ(t, n, nil, d))
		plains = append(plains, connect(t, n, nil))
	}
	zext := connectZ(t, n, url.Values{channels.ExtParam: {"1"}}, d)
	for _, c := range append(append(zs, plains...), zext) {
		c.join("room:z", nil, "ok")
	}

	body := strings.Repeat(`{"user":"ada","body":"the same words again and again"},`, 20)
	payload := []byte(`{"list":[` + body + `{}]}`)
	if err := n.Broadcast(context.Background(), "room:z", "news", jsonRaw(payload)); err != nil {
		t.Fatal(err)
	}
	first := zs[0].lastFrame()
	for _, c := range append(zs[1:], zext) {
		if f := c.lastFrame(); &f[0] != &first[0] || len(f) != len(first) {
			t.Fatal("compressing subscribers got different copies of the compressed broadcast")
		}
	}
	plain := plains[0].lastFrame()
	for _, c := range plains[1:] {
		if f := c.lastFrame(); &f[0] != &plain[0] {
			t.Fatal("plain subscribers got different copies of the broadcast")
		}
	}
	if plain[0]&wire.RSV1 != 0 {
		t.Fatal("a subscriber without compression got a compressed frame")
	}
	_, want := unframe(t, plain)
	if got := inflateFrame(t, first); !bytes.Equal(got, want) {
		t.Fatalf("inflated broadcast = %q, want %q", got, want)
	}
	if len(first)*3 > len(plain) {
		t.Fatalf("compressed frame %d bytes, plain %d: want a third or less", len(first), len(plain))
	}

	// Binary: the Hearth extension's variant carries the position and is
	// compressed separately.
	blob := bytes.Repeat([]byte("0123456789abcdef"), 16)
	if err := n.Broadcast(context.Background(), "room:z", "blob", blob); err != nil {
		t.Fatal(err)
	}
	zb := zs[0].lastFrame()
	xb := zext.lastFrame()
	if &zb[0] == &xb[0] {
		t.Fatal("the Hearth binary variant shares the plain binary frame")
	}
	if got := inflateFrame(t, xb); !bytes.HasSuffix(got, blob) || got[0] != wire.KindBroadcastPos {
		t.Fatalf("extension variant inflated to %q", got)
	}
	if got := inflateFrame(t, zb); !bytes.HasSuffix(got, blob) || got[0] != wire.KindBroadcast {
		t.Fatalf("binary broadcast inflated to %q", got)
	}

	if pb := plains[0].lastFrame(); pb[0]&wire.RSV1 != 0 || !bytes.HasSuffix(pb, blob) {
		t.Fatal("a subscriber without compression got a compressed binary broadcast")
	}

	// Below MinSize a broadcast goes out plain, the same frame for all.
	if err := n.Broadcast(context.Background(), "room:z", "short", map[string]int{"n": 1}); err != nil {
		t.Fatal(err)
	}
	s1, s2 := zs[0].lastFrame(), plains[0].lastFrame()
	if s1[0]&wire.RSV1 != 0 || &s1[0] != &s2[0] {
		t.Fatal("a short broadcast was compressed, or not shared")
	}
}
