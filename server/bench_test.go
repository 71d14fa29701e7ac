package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/channels/wire"
)

// frameCounter counts the server frames in a byte stream without
// allocating, so that benchmark clients add nothing to the allocation
// figures.
type frameCounter struct {
	hdr  [10]byte
	hn   int
	need int
}

func (f *frameCounter) feed(p []byte) (frames int) {
	for len(p) > 0 {
		if f.need > 0 {
			k := min(len(p), f.need)
			p, f.need = p[k:], f.need-k
			if f.need == 0 {
				frames++
			}
			continue
		}
		f.hdr[f.hn] = p[0]
		f.hn++
		p = p[1:]
		if f.hn < 2 {
			continue
		}
		l, hl := int(f.hdr[1]&0x7f), 2
		switch l {
		case 126:
			hl = 4
		case 127:
			hl = 10
		}
		if f.hn < hl {
			continue
		}
		switch l {
		case 126:
			l = int(f.hdr[2])<<8 | int(f.hdr[3])
		case 127:
			l = 0
			for _, b := range f.hdr[2:10] {
				l = l<<8 | int(b)
			}
		}
		f.hn = 0
		if l == 0 {
			frames++
		} else {
			f.need = l
		}
	}
	return frames
}

// benchClients is a set of raw WebSocket clients joined to one topic that
// count what they receive.
type benchClients struct {
	conns    []net.Conn
	received atomic.Int64
	target   atomic.Int64
	reached  chan struct{}
	credits  chan struct{} // when set, one is taken back per frame received
	wg       sync.WaitGroup
}

// newBenchClients dials n clients to srv and joins each to topic.
func newBenchClients(b *testing.B, srv *testServer, n int, topic string) *benchClients {
	return newBenchClientsWith(b, srv, n, topic, nil)
}

// newBenchClientsWith dials n clients that offer extensions (the frame
// counter counts compressed frames without inflating them).
func newBenchClientsWith(b *testing.B, srv *testServer, n int, topic string, extensions []httphead.Option) *benchClients {
	b.Helper()
	bc := &benchClients{reached: make(chan struct{}, 1)}
	join := rawFrame(true, 0, 0x1, []byte(`["1","1","`+topic+`","phx_join",{}]`))
	for range n {
		nc, br, hs, err := ws.Dialer{Timeout: wait, Extensions: extensions}.Dial(context.Background(), srv.url+"?vsn=2.0.0")
		if err != nil {
			b.Fatalf("dial: %v", err)
		}
		if br != nil {
			b.Fatal("unexpected bytes after the handshake")
		}
		if len(extensions) > 0 && len(hs.Extensions) == 0 {
			b.Fatal("the server did not accept the extensions offered")
		}
		bc.conns = append(bc.conns, nc)
		if _, err := nc.Write(join); err != nil {
			b.Fatal(err)
		}
		// Read the join reply: it must be ok (admission control must not
		// have shed the join, or the benchmark measures fewer recipients).
		_ = nc.SetReadDeadline(deadline())
		h, err := ws.ReadHeader(nc)
		if err != nil {
			b.Fatalf("join: %v", err)
		}
		reply := make([]byte, h.Length)
		if _, err := io.ReadFull(nc, reply); err != nil {
			b.Fatalf("join: %v", err)
		}
		if h.Rsv != 0 { // compressed
			if reply, err = wire.Inflate(nil, reply, 1<<20, nil); err != nil {
				b.Fatalf("join: %v", err)
			}
		}
		if !bytes.Contains(reply, []byte(`"status":"ok"`)) {
			b.Fatalf("join refused: %s", reply)
		}
		_ = nc.SetReadDeadline(time.Time{})
	}
	for _, nc := range bc.conns {
		bc.wg.Add(1)
		go bc.read(nc)
	}
	b.Cleanup(func() {
		for _, nc := range bc.conns {
			_ = nc.Close()
		}
		bc.wg.Wait()
	})
	return bc
}

func (bc *benchClients) read(nc net.Conn) {
	defer bc.wg.Done()
	var fc frameCounter
	buf := make([]byte, 32<<10)
	for {
		k, err := nc.Read(buf)
		if err != nil {
			return
		}
		if f := fc.feed(buf[:k]); f > 0 {
			if bc.credits != nil {
				for range f {
					<-bc.credits
				}
			}
			if bc.received.Add(int64(f)) == bc.target.Load() {
				bc.reached <- struct{}{}
			}
		}
	}
}

// await waits until the clients received total frames.
func (bc *benchClients) await(b *testing.B, total int64) {
	bc.target.Store(total)
	if bc.received.Load() >= total {
		select {
		case <-bc.reached:
		default:
		}
		return
	}
	select {
	case <-bc.reached:
	case <-time.After(wait):
		b.Fatalf("clients received %d of %d frames", bc.received.Load(), total)
	}
}

// BenchmarkBroadcast measures one broadcast delivered to every subscriber
// over real loopback connections: node.Broadcast (encode once, queue the
// same frame on every connection, start the writers), the writes, and the
// clients reading (on the same machine). publish-ns/op is the time spent in
// node.Broadcast alone; allocs/recipient counts every allocation of the
// process (the clients allocate nothing) divided by the subscribers. In
// the _deflate runs every subscriber negotiated permessage-deflate and the
// server compresses every frame (MinSize -1): once per broadcast.
func BenchmarkBroadcast(b *testing.B) {
	// 9,000 subscribers: the clients' connections and the server's (18,000
	// descriptors) share this process and its limit of 20,000 open files.
	for _, n := range []int{1, 100, 1000, 9000} {
		for _, deflate := range []bool{false, true} {
			name := strconv.Itoa(n) + "_subscribers"
			if deflate {
				name += "_deflate"
			}
			b.Run(name, func(b *testing.B) { benchBroadcast(b, n, deflate) })
		}
	}
}

func benchBroadcast(b *testing.B, n int, deflate bool) {
	if lim := openFileLimit(); lim != 0 && lim < 2*n+256 {
		b.Fatalf("%d subscribers need %d open files in this process; the limit is %d (raise ulimit -n)", n, 2*n+256, lim)
	}
	// All subscribers connect and join from one address at once.
	opts := Options{MessageRate: -1, ConnectRate: -1, ConnectRatePerIP: -1}
	var exts []httphead.Option
	if deflate {
		opts.Compression = Compression{Enabled: true, MinSize: -1}
		exts = []httphead.Option{wsflate.DefaultParameters.Option()}
	}
	srv := newTestServer(b, opts, channels.Options{JoinRate: -1, JoinRatePerIP: -1}, nil)
	bc := newBenchClientsWith(b, srv, n, "room:bench", exts)
	payload := json.RawMessage(`{"user":"bench","body":"hello, subscribers: a message of ordinary size"}`)
	ctx := context.Background()
	// One broadcast before measuring: the first one to n
	// connections creates n writer goroutines, whose g structures
	// the runtime allocates once and reuses afterwards.
	if err := srv.node.Broadcast(ctx, "room:bench", "new_msg", payload); err != nil {
		b.Fatal(err)
	}
	total := int64(n)
	bc.await(b, total)
	var publish time.Duration
	var ms0, ms1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms0)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		total += int64(n)
		t0 := time.Now()
		if err := srv.node.Broadcast(ctx, "room:bench", "new_msg", payload); err != nil {
			b.Fatal(err)
		}
		publish += time.Since(t0)
		bc.await(b, total)
	}
	b.StopTimer()
	runtime.ReadMemStats(&ms1)
	b.ReportMetric(float64(publish.Nanoseconds())/float64(b.N), "publish-ns/op")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(b.N)/float64(n), "allocs/recipient")
}

// BenchmarkSendWrite measures the transport's Send and write path on one
// connection: frames are queued as fast as the client reads them (at most
// 256 in flight), and the writer coalesces what accumulated into writev
// calls (about 250 frames per call in this benchmark).
func BenchmarkSendWrite(b *testing.B) {
	for _, size := range []int{64, 1024} {
		b.Run(strconv.Itoa(size)+"B", func(b *testing.B) {
			srv := newTestServer(b, Options{MessageRate: -1}, channels.Options{}, nil)
			bc := newBenchClients(b, srv, 1, "room:send")
			bc.credits = make(chan struct{}, 256)
			srv.mu.Lock()
			var c *conn
			for c = range srv.conns {
			}
			srv.mu.Unlock()
			payload := make([]byte, size)
			for i := range payload {
				payload[i] = 'a'
			}
			frame := wire.AppendFrameHeader(nil, wire.OpText, len(payload))
			frame = append(frame, payload...)
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				bc.credits <- struct{}{}
				if !c.Send(frame) {
					b.Fatal("Send refused")
				}
			}
			bc.await(b, int64(b.N))
		})
	}
}
