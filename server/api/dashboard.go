package api

import (
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"html"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/hearth-rt/hearth/channels"
)

// DashboardTopic is the channel the dashboard page joins, with the API key
// in its join params ({"key": KEY}) unless Options.AuthorizeDashboard
// decides. While at least one dashboard is joined on a node, the node
// pushes it the cluster's state every second ("state" event) and every
// node of the cluster heartbeats every second; otherwise nothing is
// sampled more often than Options.HeartbeatInterval, and nothing at all
// runs on the broadcast path.
const DashboardTopic = "hearth:dashboard"

//go:embed dashboard/dashboard.js
var dashboardJS []byte

//go:embed dashboard/index.html
var dashboardHTML string

// dashboard is the dashboard channel's joined watchers on this node.
type dashboard struct {
	a  *API
	cl *cluster

	mu       sync.Mutex
	watchers map[*channels.Channel]struct{}
	running  bool
}

func newDashboard(a *API, cl *cluster) *dashboard {
	d := &dashboard{a: a, cl: cl, watchers: map[*channels.Channel]struct{}{}}
	a.node.Handle(DashboardTopic, channels.Handler{Join: d.join})
	return d
}

func (d *dashboard) open() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.watchers) > 0
}

func (d *dashboard) join(_ context.Context, c *channels.Channel, ev channels.JoinEvent) (channels.JoinReply, error) {
	a := d.a
	ok := false
	if a.opts.AuthorizeDashboard != nil {
		ok = a.opts.AuthorizeDashboard(c, ev)
	} else {
		var p struct {
			Key string `json:"key"`
		}
		_ = json.Unmarshal(ev.Params, &p)
		ok = a.checkKey(p.Key)
	}
	if !ok {
		return channels.JoinReply{}, channels.Refuse("unauthorized")
	}
	d.mu.Lock()
	if !d.running {
		if !d.cl.goAdd() {
			d.mu.Unlock()
			return channels.JoinReply{}, channels.Refuse("dashboard closed")
		}
		d.running = true
		go d.run()
	}
	d.watchers[c] = struct{}{}
	d.mu.Unlock()
	c.OnTerminate(func(error) {
		d.mu.Lock()
		delete(d.watchers, c)
		d.mu.Unlock()
	})
	select { // heartbeat now: every node learns a dashboard is open
	case d.cl.wake <- struct{}{}:
	default:
	}
	return channels.JoinReply{Response: map[string]any{"node": a.node.ID(), "version": a.version}}, nil
}

// run pushes the cluster's state to this node's dashboards every second,
// and ends when the last one left.
func (d *dashboard) run() {
	defer d.cl.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		d.push()
		select {
		case <-d.cl.stop:
			d.mu.Lock()
			d.running = false
			d.mu.Unlock()
			return
		case <-t.C:
		}
		d.mu.Lock()
		if len(d.watchers) == 0 {
			d.running = false
			d.mu.Unlock()
			return
		}
		d.mu.Unlock()
	}
}

func (d *dashboard) push() {
	d.mu.Lock()
	list := make([]*channels.Channel, 0, len(d.watchers))
	for c := range d.watchers {
		list = append(list, c)
	}
	d.mu.Unlock()
	if len(list) == 0 {
		return
	}
	nodes := d.cl.nodeList()
	merged := map[string]int{}
	for _, n := range nodes {
		for _, tc := range n.TopTopics {
			if tc.Topic != DashboardTopic {
				merged[tc.Topic] += tc.Count
			}
		}
	}
	state, err := json.Marshal(map[string]any{
		"at": time.Now().UnixMilli(), "node": d.a.node.ID(),
		"nodes": nodes, "top_topics": top(merged, topTopics),
	})
	if err != nil {
		return
	}
	for _, c := range list {
		_ = c.Push("state", json.RawMessage(state))
	}
}

// Dashboard returns the handler of the dashboard page: mount it at
// Options.DashboardPath ("/dashboard") and below it ("/dashboard/*"). It serves the page (whatever the path's
// last element, except "dashboard.js", the script). The page asks for the
// API key, keeps it in the tab's sessionStorage, joins DashboardTopic on
// the app's socket (Options.SocketPath) with it, and calls the API
// (Options.Prefix) for searches and disconnects. With Options.Authorize
// set, the app's own authentication replaces the key: the page itself
// needs Authorize to pass, asks for no key, joins with an empty one (for
// Options.AuthorizeDashboard to decide) and calls the API with the
// browser's cookies. With the API off it answers 404.
func (a *API) Dashboard() http.Handler {
	page := strings.NewReplacer(
		"{{SOCKET}}", html.EscapeString(a.opts.SocketPath),
		"{{API}}", html.EscapeString(a.opts.Prefix),
		"{{DASH}}", html.EscapeString(a.opts.DashboardPath),
		"{{VERSION}}", html.EscapeString(a.version),
		"{{AUTH}}", authMode(a),
	).Replace(dashboardHTML)
	sum := sha256.Sum256(dashboardJS)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	page = strings.ReplaceAll(page, "{{JSV}}", etag[1:9])
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.Enabled() {
			writeErr(w, errDisabled)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		if a.opts.Authorize != nil && !a.opts.Authorize(r) {
			writeErr(w, errUnauthorized)
			return
		}
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		if path.Base(r.URL.Path) == "dashboard.js" {
			h.Set("Content-Type", "text/javascript; charset=utf-8")
			h.Set("Cache-Control", "no-cache")
			h.Set("ETag", etag)
			if r.Header.Get("If-None-Match") == etag {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			_, _ = w.Write(dashboardJS)
			return
		}
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self' ws: wss:; img-src 'self' data:")
		h.Set("Referrer-Policy", "no-referrer")
		_, _ = w.Write([]byte(page))
	})
}

// authMode tells the page whether to ask for a key ("key") or to rely on
// the app's own authentication ("app").
func authMode(a *API) string {
	if a.opts.Authorize != nil {
		return "app"
	}
	return "key"
}
