package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"
)

func init() {
	Register(&Scenario{
		Name:    "storm",
		Summary: "K joined clients and a publisher through a server kill, a drain, a rolling restart; per reconnect policy",
		Targets: []string{TargetHearth, TargetGorilla, TargetSocketIO},
		Run:     runStorm,
	})
}

// Storm events.
const (
	EventKill    = "kill"    // SIGKILL the server, start it again on the same address
	EventDrain   = "drain"   // start a second server, SIGTERM the first: it drains onto the second
	EventRolling = "rolling" // three nodes on Postgres; SIGTERM node 1, then start it again
)

// stormPhase is one event under one client policy.
type stormPhase struct {
	Target   string `json:"target"`
	Event    string `json:"event"`
	Policy   string `json:"policy"`
	Clients  int    `json:"clients"`
	Affected int    `json:"affected"`
	// Times from the event (ms) until 50, 99 and 100% of the affected
	// clients were joined again; null when not reached.
	Rejoin50  Float `json:"rejoin_50_ms"`
	Rejoin99  Float `json:"rejoin_99_ms"`
	Rejoin100 Float `json:"rejoin_100_ms"`
	// NotRejoined counts affected clients still away at the end.
	NotRejoined int `json:"not_rejoined"`
	// Outage is each client's own time from disconnect to rejoined.
	OutageP50 Float `json:"outage_p50_ms"`
	OutageP99 Float `json:"outage_p99_ms"`
	OutageMax Float `json:"outage_max_ms"`
	// PeakAccept is the most successful upgrades the clients saw in any one
	// second after the event; PeakAccept100 the most in any 100 ms, per second.
	PeakAccept    float64 `json:"peak_accept_per_sec"`
	PeakAccept100 float64 `json:"peak_accept_100ms_per_sec"`
	// PeakRejoin is the most clients that got joined again in any one
	// second: the admitted work (an upgrade the server then sheds with 1013
	// counts as a connect, not a rejoin).
	PeakRejoin    float64          `json:"peak_rejoin_per_sec"`
	Shed          int64            `json:"shed"`
	ClientErrors  int64            `json:"client_errors"`
	Errors        map[string]int64 `json:"errors"`
	Published     int64            `json:"published"`
	Received      int64            `json:"received"`
	Lost          int64            `json:"lost"`
	Duplicates    int64            `json:"duplicates"`
	Recovered     int64            `json:"recovered"`
	NotRecovered  int64            `json:"not_recovered"`
	RestartMS     Float            `json:"restart_ms"`
	ServerPeakCPU float64          `json:"server_peak_cpu_pct"`
	ServerPeakRSS float64          `json:"server_peak_rss_mib"`
	ServerCrashed bool             `json:"server_crashed"`
	// Unsettled: deliveries were still arriving a minute after publishing
	// stopped; what had not arrived counts as lost.
	Unsettled     bool    `json:"unsettled,omitempty"`
	ClientPeakCPU float64 `json:"client_peak_cpu_pct"`
	ClientPeakRSS float64 `json:"client_peak_rss_mib"`

	rejoin  []float64
	connect [][2]float64
}

// runStorm reads Clients (K, default 15,000), Topics (default 50),
// Rate (publisher, default 20 msg/s), Size, Warmup (default 5 s), Events
// (default kill, drain, and rolling when DatabaseURL is set), Policies
// (default hearth, phoenix, socketio), EventTimeout (default 90 s; for the
// expired event, the measured window, default 20 s),
// DrainTimeout (default 45 s), ConnectRate (default 3,000/s), NoRecover.
// Each event runs once per policy, from a fresh server and fresh clients.
func runStorm(ctx context.Context, env *Env) (*Report, error) {
	o := env.Opts
	k := pick(o.Clients, 15000, 30, o.Smoke)
	topics := pick(o.Topics, 50, 4, o.Smoke)
	rate := pick(o.Rate, 20.0, 10.0, o.Smoke)
	size := pick(o.Size, 64, 64, o.Smoke)
	warmup := pick(o.Warmup, 5*time.Second, time.Second, o.Smoke)
	evTimeout := pick(o.EventTimeout, 90*time.Second, 30*time.Second, o.Smoke)
	drainTimeout := pick(o.DrainTimeout, 45*time.Second, 40*time.Second, o.Smoke)
	if topics > maxChannels {
		return nil, fmt.Errorf("bench: the storm publisher joins every topic: at most %d topics (Phoenix's channel limit per socket)", maxChannels)
	}
	events := o.Events
	if len(events) == 0 {
		events = []string{EventKill, EventDrain}
		if o.DatabaseURL != "" {
			events = append(events, EventRolling)
		}
	}
	policies := o.Policies
	if len(policies) == 0 {
		policies = []string{"hearth", "phoenix", "socketio"}
	}
	for _, p := range policies {
		if _, err := PolicyByName(p); err != nil {
			return nil, err
		}
	}
	for _, ev := range events {
		switch ev {
		case EventKill, EventDrain, EventExpired:
		case EventRolling:
			if o.DatabaseURL == "" {
				return nil, errors.New("bench: the rolling event runs three nodes on Postgres: pass --database-url")
			}
		default:
			return nil, fmt.Errorf("bench: unknown storm event %q (want kill, drain, rolling or expired)", ev)
		}
	}
	rep := &Report{Params: map[string]any{
		"clients": k, "topics": topics, "rate": rate, "size": size, "warmup_s": warmup.Seconds(),
		"events": events, "policies": policies, "event_timeout_s": evTimeout.Seconds(), "recover": !o.NoRecover,
		"database": o.DatabaseURL != "",
	}}
	tab := &Table{
		Title: fmt.Sprintf("storm: %d clients on %d topics, a publisher at %g msg/s", k, topics, rate),
		Header: []string{"target", "event", "policy", "affected", "server back", "50% back", "99% back", "100% back", "outage p99",
			"peak conn/s", "peak rejoin/s", "shed", "client errors", "lost", "srv cpu peak", "srv rss peak", "crash"},
	}
	rep.Tables = append(rep.Tables, tab)
	var phases []*stormPhase
	var expired []*expiredPhase // the expired event (scenario_storm_expired.go)
	expWindow := pick(o.EventTimeout, 20*time.Second, 5*time.Second, o.Smoke)
	expTab := expiredTable(k, expWindow)
	var firstErr error
	for _, kind := range o.Targets {
		for _, ev := range events {
			for _, pol := range policies {
				if ev == EventExpired {
					ph, err := stormExpiredOne(ctx, env, kind, pol, k, expWindow)
					if ph != nil {
						expired = append(expired, ph)
						ph.row(expTab)
					}
					if err != nil {
						firstErr = fmt.Errorf("storm %s/%s/%s: %w", kind, ev, pol, err)
						break
					}
					continue
				}
				ph, err := stormOne(ctx, env, kind, ev, pol, k, topics, rate, size, warmup, evTimeout, drainTimeout)
				if ph != nil {
					phases = append(phases, ph)
					if ph.Unsettled {
						rep.Notes = append(rep.Notes, fmt.Sprintf("%s/%s/%s: deliveries were still arriving %v after publishing stopped; what had not arrived counts as lost", kind, ev, pol, settleLimit))
					}
					crash := "no"
					if ph.ServerCrashed {
						crash = "YES"
					}
					tab.Add(kind, ev, pol, fint(int64(ph.Affected)), fms(float64(ph.RestartMS)), fms(float64(ph.Rejoin50)), fms(float64(ph.Rejoin99)), fms(float64(ph.Rejoin100)),
						fms(float64(ph.OutageP99)), fnum(ph.PeakAccept), fnum(ph.PeakRejoin), fint(ph.Shed), fint(ph.ClientErrors), fint(ph.Lost),
						fmt.Sprintf("%.0f%%", ph.ServerPeakCPU), fmib(ph.ServerPeakRSS), crash)
				}
				if err != nil {
					firstErr = fmt.Errorf("storm %s/%s/%s: %w", kind, ev, pol, err)
					break
				}
			}
			if firstErr != nil {
				break
			}
		}
		if firstErr != nil {
			break
		}
	}
	rep.Results = phases
	if len(expired) > 0 {
		rep.Results = map[string]any{"phases": phases, "expired": expired}
		rep.Tables = append(rep.Tables, expTab)
	}
	errTab := &Table{Title: "storm: what the clients saw (counts by kind)", Header: []string{"target", "event", "policy", "errors and closes"}}
	for _, ph := range phases {
		s := GroupStats{Errors: ph.Errors}
		errTab.Add(ph.Target, ph.Event, ph.Policy, s.ErrorSummary())
	}
	rep.Tables = append(rep.Tables, errTab)
	var chartEvents []string
	for _, ev := range events {
		if ev != EventExpired {
			chartEvents = append(chartEvents, ev)
		}
	}
	if len(chartEvents) == 0 {
		rep.Tables = []*Table{expTab} // only the expired event ran
	} else {
		rep.Charts = stormCharts(o.Targets, chartEvents, policies, phases)
	}
	return rep, firstErr
}

func stormCharts(targets, events, policies []string, phases []*stormPhase) []*Chart {
	var charts []*Chart
	multi := len(targets) > 1
	for _, kind := range targets {
		for _, ev := range events {
			title := ev
			if multi {
				title = kind + " " + ev
			}
			cdf := &Chart{Title: "Clients joined again after the " + title, XLabel: "seconds after the event", YLabel: "fraction of affected clients"}
			rate := &Chart{Title: "Successful connects per second around the " + title, XLabel: "seconds after the event", YLabel: "connects/s (100 ms bins)"}
			for _, ph := range phases {
				if ph.Target != kind || ph.Event != ev {
					continue
				}
				cdf.Lines = append(cdf.Lines, Series{Name: ph.Policy, Points: cdfPoints(ph.rejoin, 0.001)})
				rate.Lines = append(rate.Lines, Series{Name: ph.Policy, Points: ph.connect})
			}
			if len(cdf.Lines) > 0 {
				charts = append(charts, cdf, rate)
			}
		}
	}
	var cats []string
	for _, kind := range targets {
		for _, ev := range events {
			if multi {
				cats = append(cats, kind+" "+ev)
			} else {
				cats = append(cats, ev)
			}
		}
	}
	peak := &Chart{Title: "Peak connects per second after the event (1 s window)", YLabel: "connects/s", Categories: cats}
	back := &Chart{Title: "Time until 99% of the affected clients were joined again", YLabel: "seconds", Categories: cats}
	for _, pol := range policies {
		ps, bs := BarSeries{Name: pol}, BarSeries{Name: pol}
		for _, kind := range targets {
			for _, ev := range events {
				v, b := math.NaN(), math.NaN()
				for _, ph := range phases {
					if ph.Target == kind && ph.Event == ev && ph.Policy == pol {
						v, b = ph.PeakAccept, float64(ph.Rejoin99)/1000
					}
				}
				ps.Values, bs.Values = append(ps.Values, Float(v)), append(bs.Values, Float(b))
			}
		}
		peak.Bars, back.Bars = append(peak.Bars, ps), append(back.Bars, bs)
	}
	return append(charts, peak, back)
}

// stormOne runs one event with one client policy.
func stormOne(ctx context.Context, env *Env, kind, ev, pol string, k, topics int, rate float64, size int,
	warmup, evTimeout, drainTimeout time.Duration) (*stormPhase, error) {
	o := env.Opts
	db := ""
	if ev == EventRolling || o.DatabaseURL != "" && kind == TargetHearth {
		db = o.DatabaseURL
	}
	if ev == EventRolling && kind == TargetGorilla {
		return nil, errors.New("bench: the gorilla peer has no cluster mode for a rolling restart")
	}
	t, err := env.Target(ctx, kind, db)
	if err != nil {
		return nil, err
	}
	if ev != EventKill {
		// The clients come back over the server's drain window.
		w := env.drainWindow(kind)
		if w == 0 && kind == TargetHearth {
			w = 30 * time.Second // hearth serve's default
		}
		evTimeout += w
		drainTimeout = max(drainTimeout, w+15*time.Second)
	}
	nodes := 1
	if ev == EventRolling {
		nodes = 3
	}
	servers, addrs, err := startServers(ctx, t, nodes)
	if err != nil {
		return nil, err
	}
	var smu sync.Mutex
	all := append([]*Server(nil), servers...) // every process of the phase, for usage and crash checks
	intended := map[*Server]bool{}            // processes the tool stopped on purpose
	defer func() {
		smu.Lock()
		defer smu.Unlock()
		stopServers(all)
	}()

	subAddrs, spread := addrs, nodes
	if ev == EventDrain {
		// The replacement listens on a second address behind the same
		// "load balancer" (the clients' failover list); it is started just
		// before the old server is told to drain.
		standby, err := FreeAddr()
		if err != nil {
			return nil, err
		}
		subAddrs, spread = []string{addrs[0], standby}, 1
	}
	fleet, err := env.Fleet(k + 1)
	if err != nil {
		return nil, err
	}
	defer fleet.Close()
	epoch := env.Epoch.UnixNano()
	connRate := o.ConnectRate
	if connRate == 0 {
		connRate = defaultConnectRate
	}
	recov := !o.NoRecover && kind == TargetHearth
	label := fmt.Sprintf("storm %s %s %s", kind, ev, pol)
	sub := GroupSpec{
		Name: "subs", Proto: t.Proto(), Addrs: subAddrs, Spread: spread, Failover: true, Policy: pol,
		Topics: topicNames(runTopicPrefix("room:storm"), topics), TopicsPerClient: 1, Count: k, SourceIPs: env.SourceIPs(k),
		ConnectRate: connRate, HeartbeatMS: env.heartbeatMS(), Recover: recov, EpochNS: epoch,
	}
	p := env.progress(label+" connect", fleet, joinedLine(int64(k), "subs"))
	err = fleet.Start(sub)
	if err == nil {
		err = waitJoined(ctx, fleet, int64(k), 10*time.Minute, "subs")
	}
	p.done()
	if err != nil {
		return nil, err
	}
	pub := GroupSpec{
		Name: "pubs", Proto: t.Proto(), Addrs: subAddrs[:1], Failover: true, Policy: "hearth",
		Topics: sub.Topics, Count: 1, HeartbeatMS: env.heartbeatMS(), Recover: recov, EpochNS: epoch,
		Publish: &PublishSpec{Total: 1, Rate: rate, Size: size},
	}
	if ev == EventDrain {
		pub.Addrs = subAddrs
	}
	if err := fleet.Start(pub); err != nil {
		return nil, err
	}
	if err := waitJoined(ctx, fleet, 1, time.Minute, "pubs"); err != nil {
		return nil, err
	}
	if err := sleepCtx(ctx, warmup); err != nil {
		return nil, err
	}

	ph := &stormPhase{Target: kind, Event: ev, Policy: pol, Clients: k, RestartMS: Float(math.NaN())}
	// The event. done is closed when the server side of it is over (the
	// killed server is back, the drained one has exited).
	done := make(chan error, 1)
	var mark time.Time
	switch ev {
	case EventKill:
		mark = time.Now()
		if err := fleet.Mark("", mark); err != nil {
			return nil, err
		}
		smu.Lock()
		intended[servers[0]] = true
		smu.Unlock()
		servers[0].Kill()
		go func() {
			srv, err := t.Start(ctx, 0, addrs[0])
			if err == nil {
				ph.RestartMS = Float(float64(time.Since(mark).Microseconds()) / 1000)
				smu.Lock()
				all = append(all, srv)
				smu.Unlock()
			}
			done <- err
		}()
	case EventDrain:
		srv, err := t.Start(ctx, 1, subAddrs[1])
		if err != nil {
			return nil, err
		}
		smu.Lock()
		all = append(all, srv)
		intended[servers[0]] = true
		smu.Unlock()
		mark = time.Now()
		if err := fleet.Mark("", mark); err != nil {
			return nil, err
		}
		go func() {
			if !servers[0].Terminate(drainTimeout) {
				done <- fmt.Errorf("bench: the server did not exit within %v of SIGTERM (killed)", drainTimeout)
				return
			}
			done <- nil
		}()
	case EventRolling:
		smu.Lock()
		intended[servers[1]] = true
		smu.Unlock()
		mark = time.Now()
		if err := fleet.Mark("", mark); err != nil {
			return nil, err
		}
		go func() {
			if !servers[1].Terminate(drainTimeout) {
				done <- fmt.Errorf("bench: node 1 did not exit within %v of SIGTERM (killed)", drainTimeout)
				return
			}
			srv, err := t.Start(ctx, 1, addrs[1])
			if err == nil {
				ph.RestartMS = Float(float64(time.Since(mark).Microseconds()) / 1000)
				smu.Lock()
				all = append(all, srv)
				smu.Unlock()
			}
			done <- err
		}()
	}

	// Wait for the server side to finish and every client to be back.
	p = env.progress(label+" event", fleet, joinedLine(int64(k), "subs"))
	deadline := time.Now().Add(evTimeout)
	var evErr error
	evDone := false
	for {
		if !evDone {
			select {
			case evErr = <-done:
				evDone = true
			default:
			}
		}
		st, err := fleet.Stats()
		if err != nil {
			p.done()
			return nil, err
		}
		if evDone && st["subs"].Joined >= int64(k) && time.Since(mark) > time.Second {
			break
		}
		if time.Now().After(deadline) {
			break
		}
		if err := sleepCtx(ctx, 100*time.Millisecond); err != nil {
			p.done()
			return nil, err
		}
	}
	p.done()
	if evDone && evErr != nil {
		return nil, evErr
	}
	// A little more publishing after everyone is back, then the accounts.
	if err := sleepCtx(ctx, 2*time.Second); err != nil {
		return nil, err
	}
	end := time.Now()
	res, settled, err := finishAll(ctx, fleet, "subs", "pubs")
	if err != nil {
		return nil, err
	}
	ph.Unsettled = !settled
	sr, pr := res["subs"], res["pubs"]
	ph.Affected = sr.Affected
	ph.rejoin = sr.Rejoin
	for _, v := range sr.Rejoin {
		if v < 0 {
			ph.NotRejoined++
		}
	}
	ph.Rejoin50, ph.Rejoin99, ph.Rejoin100 = Float(quantileOf(sr.Rejoin, 0.5)), Float(quantileOf(sr.Rejoin, 0.99)), Float(quantileOf(sr.Rejoin, 1))
	ph.OutageP50, ph.OutageP99, ph.OutageMax = Float(quantileOf(sr.Outage, 0.5)), Float(quantileOf(sr.Outage, 0.99)), Float(quantileOf(sr.Outage, 1))
	from, to := mark.Sub(env.Epoch).Seconds(), end.Sub(env.Epoch).Seconds()
	conns := sr.Series[seriesConnect]
	ph.PeakAccept = peakRate(conns, from, to)
	ph.PeakRejoin = peakRate(sr.Series[seriesJoined], from, to)
	for _, pt := range seriesPoints(conns, from, to, 1) {
		ph.PeakAccept100 = max(ph.PeakAccept100, pt[1])
	}
	for _, pt := range seriesPoints(conns, from-1, to, 1) {
		ph.connect = append(ph.connect, [2]float64{pt[0] - from, pt[1]})
	}
	ph.ClientPeakCPU, ph.ClientPeakRSS = fleet.ClientUsage()
	ph.Shed = sr.Stats.Counters["shed"]
	ph.Errors = sr.Stats.Errors
	ph.ClientErrors = sr.Stats.ErrorTotal()
	ph.Published = pr.Stats.Counters["published"]
	ph.Received = sr.Stats.Counters["received"]
	ph.Lost = sr.Lost
	ph.Duplicates = sr.Stats.Counters["duplicates"]
	ph.Recovered, ph.NotRecovered = sr.Stats.Counters["recovered"], sr.Stats.Counters["not_recovered"]
	smu.Lock()
	for _, srv := range all {
		_, cpu, rss := srv.Usage()
		ph.ServerPeakCPU = max(ph.ServerPeakCPU, cpu)
		ph.ServerPeakRSS = max(ph.ServerPeakRSS, rss)
		if srv.Exited() && !intended[srv] {
			ph.ServerCrashed = true
		}
	}
	smu.Unlock()
	if ph.NotRejoined > 0 {
		return ph, fmt.Errorf("bench: %d of %d affected clients were not joined again within %v (errors: %s)",
			ph.NotRejoined, ph.Affected, evTimeout, strings.TrimSpace(sr.Stats.ErrorSummary()))
	}
	return ph, nil
}
