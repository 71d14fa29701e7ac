package channels

import "github.com/hearth-rt/hearth/channels/wire"

// Transport is a client connection as package channels sees it. Package
// server implements it on gobwas/ws; a test or another transport may too.
//
// The contract between a transport and a [Socket]:
//
//   - The transport calls [Node.NewSocket] before it upgrades (a refusal is
//     answered with HTTP 403 or, for a *CloseError, a close frame), then
//     [Socket.Start] once the connection is open. A socket whose upgrade
//     failed is simply dropped: it holds nothing until Start.
//   - It hands every complete inbound text or binary message to
//     [Socket.HandleMessage], one at a time, from one goroutine. The data
//     may be reused once the call returns. An error means the message broke
//     the protocol: the transport closes with the error's code and reason
//     (see [CloseCode]).
//   - When the connection ends for any reason it calls [Socket.Closed]
//     exactly once.
type Transport interface {
	// Send queues one complete, already framed WebSocket frame (see package
	// wire) for writing. The bytes may be shared by many connections and
	// must not be modified or retained after they are written. Send never
	// blocks. It returns false if the connection is closing or its queue
	// went over its byte limit; in the latter case the transport closes the
	// connection as a slow consumer by itself.
	Send(frame []byte) bool

	// Close writes a close frame with code and reason after what is
	// queued, then closes the connection.
	Close(code int, reason string)
}

// ReplayTransport is a [Transport] that can queue a recovery replay apart
// from the bound on its outgoing queue, so that a client that reads gets
// every message it asked for while the bound still protects against one
// that does not. Package server's connections implement it.
//
// Before queueing a replay of n bytes with Send, the socket calls
// ReserveReplay(n). It reports whether the transport accepts that much
// more replay; the reservation is released as the bytes are written. A
// transport that does not implement it gets replays through Send alone.
type ReplayTransport interface {
	Transport
	ReserveReplay(n int) bool
}

// A CompressingTransport is a [Transport] whose connection negotiated
// per-message compression (permessage-deflate without context takeover).
// The node compresses each broadcast frame once, with the first such
// transport's Deflater, the first time one of the broadcast's recipients
// needs it, and hands the same compressed frame to every transport that
// returns the same Deflater; the others get the plain frame. Frames sent
// to one socket only (replies, pushes) go to Send uncompressed: the
// transport compresses them itself.
type CompressingTransport interface {
	Transport
	// Deflater returns the connection's compression settings, or nil when
	// it does not compress. It is called once, by Socket.Start.
	Deflater() *wire.Deflater
}

// WebSocket close codes Hearth uses. Codes 4000-4499 invite the client to
// reconnect; codes 4500-4999 are terminal: the Hearth client stops
// reconnecting and tells the application.
const (
	CloseNormal          = 1000
	CloseGoingAway       = 1001
	CloseProtocolError   = 1002
	CloseInvalidPayload  = 1007
	ClosePolicyViolation = 1008
	CloseTooBig          = 1009
	CloseInternalError   = 1011
	CloseServiceRestart  = 1012
	CloseTryAgainLater   = 1013

	CloseSlowConsumer = 4008 // the client did not read fast enough
	CloseRateLimited  = 4029 // too many messages per second
	CloseDisconnected = 4100 // disconnected by the application (may reconnect)

	CloseUnauthorized = 4501 // terminal: credentials missing or invalid
	CloseTokenExpired = 4502 // terminal: token expired
	CloseRevoked      = 4503 // terminal: session revoked
)

// Terminal reports whether a close code tells a client not to reconnect.
func Terminal(code int) bool { return code >= 4500 && code <= 4999 }

// CloseCode returns the close code and reason for an error returned by
// [Socket.HandleMessage] or [Node.NewSocket]: a *CloseError's own, else
// 1007 for a malformed message, else 1011.
func CloseCode(err error) (int, string) {
	return closeCode(err)
}
