package main

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/channels/token"
)

// demoAuth is the demo's session and token service: POST /login sets a
// signed session cookie, GET /token mints a short-lived token for the
// session, POST /logout ends it. Sockets authenticate with the token; the
// channel refreshes it while the session lives and revokes the socket once
// it ended.
//
// Sessions are stateless (a signed cookie) and the signing secret is stable
// (--secret, $HEARTH_SECRET, or one kept in the user's cache directory), so
// sessions and tokens survive a restart and work on every node of a
// cluster. A logout is announced to every node through the cluster's
// control messages.
type demoAuth struct {
	secret []byte
	keys   *token.Keyring
	ttl    time.Duration
	window [2]float64
	node   *channels.Node // set once the node exists, for announcing logouts

	mu      sync.Mutex
	revoked map[string]bool // ended session ids

	tokenCalls atomic.Int64 // GET /token answers, for the bench tool's storm scenario
}

const (
	sessionCookie = "hearth_session"
	controlLogout = "demo.logout"
)

func newDemoAuth(secret []byte, ttl time.Duration, window [2]float64) *demoAuth {
	return &demoAuth{
		secret:  secret,
		keys:    token.NewHS256("demo-1", derive(secret, "token")),
		ttl:     ttl,
		window:  window,
		revoked: make(map[string]bool),
	}
}

// demoSecret returns the secret given, or the one kept in the user's cache
// directory (created on first use).
func demoSecret(given string) ([]byte, string, error) {
	if given != "" {
		if len(given) < 16 {
			return nil, "", errors.New("--secret must be at least 16 characters")
		}
		return []byte(given), "flag or $HEARTH_SECRET", nil
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	path := filepath.Join(dir, "hearth", "demo-secret")
	if b, err := os.ReadFile(path); err == nil && len(b) >= 32 {
		return b, path, nil
	}
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, "", fmt.Errorf("keeping the demo secret: %w", err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, "", fmt.Errorf("keeping the demo secret: %w", err)
	}
	return b, path, nil
}

func derive(secret []byte, purpose string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("hearth-demo:" + purpose))
	return m.Sum(nil)
}

// attach registers the logout announcements with the node.
func (a *demoAuth) attach(n *channels.Node) {
	a.node = n
	n.HandleControl(controlLogout, func(sid []byte) {
		a.mu.Lock()
		a.revoked[string(sid)] = true
		a.mu.Unlock()
	})
}

func (a *demoAuth) routes(r interface {
	Post(string, http.HandlerFunc)
	Get(string, http.HandlerFunc)
}) {
	r.Post("/login", a.login)
	r.Post("/logout", a.logout)
	r.Get("/token", a.token)
}

// cookie value: <sid>.<base64url(user)>.<base64url(hmac)>
func (a *demoAuth) sessionValue(sid, user string) string {
	body := sid + "." + base64.RawURLEncoding.EncodeToString([]byte(user))
	m := hmac.New(sha256.New, derive(a.secret, "session"))
	m.Write([]byte(body))
	return body + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// session returns the session id and user of a valid, not ended session.
func (a *demoAuth) session(r *http.Request) (sid, user string, ok bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return "", "", false
	}
	parts := strings.Split(c.Value, ".")
	if len(parts) != 3 || !hmac.Equal([]byte(a.sessionValue(parts[0], decodeUser(parts[1]))), []byte(c.Value)) {
		return "", "", false
	}
	if a.ended(parts[0]) {
		return "", "", false
	}
	return parts[0], decodeUser(parts[1]), true
}

func decodeUser(s string) string {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return ""
	}
	return string(b)
}

func (a *demoAuth) ended(sid string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.revoked[sid]
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
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: a.sessionValue(sid, name), Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	writeJSON(w, http.StatusOK, map[string]string{"user": name})
}

// logout ends the session on every node: the next token refresh of its
// sockets revokes them.
func (a *demoAuth) logout(w http.ResponseWriter, r *http.Request) {
	if sid, _, ok := a.session(r); ok {
		if err := a.node.PublishControl(r.Context(), controlLogout, []byte(sid)); err != nil {
			http.Error(w, "logout failed", http.StatusServiceUnavailable)
			return
		}
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1})
	w.WriteHeader(http.StatusNoContent)
}

// token mints a token while the session is valid, 401 otherwise.
func (a *demoAuth) token(w http.ResponseWriter, r *http.Request) {
	a.tokenCalls.Add(1)
	sid, user, ok := a.session(r)
	if !ok {
		http.Error(w, "no session", http.StatusUnauthorized)
		return
	}
	tok, exp, err := a.keys.Issue(user, sid, a.ttl)
	if err != nil {
		http.Error(w, "cannot mint a token", http.StatusInternalServerError)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"token": tok, "expires_at": exp.Unix()})
}

// checkSession is the refresh's session re-check.
func (a *demoAuth) checkSession(_ context.Context, c *token.Claims) error {
	if c.Session == "" || a.ended(c.Session) {
		return channels.ErrRevoked
	}
	return nil
}

func (a *demoAuth) refreshOptions() *channels.RefreshOptions {
	return &channels.RefreshOptions{Mint: token.Mint(a.keys, a.ttl, a.checkSession), Window: a.window}
}

// parseWindow parses "0.5-0.9" (fractions of the token lifetime).
func parseWindow(s string) ([2]float64, error) {
	var w [2]float64
	lo, hi, ok := strings.Cut(s, "-")
	bad := errors.New("want LOW-HIGH, e.g. 0.5-0.9")
	if !ok || json.Unmarshal([]byte(lo), &w[0]) != nil || json.Unmarshal([]byte(hi), &w[1]) != nil {
		return w, bad
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
