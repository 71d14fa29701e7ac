package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// EventExpired is the storm event of clients that hold expired tokens (a
// laptop that slept, a tab left open after a logout): K clients connect
// with a token that expired and keep retrying under their reconnect policy
// for a while. What it measures is how many upgrades per second the server
// makes for them: a refusal sent after the upgrade resets a Phoenix
// client's backoff, so each one loops at about 70 upgrades a second; one
// sent before the upgrade (HTTP 403) lets its backoff climb to 5 s.
const EventExpired = "expired"

// expiredPhase is one policy's run of the expired event.
type expiredPhase struct {
	Target  string  `json:"target"`
	Policy  string  `json:"policy"`
	Clients int     `json:"clients"`
	Seconds float64 `json:"seconds"` // the measured window
	// Per second over the window, as the clients saw them: connection
	// attempts, successful upgrades (each closed at once with 4502), and
	// attempts refused with an HTTP status before the upgrade.
	AttemptsPerSec float64 `json:"attempts_per_sec"`
	UpgradesPerSec float64 `json:"upgrades_per_sec"`
	RefusedPerSec  float64 `json:"refused_per_sec"`
	// PeakUpgrades is the most upgrades in any one second of the window.
	PeakUpgrades  float64          `json:"peak_upgrades_per_sec"`
	ServerPeakCPU float64          `json:"server_peak_cpu_pct"`
	Errors        map[string]int64 `json:"errors"`
}

// expiredToken signs in to the demo server at base, takes a token and
// waits until it has expired.
func expiredToken(ctx context.Context, base string) (string, error) {
	hc := &http.Client{Timeout: 5 * time.Second}
	res, err := hc.PostForm(base+"/login", url.Values{"user": {"sleepy"}})
	if err != nil {
		return "", err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return "", errors.New("bench: POST /login: " + res.Status)
	}
	var cookie string
	for _, c := range res.Cookies() {
		cookie = c.Name + "=" + c.Value
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/token", nil)
	req.Header.Set("Cookie", cookie)
	res, err = hc.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return "", errors.New("bench: GET /token: " + res.Status)
	}
	var tok struct {
		Token     string `json:"token"`
		ExpiresAt int64  `json:"expires_at"`
	}
	if err := json.NewDecoder(res.Body).Decode(&tok); err != nil {
		return "", err
	}
	// A second past the expiry: every server refuses it from now on.
	if err := sleepCtx(ctx, time.Until(time.Unix(tok.ExpiresAt, 0).Add(time.Second))); err != nil {
		return "", err
	}
	return tok.Token, nil
}

// stormExpiredOne runs the expired event with one client policy: k clients
// with an expired token, measured over window after a settling second.
func stormExpiredOne(ctx context.Context, env *Env, kind, pol string, k int, window time.Duration) (*expiredPhase, error) {
	if kind != TargetHearth {
		return nil, fmt.Errorf("bench: the expired event needs hearth serve's tokens (target %s has none)", kind)
	}
	saved := env.Opts.ServerArgs
	env.Opts.ServerArgs = append(append([]string(nil), saved...), "--token-ttl", "1s")
	t, err := env.Target(ctx, kind, "")
	env.Opts.ServerArgs = saved
	if err != nil {
		return nil, err
	}
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	srv, err := t.Start(ctx, 0, addr)
	if err != nil {
		return nil, err
	}
	defer srv.Kill()
	tok, err := expiredToken(ctx, "http://"+addr)
	if err != nil {
		return nil, err
	}
	fleet, err := env.Fleet(k)
	if err != nil {
		return nil, err
	}
	defer fleet.Close()
	connRate := env.Opts.ConnectRate
	if connRate == 0 {
		connRate = defaultConnectRate
	}
	spec := GroupSpec{
		Name: "expired", Proto: t.Proto(), Addrs: []string{addr}, Policy: pol, Count: k, SourceIPs: env.SourceIPs(k),
		ConnectRate: connRate, HeartbeatMS: env.heartbeatMS(), EpochNS: env.Epoch.UnixNano(),
		Query: "token=" + url.QueryEscape(tok),
	}
	label := fmt.Sprintf("storm %s %s %s", kind, EventExpired, pol)
	p := env.progress(label, fleet, joinedLine(int64(k), "expired"))
	defer p.done()
	if err := fleet.Start(spec); err != nil {
		return nil, err
	}
	// Every client has made its first attempt once the connect pacing is
	// over; then the window.
	if err := sleepCtx(ctx, time.Duration(float64(k)/connRate*float64(time.Second))+time.Second); err != nil {
		return nil, err
	}
	before, err := fleet.Stats()
	if err != nil {
		return nil, err
	}
	from := time.Since(env.Epoch).Seconds()
	if err := sleepCtx(ctx, window); err != nil {
		return nil, err
	}
	after, err := fleet.Stats()
	if err != nil {
		return nil, err
	}
	to := time.Since(env.Epoch).Seconds()
	res, _, err := finishAll(ctx, fleet, "expired")
	if err != nil {
		return nil, err
	}
	b, a := before["expired"].Counters, after["expired"].Counters
	secs := window.Seconds()
	ph := &expiredPhase{Target: kind, Policy: pol, Clients: k, Seconds: secs,
		AttemptsPerSec: float64(a["conn_attempts"]-b["conn_attempts"]) / secs,
		UpgradesPerSec: float64(a["conn_ok"]-b["conn_ok"]) / secs,
		Errors:         res["expired"].Stats.Errors,
	}
	ph.RefusedPerSec = ph.AttemptsPerSec - ph.UpgradesPerSec
	ph.PeakUpgrades = peakRate(res["expired"].Series[seriesConnect], from, to)
	_, ph.ServerPeakCPU, _ = srv.Usage()
	return ph, nil
}

// expiredTable is the table of the expired event.
func expiredTable(k int, window time.Duration) *Table {
	return &Table{
		Title: fmt.Sprintf("storm expired: %d clients holding an expired token, over %v", k, window),
		Header: []string{"target", "policy", "attempts/s", "upgrades/s", "peak upgrades/s", "refused before upgrade/s",
			"srv cpu peak", "what the clients saw"},
	}
}

func (ph *expiredPhase) row(tab *Table) {
	s := GroupStats{Errors: ph.Errors}
	tab.Add(ph.Target, ph.Policy, fnum(ph.AttemptsPerSec), fnum(ph.UpgradesPerSec), fnum(ph.PeakUpgrades), fnum(ph.RefusedPerSec),
		fmt.Sprintf("%.0f%%", ph.ServerPeakCPU), strings.TrimSpace(s.ErrorSummary()))
}
