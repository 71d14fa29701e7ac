package bench

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Protocols the load clients speak.
const (
	ProtoPhoenix  = "phoenix"  // Phoenix V2 JSON over /socket/websocket?vsn=2.0.0
	ProtoSocketIO = "socketio" // Engine.IO v4 / Socket.IO v5 over /socket.io/?EIO=4&transport=websocket
)

// GroupSpec describes a batch of load clients that share one configuration.
// A fleet splits a group across its workers; each worker gets the same spec
// with its own First and Count.
type GroupSpec struct {
	Name  string   `json:"name"`
	Proto string   `json:"proto"`
	Addrs []string `json:"addrs"` // host:port of the server nodes; client i starts at Addrs[i%len]
	// Failover makes a client try the next address after a failed attempt
	// or a lost connection, as behind a load balancer.
	Failover bool   `json:"failover,omitempty"`
	Policy   string `json:"policy"`
	// Topics is the scenario's topic list; client i joins TopicsPerClient of
	// them starting at i*TopicsPerClient (mod len).
	Topics          []string `json:"topics"`
	TopicsPerClient int      `json:"topics_per_client"`
	First           int      `json:"first"`
	Count           int      `json:"count"`
	SourceIPs       []string `json:"source_ips,omitempty"`
	// Spread is over how many of Addrs the clients start (client i at
	// Addrs[i%Spread]); the others are failover targets. Zero means all.
	Spread int `json:"spread,omitempty"`
	// ConnectRate is how many initial connects per second this worker makes
	// for the group; zero means as fast as possible.
	ConnectRate float64 `json:"connect_rate,omitempty"`
	// HeartbeatMS is the Phoenix heartbeat interval; zero means 30 s.
	HeartbeatMS int `json:"heartbeat_ms,omitempty"`
	// Recover asks a Hearth server to replay what a client missed while it
	// was away (the "$hearth" join extension).
	Recover bool `json:"recover,omitempty"`
	// PerMessage tracks every message's slowest delivery (fanout's latency to
	// the last subscriber).
	PerMessage bool `json:"per_message,omitempty"`
	// Publish makes the group's clients publishers instead of receivers.
	Publish *PublishSpec `json:"publish,omitempty"`
	// EpochNS is the run's time zero (Unix nanoseconds) for time series.
	EpochNS int64 `json:"epoch_ns"`
	// Query is extra query parameters for the socket URL ("k=v&k2=v2").
	Query string `json:"query,omitempty"`
	// Deflate offers permessage-deflate (compress.go).
	Deflate bool `json:"deflate,omitempty"`
	// Auth signs the clients in to a token service; nil means anonymous.
	Auth *AuthSpec `json:"auth,omitempty"`
	// Transport is TransportWebSocket (empty) or TransportPolling: HTTP
	// long-polling, Phoenix's LongPoll or Engine.IO's (pollconn.go).
	Transport string `json:"transport,omitempty"`
}

// PublishSpec makes clients publishers. Publisher p of Total owns the topics
// t with t%Total == p and sends round-robin over them.
type PublishSpec struct {
	Total int     `json:"total"`
	Rate  float64 `json:"rate"` // messages per second per publisher
	Size  int     `json:"size"` // payload bytes
}

func (s *GroupSpec) validate() error {
	if s.Proto != ProtoPhoenix && s.Proto != ProtoSocketIO {
		return fmt.Errorf("bench: unknown protocol %q", s.Proto)
	}
	if s.Transport != TransportWebSocket && s.Transport != TransportPolling {
		return fmt.Errorf("bench: unknown transport %q", s.Transport)
	}
	if s.Transport == TransportPolling && s.Deflate {
		return errors.New("bench: --compress is for WebSockets, not long-polling")
	}
	if len(s.Addrs) == 0 {
		return fmt.Errorf("bench: group %s has no server address", s.Name)
	}
	if _, err := PolicyByName(s.Policy); err != nil {
		return err
	}
	if len(s.Topics) == 0 && s.Publish == nil && s.TopicsPerClient > 0 {
		return fmt.Errorf("bench: group %s has no topics", s.Name)
	}
	if s.Auth != nil {
		if s.Proto != ProtoPhoenix {
			return fmt.Errorf("bench: group %s: signed-in clients speak Phoenix only", s.Name)
		}
		return s.Auth.validate()
	}
	return nil
}

// bin is the width of a time series bin.
const binMS = 100

// Series kinds.
const (
	seriesConnect    = "connect"    // WebSocket upgrades that succeeded
	seriesJoined     = "joined"     // clients that got every topic joined
	seriesDisconnect = "disconnect" // connections lost
	seriesError      = "error"      // failed attempts and client-visible errors
	seriesToken      = "token"      // token-service calls (GET /token)
)

// group is a worker's share of one GroupSpec.
type group struct {
	spec    GroupSpec
	w       *worker
	policy  Policy
	auth    *tokenService // nil: anonymous clients
	topicIx map[string]int
	clients []*client
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	connected, joined atomic.Int64 // gauges
	ctr               [numCounters]atomic.Int64
	lat               Histogram

	mu     sync.Mutex // guards errs, series
	errs   map[string]int64
	series map[string]map[int]int64

	markNS atomic.Int64 // the event mark, 0 if none

	pubCtx    context.Context // publishers run until this ends
	pubCancel context.CancelFunc
	pubOnce   sync.Once

	deliv []*bitset // per topic index: the worker's delivered set

	pm [pmShards]struct {
		mu sync.Mutex
		m  map[uint64]*MsgAgg
	}
}

// pmShards spreads the per-message records so that the subscribers of one
// message do not all take one lock.
const pmShards = 32

// Counter indexes.
const (
	cConnAttempts = iota
	cConnOK
	cDisconnects
	cJoinsOK
	cJoinErrors
	cJoinTimeouts
	cReceived
	cDuplicates
	cLate
	cPublished
	cPubAcked
	cPubFailed
	cPubSkipped
	cRecovered
	cNotRecovered
	cReplayed
	cShed
	cLogins           // POST /login
	cTokenCalls       // GET /token, answered or not
	cRefreshes        // tokens the server pushed over the socket
	cRefreshedClients // clients that received at least one
	numCounters
)

var counterNames = [numCounters]string{
	"conn_attempts", "conn_ok", "disconnects", "joins_ok", "join_errors", "join_timeouts",
	"received", "duplicates", "late", "published", "pub_acked", "pub_failed", "pub_skipped",
	"recovered", "not_recovered", "replayed", "shed",
	"logins", "token_calls", "token_refreshes", "refreshed_clients",
}

func (g *group) add(c int, n int64) { g.ctr[c].Add(n) }

// event records a time series point and, for errors, a labelled count.
func (g *group) event(kind string, label string) {
	bin := int((time.Now().UnixNano() - g.spec.EpochNS) / int64(binMS*time.Millisecond))
	g.mu.Lock()
	m := g.series[kind]
	if m == nil {
		m = make(map[int]int64)
		g.series[kind] = m
	}
	m[bin]++
	if label != "" {
		g.errs[label]++
	}
	g.mu.Unlock()
}

// GroupStats is a snapshot of a group's counters.
type GroupStats struct {
	Clients   int              `json:"clients"`
	Connected int64            `json:"connected"`
	Joined    int64            `json:"joined"`
	Counters  map[string]int64 `json:"counters"`
	Errors    map[string]int64 `json:"errors,omitempty"`
}

func (g *group) stats() GroupStats {
	s := GroupStats{
		Clients:   len(g.clients),
		Connected: g.connected.Load(),
		Joined:    g.joined.Load(),
		Counters:  make(map[string]int64, numCounters),
	}
	for i := range g.ctr {
		if v := g.ctr[i].Load(); v != 0 {
			s.Counters[counterNames[i]] = v
		}
	}
	g.mu.Lock()
	if len(g.errs) > 0 {
		s.Errors = make(map[string]int64, len(g.errs))
		for k, v := range g.errs {
			s.Errors[k] = v
		}
	}
	g.mu.Unlock()
	return s
}

// Merge adds o into s.
func (s *GroupStats) Merge(o GroupStats) {
	s.Clients += o.Clients
	s.Connected += o.Connected
	s.Joined += o.Joined
	if s.Counters == nil {
		s.Counters = make(map[string]int64)
	}
	for k, v := range o.Counters {
		s.Counters[k] += v
	}
	for k, v := range o.Errors {
		if s.Errors == nil {
			s.Errors = make(map[string]int64)
		}
		s.Errors[k] += v
	}
}

// ErrorTotal sums the labelled errors, leaving out the closes the server
// announced with a restart or retry code ("closed_*").
func (s GroupStats) ErrorTotal() int64 { return sumErrors(s.Errors) }

// ErrorSummary formats the labelled errors, largest first.
func (s GroupStats) ErrorSummary() string {
	type kv struct {
		k string
		v int64
	}
	var list []kv
	for k, v := range s.Errors {
		list = append(list, kv{k, v})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].v > list[j].v || list[i].v == list[j].v && list[i].k < list[j].k })
	out := ""
	for i, e := range list {
		if i > 0 {
			out += " "
		}
		out += e.k + "=" + strconv.FormatInt(e.v, 10)
	}
	if out == "" {
		return "-"
	}
	return out
}

// MsgAgg aggregates one message's deliveries.
type MsgAgg struct {
	Topic int    `json:"t"`
	Seq   uint32 `json:"s"`
	N     int64  `json:"n"`
	MaxUS int64  `json:"m"`
}

// GroupResult is what a worker reports for a group at the end of a run.
type GroupResult struct {
	Stats   GroupStats               `json:"stats"`
	Latency *Histogram               `json:"latency"`
	Series  map[string]map[int]int64 `json:"series"`
	// Lost counts messages delivered to someone (or acknowledged to the
	// publisher) but never received by a client that was subscribed.
	Lost int64 `json:"lost"`
	// NoMessages counts client topic subscriptions that received nothing.
	NoMessages int64 `json:"no_messages"`
	// Receivers counts subscribing clients that received at least one
	// message (whether or not they were joined at the end).
	Receivers int64 `json:"receivers"`
	// Affected counts clients disconnected after the mark; Rejoin holds
	// each one's time from the mark to being fully joined again (ms, -1 if
	// never), Outage its time from disconnect to rejoin.
	Affected int       `json:"affected"`
	Rejoin   []float64 `json:"rejoin_ms,omitempty"`
	Outage   []float64 `json:"outage_ms,omitempty"`
	PerMsg   []MsgAgg  `json:"per_msg,omitempty"`
}

// Merge adds o into r.
func (r *GroupResult) Merge(o *GroupResult) {
	r.Stats.Merge(o.Stats)
	if r.Latency == nil {
		r.Latency = &Histogram{}
	}
	r.Latency.Merge(o.Latency)
	if r.Series == nil {
		r.Series = make(map[string]map[int]int64)
	}
	for k, m := range o.Series {
		if r.Series[k] == nil {
			r.Series[k] = make(map[int]int64)
		}
		for b, v := range m {
			r.Series[k][b] += v
		}
	}
	r.Lost += o.Lost
	r.NoMessages += o.NoMessages
	r.Receivers += o.Receivers
	r.Affected += o.Affected
	r.Rejoin = append(r.Rejoin, o.Rejoin...)
	r.Outage = append(r.Outage, o.Outage...)
	r.PerMsg = append(r.PerMsg, o.PerMsg...)
}

// pubStop stops a publisher group's loops without disconnecting it: the
// loops watch pubCtx.
func (g *group) pubStop() {
	g.pubOnce.Do(func() {
		if g.pubCancel != nil {
			g.pubCancel()
		}
	})
}
