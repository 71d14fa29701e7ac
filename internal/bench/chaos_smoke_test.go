package bench

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hearth-rt/hearth/internal/pgtest"
)

// TestSmokeChaos is CI's run of `hearth bench chaos --scenario
// deploy,node-kill,pg-failover,partition --smoke`: three nodes on their own database
// (pg-failover: on a private primary and synchronous standby; partition:
// node 1 in a network namespace, its Postgres traffic dropped) behind a
// real HAProxy, clients and the publisher only through it. Every scenario
// prints its line, and nothing is lost, duplicated or reordered. The
// deploy's clients are signed in at a token service and make no call to it
// during the deploy (TestSignedInClientsTokenCalls has the fetch-each
// strategy).
func TestSmokeChaos(t *testing.T) {
	opts := smokeOptions(t, TargetHearth)
	opts.DatabaseURL = pgtest.Database(t)
	opts.Chaos = []string{ChaosDeploy, ChaosNodeKill, ChaosPGFailover, ChaosPartition}
	opts.Policies = []string{"hearth"}
	var out bytes.Buffer
	opts.Stdout = &out
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	rep, err := Run(ctx, "chaos", opts)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	checkFiles(t, rep, "chaos")
	line := regexp.MustCompile(`(?m)^chaos (\S+) \(.*lost (\d+), duplicated (\d+), reordered (\d+)$`)
	seen := map[string]bool{}
	for _, m := range line.FindAllStringSubmatch(out.String(), -1) {
		seen[m[1]] = true
		if m[2] != "0" || m[3] != "0" || m[4] != "0" {
			t.Errorf("chaos %s: %s", m[1], m[0])
		}
	}
	for _, s := range opts.Chaos {
		if !seen[s] {
			t.Errorf("no result line for %s in:\n%s", s, out.String())
		}
	}
	phases := rep.Results.([]*chaosPhase)
	for _, ph := range phases {
		if ph.Published == 0 || ph.Received == 0 {
			t.Errorf("%s: nothing happened: published %d received %d", ph.Scenario, ph.Published, ph.Received)
		}
		if ph.NotRecovered != 0 {
			t.Errorf("%s: %d recoveries incomplete", ph.Scenario, ph.NotRecovered)
		}
		// The deploy's clients are signed in: each fetched its first
		// token, then held one refreshed over the socket and reconnected
		// with it, so the token service saw no call during the deploy;
		// every node refused a logged-out session's token.
		if tk := ph.Tokens; ph.Scenario == ChaosDeploy {
			switch {
			case tk == nil:
				t.Errorf("deploy: the clients were not signed in")
			case tk.Strategy != tokensRefresh || tk.SetupCalls < int64(ph.Clients) || tk.Refreshed != ph.Clients:
				t.Errorf("deploy: %s tokens, %d setup calls, %d of %d refreshed before the deploy", tk.Strategy, tk.SetupCalls, tk.Refreshed, ph.Clients)
			case tk.Calls != 0 || tk.Answered != 0:
				t.Errorf("deploy: %d token-service calls during the deploy (the service answered %d), want none with channel refresh", tk.Calls, tk.Answered)
			case tk.RevokedRefused != ph.Nodes:
				t.Errorf("deploy: a logged-out session's token refused by %d of %d nodes", tk.RevokedRefused, ph.Nodes)
			}
		} else if tk != nil {
			t.Errorf("%s: signed-in clients (%+v)", ph.Scenario, tk)
		}
		// The node events move clients, who recover what they missed; a
		// Postgres failover leaves them connected.
		if !isPGFailover(ph.Scenario) && (ph.Affected == 0 || ph.Recovered == 0) {
			t.Errorf("%s: affected %d, recovered %d", ph.Scenario, ph.Affected, ph.Recovered)
		}
		// The balancer saw a node event: some sample has a node unready,
		// or a backend not plainly UP (HAProxy's "UP 1/2" is a failed check
		// seen). A Postgres failover on a calm machine can be over between
		// two samples of /readyz and two checks of the balancer: there the
		// promotion having been carried out is what is checked.
		if isPGFailover(ph.Scenario) {
			if !(ph.EventMS > 0) { // NaN: never carried out
				t.Errorf("%s: no failover was carried out (event %v ms)", ph.Scenario, ph.EventMS)
			}
			continue
		}
		out := false
		for _, s := range ph.Timeline {
			for i := range s.Ready {
				out = out || !s.Ready[i] || s.Backend[i] != "UP"
			}
		}
		if !out {
			t.Errorf("%s: the timeline never shows a node unready or down: %v", ph.Scenario, ph.Timeline)
		}
	}
}

// TestChaosNeedsDatabase: the chaos scenarios refuse to start without
// Postgres, and name what they do not run.
func TestChaosNeedsDatabase(t *testing.T) {
	opts := smokeOptions(t, TargetHearth)
	opts.Chaos = []string{ChaosDeploy}
	if _, err := Run(context.Background(), "chaos", opts); err == nil || !strings.Contains(err.Error(), "--database-url") {
		t.Errorf("chaos without a database: %v", err)
	}
	opts.DatabaseURL = "postgres://127.0.0.1:1/none"
	opts.Chaos = []string{"meteor"}
	if _, err := Run(context.Background(), "chaos", opts); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", "meteor")) {
		t.Errorf("chaos --scenario meteor: %v", err)
	}
}

// TestSmokeChaosSoak is CI's minute of the soak: churn, the publisher, a
// whole deploy, resources sampled every 10 s; nothing lost, duplicated or
// reordered, and every sample has figures from every node and the
// database.
func TestSmokeChaosSoak(t *testing.T) {
	opts := smokeOptions(t, TargetHearth)
	opts.DatabaseURL = pgtest.Database(t)
	opts.Chaos = []string{ChaosSoak}
	var out bytes.Buffer
	opts.Stdout = &out
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	rep, err := Run(ctx, "chaos", opts)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !regexp.MustCompile(`(?m)^chaos soak \(.*lost 0, duplicated 0, reordered 0$`).MatchString(out.String()) {
		t.Errorf("soak line:\n%s", out.String())
	}
	ph := rep.Results.([]*chaosPhase)[0]
	if ph.Deploys < 1 || ph.ChurnConns == 0 || len(ph.Soak) < 5 {
		t.Fatalf("soak: %d deploys, %d churn clients, %d samples", ph.Deploys, ph.ChurnConns, len(ph.Soak))
	}
	for _, s := range ph.Soak {
		if s.Err != "" || s.PGConns == 0 || s.History == 0 {
			t.Errorf("sample at %.0f s: %+v", s.T, s)
		}
		running := 0
		for i := range s.RSSMiB {
			if s.RSSMiB[i] > 0 && s.Goroutines[i] > 0 && s.OpenFiles[i] > 0 {
				running++
			}
		}
		if running < 2 { // a deploy has at most one node down at a time
			t.Errorf("sample at %.0f s has figures from %d nodes: %+v", s.T, running, s)
		}
	}
}
