package server

import (
	"bytes"
	"compress/flate"
	"errors"
	"fmt"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsflate"

	"github.com/hearth-rt/hearth/channels"
	"github.com/hearth-rt/hearth/channels/wire"
)

// Compression configures permessage-deflate (RFC 7692), the WebSocket
// extension every browser offers. Its zero value is off.
//
// Off is the default, as in Phoenix (compress: false), Socket.IO
// (perMessageDeflate: false since v3) and Centrifugo: it keeps the bytes on
// the wire and the CPU profile of a server that never compressed, and an
// application that puts a secret and text an attacker chooses in the same
// message cannot leak the secret through compressed sizes (the CRIME and
// BREACH attacks) unless it turns compression on. Turn it on for
// repetitive JSON (chat, feeds, presence), which shrinks 3-10x.
//
// When on, the server accepts a client's offer and answers with
// server_no_context_takeover and client_no_context_takeover: every message
// is compressed on its own, so no connection keeps a compression window
// (an idle connection costs what it costs without compression), and a
// broadcast is compressed once per node, the first time a compressing
// subscriber needs it, then the same bytes are queued on every compressing
// connection. Compressors and decompressors come from pools shared by all
// connections. An offer that limits the server's window
// (server_max_window_bits below 15, which compress/flate cannot honour) is
// declined; the connection then works uncompressed. A client's
// client_max_window_bits is accepted as it is: the server inflates with a
// full window.
type Compression struct {
	// Enabled accepts permessage-deflate from clients that offer it.
	Enabled bool
	// Level is the compress/flate level, 1 (fastest) to 9 (smallest), or
	// flate.HuffmanOnly (-2). Zero means 1: a broadcast is compressed
	// once, but a reply or push is compressed per connection. New panics
	// on an invalid level.
	Level int
	// MinSize is the smallest payload, in bytes, that is compressed;
	// smaller frames go out uncompressed (RSV1 clear): deflating a short
	// message saves little and costs CPU. Zero means 256; a negative
	// value compresses every data frame. Control frames are never
	// compressed.
	MinSize int
}

// applyCompressionDefaults fills in the zero values of the compression
// options.
func applyCompressionDefaults(o *Compression) {
	if o.Level == 0 {
		o.Level = flate.BestSpeed
	}
	if o.MinSize == 0 {
		o.MinSize = 256
	}
	if o.MinSize < 0 {
		o.MinSize = 0
	}
	if o.Level < flate.HuffmanOnly || o.Level > flate.BestCompression || o.Level == flate.NoCompression {
		panic(fmt.Sprintf("server: invalid Compression.Level %d (1 to 9, or flate.HuffmanOnly)", o.Level))
	}
}

// newDeflater returns the server's Deflater, or nil when compression is
// off.
func newDeflater(o Compression) *wire.Deflater {
	if !o.Enabled {
		return nil
	}
	return wire.NewDeflater(o.Level, o.MinSize)
}

// deflateResponse is the extension the server answers an accepted offer
// with.
var deflateResponse = wsflate.Parameters{
	ServerNoContextTakeover: true,
	ClientNoContextTakeover: true,
}.Option()

// negotiateDeflate returns the upgrader's Negotiate function for one
// request, and a pointer to the result: whether permessage-deflate was
// accepted. Offers come in the client's order of preference: the first
// acceptable one wins and the others are ignored. A malformed or
// unacceptable offer is declined, never a reason to refuse the upgrade.
func negotiateDeflate() (func(httphead.Option) (httphead.Option, error), *bool) {
	accepted := new(bool)
	return func(offer httphead.Option) (httphead.Option, error) {
		if *accepted || !bytes.Equal(offer.Name, wsflate.ExtensionNameBytes) || !acceptableOffer(offer) {
			return httphead.Option{}, nil
		}
		*accepted = true
		return deflateResponse, nil
	}, accepted
}

// acceptableOffer reports whether the server can accept a
// permessage-deflate offer (RFC 7692, section 7.1).
func acceptableOffer(offer httphead.Option) bool {
	var p wsflate.Parameters
	if err := p.Parse(offer); err != nil {
		return false // an unknown, duplicate or invalid parameter
	}
	// server_max_window_bits with a value below 15 asks the server for a
	// smaller window than compress/flate uses. 15 is the full window; an
	// offer without the parameter leaves it to the server.
	if b := p.ServerMaxWindowBits; b.Defined() && b != 15 {
		return false
	}
	return true
}

// Deflater implements [channels.CompressingTransport]: it returns the
// server's Deflater when the connection negotiated compression.
func (c *conn) Deflater() *wire.Deflater {
	if !c.deflate {
		return nil
	}
	return c.srv.deflater
}

// Errors of frames with reserved bits the connection may not set.
var (
	errBadRsv      = errors.New("protocol error: reserved bits set")
	errCompressBit = errors.New("protocol error: compression bit on a control frame or a continuation")
)

// checkRsv checks a frame header's reserved bits once ws.CheckHeader has
// checked the rest: RSV1 only on the first frame of a data message of a
// connection that negotiated compression, RSV2 and RSV3 never. It records
// whether the message that begins is compressed.
func (c *conn) checkRsv(h ws.Header) error {
	if h.Rsv == 0 {
		if h.OpCode == ws.OpText || h.OpCode == ws.OpBinary {
			c.zin = false
		}
		return nil
	}
	if !c.deflate || h.Rsv != 4 { // ws.Rsv(true, false, false)
		return errBadRsv
	}
	if h.OpCode != ws.OpText && h.OpCode != ws.OpBinary {
		return errCompressBit
	}
	c.zin = true
	return nil
}

// readState is the reader's initial state: with compression negotiated,
// ws.CheckHeader lets the reserved bits through to checkRsv.
func (c *conn) readState() ws.State {
	if c.deflate {
		return ws.StateServerSide | ws.StateExtended
	}
	return ws.StateServerSide
}

// inflate inflates a complete compressed message into a pooled buffer,
// which the caller returns with putBuf. Over MaxMessageSize once inflated,
// it closes the connection with 1009 without having inflated more than
// that; an invalid stream closes it with 1007.
func (c *conn) inflate(z []byte) (*[]byte, bool) {
	limit := c.srv.opts.MaxMessageSize
	p := getBuf(min(max(3*len(z), 512), int(limit)))
	out, err := wire.Inflate(*p, z, limit, func(dst []byte, n int) []byte {
		*p = dst
		p = growBuf(p, n)
		return *p
	})
	*p = out
	switch {
	case errors.Is(err, wire.ErrInflatedTooBig):
		putBuf(p)
		c.srv.log.Debug("closing: inflated message too big", "conn", c.id, "socket_id", c.socketID())
		c.Close(channels.CloseTooBig, "message too big")
		return nil, false
	case err != nil:
		putBuf(p)
		c.srv.log.Debug("closing: invalid compressed message", "conn", c.id, "socket_id", c.socketID(), "err", err)
		c.Close(channels.CloseInvalidPayload, "invalid compressed message")
		return nil, false
	}
	return p, true
}
