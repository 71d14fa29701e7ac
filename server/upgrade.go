package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"path"
	"strings"

	"github.com/gobwas/ws"

	"github.com/hearth-rt/hearth/channels"
)

// Vsn is the protocol version the server speaks natively: Phoenix V2.
const Vsn = "2.0.0"

// VsnV1 is Phoenix's V1 serializer (JSON objects, text only), which the
// server also speaks, as Phoenix does, and assumes when a client gives no
// vsn. A V1 connection is translated to V2 at its edge (see v1.go).
const VsnV1 = "1.0.0"

// Subprotocol is the WebSocket subprotocol the server selects when the
// client offers it, as Phoenix does.
const Subprotocol = "phoenix"

// tokenPrefix introduces the Phoenix 1.8 auth token among the offered
// subprotocols: "base64url.bearer.phx.<base64url(token), no padding>".
const tokenPrefix = "base64url.bearer.phx."

// upgrader writes the 101 response. It selects only "phoenix", never the
// subprotocol that carries the token.
var upgrader = ws.HTTPUpgrader{
	Protocol: func(p string) bool { return p == Subprotocol },
}

// serveUpgrade checks a socket request, runs the connect hook and upgrades.
func (s *Server) serveUpgrade(w http.ResponseWriter, r *http.Request) {
	log := s.log.With("remote", r.RemoteAddr)
	params := r.URL.Query()
	v1, ok := lpVersion(params.Get("vsn"))
	if !ok {
		log.Debug("upgrade refused: unsupported vsn", "vsn", truncate(params.Get("vsn"), 16))
		http.Error(w, "server: unsupported protocol version: connect with vsn="+Vsn+" (Phoenix V2) or "+VsnV1, http.StatusForbidden)
		return
	}
	if status, msg := checkWebSocketRequest(r); status != 0 {
		log.Debug("upgrade refused: not a WebSocket request", "status", status)
		if status == http.StatusUpgradeRequired {
			w.Header().Set("Sec-WebSocket-Version", "13")
		}
		http.Error(w, msg, status)
		return
	}
	if !s.checkOrigin(r) {
		s.logOriginRefused(log, r)
		http.Error(w, "server: origin not allowed", http.StatusForbidden)
		return
	}
	coolKey := s.trackedKey(r)
	if s.refuseCoolingDown(w, r, coolKey) {
		return
	}
	remote, ok := s.admit(w, r) // sheds before any work for the connect hook
	if !ok {
		return
	}
	slot := true // the admission slot, handed to the connection once registered
	defer func() {
		if slot {
			s.adm.release()
		}
	}()
	token, header, err := authToken(r.Header)
	if err != nil {
		log.Debug("upgrade refused: malformed auth token")
		http.Error(w, "server: "+err.Error(), http.StatusBadRequest)
		return
	}

	ctx, cancel := context.WithTimeout(r.Context(), s.opts.HandshakeTimeout)
	sock, err := s.node.NewSocket(ctx, channels.ConnectEvent{
		Params:     params,
		Token:      token,
		Header:     header,
		RemoteAddr: remote, // the client's, from a trusted proxy's header
	})
	cancel()
	var refusal *channels.CloseError
	if err != nil && !errors.As(err, &refusal) {
		log.Debug("connection refused by the connect hook", "err", err)
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	}
	if refusal != nil && coolKey != 0 {
		// A client that cannot read the close code: refuse before the
		// upgrade, so that its backoff holds (refuse.go).
		code, reason := channels.CloseCode(refusal)
		log.Debug("connection refused by the connect hook", "code", code, "reason", reason)
		s.stats.refusedHTTP.Add(1)
		s.refuseConnect(w, code, reason, 0)
		return
	}

	up := upgrader
	up.Timeout = s.opts.HandshakeTimeout
	deflate := new(bool)
	if s.deflater != nil {
		up.Negotiate, deflate = negotiateDeflate() // compress.go
	}
	nc, rw, _, err := up.Upgrade(r, w)
	if err != nil {
		// The upgrader has answered the client with an HTTP error.
		log.Debug("upgrade failed", "err", err)
		if nc != nil {
			_ = nc.Close()
		}
		if sock != nil {
			sock.Closed() // never started: releases its context
		}
		return
	}
	// Keep what net/http read past the request (a client may send frames
	// right after its request), then let its buffers go.
	var pre []byte
	if n := rw.Reader.Buffered(); n > 0 {
		b, _ := rw.Reader.Peek(n)
		pre = bytes.Clone(b)
	}

	s.stats.upgrades.Add(1)
	c := newConn(s, nc, sock, pre, *deflate)
	c.v1 = v1
	c.coolKey = coolKey
	slot = false // unregister gives it back
	s.stats.accepted.Add(1)
	open := s.register(c)
	switch {
	case sock == nil:
		code, reason := channels.CloseCode(refusal)
		log.Debug("connection refused with a close code", "conn", c.id, "code", code, "reason", reason)
		c.Close(code, reason)
	case v1:
		sock.Start(v1Conn{c})
		log.Debug("connected (vsn 1.0.0)", "conn", c.id, "socket_id", sock.ID())
		if !open {
			s.closeLate(c)
		}
	default:
		sock.Start(c)
		log.Debug("connected", "conn", c.id, "socket_id", sock.ID())
		if !open {
			s.closeLate(c) // Shutdown began during the handshake
		}
	}
	c.startReading()
}

// trackedKey returns the key under which a client that does not read
// Hearth's close codes is remembered for Options.ReconnectCooldown, or 0
// for a client that reads them (it is upgraded to be told the code, and
// backs off by itself), or when cooldowns are off.
func (s *Server) trackedKey(r *http.Request) uint64 {
	if readsCloseCodes(r) {
		return 0
	}
	if s.opts.ReconnectCooldown <= 0 {
		return 1 // refusals still go before the upgrade; nothing is remembered
	}
	return s.cooldownKey(r)
}

// checkWebSocketRequest returns a non-zero HTTP status and a message when
// r is not a WebSocket upgrade request, before the connect hook runs.
func checkWebSocketRequest(r *http.Request) (int, string) {
	switch {
	case r.Method != http.MethodGet:
		return http.StatusMethodNotAllowed, "server: WebSocket upgrade requires GET"
	case !headerHasToken(r.Header, "Connection", "upgrade") || !headerHasToken(r.Header, "Upgrade", "websocket"):
		return http.StatusUpgradeRequired, "server: this endpoint only accepts WebSocket upgrades"
	case r.Header.Get("Sec-Websocket-Version") != "13": // canonical keys: no allocation
		return http.StatusUpgradeRequired, "server: unsupported WebSocket version (13 required)"
	case r.Header.Get("Sec-Websocket-Key") == "":
		return http.StatusBadRequest, "server: missing Sec-WebSocket-Key"
	}
	return 0, ""
}

// headerHasToken reports whether a comma-separated header contains token,
// case-insensitively.
func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h.Values(key) {
		for v != "" {
			var t string
			t, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// checkOrigin applies the origin policy of the options.
func (s *Server) checkOrigin(r *http.Request) bool {
	if s.opts.InsecureSkipOriginCheck {
		return true
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true // not a browser: nothing to protect against
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if len(s.opts.AllowedOrigins) == 0 {
		return strings.EqualFold(u.Host, r.Host)
	}
	host := strings.ToLower(u.Host)
	for _, pat := range s.opts.AllowedOrigins {
		pat = strings.ToLower(pat)
		if strings.Contains(pat, "://") {
			if pat == strings.ToLower(origin) {
				return true
			}
			continue
		}
		if ok, _ := path.Match(pat, host); ok {
			return true
		}
		if !strings.Contains(pat, ":") {
			if ok, _ := path.Match(pat, u.Hostname()); ok {
				return true
			}
		}
	}
	return false
}

// authToken extracts the Phoenix 1.8 auth token from the offered
// subprotocols. It returns the headers with that subprotocol removed, so
// that an application logging the ConnectEvent's headers cannot leak it.
func authToken(h http.Header) (string, http.Header, error) {
	vals := h.Values("Sec-WebSocket-Protocol")
	found := false
	for _, v := range vals {
		if strings.Contains(v, tokenPrefix) {
			found = true
		}
	}
	if !found {
		return "", h, nil
	}
	var token string
	var kept []string
	for _, v := range vals {
		for v != "" {
			var p string
			p, v, _ = strings.Cut(v, ",")
			p = strings.TrimSpace(p)
			enc, ok := strings.CutPrefix(p, tokenPrefix)
			if !ok {
				if p != "" {
					kept = append(kept, p)
				}
				continue
			}
			t, err := decodeToken(enc)
			if err != nil {
				return "", nil, err
			}
			token = t
		}
	}
	h = h.Clone()
	h.Del("Sec-WebSocket-Protocol")
	if len(kept) > 0 {
		h.Set("Sec-WebSocket-Protocol", strings.Join(kept, ", "))
	}
	return token, h, nil
}

// decodeToken decodes base64url without padding, the encoding Phoenix 1.8
// specifies. Standard-alphabet input (what phoenix.js's btoa produces) and
// padding are accepted too.
func decodeToken(enc string) (string, error) {
	enc = strings.TrimRight(enc, "=")
	enc = strings.NewReplacer("+", "-", "/", "_").Replace(enc)
	b, err := base64.RawURLEncoding.DecodeString(enc)
	if err != nil {
		return "", errors.New("malformed auth token in Sec-WebSocket-Protocol (base64url expected)")
	}
	return string(b), nil
}

// truncate shortens a client-controlled string before logging it.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
