package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// AuthSpec signs a group's clients in to the demo's token service (a
// `hearth serve` node's POST /login and GET /token, see cmd/hearth's
// demoAuth): each client signs in once as its own user, then connects with
// a token (?token=), which the nodes verify (and whose session they
// re-check) at every connect.
type AuthSpec struct {
	// Service is the token service's host:port.
	Service string `json:"service"`
	// Strategy is what a client does for a token before a connect attempt:
	// tokensRefresh (Hearth's client: the token the server last pushed
	// over the socket while it is valid, else one from the service, as the
	// JavaScript client's authToken function) or tokensFetch (one from the
	// service before every attempt, as a phoenix.js app that fetches its
	// token in params).
	Strategy string `json:"strategy"`
	// UserPrefix names the clients' users (prefix + client index).
	UserPrefix string `json:"user_prefix,omitempty"`
}

func (a *AuthSpec) validate() error {
	if a.Service == "" {
		return errors.New("bench: AuthSpec has no token service address")
	}
	if a.Strategy != tokensRefresh && a.Strategy != tokensFetch {
		return fmt.Errorf("bench: unknown token strategy %q (want %s or %s)", a.Strategy, tokensRefresh, tokensFetch)
	}
	return nil
}

// tokenMargin is how long before its expiry a pushed token is no longer
// used (the JavaScript client's TOKEN_MARGIN_MS).
const tokenMargin = time.Second

// tokenService is a worker's HTTP client for one token service, with one
// connection pool per source address.
type tokenService struct {
	base string
	mu   sync.Mutex
	http map[string]*http.Client
}

func newTokenService(addr string) *tokenService {
	return &tokenService{base: "http://" + addr, http: make(map[string]*http.Client)}
}

func (s *tokenService) client(src string) *http.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.http[src]; c != nil {
		return c
	}
	d := &net.Dialer{Timeout: 5 * time.Second, Control: bindNoPort}
	if src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: d.DialContext, MaxIdleConns: 256, MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second,
	}}
	s.http[src] = c
	return c
}

func (s *tokenService) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.http {
		c.CloseIdleConnections()
	}
}

// login signs user in and returns the session cookie ("name=value").
func (s *tokenService) login(ctx context.Context, src, user string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"/login", strings.NewReader(url.Values{"user": {user}}.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := s.client(src).Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	if res.StatusCode != http.StatusOK {
		return "", &HandshakeError{Status: res.StatusCode}
	}
	for _, c := range res.Cookies() {
		if c.Value != "" {
			return c.Name + "=" + c.Value, nil
		}
	}
	return "", errors.New("bench: POST /login set no session cookie")
}

// token asks the service for a token for the session.
func (s *tokenService) token(ctx context.Context, src, cookie string) (string, time.Time, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/token", nil)
	if err != nil {
		return "", time.Time{}, err
	}
	req.Header.Set("Cookie", cookie)
	res, err := s.client(src).Do(req)
	if err != nil {
		return "", time.Time{}, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, res.Body)
		return "", time.Time{}, &HandshakeError{Status: res.StatusCode}
	}
	var tok struct {
		Token     string `json:"token"`
		ExpiresAt int64  `json:"expires_at"`
	}
	if err := json.NewDecoder(res.Body).Decode(&tok); err != nil || tok.Token == "" {
		return "", time.Time{}, fmt.Errorf("bench: GET /token: bad answer (%v)", err)
	}
	return tok.Token, time.Unix(tok.ExpiresAt, 0), nil
}

// logout ends the session on every node of the cluster.
func (s *tokenService) logout(ctx context.Context, cookie string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"/logout", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Cookie", cookie)
	res, err := s.client("").Do(req)
	if err != nil {
		return err
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent && res.StatusCode != http.StatusOK {
		return fmt.Errorf("bench: POST /logout: HTTP %d", res.StatusCode)
	}
	return nil
}

// connectQuery returns the query part carrying the token for the next
// connect attempt, signing in first if the client has no session. It
// reports whether the token is one the server pushed. Called from the
// client's goroutine only.
func (c *client) connectQuery(ctx context.Context, src string) (string, bool, error) {
	g := c.g
	a := g.spec.Auth
	if a.Strategy == tokensRefresh {
		c.mu.Lock()
		tok, exp := c.pushedTok, c.pushedExp
		if tok != "" && !time.Now().Before(exp.Add(-tokenMargin)) {
			c.pushedTok = "" // expired: back to the app's token function
			tok = ""
		}
		c.mu.Unlock()
		if tok != "" {
			return "&token=" + url.QueryEscape(tok), true, nil
		}
	}
	if c.session == "" {
		g.add(cLogins, 1)
		s, err := g.auth.login(ctx, src, a.UserPrefix+strconv.Itoa(c.idx))
		if err != nil {
			return "", false, fmt.Errorf("login: %w", err)
		}
		c.session = s
	}
	g.add(cTokenCalls, 1)
	g.event(seriesToken, "")
	tok, _, err := g.auth.token(ctx, src, c.session)
	if err != nil {
		return "", false, err
	}
	return "&token=" + url.QueryEscape(tok), false, nil
}

// pushedToken handles the server's token refresh,
// [null, null, "phoenix", "token", {"token", "expires_at"}]. c.mu held.
func (c *client) pushedToken(payload []byte) {
	g := c.g
	if g.spec.Auth == nil {
		return
	}
	var p struct {
		Token     string `json:"token"`
		ExpiresAt int64  `json:"expires_at"`
	}
	if json.Unmarshal(payload, &p) != nil || p.Token == "" {
		g.event(seriesError, "bad_token_push")
		return
	}
	g.add(cRefreshes, 1)
	if !c.gotPush {
		c.gotPush = true
		g.add(cRefreshedClients, 1)
	}
	if g.spec.Auth.Strategy == tokensRefresh { // phoenix.js does not know the event
		c.pushedTok, c.pushedExp = p.Token, time.Unix(p.ExpiresAt, 0)
	}
}
