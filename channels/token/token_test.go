package token_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/channels/token"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func TestSignVerify(t *testing.T) {
	ctx := context.Background()
	k := token.NewHS256("k1", secret)
	tok, exp, err := k.Issue("user:1", "sess-1", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	c, err := k.Verify(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "user:1" || c.Session != "sess-1" || !c.Expiry().Equal(exp) || c.IssuedAt == nil {
		t.Fatalf("claims = %+v", c)
	}

	expired, _, _ := k.Issue("user:1", "s", -time.Minute)
	if _, err := k.Verify(ctx, expired); !errors.Is(err, token.ErrExpired) {
		t.Fatalf("expired token: %v", err)
	}
	other := token.NewHS256("k1", []byte("another key, also 32 bytes long!"))
	forged, _, _ := other.Issue("user:1", "s", time.Minute)
	if _, err := k.Verify(ctx, forged); !errors.Is(err, token.ErrInvalid) {
		t.Fatalf("token signed with another key: %v", err)
	}
	if _, err := k.Verify(ctx, "not.a.token"); !errors.Is(err, token.ErrInvalid) {
		t.Fatalf("garbage: %v", err)
	}
	// alg "none" is never accepted.
	none := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "x", "exp": time.Now().Add(time.Hour).Unix()})
	none.Header["kid"] = "k1"
	s, _ := none.SignedString(jwt.UnsafeAllowNoneSignatureType)
	if _, err := k.Verify(ctx, s); !errors.Is(err, token.ErrInvalid) {
		t.Fatalf("alg none: %v", err)
	}
	// A token without expiry is refused.
	noExp, _ := k.Sign(token.Claims{RegisteredClaims: jwt.RegisteredClaims{Subject: "x"}})
	if _, err := k.Verify(ctx, noExp); !errors.Is(err, token.ErrInvalid) {
		t.Fatalf("no expiry: %v", err)
	}
}

func TestKeyRotation(t *testing.T) {
	ctx := context.Background()
	k := token.NewHS256("2026-01", secret)
	old, _, _ := k.Issue("u", "s", time.Minute)

	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	k.AddSigner("2026-02", jwt.SigningMethodEdDSA, priv)
	fresh, _, _ := k.Issue("u", "s", time.Minute)
	if !strings.Contains(headerOf(t, fresh), `"kid":"2026-02"`) || !strings.Contains(headerOf(t, fresh), `"alg":"EdDSA"`) {
		t.Fatalf("new tokens are not signed with the new key: %s", headerOf(t, fresh))
	}
	for name, tok := range map[string]string{"old": old, "fresh": fresh} {
		if _, err := k.Verify(ctx, tok); err != nil {
			t.Fatalf("%s token during rotation: %v", name, err)
		}
	}
	k.Remove("2026-01")
	if _, err := k.Verify(ctx, old); !errors.Is(err, token.ErrInvalid) {
		t.Fatalf("token of a removed key: %v", err)
	}
	// Verify-only keys: a token service signs elsewhere.
	verifyOnly := &token.Keyring{}
	verifyOnly.AddVerifier("2026-02", jwt.SigningMethodEdDSA, priv.Public())
	if _, err := verifyOnly.Verify(ctx, fresh); err != nil {
		t.Fatalf("verify-only keyring: %v", err)
	}
	if _, err := verifyOnly.Sign(token.Claims{}); err == nil {
		t.Fatal("a verify-only keyring signed a token")
	}
}

func headerOf(t *testing.T, tok string) string {
	t.Helper()
	p := jwt.NewParser()
	parsed, _, err := p.ParseUnverified(tok, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, k := range []string{"alg", "kid"} {
		b.WriteString(`"` + k + `":"` + parsed.Header[k].(string) + `",`)
	}
	return b.String()
}

func TestAllows(t *testing.T) {
	c := &token.Claims{Channels: []string{"room:lobby", "team:7:*"}}
	for topic, want := range map[string]bool{"room:lobby": true, "room:2": false, "team:7:chat": true, "team:8:chat": false} {
		if got := c.Allows(topic); got != want {
			t.Errorf("Allows(%q) = %v, want %v", topic, got, want)
		}
	}
	if !(&token.Claims{}).Allows("anything") {
		t.Error("claims without channels must allow every topic")
	}
}

func TestConnect(t *testing.T) {
	ctx := context.Background()
	k := token.NewHS256("k", secret)
	connect := token.Connect(k, token.ConnectOptions{})
	valid, exp, _ := k.Issue("user:9", "s", time.Minute)
	expired, _, _ := k.Issue("user:9", "s", -time.Minute)

	reply, err := connect(ctx, channels.ConnectEvent{Token: valid, Params: url.Values{}})
	if err != nil || reply.ID != "user:9" || !reply.ExpiresAt.Equal(exp) || reply.Assigns.(*token.Claims).Subject != "user:9" {
		t.Fatalf("valid bearer token: %+v %v", reply, err)
	}
	if _, err := connect(ctx, channels.ConnectEvent{Params: url.Values{"token": {valid}}}); err != nil {
		t.Fatalf("token in the query: %v", err)
	}
	for name, tc := range map[string]struct {
		ev   channels.ConnectEvent
		code int
	}{
		"missing": {channels.ConnectEvent{Params: url.Values{}}, channels.CloseUnauthorized},
		"invalid": {channels.ConnectEvent{Token: "garbage", Params: url.Values{}}, channels.CloseUnauthorized},
		"expired": {channels.ConnectEvent{Token: expired, Params: url.Values{}}, channels.CloseTokenExpired},
	} {
		_, err := connect(ctx, tc.ev)
		var ce *channels.CloseError
		if !errors.As(err, &ce) || ce.Code != tc.code || !channels.Terminal(ce.Code) {
			t.Errorf("%s token: %v, want close %d", name, err, tc.code)
		}
	}
	optional := token.Connect(k, token.ConnectOptions{Optional: true})
	if reply, err := optional(ctx, channels.ConnectEvent{Params: url.Values{}}); err != nil || reply.Assigns != nil {
		t.Fatalf("optional, anonymous: %+v %v", reply, err)
	}
}

// TestConnectSessionCheck: with ConnectOptions.Session, a valid token of
// an ended session is refused with 4503 at connect (so that phoenix.js,
// reconnecting with the token it held, is refused before the upgrade), and
// a session store that cannot tell gets 1013.
func TestConnectSessionCheck(t *testing.T) {
	ctx := context.Background()
	k := token.NewHS256("k", secret)
	ended := map[string]bool{"gone": true}
	connect := token.Connect(k, token.ConnectOptions{Session: func(_ context.Context, c *token.Claims) error {
		switch {
		case c.Session == "flaky":
			return errors.New("session store unreachable")
		case ended[c.Session]:
			return channels.ErrRevoked
		}
		return nil
	}})
	for sess, want := range map[string]int{"live": 0, "gone": channels.CloseRevoked, "flaky": channels.CloseTryAgainLater} {
		tok, _, _ := k.Issue("user:1", sess, time.Minute)
		_, err := connect(ctx, channels.ConnectEvent{Token: tok, Params: url.Values{}})
		var ce *channels.CloseError
		switch {
		case want == 0 && err != nil:
			t.Errorf("session %s: %v, want connected", sess, err)
		case want != 0 && (!errors.As(err, &ce) || ce.Code != want):
			t.Errorf("session %s: %v, want close %d", sess, err, want)
		}
	}
	// The token is checked first: an expired token of an ended session
	// is "token expired".
	old, _, _ := k.Issue("user:1", "gone", -time.Minute)
	var ce *channels.CloseError
	if _, err := connect(ctx, channels.ConnectEvent{Token: old, Params: url.Values{}}); !errors.As(err, &ce) || ce.Code != channels.CloseTokenExpired {
		t.Errorf("expired token of an ended session: %v", err)
	}
}

// transport records the frames and close of one socket.
type transport struct {
	mu     sync.Mutex
	frames []string
	code   int
}

func (tr *transport) Send(f []byte) bool {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.frames = append(tr.frames, string(f))
	return true
}
func (tr *transport) Close(code int, _ string) { tr.mu.Lock(); tr.code = code; tr.mu.Unlock() }

// TestRefreshAndRevokeWithoutLeakingTokens runs the whole flow on a node
// with debug logging: connect with a token, receive refreshed tokens, end
// the session, get revoked; no token ever appears in the logs.
func TestRefreshAndRevokeWithoutLeakingTokens(t *testing.T) {
	ctx := context.Background()
	k := token.NewHS256("k", secret)
	var logs bytes.Buffer
	var logMu sync.Mutex
	log := slog.New(slog.NewJSONHandler(lockedWriter{&logs, &logMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var sessions sync.Map
	sessions.Store("sess-1", true)
	n := channels.New(channels.Options{
		Logger:  log,
		Connect: token.Connect(k, token.ConnectOptions{}),
		Refresh: &channels.RefreshOptions{Window: [2]float64{0.05, 0.1}, Mint: token.Mint(k, 2*time.Second, func(_ context.Context, c *token.Claims) error {
			if _, ok := sessions.Load(c.Session); !ok {
				return channels.ErrRevoked
			}
			return nil
		})},
	})
	t.Cleanup(n.Wait)
	first, _, _ := k.Issue("user:1", "sess-1", 2*time.Second)
	s, err := n.NewSocket(ctx, channels.ConnectEvent{Token: first, Params: url.Values{}})
	if err != nil {
		t.Fatal(err)
	}
	tr := &transport{}
	s.Start(tr)
	defer s.Closed()

	var seen []string
	waitFor(t, func() bool {
		tr.mu.Lock()
		defer tr.mu.Unlock()
		seen = append([]string(nil), tr.frames...)
		return len(tr.frames) >= 2
	})
	for _, f := range seen {
		if !strings.Contains(f, `"phoenix","token",{"token":"`) {
			t.Fatalf("unexpected frame %q", f)
		}
	}
	sessions.Delete("sess-1") // logout
	waitFor(t, func() bool { tr.mu.Lock(); defer tr.mu.Unlock(); return tr.code != 0 })
	if tr.code != channels.CloseRevoked {
		t.Fatalf("after logout: close %d, want %d", tr.code, channels.CloseRevoked)
	}
	logMu.Lock()
	defer logMu.Unlock()
	out := logs.String()
	if !strings.Contains(out, "token refreshed") || !strings.Contains(out, "socket revoked") {
		t.Fatalf("the flow was not logged:\n%s", out)
	}
	tokens := []string{first}
	for _, f := range seen {
		i := strings.Index(f, `{"token":"`) + len(`{"token":"`)
		tokens = append(tokens, f[i:i+strings.IndexByte(f[i:], '"')])
	}
	for _, tok := range tokens {
		if strings.Contains(out, tok) || strings.Contains(out, tok[strings.LastIndexByte(tok, '.')+1:]) {
			t.Fatalf("a token appears in the logs:\n%s", out)
		}
	}
}

type lockedWriter struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
