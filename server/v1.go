package server

import (
	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/channels/wire"
)

// v1Conn is a connection speaking Phoenix's V1 serializer (vsn 1.0.0) as
// its socket's transport: the socket's V2 frames are rewritten as V1 JSON
// objects, one frame at a time. V1 is text only, as Phoenix's: binary
// frames are not sent to it.
type v1Conn struct{ *conn }

// Deflater hides the connection's: the node must hand a V1 connection
// plain V2 frames to translate (Send compresses the V1 frame itself when
// the connection negotiated compression).
func (c v1Conn) Deflater() *wire.Deflater { return nil }

// Send implements channels.Transport.
func (c v1Conn) Send(frame []byte) bool {
	op, p, ok := wire.FramePayload(frame)
	if !ok || op != wire.OpText {
		return op == wire.OpBinary // skipped, not a failure
	}
	buf := wire.BeginFrame(make([]byte, 0, len(p)+64))
	buf, err := wire.AppendV1(buf, p)
	if err != nil {
		return false
	}
	return c.conn.Send(wire.FinishFrame(buf, wire.OpText))
}

// fromV1 turns an inbound V1 message into V2 for the socket. It closes the
// connection and returns false when the message cannot be.
func (c *conn) fromV1(data []byte, binary bool) ([]byte, bool) {
	if binary {
		c.Close(channels.CloseInvalidPayload, "binary messages need vsn=2.0.0")
		return nil, false
	}
	m, err := wire.DecodeV1(data)
	if err != nil {
		code, reason := channels.CloseCode(err)
		c.Close(code, reason)
		return nil, false
	}
	return wire.AppendV2(nil, &m), true
}
