package wire

import (
	"bytes"
	"compress/flate"
	"errors"
	"io"
	"sync"
)

// RSV1 is the bit of a frame's first byte that marks a message compressed
// with permessage-deflate (RFC 7692).
const RSV1 = 0x40

// A Deflater compresses server frames for connections that negotiated
// permessage-deflate without context takeover: every message is compressed
// on its own, so one compressed frame can be written to any number of such
// connections. A Deflater holds no compressor: compressors come from a pool
// shared by every Deflater of the same level, and go back to it after each
// frame. Its methods may be called concurrently.
type Deflater struct {
	level   int
	minSize int
	pool    *sync.Pool
}

// NewDeflater returns a Deflater compressing with a compress/flate level
// (1, fastest, to 9, smallest; [flate.HuffmanOnly] too) the data frames
// whose payload has at least minSize bytes. It panics on an invalid level.
func NewDeflater(level, minSize int) *Deflater {
	if level < flate.HuffmanOnly || level > flate.BestCompression || level == flate.NoCompression {
		panic("wire: invalid deflate level")
	}
	if level == flate.DefaultCompression {
		level = 6
	}
	return &Deflater{level: level, minSize: max(minSize, 0), pool: &deflatePools[level+2]}
}

// Level returns the compression level.
func (d *Deflater) Level() int { return d.level }

// MinSize returns the smallest payload the Deflater compresses.
func (d *Deflater) MinSize() int { return d.minSize }

// deflatePools holds idle compressors by level (index level+2: HuffmanOnly
// is -2).
var deflatePools [flate.BestCompression + 3]sync.Pool

// compressor is a pooled flate.Writer with its output buffer.
type compressor struct {
	w   *flate.Writer
	out bytes.Buffer
}

// maxPooledOut is the largest output buffer kept with a pooled compressor.
const maxPooledOut = 256 << 10

// Frame returns f, a complete unmasked frame as built by this package, as
// the connection must write it: compressed (RSV1 set) when f is a final
// text or binary frame whose payload has at least MinSize bytes, else f
// itself. A frame already compressed is returned as it is. The compressed
// frame is newly allocated and may be shared like f.
//
// A frame that does not shrink is compressed all the same (deflate's stored
// blocks add a few bytes): the result depends only on the frame, so that a
// caller can tell from RSV1 that a frame needs no more work.
func (d *Deflater) Frame(f []byte) []byte {
	if len(f) < 2 || f[0]&0x80 == 0 || f[0]&0x70 != 0 {
		return f // not final, or RSV bits already set
	}
	op := f[0] & 0x0f
	if op != OpText && op != OpBinary {
		return f // control frames are never compressed
	}
	hl := 2
	switch f[1] & 0x7f {
	case 126:
		hl = 4
	case 127:
		hl = 10
	}
	if f[1]&0x80 != 0 || len(f) < hl {
		return f // masked: not a server frame
	}
	payload := f[hl:]
	if len(payload) < d.minSize {
		return f
	}
	c, _ := d.pool.Get().(*compressor)
	if c == nil {
		c = &compressor{}
		c.w, _ = flate.NewWriter(&c.out, d.level) // the level was checked
	}
	c.out.Reset()
	c.w.Reset(&c.out)
	_, _ = c.w.Write(payload) // a bytes.Buffer does not fail
	_ = c.w.Flush()
	z := c.out.Bytes()
	z = z[:len(z)-4] // the sync flush's empty stored block: 00 00 ff ff (RFC 7692, 7.2.1)
	out := make([]byte, 0, MaxFrameHeader+len(z))
	out = AppendFrameHeader(out, op, len(z))
	out[0] |= RSV1
	out = append(out, z...)
	if c.out.Cap() > maxPooledOut {
		c.out = bytes.Buffer{}
	}
	c.out.Reset()
	d.pool.Put(c)
	return out
}

// ErrInflatedTooBig is returned by [Inflate] when a message inflates to
// more than the limit.
var ErrInflatedTooBig = errors.New("wire: inflated message over the size limit")

// ErrBadDeflate is returned by [Inflate] for data that is not a valid
// permessage-deflate message.
var ErrBadDeflate = errors.New("wire: invalid compressed message")

// inflater is a pooled flate reader with the input it reads.
type inflater struct {
	r   io.ReadCloser // a flate reader; also a flate.Resetter
	src bytes.Reader
	in  tailReader
}

// tailReader reads src, then the end of a message that RFC 7692 has the
// sender strip (00 00 ff ff), then a final empty stored block so that the
// flate reader ends with io.EOF.
type tailReader struct {
	src  *bytes.Reader
	tail int
}

var deflateTail = [...]byte{0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff}

func (t *tailReader) Read(p []byte) (int, error) {
	if t.src.Len() > 0 {
		return t.src.Read(p)
	}
	if t.tail == len(deflateTail) {
		return 0, io.EOF
	}
	n := copy(p, deflateTail[t.tail:])
	t.tail += n
	return n, nil
}

// ReadByte makes tailReader an io.ByteReader: the flate reader then reads
// no further than it needs and allocates no bufio.Reader of its own.
func (t *tailReader) ReadByte() (byte, error) {
	var b [1]byte
	if _, err := t.Read(b[:]); err != nil {
		return 0, err
	}
	return b[0], nil
}

var inflaters sync.Pool

// Inflate appends to dst the message that the compressed payload z
// (RFC 7692, one message without context takeover, the fragments'
// payloads joined) inflates to. It stops as soon as the message would go
// over limit bytes and returns [ErrInflatedTooBig]: a small payload that
// inflates to gigabytes costs no more than limit bytes of memory. grow is
// called when dst needs more room, with the number of bytes wanted, and
// returns the buffer to continue in (holding dst's bytes); nil grow
// appends.
func Inflate(dst, z []byte, limit int64, grow func(dst []byte, n int) []byte) ([]byte, error) {
	fl, _ := inflaters.Get().(*inflater)
	if fl == nil {
		fl = &inflater{}
		fl.in.src = &fl.src
	}
	fl.src.Reset(z)
	fl.in.tail = 0
	if fl.r == nil {
		fl.r = flate.NewReader(&fl.in)
	} else if err := fl.r.(flate.Resetter).Reset(&fl.in, nil); err != nil {
		return dst, err
	}
	defer func() {
		fl.src.Reset(nil)
		inflaters.Put(fl)
	}()
	start := len(dst)
	for {
		if len(dst) == cap(dst) {
			want := max(512, min(len(dst)-start, 1<<20)) // double, up to 1 MiB at a time
			if grow != nil {
				dst = grow(dst, want)
			} else {
				dst = append(dst, make([]byte, want)...)[:len(dst)]
			}
		}
		room := dst[len(dst):cap(dst)]
		if over := int64(len(dst)-start) + int64(len(room)) - limit; over > 0 {
			// Read one byte past the limit at most: enough to know.
			room = room[:max(int64(len(room))-over+1, 1)]
		}
		n, err := fl.r.Read(room)
		dst = dst[:len(dst)+n]
		if int64(len(dst)-start) > limit {
			return dst[:start], ErrInflatedTooBig
		}
		if err == io.EOF {
			return dst, nil
		}
		if err != nil {
			return dst[:start], ErrBadDeflate
		}
	}
}
