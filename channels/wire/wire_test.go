package wire_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/hearth-rt/hearth/channels/wire"
)

func TestDecodeText(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want wire.Message
	}{
		{"join", `["1","1","room:lobby","phx_join",{}]`, wire.Message{JoinRef: "1", Ref: "1", Topic: "room:lobby", Event: "phx_join", Payload: []byte(`{}`)}},
		{"heartbeat null join ref", `[null,"7","phoenix","heartbeat",{}]`, wire.Message{Ref: "7", Topic: "phoenix", Event: "heartbeat", Payload: []byte(`{}`)}},
		{"spaces", " [ null , null , \"t\" , \"e\" , [1, 2] ] ", wire.Message{Topic: "t", Event: "e", Payload: []byte(`[1, 2]`)}},
		{"scalar payload", `["1","2","t","e",42]`, wire.Message{JoinRef: "1", Ref: "2", Topic: "t", Event: "e", Payload: []byte(`42`)}},
		{"string payload with brackets", `["1","2","t","e","a]b,c"]`, wire.Message{JoinRef: "1", Ref: "2", Topic: "t", Event: "e", Payload: []byte(`"a]b,c"`)}},
		{"escaped topic", `["1","2","r\u00e9\"x","e",null]`, wire.Message{JoinRef: "1", Ref: "2", Topic: "ré\"x", Event: "e", Payload: []byte(`null`)}},
		{"nested payload", `["1","2","t","e",{"a":[{"b":"]"}]}]`, wire.Message{JoinRef: "1", Ref: "2", Topic: "t", Event: "e", Payload: []byte(`{"a":[{"b":"]"}]}`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := wire.DecodeText([]byte(tt.in))
			if err != nil {
				t.Fatalf("DecodeText(%s): %v", tt.in, err)
			}
			if got.JoinRef != tt.want.JoinRef || got.Ref != tt.want.Ref || got.Topic != tt.want.Topic || got.Event != tt.want.Event || !bytes.Equal(got.Payload, tt.want.Payload) || got.Binary {
				t.Fatalf("DecodeText(%s) = %+v (payload %s), want %+v", tt.in, got, got.Payload, tt.want)
			}
		})
	}
}

func TestDecodeTextErrors(t *testing.T) {
	deep := strings.Repeat("[", wire.MaxDepth+1) + strings.Repeat("]", wire.MaxDepth+1)
	tests := []struct {
		name, in, reason string
		framed           bool // only the content is wrong: answered on the topic
	}{
		{"empty", ``, "not a JSON array", false},
		{"object", `{"topic":"x"}`, "not a JSON array", false},
		{"four elements", `["1","1","t","e"]`, "exactly 5 elements", false},
		{"six elements", `["1","1","t","e",{},{}]`, "exactly 5 elements", false},
		{"numeric ref", `["1",1,"t","e",{}]`, "ref must be a string or null", false},
		{"null topic", `["1","1",null,"e",{}]`, "topic must be a string", false},
		{"empty topic", `["1","1","","e",{}]`, "topic must not be empty", true},
		{"empty event", `["1","1","t","",{}]`, "event must not be empty", true},
		{"bad payload", `["1","1","t","e",{"a":}]`, "payload is not valid JSON", true},
		{"too deep", `["1","1","t","e",` + deep + `]`, "payload is nested deeper than 10000 levels", true},
		{"unterminated", `["1","1","t`, "unterminated string", false},
		{"trailing", `["1","1","t","e",{}]x`, "trailing data", false},
		{"unclosed payload", `["1","1","t","e",{"a":1`, "payload is not valid JSON", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := wire.DecodeText([]byte(tt.in))
			var de *wire.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("DecodeText(%q) error = %v, want a *DecodeError", tt.in, err)
			}
			if !strings.Contains(de.Reason, tt.reason) || de.Framed != tt.framed {
				t.Fatalf("DecodeText(%.40q) = %q framed %v, want %q framed %v", tt.in, de.Reason, de.Framed, tt.reason, tt.framed)
			}
			if de.Framed && (m.JoinRef != "1" || m.Ref != "1") {
				t.Fatalf("framed error without the message's refs: %+v", m)
			}
		})
	}
	// At the limit is fine.
	ok := strings.Repeat("[", wire.MaxDepth) + strings.Repeat("]", wire.MaxDepth)
	if _, err := wire.DecodeText([]byte(`["1","1","t","e",` + ok + `]`)); err != nil {
		t.Fatalf("nesting of %d levels: %v", wire.MaxDepth, err)
	}
}

func TestTextRoundTrip(t *testing.T) {
	payload := []byte(`{"body":"<hi> & \"bye\""}`)
	b := wire.AppendText(nil, "3", "9", "room:\n1", "new_msg", payload)
	if !json.Valid(b) {
		t.Fatalf("AppendText produced invalid JSON: %s", b)
	}
	m, err := wire.DecodeText(b)
	if err != nil {
		t.Fatal(err)
	}
	if m.JoinRef != "3" || m.Ref != "9" || m.Topic != "room:\n1" || m.Event != "new_msg" || !bytes.Equal(m.Payload, payload) {
		t.Fatalf("round trip = %+v", m)
	}
	if got := string(wire.AppendText(nil, "", "", "t", "e", nil)); got != `[null,null,"t","e",{}]` {
		t.Fatalf("null refs: %s", got)
	}
}

func TestAppendReplyAndBroadcast(t *testing.T) {
	got := string(wire.AppendTextReply(nil, "", "5", "phoenix", "ok", nil))
	if want := `[null,"5","phoenix","phx_reply",{"status":"ok","response":{}}]`; got != want {
		t.Fatalf("reply = %s, want %s", got, want)
	}
	got = string(wire.AppendBroadcastText(nil, "room:1", "new_msg", 17, []byte(`{"a":1}`)))
	if want := `[null,"@17","room:1","new_msg",{"a":1}]`; got != want {
		t.Fatalf("broadcast = %s, want %s", got, want)
	}
	got = string(wire.AppendBroadcastText(nil, "room:1", "new_msg", 0, nil))
	if want := `[null,null,"room:1","new_msg",{}]`; got != want {
		t.Fatalf("broadcast without offset = %s, want %s", got, want)
	}
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", "quote\"back\\slash", "ctl\x01\x1f", "é中🙂", "bad\xffutf8", "line\u2028sep", "<script>&"} {
		var got string
		if err := json.Unmarshal(wire.AppendString(nil, s), &got); err != nil {
			t.Fatalf("AppendString(%q) is not a JSON string: %v", s, err)
		}
		want, _ := json.Marshal(s)
		var wantS string
		_ = json.Unmarshal(want, &wantS)
		if got != wantS {
			t.Fatalf("AppendString(%q) decodes to %q, encoding/json gives %q", s, got, wantS)
		}
	}
}

func TestBinary(t *testing.T) {
	// A client push as phoenix.js encodes it.
	in := []byte{0, 1, 2, 4, 4}
	in = append(in, "1"...)
	in = append(in, "12"...)
	in = append(in, "room"...)
	in = append(in, "ping"...)
	in = append(in, 0xDE, 0xAD, 0xBE, 0xEF)
	m, err := wire.DecodeBinary(in)
	if err != nil {
		t.Fatal(err)
	}
	if m.JoinRef != "1" || m.Ref != "12" || m.Topic != "room" || m.Event != "ping" || !m.Binary || !bytes.Equal(m.Payload, []byte{0xDE, 0xAD, 0xBE, 0xEF}) {
		t.Fatalf("DecodeBinary = %+v", m)
	}
	reply := wire.AppendBinaryReply(nil, "1", "12", "room", "ok", m.Payload)
	want := append([]byte{1, 1, 2, 4, 2}, "112roomok"...)
	want = append(want, 0xDE, 0xAD, 0xBE, 0xEF)
	if !bytes.Equal(reply, want) {
		t.Fatalf("AppendBinaryReply = %v, want %v", reply, want)
	}
	push := wire.AppendBinaryPush(nil, "1", "room", "ev", []byte{9})
	if want := append([]byte{0, 1, 4, 2}, "1roomev\x09"...); !bytes.Equal(push, want) {
		t.Fatalf("AppendBinaryPush = %v, want %v", push, want)
	}
	bc := wire.AppendBinaryBroadcast(nil, "room", "ev", []byte{9})
	if want := append([]byte{2, 4, 2}, "roomev\x09"...); !bytes.Equal(bc, want) {
		t.Fatalf("AppendBinaryBroadcast = %v, want %v", bc, want)
	}
	pos := wire.AppendBroadcastBinaryPos(nil, "room", "ev", 42, []byte{9})
	if want := append([]byte{3, 4, 2, 3}, "roomev@42\x09"...); !bytes.Equal(pos, want) {
		t.Fatalf("AppendBroadcastBinaryPos = %v, want %v", pos, want)
	}
}

func TestDecodeBinaryErrors(t *testing.T) {
	for name, in := range map[string][]byte{
		"short":        {0, 1},
		"wrong kind":   {2, 1, 1, 1, 1, 'a', 'b', 'c', 'd'},
		"lengths lie":  {0, 10, 10, 10, 10, 'a'},
		"empty topic":  {0, 0, 0, 0, 1, 'e'},
		"invalid utf8": {0, 0, 0, 1, 1, 0xff, 'e'},
	} {
		t.Run(name, func(t *testing.T) {
			var de *wire.DecodeError
			if _, err := wire.DecodeBinary(in); !errors.As(err, &de) {
				t.Fatalf("DecodeBinary(%v) = %v, want *DecodeError", in, err)
			}
		})
	}
}

func TestFrameHeader(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 65535, 65536, 200000} {
		buf := wire.BeginFrame(nil)
		buf = append(buf, bytes.Repeat([]byte{'x'}, n)...)
		f := wire.FinishFrame(buf, wire.OpText)
		if f[0] != 0x81 {
			t.Fatalf("n=%d: first byte %#x", n, f[0])
		}
		var got, hl int
		switch l := int(f[1] & 0x7f); l {
		case 126:
			got, hl = int(f[2])<<8|int(f[3]), 4
		case 127:
			for i := 2; i < 10; i++ {
				got = got<<8 | int(f[i])
			}
			hl = 10
		default:
			got, hl = l, 2
		}
		if got != n || len(f)-hl != n || f[1]&0x80 != 0 {
			t.Fatalf("n=%d: header says %d, frame payload %d, mask bit %d", n, got, len(f)-hl, f[1]>>7)
		}
	}
}

func TestReplyEchoesJoinRef(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`["","1","t","e",{}]`, `["","1","t","phx_reply",{"status":"ok","response":{}}]`},
		{`[ "" ,"1","t","e",{}]`, `["","1","t","phx_reply",{"status":"ok","response":{}}]`},
		{`[null,"1","t","e",{}]`, `[null,"1","t","phx_reply",{"status":"ok","response":{}}]`},
		{`["7","1","t","e",{}]`, `["7","1","t","phx_reply",{"status":"ok","response":{}}]`},
		{`["",null,"t","e",{}]`, `["",null,"t","phx_reply",{"status":"ok","response":{}}]`},
	} {
		m, err := wire.DecodeText([]byte(tc.in))
		if err != nil {
			t.Fatal(err)
		}
		if got := string(wire.AppendTextReplyTo(nil, &m, "ok", nil)); got != tc.want {
			t.Errorf("reply to %s = %s, want %s", tc.in, got, tc.want)
		}
	}
}
