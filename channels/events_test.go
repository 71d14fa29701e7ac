package channels_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/channels/channeltest"
)

type chatIn struct {
	Body  string   `json:"body"`
	Tags  []string `json:"tags,omitempty"`
	Reply *int     `json:"reply_to,omitempty"`
}

type chatAck struct {
	ID   int       `json:"id"`
	Seen time.Time `json:"seen"`
}

type chatOut struct {
	User string `json:"user"`
	Body string `json:"body"`
}

// typedRoom declares a typed push (new_msg), a typed broadcast (new_msg),
// and keeps an untyped In for the rest.
func typedRoom(n *channels.Node) {
	n.Handle("room:*", channels.Handler{
		Join: func(context.Context, *channels.Channel, channels.JoinEvent) (channels.JoinReply, error) {
			return channels.JoinReply{}, nil
		},
		Events: []channels.Event{
			channels.HandleIn("new_msg", func(ctx context.Context, c *channels.Channel, m chatIn) (chatAck, error) {
				if m.Body == "forbidden" {
					return chatAck{}, channels.Refuse("not allowed")
				}
				if err := c.Broadcast(ctx, "new_msg", chatOut{User: "ada", Body: m.Body}); err != nil {
					return chatAck{}, err
				}
				return chatAck{ID: len(m.Body), Seen: time.Unix(0, 0).UTC()}, nil
			}),
			channels.HandleIn("blob", func(_ context.Context, _ *channels.Channel, b []byte) (int, error) {
				return len(b), nil
			}),
			channels.Emits[chatOut]("new_msg"),
		},
		In: func(_ context.Context, _ *channels.Channel, ev channels.InEvent) (channels.Reply, error) {
			return channels.OK(map[string]string{"untyped": ev.Event}), nil
		},
	})
}

// TestTypedEvents: a typed push is decoded strictly (unknown fields, wrong
// types, bad JSON and binary payloads get a clear error reply, and the
// handler does not run), a fitting one reaches the handler, whose value is
// the ok reply; other events go to In; the socket keeps serving.
func TestTypedEvents(t *testing.T) {
	srv := channeltest.NewServer(t, channels.Options{}, typedRoom)
	c := channeltest.Dial(t, srv.URL, url.Values{})
	if r := c.Join("room:1", nil); r.Status != "ok" {
		t.Fatalf("join: %s %s", r.Status, r.Response)
	}

	r := c.Push("room:1", "new_msg", map[string]any{"body": "hello", "tags": []string{"a"}})
	if r.Status != "ok" {
		t.Fatalf("new_msg: %s %s", r.Status, r.Response)
	}
	var ack chatAck
	if err := json.Unmarshal(r.Response, &ack); err != nil || ack.ID != 5 {
		t.Fatalf("reply %s (%v), want id 5", r.Response, err)
	}
	var out chatOut
	c.Expect("room:1", "new_msg").Decode(t, &out)
	if out.Body != "hello" {
		t.Fatalf("broadcast %+v", out)
	}

	for _, tc := range []struct {
		name    string
		payload any
		want    string
	}{
		{"unknown field", map[string]any{"bdy": "x"}, `unknown field \"bdy\"`},
		{"wrong type", map[string]any{"body": 42}, `field \"body\": want a string, got number`},
		{"wrong element type", map[string]any{"body": "x", "tags": []int{1}}, `want a string, got number`},
		{"not an object", []int{1}, `want an object, got array`},
		{"null pointer field is fine but a string is not", map[string]any{"body": "x", "reply_to": "7"}, `field \"reply_to\": want an integer, got string`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := c.Push("room:1", "new_msg", tc.payload)
			if r.Status != "error" || r.Reason() != "invalid payload" || !strings.Contains(string(r.Response), tc.want) ||
				!strings.Contains(string(r.Response), `"event":"new_msg"`) {
				t.Fatalf("got %s %s, want an invalid payload error containing %s", r.Status, r.Response, tc.want)
			}
		})
	}
	if r := c.PushBinary("room:1", "new_msg", []byte(`{"body":"x"}`)); r.Status != "error" || !strings.Contains(string(r.Response), "want a JSON payload") {
		t.Errorf("binary new_msg: %s %s", r.Status, r.Response)
	}
	// Nothing was broadcast for the refused pushes.
	c.Refute("room:1", "new_msg", 100*time.Millisecond)

	// The handler's *ReplyError is an error reply.
	if r := c.Push("room:1", "new_msg", map[string]string{"body": "forbidden"}); r.Status != "error" || r.Reason() != "not allowed" {
		t.Errorf("refused new_msg: %s %s", r.Status, r.Response)
	}
	// A []byte payload takes binary frames as they are.
	if r := c.PushBinary("room:1", "blob", []byte{1, 2, 3}); r.Status != "ok" || string(r.Response) != "3" {
		t.Errorf("blob: %s %s", r.Status, r.Response)
	}
	// Untyped events still reach In.
	if r := c.Push("room:1", "ping", map[string]any{"anything": 1}); r.Status != "ok" || !strings.Contains(string(r.Response), `"untyped":"ping"`) {
		t.Errorf("ping: %s %s", r.Status, r.Response)
	}
}

// TestTypedEventsWithoutIn: with typed events only, other pushes get the
// usual "unhandled event" error reply.
func TestTypedEventsWithoutIn(t *testing.T) {
	srv := channeltest.NewServer(t, channels.Options{}, func(n *channels.Node) {
		n.Handle("room:*", channels.Handler{
			Join: func(context.Context, *channels.Channel, channels.JoinEvent) (channels.JoinReply, error) {
				return channels.JoinReply{}, nil
			},
			Events: []channels.Event{channels.HandleIn("ping", func(_ context.Context, _ *channels.Channel, p map[string]int) (map[string]int, error) {
				return p, nil
			})},
		})
	})
	c := channeltest.Dial(t, srv.URL, url.Values{})
	c.Join("room:1", nil)
	if r := c.Push("room:1", "ping", map[string]int{"n": 1}); r.Status != "ok" || string(r.Response) != `{"n":1}` {
		t.Errorf("ping: %s %s", r.Status, r.Response)
	}
	if r := c.Push("room:1", "pong", nil); r.Status != "error" || r.Reason() != "unhandled event" {
		t.Errorf("pong: %s %s", r.Status, r.Response)
	}
}

func TestNodeEvents(t *testing.T) {
	n := channels.New(channels.Options{})
	typedRoom(n)
	n.Handle("plain:*", channels.Handler{Join: func(context.Context, *channels.Channel, channels.JoinEvent) (channels.JoinReply, error) {
		return channels.JoinReply{}, nil
	}})
	all := n.Events()
	if len(all) != 1 || all[0].Pattern != "room:*" || len(all[0].Events) != 3 {
		t.Fatalf("Events() = %+v", all)
	}
	e := all[0].Events[0]
	if e.Name != "new_msg" || e.Kind != channels.EventIn || e.Payload != reflect.TypeFor[chatIn]() || e.Reply != reflect.TypeFor[chatAck]() {
		t.Errorf("first event %+v", e)
	}
	if e := all[0].Events[2]; e.Kind != channels.EventOut || e.Payload != reflect.TypeFor[chatOut]() {
		t.Errorf("emitted event %+v", e)
	}
}

func TestEventsMisuse(t *testing.T) {
	join := func(context.Context, *channels.Channel, channels.JoinEvent) (channels.JoinReply, error) {
		return channels.JoinReply{}, nil
	}
	ping := channels.HandleIn("ping", func(context.Context, *channels.Channel, struct{}) (struct{}, error) { return struct{}{}, nil })
	for name, events := range map[string][]channels.Event{
		"duplicate in": {ping, ping},
		"no name":      {{Kind: channels.EventOut}},
		"hand made in": {{Name: "x", Kind: channels.EventIn, Payload: reflect.TypeFor[int]()}},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if p := recover(); p == nil || !strings.HasPrefix(p.(string), "channels: ") {
					t.Errorf("Handle did not panic with a channels: message: %v", p)
				}
			}()
			channels.New(channels.Options{}).Handle("x:*", channels.Handler{Join: join, Events: events})
		})
	}
}

func ExampleHandleIn() {
	type NewMsg struct {
		Body string `json:"body"`
	}
	type Message struct {
		User string `json:"user"`
		Body string `json:"body"`
	}
	n := channels.New(channels.Options{})
	n.Handle("room:*", channels.Handler{
		Join: func(context.Context, *channels.Channel, channels.JoinEvent) (channels.JoinReply, error) {
			return channels.JoinReply{}, nil
		},
		Events: []channels.Event{
			// Pushes of new_msg that do not fit NewMsg get an error reply
			// and never reach the function.
			channels.HandleIn("new_msg", func(ctx context.Context, c *channels.Channel, m NewMsg) (struct{}, error) {
				return struct{}{}, c.Broadcast(ctx, "new_msg", Message{User: "ada", Body: m.Body})
			}),
			channels.Emits[Message]("new_msg"),
		},
	})
	for _, ce := range n.Events() {
		for _, e := range ce.Events {
			fmt.Println(ce.Pattern, e.Kind, e.Name, e.Payload, e.Reply)
		}
	}
	// Output:
	// room:* in new_msg channels_test.NewMsg struct {}
	// room:* out new_msg channels_test.Message <nil>
}
