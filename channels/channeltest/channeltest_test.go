package channeltest_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/channels/channeltest"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// connect names the socket after its "name" param and refuses sockets
// without one.
func connect(_ context.Context, ev channels.ConnectEvent) (channels.ConnectReply, error) {
	name := ev.Params.Get("name")
	if name == "" {
		return channels.ConnectReply{}, channels.Refuse("unauthorized")
	}
	return channels.ConnectReply{ID: name, Assigns: name}, nil
}

// room is the channel under test: "room:*", members only, with a chat
// event, an echo that answers binary with the bytes reversed, and a greeting pushed
// on join.
func room(n *channels.Node) {
	n.Handle("room:*", channels.Handler{
		Join: func(_ context.Context, c *channels.Channel, ev channels.JoinEvent) (channels.JoinReply, error) {
			if ev.Topic == "room:secret" {
				return channels.JoinReply{}, channels.Refuse("forbidden")
			}
			if err := c.Push("welcome", map[string]string{"to": c.Socket().Assigns().(string)}); err != nil {
				return channels.JoinReply{}, err
			}
			return channels.JoinReply{Response: map[string]string{"topic": ev.Topic}}, nil
		},
		In: func(ctx context.Context, c *channels.Channel, ev channels.InEvent) (channels.Reply, error) {
			switch ev.Event {
			case "new_msg":
				var m struct{ Body string }
				if err := ev.Decode(&m); err != nil || m.Body == "" {
					return channels.ErrorReply(map[string]string{"reason": "empty body"}), nil
				}
				return channels.OK(nil), c.Broadcast(ctx, "new_msg", map[string]string{"from": c.Socket().Assigns().(string), "body": m.Body})
			case "echo":
				if ev.Binary {
					out := bytes.Clone(ev.Payload)
					slices.Reverse(out)
					return channels.OK(out), nil
				}
				return channels.OK(json.RawMessage(ev.Payload)), nil
			}
			return channels.ErrorReply(map[string]string{"reason": "unknown event " + ev.Event}), nil
		},
	})
}

func newServer(t *testing.T) *channeltest.Server {
	return channeltest.NewServer(t, channels.Options{Connect: connect}, room)
}

func TestJoinPushBroadcast(t *testing.T) {
	srv := newServer(t)
	ada := channeltest.Dial(t, srv.URL, url.Values{"name": {"ada"}})
	bob := channeltest.Dial(t, srv.URL, url.Values{"name": {"bob"}})

	if r := ada.Join("room:secret", nil); r.Status != "error" || r.Reason() != "forbidden" {
		t.Errorf("join room:secret: %s %s, want error forbidden", r.Status, r.Response)
	}
	for _, c := range []*channeltest.Client{ada, bob} {
		r := c.Join("room:1", nil)
		if r.Status != "ok" || string(r.Response) != `{"topic":"room:1"}` {
			t.Fatalf("join room:1: %s %s", r.Status, r.Response)
		}
	}
	var w struct{ To string }
	bob.Expect("room:1", "welcome").Decode(t, &w)
	if w.To != "bob" {
		t.Errorf("bob's welcome is for %q", w.To)
	}

	if r := ada.Push("room:1", "new_msg", map[string]string{"body": ""}); r.Status != "error" || r.Reason() != "empty body" {
		t.Errorf("empty new_msg: %s %s, want error empty body", r.Status, r.Response)
	}
	if r := ada.Push("room:1", "new_msg", map[string]string{"body": "hi"}); r.Status != "ok" {
		t.Fatalf("new_msg: %s %s", r.Status, r.Response)
	}
	for name, c := range map[string]*channeltest.Client{"ada": ada, "bob": bob} {
		var m struct{ From, Body string }
		c.Expect("room:1", "new_msg").Decode(t, &m)
		if m.From != "ada" || m.Body != "hi" {
			t.Errorf("%s got %+v, want ada's hi", name, m)
		}
		// One push, one broadcast: the rejected one never went out.
		c.Refute("room:1", "new_msg", 50*time.Millisecond)
	}

	if r := bob.Leave("room:1"); r.Status != "ok" {
		t.Errorf("leave: %s %s", r.Status, r.Response)
	}
	if r := ada.Push("room:1", "new_msg", map[string]string{"body": "anyone?"}); r.Status != "ok" {
		t.Fatalf("new_msg: %s %s", r.Status, r.Response)
	}
	ada.Expect("room:1", "new_msg")
	bob.Refute("room:1", "new_msg", 50*time.Millisecond)
}

func TestBinary(t *testing.T) {
	srv := newServer(t)
	ada := channeltest.Dial(t, srv.URL, url.Values{"name": {"ada"}})
	ada.Join("room:1", nil)
	r := ada.PushBinary("room:1", "echo", []byte{'a', 0, 0xff, 'b'})
	if r.Status != "ok" || !bytes.Equal(r.Response, []byte{'b', 0xff, 0, 'a'}) {
		t.Errorf("binary echo: %s %q", r.Status, r.Response)
	}
	if r := ada.Push("room:1", "echo", map[string]int{"n": 7}); r.Status != "ok" || string(r.Response) != `{"n":7}` {
		t.Errorf("json echo: %s %s", r.Status, r.Response)
	}
	// A binary broadcast reaches the client as a binary message.
	if err := srv.Node.Broadcast(context.Background(), "room:1", "blob", []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	m := ada.Expect("room:1", "blob")
	if !m.Binary || !bytes.Equal(m.Payload, []byte{1, 2, 3}) {
		t.Errorf("blob: binary %v payload %v", m.Binary, m.Payload)
	}
}

func TestOrderAndNext(t *testing.T) {
	srv := newServer(t)
	ada := channeltest.Dial(t, srv.URL, url.Values{"name": {"ada"}})
	ada.Join("room:1", nil)
	ada.Expect("room:1", "welcome")
	for i := range 5 {
		if err := srv.Node.Broadcast(context.Background(), "room:1", fmt.Sprintf("e%d", i), map[string]int{"i": i}); err != nil {
			t.Fatal(err)
		}
	}
	// Taking e3 first leaves the others in the order they arrived.
	ada.Expect("room:1", "e3")
	for _, want := range []string{"e0", "e1", "e2", "e4"} {
		if m := ada.Next(); m.Event != want || m.Topic != "room:1" {
			t.Errorf("next: %s on %s, want %s", m.Event, m.Topic, want)
		}
	}
}

func TestExpectClose(t *testing.T) {
	srv := newServer(t)
	ada := channeltest.Dial(t, srv.URL, url.Values{"name": {"ada"}})
	ada.Join("room:1", nil)
	if err := srv.Node.Broadcast(context.Background(), "room:1", "last", nil); err != nil {
		t.Fatal(err)
	}
	ada.Expect("room:1", "last") // delivered before the close below
	if err := srv.Node.Disconnect(context.Background(), "ada", 0, ""); err != nil {
		t.Fatal(err)
	}
	if code, _ := ada.ExpectClose(); code != channels.CloseDisconnected {
		t.Errorf("close code %d, want %d", code, channels.CloseDisconnected)
	}
	// The welcome pushed on join is still there to take.
	ada.Expect("room:1", "welcome")
}

// fakeT is a testing.TB that records failures; Fatalf ends the goroutine
// as testing.T does, so the helpers run in one of their own.
type fakeT struct {
	testing.TB
	mu       sync.Mutex
	failures []string
	cleanups []func()
}

func (f *fakeT) Helper() {}
func (f *fakeT) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures = append(f.failures, fmt.Sprintf(format, args...))
}
func (f *fakeT) Fatalf(format string, args ...any) {
	f.Errorf(format, args...)
	runtime.Goexit()
}
func (f *fakeT) Cleanup(fn func()) { f.cleanups = append(f.cleanups, fn) }

// run runs fn with a fakeT and returns its failures, after its cleanups.
func run(fn func(ft *fakeT)) []string {
	ft := &fakeT{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(ft)
	}()
	<-done
	for i := len(ft.cleanups) - 1; i >= 0; i-- {
		ft.cleanups[i]()
	}
	return ft.failures
}

func TestFailures(t *testing.T) {
	srv := newServer(t)
	defer func(d time.Duration) { channeltest.Timeout = d }(channeltest.Timeout)
	channeltest.Timeout = 200 * time.Millisecond

	for _, tc := range []struct {
		name, want string
		fn         func(ft *fakeT)
	}{
		{"refused dial", "dial " + srv.URL, func(ft *fakeT) {
			channeltest.Dial(ft, srv.URL, nil)
		}},
		{"expect times out", "waiting for nope on room:1: timed out", func(ft *fakeT) {
			c := channeltest.Dial(ft, srv.URL, url.Values{"name": {"eve"}})
			c.Join("room:1", nil)
			c.Expect("room:1", "nope")
		}},
		{"refute sees a message", `got welcome on room:1, want none within 1s: {"to":"eve"}`, func(ft *fakeT) {
			c := channeltest.Dial(ft, srv.URL, url.Values{"name": {"eve"}})
			c.Join("room:1", nil)
			c.Refute("room:1", "welcome", time.Second)
		}},
		{"push after the server closed", "closed by the server: 4100", func(ft *fakeT) {
			c := channeltest.Dial(ft, srv.URL, url.Values{"name": {"mallory"}})
			c.Join("room:1", nil)
			_ = srv.Node.Disconnect(context.Background(), "mallory", 0, "")
			c.ExpectClose()
			c.Push("room:1", "new_msg", map[string]string{"body": "late"})
		}},
		{"no close", "did not close the connection within", func(ft *fakeT) {
			c := channeltest.Dial(ft, srv.URL, url.Values{"name": {"eve"}})
			c.ExpectClose()
		}},
		{"undecodable payload", "welcome on room:1: payload", func(ft *fakeT) {
			c := channeltest.Dial(ft, srv.URL, url.Values{"name": {"eve"}})
			c.Join("room:1", nil)
			var n int
			c.Expect("room:1", "welcome").Decode(ft, &n)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := run(tc.fn)
			if len(got) != 1 || !strings.Contains(got[0], tc.want) {
				t.Errorf("failures %q, want one containing %q", got, tc.want)
			}
		})
	}
}

// TestDialWith sends a bearer token (the Phoenix 1.8 way, outside the URL)
// and a cookie; the connect hook sees both.
func TestDialWith(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv := channeltest.NewServer(t, channels.Options{
		Connect: func(_ context.Context, ev channels.ConnectEvent) (channels.ConnectReply, error) {
			mu.Lock()
			defer mu.Unlock()
			c := ev.Cookie("session")
			if ev.Token == "" || c == nil {
				return channels.ConnectReply{}, channels.Refuse("unauthorized")
			}
			seen = append(seen, ev.Token+" "+c.Value+" "+ev.Params.Get("v"))
			return channels.ConnectReply{}, nil
		},
	}, room)
	c := channeltest.DialWith(t, srv.URL, channeltest.DialOptions{
		Params: url.Values{"v": {"1"}},
		Token:  "tok.en/+=",
		Header: http.Header{"Cookie": {"session=abc"}},
	})
	c.Close()
	mu.Lock()
	got := seen
	mu.Unlock()
	if len(got) != 1 || got[0] != "tok.en/+= abc 1" {
		t.Fatalf("connect saw %q", got)
	}
	if got := run(func(ft *fakeT) { channeltest.Dial(ft, srv.URL, nil) }); len(got) != 1 || !strings.Contains(got[0], "dial") {
		t.Fatalf("dial without the token: %q", got)
	}
}
