package bench

import (
	"context"
	"fmt"
	"math"
	"time"
)

func init() {
	Register(&Scenario{
		Name:    "fanout",
		Summary: "one publisher, N subscribers on one topic: latency to the last subscriber, deliveries/s",
		Targets: []string{TargetHearth, TargetGorilla, TargetSocketIO, TargetLongPoll, TargetSocketIOPolling},
		Run:     runFanout,
	})
}

// runFanout reads Clients (subscribers, default 10,000), Rate or Rates
// (messages per second, default 2), Size, Duration (default 30 s).
func runFanout(ctx context.Context, env *Env) (*Report, error) {
	o := env.Opts
	subs := pick(o.Clients, 10000, 20, o.Smoke)
	rates := env.rates(2, 5)
	size := pick(o.Size, 64, 64, o.Smoke)
	dur := pick(o.Duration, 30*time.Second, 3*time.Second, o.Smoke)
	rep := &Report{Params: map[string]any{"subscribers": subs, "rates": rates, "size": size, "seconds": dur.Seconds(), "compress": o.Compress}}
	tab := &Table{
		Title:  fmt.Sprintf("fanout: 1 publisher, %d subscribers on one topic, %v, %d-byte payloads%s", subs, dur, size, compressTitle(o.Compress)),
		Header: []string{"target", "msg/s", "msgs", "deliveries/s", "backlog", "last-sub p50", "last-sub p99", "last-sub max", "all p50", "all p99", "lost", "errors", "srv cpu peak", "srv rss peak", "client cpu peak", "srv bytes/delivery"},
	}
	rep.Tables = append(rep.Tables, tab)
	runs, err := sweep(o.Targets, rates, "fanout", func(kind string, rate float64) (*pubsubRun, error) {
		return fanoutOne(ctx, env, kind, subs, rate, size, dur)
	})
	sweeping := len(rates) > 1
	cdf := &Chart{Title: "Latency to the last subscriber (per message)", XLabel: "ms (log)", YLabel: "fraction of messages", LogX: true}
	for _, run := range runs {
		tab.Add(run.Target, fnum(run.RatePerPub), fint(run.Published), fnum(run.DeliveriesPerSec), fint(run.Backlog), fms(float64(run.LastSubP50)), fms(float64(run.LastSubP99)), fms(float64(run.LastSubMax)),
			fms(float64(run.P50)), fms(float64(run.P99)), fint(run.Lost), fint(sumErrors(run.Errors)), fmt.Sprintf("%.0f%%", run.ServerPeakCPU), fmib(run.ServerPeakRSS), fmt.Sprintf("%.0f%%", run.ClientPeakCPU), fnum(run.WrittenPerDelivery))
		cdf.Lines = append(cdf.Lines, Series{Name: runLabel(run, sweeping), Points: run.lastSb.CDF()})
		if run.IncompleteMsgs > 0 {
			rep.Notes = append(rep.Notes, fmt.Sprintf("%s: %d of %d messages did not reach every subscriber", runLabel(run, true), run.IncompleteMsgs, run.IncompleteMsgs+run.CompleteMsgs))
		}
	}
	rep.Results = runs
	rep.Charts = append(rep.Charts, cdf)
	if sweeping {
		rep.Charts = append(rep.Charts, sweepCharts(runs, o.Targets, func(r *pubsubRun) float64 { return r.RatePerPub },
			func(r *pubsubRun) float64 { return float64(r.LastSubP99) }, "Last-subscriber p99")...)
	} else {
		bars := &Chart{Title: "Deliveries per second and last-subscriber p99", YLabel: "value", Categories: []string{"deliveries/s (÷100)", "last-sub p99 (ms)"}}
		for _, r := range runs {
			bars.Bars = append(bars.Bars, BarSeries{Name: r.Target, Values: []Float{Float(r.DeliveriesPerSec / 100), r.LastSubP99}})
		}
		rep.Charts = append(rep.Charts, bars)
	}
	addSweepRatios(rep, runs, rates)
	unsettledNotes(rep, runs)
	return rep, err
}

func fanoutOne(ctx context.Context, env *Env, kind string, subs int, rate float64, size int, dur time.Duration) (*pubsubRun, error) {
	t, err := env.Target(ctx, kind, "")
	if err != nil {
		return nil, err
	}
	servers, addrs, err := startServers(ctx, t, 1)
	if err != nil {
		return nil, err
	}
	defer stopServers(servers)
	return runPubsub(ctx, env, pubsubSetup{
		kind: kind, subAddrs: addrs, pubAddrs: addrs, topics: []string{"room:fanout"}, subs: subs, tpc: 1,
		pubs: 1, rate: rate, size: size, dur: dur, perMessage: true, servers: servers, label: "fanout " + kind, proto: t.Proto(),
		transport: t.Transport(),
	})
}

func sumErrors(m map[string]int64) int64 {
	var n int64
	for k, v := range m {
		if len(k) > 7 && k[:7] == "closed_" {
			continue // announced closes are not errors
		}
		n += v
	}
	return n
}

// addRatios adds a table comparing the first target with each peer. Every
// ratio reads "how many times better the first target is": above 1 it is
// ahead, below 1 behind.
func addRatios(rep *Report, runs []*pubsubRun) {
	if len(runs) < 2 {
		return
	}
	base := runs[0]
	b := base.Target
	tab := &Table{
		Title:  fmt.Sprintf("ratios: %s against each peer (above 1x: %s is ahead)", b, b),
		Header: []string{"peer", "deliveries/s " + b + "/peer", "p50 peer/" + b, "p99 peer/" + b, "last-sub p99 peer/" + b, "server CPU peer/" + b, "server RSS peer/" + b},
	}
	for _, r := range runs[1:] {
		lp := "-"
		if base.LastSubP99 > 0 && !math.IsNaN(float64(r.LastSubP99)) {
			lp = fratio(float64(r.LastSubP99), float64(base.LastSubP99))
		}
		tab.Add(r.Target, fratio(base.DeliveriesPerSec, r.DeliveriesPerSec), fratio(float64(r.P50), float64(base.P50)),
			fratio(float64(r.P99), float64(base.P99)), lp, fratio(r.ServerPeakCPU, base.ServerPeakCPU), fratio(r.ServerPeakRSS, base.ServerPeakRSS))
	}
	rep.Tables = append(rep.Tables, tab)
}
