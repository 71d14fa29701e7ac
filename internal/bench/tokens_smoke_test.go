package bench

import "testing"

// TestSmokeTokens: with channel refresh every client rejoins after the
// crash without asking the token service; fetching on every reconnect asks
// at least once per client.
func TestSmokeTokens(t *testing.T) {
	t.Parallel()
	rep := runSmoke(t, "tokens", smokeOptions(t, TargetHearth))
	checkFiles(t, rep, "tokens")
	phases := rep.Results.([]*tokensPhase)
	if len(phases) != 2 {
		t.Fatalf("%d phases, want channel-refresh and fetch-each", len(phases))
	}
	refresh, fetch := phases[0], phases[1]
	for _, ph := range phases {
		if ph.Rejoined != ph.Clients {
			t.Errorf("%s: %d of %d rejoined", ph.Strategy, ph.Rejoined, ph.Clients)
		}
	}
	if refresh.Refreshed != refresh.Clients || refresh.Calls != 0 {
		t.Errorf("channel refresh: %d of %d refreshed before the kill, %d token calls after it", refresh.Refreshed, refresh.Clients, refresh.Calls)
	}
	if fetch.Calls < int64(fetch.Clients) || fetch.Answered < int64(fetch.Clients) {
		t.Errorf("fetch-each: %d calls (%d answered) for %d clients", fetch.Calls, fetch.Answered, fetch.Clients)
	}
}
