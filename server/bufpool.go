package server

import (
	"math/bits"
	"sync"
)

// Inbound payloads are read into pooled buffers that go back to the pool as
// soon as the message is handled, so that an idle connection holds none.
// Buffers come in power-of-two classes from 512 bytes to 4 MiB; larger
// requests are allocated and left to the garbage collector.
const (
	minBufShift = 9
	maxBufShift = 22
)

var bufPools [maxBufShift - minBufShift + 1]sync.Pool

// bufClass returns the index of the smallest class holding n bytes, or -1.
func bufClass(n int) int {
	if n <= 1<<minBufShift {
		return 0
	}
	shift := bits.Len(uint(n - 1))
	if shift > maxBufShift {
		return -1
	}
	return shift - minBufShift
}

// getBuf returns a buffer of length 0 and capacity at least n.
func getBuf(n int) *[]byte {
	i := bufClass(n)
	if i < 0 {
		b := make([]byte, 0, n)
		return &b
	}
	if p, _ := bufPools[i].Get().(*[]byte); p != nil {
		*p = (*p)[:0]
		return p
	}
	b := make([]byte, 0, 1<<(i+minBufShift))
	return &b
}

// putBuf returns a buffer from getBuf to its pool.
func putBuf(p *[]byte) {
	c := cap(*p)
	i := bufClass(c)
	if i < 0 || c != 1<<(i+minBufShift) {
		return
	}
	*p = (*p)[:0]
	bufPools[i].Put(p)
}

// growBuf returns a buffer holding p's bytes with room for n more; p is
// recycled when a bigger buffer replaces it.
func growBuf(p *[]byte, n int) *[]byte {
	if cap(*p)-len(*p) >= n {
		return p
	}
	q := getBuf(len(*p) + n)
	*q = append(*q, *p...)
	putBuf(p)
	return q
}
