package wire_test

import (
	"testing"

	"github.com/hearth-rt/hearth/channels/wire"
)

var benchMsg = []byte(`["3","17","room:lobby","new_msg",{"user":"ada","body":"hello, this is a chat message of typical size"}]`)

func BenchmarkDecodeText(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(benchMsg)))
	for b.Loop() {
		if _, err := wire.DecodeText(benchMsg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeBinary(b *testing.B) {
	in := append([]byte{0, 1, 2, 10, 6}, "317room:lobbyupload"...)
	in = append(in, make([]byte, 256)...)
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		if _, err := wire.DecodeBinary(in); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeBroadcastFrame(b *testing.B) {
	payload := []byte(`{"user":"ada","body":"hello, this is a chat message of typical size"}`)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		f := wire.BeginFrame(buf)
		f = wire.AppendBroadcastText(f, "room:lobby", "new_msg", 123456, payload)
		_ = wire.FinishFrame(f, wire.OpText)
	}
}

func BenchmarkEncodeReply(b *testing.B) {
	resp := []byte(`{"ok":true}`)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		_ = wire.AppendTextReply(buf[:0], "3", "17", "room:lobby", "ok", resp)
	}
}
