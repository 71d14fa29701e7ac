package bench

import (
	"math"
	"math/bits"
	"slices"
	"sync"
	"time"
)

// Histogram records durations in microseconds in log-linear buckets (64
// sub-buckets per power of two: under 1.6% error), mergeable across
// workers. The zero value is ready; it is safe for concurrent use.
type Histogram struct {
	mu     sync.Mutex
	Counts map[int]uint64 `json:"counts"` // bucket index -> count
	N      uint64         `json:"n"`
	MaxUS  int64          `json:"max_us"`
	SumUS  float64        `json:"sum_us"`
}

const subBits = 6

func bucketOf(us int64) int {
	if us < 1<<subBits {
		return int(max(us, 0))
	}
	e := bits.Len64(uint64(us)) - subBits // >= 1
	return e<<subBits | int(us>>uint(e-1))&(1<<subBits-1)
}

// bucketValue is the midpoint of a bucket.
func bucketValue(b int) float64 {
	if b < 1<<subBits {
		return float64(b)
	}
	e := b >> subBits
	m := b&(1<<subBits-1) | 1<<subBits
	lo := float64(uint64(m) << uint(e-1))
	return lo + float64(uint64(1)<<uint(e-1))/2
}

// Record adds one observation.
func (h *Histogram) Record(d time.Duration) {
	us := d.Microseconds()
	b := bucketOf(us)
	h.mu.Lock()
	if h.Counts == nil {
		h.Counts = make(map[int]uint64)
	}
	h.Counts[b]++
	h.N++
	h.SumUS += float64(us)
	if us > h.MaxUS {
		h.MaxUS = us
	}
	h.mu.Unlock()
}

// Merge adds o's observations into h.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.Counts == nil {
		h.Counts = make(map[int]uint64)
	}
	for b, c := range o.Counts {
		h.Counts[b] += c
	}
	h.N += o.N
	h.SumUS += o.SumUS
	h.MaxUS = max(h.MaxUS, o.MaxUS)
}

// Quantile returns the q-quantile (0..1) in milliseconds; q=1 is the exact max.
func (h *Histogram) Quantile(q float64) float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.N == 0 {
		return math.NaN()
	}
	if q >= 1 {
		return float64(h.MaxUS) / 1000
	}
	keys := sortedKeys(h.Counts)
	want := uint64(math.Ceil(q * float64(h.N)))
	want = max(want, 1)
	var acc uint64
	for _, b := range keys {
		acc += h.Counts[b]
		if acc >= want {
			return min(bucketValue(b), float64(h.MaxUS)) / 1000
		}
	}
	return float64(h.MaxUS) / 1000
}

// Mean returns the mean in milliseconds.
func (h *Histogram) Mean() float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.N == 0 {
		return math.NaN()
	}
	return h.SumUS / float64(h.N) / 1000
}

// Count returns the number of observations.
func (h *Histogram) Count() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.N
}

// CDF returns points (milliseconds, cumulative fraction) for plotting.
func (h *Histogram) CDF() [][2]float64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.N == 0 {
		return nil
	}
	var out [][2]float64
	var acc uint64
	for _, b := range sortedKeys(h.Counts) {
		acc += h.Counts[b]
		out = append(out, [2]float64{min(bucketValue(b), float64(h.MaxUS)) / 1000, float64(acc) / float64(h.N)})
	}
	return out
}

func sortedKeys(m map[int]uint64) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
