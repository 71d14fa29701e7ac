package wire_test

import (
	"bytes"
	"compress/flate"
	"errors"
	"strconv"
	"strings"
	"testing"

	"github.com/hearth-rt/hearth/channels/wire"
)

// deflateRaw compresses p as a permessage-deflate sender does: one message,
// sync flush, the final 00 00 ff ff removed.
func deflateRaw(t testing.TB, p []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := flate.NewWriter(&buf, flate.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = w.Write(p)
	_ = w.Flush()
	return bytes.TrimSuffix(buf.Bytes(), []byte{0, 0, 0xff, 0xff})
}

// payloadOf returns the payload of a server frame, checking the header's
// length.
func payloadOf(f []byte) []byte {
	n, p := int(f[1]&0x7f), f[2:]
	switch n {
	case 126:
		n, p = int(f[2])<<8|int(f[3]), f[4:]
	case 127:
		n, p = 0, f[10:]
		for _, b := range f[2:10] {
			n = n<<8 | int(b)
		}
	}
	if n != len(p) {
		panic("frame header and payload length disagree")
	}
	return p
}

func TestDeflaterFrame(t *testing.T) {
	d := wire.NewDeflater(flate.BestSpeed, 16)
	payload := []byte(strings.Repeat(`{"user":"ada","body":"hello hello"}`, 30))
	plain := append(wire.AppendFrameHeader(nil, wire.OpText, len(payload)), payload...)
	z := d.Frame(plain)
	if z[0] != 0x80|wire.RSV1|wire.OpText {
		t.Fatalf("compressed frame's first byte = %#x, want FIN|RSV1|text", z[0])
	}
	if len(z)*3 > len(plain) {
		t.Fatalf("compressed %d bytes from %d", len(z), len(plain))
	}
	got, err := wire.Inflate(nil, payloadOf(z), 1<<20, nil)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("Inflate = %q, %v; want the payload back", got, err)
	}
	if again := d.Frame(z); &again[0] != &z[0] {
		t.Fatal("an already compressed frame was compressed again")
	}

	for name, f := range map[string][]byte{
		"short":  append(wire.AppendFrameHeader(nil, wire.OpText, 5), "hello"...),
		"ping":   append(wire.AppendFrameHeader(nil, wire.OpPing, 20), make([]byte, 20)...),
		"close":  append(wire.AppendFrameHeader(nil, wire.OpClose, 20), make([]byte, 20)...),
		"masked": {0x81, 0x80 | 20, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		"empty":  nil,
	} {
		if out := d.Frame(f); len(f) > 0 && &out[0] != &f[0] || len(out) != len(f) {
			t.Errorf("%s: frame was changed", name)
		}
	}
}

func TestInflateLimit(t *testing.T) {
	bomb := deflateRaw(t, make([]byte, 10<<20)) // 10 MiB of zeros in about 10 KiB
	if len(bomb) > 64<<10 {
		t.Fatalf("bomb is %d bytes", len(bomb))
	}
	grown := 0
	out, err := wire.Inflate(nil, bomb, 64<<10, func(dst []byte, n int) []byte {
		grown += n
		return append(dst, make([]byte, n)...)[:len(dst)]
	})
	if !errors.Is(err, wire.ErrInflatedTooBig) || len(out) != 0 {
		t.Fatalf("Inflate = %d bytes, %v; want ErrInflatedTooBig", len(out), err)
	}
	if grown > 2*(64<<10)+1<<20 {
		t.Fatalf("the buffer grew by %d bytes for a 64 KiB limit", grown)
	}
	// Exactly at the limit passes.
	exact := deflateRaw(t, bytes.Repeat([]byte("ab"), 1000))
	if out, err := wire.Inflate(nil, exact, 2000, nil); err != nil || len(out) != 2000 {
		t.Fatalf("at the limit: %d bytes, %v", len(out), err)
	}
	if _, err := wire.Inflate(nil, exact, 1999, nil); !errors.Is(err, wire.ErrInflatedTooBig) {
		t.Fatalf("one byte over the limit: %v", err)
	}
	if _, err := wire.Inflate(nil, []byte{0xff, 0xff, 0xff}, 100, nil); !errors.Is(err, wire.ErrBadDeflate) {
		t.Fatalf("garbage: %v", err)
	}
	// dst's bytes are kept; the message is appended.
	if out, err := wire.Inflate([]byte("x:"), deflateRaw(t, []byte("hello")), 5, nil); err != nil || string(out) != "x:hello" {
		t.Fatalf("append: %q %v", out, err)
	}
}

// FuzzInflate checks the inflater's property: any input yields either at
// most limit bytes or one of its two errors; never a panic, never more.
// Valid input round-trips through the Deflater.
func FuzzInflate(f *testing.F) {
	f.Add(deflateRaw(f, []byte(`["1","1","room:lobby","phx_join",{}]`)), uint16(100))
	f.Add(deflateRaw(f, make([]byte, 5000)), uint16(4096))
	f.Add([]byte{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}, uint16(5))
	f.Add([]byte{}, uint16(0))
	f.Add([]byte{0x00, 0x00, 0xff, 0xff}, uint16(1))
	d := wire.NewDeflater(flate.BestSpeed, 0)
	f.Fuzz(func(t *testing.T, z []byte, limit uint16) {
		out, err := wire.Inflate(nil, z, int64(limit), nil)
		switch {
		case err == nil:
			if len(out) > int(limit) {
				t.Fatalf("%d bytes over a limit of %d", len(out), limit)
			}
			// What inflated must survive a round trip.
			frame := d.Frame(append(wire.AppendFrameHeader(nil, wire.OpBinary, len(out)), out...))
			back, err := wire.Inflate(nil, payloadOf(frame), int64(limit), nil)
			if err != nil || !bytes.Equal(back, out) {
				t.Fatalf("round trip: %q, %v; want %q", back, err, out)
			}
		case errors.Is(err, wire.ErrInflatedTooBig), errors.Is(err, wire.ErrBadDeflate):
			if len(out) != 0 {
				t.Fatalf("%d bytes returned with %v", len(out), err)
			}
		default:
			t.Fatalf("unexpected error %v", err)
		}
	})
}

// chatDoc returns a JSON document of about n bytes of chat messages.
func chatDoc(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"messages":[`)
	words := strings.Fields("see you at the meeting tomorrow ok thanks the build is green again deploy now please call me when ready")
	for i := 0; b.Len() < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`{"id":`)
		b.WriteString(strings.Repeat("1", 1+i%5))
		b.WriteString(`,"user":"`)
		b.WriteString(words[(i*7)%len(words)])
		b.WriteString(`","text":"`)
		for k := range 6 {
			b.WriteString(words[(i*13+k*5)%len(words)])
			b.WriteByte(' ')
		}
		b.WriteString(`"}`)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

// BenchmarkDeflateFrame measures compressing one frame, the cost a
// broadcast pays once and a reply per connection; compressed-bytes/op is
// the frame's size after compression.
func BenchmarkDeflateFrame(b *testing.B) {
	for _, tc := range []struct {
		name    string
		payload []byte
	}{
		{"chat-100B", benchMsg},
		{"json-4KB", chatDoc(4096)},
	} {
		for _, level := range []int{flate.BestSpeed, 6} {
			b.Run(tc.name+"-level"+strconv.Itoa(level), func(b *testing.B) {
				d := wire.NewDeflater(level, 0)
				frame := append(wire.AppendFrameHeader(nil, wire.OpText, len(tc.payload)), tc.payload...)
				var out []byte
				b.ReportAllocs()
				b.SetBytes(int64(len(tc.payload)))
				for b.Loop() {
					out = d.Frame(frame)
				}
				b.ReportMetric(float64(len(out)), "compressed-bytes/op")
				b.ReportMetric(float64(len(frame)), "plain-bytes/op")
			})
		}
	}
}

// BenchmarkInflate measures inflating one client message.
func BenchmarkInflate(b *testing.B) {
	for _, tc := range []struct {
		name    string
		payload []byte
	}{
		{"chat-100B", benchMsg},
		{"json-4KB", chatDoc(4096)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			z := deflateRaw(b, tc.payload)
			dst := make([]byte, 0, 8192)
			b.ReportAllocs()
			b.SetBytes(int64(len(tc.payload)))
			for b.Loop() {
				if _, err := wire.Inflate(dst, z, 1<<20, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
