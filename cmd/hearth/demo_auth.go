package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/channels/token"
)

// demoAuth is the demo's session store and token service: POST /login sets
// a session cookie, GET /token mints a short-lived token for the session,
// POST /logout ends it. Sockets authenticate with the token; the channel
// refreshes it while the session lives and revokes the socket once it ends.
type demoAuth struct {
	keys   *token.Keyring
	ttl    time.Duration
	window [2]float64

	mu       sync.Mutex
	sessions map[string]string // session id -> user name

	tokenCalls atomicCounter // GET /token answers, for the bench tool
}

const sessionCookie = "hearth_session"

func newDemoAuth(ttl time.Duration, window [2]float64) (*demoAuth, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	return &demoAuth{keys: token.NewHS256("demo-1", secret), ttl: ttl, window: window, sessions: make(map[string]string)}, nil
}

func (a *demoAuth) routes(r interface {
	Post(string, http.HandlerFunc)
	Get(string, http.HandlerFunc)
}) {
	r.Post("/login", a.login)
	r.Post("/logout", a.logout)
	r.Get("/token", a.token)
}

func (a *demoAuth) login(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimSpace(r.FormValue("user"))
	if name == "" {
		var body struct{ User string }
		_ = json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&body)
		name = strings.TrimSpace(body.User)
	}
	if name == "" || len(name) > 32 {
		http.Error(w, "user must be 1 to 32 characters", http.StatusBadRequest)
		return
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	sid := hex.EncodeToString(b[:])
	a.mu.Lock()
	a.sessions[sid] = name
	a.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: sid, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	writeJSON(w, http.StatusOK, map[string]string{"user": name})
}

func (a *demoAuth) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		a.mu.Lock()
		delete(a.sessions, c.Value)
		a.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1})
	w.WriteHeader(http.StatusNoContent)
}

// token mints a token while the session is valid, 401 otherwise.
func (a *demoAuth) token(w http.ResponseWriter, r *http.Request) {
	a.tokenCalls.add()
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		http.Error(w, "no session", http.StatusUnauthorized)
		return
	}
	user, ok := a.user(c.Value)
	if !ok {
		http.Error(w, "session ended", http.StatusUnauthorized)
		return
	}
	tok, exp, err := a.keys.Issue(user, c.Value, a.ttl)
	if err != nil {
		http.Error(w, "cannot mint a token", http.StatusInternalServerError)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"token": tok, "expires_at": exp.Unix()})
}

func (a *demoAuth) user(sid string) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	u, ok := a.sessions[sid]
	return u, ok
}

// checkSession is the refresh's session re-check.
func (a *demoAuth) checkSession(_ context.Context, c *token.Claims) error {
	if _, ok := a.user(c.Session); !ok {
		return channels.ErrRevoked
	}
	return nil
}

func (a *demoAuth) refreshOptions() *channels.RefreshOptions {
	return &channels.RefreshOptions{Mint: token.Mint(a.keys, a.ttl, a.checkSession), Window: a.window}
}

// parseWindow parses "0.5-0.9" (fractions of the token lifetime).
func parseWindow(s string) ([2]float64, error) {
	lo, hi, ok := strings.Cut(s, "-")
	var w [2]float64
	if !ok {
		return w, errors.New("want LOW-HIGH, e.g. 0.5-0.9")
	}
	if err := json.Unmarshal([]byte(lo), &w[0]); err != nil {
		return w, errors.New("want LOW-HIGH, e.g. 0.5-0.9")
	}
	if err := json.Unmarshal([]byte(hi), &w[1]); err != nil {
		return w, errors.New("want LOW-HIGH, e.g. 0.5-0.9")
	}
	if w[0] <= 0 || w[1] >= 1 || w[0] > w[1] {
		return w, errors.New("want 0 < LOW <= HIGH < 1")
	}
	return w, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

type atomicCounter struct{ n atomic.Int64 }

func (c *atomicCounter) add()        { c.n.Add(1) }
func (c *atomicCounter) load() int64 { return c.n.Load() }
