package bench

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/hearth-rt/hearth/channels/wire"
)

// Compression in the load clients and the servers (--compress): clients
// offer permessage-deflate without context takeover either way, as a
// server that compresses each broadcast once needs, and the servers
// compress every message, whatever its size:
//
//   - hearth: --compress --compress-min=-1 (each broadcast compressed once
//     per node, shared by every compressing connection);
//   - gorilla: --compress, websocket.PreparedMessage per broadcast (one
//     compressed frame cached per compression mode);
//   - socketio: --compress, ws's perMessageDeflate with threshold 0
//     (compressed per recipient socket).
const deflateOfferHeader = "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover\r\n"

// deflateOffer returns the request header line offering compression, or "".
func deflateOffer(on bool) string {
	if !on {
		return ""
	}
	return deflateOfferHeader
}

// deflateAccepted reports whether the upgrade response accepted
// permessage-deflate.
func deflateAccepted(h http.Header) bool {
	for _, v := range h.Values("Sec-WebSocket-Extensions") {
		if strings.Contains(v, "permessage-deflate") {
			return true
		}
	}
	return false
}

// compressArgs returns the server arguments that turn compression on for
// a target kind.
func compressArgs(kind string, on bool) []string {
	if !on {
		return nil
	}
	if kind == TargetHearth {
		return []string{"--compress", "--compress-min=-1"}
	}
	return []string{"--compress"}
}

// inflate returns the message in w.buf inflated (valid until the next
// read).
func (w *wsConn) inflate(op byte) (byte, []byte, error) {
	out, err := wire.Inflate(w.zbuf[:0], w.buf, maxFrame, nil)
	if err != nil {
		return 0, nil, err
	}
	if cap(out) <= 64<<10 {
		w.zbuf = out[:0]
	} else {
		w.zbuf = nil
	}
	return op, out, nil
}

// WrittenBytes returns the bytes the server process has handed to write
// system calls (the wchar line of /proc/PID/io): what it sent on its
// sockets, plus its few log lines. Bytes on the wire without TCP/IP
// headers.
func (s *Server) WrittenBytes() (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/io", s.PID()))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "wchar:"); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return 0, fmt.Errorf("bench: no wchar in /proc/%d/io", s.PID())
}

// writtenBytes sums WrittenBytes over servers; -1 when unavailable.
func writtenBytes(servers []*Server) int64 {
	var n int64
	for _, s := range servers {
		b, err := s.WrittenBytes()
		if err != nil {
			return -1
		}
		n += b
	}
	return n
}

// compressTitle is a table title's note on compression.
func compressTitle(on bool) string {
	if on {
		return ", permessage-deflate"
	}
	return ""
}
