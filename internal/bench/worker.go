package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// The worker protocol: the coordinator writes one JSON request per line on
// the worker's stdin and reads one JSON response per line on its stdout, in
// order. A worker holds any number of client groups.
type request struct {
	Op        string             `json:"op"`
	Group     string             `json:"group,omitempty"`
	Spec      *GroupSpec         `json:"spec,omitempty"`
	MarkNS    int64              `json:"mark_ns,omitempty"`
	Last      map[string]uint32  `json:"last,omitempty"`
	Delivered map[string]*bitset `json:"delivered,omitempty"`
}

type response struct {
	Err       string                 `json:"err,omitempty"`
	Stats     map[string]GroupStats  `json:"stats,omitempty"`
	Result    *GroupResult           `json:"result,omitempty"`
	Last      map[string]uint32      `json:"last,omitempty"`
	Delivered map[string]*bitset     `json:"delivered,omitempty"`
	Extra     map[string]interface{} `json:"extra,omitempty"`
}

// Worker ops.
const (
	opStart    = "start"    // start a group (Spec)
	opStats    = "stats"    // snapshot of every group
	opMark     = "mark"     // set the event mark (MarkNS) on a group, or all
	opStopPub  = "stoppub"  // stop the publishers; answer Last
	opCollect  = "collect"  // answer Delivered
	opFinish   = "finish"   // compute a group's result against Last and Delivered
	opStop     = "stop"     // disconnect a group's clients and drop it
	opShutdown = "shutdown" // stop everything and exit
)

// worker runs client groups for one process.
type worker struct {
	dial dialer

	mu     sync.Mutex
	groups map[string]*group
	deliv  map[string]*bitset // topic -> sequences seen delivered or acknowledged

	ctx    context.Context
	cancel context.CancelFunc
	tickWG sync.WaitGroup
}

func newWorker() *worker {
	w := &worker{
		dial:   dialer{timeout: 10 * time.Second},
		groups: make(map[string]*group),
		deliv:  make(map[string]*bitset),
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.tickWG.Add(1)
	go w.tickLoop()
	return w
}

func (w *worker) delivered(topic string) *bitset {
	w.mu.Lock()
	defer w.mu.Unlock()
	b := w.deliv[topic]
	if b == nil {
		b = &bitset{}
		w.deliv[topic] = b
	}
	return b
}

func (g *group) perMessage(shard int, topic int, seq uint32, lat time.Duration) {
	k := uint64(topic)<<32 | uint64(seq)
	us := lat.Microseconds()
	p := &g.pm[shard%pmShards]
	p.mu.Lock()
	if p.m == nil {
		p.m = make(map[uint64]*MsgAgg)
	}
	a := p.m[k]
	if a == nil {
		a = &MsgAgg{Topic: topic, Seq: seq}
		p.m[k] = a
	}
	a.N++
	a.MaxUS = max(a.MaxUS, us)
	p.mu.Unlock()
}

// tickLoop drives heartbeats and reply timeouts for every client, spread
// over each second.
func (w *worker) tickLoop() {
	defer w.tickWG.Done()
	tk := time.NewTicker(time.Second)
	defer tk.Stop()
	for {
		select {
		case <-w.ctx.Done():
			return
		case now := <-tk.C:
			w.mu.Lock()
			groups := make([]*group, 0, len(w.groups))
			for _, g := range w.groups {
				groups = append(groups, g)
			}
			w.mu.Unlock()
			for _, g := range groups {
				hb := time.Duration(g.spec.HeartbeatMS) * time.Millisecond
				if hb <= 0 {
					hb = 30 * time.Second
				}
				for _, c := range g.clients {
					c.tick(now, hb)
				}
			}
		}
	}
}

func (w *worker) start(spec GroupSpec) error {
	if err := spec.validate(); err != nil {
		return err
	}
	pol, _ := PolicyByName(spec.Policy)
	g := &group{
		spec:    spec,
		w:       w,
		policy:  pol,
		topicIx: make(map[string]int, len(spec.Topics)),
		errs:    make(map[string]int64),
		series:  make(map[string]map[int]int64),
	}
	if spec.Auth != nil {
		g.auth = newTokenService(spec.Auth.Service)
	}
	for i, t := range spec.Topics {
		g.topicIx[t] = i
		g.deliv = append(g.deliv, w.delivered(t))
	}
	g.ctx, g.cancel = context.WithCancel(w.ctx)
	g.pubCtx, g.pubCancel = context.WithCancel(g.ctx)
	for i := range spec.Count {
		g.clients = append(g.clients, newClient(g, spec.First+i))
	}
	// Published only once complete: the tick loop reads g.clients.
	w.mu.Lock()
	if _, dup := w.groups[spec.Name]; dup {
		w.mu.Unlock()
		g.cancel()
		return fmt.Errorf("bench: group %s already running", spec.Name)
	}
	w.groups[spec.Name] = g
	w.mu.Unlock()
	// Ramp: each client waits for its turn from a limiter, then runs.
	var lim *rate.Limiter
	if spec.ConnectRate > 0 {
		lim = rate.NewLimiter(rate.Limit(spec.ConnectRate), max(1, int(spec.ConnectRate/20)))
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		for _, c := range g.clients {
			if lim != nil {
				if lim.Wait(g.ctx) != nil {
					return
				}
			}
			ready := make(chan struct{})
			close(ready)
			g.wg.Add(1)
			go func() {
				defer g.wg.Done()
				c.run(g.ctx, ready)
			}()
			if spec.Publish != nil {
				g.wg.Add(1)
				go func() {
					defer g.wg.Done()
					c.publishLoop(g.pubCtx)
				}()
			}
		}
	}()
	return nil
}

func (w *worker) group(name string) (*group, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	g := w.groups[name]
	if g == nil {
		return nil, fmt.Errorf("bench: no group %q", name)
	}
	return g, nil
}

// stopPublishers stops every publisher group's loop (its clients stay
// connected) and reports the last sequence written per topic.
func (w *worker) stopPublishers() map[string]uint32 {
	w.mu.Lock()
	var pubs []*group
	for _, g := range w.groups {
		if g.spec.Publish != nil {
			pubs = append(pubs, g)
		}
	}
	w.mu.Unlock()
	last := make(map[string]uint32)
	for _, g := range pubs {
		g.pubStop()
		for _, c := range g.clients {
			c.mu.Lock()
			for _, t := range c.topics {
				topic := g.spec.Topics[t.idx]
				last[topic] = max(last[topic], t.seq)
			}
			c.mu.Unlock()
		}
	}
	return last
}

// finish computes a group's result.
func (w *worker) finish(name string, last map[string]uint32, delivered map[string]*bitset) (*GroupResult, error) {
	g, err := w.group(name)
	if err != nil {
		return nil, err
	}
	r := &GroupResult{Stats: g.stats(), Latency: &Histogram{}}
	r.Latency.Merge(&g.lat)
	g.mu.Lock()
	r.Series = make(map[string]map[int]int64, len(g.series))
	for k, m := range g.series {
		cp := make(map[int]int64, len(m))
		for b, v := range m {
			cp[b] = v
		}
		r.Series[k] = cp
	}
	g.mu.Unlock()
	mark := g.markNS.Load()
	for _, c := range g.clients {
		c.mu.Lock()
		if g.spec.Publish == nil {
			for i := range c.topics {
				if c.topics[i].st.first != 0 {
					r.Receivers++
					break
				}
			}
			for i := range c.topics {
				t := &c.topics[i]
				topic := g.spec.Topics[t.idx]
				if last[topic] == 0 {
					continue
				}
				if t.st.first == 0 {
					r.NoMessages++
					continue
				}
				r.Lost += t.st.lost(last[topic], delivered[topic])
			}
		}
		if mark != 0 && c.markGen == mark {
			r.Affected++
			if c.rejoinAt != 0 {
				r.Rejoin = append(r.Rejoin, float64(c.rejoinAt-mark)/1e6)
				r.Outage = append(r.Outage, float64(c.rejoinAt-c.downAt)/1e6)
			} else {
				r.Rejoin = append(r.Rejoin, -1)
				r.Outage = append(r.Outage, -1)
			}
		}
		c.mu.Unlock()
	}
	if g.spec.PerMessage {
		merged := map[uint64]*MsgAgg{}
		for i := range g.pm {
			p := &g.pm[i]
			p.mu.Lock()
			for k, a := range p.m {
				m := merged[k]
				if m == nil {
					m = &MsgAgg{Topic: a.Topic, Seq: a.Seq}
					merged[k] = m
				}
				m.N += a.N
				m.MaxUS = max(m.MaxUS, a.MaxUS)
			}
			p.mu.Unlock()
		}
		for _, m := range merged {
			r.PerMsg = append(r.PerMsg, *m)
		}
	}
	return r, nil
}

// stop disconnects a group and forgets it.
func (w *worker) stop(name string) error {
	g, err := w.group(name)
	if err != nil {
		return err
	}
	g.cancel()
	g.wg.Wait()
	if g.auth != nil {
		g.auth.close()
	}
	w.mu.Lock()
	delete(w.groups, name)
	w.mu.Unlock()
	return nil
}

func (w *worker) shutdown() {
	w.mu.Lock()
	names := make([]string, 0, len(w.groups))
	for n := range w.groups {
		names = append(names, n)
	}
	w.mu.Unlock()
	for _, n := range names {
		_ = w.stop(n)
	}
	w.cancel()
	w.tickWG.Wait()
}

func (w *worker) handle(req *request) (resp response, exit bool) {
	var err error
	switch req.Op {
	case opStart:
		if req.Spec == nil {
			err = errors.New("bench: start without spec")
			break
		}
		err = w.start(*req.Spec)
	case opStats:
		resp.Stats = make(map[string]GroupStats)
		w.mu.Lock()
		for n, g := range w.groups {
			resp.Stats[n] = g.stats()
		}
		w.mu.Unlock()
	case opMark:
		w.mu.Lock()
		for n, g := range w.groups {
			if req.Group == "" || req.Group == n {
				g.markNS.Store(req.MarkNS)
			}
		}
		w.mu.Unlock()
	case opStopPub:
		resp.Last = w.stopPublishers()
	case opCollect:
		w.mu.Lock()
		resp.Delivered = make(map[string]*bitset, len(w.deliv))
		for k, v := range w.deliv {
			resp.Delivered[k] = v
		}
		w.mu.Unlock()
	case opFinish:
		resp.Result, err = w.finish(req.Group, req.Last, req.Delivered)
	case opStop:
		err = w.stop(req.Group)
	case opShutdown:
		w.shutdown()
		exit = true
	default:
		err = fmt.Errorf("bench: unknown worker op %q", req.Op)
	}
	if err != nil {
		resp.Err = err.Error()
	}
	return resp, exit
}

// ServeWorker runs a worker on a request stream: the hidden
// `hearth bench worker` mode reads its stdin and writes its stdout. It
// returns when told to shut down or when r ends.
func ServeWorker(r io.Reader, wr io.Writer) error {
	w := newWorker()
	defer w.shutdown()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 256<<20)
	enc := json.NewEncoder(wr)
	for sc.Scan() {
		var req request
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			return fmt.Errorf("bench: worker request: %w", err)
		}
		resp, exit := w.handle(&req)
		if err := enc.Encode(&resp); err != nil {
			return err
		}
		if exit {
			return nil
		}
	}
	return sc.Err()
}
