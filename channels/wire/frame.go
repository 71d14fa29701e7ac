package wire

import "encoding/binary"

// WebSocket opcodes used by the server.
const (
	OpText   = 0x1
	OpBinary = 0x2
	OpClose  = 0x8
	OpPing   = 0x9
	OpPong   = 0xA
)

// MaxFrameHeader is the longest header AppendFrameHeader writes.
const MaxFrameHeader = 10

// AppendFrameHeader appends the header of a final, unmasked (server to
// client) WebSocket frame with the given opcode and payload length.
func AppendFrameHeader(dst []byte, opcode byte, length int) []byte {
	dst = append(dst, 0x80|opcode)
	switch {
	case length < 126:
		return append(dst, byte(length))
	case length <= 0xFFFF:
		return append(dst, 126, byte(length>>8), byte(length))
	default:
		dst = append(dst, 127)
		return binary.BigEndian.AppendUint64(dst, uint64(length))
	}
}

// FrameHeaderLen returns the length of the header for a payload of n bytes.
func FrameHeaderLen(n int) int {
	switch {
	case n < 126:
		return 2
	case n <= 0xFFFF:
		return 4
	default:
		return 10
	}
}

// BeginFrame starts a frame in buf (reusing its capacity): it leaves room
// for the longest header. Append the payload, then call FinishFrame.
func BeginFrame(buf []byte) []byte {
	buf = buf[:0]
	for range MaxFrameHeader {
		buf = append(buf, 0)
	}
	return buf
}

// FinishFrame writes the header for the payload appended after BeginFrame
// and returns the complete frame, a suffix of buf.
func FinishFrame(buf []byte, opcode byte) []byte {
	n := len(buf) - MaxFrameHeader
	off := MaxFrameHeader - FrameHeaderLen(n)
	AppendFrameHeader(buf[off:off], opcode, n)
	return buf[off:]
}

// MaxCloseReason is the longest reason a close frame can carry, in bytes
// (a control frame's 125 bytes less the 2-byte code).
const MaxCloseReason = 123

// CloseReason cuts a close reason to MaxCloseReason bytes, on a UTF-8
// boundary.
func CloseReason(s string) string {
	if len(s) <= MaxCloseReason {
		return s
	}
	i := MaxCloseReason
	for i > 0 && s[i]&0xC0 == 0x80 {
		i--
	}
	return s[:i]
}
