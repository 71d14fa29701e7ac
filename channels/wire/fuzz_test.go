package wire_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/hearth-rt/hearth/channels/wire"
)

// FuzzDecode checks the decoders' property: any input yields either a
// message whose parts survive re-encoding, or a *DecodeError; never a panic.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`["1","1","room:lobby","phx_join",{}]`), false)
	f.Add([]byte(`[null,"2","phoenix","heartbeat",{}]`), false)
	f.Add([]byte(`["1","3","room:1","new_msg",{"body":"hi \u00e9","n":[1,2,{"x":null}]}]`), false)
	f.Add([]byte(`["1","3","t","e","str]ing"]`), false)
	f.Add([]byte{0, 1, 1, 4, 4, '1', '2', 'r', 'o', 'o', 'm', 'p', 'i', 'n', 'g', 0xff, 0}, true)
	f.Fuzz(func(t *testing.T, data []byte, binary bool) {
		var (
			m   wire.Message
			err error
		)
		if binary {
			m, err = wire.DecodeBinary(data)
		} else {
			m, err = wire.DecodeText(data)
		}
		if err != nil {
			var de *wire.DecodeError
			if !errors.As(err, &de) || de.Reason == "" {
				t.Fatalf("error %v is not a *DecodeError with a reason", err)
			}
			return
		}
		if m.Topic == "" || m.Event == "" {
			t.Fatalf("decoded a message without topic or event: %+v", m)
		}
		if binary {
			return
		}
		if !json.Valid(m.Payload) {
			t.Fatalf("payload %q is not valid JSON", m.Payload)
		}
		again, err := wire.DecodeText(wire.AppendText(nil, m.JoinRef, m.Ref, m.Topic, m.Event, m.Payload))
		if err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if again.JoinRef != m.JoinRef || again.Ref != m.Ref || again.Topic != m.Topic || again.Event != m.Event || string(again.Payload) != string(m.Payload) {
			t.Fatalf("round trip changed %+v into %+v", m, again)
		}
	})
}
