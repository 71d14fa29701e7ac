package bench

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"math/bits"
	"strconv"
	"sync"
	"sync/atomic"
)

// The bench payload. A publisher sends {"body":"hb1 <topic> <seq> <unixnano> <pad>"}:
// the marker lives in a string field so that it survives an app that
// forwards only "body" (a chat demo) as well as one that forwards the whole
// payload. Receivers find it anywhere in the frame without decoding JSON.
var marker = []byte("hb1 ")

// appendPayload appends a bench payload of about size bytes.
func appendPayload(dst []byte, topic int, seq uint32, sentNanos int64, size int) []byte {
	start := len(dst)
	dst = append(dst, `{"body":"hb1 `...)
	dst = strconv.AppendInt(dst, int64(topic), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendUint(dst, uint64(seq), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, sentNanos, 10)
	dst = append(dst, ' ')
	dst = appendText(dst, uint64(seq)*0x9E3779B97F4A7C15+uint64(topic), size-2-(len(dst)-start))
	return append(dst, `"}`...)
}

// padWords is the vocabulary of the payload's padding: chat-like text, so
// that compression (--compress) meets what a chat sends rather than a run
// of one letter. No character needs escaping in a JSON string.
var padWords = [...]string{
	"the", "meeting", "is", "at", "ten", "tomorrow", "see", "you", "in", "room",
	"lobby", "ok", "thanks", "sounds", "good", "I", "will", "bring", "notes", "from",
	"last", "week", "can", "we", "move", "it", "to", "eleven", "please", "call",
	"me", "when", "ready", "the", "build", "is", "green", "again", "deploy", "now",
	"user", "ada", "bob", "carol", "dave", "joined", "left", "channel", "message", "sent",
}

// appendText appends n bytes of words picked by a generator seeded with
// seed (a different sequence per message).
func appendText(dst []byte, seed uint64, n int) []byte {
	end := len(dst) + max(n, 0)
	for len(dst) < end {
		seed ^= seed << 13
		seed ^= seed >> 7
		seed ^= seed << 17
		w := padWords[seed%uint64(len(padWords))]
		if len(dst)+len(w)+1 > end {
			for len(dst) < end {
				dst = append(dst, '.')
			}
			break
		}
		dst = append(dst, w...)
		dst = append(dst, ' ')
	}
	return dst
}

// parseMarker finds the bench marker in a frame and returns its fields.
func parseMarker(frame []byte) (topic int, seq uint32, sent int64, ok bool) {
	i := bytes.Index(frame, marker)
	if i < 0 {
		return 0, 0, 0, false
	}
	p := frame[i+len(marker):]
	var n [3]int64
	for k := range n {
		j := 0
		for j < len(p) && p[j] >= '0' && p[j] <= '9' {
			n[k] = n[k]*10 + int64(p[j]-'0')
			j++
		}
		if j == 0 || j >= len(p) || p[j] != ' ' {
			return 0, 0, 0, false
		}
		p = p[j+1:]
	}
	return int(n[0]), uint32(n[1]), n[2], true
}

// gap is a half-open range of sequence numbers not received.
type gap struct{ lo, hi uint32 }

// stream tracks what one client received of one topic's sequence: the
// first and highest sequence seen and the gaps in between. It stays a few
// words long however many messages go by.
type stream struct {
	first uint32 // 0: nothing received yet
	next  uint32 // highest received + 1
	gaps  []gap
}

// add records seq and reports whether it was a duplicate, or filled a gap
// (arrived after a higher sequence: reordered or replayed).
func (s *stream) add(seq uint32) (dup, late bool) {
	if seq == 0 {
		return false, false
	}
	if s.first == 0 {
		s.first, s.next = seq, seq+1
		return false, false
	}
	if seq >= s.next {
		if seq > s.next {
			s.gaps = append(s.gaps, gap{s.next, seq})
		}
		s.next = seq + 1
		return false, false
	}
	if seq < s.first {
		// Older than anything seen: extend the window backwards.
		if seq+1 < s.first {
			s.gaps = append([]gap{{seq + 1, s.first}}, s.gaps...)
		}
		s.first = seq
		return false, true
	}
	for i, g := range s.gaps {
		if seq < g.lo || seq >= g.hi {
			continue
		}
		switch {
		case g.hi-g.lo == 1:
			s.gaps = append(s.gaps[:i], s.gaps[i+1:]...)
		case seq == g.lo:
			s.gaps[i].lo++
		case seq == g.hi-1:
			s.gaps[i].hi--
		default:
			s.gaps = append(s.gaps, gap{})
			copy(s.gaps[i+2:], s.gaps[i+1:])
			s.gaps[i] = gap{g.lo, seq}
			s.gaps[i+1] = gap{seq + 1, g.hi}
		}
		return false, true
	}
	return true, false
}

// lost counts the sequences in (first, last] that were delivered somewhere
// (set in delivered) but not received by this stream.
func (s *stream) lost(last uint32, delivered *bitset) int64 {
	if s.first == 0 {
		return 0
	}
	var n int64
	for _, g := range s.gaps {
		n += delivered.countRange(g.lo, g.hi)
	}
	if last >= s.next {
		n += delivered.countRange(s.next, last+1)
	}
	return n
}

const chunkWords = 1024 // 65,536 bits per chunk

// bitset is a growable set of sequence numbers, safe for concurrent Set.
type bitset struct {
	mu     sync.RWMutex
	chunks []*[chunkWords]atomic.Uint64
}

// Set adds n.
func (b *bitset) Set(n uint32) {
	ci := int(n / (chunkWords * 64))
	b.mu.RLock()
	if ci < len(b.chunks) && b.chunks[ci] != nil {
		c := b.chunks[ci]
		b.mu.RUnlock()
		c[(n/64)%chunkWords].Or(1 << (n % 64))
		return
	}
	b.mu.RUnlock()
	b.mu.Lock()
	for len(b.chunks) <= ci {
		b.chunks = append(b.chunks, nil)
	}
	if b.chunks[ci] == nil {
		b.chunks[ci] = new([chunkWords]atomic.Uint64)
	}
	c := b.chunks[ci]
	b.mu.Unlock()
	c[(n/64)%chunkWords].Or(1 << (n % 64))
}

func (b *bitset) word(w int) uint64 {
	ci := w / chunkWords
	if ci >= len(b.chunks) || b.chunks[ci] == nil {
		return 0
	}
	return b.chunks[ci][w%chunkWords].Load()
}

// countRange counts the members in [lo, hi).
func (b *bitset) countRange(lo, hi uint32) int64 {
	if b == nil || hi <= lo {
		return 0
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	var n int64
	for x := lo; x < hi; {
		w := b.word(int(x / 64))
		off := x % 64
		end := min(uint64(hi-x)+uint64(off), 64)
		mask := ^uint64(0) << off
		if end < 64 {
			mask &= (1 << end) - 1
		}
		n += int64(bits.OnesCount64(w & mask))
		x += uint32(end - uint64(off))
	}
	return n
}

// Count returns the number of members.
func (b *bitset) Count() int64 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	var n int64
	for _, c := range b.chunks {
		if c == nil {
			continue
		}
		for i := range c {
			n += int64(bits.OnesCount64(c[i].Load()))
		}
	}
	return n
}

// Or adds every member of o.
func (b *bitset) Or(o *bitset) {
	o.mu.RLock()
	words := len(o.chunks) * chunkWords
	vals := make([]uint64, words)
	for w := range words {
		vals[w] = o.word(w)
	}
	o.mu.RUnlock()
	for w, v := range vals {
		for v != 0 {
			t := bits.TrailingZeros64(v)
			b.Set(uint32(w*64 + t))
			v &= v - 1
		}
	}
}

// MarshalText encodes the set as base64 of little-endian words.
func (b *bitset) MarshalText() ([]byte, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	words := len(b.chunks) * chunkWords
	for words > 0 && b.word(words-1) == 0 {
		words--
	}
	raw := make([]byte, 8*words)
	for w := range words {
		binary.LittleEndian.PutUint64(raw[8*w:], b.word(w))
	}
	return []byte(base64.StdEncoding.EncodeToString(raw)), nil
}

// UnmarshalText decodes MarshalText's form.
func (b *bitset) UnmarshalText(text []byte) error {
	raw, err := base64.StdEncoding.DecodeString(string(text))
	if err != nil {
		return err
	}
	for w := 0; w+8 <= len(raw); w += 8 {
		v := binary.LittleEndian.Uint64(raw[w:])
		for v != 0 {
			t := bits.TrailingZeros64(v)
			b.Set(uint32(w/8*64 + t))
			v &= v - 1
		}
	}
	return nil
}
