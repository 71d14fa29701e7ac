package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hearth-rt/hearth/pubsub"
	"github.com/hearth-rt/hearth/pubsub/postgres"
)

// The broker scenario's node protocol, spoken by BrokerNode (Hearth's
// pubsub/postgres) and by bench/peers/socketio/broker-node.js (Socket.IO's
// @socket.io/postgres-adapter) alike. A node is a process started with
//
//	--role pub|sub --database-url URL --run ID --topics N --rate R --seconds S --size B [--publishers P]
//
// It prints one JSON object per line on stdout and reads commands, one per
// line, on stdin:
//
//   - both roles print {"ready":true} once connected (a sub: listening);
//   - a pub, on "go", publishes R messages per second for S seconds, spread
//     over the topics bench:b0 ... bench:b<N-1>, waits for what it still has
//     in flight and prints {"published":N,"failed":F,"skipped":K};
//   - a sub, on "stats", prints {"received":N}; on "stop", prints its final
//     figures and exits.
//
// Payloads are JSON, {"t":<send time in µs since the epoch>,"r":"<run ID>","body":"xx..."}
// of about B bytes; a sub counts only its run's messages and computes
// latency from t.
type brokerNodeResult struct {
	Ready     bool    `json:"ready,omitempty"`
	Published int64   `json:"published,omitempty"`
	Failed    int64   `json:"failed,omitempty"`
	Skipped   int64   `json:"skipped,omitempty"`
	Received  int64   `json:"received"`
	FirstUS   int64   `json:"first_us,omitempty"` // first and last receipt, µs since the epoch
	LastUS    int64   `json:"last_us,omitempty"`
	P50MS     float64 `json:"p50_ms,omitempty"`
	P99MS     float64 `json:"p99_ms,omitempty"`
	MaxMS     float64 `json:"max_ms,omitempty"`
	Error     string  `json:"error,omitempty"`
}

type brokerNodeFlags struct {
	role, url, run     string
	topics, size, pubs int
	rate               float64
	seconds            float64
}

func parseBrokerNodeFlags(args []string) (*brokerNodeFlags, error) {
	f := &brokerNodeFlags{}
	fs := flag.NewFlagSet("broker-node", flag.ContinueOnError)
	fs.StringVar(&f.role, "role", "", "pub or sub")
	fs.StringVar(&f.url, "database-url", "", "Postgres URL")
	fs.StringVar(&f.run, "run", "", "run identifier carried by the payloads: a sub counts only its run's messages")
	fs.IntVar(&f.topics, "topics", 100, "topics")
	fs.Float64Var(&f.rate, "rate", 1000, "messages per second (pub)")
	fs.Float64Var(&f.seconds, "seconds", 10, "publishing time (pub)")
	fs.IntVar(&f.size, "size", 64, "payload bytes")
	fs.IntVar(&f.pubs, "publishers", 2048, "concurrent publishers (pub): the sockets of a node publishing at once; -1: none, the ticker queues with PublishAsync")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if f.role != "pub" && f.role != "sub" {
		return nil, errors.New("broker-node: --role must be pub or sub")
	}
	if f.url == "" {
		return nil, errors.New("broker-node: --database-url is required")
	}
	if f.topics < 1 || f.pubs < 1 && f.pubs != -1 {
		return nil, errors.New("broker-node: --topics must be at least 1, --publishers at least 1 or -1 (PublishAsync)")
	}
	return f, nil
}

// brokerTopic names topic i of the broker scenario.
func brokerTopic(i int) string { return "bench:b" + strconv.Itoa(i) }

// brokerSchema keeps the scenario's history apart from the demo's.
const brokerSchema = "hearth_bench"

// BrokerNode runs one node of the broker scenario on Hearth's Postgres
// broker ("hearth bench broker-node ..."; see the protocol above).
func BrokerNode(args []string, in io.Reader, out io.Writer) error {
	f, err := parseBrokerNodeFlags(args)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	var emu sync.Mutex
	emit := func(r brokerNodeResult) {
		emu.Lock()
		defer emu.Unlock()
		_ = enc.Encode(r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b, err := postgres.New(ctx, postgres.Options{URL: f.url, Schema: brokerSchema, HistorySize: 10_000})
	if err != nil {
		return err
	}
	defer b.Close()
	cmds := bufio.NewScanner(in)
	if f.role == "sub" {
		return brokerSub(ctx, b, f, cmds, emit)
	}
	return brokerPub(ctx, b, f, cmds, emit)
}

// brokerRecorder counts deliveries and keeps their latencies.
type brokerRecorder struct {
	tag         []byte // `"r":"<run>"`
	n           atomic.Int64
	mu          sync.Mutex
	lat         []float64 // ms
	first, last int64     // µs
}

func (r *brokerRecorder) HandleMessage(m *pubsub.Message) {
	if !bytes.Contains(m.Payload, r.tag) {
		return // another run's message
	}
	now := time.Now().UnixMicro()
	sent := payloadTime(m.Payload)
	r.mu.Lock()
	if r.first == 0 {
		r.first = now
	}
	r.last = now
	if sent > 0 {
		r.lat = append(r.lat, float64(now-sent)/1000)
	}
	r.mu.Unlock()
	r.n.Add(1)
}

func (r *brokerRecorder) HandleControl([]byte) {}

// payloadTime reads "t" from a broker scenario payload: the digits after
// the first `"t":` (0 when there is none).
func payloadTime(p []byte) int64 {
	i := bytes.Index(p, []byte(`"t":`))
	if i < 0 {
		return 0
	}
	var v int64
	for _, c := range p[i+4:] {
		if c < '0' || c > '9' {
			break
		}
		v = v*10 + int64(c-'0')
	}
	return v
}

func brokerSub(ctx context.Context, b *postgres.Broker, f *brokerNodeFlags, cmds *bufio.Scanner, emit func(brokerNodeResult)) error {
	rec := &brokerRecorder{tag: runTag(f.run)}
	b.Register(rec)
	for i := range f.topics {
		if err := b.Subscribe(ctx, brokerTopic(i)); err != nil {
			return err
		}
	}
	emit(brokerNodeResult{Ready: true})
	for cmds.Scan() {
		switch cmds.Text() {
		case "stats":
			emit(brokerNodeResult{Received: rec.n.Load()})
		case "stop":
			rec.mu.Lock()
			lat := slices.Clone(rec.lat)
			res := brokerNodeResult{Received: rec.n.Load(), FirstUS: rec.first, LastUS: rec.last}
			rec.mu.Unlock()
			res.P50MS, res.P99MS, res.MaxMS = latencySummary(lat)
			emit(res)
			return nil
		}
	}
	return cmds.Err()
}

// latencySummary returns the p50, p99 and max of vs (zeros when empty).
func latencySummary(vs []float64) (p50, p99, maxv float64) {
	if len(vs) == 0 {
		return 0, 0, 0
	}
	return quantileOf(vs, 0.5), quantileOf(vs, 0.99), slices.Max(vs)
}

func runTag(run string) []byte { return []byte(`"r":"` + run + `"`) }

// brokerPayload builds a payload of about size bytes sent now.
func brokerPayload(run string, size int) []byte {
	p := make([]byte, 0, size+24)
	p = append(p, `{"t":`...)
	p = strconv.AppendInt(p, time.Now().UnixMicro(), 10)
	p = append(p, ',')
	p = append(p, runTag(run)...)
	p = append(p, `,"body":"`...)
	for len(p) < size-2 {
		p = append(p, 'x')
	}
	return append(p, `"}`...)
}

func brokerPub(ctx context.Context, b *postgres.Broker, f *brokerNodeFlags, cmds *bufio.Scanner, emit func(brokerNodeResult)) error {
	emit(brokerNodeResult{Ready: true})
	for cmds.Scan() && cmds.Text() != "go" {
	}
	if err := cmds.Err(); err != nil {
		return err
	}
	if f.pubs == -1 {
		return brokerPubAsync(ctx, b, f, cmds, emit)
	}
	// Open loop: a ticker hands out the slots due; publisher goroutines
	// (the sockets of a node) take them. A slot no publisher could take
	// within a second of backlog is skipped: the offered rate was not
	// sustained.
	slots := make(chan int, max(int(f.rate), 1))
	var published, failed, skipped atomic.Int64
	var wg sync.WaitGroup
	for range f.pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range slots {
				m := pubsub.Message{Topic: brokerTopic(i % f.topics), Event: "new_msg", Payload: brokerPayload(f.run, f.size)}
				if _, err := b.Publish(ctx, m); err != nil {
					noteFailure(&failed, err)
					continue
				}
				published.Add(1)
			}
		}()
	}
	openLoop(f, func(slot int) {
		select {
		case slots <- slot:
		default:
			skipped.Add(1)
		}
	}, nil)
	close(slots)
	wg.Wait()
	emit(brokerNodeResult{Published: published.Load(), Failed: failed.Load(), Skipped: skipped.Load()})
	for cmds.Scan() {
	}
	return nil
}

// brokerPubAsync is brokerPub with no publisher goroutines: the ticker
// queues every message due with PublishAsync, which waits only while the
// broker's queue is full, as Socket.IO's emit does not wait at all. When
// the loop falls more than a second behind, what is due beyond that second
// is skipped: the offered rate was not sustained.
func brokerPubAsync(ctx context.Context, b *postgres.Broker, f *brokerNodeFlags, cmds *bufio.Scanner, emit func(brokerNodeResult)) error {
	var published, failed, skipped atomic.Int64
	var pending sync.WaitGroup
	done := func(_ pubsub.Position, err error) {
		if err != nil {
			noteFailure(&failed, err)
		} else {
			published.Add(1)
		}
		pending.Done()
	}
	openLoop(f, func(slot int) {
		m := pubsub.Message{Topic: brokerTopic(slot % f.topics), Event: "new_msg", Payload: brokerPayload(f.run, f.size)}
		pending.Add(1)
		if err := b.PublishAsync(ctx, m, done); err != nil {
			pending.Done()
			noteFailure(&failed, err)
		}
	}, &skipped)
	pending.Wait()
	emit(brokerNodeResult{Published: published.Load(), Failed: failed.Load(), Skipped: skipped.Load()})
	for cmds.Scan() {
	}
	return nil
}

// openLoop calls send for every slot due at f.rate over f.seconds, from a
// 5 ms ticker, in slot order. With late set, slots more than a second
// behind are counted there instead of sent.
func openLoop(f *brokerNodeFlags, send func(slot int), late *atomic.Int64) {
	start := time.Now()
	end := start.Add(time.Duration(f.seconds * float64(time.Second)))
	tk := time.NewTicker(5 * time.Millisecond)
	defer tk.Stop()
	issued := 0
	for now := range tk.C {
		if now.After(end) {
			now = end
		}
		due := int(now.Sub(start).Seconds()*f.rate) - issued
		if behind := due - max(int(f.rate), 1); late != nil && behind > 0 {
			late.Add(int64(behind))
			issued += behind
			due -= behind
		}
		for ; due > 0; due-- {
			send(issued)
			issued++
		}
		if !now.Before(end) {
			return
		}
	}
}

// brokerNodeArgs are a node's arguments.
func brokerNodeArgs(role, url, run string, topics int, rate, seconds float64, size, pubs int) []string {
	return []string{"--role", role, "--database-url", url, "--run", run, "--topics", strconv.Itoa(topics),
		"--rate", fmt.Sprint(rate), "--seconds", fmt.Sprint(seconds), "--size", strconv.Itoa(size), "--publishers", strconv.Itoa(pubs)}
}

// noteFailure counts a failed publish and prints the first one's error to
// the node's standard error, so that a run reporting failures says why.
func noteFailure(failed *atomic.Int64, err error) {
	if failed.Add(1) == 1 {
		fmt.Fprintf(os.Stderr, "broker node: publish failed: %v\n", err)
	}
}
