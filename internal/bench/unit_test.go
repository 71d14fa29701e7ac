package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestPhoenixSchedule(t *testing.T) {
	p := PhoenixPolicy{}
	want := []time.Duration{10, 50, 100, 150, 200, 250, 500, 1000, 2000, 5000, 5000}
	for n, w := range want {
		if got := p.Delay(n, time.Minute); got != w*time.Millisecond {
			t.Errorf("attempt %d: %v, want %v (hints ignored)", n, got, w*time.Millisecond)
		}
	}
}

func TestHearthPolicyFullJitter(t *testing.T) {
	p := DefaultHearthPolicy()
	for n := range 12 {
		ceil := min(500*time.Millisecond<<n, 20*time.Second)
		var lo, hi time.Duration = ceil, 0
		for range 2000 {
			d := p.Delay(n, 0)
			if d < 0 || d > ceil {
				t.Fatalf("attempt %d: %v outside [0, %v]", n, d, ceil)
			}
			lo, hi = min(lo, d), max(hi, d)
		}
		// Full jitter spreads over the whole range, also at the cap.
		if lo > ceil/10 || hi < ceil*9/10 {
			t.Errorf("attempt %d: delays in [%v, %v], want spread over [0, %v]", n, lo, hi, ceil)
		}
	}
	for range 100 {
		hint := 1000 * time.Millisecond
		if got := p.Delay(3, hint); got < hint || got > hint*12/10 {
			t.Fatalf("hint %v: delay %v, want within [hint, 1.2 hint]", hint, got)
		}
		if got := p.RejoinDelay(0, hint); got < hint || got > hint*12/10 {
			t.Fatalf("join hint %v: delay %v", hint, got)
		}
		if got := p.RejoinDelay(6, 0); got > 10*time.Second {
			t.Fatalf("rejoin delay %v over the 10 s cap", got)
		}
	}
}

func TestSocketIOFormula(t *testing.T) {
	p := SocketIOPolicy{Base: time.Second, Max: 5 * time.Second, Factor: 0.5}
	atCap := 0
	for range 4000 {
		d := p.Delay(0, 0)
		if d < 500*time.Millisecond || d > 1500*time.Millisecond {
			t.Fatalf("first attempt %v outside [0.5s, 1.5s]", d)
		}
		d = p.Delay(2, 0) // 4 s +/- up to 2 s, then the cap
		if d > 5*time.Second || d < 2*time.Second {
			t.Fatalf("attempt 2: %v outside [2s, 5s]", d)
		}
		if d == 5*time.Second {
			atCap++
		}
		// From attempt 4 on the jitter stays above the cap: every client
		// retries at exactly Max, in lockstep.
		if d := p.Delay(4, 0); d != 5*time.Second {
			t.Fatalf("attempt 4: %v, want exactly the cap", d)
		}
	}
	// At attempt 2 the cap after the jitter catches about a quarter.
	if atCap < 700 || atCap > 1300 {
		t.Errorf("%d of 4000 delays at exactly the cap at attempt 2, want about a quarter", atCap)
	}
}

func TestCloseHint(t *testing.T) {
	for reason, want := range map[string]time.Duration{
		"service restart; retry_after_ms=2500": 2500 * time.Millisecond,
		"retry_after_ms=0":                     0,
		"try again later":                      0,
		"retry_after_ms=x":                     0,
	} {
		if got := closeHint(reason); got != want {
			t.Errorf("%q: %v, want %v", reason, got, want)
		}
	}
}

func TestMarkerRoundTrip(t *testing.T) {
	p := appendPayload(nil, 7, 123456, 1732412345678901234, 120)
	if !json.Valid(p) {
		t.Fatalf("payload is not JSON: %s", p)
	}
	if len(p) < 118 || len(p) > 122 {
		t.Errorf("payload is %d bytes, want about 120", len(p))
	}
	frame := []byte(`[null,"@9","room:7","new_msg",{"user":"",` + string(p[1:]) + `]`)
	topic, seq, sent, ok := parseMarker(frame)
	if !ok || topic != 7 || seq != 123456 || sent != 1732412345678901234 {
		t.Errorf("parseMarker = %d %d %d %v", topic, seq, sent, ok)
	}
	for _, bad := range []string{`["hb1 1 2"]`, `hb1 `, `hb1 a b c `, `no marker`} {
		if _, _, _, ok := parseMarker([]byte(bad)); ok {
			t.Errorf("parseMarker(%q) accepted", bad)
		}
	}
}

func TestStreamGapsDuplicatesLate(t *testing.T) {
	var s stream
	var dups, lates int
	for _, seq := range []uint32{5, 6, 7, 10, 11, 8, 8, 15, 12, 16} {
		d, l := s.add(seq)
		if d {
			dups++
		}
		if l {
			lates++
		}
	}
	if dups != 1 || lates != 2 {
		t.Errorf("dups %d lates %d, want 1 and 2", dups, lates)
	}
	// Received 5-8, 10-12, 15, 16. Missing 9, 13, 14; and 17-20 up to last.
	var all bitset
	for i := uint32(1); i <= 20; i++ {
		all.Set(i)
	}
	if got := s.lost(20, &all); got != 7 {
		t.Errorf("lost %d, want 7 (9, 13, 14, 17-20)", got)
	}
	// Only what was delivered to someone counts: 13 never went out.
	var some bitset
	for i := uint32(1); i <= 16; i++ {
		if i != 13 {
			some.Set(i)
		}
	}
	if got := s.lost(16, &some); got != 2 {
		t.Errorf("lost %d, want 2 (9, 14)", got)
	}
}

func TestBitset(t *testing.T) {
	var b bitset
	vals := []uint32{1, 63, 64, 65, 1000, 65535, 65536, 200000}
	for _, v := range vals {
		b.Set(v)
	}
	if b.Count() != int64(len(vals)) {
		t.Fatalf("count %d", b.Count())
	}
	if got := b.countRange(63, 66); got != 3 {
		t.Errorf("countRange(63,66) = %d", got)
	}
	if got := b.countRange(0, 300000); got != int64(len(vals)) {
		t.Errorf("countRange(all) = %d", got)
	}
	txt, _ := b.MarshalText()
	var c bitset
	if err := c.UnmarshalText(txt); err != nil {
		t.Fatal(err)
	}
	if c.Count() != b.Count() || c.countRange(65536, 65537) != 1 {
		t.Errorf("round trip lost members")
	}
	var d bitset
	d.Set(5)
	d.Or(&c)
	if d.Count() != int64(len(vals))+1 {
		t.Errorf("Or: %d", d.Count())
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	for i := 1; i <= 10000; i++ {
		h.Record(time.Duration(i) * time.Microsecond * 10) // 10 us .. 100 ms
	}
	for _, q := range []float64{0.5, 0.9, 0.99} {
		want := q * 100 // ms
		got := h.Quantile(q)
		if math.Abs(got-want)/want > 0.02 {
			t.Errorf("q%.2f = %.3f ms, want %.3f within 2%%", q, got, want)
		}
	}
	if h.Quantile(1) != 100 {
		t.Errorf("max %v", h.Quantile(1))
	}
	var m Histogram
	m.Merge(&h)
	m.Merge(&h)
	if m.Count() != 20000 || math.Abs(m.Quantile(0.5)-50) > 1 {
		t.Errorf("merge: n=%d p50=%v", m.Count(), m.Quantile(0.5))
	}
	b, _ := json.Marshal(&m)
	var back Histogram
	if err := json.Unmarshal(b, &back); err != nil || back.Count() != 20000 {
		t.Errorf("JSON round trip: %v %d", err, back.Count())
	}
}

func TestSeriesPeakRate(t *testing.T) {
	m := map[int]int64{10: 50, 11: 50, 12: 100, 30: 5}
	if got := peakRate(m, 0, 5); got != 200 {
		t.Errorf("peak over 1 s = %v, want 200", got)
	}
}

func TestQuantileOfCountsNeverAsInfinite(t *testing.T) {
	vs := []float64{1, 2, 3, -1}
	if got := quantileOf(vs, 0.5); got != 2 {
		t.Errorf("p50 %v", got)
	}
	if got := quantileOf(vs, 1); !math.IsInf(got, 1) {
		t.Errorf("p100 with a client never back = %v, want +Inf", got)
	}
}

func TestSVGRenders(t *testing.T) {
	svg := RenderSVG("t <&>", []*Chart{
		{Title: "lines", Lines: []Series{{Name: "a", Points: [][2]float64{{0, 0}, {1, 2}}}}, Marks: []Mark{{X: 0.5, Label: "event"}}},
		{Title: "cdf", LogX: true, Lines: []Series{{Name: "b", Points: [][2]float64{{0.1, 0.1}, {10, 1}}}}},
		{Title: "bars", Categories: []string{"x", "y"}, Bars: []BarSeries{{Name: "p", Values: []Float{1, Float(math.NaN())}}}},
		{Title: "empty"},
	})
	s := string(svg)
	for _, want := range []string{"<svg", "</svg>", "t &lt;&amp;&gt;", "<path", "<rect", "no data"} {
		if !contains(s, want) {
			t.Errorf("SVG lacks %q", want)
		}
	}
	if contains(s, "NaN") {
		t.Error("SVG contains NaN")
	}
}

func contains(s, sub string) bool { return len(s) >= len(sub) && (s == sub || indexOf(s, sub) >= 0) }

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

func TestBrokerPayload(t *testing.T) {
	before := time.Now().UnixMicro()
	p := brokerPayload("run1", 64)
	if len(p) != 64 || !json.Valid(p) {
		t.Fatalf("payload %q: %d bytes, want 64 bytes of JSON", p, len(p))
	}
	if !bytes.Contains(p, runTag("run1")) || bytes.Contains(p, runTag("run2")) {
		t.Errorf("payload %q: run tag", p)
	}
	if at := payloadTime(p); at < before || at > time.Now().UnixMicro() {
		t.Errorf("payloadTime = %d, want the send time", at)
	}
	if payloadTime([]byte(`{"body":"x"}`)) != 0 {
		t.Error("payloadTime of a payload without t: want 0")
	}
	p50, p99, mx := latencySummary([]float64{5, 1, 4, 2, 3})
	if p50 != 3 || p99 != 5 || mx != 5 {
		t.Errorf("latencySummary = %v %v %v, want 3 5 5", p50, p99, mx)
	}
}

func TestPlainConn(t *testing.T) {
	for in, want := range map[string]string{
		"postgres://postgres@127.0.0.1:5432/test":                 "postgres://postgres@127.0.0.1:5432/test?sslmode=disable",
		"postgres://u@h/db?sslmode=require":                       "postgres://u@h/db?sslmode=require",
		"postgres://u@h/db?pool_max_conns=4":                      "postgres://u@h/db?pool_max_conns=4&sslmode=disable",
		"host=127.0.0.1 user=postgres dbname=test":                "host=127.0.0.1 user=postgres dbname=test sslmode=disable",
		"host=127.0.0.1 user=postgres dbname=test sslmode=prefer": "host=127.0.0.1 user=postgres dbname=test sslmode=prefer",
	} {
		if got := plainConn(in); got != want {
			t.Errorf("plainConn(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRRHAProxyBalancing: the roundrobin scenario's HAProxy sends the
// requests of one keep-alive client to both nodes with balance roundrobin,
// and all of them to one node with balance source.
func TestRRHAProxyBalancing(t *testing.T) {
	var backends []string
	for _, name := range []string{"a", "b"} {
		hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, name) }))
		defer hs.Close()
		backends = append(backends, strings.TrimPrefix(hs.URL, "http://"))
	}
	for _, sticky := range []bool{false, true} {
		h, err := startRRHAProxy(context.Background(), t.TempDir(), backends, sticky)
		if err != nil {
			t.Fatal(err)
		}
		client := &http.Client{Transport: &http.Transport{}}
		seen := map[string]int{}
		for range 10 {
			resp, err := client.Get("http://" + h.address() + "/")
			if err != nil {
				h.close()
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			seen[string(b)]++
		}
		client.CloseIdleConnections()
		h.close()
		if want := map[bool]int{false: 2, true: 1}[sticky]; len(seen) != want {
			t.Errorf("sticky %v: answers %v, want %d backends", sticky, seen, want)
		}
	}
}
