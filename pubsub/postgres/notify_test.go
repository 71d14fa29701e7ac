package postgres

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hearth-rt/hearth/pubsub"
)

// collect is a noteVisitor that records what it sees.
type collect struct {
	skip    map[string]bool
	topic   string
	epoch   string
	records []string
}

func (c *collect) topicSeen(topic, epoch string) bool {
	c.topic, c.epoch = topic, epoch
	return !c.skip[topic]
}

type visitor struct{ *collect }

func (v visitor) topic(topic, epoch string) bool { return v.topicSeen(topic, epoch) }
func (v visitor) message(off uint64, event, exclude string, payload []byte, binary bool) {
	v.records = append(v.records, fmt.Sprintf("M %s@%s:%d %s ex=%q bin=%v %q", v.collect.topic, v.epoch, off, event, exclude, binary, payload))
}
func (v visitor) ref(from, to uint64) {
	v.records = append(v.records, fmt.Sprintf("R %s@%s:%d-%d", v.collect.topic, v.epoch, from, to))
}
func (v visitor) control(data []byte) {
	v.records = append(v.records, fmt.Sprintf("C %q", data))
}

// expand does what PostgreSQL's format() does to a template of noteWriter,
// with the "B" headers of the groups (topic, epoch, base).
func expand(t testing.TB, tmpl string, groups [][3]string) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i < len(tmpl); i++ {
		if tmpl[i] != '%' {
			b.WriteByte(tmpl[i])
			continue
		}
		i++
		if tmpl[i] == '%' {
			b.WriteByte('%')
			continue
		}
		j := strings.Index(tmpl[i:], "$s")
		g, err := strconv.Atoi(tmpl[i : i+j])
		if err != nil || g < 1 || g > len(groups) {
			t.Fatalf("bad placeholder in %q", tmpl)
		}
		h := groups[g-1]
		fmt.Fprintf(&b, "B%d:%s%d:%s%s,", len(h[0]), h[0], len(h[1]), h[1], h[2])
		i += j + 1
	}
	return b.String()
}

func expandAll(t testing.TB, notes []string, groups [][3]string) []string {
	var out []string
	for _, n := range notes {
		out = append(out, expand(t, n, groups))
	}
	return out
}

func read(t *testing.T, notes []string, skip ...string) []string {
	t.Helper()
	c := &collect{skip: map[string]bool{}}
	for _, s := range skip {
		c.skip[s] = true
	}
	for _, n := range notes {
		if len(n) >= 8000 {
			t.Fatalf("notification of %d bytes: PostgreSQL needs < 8000", len(n))
		}
		if err := readNote(n, visitor{c}); err != nil {
			t.Fatalf("readNote(%.60q...): %v", n, err)
		}
	}
	return c.records
}

func TestNoteRoundTrip(t *testing.T) {
	var w noteWriter
	w.reset()
	big := bytes.Repeat([]byte("x"), 9000)
	msgs := []struct {
		m      pubsub.Message
		inline bool
	}{
		{pubsub.Message{Topic: "room:1", Event: "msg", Payload: []byte(`{"a":"100%"}`)}, true},
		{pubsub.Message{Topic: "room:1", Event: "msg%d", Payload: []byte(`"é\n:9"`), Exclude: "sock-1"}, true},
		{pubsub.Message{Topic: "room:1", Event: "bin", Payload: []byte{0, 1, 2, 255}, Binary: true}, true},
		{pubsub.Message{Topic: "room:1", Event: "big", Payload: big}, false},
		{pubsub.Message{Topic: "room:1", Event: "big", Payload: big}, false},
		{pubsub.Message{Topic: "room:1", Event: "nul", Payload: []byte("a\x00b")}, false},
		{pubsub.Message{Topic: "room:1", Event: "bad-utf8", Payload: []byte{0xff, 0xfe}}, false},
		{pubsub.Message{Topic: "room:1", Event: "empty"}, true},
	}
	for i, c := range msgs {
		if got := w.message(1, &c.m, uint64(i+1)); got != c.inline {
			t.Errorf("message %d inline = %v, want %v", i+1, got, c.inline)
		}
	}
	w.control([]byte("ctl%"))
	w.message(2, &pubsub.Message{Topic: "other", Event: "e", Payload: []byte("1")}, 1)
	w.control([]byte{0, 0xff})
	got := read(t, expandAll(t, w.finish(), [][3]string{{"room:1", "ep1", "100"}, {"other", "ep2", "6"}}))
	want := []string{
		`M room:1@ep1:101 msg ex="" bin=false "{\"a\":\"100%\"}"`,
		`M room:1@ep1:102 msg%d ex="sock-1" bin=false "\"é\\n:9\""`,
		`M room:1@ep1:103 bin ex="" bin=true "\x00\x01\x02\xff"`,
		`R room:1@ep1:104-107`,
		`M room:1@ep1:108 empty ex="" bin=false ""`,
		`C "ctl%"`,
		`M other@ep2:7 e ex="" bin=false "1"`,
		`C "\x00\xff"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Absolute offsets after a "T" header, as the SQL function writes them.
	got = read(t, []string{"h1T1:a2:epM5,j,1:e0:1:1R6,7"})
	if want := []string{`M a@ep:5 e ex="" bin=false "1"`, `R a@ep:6-7`}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("T records: %q", got)
	}
}

func TestNotePacking(t *testing.T) {
	var w noteWriter
	w.reset()
	payload := []byte(`"` + strings.Repeat("p", 98) + `"`) // 100 bytes
	const n = 1000
	topics := []string{"a", "b", "c"}
	for g, topic := range topics {
		for i := 1; i <= n; i++ {
			if !w.message(g+1, &pubsub.Message{Topic: topic, Event: "ev", Payload: payload}, uint64(i)) {
				t.Fatal("100-byte payload not inline")
			}
		}
	}
	notes := w.finish()
	// About 7900/115 messages per notification.
	if len(notes) > 3*n/60 {
		t.Fatalf("%d notifications for %d messages: packing too loose", len(notes), 3*n)
	}
	got := read(t, expandAll(t, notes, [][3]string{{"a", "e", "0"}, {"b", "e", "0"}, {"c", "e", "0"}}), "b")
	if len(got) != 2*n {
		t.Fatalf("read %d records, want %d (topic b skipped)", len(got), 2*n)
	}
	for i, r := range got {
		topic, off := topics[0], i+1
		if i >= n {
			topic, off = topics[2], i-n+1
		}
		if prefix := fmt.Sprintf("M %s@e:%d ev ", topic, off); !strings.HasPrefix(r, prefix) {
			t.Fatalf("record %d = %.40q, want prefix %q", i, r, prefix)
		}
	}
}

func TestNoteLimits(t *testing.T) {
	// Whatever the sizes, a notification stays under 8000 bytes once the
	// largest headers are filled in, and '%' (doubled in the template)
	// does not upset the count.
	topic := strings.Repeat("t", 255)
	epoch := strings.Repeat("e", maxEpoch)
	for _, fill := range []string{"a", "%"} {
		for size := 7400; size < 7900; size += 3 {
			var w noteWriter
			w.reset()
			for i := 1; i <= 3; i++ {
				m := pubsub.Message{Topic: topic, Event: strings.Repeat("e", 255), Payload: bytes.Repeat([]byte(fill), size/i)}
				w.message(i, &m, uint64(i))
				w.control(bytes.Repeat([]byte(fill), size/(i+1)))
			}
			groups := [][3]string{{topic, epoch, "9223372036854775806"}, {topic, epoch, "9223372036854775806"}, {topic, epoch, "9223372036854775806"}}
			read(t, expandAll(t, w.finish(), groups)) // checks < 8000
		}
	}
	if _, ok := appendControl(nil, bytes.Repeat([]byte("c"), 7895)); ok {
		t.Fatal("7895-byte control accepted")
	}
	if _, ok := appendControl(nil, bytes.Repeat([]byte("c"), 7000)); !ok {
		t.Fatal("7000-byte control refused")
	}
}

func TestReadNoteMalformed(t *testing.T) {
	for _, s := range []string{
		"", "h2", "h1X", "h1M1,j,1:e0:1:x", "h1T3:abc", "h1T3:abc1:eM", "h1T3:abc1:eM1,j,5:e",
		"h1T3:abc1:eR5,4", "h1T3:abc1:eR0,1", "h1C", "h1Cj9:x", "h1Cb3:!!!", "h1T99999999999999999999:x",
		"h1T3:abc1:eM1,x,1:e0:1:x", "h1T3:abc1:eM1,b,1:e0:3:!!!",
	} {
		if err := readNote(s, visitor{&collect{}}); err == nil {
			t.Errorf("readNote(%q) = nil error", s)
		}
	}
}

func FuzzReadNote(f *testing.F) {
	var w noteWriter
	w.reset()
	w.message(1, &pubsub.Message{Topic: "room", Event: "e", Payload: []byte(`{"x":1}`)}, 3)
	w.message(1, &pubsub.Message{Topic: "room", Event: "e", Payload: []byte{1, 2}, Binary: true}, 4)
	w.message(1, &pubsub.Message{Topic: "room", Event: "e", Payload: bytes.Repeat([]byte("x"), 9000)}, 5)
	w.control([]byte("c"))
	for _, n := range expandAll(f, w.finish(), [][3]string{{"room", "ep", "10"}}) {
		f.Add(n)
	}
	f.Add("h1T1:a1:eR1,2")
	f.Fuzz(func(t *testing.T, s string) {
		_ = readNote(s, visitor{&collect{}}) // must not panic
	})
}

// TestProbeNote checks that a listener probe is a well-formed notification
// that carries nothing for any node, and is unique per probe.
func TestProbeNote(t *testing.T) {
	a, b := probeNote("node-1", 1), probeNote("node-1", 2)
	if a == b || len(a) >= 8000 {
		t.Fatalf("probes %q and %q", a, b)
	}
	c := &collect{skip: map[string]bool{}}
	if err := readNote(a, visitor{c}); err != nil {
		t.Fatalf("readNote(%q): %v", a, err)
	}
	if !strings.HasPrefix(c.topic, "$probe:node-1:") || len(c.records) != 0 {
		t.Fatalf("probe %q read as topic %q with records %q", a, c.topic, c.records)
	}
}

func TestLatencyBuckets(t *testing.T) {
	for _, tc := range []struct {
		d      time.Duration
		bucket int
	}{
		{0, 0}, {250 * time.Microsecond, 0}, {251 * time.Microsecond, 1}, {500 * time.Microsecond, 1},
		{time.Millisecond, 2}, {time.Millisecond + 1, 3}, {LatencyBucketBound(14), 14}, {LatencyBucketBound(14) + 1, 15}, {time.Minute, 15},
	} {
		var s stats
		s.committed(tc.d)
		for i := range s.latency {
			if want := uint64(0); i == tc.bucket {
				want = 1
				if s.latency[i].Load() != want {
					t.Errorf("%v: not in bucket %d", tc.d, tc.bucket)
				}
			} else if s.latency[i].Load() != want {
				t.Errorf("%v: counted in bucket %d, want %d", tc.d, i, tc.bucket)
			}
		}
		if tc.bucket < LatencyBuckets-1 && tc.d > LatencyBucketBound(tc.bucket) {
			t.Errorf("%v is above bucket %d's bound %v", tc.d, tc.bucket, LatencyBucketBound(tc.bucket))
		}
	}
}
