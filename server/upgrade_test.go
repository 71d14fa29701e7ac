package server

import (
	"bufio"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"

	"github.com/hearth-rt/hearth/channels"
)

// refusedDial dials rawURL (no vsn added) and returns the HTTP status and
// body of a refused handshake.
func refusedDial(t *testing.T, rawURL string, header http.Header, protocols []string) (int, string) {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: wait, Subprotocols: protocols}
	conn, resp, err := d.Dial(rawURL, header)
	if err == nil {
		_ = conn.Close()
		t.Fatalf("dial %s succeeded, want a refusal", rawURL)
	}
	if resp == nil {
		t.Fatalf("dial %s: %v (no HTTP response)", rawURL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func TestVsn(t *testing.T) {
	srv := newTestServer(t, Options{}, channels.Options{}, nil)
	for _, q := range []string{"?vsn=3.0.0", "?vsn=2.0", "?vsn=2.0.0x"} { // "" and 1.0.0: V1 (longpoll_test.go)
		t.Run("vsn "+q, func(t *testing.T) {
			status, body := refusedDial(t, srv.url+q, nil, nil)
			if status != http.StatusForbidden || !strings.Contains(body, "vsn=2.0.0") {
				t.Fatalf("got %d %q, want 403 naming vsn=2.0.0", status, body)
			}
		})
	}
	c := dial(t, srv.url) // vsn=2.0.0
	c.heartbeat()
}

func TestOrigin(t *testing.T) {
	cases := []struct {
		name    string
		opts    Options
		origin  string // "self" is the server's own origin
		allowed bool
	}{
		{name: "no origin header", origin: "", allowed: true},
		{name: "same host", origin: "self", allowed: true},
		{name: "other host", origin: "https://evil.example", allowed: false},
		{name: "null origin", origin: "null", allowed: false},
		{name: "listed origin", opts: Options{AllowedOrigins: []string{"https://app.example.com"}}, origin: "https://app.example.com", allowed: true},
		{name: "listed origin, case", opts: Options{AllowedOrigins: []string{"https://App.Example.com"}}, origin: "https://app.example.COM", allowed: true},
		{name: "listed origin, other scheme", opts: Options{AllowedOrigins: []string{"https://app.example.com"}}, origin: "http://app.example.com", allowed: false},
		{name: "listed origin excludes same host", opts: Options{AllowedOrigins: []string{"https://app.example.com"}}, origin: "self", allowed: false},
		{name: "host pattern", opts: Options{AllowedOrigins: []string{"*.example.org"}}, origin: "https://a.example.org", allowed: true},
		{name: "host pattern with port", opts: Options{AllowedOrigins: []string{"*.example.org"}}, origin: "https://a.example.org:8443", allowed: true},
		{name: "host pattern, apex", opts: Options{AllowedOrigins: []string{"*.example.org"}}, origin: "https://example.org", allowed: false},
		{name: "host pattern, suffix trick", opts: Options{AllowedOrigins: []string{"*.example.org"}}, origin: "https://a.example.org.evil.net", allowed: false},
		{name: "port pattern", opts: Options{AllowedOrigins: []string{"localhost:*"}}, origin: "http://localhost:5173", allowed: true},
		{name: "skip check", opts: Options{InsecureSkipOriginCheck: true}, origin: "https://evil.example", allowed: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newTestServer(t, tc.opts, channels.Options{}, nil)
			h := http.Header{}
			switch tc.origin {
			case "":
			case "self":
				h.Set("Origin", srv.http.URL)
			default:
				h.Set("Origin", tc.origin)
			}
			if !tc.allowed {
				status, body := refusedDial(t, srv.url+"?vsn=2.0.0", h, nil)
				if status != http.StatusForbidden || !strings.Contains(body, "origin not allowed") {
					t.Fatalf("got %d %q, want 403", status, body)
				}
				return
			}
			c, err := dialWith(t, srv.url, dialOpts{header: h})
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			c.heartbeat()
		})
	}
}

func TestBearerToken(t *testing.T) {
	srv := newTestServer(t, Options{}, channels.Options{}, nil)
	token := "eyJhbGciOi.J9?x>y~~/+=" // has bytes whose base64 needs '-' and '_'

	t.Run("base64url", func(t *testing.T) {
		c, err := dialWith(t, srv.url, dialOpts{protocols: []string{"phoenix", bearer(token)}, query: "room=1"})
		if err != nil {
			t.Fatal(err)
		}
		if p := c.ws.Subprotocol(); p != "phoenix" {
			t.Fatalf("selected subprotocol %q, want phoenix", p)
		}
		ev := srv.rec.lastConnect()
		if ev.Token != token {
			t.Fatalf("connect hook saw token %q, want %q", ev.Token, token)
		}
		if ev.Params.Get("room") != "1" || ev.Params.Get("vsn") != "2.0.0" {
			t.Fatalf("params %v", ev.Params)
		}
		if h := ev.Header.Get("Sec-WebSocket-Protocol"); h != "phoenix" {
			t.Fatalf("connect hook headers carry Sec-WebSocket-Protocol %q; the token must be removed", h)
		}
		if ev.RemoteAddr == "" {
			t.Fatal("no remote address")
		}
	})
	t.Run("standard alphabet as phoenix.js's btoa sends it", func(t *testing.T) {
		plain := "hi~~~there"
		enc := strings.TrimRight(base64.StdEncoding.EncodeToString([]byte(plain)), "=")
		if !strings.ContainsAny(enc, "+") {
			t.Fatalf("test token %q does not exercise the standard alphabet", enc)
		}
		if _, err := dialWith(t, srv.url, dialOpts{protocols: []string{"phoenix", tokenPrefix + enc}}); err != nil {
			t.Fatal(err)
		}
		if got := srv.rec.lastConnect().Token; got != plain {
			t.Fatalf("token %q, want %q", got, plain)
		}
	})
	t.Run("no token", func(t *testing.T) {
		c, err := dialWith(t, srv.url, dialOpts{protocols: []string{"phoenix"}})
		if err != nil {
			t.Fatal(err)
		}
		if c.ws.Subprotocol() != "phoenix" || srv.rec.lastConnect().Token != "" {
			t.Fatalf("subprotocol %q token %q", c.ws.Subprotocol(), srv.rec.lastConnect().Token)
		}
	})
	t.Run("malformed", func(t *testing.T) {
		status, body := refusedDial(t, srv.url+"?vsn=2.0.0", nil, []string{"phoenix", tokenPrefix + "a"})
		if status != http.StatusBadRequest || !strings.Contains(body, "auth token") {
			t.Fatalf("got %d %q", status, body)
		}
	})
}

func TestConnectHookRefusal(t *testing.T) {
	srv := newTestServer(t, Options{}, channels.Options{}, nil)
	t.Run("error: 403", func(t *testing.T) {
		status, body := refusedDial(t, srv.url+"?vsn=2.0.0&deny=1", nil, nil)
		if status != http.StatusForbidden || strings.TrimSpace(body) != "denied by the test hook" {
			t.Fatalf("got %d %q", status, body)
		}
	})
	t.Run("CloseError, Phoenix client: 403 before the upgrade", func(t *testing.T) {
		status, body := refusedDial(t, srv.url+"?vsn=2.0.0&close=1", nil, nil)
		if status != http.StatusForbidden || strings.TrimSpace(body) != "server: unauthorized (close 4501)" {
			t.Fatalf("got %d %q", status, body)
		}
	})
	t.Run("CloseError, Hearth client: close code readable by the client", func(t *testing.T) {
		c, err := dialWith(t, srv.url, dialOpts{query: "close=1&" + channels.ExtParam + "=1"})
		if err != nil {
			t.Fatal(err)
		}
		c.expectClose(channels.CloseUnauthorized, "unauthorized")
	})
	eventually(t, "refused connections to end", func() bool { return srv.Connections() == 0 })
	if n := srv.node.Sockets(); n != 0 {
		t.Fatalf("%d sockets", n)
	}
}

func TestNotAWebSocketRequest(t *testing.T) {
	srv := newTestServer(t, Options{}, channels.Options{}, nil)
	status, body := httpGet(t, srv.http.URL+"/socket/websocket?vsn=2.0.0", nil)
	if status != http.StatusUpgradeRequired || !strings.Contains(body, "WebSocket") {
		t.Fatalf("got %d %q", status, body)
	}
	if len(srv.rec.connects) != 0 {
		t.Fatal("the connect hook ran for a plain HTTP request")
	}
}

// TestFramesRightAfterRequest sends the upgrade request and a first frame
// in one write: the frame lands in net/http's buffer, which the server
// must not lose.
func TestFramesRightAfterRequest(t *testing.T) {
	srv := newTestServer(t, Options{}, channels.Options{}, nil)
	nc, err := net.Dial("tcp", srv.http.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	_ = nc.SetDeadline(deadline())
	req := "GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\n" +
		"Host: " + srv.http.Listener.Addr().String() + "\r\n" +
		"Upgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	data := append([]byte(req), rawFrame(true, 0, 0x1, []byte(`[null,"1","phoenix","heartbeat",{}]`))...)
	if _, err := nc.Write(data); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	h, err := ws.ReadHeader(br)
	if err != nil || h.Length > 1024 {
		t.Fatalf("frame header %+v, %v", h, err)
	}
	payload := make([]byte, h.Length)
	if _, err := io.ReadFull(br, payload); err != nil {
		t.Fatal(err)
	}
	if string(payload) != `[null,"1","phoenix","phx_reply",{"status":"ok","response":{}}]` {
		t.Fatalf("got %q", payload)
	}
}
