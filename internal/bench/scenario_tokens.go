package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

func init() {
	Register(&Scenario{
		Name:    "tokens",
		Summary: "N signed-in clients, server SIGKILLed and restarted: token-service calls in the reconnect wave, channel refresh against fetch-on-reconnect",
		Targets: []string{TargetHearth},
		Run:     runTokens,
	})
}

// Token strategies: what a client does for credentials when it reconnects.
const (
	tokensRefresh = "channel-refresh" // reuse the token the server last pushed (Hearth)
	tokensFetch   = "fetch-each"      // ask the token service before every connect attempt
)

// tokensPhase is one strategy's run.
type tokensPhase struct {
	Strategy string `json:"strategy"`
	Clients  int    `json:"clients"`
	// Refreshed is how many clients had received a token pushed over the
	// channel before the kill.
	Refreshed int `json:"refreshed_before_kill"`
	// Calls counts the clients' requests to the token service (GET /token)
	// from the kill until every client was joined again; Answered those the
	// restarted server answered (its own counter).
	Calls    int64 `json:"token_calls"`
	Answered int64 `json:"token_calls_answered"`
	// PeakCalls is the most calls in any one second.
	PeakCalls float64 `json:"peak_token_calls_per_sec"`
	Rejoin99  Float   `json:"rejoin_99_ms"`
	Rejoin100 Float   `json:"rejoin_100_ms"`
	Rejoined  int     `json:"rejoined"`
	// callTimes are the calls' times from the kill (ms), for the plot.
	callTimes []float64
}

// runTokens reads Clients (default 2,000; smoke 20), SourceIPs,
// EventTimeout. The hearth server runs with --token-ttl 60s and
// --refresh-window 0.05-0.1 (a refresh 3 to 6 s after connect) so that the
// scenario does not wait minutes; every client signs in (POST /login), gets
// one token (GET /token), connects with it and joins. Once every client of
// the channel-refresh run holds a pushed token, the server is SIGKILLed and
// started again, and each client reconnects with Hearth's jittered backoff.
func runTokens(ctx context.Context, env *Env) (*Report, error) {
	o := env.Opts
	n := pick(o.Clients, 2000, 20, o.Smoke)
	timeout := pick(o.EventTimeout, 60*time.Second, 30*time.Second, o.Smoke)
	ttl, window := 60*time.Second, "0.05-0.1"
	if o.Smoke {
		ttl, window = 20*time.Second, "0.05-0.1"
	}
	saved := o.ServerArgs
	env.Opts.ServerArgs = append(append([]string(nil), saved...), "--token-ttl", ttl.String(), "--refresh-window", window)
	defer func() { env.Opts.ServerArgs = saved }()

	rep := &Report{Params: map[string]any{"clients": n, "token_ttl_s": ttl.Seconds(), "refresh_window": window}}
	tab := &Table{
		Title:  fmt.Sprintf("tokens: %d signed-in clients, server SIGKILLed and restarted", n),
		Header: []string{"strategy", "clients", "refreshed", "token calls", "answered", "peak calls/s", "99% rejoined", "100% rejoined"},
	}
	rep.Tables = append(rep.Tables, tab)
	var phases []*tokensPhase
	for _, strategy := range []string{tokensRefresh, tokensFetch} {
		ph, err := tokensOne(ctx, env, strategy, n, timeout)
		if ph != nil {
			phases = append(phases, ph)
			tab.Add(ph.Strategy, fint(int64(ph.Clients)), fint(int64(ph.Refreshed)), fint(ph.Calls), fint(ph.Answered),
				fmt.Sprintf("%.0f", ph.PeakCalls), fms(float64(ph.Rejoin99)), fms(float64(ph.Rejoin100)))
		}
		if err != nil {
			rep.Results = phases
			return rep, fmt.Errorf("tokens, %s: %w", strategy, err)
		}
	}
	rep.Results = phases
	if len(phases) == 2 && phases[0].Calls > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("fetch-each made %.1fx the token-service calls of channel refresh", float64(phases[1].Calls)/float64(phases[0].Calls)))
	} else if len(phases) == 2 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("channel refresh made no token-service call in the reconnect wave; fetch-each made %d", phases[1].Calls))
	}
	rate := &Chart{Title: "Token-service calls per second after the kill", XLabel: "seconds after SIGKILL", YLabel: "calls/s"}
	bars := &Chart{Title: "Token-service calls during the reconnect wave", YLabel: "calls", Categories: []string{"calls"}}
	for _, ph := range phases {
		rate.Lines = append(rate.Lines, Series{Name: ph.Strategy, Points: perSecond(ph.callTimes)})
		bars.Bars = append(bars.Bars, BarSeries{Name: ph.Strategy, Values: []Float{Float(ph.Calls)}})
	}
	rep.Charts = append(rep.Charts, bars, rate)
	return rep, nil
}

// perSecond bins times (ms) into calls per second.
func perSecond(ms []float64) [][2]float64 {
	if len(ms) == 0 {
		return [][2]float64{{0, 0}}
	}
	bins := map[int]int{}
	last := 0
	for _, t := range ms {
		b := int(t / 1000)
		bins[b]++
		last = max(last, b)
	}
	out := make([][2]float64, 0, last+2)
	for b := 0; b <= last+1; b++ {
		out = append(out, [2]float64{float64(b), float64(bins[b])})
	}
	return out
}

// tokClient is one signed-in browser.
type tokClient struct {
	idx    int
	http   *http.Client
	dialer *websocket.Dialer

	mu        sync.Mutex
	token     string
	exp       time.Time
	refreshed bool
}

func tokensOne(ctx context.Context, env *Env, strategy string, n int, timeout time.Duration) (*tokensPhase, error) {
	t, err := env.Target(ctx, TargetHearth, "")
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
	defer func() { srv.Kill() }()
	base := "http://" + addr
	ph := &tokensPhase{Strategy: strategy, Clients: n}
	ips := env.SourceIPs(n)

	var (
		calls   atomic.Int64
		counted atomic.Bool // count calls from the kill on
		callsMu sync.Mutex
		killAt  time.Time
		joined  atomic.Int64
		// refreshedCount counts the clients that received a token over the channel.
		refreshedCount atomic.Int64
		rejoins        = make([]float64, 0, n)
		rejMu          sync.Mutex
	)
	fetch := func(c *tokClient) error {
		if counted.Load() {
			calls.Add(1)
			callsMu.Lock()
			ph.callTimes = append(ph.callTimes, float64(time.Since(killAt).Microseconds())/1000)
			callsMu.Unlock()
		}
		res, err := c.http.Get(base + "/token")
		if err != nil {
			return err
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("GET /token: %s", res.Status)
		}
		var tok struct {
			Token     string `json:"token"`
			ExpiresAt int64  `json:"expires_at"`
		}
		if err := json.NewDecoder(res.Body).Decode(&tok); err != nil {
			return err
		}
		c.mu.Lock()
		c.token, c.exp = tok.Token, time.Unix(tok.ExpiresAt, 0)
		c.mu.Unlock()
		return nil
	}
	policy, err := PolicyByName("hearth")
	if err != nil {
		return nil, err
	}

	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	ready := make(chan error, n)
	for i := 0; i < n; i++ {
		src := ips[i%len(ips)]
		jar, _ := cookiejar.New(nil)
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second, Control: bindNoPort}
		c := &tokClient{
			idx:    i,
			http:   &http.Client{Jar: jar, Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, DisableKeepAlives: true}},
			dialer: &websocket.Dialer{NetDialContext: d.DialContext, HandshakeTimeout: 5 * time.Second},
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Sign in and get the first token (before the measurement).
			res, err := c.http.PostForm(base+"/login", url.Values{"user": {"u" + strconv.Itoa(c.idx)}})
			if err == nil {
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					err = errors.New("POST /login: " + res.Status)
				}
			}
			if err == nil {
				err = fetch(c)
			}
			ready <- err
			if err != nil {
				return
			}
			tries := 0
			var hint time.Duration
			for cctx.Err() == nil {
				if tries > 0 {
					select {
					case <-time.After(policy.Delay(tries, hint)):
					case <-cctx.Done():
						return
					}
				}
				tries++
				c.mu.Lock()
				stale := c.exp.Before(time.Now().Add(5 * time.Second))
				c.mu.Unlock()
				if tries > 1 && (strategy == tokensFetch || stale) {
					if err := fetch(c); err != nil {
						hint = 0
						continue
					}
				}
				conn, hintNext, err := c.session(cctx, addr, strategy, func() { refreshedCount.Add(1) }, func() {
					if counted.Load() {
						rejMu.Lock()
						rejoins = append(rejoins, float64(time.Since(killAt).Microseconds())/1000)
						rejMu.Unlock()
					}
					joined.Add(1)
				})
				hint = hintNext
				if conn && err == nil {
					tries = 1 // connected and joined: the backoff starts over
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-ready; err != nil {
			cancel()
			wg.Wait()
			return nil, fmt.Errorf("client setup: %w", err)
		}
	}
	// Wait until everyone is joined and (for channel refresh) holds a
	// pushed token.
	deadline := time.Now().Add(timeout)
	for {
		refreshed := int(refreshedCount.Load())
		if joined.Load() >= int64(n) && (strategy == tokensFetch || refreshed >= n) {
			ph.Refreshed = refreshed
			break
		}
		if time.Now().After(deadline) {
			cancel()
			wg.Wait()
			return ph, fmt.Errorf("%d of %d joined, %d refreshed before the kill", joined.Load(), n, refreshed)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The crash.
	killAt = time.Now()
	joined.Store(0)
	counted.Store(true)
	srv.Kill()
	srv, err = t.Start(ctx, 0, addr)
	if err != nil {
		cancel()
		wg.Wait()
		return ph, fmt.Errorf("restart: %w", err)
	}
	deadline = time.Now().Add(timeout)
	for joined.Load() < int64(n) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	ph.Calls = calls.Load()
	ph.Answered = scrapeCounter(base+"/metrics", "hearth_demo_token_requests_total")
	cancel()
	wg.Wait()

	rejMu.Lock()
	sort.Float64s(rejoins)
	ph.Rejoined = len(rejoins)
	if len(rejoins) > 0 {
		ph.Rejoin99 = Float(rejoins[min(len(rejoins)-1, (len(rejoins)*99+99)/100-1)])
	}
	if len(rejoins) >= n {
		ph.Rejoin100 = Float(rejoins[len(rejoins)-1])
	} else {
		ph.Rejoin100 = Float(math.NaN())
	}
	rejMu.Unlock()
	callsMu.Lock()
	for _, p := range perSecond(ph.callTimes) {
		ph.PeakCalls = max(ph.PeakCalls, p[1])
	}
	callsMu.Unlock()
	return ph, nil
}

// session connects with the client's current token, joins one room, and
// reads until the connection ends. It reports whether it got joined, the
// retry hint of the close (if any) and the error that ended it.
func (c *tokClient) session(ctx context.Context, addr, strategy string, onFirstRefresh, onJoined func()) (bool, time.Duration, error) {
	c.mu.Lock()
	tok := c.token
	c.mu.Unlock()
	u := "ws://" + addr + "/socket/websocket?vsn=2.0.0&token=" + url.QueryEscape(tok)
	conn, _, err := c.dialer.DialContext(ctx, u, nil)
	if err != nil {
		return false, 0, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	topic := "room:tokens-" + strconv.Itoa(c.idx%10)
	if err := conn.WriteJSON([]any{"1", "1", topic, "phx_join", map[string]any{}}); err != nil {
		return false, 0, err
	}
	joined := false
	hb := time.NewTicker(30 * time.Second)
	defer hb.Stop()
	over := make(chan struct{}) // the heartbeat ends with the session
	defer close(over)
	go func() {
		ref := 1
		for {
			select {
			case <-hb.C:
				ref++
				if conn.WriteJSON([]any{nil, strconv.Itoa(ref), "phoenix", "heartbeat", map[string]any{}}) != nil {
					return
				}
			case <-over:
				return
			}
		}
	}()
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return joined, closeHint(ce.Text), err
			}
			return joined, 0, err
		}
		var m []json.RawMessage
		if json.Unmarshal(data, &m) != nil || len(m) != 5 {
			continue
		}
		var event string
		_ = json.Unmarshal(m[3], &event)
		switch event {
		case "phx_reply":
			if !joined && strings.Contains(string(m[4]), `"status":"ok"`) && string(m[1]) == `"1"` {
				joined = true
				onJoined()
			}
		case "token":
			var p struct {
				Token     string `json:"token"`
				ExpiresAt int64  `json:"expires_at"`
			}
			if json.Unmarshal(m[4], &p) == nil && p.Token != "" && strategy == tokensRefresh {
				c.mu.Lock()
				first := !c.refreshed
				c.token, c.exp, c.refreshed = p.Token, time.Unix(p.ExpiresAt, 0), true
				c.mu.Unlock()
				if first {
					onFirstRefresh()
				}
			}
		}
	}
}

// scrapeCounter reads one counter from a Prometheus text page (-1 on failure).
func scrapeCounter(u, name string) int64 {
	res, err := http.Get(u)
	if err != nil {
		return -1
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err == nil {
				return int64(f)
			}
		}
	}
	return -1
}
