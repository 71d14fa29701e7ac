package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/hearth-rt/hearth/channels"
)

// pollMode reports whether the suite runs with the poller.
func pollMode() bool { return !netpollDisabled && runtime.GOOS == "linux" }

// rawConn dials srv with a plain TCP connection speaking WebSocket through
// hand-made frames.
func rawDial(t *testing.T, srv *testServer) net.Conn {
	t.Helper()
	nc, br, _, err := ws.Dialer{Timeout: wait}.Dial(context.Background(), srv.url+"?vsn=2.0.0")
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	if br != nil {
		t.Fatal("unexpected bytes after the handshake")
	}
	t.Cleanup(func() { _ = nc.Close() })
	return nc
}

// readFrame reads one server frame (unmasked) from nc.
func readFrame(t *testing.T, nc net.Conn) (ws.OpCode, []byte) {
	t.Helper()
	_ = nc.SetReadDeadline(deadline())
	h, err := ws.ReadHeader(nc)
	if err != nil {
		t.Fatalf("read header: %v", err)
	}
	p := make([]byte, h.Length)
	if _, err := readFull(nc, p); err != nil {
		t.Fatalf("read payload: %v", err)
	}
	return h.OpCode, p
}

func readFull(nc net.Conn, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k, err := nc.Read(p[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// expectText reads frames until a text frame, skipping pongs, and checks
// that it contains want.
func expectText(t *testing.T, nc net.Conn, want string) {
	t.Helper()
	for {
		op, p := readFrame(t, nc)
		if op == ws.OpPong {
			continue
		}
		if op != ws.OpText || !strings.Contains(string(p), want) {
			t.Fatalf("got opcode %v %q, want a text frame with %q", op, p, want)
		}
		return
	}
}

func heartbeatFrame(ref int) []byte {
	return rawFrame(true, 0, 0x1, []byte(`[null,"`+strconv.Itoa(ref)+`","phoenix","heartbeat",{}]`))
}

// TestByteByByte sends frames one byte per write: headers and payloads
// arrive in pieces, and the reader must put them together.
func TestByteByByte(t *testing.T) {
	srv := newTestServer(t, Options{}, channels.Options{}, nil)
	nc := rawDial(t, srv)
	var stream []byte
	stream = append(stream, rawFrame(false, 0, 0x1, []byte(`[null,"7","pho`))...)
	stream = append(stream, rawFrame(true, 0, 0x9, []byte("ping!"))...)
	stream = append(stream, rawFrame(true, 0, 0x0, []byte(`enix","heartbeat",{"pad":"`+strings.Repeat("p", 300)+`"}]`))...)
	for i := range stream {
		if _, err := nc.Write(stream[i : i+1]); err != nil {
			t.Fatal(err)
		}
		if i%16 == 0 {
			time.Sleep(time.Millisecond) // let the server read the pieces apart
		}
	}
	op, p := readFrame(t, nc)
	if op != ws.OpPong || string(p) != "ping!" {
		t.Fatalf("got opcode %v %q, want the pong", op, p)
	}
	expectText(t, nc, `"7","phoenix","phx_reply",{"status":"ok"`)
}

// TestRandomChunks sends a long stream of frames of every kind (text and
// binary messages, fragmented ones with pings between the fragments,
// 16-bit and 64-bit lengths) cut at random places, and checks every
// answer.
func TestRandomChunks(t *testing.T) {
	srv := newTestServer(t, Options{MessageRate: -1, MaxMessageSize: 1 << 20}, channels.Options{}, nil)
	nc := rawDial(t, srv)
	rng := rand.New(rand.NewPCG(1, 2))
	var stream []byte
	const n = 60
	for i := range n {
		ref := strconv.Itoa(i + 1)
		msg := []byte(`[null,"` + ref + `","phoenix","heartbeat",{"pad":"` + strings.Repeat("x", rng.IntN(300)) + `"}]`)
		if i%10 == 9 {
			msg = []byte(`[null,"` + ref + `","phoenix","heartbeat",{"pad":"` + strings.Repeat("y", 70000) + `"}]`)
		}
		switch i % 3 {
		case 0:
			stream = append(stream, rawFrame(true, 0, 0x1, msg)...)
		case 1: // fragmented, a ping in the middle
			cut := len(msg) / 2
			stream = append(stream, rawFrame(false, 0, 0x1, msg[:cut])...)
			stream = append(stream, rawFrame(true, 0, 0x9, []byte(ref))...)
			stream = append(stream, rawFrame(true, 0, 0x0, msg[cut:])...)
		case 2: // binary push on an unjoined topic: an error reply
			b := []byte{0, 0, byte(len(ref)), 6, 4}
			b = append(b, ref...)
			b = append(b, "room:x"...)
			b = append(b, "ping"...)
			stream = append(stream, rawFrame(true, 0, 0x2, append(b, 1, 2, 3))...)
		}
	}
	go func() {
		for len(stream) > 0 {
			k := min(len(stream), 1+rng.IntN(200))
			if _, err := nc.Write(stream[:k]); err != nil {
				return
			}
			stream = stream[k:]
			if rng.IntN(4) == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	for i := range n {
		ref := strconv.Itoa(i + 1)
		for {
			op, p := readFrame(t, nc)
			if op == ws.OpPong {
				if string(p) != ref {
					t.Fatalf("pong %q, want %q", p, ref)
				}
				continue
			}
			want := `[null,"` + ref + `","phoenix","phx_reply",{"status":"ok"`
			if i%3 == 2 {
				want = `[null,"` + ref + `","room:x","phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}]`
			}
			if op != ws.OpText || !bytes.HasPrefix(p, []byte(want)) {
				t.Fatalf("message %d: got opcode %v %.200q, want %s", i, op, p, want)
			}
			break
		}
	}
}

// TestSlowDripClients holds many connections in the middle of a frame,
// each sending one more byte from time to time, while another client is
// served normally: a reader never waits for a slow client. With the
// poller the dripping connections hold no goroutine.
func TestSlowDripClients(t *testing.T) {
	srv := newTestServer(t, Options{}, channels.Options{}, nil)
	normal := joinedSocket(t, srv, "room:busy")
	const drips = 100
	before := runtime.NumGoroutine()
	frame := heartbeatFrame(1)
	var conns []net.Conn
	for range drips {
		nc := rawDial(t, srv)
		if _, err := nc.Write(frame[:3]); err != nil {
			t.Fatal(err)
		}
		conns = append(conns, nc)
	}
	eventually(t, "the connections", func() bool { return srv.Connections() == drips+1 })
	for round := 3; round < 9; round++ {
		for _, nc := range conns {
			if _, err := nc.Write(frame[round : round+1]); err != nil {
				t.Fatal(err)
			}
		}
		normal.heartbeat()
	}
	grown := runtime.NumGoroutine() - before
	if pollMode() && grown >= drips/2 {
		t.Fatalf("%d more goroutines for %d dripping connections", grown, drips)
	}
	if !pollMode() && grown < drips*9/10 {
		t.Fatalf("%d more goroutines for %d connections with reader goroutines", grown, drips)
	}
	// The frames complete: every dripping client gets its reply.
	for _, nc := range conns {
		if _, err := nc.Write(frame[9:]); err != nil {
			t.Fatal(err)
		}
	}
	for _, nc := range conns {
		expectText(t, nc, `"1","phoenix","phx_reply"`)
	}
}

// TestIdleJoinedHoldNoGoroutine checks the poller's promise: an idle
// joined connection has no goroutine.
func TestIdleJoinedHoldNoGoroutine(t *testing.T) {
	srv := newTestServer(t, Options{}, channels.Options{}, nil)
	joinedSocket(t, srv, "room:warm") // the poller and a worker exist
	const n = 200
	base := runtime.NumGoroutine()
	for i := range n {
		joinedSocket(t, srv, "room:"+strconv.Itoa(i%7))
	}
	grown := runtime.NumGoroutine() - base
	t.Logf("%d idle joined connections: %d more goroutines", n, grown)
	if pollMode() && grown >= n/10 {
		t.Fatalf("%d more goroutines for %d idle connections", grown, n)
	}
	if !pollMode() && grown < n*9/10 {
		t.Fatalf("%d more goroutines for %d connections with reader goroutines", grown, n)
	}
}

// TestMidFrameIdleTimeout: a client that stops in the middle of a frame
// is closed with 1001 when the idle timeout passes, like one that sends
// nothing.
func TestMidFrameIdleTimeout(t *testing.T) {
	srv := newTestServer(t, Options{IdleTimeout: 200 * time.Millisecond}, channels.Options{}, nil)
	c := dial(t, srv.url)
	c.writeRaw(heartbeatFrame(1)[:10])
	c.expectClose(channels.CloseGoingAway, "idle timeout")
	_ = c.ws.NetConn().Close() // the server drains until then
	eventually(t, "the connection to end", func() bool { return srv.Connections() == 0 })
}

// TestBlockingReadsOption serves connections with reader goroutines
// whatever the suite's mode.
func TestBlockingReadsOption(t *testing.T) {
	srv := newTestServer(t, Options{BlockingReads: true}, channels.Options{}, nil)
	joinedSocket(t, srv, "room:a")
	base := runtime.NumGoroutine()
	const n = 20
	for range n {
		joinedSocket(t, srv, "room:a")
	}
	if grown := runtime.NumGoroutine() - base; grown < n*9/10 {
		t.Fatalf("%d more goroutines for %d connections with BlockingReads", grown, n)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	for c := range srv.conns {
		if c.pr != nil {
			t.Fatal("a connection is served by the poller despite BlockingReads")
		}
	}
}

// TestParseHeader compares the incremental reader's header decoding with
// gobwas/ws on headers of every length form.
func TestParseHeader(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	lengths := []int64{0, 1, 125, 126, 127, 65535, 65536, 1 << 40}
	for i := range 400 {
		b0 := byte(rng.IntN(256))
		l := lengths[i%len(lengths)]
		var hdr []byte
		switch {
		case l < 126:
			hdr = []byte{b0, byte(l)}
		case l <= 0xffff:
			hdr = binary.BigEndian.AppendUint16([]byte{b0, 126}, uint16(l))
		default:
			hdr = binary.BigEndian.AppendUint64([]byte{b0, 127}, uint64(l))
		}
		if rng.IntN(2) == 0 {
			hdr[1] |= 0x80
			hdr = append(hdr, byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256)))
		}
		if hl := headerLen(hdr[0], hdr[1]); hl != len(hdr) {
			t.Fatalf("headerLen %d for a %d-byte header % x", hl, len(hdr), hdr)
		}
		want, werr := ws.ReadHeader(bytes.NewReader(hdr))
		got, gerr := parseHeader(hdr)
		if got != want || (werr == nil) != (gerr == nil) {
			t.Fatalf("header % x: got %+v %v, want %+v %v", hdr, got, gerr, want, werr)
		}
	}
	// The most significant bit of a 64-bit length.
	hdr := []byte{0x81, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4}
	if _, err := parseHeader(hdr); err != ws.ErrHeaderLengthMSB {
		t.Fatalf("got %v, want ErrHeaderLengthMSB", err)
	}
}
