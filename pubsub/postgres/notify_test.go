package postgres

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

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
		{pubsub.Message{Topic: "room:1", Event: "msg", Payload: []byte(`{"a":1}`)}, true},
		{pubsub.Message{Topic: "room:1", Event: "msg", Payload: []byte(`"é\n:9"`), Exclude: "sock-1"}, true},
		{pubsub.Message{Topic: "room:1", Event: "bin", Payload: []byte{0, 1, 2, 255}, Binary: true}, true},
		{pubsub.Message{Topic: "room:1", Event: "big", Payload: big}, false},
		{pubsub.Message{Topic: "room:1", Event: "big", Payload: big}, false},
		{pubsub.Message{Topic: "room:1", Event: "nul", Payload: []byte("a\x00b")}, false},
		{pubsub.Message{Topic: "room:1", Event: "bad-utf8", Payload: []byte{0xff, 0xfe}}, false},
		{pubsub.Message{Topic: "room:1", Event: "empty"}, true},
	}
	for i, c := range msgs {
		if got := w.message("ep1", &c.m, uint64(i+1)); got != c.inline {
			t.Errorf("message %d inline = %v, want %v", i+1, got, c.inline)
		}
	}
	w.control([]byte("ctl"))
	w.message("ep2", &pubsub.Message{Topic: "other", Event: "e", Payload: []byte("1")}, 7)
	w.control([]byte{0, 0xff})
	got := read(t, w.finish())
	want := []string{
		`M room:1@ep1:1 msg ex="" bin=false "{\"a\":1}"`,
		`M room:1@ep1:2 msg ex="sock-1" bin=false "\"é\\n:9\""`,
		`M room:1@ep1:3 bin ex="" bin=true "\x00\x01\x02\xff"`,
		`R room:1@ep1:4-7`,
		`M room:1@ep1:8 empty ex="" bin=false ""`,
		`C "ctl"`,
		`M other@ep2:7 e ex="" bin=false "1"`,
		`C "\x00\xff"`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("records:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestNotePacking(t *testing.T) {
	var w noteWriter
	w.reset()
	payload := []byte(`"` + strings.Repeat("p", 98) + `"`) // 100 bytes
	const n = 1000
	topics := []string{"a", "b", "c"}
	for _, topic := range topics {
		for i := 1; i <= n; i++ {
			if !w.message("e", &pubsub.Message{Topic: topic, Event: "ev", Payload: payload}, uint64(i)) {
				t.Fatal("100-byte payload not inline")
			}
		}
	}
	notes := w.finish()
	// About 7900/115 messages per notification.
	if len(notes) > 3*n/60 {
		t.Fatalf("%d notifications for %d messages: packing too loose", len(notes), 3*n)
	}
	got := read(t, notes, "b")
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
	// The largest inline message fits; one byte more goes by reference.
	topic := strings.Repeat("t", 255)
	epoch := "0123456789abcdef"
	for size := 7500; size < 7900; size++ {
		var w noteWriter
		w.reset()
		m := pubsub.Message{Topic: topic, Event: strings.Repeat("e", 255), Payload: bytes.Repeat([]byte("a"), size)}
		w.message(epoch, &m, 1<<40)
		for _, n := range w.finish() {
			if len(n) >= 8000 {
				t.Fatalf("payload %d: notification of %d bytes", size, len(n))
			}
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
	w.message("ep", &pubsub.Message{Topic: "room", Event: "e", Payload: []byte(`{"x":1}`)}, 3)
	w.message("ep", &pubsub.Message{Topic: "room", Event: "e", Payload: []byte{1, 2}, Binary: true}, 4)
	w.message("ep", &pubsub.Message{Topic: "room", Event: "e", Payload: bytes.Repeat([]byte("x"), 9000)}, 5)
	w.control([]byte("c"))
	for _, n := range w.finish() {
		f.Add(n)
	}
	f.Add("h1T1:a1:eR1,2")
	f.Fuzz(func(t *testing.T, s string) {
		_ = readNote(s, visitor{&collect{}}) // must not panic
	})
}
