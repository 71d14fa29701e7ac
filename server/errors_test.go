package server

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/gorilla/websocket"

	"github.com/hearth-rt/hearth/channels"
)

// TestErrorsStayOnTheirTopic: whatever is wrong with one topic or one push
// is answered on that topic with an error reply saying what, and the
// socket, with its joined room:lobby, carries on. Only framing errors
// close (TestInvalidMessages).
func TestErrorsStayOnTheirTopic(t *testing.T) {
	srv := newTestServer(t, Options{}, channels.Options{}, nil)
	c := dial(t, srv.url)
	lobbyRef := c.mustJoin("room:lobby", map[string]any{})

	deep := strings.Repeat("[", 10001) + strings.Repeat("]", 10001)
	cases := []struct {
		name, topic, reason string
		frame               func(ref string) []byte
		binary              bool
	}{
		{name: "join of an empty topic", reason: "topic must not be empty", frame: func(ref string) []byte {
			return []byte(`["` + ref + `","` + ref + `","","phx_join",{}]`)
		}},
		{name: "push of an empty event", topic: "room:lobby", reason: "event must not be empty", frame: func(ref string) []byte {
			return []byte(`["` + lobbyRef + `","` + ref + `","room:lobby","",{}]`)
		}},
		{name: "topic of 256 bytes", topic: "room:" + strings.Repeat("x", 251), reason: "topic is longer than 255 bytes", frame: func(ref string) []byte {
			return []byte(`["` + ref + `","` + ref + `","room:` + strings.Repeat("x", 251) + `","phx_join",{}]`)
		}},
		{name: "topic with a NUL byte", topic: "room:a\x00b", reason: "topic contains a NUL byte", frame: func(ref string) []byte {
			return []byte(`["` + ref + `","` + ref + `","room:a\u0000b","phx_join",{}]`)
		}},
		{name: "payload not JSON", topic: "room:lobby", reason: "payload is not valid JSON", frame: func(ref string) []byte {
			return []byte(`["` + lobbyRef + `","` + ref + `","room:lobby","ping",{x}]`)
		}},
		{name: "payload nested too deep", topic: "room:lobby", reason: "payload is nested deeper than 10000 levels", frame: func(ref string) []byte {
			return []byte(`["` + lobbyRef + `","` + ref + `","room:lobby","ping",` + deep + `]`)
		}},
		{name: "unknown topic", topic: "nope:1", reason: "unmatched topic", frame: func(ref string) []byte {
			return []byte(`["` + ref + `","` + ref + `","nope:1","phx_join",{}]`)
		}},
		{name: "binary push of an empty topic", reason: "topic must not be empty", binary: true, frame: func(ref string) []byte {
			return append([]byte{0, 1, byte(len(ref)), 0, 4, '1'}, ref+"ping\x01\x02"...)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c.t = t
			ref := c.nextRef()
			typ := websocket.TextMessage
			if tc.binary {
				typ = websocket.BinaryMessage
			}
			c.sendRaw(typ, tc.frame(ref))
			resp := c.expectReply(tc.topic, ref, "error")
			var r struct{ Reason string }
			if err := json.Unmarshal(resp, &r); err != nil || r.Reason != tc.reason {
				t.Fatalf("reply %s, want reason %q", resp, tc.reason)
			}
		})
	}
	// The lobby still works both ways.
	c.t = t
	ref := c.nextRef()
	c.send(lobbyRef, ref, "room:lobby", "ping", map[string]any{"still": "here"})
	c.expectReply("room:lobby", ref, "ok")
	if err := srv.node.Broadcast(context.Background(), "room:lobby", "news", map[string]any{"n": 1}); err != nil {
		t.Fatal(err)
	}
	c.expect("room:lobby", "news")
	// "$hearth" as the app's data is the app's: the join goes through.
	c.mustJoin("room:nick", map[string]any{"nick": "$hearth", "tags": []string{"$hearth"}})
}

// TestEmptyJoinRefEchoed: a join_ref sent as "" comes back as "", not null
// (Phoenix echoes what was sent).
func TestEmptyJoinRefEchoed(t *testing.T) {
	srv := newTestServer(t, Options{}, channels.Options{}, nil)
	c := dial(t, srv.url)
	c.sendRaw(websocket.TextMessage, []byte(`["","5","room:e","phx_join",{}]`))
	c.sendRaw(websocket.TextMessage, []byte(`["","6","","phx_join",{}]`))
	for _, want := range []string{`["","5","room:e","phx_reply",{"status":"ok"`, `["","6","","phx_reply",{"status":"error"`} {
		_ = c.ws.SetReadDeadline(deadline())
		_, b, err := c.ws.ReadMessage()
		if err != nil || !strings.HasPrefix(string(b), want) {
			t.Fatalf("got %s (%v), want %s...", b, err, want)
		}
	}
}
