package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	neturl "net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hearth-rt/hearth/pubsub"
	"github.com/hearth-rt/hearth/pubsub/postgres"
)

// The scale scenario's node ("hearth bench scale-node ..."): one process
// running only Hearth's Postgres broker, with its own pool and listener on
// each database (Options.URLs), no WebSockets. It subscribes in-process to the topics the
// placement gives it (scaleSubscribers) and publishes its share of the
// load over every topic, so most of what it publishes is received by
// other nodes.
//
//	--database-url URL (one per database, in order) --node I --nodes N
//	--topics T --replicas R --size B [--listen-all] [--pool-conns P]
//
// It prints one JSON object per line on stdout and reads commands, one per
// line, on stdin:
//
//   - {"ready":true,"topic_db":[...]} once the broker is up and every
//     topic subscribed, with the database owning each topic;
//   - "go ROUND RATE SECONDS": publishes RATE messages per second for
//     SECONDS, round robin over the topics, and prints
//     {"round":ROUND,"published":N,...,"pub_topics":[per topic]} when
//     every message is committed; receipts of this round are counted from
//     the "go" on;
//   - "stats": {"received":N}, this round's deliveries so far;
//   - "end": this round's figures (scaleNodeResult) with the brokers'
//     counters since the "go";
//   - end of input: the node exits.
//
// Payloads are {"t":<send µs>,"g":"<run>.<round>","n":<node>,"s":<seq>,"body":"xx.."}.
type scaleNodeResult struct {
	Ready     bool   `json:"ready,omitempty"`
	Round     int    `json:"round,omitempty"`
	Published int64  `json:"published"`
	Failed    int64  `json:"failed,omitempty"`
	Skipped   int64  `json:"skipped,omitempty"`
	PubTopics []int  `json:"pub_topics,omitempty"` // messages committed per topic
	TopicDB   []int  `json:"topic_db,omitempty"`   // "ready": the database (index in the URLs) owning each topic
	Received  int64  `json:"received"`
	Error     string `json:"error,omitempty"`

	// "end" only.
	RecvTopics []int      `json:"recv_topics,omitempty"` // deliveries per topic
	Duplicates int64      `json:"duplicates,omitempty"`  // a (node, seq) delivered twice
	Foreign    int64      `json:"foreign,omitempty"`     // deliveries on a topic this node did not subscribe to
	Cross      int64      `json:"cross,omitempty"`       // deliveries of other nodes' messages
	Stale      int64      `json:"stale,omitempty"`       // deliveries of an earlier round
	FirstUS    int64      `json:"first_us,omitempty"`
	LastUS     int64      `json:"last_us,omitempty"`
	Latency    *Histogram `json:"latency,omitempty"`
	DBs        []scaleDB  `json:"dbs,omitempty"`
}

// scaleDB is one database's broker counters over a round.
type scaleDB struct {
	Published     uint64 `json:"published"`          // messages this node committed there
	Notifications uint64 `json:"notifications_sent"` // NOTIFY payloads it sent
	Transactions  uint64 `json:"transactions"`       // publishing transactions it committed there
	NotesReceived uint64 `json:"notes_received"`     // notifications its listener received
	Delivered     uint64 `json:"delivered"`
	Fetched       uint64 `json:"fetched"`
	Shards        int    `json:"shards_listened"`
}

type scaleNodeFlags struct {
	urls                     []string
	node, nodes, topics      int
	replicas, size, poolConn int
	listenAll                bool
}

// urlList collects repeated --database-url flags.
type urlList []string

func (u *urlList) String() string     { return strings.Join(*u, " ") }
func (u *urlList) Set(s string) error { *u = append(*u, s); return nil }

func parseScaleNodeFlags(args []string) (*scaleNodeFlags, error) {
	f := &scaleNodeFlags{}
	var urls urlList
	fs := flag.NewFlagSet("scale-node", flag.ContinueOnError)
	fs.Var(&urls, "database-url", "Postgres URL of a database (repeat for K databases; topics are spread over them)")
	fs.IntVar(&f.node, "node", 0, "this node's index")
	fs.IntVar(&f.nodes, "nodes", 1, "nodes in the cluster")
	fs.IntVar(&f.topics, "topics", 256, "topics")
	fs.IntVar(&f.replicas, "replicas", 3, "nodes subscribing to each topic")
	fs.IntVar(&f.size, "size", 64, "payload bytes")
	fs.IntVar(&f.poolConn, "pool-conns", 3, "pool connections per database (pool_max_conns)")
	fs.BoolVar(&f.listenAll, "listen-all", false, "LISTEN to every notification shard (postgres.Options.ListenAll)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	f.urls = urls
	switch {
	case len(f.urls) == 0:
		return nil, errors.New("scale-node: --database-url is required")
	case f.nodes < 1 || f.node < 0 || f.node >= f.nodes:
		return nil, errors.New("scale-node: --node must be in [0, --nodes)")
	case f.topics < 1 || f.replicas < 1 || f.poolConn < 1:
		return nil, errors.New("scale-node: --topics, --replicas and --pool-conns must be at least 1")
	}
	return f, nil
}

// scaleSchema keeps the scenario's tables apart.
const scaleSchema = "hearth_scale"

// scaleTopic names topic i of the scale scenario.
func scaleTopic(i int) string { return "scale:t" + strconv.Itoa(i) }

// scaleSubscribers returns the nodes (of n) subscribing to topic i: the
// replicas with the highest hash of (topic, node), rendezvous style, so
// each node holds a pseudo-random fraction of the topics.
func scaleSubscribers(i, n, replicas int) []int {
	replicas = min(replicas, n)
	type scored struct {
		node int
		h    uint64
	}
	s := make([]scored, n)
	for node := range n {
		sum := md5.Sum([]byte(scaleTopic(i) + "/" + strconv.Itoa(node)))
		s[node] = scored{node, binary.BigEndian.Uint64(sum[:8])}
	}
	slices.SortFunc(s, func(a, b scored) int {
		switch {
		case a.h > b.h:
			return -1
		case a.h < b.h:
			return 1
		}
		return a.node - b.node
	})
	out := make([]int, replicas)
	for j := range out {
		out[j] = s[j].node
	}
	slices.Sort(out)
	return out
}

// scaleShard is the notification shard of topic i: pubsub/postgres's
// documented hash (the first four bytes of the topic's MD5, big-endian,
// modulo postgres.Shards).
func scaleShard(i int) int {
	sum := md5.Sum([]byte(scaleTopic(i)))
	return int(binary.BigEndian.Uint32(sum[:4]) % postgres.Shards)
}

// withPoolConns adds pool_max_conns to a URL.
func withPoolConns(dsn string, n int) string {
	u, err := neturl.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return dsn + " pool_max_conns=" + strconv.Itoa(n)
	}
	q := u.Query()
	q.Set("pool_max_conns", strconv.Itoa(n))
	u.RawQuery = q.Encode()
	return u.String()
}

// scaleRound is what a node counts during one round.
type scaleRound struct {
	tag      []byte // `"g":"<run>.<round>"`
	recv     []atomic.Int64
	n        atomic.Int64
	dups     atomic.Int64
	cross    atomic.Int64
	foreign  atomic.Int64
	lat      Histogram
	mu       sync.Mutex
	seen     map[uint64]struct{}
	first    int64
	last     int64
	baseline []postgres.Stats
}

// scaleRecorder is the brokers' handler.
type scaleRecorder struct {
	node       int
	topicIndex map[string]int
	mine       []bool // topics this node subscribes to
	cur        atomic.Pointer[scaleRound]
	stale      atomic.Int64
}

func (r *scaleRecorder) HandleMessage(m *pubsub.Message) {
	rd := r.cur.Load()
	if rd == nil || !bytes.Contains(m.Payload, rd.tag) {
		r.stale.Add(1)
		return
	}
	now := time.Now().UnixMicro()
	i, ok := r.topicIndex[m.Topic]
	if !ok || !r.mine[i] {
		rd.foreign.Add(1)
		return
	}
	sender := payloadInt(m.Payload, `"n":`)
	key := uint64(sender)<<40 | uint64(payloadInt(m.Payload, `"s":`))
	rd.mu.Lock()
	_, dup := rd.seen[key]
	rd.seen[key] = struct{}{}
	if rd.first == 0 {
		rd.first = now
	}
	rd.last = now
	rd.mu.Unlock()
	if dup {
		rd.dups.Add(1)
		return
	}
	if sent := payloadInt(m.Payload, `"t":`); sent > 0 {
		rd.lat.recordUS(now-sent, 1)
	}
	if sender != int64(r.node) {
		rd.cross.Add(1)
	}
	rd.recv[i].Add(1)
	rd.n.Add(1)
}

func (r *scaleRecorder) HandleControl([]byte) {}

// payloadInt reads the decimal digits after key in p (0 when absent).
func payloadInt(p []byte, key string) int64 {
	i := bytes.Index(p, []byte(key))
	if i < 0 {
		return 0
	}
	var v int64
	for _, c := range p[i+len(key):] {
		if c < '0' || c > '9' {
			break
		}
		v = v*10 + int64(c-'0')
	}
	return v
}

// ScaleNode runs one node of the scale scenario (see the protocol above).
func ScaleNode(args []string, in io.Reader, out io.Writer) error {
	f, err := parseScaleNodeFlags(args)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(out)
	var emu sync.Mutex
	emit := func(r scaleNodeResult) {
		emu.Lock()
		defer emu.Unlock()
		_ = enc.Encode(r)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rec := &scaleRecorder{node: f.node, topicIndex: make(map[string]int, f.topics), mine: make([]bool, f.topics)}
	for i := range f.topics {
		rec.topicIndex[scaleTopic(i)] = i
		rec.mine[i] = slices.Contains(scaleSubscribers(i, f.nodes, f.replicas), f.node)
	}
	// One broker on every database (Options.URLs): it places each topic
	// on one of them and keeps a pool and a listener on each.
	urls := make([]string, len(f.urls))
	for k, u := range f.urls {
		urls[k] = withPoolConns(u, f.poolConn)
	}
	b, err := postgres.New(ctx, postgres.Options{
		URLs: urls, Schema: scaleSchema, ListenAll: f.listenAll,
		Name: fmt.Sprintf("scale-%d", f.node), HistorySize: 10_000,
	})
	if err != nil {
		return fmt.Errorf("scale-node %d: %w", f.node, err)
	}
	defer b.Close()
	b.Register(rec)
	ready := scaleNodeResult{Ready: true, TopicDB: make([]int, f.topics)}
	for i := range f.topics {
		_, ready.TopicDB[i] = b.Database(scaleTopic(i))
		if rec.mine[i] {
			if err := b.Subscribe(ctx, scaleTopic(i)); err != nil {
				return err
			}
		}
	}
	emit(ready)

	cmds := bufio.NewScanner(in)
	var seq atomic.Int64
	for cmds.Scan() {
		fields := strings.Fields(cmds.Text())
		if len(fields) == 0 {
			continue
		}
		switch fields[0] {
		case "go":
			if len(fields) != 4 {
				return fmt.Errorf("scale-node: want go ROUND RATE SECONDS, got %q", cmds.Text())
			}
			round, _ := strconv.Atoi(fields[1])
			rate, err1 := strconv.ParseFloat(fields[2], 64)
			secs, err2 := strconv.ParseFloat(fields[3], 64)
			if err1 != nil || err2 != nil || rate <= 0 || secs <= 0 {
				return fmt.Errorf("scale-node: bad go command %q", cmds.Text())
			}
			rd := &scaleRound{tag: []byte(`"g":"` + fields[1] + `"`), recv: make([]atomic.Int64, f.topics), seen: map[uint64]struct{}{}}
			rd.baseline = dbStats(b)
			rec.cur.Store(rd)
			go func() {
				emit(scalePublish(ctx, b, f, round, fields[1], rate, secs, &seq))
			}()
		case "stats":
			var n int64
			if rd := rec.cur.Load(); rd != nil {
				n = rd.n.Load()
			}
			emit(scaleNodeResult{Received: n})
		case "end":
			rd := rec.cur.Load()
			if rd == nil {
				emit(scaleNodeResult{Error: "end before go"})
				continue
			}
			res := scaleNodeResult{Received: rd.n.Load(), Duplicates: rd.dups.Load(), Foreign: rd.foreign.Load(), Cross: rd.cross.Load(), Stale: rec.stale.Load(), Latency: &rd.lat}
			res.RecvTopics = make([]int, f.topics)
			for i := range rd.recv {
				res.RecvTopics[i] = int(rd.recv[i].Load())
			}
			rd.mu.Lock()
			res.FirstUS, res.LastUS = rd.first, rd.last
			rd.mu.Unlock()
			for k, s := range dbStats(b) {
				s0 := rd.baseline[k]
				res.DBs = append(res.DBs, scaleDB{
					Published: s.Published - s0.Published, Notifications: s.Notifications - s0.Notifications, Transactions: s.Batches - s0.Batches,
					NotesReceived: s.Received - s0.Received, Delivered: s.Delivered - s0.Delivered,
					Fetched: s.Fetched - s0.Fetched, Shards: s.ShardsListened,
				})
			}
			emit(res)
		}
	}
	return cmds.Err()
}

// scalePublish publishes one round: rate messages per second for secs
// seconds, round robin over the topics (from node × topics / nodes on, so
// that short rounds still cover every topic),
// queued with PublishAsync.
func scalePublish(ctx context.Context, b *postgres.Broker, f *scaleNodeFlags, round int, tag string, rate, secs float64, seq *atomic.Int64) scaleNodeResult {
	res := scaleNodeResult{Round: round, PubTopics: make([]int, f.topics)}
	var published, failed, skipped atomic.Int64
	var mu sync.Mutex
	var pending sync.WaitGroup
	body := strings.Repeat("x", max(0, f.size-70))
	scaleLoop(rate, secs, func(slot int) {
		i := (f.node*f.topics/f.nodes + slot) % f.topics
		s := seq.Add(1)
		p := make([]byte, 0, f.size+64)
		p = append(p, `{"t":`...)
		p = strconv.AppendInt(p, time.Now().UnixMicro(), 10)
		p = append(p, `,"g":"`+tag+`","n":`...)
		p = strconv.AppendInt(p, int64(f.node), 10)
		p = append(p, `,"s":`...)
		p = strconv.AppendInt(p, s, 10)
		p = append(p, `,"body":"`+body+`"}`...)
		pending.Add(1)
		err := b.PublishAsync(ctx, pubsub.Message{Topic: scaleTopic(i), Event: "m", Payload: p}, func(_ pubsub.Position, err error) {
			if err != nil {
				noteFailure(&failed, err)
			} else {
				published.Add(1)
				mu.Lock()
				res.PubTopics[i]++
				mu.Unlock()
			}
			pending.Done()
		})
		if err != nil {
			pending.Done()
			noteFailure(&failed, err)
		}
	}, &skipped)
	pending.Wait()
	res.Published, res.Failed, res.Skipped = published.Load(), failed.Load(), skipped.Load()
	return res
}

// dbStats returns the broker's counters per database, in the order of
// its URLs.
func dbStats(b *postgres.Broker) []postgres.Stats {
	s := b.Stats()
	if len(s.Databases) > 0 {
		return s.Databases
	}
	return []postgres.Stats{s}
}

// scaleNodeArgs are node i's arguments.
func scaleNodeArgs(urls []string, node, nodes, topics, replicas, size, poolConns int, listenAll bool) []string {
	var a []string
	for _, u := range urls {
		a = append(a, "--database-url", u)
	}
	a = append(a, "--node", strconv.Itoa(node), "--nodes", strconv.Itoa(nodes), "--topics", strconv.Itoa(topics),
		"--replicas", strconv.Itoa(replicas), "--size", strconv.Itoa(size), "--pool-conns", strconv.Itoa(poolConns))
	if listenAll {
		a = append(a, "--listen-all")
	}
	return a
}

// scaleTick is the publishing loop's period: coarser than the broker
// scenario's 5 ms, as 64 nodes each waking 200 times a second would cost
// this machine more than the few messages each of them sends.
const scaleTick = 20 * time.Millisecond

// scaleLoop calls send for every slot due at rate over secs seconds, in
// slot order; slots more than a second behind are counted in late instead.
func scaleLoop(rate, secs float64, send func(slot int), late *atomic.Int64) {
	start := time.Now()
	end := start.Add(time.Duration(secs * float64(time.Second)))
	tk := time.NewTicker(scaleTick)
	defer tk.Stop()
	issued := 0
	for now := range tk.C {
		if now.After(end) {
			now = end
		}
		due := int(now.Sub(start).Seconds()*rate) - issued
		if behind := due - max(int(rate), 1); behind > 0 {
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
