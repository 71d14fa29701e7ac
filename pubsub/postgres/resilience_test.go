package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hearth-rt/hearth/internal/pgtest"
	"github.com/hearth-rt/hearth/pubsub"
)

// A stream: `streamTopics` topics, `streamEach` messages each (10,000 in
// all), published in order per topic, in parallel across topics. Payloads
// are the per-topic sequence numbers 1..streamEach.
const (
	streamTopics = 10
	streamEach   = 1000
)

func streamTopic(i int) string { return fmt.Sprintf("stream:%d", i) }

// publishStream publishes the stream from pub. A Publish that fails (the
// server went away) is ambiguous: the commit may have happened. The
// publisher then waits for the database and looks at the topic's last
// message to decide whether to send that number again, so that the stream
// itself holds every number once.
//
// at maps message counts to disruptions: the publisher whose message makes
// the count runs it, while the others go on publishing.
func publishStream(t *testing.T, pub *Broker, ctx context.Context, at map[int64]func()) {
	var sent atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < streamTopics; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			topic := streamTopic(i)
			for seq := 1; seq <= streamEach; {
				_, err := pub.Publish(ctx, pubsub.Message{Topic: topic, Event: "n", Payload: []byte(strconv.Itoa(seq))})
				if err != nil {
					if ctx.Err() != nil {
						t.Errorf("%s: %v", topic, err)
						return
					}
					if lastPayload(ctx, pub, topic) != strconv.Itoa(seq) {
						continue // not committed: send it again
					}
				}
				seq++
				if f := at[sent.Add(1)]; f != nil {
					f()
				}
			}
		}()
	}
	wg.Wait()
}

// lastPayload returns the payload of the topic's latest stored message,
// retrying until the database answers.
func lastPayload(ctx context.Context, b *Broker, topic string) string {
	for ctx.Err() == nil {
		var p []byte
		err := b.pool.QueryRow(ctx, "SELECT payload FROM "+b.names.messages+" WHERE topic = $1 ORDER BY seq DESC LIMIT 1", topic).Scan(&p)
		if err == nil || errors.Is(err, pgx.ErrNoRows) {
			return string(p)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ""
}

// verifyStream waits for every subscriber to receive the stream and an end
// marker per topic (sent after the stream, so that any late duplicate would
// arrive before it), then counts lost, duplicated and reordered messages.
func verifyStream(t *testing.T, pub *Broker, recs map[string]*recorder) {
	t.Helper()
	for i := 0; i < streamTopics; i++ {
		publish(t, pub, streamTopic(i), "end", strconv.Itoa(streamEach+1))
	}
	for name, rec := range recs {
		eventually(t, 60*time.Second, "the end markers on node "+name, func() bool {
			for i := 0; i < streamTopics; i++ {
				ms := rec.topic(streamTopic(i))
				if len(ms) == 0 || ms[len(ms)-1].Event != "end" {
					return false
				}
			}
			return true
		})
		lost, dup, reordered := 0, 0, 0
		for i := 0; i < streamTopics; i++ {
			seen := make(map[int]bool)
			prev := 0
			for _, m := range rec.topic(streamTopic(i)) {
				n, err := strconv.Atoi(string(m.Payload))
				if err != nil {
					t.Fatalf("payload %q", m.Payload)
				}
				if seen[n] {
					dup++
				}
				if n < prev {
					reordered++
				}
				seen[n] = true
				prev = n
			}
			for n := 1; n <= streamEach+1; n++ {
				if !seen[n] {
					lost++
				}
			}
		}
		t.Logf("node %s: lost %d, duplicated %d, reordered %d", name, lost, dup, reordered)
		if lost+dup+reordered != 0 {
			t.Errorf("node %s: lost %d, duplicated %d, reordered %d; want all zero", name, lost, dup, reordered)
		}
	}
}

// stateLog records a node's state changes.
type stateLog struct {
	mu     sync.Mutex
	states []State
}

func (l *stateLog) add(s State) { l.mu.Lock(); l.states = append(l.states, s); l.mu.Unlock() }

func (l *stateLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprint(l.states)
}

// has reports whether the log holds want as a subsequence.
func (l *stateLog) has(want ...State) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	i := 0
	for _, s := range l.states {
		if i < len(want) && s == want[i] {
			i++
		}
	}
	return i == len(want)
}

// killListener terminates b's listener backend.
func killListener(url string, b *Broker) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var n int
	err = conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`,
		"hearth-listener "+b.Name()).Scan(&n)
	if err == nil && n == 0 {
		err = fmt.Errorf("no listener backend of %s", b.Name())
	}
	return err
}

// TestListenerKilledMidStream terminates subscriber nodes' listener
// connections with pg_terminate_backend while 10,000 messages stream.
func TestListenerKilledMidStream(t *testing.T) {
	u, schema := pgtest.Schema(t)
	pub, _ := node(t, u, schema)
	var logB, logC stateLog
	b, recB := node(t, u, schema, func(o *Options) { o.OnStateChange = logB.add })
	c, recC := node(t, u, schema, func(o *Options) { o.OnStateChange = logC.add })
	for i := 0; i < streamTopics; i++ {
		subscribe(t, b, streamTopic(i))
		subscribe(t, c, streamTopic(i))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Kill b's listener at 20% and 60% of the stream, c's at 40%.
	kill := func(n *Broker) func() {
		return func() {
			if err := killListener(u, n); err != nil {
				t.Error(err)
			}
		}
	}
	const total = streamTopics * streamEach
	publishStream(t, pub, ctx, map[int64]func(){total / 5: kill(b), total * 2 / 5: kill(c), total * 3 / 5: kill(b)})
	verifyStream(t, pub, map[string]*recorder{"b": recB, "c": recC})

	for name, n := range map[string]*Broker{"b": b, "c": c} {
		st := n.Stats()
		t.Logf("node %s: %+v", name, st)
		if st.Missed != 0 {
			t.Errorf("node %s missed %d messages", name, st.Missed)
		}
	}
	if st := b.Stats(); st.Reconnects != 2 || st.CatchUps != 2 {
		t.Errorf("node b: %d reconnects, %d catch-ups; want 2 and 2", st.Reconnects, st.CatchUps)
	}
	if st := c.Stats(); st.Reconnects != 1 || st.CatchUps != 1 {
		t.Errorf("node c: %d reconnects, %d catch-ups; want 1 and 1", st.Reconnects, st.CatchUps)
	}
	if !logB.has(StateDown, StateCatchingUp, StateHealthy, StateDown, StateCatchingUp, StateHealthy) {
		t.Errorf("node b states %v", &logB)
	}
	if b.State() != StateHealthy || c.State() != StateHealthy {
		t.Errorf("states after the stream: b %v, c %v", b.State(), c.State())
	}
}

// TestPostgresRestartMidStream restarts a private PostgreSQL server while
// 10,000 messages stream.
func TestPostgresRestartMidStream(t *testing.T) {
	cluster := pgtest.StartCluster(t)
	u := cluster.URL
	fast := func(o *Options) { o.ReconnectMax = 500 * time.Millisecond }
	pub, _ := node(t, u, "hearth", fast)
	var logB stateLog
	b, recB := node(t, u, "hearth", fast, func(o *Options) { o.OnStateChange = logB.add })
	c, recC := node(t, u, "hearth", fast)
	for i := 0; i < streamTopics; i++ {
		subscribe(t, b, streamTopic(i))
		subscribe(t, c, streamTopic(i))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	publishStream(t, pub, ctx, map[int64]func(){streamTopics * streamEach * 2 / 5: func() {
		if err := cluster.Restart(); err != nil {
			t.Error(err)
		}
	}})
	verifyStream(t, pub, map[string]*recorder{"b": recB, "c": recC})

	for name, n := range map[string]*Broker{"b": b, "c": c} {
		st := n.Stats()
		t.Logf("node %s: %+v", name, st)
		if st.Reconnects < 1 || st.CatchUps < 1 || st.Missed != 0 {
			t.Errorf("node %s: %d reconnects, %d catch-ups, %d missed", name, st.Reconnects, st.CatchUps, st.Missed)
		}
	}
	if !logB.has(StateDown, StateCatchingUp, StateHealthy) {
		t.Errorf("node b states %v", &logB)
	}
}

// TestSilentListenerDetectedByPing cuts the listener's connection without
// closing it (a proxy that swallows every byte, like a peer that vanished
// or a dropped route): only the idle ping notices. Messages published
// meanwhile are caught up once the route is back.
func TestSilentListenerDetectedByPing(t *testing.T) {
	u, schema := pgtest.Schema(t)
	pub, _ := node(t, u, schema)
	px := newProxy(t, u)
	var log stateLog
	b, rec := node(t, px.url, schema, func(o *Options) {
		o.PingInterval = 100 * time.Millisecond
		o.PingTimeout = 300 * time.Millisecond
		o.ReconnectMax = 200 * time.Millisecond
		o.OnStateChange = log.add
	})
	subscribe(t, b, "quiet")
	publish(t, pub, "quiet", "e", "1")
	eventually(t, 10*time.Second, "the first message", func() bool { return len(rec.topic("quiet")) == 1 })

	px.freeze()
	publish(t, pub, "quiet", "e", "2")
	eventually(t, 10*time.Second, "the listener to be declared down", func() bool { return b.State() == StateDown })
	publish(t, pub, "quiet", "e", "3")
	px.thaw()
	eventually(t, 20*time.Second, "the listener to be healthy again", func() bool { return b.State() == StateHealthy })
	// Nothing new was published: 2 and 3 come from the catch-up alone.
	eventually(t, 10*time.Second, "the catch-up", func() bool { return len(rec.topic("quiet")) == 3 })
	publish(t, pub, "quiet", "e", "4")
	eventually(t, 10*time.Second, "four messages", func() bool { return len(rec.topic("quiet")) == 4 })
	for i, m := range rec.topic("quiet") {
		if string(m.Payload) != strconv.Itoa(i+1) || m.Offset != uint64(i+1) {
			t.Fatalf("message %d = %+v", i, m)
		}
	}
	// At least one: with a 300 ms ping timeout a loaded machine may add a
	// spurious one, which must be harmless too.
	if st := b.Stats(); st.Reconnects < 1 || st.CatchUps < 1 {
		t.Fatalf("%d reconnects, %d catch-ups; want at least 1 and 1", st.Reconnects, st.CatchUps)
	}
	if !log.has(StateDown, StateCatchingUp, StateHealthy) {
		t.Fatalf("states %v", &log)
	}
}

// proxy forwards TCP connections to a PostgreSQL server; frozen, it
// swallows everything in both directions without closing anything.
type proxy struct {
	url    string
	ln     net.Listener
	target string
	frozen atomic.Bool
	mu     sync.Mutex
	conns  map[net.Conn]bool // true: existed while frozen
	wg     sync.WaitGroup
}

func newProxy(t *testing.T, dbURL string) *proxy {
	cfg, err := pgx.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))), conns: map[net.Conn]bool{}}
	pu, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	pu.Host = ln.Addr().String()
	p.url = pu.String()
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

func (p *proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = p.frozen.Load(), p.frozen.Load()
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(c, up)
		go p.pipe(up, c)
	}
}

func (p *proxy) pipe(from, to net.Conn) {
	defer p.wg.Done()
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 && !p.frozen.Load() {
			if _, werr := to.Write(buf[:n]); werr != nil {
				err = werr
			}
		}
		if err != nil {
			from.Close()
			to.Close()
			return
		}
	}
}

func (p *proxy) freeze() {
	p.mu.Lock()
	p.frozen.Store(true)
	for c := range p.conns {
		p.conns[c] = true
	}
	p.mu.Unlock()
}

// thaw forwards again; connections that lost bytes while frozen are closed.
func (p *proxy) thaw() {
	p.mu.Lock()
	p.frozen.Store(false)
	for c, broken := range p.conns {
		if broken {
			c.Close()
			delete(p.conns, c)
		}
	}
	p.mu.Unlock()
}

func (p *proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// TestListenURL sends the listener through its own route: cutting that
// route takes the listener down while publishing on the pool goes on.
func TestListenURL(t *testing.T) {
	u, schema := pgtest.Schema(t)
	px := newProxy(t, u)
	b, rec := node(t, u, schema, func(o *Options) {
		o.ListenURL = px.url
		o.PingInterval = 100 * time.Millisecond
		o.PingTimeout = 300 * time.Millisecond
		o.ReconnectMax = 200 * time.Millisecond
	})
	subscribe(t, b, "l")
	px.freeze()
	eventually(t, 10*time.Second, "the listener to be down", func() bool { return b.State() == StateDown })
	publish(t, b, "l", "e", "1") // the pool does not use the proxy
	// A topic subscribed while the listener is down is caught up too.
	publish(t, b, "new", "e", "before")
	subscribe(t, b, "new")
	publish(t, b, "new", "e", "1")
	if n := rec.total(); n != 0 {
		t.Fatalf("delivered %d messages with the listener down", n)
	}
	px.thaw()
	eventually(t, 10*time.Second, "the catch-up", func() bool { return len(rec.topic("l")) == 1 && len(rec.topic("new")) == 1 })
	publish(t, b, "new", "e", "2")
	eventually(t, 10*time.Second, "live delivery", func() bool { return len(rec.topic("new")) == 2 })
	for i, m := range rec.topic("new") {
		if string(m.Payload) != strconv.Itoa(i+1) || m.Offset != uint64(i+2) {
			t.Fatalf("message %d of the topic subscribed while down = %+v", i, m)
		}
	}
}
