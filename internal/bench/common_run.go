package bench

import (
	"context"
	"fmt"
	"time"
)

// pubsubRun is one measured publish phase against one started target: the
// shape shared by fanout, throughput and cluster.
type pubsubRun struct {
	Target      string  `json:"target"`
	Subscribers int     `json:"subscribers"`
	Topics      int     `json:"topics"`
	Publishers  int     `json:"publishers"`
	RatePerPub  float64 `json:"rate_per_publisher"`
	Seconds     float64 `json:"seconds"`
	Published   int64   `json:"published"`
	Acked       int64   `json:"acked"`
	Received    int64   `json:"received"`
	Lost        int64   `json:"lost"`
	Duplicates  int64   `json:"duplicates"`
	Late        int64   `json:"late"`
	// PublishedPerSec counts messages sent per second; DeliveriesPerSec
	// counts messages received by subscribers per second while publishing
	// (Backlog is what still arrived after the publishers stopped).
	PublishedPerSec  float64 `json:"published_per_sec"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec"`
	Backlog          int64   `json:"backlog"`
	// Latency of every delivery (ms).
	P50 Float `json:"p50_ms"`
	P99 Float `json:"p99_ms"`
	Max Float `json:"max_ms"`
	// LastSub is, per message, the delay to its slowest subscriber (fanout).
	LastSubP50     Float            `json:"last_sub_p50_ms,omitempty"`
	LastSubP99     Float            `json:"last_sub_p99_ms,omitempty"`
	LastSubMax     Float            `json:"last_sub_max_ms,omitempty"`
	CompleteMsgs   int              `json:"complete_messages,omitempty"`
	IncompleteMsgs int              `json:"incomplete_messages,omitempty"`
	ServerPeakCPU  float64          `json:"server_peak_cpu_pct"`
	ClientPeakCPU  float64          `json:"client_peak_cpu_pct"`
	ClientPeakRSS  float64          `json:"client_peak_rss_mib"`
	ServerPeakRSS  float64          `json:"server_peak_rss_mib"`
	Errors         map[string]int64 `json:"errors"`
	// Unsettled says messages were still arriving settleLimit after the
	// publishers stopped: what had not arrived is counted as lost.
	Unsettled       bool `json:"unsettled,omitempty"`
	latency, lastSb *Histogram
	usage           []ProcSample

	// ServerWritten is what the servers wrote to their sockets from the
	// start of publishing until every delivery was in (/proc/PID/io
	// wchar), and WrittenPerDelivery that divided by the deliveries.
	ServerWritten      int64   `json:"server_written_bytes,omitempty"`
	WrittenPerDelivery float64 `json:"written_per_delivery,omitempty"`
	Compressed         bool    `json:"compressed,omitempty"` // --compress
}

// pubsubSetup describes the groups of a pubsub run.
type pubsubSetup struct {
	kind       string
	subAddrs   []string // where subscribers connect (spread over all)
	pubAddrs   []string // where publishers connect
	topics     []string
	subs       int
	tpc        int
	pubs       int
	rate       float64
	size       int
	warmup     time.Duration
	dur        time.Duration
	perMessage bool
	servers    []*Server
	label      string
	proto      string
	transport  string // the subscribers'; publishers use WebSockets
}

// runPubsub connects the subscribers, then the publishers, publishes for
// dur and measures.
func runPubsub(ctx context.Context, env *Env, s pubsubSetup) (*pubsubRun, error) {
	o := env.Opts
	fleet, err := env.Fleet(s.subs + s.pubs)
	if err != nil {
		return nil, err
	}
	defer fleet.Close()
	epoch := env.Epoch.UnixNano()
	connRate := o.ConnectRate
	if connRate == 0 {
		connRate = defaultConnectRate
	}
	sub := GroupSpec{
		Name: "subs", Proto: s.proto, Addrs: s.subAddrs, Policy: "hearth", Topics: s.topics,
		TopicsPerClient: s.tpc, Count: s.subs, SourceIPs: env.SourceIPs(s.subs), ConnectRate: connRate,
		HeartbeatMS: env.heartbeatMS(), PerMessage: s.perMessage, EpochNS: epoch, Deflate: o.Compress,
		Transport: s.transport,
	}
	p := env.progress(s.label+" connect", fleet, joinedLine(int64(s.subs), "subs"))
	if err := fleet.Start(sub); err != nil {
		p.done()
		return nil, err
	}
	err = waitJoined(ctx, fleet, int64(s.subs), 5*time.Minute, "subs")
	p.done()
	if err != nil {
		return nil, err
	}
	pub := GroupSpec{
		Name: "pubs", Proto: s.proto, Addrs: s.pubAddrs, Policy: "hearth", Topics: s.topics,
		Count: s.pubs, HeartbeatMS: env.heartbeatMS(), EpochNS: epoch, Deflate: o.Compress,
		Publish: &PublishSpec{Total: s.pubs, Rate: s.rate, Size: s.size},
	}
	if err := fleet.Start(pub); err != nil {
		return nil, err
	}
	if err := waitJoined(ctx, fleet, int64(s.pubs), time.Minute, "pubs"); err != nil {
		return nil, err
	}
	before, err := fleet.Stats()
	if err != nil {
		return nil, err
	}
	written0 := writtenBytes(s.servers)
	start := time.Now()
	p = env.progress(s.label+" publish", fleet, func(st map[string]GroupStats) (int64, int64, string) {
		el := time.Since(start)
		return int64(el / time.Second), int64((s.warmup + s.dur) / time.Second), fmt.Sprintf("s  pub %s  recv %s  err %d",
			fnum(float64(st["pubs"].Counters["published"])), fnum(float64(st["subs"].Counters["received"])), st["subs"].ErrorTotal()+st["pubs"].ErrorTotal())
	})
	err = sleepCtx(ctx, s.warmup+s.dur)
	p.done()
	if err != nil {
		return nil, err
	}
	secs := time.Since(start).Seconds()
	// What arrived while publishing, not the backlog drained afterwards: a
	// server that falls behind shows a lower rate than it was offered.
	after, err := fleet.Stats()
	if err != nil {
		return nil, err
	}
	inWindow := after["subs"].Counters["received"] - before["subs"].Counters["received"]
	pubWindow := after["pubs"].Counters["published"] - before["pubs"].Counters["published"]
	res, settled, err := finishAll(ctx, fleet, "subs", "pubs")
	if err != nil {
		return nil, err
	}
	written1 := writtenBytes(s.servers)
	sr, pr := res["subs"], res["pubs"]
	run := &pubsubRun{
		Target: s.kind, Subscribers: s.subs, Topics: len(s.topics), Publishers: s.pubs, RatePerPub: s.rate,
		Seconds: secs, Published: pr.Stats.Counters["published"], Acked: pr.Stats.Counters["pub_acked"],
		Received: sr.Stats.Counters["received"], Lost: sr.Lost, Duplicates: sr.Stats.Counters["duplicates"],
		Late: sr.Stats.Counters["late"], latency: hist(sr.Latency), lastSb: &Histogram{},
		Unsettled: !settled,
	}
	run.Errors = map[string]int64{}
	for k, v := range sr.Stats.Errors {
		run.Errors[k] += v
	}
	for k, v := range pr.Stats.Errors {
		run.Errors[k] += v
	}
	run.Compressed = o.Compress
	if written0 >= 0 && written1 >= 0 {
		run.ServerWritten = written1 - written0
		if run.Received > 0 {
			run.WrittenPerDelivery = float64(run.ServerWritten) / float64(run.Received)
		}
	}
	run.PublishedPerSec = float64(pubWindow) / secs
	run.DeliveriesPerSec = float64(inWindow) / secs
	run.Backlog = run.Received - inWindow
	run.P50, run.P99, run.Max = Float(run.latency.Quantile(0.5)), Float(run.latency.Quantile(0.99)), Float(run.latency.Quantile(1))
	if s.perMessage {
		merged := map[uint64]*MsgAgg{}
		for _, a := range sr.PerMsg {
			k := uint64(a.Topic)<<32 | uint64(a.Seq)
			m := merged[k]
			if m == nil {
				m = &MsgAgg{Topic: a.Topic, Seq: a.Seq}
				merged[k] = m
			}
			m.N += a.N
			m.MaxUS = max(m.MaxUS, a.MaxUS)
		}
		for _, m := range merged {
			if m.N >= int64(s.subs) {
				run.CompleteMsgs++
				run.lastSb.Record(time.Duration(m.MaxUS) * time.Microsecond)
			} else {
				run.IncompleteMsgs++
			}
		}
		run.LastSubP50, run.LastSubP99, run.LastSubMax = Float(run.lastSb.Quantile(0.5)), Float(run.lastSb.Quantile(0.99)), Float(run.lastSb.Quantile(1))
	}
	run.ClientPeakCPU, run.ClientPeakRSS = fleet.ClientUsage()
	for _, srv := range s.servers {
		samples, cpu, rss := srv.Usage()
		run.ServerPeakCPU = max(run.ServerPeakCPU, cpu)
		run.ServerPeakRSS = max(run.ServerPeakRSS, rss)
		run.usage = append(run.usage, samples...)
	}
	return run, nil
}

// startServers starts n nodes of a target on fresh loopback ports.
func startServers(ctx context.Context, t *Target, n int) ([]*Server, []string, error) {
	var servers []*Server
	var addrs []string
	for i := range n {
		addr, err := FreeAddr()
		if err != nil {
			stopServers(servers)
			return nil, nil, err
		}
		srv, err := t.Start(ctx, i, addr)
		if err != nil {
			stopServers(servers)
			return nil, nil, err
		}
		servers = append(servers, srv)
		addrs = append(addrs, addr)
	}
	return servers, addrs, nil
}

func stopServers(servers []*Server) {
	for _, s := range servers {
		if !s.Terminate(5 * time.Second) {
			continue
		}
	}
}

// sweep runs one(kind, rate) for every target and rate, in that order,
// stopping at the first error (the runs so far are returned with it).
func sweep(targets []string, rates []float64, name string, one func(kind string, rate float64) (*pubsubRun, error)) ([]*pubsubRun, error) {
	var runs []*pubsubRun
	for _, kind := range targets {
		for _, r := range rates {
			run, err := one(kind, r)
			if err != nil {
				return runs, fmt.Errorf("%s against %s at %g msg/s: %w", name, kind, r, err)
			}
			runs = append(runs, run)
		}
	}
	return runs, nil
}

// unsettledNotes explains lost counts that include messages still in flight.
func unsettledNotes(rep *Report, runs []*pubsubRun) {
	for _, r := range runs {
		if r.Unsettled {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s at %g msg/s per publisher: deliveries were still arriving %v after publishing stopped; "+
				"what had not arrived counts as lost", r.Target, r.RatePerPub, settleLimit))
		}
	}
}

// runLabel names a run in charts: the target, and the rate in a sweep.
func runLabel(r *pubsubRun, sweeping bool) string {
	if sweeping {
		return fmt.Sprintf("%s @%g/s", r.Target, r.RatePerPub)
	}
	return r.Target
}

// sweepCharts draws, for a sweep of rates, what each target delivered and
// its p99 against the offered rate.
func sweepCharts(runs []*pubsubRun, targets []string, offered func(*pubsubRun) float64, p99 func(*pubsubRun) float64, p99Name string) []*Chart {
	deliv := &Chart{Title: "Deliveries per second against the offered rate", XLabel: "offered messages/s", YLabel: "deliveries/s"}
	lat := &Chart{Title: p99Name + " against the offered rate", XLabel: "offered messages/s", YLabel: "ms"}
	for _, kind := range targets {
		d, l := Series{Name: kind}, Series{Name: kind}
		for _, r := range runs {
			if r.Target != kind {
				continue
			}
			d.Points = append(d.Points, [2]float64{offered(r), r.DeliveriesPerSec})
			l.Points = append(l.Points, [2]float64{offered(r), p99(r)})
		}
		deliv.Lines, lat.Lines = append(deliv.Lines, d), append(lat.Lines, l)
	}
	return []*Chart{deliv, lat}
}

// addSweepRatios adds ratio tables comparing the first target with each
// peer at every rate.
func addSweepRatios(rep *Report, runs []*pubsubRun, rates []float64) {
	for _, rate := range rates {
		var at []*pubsubRun
		for _, r := range runs {
			if r.RatePerPub == rate {
				at = append(at, r)
			}
		}
		n := len(rep.Tables)
		addRatios(rep, at)
		if len(rates) > 1 && len(rep.Tables) > n {
			rep.Tables[n].Title += fmt.Sprintf(" at %g msg/s per publisher", rate)
		}
	}
}
