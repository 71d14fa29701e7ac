package bench

import (
	"context"
	"testing"
	"time"
)

// TestSignedInClientsTokenCalls: load clients signed in at a token service
// (a `hearth serve` of its own, beside the node, same secret). The node is
// SIGKILLed and restarted: the channel-refresh clients (Hearth's policy)
// reconnect with the token the node pushed them and make no call; the
// fetch-each clients (Phoenix's) make exactly one call per connect attempt,
// which the service's own counter confirms.
func TestSignedInClientsTokenCalls(t *testing.T) {
	t.Parallel()
	const n = 10
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	secret := []string{"--secret", "chaos tokens test secret"}
	// The node's tokens live 10 minutes; the service's 3 s, so that its
	// first refresh reaches every client within 1.5 to 2.7 s.
	node, err := NewTarget(ctx, TargetOptions{Kind: TargetHearth, HearthBin: builtHearth(t), Args: secret})
	if err != nil {
		t.Fatal(err)
	}
	svcT, err := NewTarget(ctx, TargetOptions{Kind: TargetHearth, HearthBin: builtHearth(t), Args: append(secret, "--token-ttl", "3s")})
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := FreeAddr()
	svcAddr, _ := FreeAddr()
	srv, err := node.Start(ctx, 0, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Kill() }()
	svc, err := svcT.Start(ctx, 1, svcAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Kill()

	fleet, err := NewFleet(FleetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer fleet.Close()
	ips := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"}
	for _, g := range []struct{ name, policy, strategy string }{{"refresh", "hearth", tokensRefresh}, {"fetch", "phoenix", tokensFetch}} {
		err := fleet.Start(GroupSpec{
			Name: g.name, Proto: ProtoPhoenix, Addrs: []string{addr}, Policy: g.policy,
			Topics: []string{"room:tok-1", "room:tok-2"}, TopicsPerClient: 1, Count: n, SourceIPs: ips,
			EpochNS: time.Now().UnixNano(), Auth: &AuthSpec{Service: svcAddr, Strategy: g.strategy, UserPrefix: g.name},
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	stats := func() map[string]GroupStats {
		t.Helper()
		st, err := fleet.Stats()
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	// Joined, and every client has received a token over its socket.
	deadline := time.Now().Add(30 * time.Second)
	for {
		st := stats()
		if st["refresh"].Joined == n && st["fetch"].Joined == n &&
			st["refresh"].Counters["refreshed_clients"] == n && st["fetch"].Counters["refreshed_clients"] == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	before := stats()
	answered := scrapeCounter("http://"+svcAddr+"/metrics", "hearth_demo_token_requests_total")
	for _, g := range []string{"refresh", "fetch"} {
		if c := before[g].Counters; c["logins"] != n || c["token_calls"] < n {
			t.Errorf("%s: %d logins, %d token calls for %d clients", g, c["logins"], c["token_calls"], n)
		}
	}
	srv.Kill()
	if srv, err = node.Start(ctx, 0, addr); err != nil {
		t.Fatal(err)
	}
	if err := waitJoined(ctx, fleet, n, 30*time.Second, "refresh"); err != nil {
		t.Fatal(err)
	}
	if err := waitJoined(ctx, fleet, n, 30*time.Second, "fetch"); err != nil {
		t.Fatal(err)
	}
	after := stats()
	delta := func(g, k string) int64 { return after[g].Counters[k] - before[g].Counters[k] }
	if calls := delta("refresh", "token_calls"); calls != 0 {
		t.Errorf("channel refresh: %d token-service calls after the restart, want 0", calls)
	}
	calls, attempts := delta("fetch", "token_calls"), delta("fetch", "conn_attempts")
	if calls < n || calls != attempts {
		t.Errorf("fetch-each: %d token-service calls for %d connect attempts of %d clients", calls, attempts, n)
	}
	if got := scrapeCounter("http://"+svcAddr+"/metrics", "hearth_demo_token_requests_total") - answered; got != calls {
		t.Errorf("the token service answered %d calls, the clients made %d", got, calls)
	}
	if e := after["refresh"].Errors; e["connect_http_403"] != 0 {
		t.Errorf("refreshed tokens refused after the restart: %v", e)
	}
}
