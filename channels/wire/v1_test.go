package wire_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/hearth-rt/hearth/channels/wire"
)

// A V1 connection's frames are translated to V2 on the way in, and the
// server's V2 frames to V1 objects on the way out.
func ExampleAppendV1() {
	in, _ := wire.DecodeV1([]byte(`{"topic":"room:42","event":"phx_join","payload":{},"ref":"1","join_ref":"1"}`))
	fmt.Println(string(wire.AppendV2(nil, &in)))
	out, _ := wire.AppendV1(nil, []byte(`[null,"@17","room:42","new_msg",{"body":"hi"}]`))
	fmt.Println(string(out))
	// Output:
	// ["1","1","room:42","phx_join",{}]
	// {"join_ref":null,"ref":"@17","topic":"room:42","event":"new_msg","payload":{"body":"hi"}}
}

func TestDecodeV1(t *testing.T) {
	cases := []struct {
		name, in string
		ok       bool
		want     string
	}{
		{"join", `{"topic":"t","event":"phx_join","payload":{"a":1},"ref":"1","join_ref":"1"}`, true, `["1","1","t","phx_join",{"a":1}]`},
		{"heartbeat without join_ref", `{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"5"}`, true, `[null,"5","phoenix","heartbeat",{}]`},
		{"null payload", `{"topic":"t","event":"e","payload":null,"ref":null}`, true, `[null,null,"t","e",{}]`},
		{"V2 array", `["1","1","t","e",{}]`, false, ""},
		{"no topic", `{"event":"e","payload":{}}`, false, ""},
		{"numeric ref", `{"topic":"t","event":"e","payload":{},"ref":1}`, false, ""},
		{"not JSON", `{"topic":`, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := wire.DecodeV1([]byte(tc.in))
			if !tc.ok {
				var de *wire.DecodeError
				if !errors.As(err, &de) {
					t.Fatalf("got %v, want a *DecodeError", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := string(wire.AppendV2(nil, &m)); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestFramePayload(t *testing.T) {
	for _, n := range []int{0, 125, 126, 65535, 65536} {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(i)
		}
		buf := append(wire.BeginFrame(nil), p...)
		op, got, ok := wire.FramePayload(wire.FinishFrame(buf, wire.OpBinary))
		if !ok || op != wire.OpBinary || len(got) != n || (n > 0 && got[n-1] != byte(n-1)) {
			t.Fatalf("%d bytes: op %d, %d bytes, ok %v", n, op, len(got), ok)
		}
	}
	for _, bad := range [][]byte{nil, {0x81}, {0x81, 5, 'a'}, {0x81, 0x81, 0, 0, 0, 0}, {0x82, 127, 0xff, 0, 0, 0, 0, 0, 0, 0}} {
		if _, _, ok := wire.FramePayload(bad); ok {
			t.Fatalf("%x accepted", bad)
		}
	}
}

// FuzzDecodeV1: any input is a message or a *DecodeError, and a message
// survives V2 and back.
func FuzzDecodeV1(f *testing.F) {
	f.Add([]byte(`{"topic":"t","event":"e","payload":{},"ref":"1","join_ref":null}`))
	f.Add([]byte(`{"topic":"t","event":"e","payload":"s"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := wire.DecodeV1(data)
		if err != nil {
			var de *wire.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error %v is not a *DecodeError", err)
			}
			return
		}
		v2 := wire.AppendV2(nil, &m)
		if _, err := wire.AppendV1(nil, v2); err != nil {
			t.Fatalf("%s does not translate back: %v", v2, err)
		}
	})
}
