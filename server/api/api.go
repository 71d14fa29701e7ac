package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/channels/presence"
)

// Options configures an [API]. Node is required; the zero value of every
// other field works, but without Keys (or Authorize) the API is off: every
// call answers 404 with the code "api_disabled".
type Options struct {
	// Node is the channel layer the API acts on. Required.
	Node *channels.Node
	// Presence, when set, serves GET /presence and /presence/count. Nil
	// answers them with 404 "presence_disabled".
	Presence *presence.Presence
	// Keys are the API keys accepted in "Authorization: Bearer KEY". No key
	// (and no Authorize) means the API and the dashboard are off.
	Keys []string
	// Authorize, when set, replaces the key check for HTTP requests: the
	// app's own authentication (a session cookie, an SSO header). It must
	// answer quickly; false gives 401.
	Authorize func(r *http.Request) bool
	// AuthorizeDashboard, when set, replaces the key check for joins of the
	// dashboard channel (DashboardTopic): it sees the joining socket (its
	// ConnectReply.ID, its assigns) and the join params.
	AuthorizeDashboard func(c *channels.Channel, ev channels.JoinEvent) bool
	// Health, when set, reports what the node alone does not know: the
	// transport's readiness and sheds, and the broker's listener. Nil
	// reports the node ready with no listener.
	Health func() Health
	// Version is the version /nodes reports. Empty means the main
	// module's version from the build info.
	Version string
	// Prefix is the path the API is mounted at. Requests whose path starts
	// with it are routed on the rest. Zero means "/api".
	Prefix string
	// SocketPath is the path of the app's socket, without "/websocket",
	// for the dashboard page. Zero means "/socket".
	SocketPath string
	// DashboardPath is the path the dashboard page is mounted at (its
	// script is DashboardPath + "/dashboard.js"). Zero means "/dashboard".
	DashboardPath string
	// MaxBodyBytes bounds a request body. Zero means 1 MiB.
	MaxBodyBytes int64
	// MaxPayloadBytes bounds one published payload (JSON text). Zero
	// means 64 KiB, the default frame limit of package server.
	MaxPayloadBytes int
	// MaxBatch is the most messages of one batch publish. Zero means 1000.
	MaxBatch int
	// Rate is how many requests per second one key may make; Burst how
	// many at once. Zero means 200 and twice Rate; a negative Rate means
	// no limit.
	Rate  float64
	Burst int
	// HeartbeatInterval is how often the node tells the cluster about
	// itself while no dashboard is open anywhere (while one is, every
	// second). Zero means 5 s.
	HeartbeatInterval time.Duration
	// AskTimeout is how long calls that ask every node (/topics, /sockets)
	// wait for the answers. Zero means 2 s.
	AskTimeout time.Duration
	// Logger receives structured logs. Nil means silent.
	Logger *slog.Logger
}

// Health is a node's state beyond its channel layer, from [Options.Health].
type Health struct {
	// Ready is false while the node drains or cannot serve.
	Ready bool
	// Draining is true during a graceful shutdown.
	Draining bool
	// Listener is the cluster broker's listener state ("up", "down",
	// "catching up"); empty for a broker without one.
	Listener string
	// ConnectionsShed counts new connections refused by admission
	// control; SlowConsumerCloses and RateLimitCloses, sockets closed with
	// 4008 and 4029.
	ConnectionsShed, SlowConsumerCloses, RateLimitCloses uint64
	// Published and PublishSeconds are the broker's count of committed
	// messages and the time they took (for a mean publish latency); zero
	// when the broker does not measure it.
	Published      uint64
	PublishSeconds float64
}

// API is the HTTP server API and the dashboard of one node. It is an
// [http.Handler] for the API (mount it at Options.Prefix); [API.Dashboard]
// serves the dashboard page. Create it with [New] before the node serves,
// and [API.Close] it on shutdown.
type API struct {
	opts    Options
	node    *channels.Node
	log     *slog.Logger
	keys    [][32]byte
	routes  map[string]route
	version string

	lmu      sync.Mutex
	limiters map[int]*rate.Limiter // by key index
	badAuth  *rate.Limiter

	cl *cluster
}

type route struct {
	method string
	fn     func(w http.ResponseWriter, r *http.Request) error
}

// New returns the API of opts.Node. It registers the dashboard channel
// (DashboardTopic) and the API's cluster control messages on the node, so
// it must be called before the node serves, and starts the node's
// heartbeat to the cluster.
func New(opts Options) *API {
	if opts.Node == nil {
		panic("api: Options.Node is required")
	}
	if opts.Prefix == "" {
		opts.Prefix = "/api"
	}
	opts.Prefix = strings.TrimSuffix(opts.Prefix, "/")
	if opts.SocketPath == "" {
		opts.SocketPath = "/socket"
	}
	if opts.DashboardPath == "" {
		opts.DashboardPath = "/dashboard"
	}
	opts.DashboardPath = strings.TrimSuffix(opts.DashboardPath, "/")
	if opts.MaxBodyBytes == 0 {
		opts.MaxBodyBytes = 1 << 20
	}
	if opts.MaxPayloadBytes == 0 {
		opts.MaxPayloadBytes = 64 << 10
	}
	if opts.MaxBatch == 0 {
		opts.MaxBatch = 1000
	}
	if opts.Rate == 0 {
		opts.Rate = 200
	}
	if opts.Burst == 0 {
		opts.Burst = int(2 * max(opts.Rate, 1))
	}
	if opts.HeartbeatInterval == 0 {
		opts.HeartbeatInterval = 5 * time.Second
	}
	if opts.AskTimeout == 0 {
		opts.AskTimeout = 2 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	a := &API{
		opts:     opts,
		node:     opts.Node,
		log:      log.With("node", opts.Node.ID()),
		limiters: make(map[int]*rate.Limiter),
		badAuth:  rate.NewLimiter(20, 40),
		version:  opts.Version,
	}
	for _, k := range opts.Keys {
		if k != "" {
			a.keys = append(a.keys, sha256.Sum256([]byte(k)))
		}
	}
	if a.version == "" {
		a.version = "devel"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
			a.version = bi.Main.Version
		}
	}
	a.routes = map[string]route{
		"/publish":        {http.MethodPost, a.publish},
		"/publish/batch":  {http.MethodPost, a.publishBatch},
		"/presence":       {http.MethodGet, a.presence},
		"/presence/count": {http.MethodGet, a.presenceCount},
		"/history":        {http.MethodGet, a.history},
		"/disconnect":     {http.MethodPost, a.disconnect},
		"/unsubscribe":    {http.MethodPost, a.unsubscribe},
		"/topics":         {http.MethodGet, a.topics},
		"/nodes":          {http.MethodGet, a.nodes},
		"/sockets":        {http.MethodGet, a.sockets},
	}
	a.cl = newCluster(a)
	return a
}

// Enabled reports whether the API is on: a key or an Authorize hook is
// configured.
func (a *API) Enabled() bool { return len(a.keys) > 0 || a.opts.Authorize != nil }

// Close stops the node's heartbeat and the dashboard's updates, and waits
// for the API's goroutines. Call it before closing the broker.
func (a *API) Close() { a.cl.close() }

// ServeHTTP serves the API calls under Options.Prefix.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if !a.Enabled() {
		writeErr(w, errDisabled)
		return
	}
	p := strings.TrimPrefix(r.URL.Path, a.opts.Prefix)
	p = "/" + strings.Trim(p, "/")
	if p == "/openapi.json" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeErr(w, &Error{http.StatusMethodNotAllowed, "method_not_allowed", "use GET"})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openapiJSON)
		return
	}
	rt, ok := a.routes[p]
	if !ok {
		writeErr(w, &Error{http.StatusNotFound, "not_found", "no API call " + p + " (see " + a.opts.Prefix + "/openapi.json)"})
		return
	}
	if err := a.authorize(r); err != nil {
		writeErr(w, err)
		return
	}
	if r.Method != rt.method {
		w.Header().Set("Allow", rt.method)
		writeErr(w, &Error{http.StatusMethodNotAllowed, "method_not_allowed", p + " takes " + rt.method})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, a.opts.MaxBodyBytes)
	if err := rt.fn(w, r); err != nil {
		var e *Error
		var mb *http.MaxBytesError
		if !errors.As(err, &e) && !errors.As(err, &mb) {
			a.log.Warn("api: call failed", "call", p, "err", err)
		}
		writeErr(w, err)
	}
}

// authorize checks the request's key (or the Authorize hook) and the
// key's rate.
func (a *API) authorize(r *http.Request) error {
	if a.opts.Authorize != nil {
		if !a.opts.Authorize(r) {
			return a.refused(errUnauthorized)
		}
		return a.limit(-1)
	}
	h := r.Header.Get("Authorization")
	scheme, key, ok := strings.Cut(h, " ")
	if h == "" {
		return a.refused(&Error{http.StatusUnauthorized, "unauthorized", "missing Authorization: Bearer <API key>"})
	}
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return a.refused(&Error{http.StatusUnauthorized, "unauthorized", "the Authorization header must be Bearer <API key>"})
	}
	i := a.keyIndex(strings.TrimSpace(key))
	if i < 0 {
		return a.refused(errUnauthorized)
	}
	return a.limit(i)
}

// keyIndex returns the index of key among the configured keys, or -1. Every
// key is compared, in constant time, whatever matches.
func (a *API) keyIndex(key string) int {
	sum := sha256.Sum256([]byte(key))
	found := -1
	for i := range a.keys {
		if subtle.ConstantTimeCompare(sum[:], a.keys[i][:]) == 1 {
			found = i
		}
	}
	return found
}

// checkKey reports whether key is one of the configured keys.
func (a *API) checkKey(key string) bool { return key != "" && a.keyIndex(key) >= 0 }

// refused counts a failed authorization against a shared rate, so that
// guessing keys is slow: over it the answer is 429.
func (a *API) refused(err *Error) error {
	if !a.badAuth.Allow() {
		return &Error{http.StatusTooManyRequests, "rate_limited", "too many unauthorized requests; retry later"}
	}
	return err
}

func (a *API) limit(key int) error {
	if a.opts.Rate < 0 {
		return nil
	}
	a.lmu.Lock()
	l := a.limiters[key]
	if l == nil {
		l = rate.NewLimiter(rate.Limit(a.opts.Rate), a.opts.Burst)
		a.limiters[key] = l
	}
	a.lmu.Unlock()
	if !l.Allow() {
		return &Error{http.StatusTooManyRequests, "rate_limited", "more than " + strconv.FormatFloat(a.opts.Rate, 'f', -1, 64) + " requests per second with this key"}
	}
	return nil
}

// Error is an API error: an HTTP status, a stable code for programs and a
// message for people. It is sent as {"error":{"code":..., "message":...}}.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return "api: " + e.Code + ": " + e.Message }

var (
	errDisabled     = &Error{http.StatusNotFound, "api_disabled", "the server API is off: no API key is configured (hearth serve --api-key or $HEARTH_API_KEY)"}
	errUnauthorized = &Error{http.StatusUnauthorized, "unauthorized", "invalid API key"}
)

func badRequest(code, msg string) *Error { return &Error{http.StatusBadRequest, code, msg} }

func writeErr(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		var mb *http.MaxBytesError
		switch {
		case errors.As(err, &mb):
			e = &Error{http.StatusRequestEntityTooLarge, "body_too_large", "request body over " + strconv.FormatInt(mb.Limit, 10) + " bytes"}
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
			e = &Error{http.StatusServiceUnavailable, "timeout", "the cluster did not answer in time"}
		default:
			// The broker failed: the cluster's state, not the request. The
			// error itself is logged, not sent (it may name the database).
			e = &Error{http.StatusServiceUnavailable, "unavailable", "the cluster's broker failed; retry"}
		}
	}
	if e.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="hearth"`)
	}
	if e.Status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, e.Status, map[string]*Error{"error": e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"encoding the answer failed"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// decode reads a JSON request body into v: one object, no unknown fields.
func decode(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, _ := strings.Cut(ct, ";")
		mt = strings.TrimSpace(strings.ToLower(mt))
		// curl -d sends application/x-www-form-urlencoded: accept it as JSON.
		if mt != "application/json" && mt != "application/x-www-form-urlencoded" && mt != "text/plain" {
			return &Error{http.StatusUnsupportedMediaType, "unsupported_media_type", "send application/json"}
		}
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return err
		}
		return badRequest("bad_json", "invalid JSON body: "+err.Error())
	}
	if dec.More() {
		return badRequest("bad_json", "invalid JSON body: more than one value")
	}
	return nil
}

//go:embed openapi.json
var openapiJSON []byte
